//! `apex users`: an admin's account commands, run against the server's store (the same
//! configuration as the server: `--config`, `--data-dir`, `DATABASE_URL`). Sessions ended
//! here close their sockets on every running instance within a couple of seconds.
use std::io::Read;

use apex_server::accounts::manage;
use apex_server::Settings;
use apex_store::Store;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create an account (the install's first account is an admin)
    Create {
        name: String,
        /// `admin` or `member` [default: admin for the first account, member after]
        #[arg(long)]
        role: Option<String>,
        /// Read the password from standard input (else one is generated and printed)
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give an account a new password; its sessions end
    Reset {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it cannot sign in, and its sessions end
    Disable { name: String },
    /// Enable a disabled account
    Enable { name: String },
    /// List the accounts
    List,
    /// Print an invitation code (valid 7 days; the sign-up link is the page's URL + `#invite=CODE`)
    Invite {
        /// The role the invited account gets
        #[arg(long, default_value = "member")]
        role: String,
    },
}

pub async fn run(command: UsersCommand, settings: Settings) -> anyhow::Result<i32> {
    let store = apex_store::connect_with(&settings.database_url, &settings.store_options()).await?;
    let store: &dyn Store = store.as_ref();
    match command {
        UsersCommand::Create { name, role, password_stdin } => {
            let (password, generated) = password(password_stdin)?;
            let account = manage::create(store, &name, &password, role.as_deref()).await?;
            println!("created {} ({}, id {})", account.name, account.role, account.id);
            if generated {
                println!("password: {password}");
            }
        }
        UsersCommand::Reset { name, password_stdin } => {
            let (password, generated) = password(password_stdin)?;
            let ended = manage::set_password(store, &name, &password).await?;
            println!("new password set for {name}; {} session(s) ended", ended.len());
            if generated {
                println!("password: {password}");
            }
        }
        UsersCommand::Disable { name } => {
            let ended = manage::set_disabled(store, &name, true).await?;
            println!("{name} is disabled; {} session(s) ended", ended.len());
        }
        UsersCommand::Enable { name } => {
            manage::set_disabled(store, &name, false).await?;
            println!("{name} is enabled");
        }
        UsersCommand::List => {
            for a in store.accounts().await? {
                let state = if a.disabled_at.is_some() { "disabled" } else { "active" };
                println!("{}\t{}\t{}\t{}", a.name, a.role, state, a.id);
            }
        }
        UsersCommand::Invite { role } => {
            let (code, _) = manage::invite(store, &role, "apex users").await?;
            println!("{code}");
        }
    }
    Ok(0)
}

/// The password from standard input (one line, its end trimmed), or a generated one.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((manage::generate_password(), true));
    }
    let mut text = String::new();
    std::io::stdin().take(4096).read_to_string(&mut text)?;
    Ok((text.trim_end_matches(['\r', '\n']).to_owned(), false))
}

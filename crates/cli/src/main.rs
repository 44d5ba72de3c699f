//! `apex`: the Netra Apex server and its companions. Thin by design: every command is a
//! call into a library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use apex_costs::rate_label;
use apex_loadgen::{bench, readiness};
use apex_server::{Auth, Settings};
use clap::{Parser, Subcommand};

mod chat;
mod ingest;
mod models;
mod users;

/// Measured: with glibc's allocator, a quarter of the server's CPU under load went to
/// malloc/free (many small, short-lived event and frame buffers across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "apex", version, about = "Netra Apex: real-time AI agent chat server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite, demo data and chat page by default)
    Serve(ServeArgs),
    /// Mint a token for a user with the configured secret
    Token(TokenArgs),
    /// Manage local accounts: create, reset, disable, enable, list, invite
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show what the cost engine charges for models
    Prices(PricesArgs),
    /// Import usage exports into the store, or upload them to a server (--url)
    Ingest {
        #[command(flatten)]
        args: ingest::IngestArgs,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Chat with a server from the terminal
    Chat(chat::ChatArgs),
    /// Load-test a server (starts its own unless --url is given)
    Bench(bench::BenchArgs),
    /// Assess a live deployment and print its readiness scorecard (exit 0 only when ready)
    Readiness(readiness::ReadinessArgs),
    /// Ask the bank of cost questions of a fresh server and score the answers' first sentences
    Eval(apex_eval::EvalArgs),
    /// Fetch a model for APEX_LLM=local into the data dir
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download a model, verify its checksum and unpack it (skipped when already there)
    Pull {
        #[command(flatten)]
        args: models::PullArgs,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML configuration file (layered under environment variables and flags)
    #[arg(long, env = "APEX_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, demo signing secret)
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on [env: APEX_BIND] [default: 127.0.0.1:8080]
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// Log JSON lines instead of human-readable text
    #[arg(long)]
    log_json: bool,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The user id (the token's subject)
    #[arg(long)]
    user: String,
    /// Lifetime, e.g. 30m, 1h, 7d
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
}

#[derive(clap::Args)]
struct PricesArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Model names as usage exports write them (dated snapshots and `provider/` prefixes resolve)
    #[arg(required = true)]
    models: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let open_files = raise_open_file_limit();
    // `serve` reads its settings before any other thread exists: some of them are handed to
    // libraries through the environment (see `model_threads`).
    let serve_settings = match &cli.command {
        Command::Serve(args) => Some(serve_settings(args).inspect(model_threads)),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(_) => match serve_settings.expect("loaded above for serve") {
                Ok(settings) => serve(settings, open_files).await.map(|()| 0),
                Err(e) => Err(e),
            },
            Command::Token(args) => token(args).map(|()| 0),
            Command::Users { command, config } => match settings(&config, |_| ()) {
                Ok(s) => users::run(command, s).await,
                Err(e) => Err(e),
            },
            Command::Prices(args) => settings(&args.config, |_| ())
                .and_then(|s| apex_server::prices::book(&s).map_err(anyhow::Error::msg))
                .map(|book| prices(&args, &book)),
            Command::Ingest { args, config } => match settings(&config, |_| ()) {
                Ok(s) => ingest::run(args, s).await,
                Err(e) => Err(e),
            },
            Command::Chat(args) => chat::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Readiness(args) => readiness::run(args).await,
            Command::Eval(args) => apex_eval::run(args).await,
            Command::Models { command: ModelsCommand::Pull { args, config } } => match settings(&config, |_| ()) {
                Ok(s) => models::pull(&args, &s.data_dir).await.map(|_| 0),
                Err(e) => Err(e),
            },
        }
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("apex: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings from the file, the environment and then the command line's `flags`.
fn settings(config: &ConfigArgs, flags: impl FnOnce(&mut Settings)) -> anyhow::Result<Settings> {
    Ok(Settings::load(config.config.as_deref(), |s| {
        if let Some(dir) = &config.data_dir {
            s.data_dir = dir.clone();
        }
        flags(s);
    })?)
}

/// Every connection is a file descriptor, and the usual soft limit (1,024) is far below
/// what a server or a load generator holds: raise it to the hard limit the system allows.
/// Returns the limit now in force.
fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .unwrap_or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft))
}

/// Descriptors a server needs besides its connections (database, logs, listener, model).
const FD_HEADROOM: u64 = 64;

fn serve_settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    settings(&args.config, |s| {
        if let Some(bind) = args.bind {
            s.bind = bind;
        }
        if args.log_json {
            s.log_format = apex_server::LogFormat::Json;
        }
    })
}

/// The local model (candle) sizes its thread pools from `RAYON_NUM_THREADS` and
/// `CANDLE_NUM_THREADS` when it first computes; `APEX_LLM_THREADS` sets both. Called while
/// this process has a single thread, so that nothing reads the environment meanwhile.
fn model_threads(settings: &Settings) {
    if let Some(n) = settings.llm_threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}

async fn serve(settings: Settings, open_files: u64) -> anyhow::Result<()> {
    let _telemetry = apex_server::telemetry::init(settings.log_json());
    if open_files < settings.max_connections as u64 + FD_HEADROOM {
        tracing::warn!(
            open_files,
            max_connections = settings.max_connections,
            "the open-file limit is below the connection cap: connections past it will be refused by the system; raise the hard limit (ulimit -Hn) or lower APEX_MAX_CONNECTIONS"
        );
    }
    let listener =
        tokio::net::TcpListener::bind(settings.bind).await.with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, url = %format!("http://{addr}/"), data_dir = %settings.data_dir.display(), "listening; open the url for the chat page");
    apex_server::run(listener, settings, apex_server::shutdown_signal()).await
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let settings = settings(&args.config, |_| ())?;
    let auth = Auth::for_minting(&settings)?;
    println!("{}", auth.mint(&args.user, args.ttl, false).expect("for_minting has a signing key"));
    Ok(())
}

/// Prints the price each model resolves to in `book`; exit code 1 when one is not in it.
fn prices(args: &PricesArgs, book: &apex_costs::PriceBook) -> i32 {
    let mut code = 0;
    for name in &args.models {
        match book.price_for(name) {
            Some(p) => {
                println!(
                    "{name} → {} ({}): input {}, cached input {}, cache write {}, output {}, reasoning {} per 1M tokens; \
                     batch API -{}%{}",
                    p.model,
                    p.provider,
                    rate_label(p.input_per_mtok),
                    rate_label(p.cached_input_per_mtok),
                    rate_label(p.cache_write_per_mtok),
                    rate_label(p.output_per_mtok),
                    rate_label(p.reasoning_per_mtok),
                    p.batch_discount_pct,
                    if book.is_override(p) { " (negotiated, from the prices file)" } else { "" }
                );
                for tier in p.tiers {
                    println!(
                        "  prompts over {} tokens: input {}, cached input {}, cache write {}, output {} per 1M tokens",
                        apex_costs::group_thousands(tier.above_tokens),
                        rate_label(tier.input_per_mtok),
                        rate_label(tier.cached_input_per_mtok),
                        rate_label(tier.cache_write_per_mtok),
                        rate_label(tier.output_per_mtok),
                    );
                }
                let c = p.capabilities;
                let yes = |b: bool| if b { "yes" } else { "no" };
                println!(
                    "  tool calling {}, vision {}, reasoning {}, context window {}; source {}{}",
                    yes(c.tool_calling),
                    yes(c.vision),
                    yes(c.reasoning),
                    c.context_window.map_or("unknown".to_owned(), |w| format!("{} tokens", apex_costs::group_thousands(w))),
                    p.source,
                    if p.effective.is_empty() { String::new() } else { format!(" ({})", p.effective) },
                );
            }
            None => {
                println!("{name}: not in the catalog (its usage counts as unpriced unless the rows carry a cost)");
                code = 1;
            }
        }
    }
    let (source, generated) = apex_costs::catalog_source();
    println!("prices: {source}, snapshot of {generated}");
    code
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}`: expected a number and a unit (s, m, h, d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

//! `apex ingest FILE…`: import usage exports, either straight into the configured store
//! (no server needed) or by uploading them to a running server (`--url`).
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use apex_costs::import::{importers, open, Format};
use apex_ingest::{import_into, ImportReport};

#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Usage exports, gzip accepted (see --format)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The user the usage belongs to (required without --token)
    #[arg(long)]
    pub user: Option<String>,
    /// The files' format (detected when omitted)
    #[arg(long, value_parser = format_parser())]
    pub format: Option<Format>,
    /// Upload to a running server (http://HOST:PORT) instead of writing to the store
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token for --url (else one is minted for --user with the configured secret)
    #[arg(long, env = "APEX_TOKEN")]
    pub token: Option<String>,
    /// The shared organization (org:…) the usage goes to, instead of the user's own space
    /// (with --url the user must be one of its analysts or admins)
    #[arg(long)]
    pub org: Option<String>,
}

/// `--format`: every importer's name (with its description, for `--help`) and aliases.
fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    use clap::builder::TypedValueParser as _;
    let values = importers().iter().map(|i| {
        let also = if i.aliases.is_empty() { String::new() } else { format!(" (also: {})", i.aliases.join(", ")) };
        clap::builder::PossibleValue::new(i.name).aliases(i.aliases).help(format!("{}{also}", i.describes))
    });
    clap::builder::PossibleValuesParser::new(values).map(|name| Format::parse(&name).expect("a registered format name"))
}

/// Imports every file; returns the exit code (1 if any file failed or had rejected rows).
pub async fn run(args: IngestArgs, settings: apex_server::Settings) -> anyhow::Result<i32> {
    let named = args.format;
    let mut clean = true;
    match &args.url {
        None => {
            let owner = match (&args.org, &args.user) {
                (Some(org), _) => org.as_str(),
                (None, Some(user)) => user.as_str(),
                (None, None) => bail!("--user (or --org) is required when writing to the store"),
            };
            if settings.database_url.starts_with("sqlite:") {
                std::fs::create_dir_all(&settings.data_dir)?;
            }
            let store = apex_store::connect(&settings.database_url).await?;
            for path in &args.files {
                let report = to_store(store.as_ref(), owner, path, named).await?;
                clean &= print_report(path, &report);
            }
        }
        Some(url) => {
            let token = match (&args.token, &args.user) {
                (Some(t), _) => t.clone(),
                (None, Some(user)) => apex_server::Auth::for_minting(&settings)?
                    .mint(user, Duration::from_secs(3600), false)
                    .expect("for_minting has a signing key"),
                (None, None) => bail!("--url needs --token, or --user to mint one"),
            };
            for path in &args.files {
                let report = upload(url, &token, args.org.as_deref(), path, named).await?;
                clean &= print_report(path, &report);
            }
        }
    }
    Ok(if clean { 0 } else { 1 })
}

async fn to_store(
    store: &dyn apex_store::Store,
    owner: &str,
    path: &Path,
    named: Option<Format>,
) -> anyhow::Result<ImportReport> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?.len().max(1);
    let read = Arc::new(AtomicU64::new(0));
    let file = Counting { inner: File::open(path)?, read: read.clone() };
    // The server's path: the same sniffing, format decision and byte limits.
    let opened = open(file, named.map(Format::name), u64::MAX).map_err(|e| match e {
        apex_costs::import::OpenError::Undetected => anyhow::anyhow!("{}: cannot tell the format; pass --format", path.display()),
        e => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    let started = Instant::now();
    let mut last = Instant::now();
    let name = path.display().to_string();
    let report = import_into(store, &owner.into(), opened.format, opened.input, |rows| {
        if last.elapsed() >= Duration::from_millis(250) {
            last = Instant::now();
            let pct = read.load(Ordering::Relaxed) * 100 / size;
            eprint!("\r{name}: {pct:>3}%  {rows} rows  {:.1} s", started.elapsed().as_secs_f64());
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    eprint!("\r{}\r", " ".repeat(name.len() + 40));
    Ok(report)
}

async fn upload(url: &str, token: &str, org: Option<&str>, path: &Path, format: Option<Format>) -> anyhow::Result<ImportReport> {
    let body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    eprintln!("{}: uploading {:.1} MiB…", path.display(), body.len() as f64 / 1_048_576.0);
    let mut endpoint = format!("{}/api/usage/import", url.trim_end_matches('/'));
    if let Some(f) = format {
        endpoint.push_str(&format!("?format={}", f.name()));
    }
    let mut request = reqwest::Client::new().post(endpoint).bearer_auth(token).body(body);
    if let Some(org) = org {
        request = request.header("X-Apex-Org", org);
    }
    let response = request.send().await?;
    let status = response.status();
    let json: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{}: the server answered {status}: {}", path.display(), json["error"]["message"].as_str().unwrap_or(""));
    }
    serde_json::from_value(json).context("unexpected import report")
}

/// One line per file, then the rejected lines; true when nothing was rejected.
fn print_report(path: &Path, r: &ImportReport) -> bool {
    println!(
        "{}: {} rows read, {} imported, {} already there, {} rejected ({})",
        path.display(),
        r.rows_read,
        r.imported,
        r.duplicates,
        r.rejected_count,
        r.format.map_or("?", Format::name)
    );
    for bad in r.rejected.iter().take(20) {
        println!("  line {}: {}", bad.line, bad.reason);
    }
    if r.rejected_count > 20 {
        println!("  … and {} more", r.rejected_count - 20);
    }
    r.rejected_count == 0
}

/// Counts the bytes read from the file, for the progress line.
struct Counting {
    inner: File,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

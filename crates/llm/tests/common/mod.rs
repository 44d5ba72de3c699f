//! A real OpenAI-compatible server for tests: llama-cpp-python's, serving the reference
//! GGUF model on loopback. `.ci/run` installs both (`scripts/llm-test-deps`).
#![allow(dead_code)]
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The reference model: `APEX_TEST_GGUF`, or where `scripts/llm-test-deps` puts it.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("APEX_TEST_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/apex-test/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(path.is_file(), "the test model {} is missing: run scripts/llm-test-deps", path.display());
    path
}

pub struct LlamaServer {
    pub url: String,
    _child: Child,
}

/// Starts `python3 -m llama_cpp.server` on a free port and waits until it answers.
pub async fn llama_server() -> LlamaServer {
    let model = model_path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--n_ctx", "2048", "--n_threads", "2"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--model")
        .arg(&model)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 -m llama_cpp.server (pip install 'llama-cpp-python[server]'; see scripts/llm-test-deps)");
    let url = format!("http://127.0.0.1:{port}/v1");
    let started = Instant::now();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    loop {
        if let Ok(r) = http.get(format!("{url}/models")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(90), "llama_cpp.server did not start within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    LlamaServer { url, _child: child }
}

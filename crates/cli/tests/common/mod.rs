//! Test harness: a real server on 127.0.0.1:0 with a temporary data dir, driven by a real
//! WebSocket client (tokio-tungstenite) and a real HTTP client (reqwest).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apex_client::{Credentials, WsStream};
use apex_engine::{DynTool, ToolError, ToolValue};
use apex_server::{Auth, Server, Settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = "test-secret-0123456789abcdef";
/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(20);

/// An HTTP client whose every request gives up after `WAIT`: a server that never answers
/// fails the test instead of blocking CI.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().expect("http client")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test server: demo mode on, a known secret, a fresh data dir.
/// (Only the defaults and `overrides`: the process environment is not read.)
pub fn test_settings(dir: &TempDir, overrides: impl FnOnce(&mut Settings)) -> Settings {
    Settings::extract(figment::Figment::new(), |s| {
        s.data_dir = dir.path().to_path_buf();
        s.jwt_secret = Some(SECRET.into());
        s.bind = "127.0.0.1:0".parse().unwrap();
        overrides(s);
    })
    .expect("valid test settings")
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| (), |s| s).await
}

pub async fn spawn_with(overrides: impl FnOnce(&mut Settings), customize: impl FnOnce(Server) -> Server) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&dir, overrides);
    spawn_in(dir, settings, customize).await
}

pub async fn spawn_in(dir: TempDir, settings: Settings, customize: impl FnOnce(Server) -> Server) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = customize(Server::new(settings.clone()));
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    wait_healthy(addr).await;
    TestApp { addr, dir, settings, shutdown: Some(tx), task: Some(task) }
}

pub async fn wait_healthy(addr: SocketAddr) {
    let http = http_client();
    for _ in 0..500 {
        if let Ok(r) = http.get(format!("http://{addr}/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server at {addr} never became healthy");
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, user: &str) -> String {
        Auth::from_settings(&self.settings).unwrap().mint(user, Duration::from_secs(3600), false).unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = http_client().get(self.http(path)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Imports the month of usage in `tests/fixtures/usage.csv` for the token's user.
    pub async fn import_fixture(&self, token: &str) {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/usage.csv")).unwrap();
        let r = http_client().post(self.http("/api/usage/import")).bearer_auth(token).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let report: Value = r.json().await.unwrap();
        assert_eq!(report["imported"], 112, "{report}");
    }

    /// Imports the fixture again: every row is already there.
    pub async fn import_fixture_again(&self, token: &str) {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/usage.csv")).unwrap();
        let r = http_client().post(self.http("/api/usage/import")).bearer_auth(token).body(body).send().await.unwrap();
        let report: Value = r.json().await.unwrap();
        assert_eq!((report["imported"].as_u64(), report["duplicates"].as_u64()), (Some(0), Some(112)), "{report}");
    }

    /// Triggers graceful shutdown and waits for the server to stop.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("server stops").unwrap().unwrap();
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub enum Auth_ {
    Demo,
    Header(String),
    Subprotocol(String),
    Query(String),
}
pub use Auth_ as By;

pub struct Client {
    pub ws: WsStream,
    pub ready: Value,
    pub user_id: String,
    /// The token that keeps this identity (issued in demo mode, or the one used).
    pub token: Option<String>,
    pub subprotocol: Option<String>,
    /// Frames read ahead while checking that a finished run sent nothing more; the next
    /// reads return them first.
    pending: std::collections::VecDeque<Frame>,
}

/// What the next read from the socket gave.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Close(Option<u16>),
}

pub async fn try_connect(url: &str, by: By) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let (credentials, used) = match &by {
        By::Demo => (Credentials::None, None),
        By::Header(t) => (Credentials::Bearer(t), Some(t.clone())),
        By::Subprotocol(t) => (Credentials::Subprotocol(t), Some(t.clone())),
        By::Query(t) => (Credentials::Query(t), Some(t.clone())),
    };
    let request = apex_client::request(url, credentials).expect("a valid upgrade request");
    let (ws, response) = tokio::time::timeout(WAIT, apex_client::open(request)).await.expect("the upgrade completes in time")?;
    let subprotocol = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    let mut client =
        Client { ws, ready: Value::Null, user_id: String::new(), token: used, subprotocol, pending: Default::default() };
    let ready = client.next_json().await;
    assert_eq!(ready["type"], "connection_ready", "first frame must be connection_ready: {ready}");
    client.user_id = ready["user_id"].as_str().unwrap().to_owned();
    if let Some(t) = ready["token"].as_str() {
        client.token = Some(t.to_owned());
    }
    client.ready = ready;
    Ok(client)
}

pub async fn connect(app: &TestApp, by: By) -> Client {
    try_connect(&app.ws_url(), by).await.expect("websocket connects")
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    pub async fn next_frame(&mut self) -> Frame {
        self.next_frame_within(WAIT).await
    }

    /// The next frame, waiting at most `wait` (a local model may take longer than `WAIT`).
    pub async fn next_frame_within(&mut self, wait: Duration) -> Frame {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        // One deadline for the whole wait: pings arriving forever must not keep it going.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.expect("a frame arrives in time");
            match msg {
                Some(Ok(Message::Text(t))) => return Frame::Json(serde_json::from_str(&t).expect("server sends JSON")),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f: CloseFrame| u16::from(f.code));
                    // The server never answers with an internal error: any test that reads
                    // frames fails on one, whatever it expected next.
                    assert_ne!(code, Some(1011), "the server closed the connection with 1011 (internal error)");
                    return Frame::Close(code);
                }
                Some(Ok(Message::Binary(_))) => panic!("server sent a binary frame"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Frame::Close(None),
            }
        }
    }

    pub async fn next_json(&mut self) -> Value {
        match self.next_frame().await {
            Frame::Json(v) => v,
            Frame::Close(code) => panic!("connection closed ({code:?}) while a frame was expected"),
        }
    }

    /// Sends a user message and returns `message_accepted`.
    pub async fn ask(&mut self, text: &str, thread: Option<&str>) -> Value {
        let mut msg = json!({"type": "user_message", "text": text});
        if let Some(t) = thread {
            msg["thread_id"] = json!(t);
        }
        self.send(msg).await;
        let accepted = self.next_json().await;
        assert_eq!(accepted["type"], "message_accepted", "{accepted}");
        accepted
    }

    /// Reads run events until the terminal one, then checks that the run sends nothing
    /// after it.
    pub async fn events_until_terminal(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let v = self.next_json().await;
            let terminal = is_terminal(&v);
            events.push(v);
            if terminal {
                let run_id = events.last().unwrap()["run_id"].clone();
                self.assert_run_over(&run_id).await;
                return events;
            }
        }
    }

    /// Nothing of `run_id` follows its terminal event on this socket: everything the server
    /// sent before the answer to a `ping` is read (a duplicated terminal event or a late
    /// event would be among it); other frames are kept for the next reads.
    async fn assert_run_over(&mut self, run_id: &Value) {
        if self.ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.is_err() {
            return; // the server closed the socket: the next read says how
        }
        let mut read = Vec::new();
        loop {
            match self.next_frame().await {
                Frame::Json(v) if v["type"] == "pong" => break,
                Frame::Json(v) => {
                    assert!(
                        v["run_id"] != *run_id || v.get("seq").is_none(),
                        "run {run_id} sent an event after its terminal event: {v}"
                    );
                    read.push(Frame::Json(v));
                }
                close => {
                    read.push(close);
                    break;
                }
            }
        }
        self.pending.extend(read);
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub fn is_terminal(v: &Value) -> bool {
    matches!(v["type"].as_str(), Some("final_response" | "run_failed" | "run_cancelled" | "run_timed_out" | "run_interrupted"))
}

/// Checks everything a successful golden-path run promises and returns its answer text.
pub fn assert_golden_run(events: &[Value]) -> String {
    assert_golden_run_streamed_in(events, 2)
}

/// [`assert_golden_run`] for an answer that may come in fewer pieces: a model's answer
/// streams a sentence at a time (each is checked before it is sent), so a one-sentence
/// answer is one delta.
pub fn assert_golden_run_streamed_in(events: &[Value], min_deltas: usize) -> String {
    assert_golden_run_with(events, min_deltas, false)
}

/// [`assert_golden_run_streamed_in`] where a model's tool calls may fail (invalid
/// arguments are streamed as failed calls and told to the model); the agents' own calls
/// still must not.
pub fn assert_golden_run_with(events: &[Value], min_deltas: usize, model_calls_may_fail: bool) -> String {
    assert!(!events.is_empty());
    let run_id = events[0]["run_id"].clone();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i as u64 + 1), "seq must be contiguous from 1: {e}");
        assert_eq!(e["run_id"], run_id);
        assert!(e["ts"].as_u64().is_some());
    }
    assert_eq!(events[0]["type"], "agent_started");
    assert_eq!(events[0]["agent"], "supervisor");
    let terminals: Vec<_> = events.iter().filter(|e| is_terminal(e)).collect();
    assert_eq!(terminals.len(), 1, "exactly one terminal event");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "final_response", "{last}");

    // The plan follows the question as triage read it: savings are looked for when the
    // question is about them (or a what-if, or the whole picture), and the month projected
    // when it asks for a forecast or the whole picture.
    let operation = events
        .iter()
        .find(|e| e["type"] == "tool_completed" && e["agent"] == "triage")
        .and_then(|e| e["result"]["question"]["operation"].as_str())
        .expect("triage reports how it read the question")
        .to_owned();
    let savings = matches!(operation.as_str(), "overview" | "savings" | "what_if");
    let projects = matches!(operation.as_str(), "overview" | "forecast");
    let planned: Vec<&str> = ["supervisor", "triage", "data", "optimization", "report"]
        .into_iter()
        .filter(|a| *a != "optimization" || savings)
        .collect();
    let started: Vec<&str> =
        events.iter().filter(|e| e["type"] == "agent_started").map(|e| e["agent"].as_str().unwrap()).collect();
    assert_eq!(started, planned, "the agents planned for a question of type {operation}");
    for &agent in &planned {
        let of = |t: &str| events.iter().filter(|e| e["type"] == t && e["agent"] == agent).count();
        assert_eq!(of("agent_started"), 1, "{agent}");
        assert!(of("agent_thinking") >= 1, "{agent} thinks");
        if agent != "report" || projects {
            assert!(of("tool_executing") >= 1, "{agent} calls a tool");
        }
        assert_eq!(of("agent_completed"), 1, "{agent}");
        let completed = events.iter().find(|e| e["type"] == "agent_completed" && e["agent"] == agent).unwrap();
        assert!(completed["summary"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(completed["duration_ms"].as_u64().is_some());
        // Microseconds too: the steps take well under a millisecond, and none takes no time.
        let us = completed["duration_us"].as_u64().expect("duration_us");
        assert!(us > 0 && us / 1000 == completed["duration_ms"].as_u64().unwrap(), "{completed}");
    }
    // Sub-agents run strictly one after another, inside the supervisor.
    let position = |t: &str, agent: &str| events.iter().position(|e| e["type"] == t && e["agent"] == agent).unwrap();
    for pair in planned[1..].windows(2) {
        assert!(position("agent_completed", pair[0]) < position("agent_started", pair[1]));
    }
    assert!(position("agent_completed", "report") < position("agent_completed", "supervisor"));

    let mut open: HashMap<String, &Value> = HashMap::new();
    for e in events {
        match e["type"].as_str().unwrap() {
            "tool_executing" => {
                assert!(e["args"].is_object());
                assert!(open.insert(e["tool_call_id"].as_str().unwrap().to_owned(), e).is_none(), "unique call ids");
            }
            "tool_completed" => {
                let started = open.remove(e["tool_call_id"].as_str().unwrap()).expect("completion follows its start");
                assert_eq!(started["tool"], e["tool"]);
                assert_eq!(started["agent"], e["agent"]);
                assert!(e["duration_ms"].as_u64().is_some());
                if model_calls_may_fail && e["ok"] == false {
                    assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                    continue;
                }
                assert_eq!(e["ok"], true);
                assert!(e["result"].is_object());
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "every tool call completes");

    let streamed: String = events.iter().filter(|e| e["type"] == "response_delta").map(|e| e["text"].as_str().unwrap()).collect();
    let final_text = last["text"].as_str().unwrap();
    let deltas = events.iter().filter(|e| e["type"] == "response_delta").count();
    assert!(deltas >= min_deltas, "the answer streams ({deltas} response_delta events)");
    assert_eq!(streamed, final_text, "deltas add up to the final text");
    final_text.to_owned()
}

/// A tool that always fails, in place of the built-in tool of that name.
pub struct FailingTool(pub &'static str);

#[async_trait::async_trait]
impl DynTool for FailingTool {
    fn name(&self) -> &str {
        self.0
    }
    fn agent(&self) -> apex_protocol::AgentName {
        apex_engine::tools::builtin().get(self.0).map_or(apex_protocol::AgentName::Data, |t| t.agent())
    }
    fn description(&self) -> &str {
        "always fails"
    }
    fn parameters(&self) -> Value {
        json!({ "type": "object" })
    }
    async fn call(&self, _ctx: &apex_engine::RunContext, _args: Value) -> Result<ToolValue, ToolError> {
        Err(ToolError("the usage warehouse refused the query".into()))
    }
}

/// The built-in tool `name`, made to take `ms` milliseconds: for disconnects, stops and
/// timeouts in the middle of a run.
pub fn slow(name: &'static str, ms: u64) -> Arc<dyn DynTool> {
    let inner = apex_engine::tools::builtin().get(name).cloned().expect("a built-in tool");
    Arc::new(apex_engine::tools::Delayed { inner, delay: Duration::from_millis(ms) })
}

/// A TCP proxy in front of a real peer that can cut every connection passing through it,
/// like a flaky network, or refuse all of them for a while, like a peer that restarts.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl CuttingProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = down.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refusing.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped at once: the peer is down
                }
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {} // both sockets drop: the connection is cut
                    }
                });
            }
        });
        Self { addr, cut, down }
    }

    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Cuts every connection and refuses new ones until [`up`](Self::up).
    pub fn down(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut_all();
    }

    pub fn up(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A real OpenAI-compatible server: llama-cpp-python's, serving the reference GGUF model
/// on loopback (`scripts/llm-test-deps` installs both). Stopped when dropped.
pub struct LlamaServer {
    pub url: String,
    _child: tokio::process::Child,
}

pub async fn llama_server() -> LlamaServer {
    let model = std::env::var_os("APEX_TEST_GGUF").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/apex-test/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(model.is_file(), "the test model {} is missing: run scripts/llm-test-deps", model.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new("python3")
        .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--n_ctx", "4096", "--n_threads", "2"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--model")
        .arg(&model)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 -m llama_cpp.server (see scripts/llm-test-deps)");
    let url = format!("http://127.0.0.1:{port}/v1");
    let http = http_client();
    let started = std::time::Instant::now();
    while !http.get(format!("{url}/models")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(started.elapsed() < Duration::from_secs(90), "llama_cpp.server did not start within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    LlamaServer { url, _child: child }
}

/// A child process (`apex serve`, say) killed when this is dropped, so that a failing
/// assertion does not leave it running.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `apex serve` (arguments and environment already set; `--bind 127.0.0.1:0` unless
/// the test must come back on the same port) and waits until it answers, at the address the
/// server itself says it listens on. Choosing a free port and handing it over is racy when
/// tests run side by side — another test's server can bind it first, and this test would then
/// talk to that one — so the address comes from the server's own "listening" log line.
pub async fn spawn_serve(command: &mut std::process::Command) -> (KillOnDrop, SocketAddr) {
    use std::io::BufRead;
    let level = command
        .get_envs()
        .find(|(k, _)| *k == "RUST_LOG")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "warn".into());
    command
        .env("RUST_LOG", format!("{level},apex=info"))
        .env("APEX_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("the apex binary starts");
    let stderr = child.stderr.take().expect("piped");
    let child = KillOnDrop(child);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Reads the log to its end, so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let Some(sender) = tx.take() else { continue };
            let addr = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| {
                let listening = v["message"].as_str()?.starts_with("listening");
                listening.then(|| v["addr"].as_str()?.parse::<SocketAddr>().ok()).flatten()
            });
            match addr {
                Some(addr) => drop(sender.send(Ok(addr))),
                None => {
                    seen.push(line);
                    tx = Some(sender);
                }
            }
        }
        if let Some(sender) = tx {
            let _ = sender.send(Err(seen.join("\n")));
        }
    });
    let addr = match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(Ok(addr))) => addr,
        Ok(Ok(Err(log))) => panic!("apex serve ended without listening:\n{log}"),
        _ => panic!("apex serve did not say where it listens within 60 s"),
    };
    wait_healthy(addr).await;
    (child, addr)
}

/// `apex serve` as a process of its own, on a free loopback port with a temporary data
/// dir, for tests that measure the server process itself (its memory, its descriptors).
pub struct ServeProcess {
    pub child: KillOnDrop,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl ServeProcess {
    /// Starts it with these environment variables (on top of demo mode and SQLite in the
    /// data dir) and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), env).await
    }

    pub async fn start_in(dir: TempDir, env: &[(&str, &str)]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_apex"));
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("APEX_DATA_DIR", dir.path())
            .env("DEMO_MODE", "1")
            .env("APEX_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("APEX_ENV");
        for (k, v) in env {
            command.env(k, v);
        }
        let (child, addr) = spawn_serve(&mut command).await;
        Self { child, addr, dir }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident and peak resident memory of the server process, in MiB.
    pub fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the server is running");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// The result of the run's `query_slice` call.
pub fn slice_of(events: &[Value]) -> Value {
    events
        .iter()
        .find(|e| e["type"] == "tool_completed" && e["tool"] == "query_slice")
        .map(|e| e["result"].clone())
        .expect("the run narrowed the usage with query_slice")
}

/// A micro-dollar amount of a tool result as answers print it.
pub fn money(micros: &Value) -> String {
    apex_costs::Money(micros.as_i64().unwrap()).to_string()
}

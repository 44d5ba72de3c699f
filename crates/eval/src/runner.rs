//! Asks the bank like a user does: a real server on 127.0.0.1:0 with a fresh data dir and
//! the embedded store, the generated usage imported over `POST /api/usage/import`, and each
//! question sent over a WebSocket — a new thread per lead question, a follow-up in its
//! lead's thread — reading the run's events up to its final answer.
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use apex_client::{Incoming, WsStream};
use apex_protocol::{ErrorCode, EventKind, RunId, ServerFrame, ThreadId};
use apex_server::{Auth, Server, Settings};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::bank::Question;
use crate::{ModelNote, Writer};

/// The user the data is imported for and the questions asked as.
const USER: &str = "eval-analyst";
/// Times a question refused for coming too fast is sent again (100 ms apart).
const RATE_LIMITED_RETRIES: u32 = 50;
/// Longest wait for one answer.
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// What the server said to one question.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// The final answer's text (or what a timed-out run had written).
    pub text: String,
    /// Why there is no final answer, when there is none.
    pub error: Option<String>,
    /// What the answer-writing model did, when one wrote the answer.
    pub model: Option<ModelNote>,
}

/// A server of our own, stopped when dropped.
struct LocalServer {
    addr: std::net::SocketAddr,
    settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl LocalServer {
    async fn start(config: Option<&Path>, writer: &Writer) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a temporary data dir")?;
        let figment = Settings::sources(config, std::env::vars())?;
        let secret = format!("eval-{}-{}", std::process::id(), now_nanos());
        let settings = Settings::extract(figment, |s| {
            if let Some(llm) = &writer.llm {
                s.llm = llm.clone();
            }
            if let Some(mode) = &writer.llm_mode {
                s.llm_mode = Some(mode.clone());
            }
            // The model `apex models pull` fetched lives in the configured data dir.
            if s.llm == "local" && s.llm_model_path.is_none() {
                s.llm_model_path = Some(apex_llm::local::default_model_path(&s.data_dir));
            }
            s.data_dir = dir.path().to_path_buf();
            s.database_url = Default::default();
            s.redis_url = None;
            s.jwt_secret = Some(secret.into());
            s.demo_mode = false;
            s.bind = ([127, 0, 0, 1], 0).into();
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(Server::new(settings.clone()).serve(listener, async move {
            let _ = rx.await;
        }));
        let server = LocalServer { addr, settings, shutdown: Some(tx), task: Some(task), _dir: dir };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        for _ in 0..1000 {
            if let Ok(r) = http.get(format!("http://{}/health", self.addr)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("the server at {} never became healthy", self.addr)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task).await.context("the server stops")???;
        }
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Who writes the answers under `settings`, in words.
fn writer_of(settings: &Settings) -> String {
    let mode = |default: &str| settings.llm_mode.clone().unwrap_or_else(|| default.to_owned());
    match settings.llm.as_str() {
        "openai" => format!(
            "the model {} at {} ({})",
            settings.llm_model.as_deref().unwrap_or("gpt-4o-mini"),
            settings.openai_base_url,
            mode("plan")
        ),
        "local" => {
            let path = settings.llm_model_path.as_deref().map_or_else(|| "?".into(), |p| p.display().to_string());
            format!("the local model {path} ({})", mode("phrase"))
        }
        _ => "the built-in writer".into(),
    }
}

/// Starts a server (settings from the defaults, `config` if given, the environment and
/// `writer`), imports `csv` and asks every question; who wrote the answers, and one answer
/// per question, in order.
pub async fn ask_all(
    config: Option<&Path>,
    writer: &Writer,
    csv: String,
    rows: usize,
    questions: &[Question],
) -> anyhow::Result<(String, Vec<Answer>)> {
    let server = LocalServer::start(config, writer).await?;
    let writer = writer_of(&server.settings);
    let model_writes = server.settings.llm != "builtin";
    let token = Auth::from_settings(&server.settings)?.mint(USER, Duration::from_secs(3600), false).context("no signing key")?;
    import(&server, &token, csv, rows).await?;
    let url = format!("ws://{}/ws", server.addr);
    let mut ws = apex_client::connect(&url, Some(&token)).await.context("the WebSocket connects")?;
    match next_incoming(&mut ws).await? {
        Incoming::Frame(ServerFrame::ConnectionReady { demo: false, .. }) => {}
        other => bail!("expected connection_ready for a signed-in user, got {other:?}"),
    }
    let mut answers = Vec::with_capacity(questions.len());
    let mut thread: Option<ThreadId> = None;
    for q in questions {
        let in_thread = if q.follow_up { thread } else { None };
        let (mut answer, asked_in) = tokio::time::timeout(ANSWER_WAIT, ask(&mut ws, &q.text, in_thread))
            .await
            .unwrap_or_else(|_| Ok((Answer { error: Some("no answer in time".into()), ..Answer::default() }, None)))?;
        if let Some((_, run)) = asked_in.filter(|_| model_writes) {
            answer.model = model_note(&server, &token, run).await?;
        }
        thread = asked_in.map(|(t, _)| t).or(in_thread);
        answers.push(answer);
    }
    let _ = ws.close(None).await;
    server.stop().await?;
    Ok((writer, answers))
}

async fn import(server: &LocalServer, token: &str, csv: String, rows: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let response = http
        .post(format!("http://{}/api/usage/import", server.addr))
        .bearer_auth(token)
        .body(csv)
        .send()
        .await
        .context("the usage import")?;
    let status = response.status();
    let report: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() || report["imported"].as_u64() != Some(rows as u64) {
        bail!("the usage import answered {status}: {report}");
    }
    Ok(())
}

async fn next_incoming(ws: &mut WsStream) -> anyhow::Result<Incoming> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return apex_client::decode(&text),
            Some(Ok(Message::Close(frame))) => bail!("the server closed the connection: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("reading from the WebSocket"),
            None => bail!("the connection ended"),
        }
    }
}

/// What the report agent recorded about the model that wrote run `run`'s answer (see
/// docs/models.md), read from `GET /api/runs/{id}`.
async fn model_note(server: &LocalServer, token: &str, run: RunId) -> anyhow::Result<Option<ModelNote>> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let response = http.get(format!("http://{}/api/runs/{run}", server.addr)).bearer_auth(token).send().await?;
    let body: Value = response.error_for_status()?.json().await?;
    let report = body["agent_results"].as_array().into_iter().flatten().find(|a| a["agent"] == "report");
    Ok(report.and_then(|r| serde_json::from_value(r["output"]["model"].clone()).ok()))
}

/// Asks `text` (in `thread`, if given) and reads up to the run's terminal event; gives the
/// answer and the thread and run it was asked in. A refused question is an answer with an
/// error.
async fn ask(ws: &mut WsStream, text: &str, thread: Option<ThreadId>) -> anyhow::Result<(Answer, Option<(ThreadId, RunId)>)> {
    let mut frame = json!({"type": "user_message", "text": text});
    if let Some(t) = thread {
        frame["thread_id"] = json!(t.to_string());
    }
    ws.send(Message::Text(frame.to_string().into())).await.context("sending a question")?;
    let mut refused = 0;
    let (run, thread) = loop {
        match next_incoming(ws).await? {
            Incoming::Frame(ServerFrame::MessageAccepted { run_id, thread_id, .. }) => break (run_id, thread_id),
            // Asked faster than the server takes frames: slow down, as a client should.
            Incoming::Frame(ServerFrame::Error { code: ErrorCode::RateLimited, .. }) if refused < RATE_LIMITED_RETRIES => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                ws.send(Message::Text(frame.to_string().into())).await.context("sending a question")?;
            }
            Incoming::Frame(ServerFrame::Error { code, message, .. }) => {
                let error = Some(format!("refused ({code:?}): {message}"));
                return Ok((Answer { error, ..Answer::default() }, None));
            }
            _ => continue,
        }
    };
    loop {
        let Incoming::Event(event) = next_incoming(ws).await? else { continue };
        if event.run_id != run {
            continue;
        }
        let (text, error) = match event.kind {
            EventKind::FinalResponse { text, .. } => (text, None),
            EventKind::RunFailed { code, message } => (String::new(), Some(format!("{code}: {message}"))),
            EventKind::RunTimedOut { partial_text } => (partial_text, Some("timed out".into())),
            EventKind::RunInterrupted { partial_text } => (partial_text, Some("interrupted".into())),
            EventKind::RunCancelled {} => (String::new(), Some("cancelled".into())),
            _ => continue,
        };
        return Ok((Answer { text, error, model: None }, Some((thread, run))));
    }
}

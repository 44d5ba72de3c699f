//! `apex chat`: a terminal client for the Apex WebSocket protocol.
//!
//! Read top to bottom: the arguments, [`run`] (connect, reconnect with backoff), the
//! [`Chat`] state machine that one connection at a time drives, the [`Renderer`] that turns
//! events into lines. Connecting and decoding frames is `apex_client`'s (shared with
//! `apex bench` and `apex readiness`).
//!
//! Reconnecting never duplicates or drops text: the client remembers the last `seq` it
//! printed for the active run, asks the new connection to `resume` after it, and prints
//! only the event whose `seq` is exactly the next one.
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apex_client::{connect, decode, error_chain, Incoming, WsStream};
use apex_protocol::{close, EventKind, RunId, ServerFrame, ThreadId};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// Server WebSocket URL
    #[arg(long, env = "APEX_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Bearer token (omit in demo mode)
    #[arg(long, env = "APEX_TOKEN")]
    pub token: Option<String>,
    /// Print raw JSON frames instead of readable lines
    #[arg(long)]
    pub json: bool,
    /// Send one message, print the run, exit 0 on final_response, non-zero otherwise
    #[arg(long)]
    pub once: Option<String>,
    /// Continue an existing thread
    #[arg(long)]
    pub thread: Option<String>,
    /// Ask about a shared organization's usage (org:…, one you belong to) instead of your own
    #[arg(long)]
    pub org: Option<String>,
}

/// Exit codes of `apex chat` (meaningful with `--once`).
const EXIT_OK: i32 = 0;
const EXIT_CONNECTION: i32 = 1;
const EXIT_RUN_NOT_COMPLETED: i32 = 2;
const EXIT_REFUSED: i32 = 3;

/// Reconnect delays double from the first to the last, then stay there.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// With `--once` nobody is watching: give up after this many failed attempts in a row.
const ONCE_MAX_ATTEMPTS: u32 = 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// We ping this often; a server silent for `SILENT_LIMIT` is treated as gone, because a
/// half-open TCP connection would otherwise hang the client forever.
const KEEPALIVE: Duration = Duration::from_secs(15);
const SILENT_LIMIT: Duration = Duration::from_secs(45);
/// Longest tool-argument JSON shown on one line.
const ARGS_SHOWN: usize = 120;

pub async fn run(args: ChatArgs) -> anyhow::Result<i32> {
    // Fail fast on a malformed URL or thread id instead of "reconnecting" forever.
    args.url.as_str().into_client_request().with_context(|| format!("invalid --url {}", args.url))?;
    let thread =
        args.thread.as_deref().map(str::parse::<ThreadId>).transpose().context("--thread must be a thread id (a UUID)")?;
    let once = args.once.is_some();
    let mut chat = Chat::new(&args, thread);
    let mut input = (!once).then(stdin_lines);
    if !once {
        chat.render.status(format_args!("type a message and press Enter; /stop stops the run, /quit exits"));
    }
    loop {
        if chat.failures == 0 {
            chat.render.status(format_args!("connecting to {}…", chat.url));
        }
        let end = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&chat.url, chat.token.as_deref())).await {
            Ok(Ok(ws)) => chat.session(ws, &mut input).await,
            Ok(Err(e)) if is_refusal(&e) => {
                chat.render.status(format_args!("the server refused the connection: {}", error_chain(&e)));
                return Ok(EXIT_CONNECTION);
            }
            Ok(Err(e)) => SessionEnd::Lost(error_chain(&e)),
            Err(_) => SessionEnd::Lost("connect timed out".into()),
        };
        let reason = match end {
            SessionEnd::Exit(code) => return Ok(code),
            SessionEnd::Lost(reason) => reason,
        };
        chat.failures += 1;
        if once && chat.failures >= ONCE_MAX_ATTEMPTS {
            chat.render.status(format_args!("giving up after {} attempts: {reason}", chat.failures));
            return Ok(EXIT_CONNECTION);
        }
        let delay = backoff(chat.failures);
        chat.render.status(format_args!("{reason}; reconnecting in {:.2} s…", delay.as_secs_f64()));
        tokio::time::sleep(delay).await;
    }
}

/// 250 ms, 500 ms, 1 s … capped at 5 s, plus up to 20 % jitter so that every client of a
/// restarting server does not come back in the same millisecond.
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(8)).min(BACKOFF_MAX);
    let jitter_permille = u64::from(uuid::Uuid::new_v4().as_fields().0 % 200);
    base + base.mul_f64(jitter_permille as f64 / 1000.0)
}

/// Whether a failed connect will fail the same way next time (bad token, wrong path).
fn is_refusal(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<WsError>() {
        Some(WsError::Http(response)) => {
            let status = response.status();
            status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::REQUEST_TIMEOUT
        }
        Some(WsError::Url(_)) => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// The state machine
// ---------------------------------------------------------------------------------------

/// How a connection ended.
enum SessionEnd {
    /// Stop the process with this code.
    Exit(i32),
    /// The connection is gone (why); reconnect.
    Lost(String),
}

/// What the session loop does after handling one input.
enum Flow {
    Continue,
    Exit(i32),
    Lost(String),
}

/// A user message sent that the server has not accepted yet.
struct Pending {
    text: String,
    /// Lets the server recognise a resend after a reconnect as the same message.
    client_message_id: String,
    /// When it was first sent: a run's total time counts from here.
    first_sent: Instant,
    /// Sent on an earlier connection too: the server may have accepted it already.
    resent: bool,
}

/// The run whose events we are printing.
struct ActiveRun {
    id: RunId,
    /// The last seq printed; everything up to it is on the screen.
    last_seq: u64,
    /// The `after_seq` of the last `resume` we sent, so a gap asks only once.
    resumed_after: Option<u64>,
    started: Instant,
}

struct Chat {
    url: String,
    token: Option<String>,
    once: bool,
    thread: Option<ThreadId>,
    /// Messages typed (or piped) and not sent yet: one run at a time per thread.
    queued: VecDeque<String>,
    pending: Option<Pending>,
    active: Option<ActiveRun>,
    /// This connection has received `connection_ready`; until then nothing is sent.
    connected: bool,
    /// Frames queued by the handlers, sent by the session loop.
    outbox: Vec<String>,
    /// Consecutive failed connection attempts; reset by `connection_ready`.
    failures: u32,
    /// Stdin is exhausted: exit as soon as nothing is in flight or queued.
    quit_when_idle: bool,
    render: Renderer,
}

/// Stdin lines, when reading them (not with `--once`).
type Input = Option<mpsc::Receiver<String>>;

impl Chat {
    fn new(args: &ChatArgs, thread: Option<ThreadId>) -> Self {
        let url = match &args.org {
            // An organization's id (`org:` and a UUID) needs no escaping in a query.
            Some(org) => format!("{}{}org={org}", args.url, if args.url.contains('?') { '&' } else { '?' }),
            None => args.url.clone(),
        };
        Self {
            url,
            token: args.token.clone(),
            once: args.once.is_some(),
            thread,
            queued: args.once.iter().cloned().collect(),
            pending: None,
            active: None,
            connected: false,
            outbox: Vec::new(),
            failures: 0,
            quit_when_idle: false,
            render: Renderer::new(args.json),
        }
    }

    /// Drives one connection until it drops or the user is done.
    async fn session(&mut self, mut ws: WsStream, input: &mut Input) -> SessionEnd {
        self.connected = false;
        self.outbox.clear();
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        let mut last_heard = Instant::now();
        loop {
            let flow = tokio::select! {
                msg = ws.next() => {
                    last_heard = Instant::now();
                    self.on_message(msg)
                }
                line = next_line(input) => match line {
                    Some(line) => self.on_line(&line),
                    None => {
                        *input = None;
                        self.on_end_of_input()
                    }
                },
                _ = keepalive.tick() => {
                    if last_heard.elapsed() > SILENT_LIMIT {
                        Flow::Lost("the server stopped answering".into())
                    } else {
                        self.outbox.push(json!({"type": "ping"}).to_string());
                        Flow::Continue
                    }
                }
            };
            for frame in self.outbox.drain(..) {
                if let Err(e) = ws.send(Message::text(frame)).await {
                    return SessionEnd::Lost(format!("send failed: {e}"));
                }
            }
            match flow {
                Flow::Continue => {}
                Flow::Exit(code) => {
                    // Polite close; the exit code does not depend on it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return SessionEnd::Exit(code);
                }
                Flow::Lost(reason) => return SessionEnd::Lost(reason),
            }
        }
    }

    fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Flow {
        match msg {
            None => Flow::Lost("the connection ended".into()),
            Some(Err(e)) => Flow::Lost(format!("connection error: {e}")),
            Some(Ok(Message::Text(text))) => self.on_text(&text),
            Some(Ok(Message::Close(frame))) => Flow::Lost(describe_close(frame.as_ref())),
            // Pings are answered by tungstenite as we read; nothing else is protocol.
            Some(Ok(_)) => Flow::Continue,
        }
    }

    fn on_text(&mut self, text: &str) -> Flow {
        match decode(text) {
            Ok(Incoming::Frame(frame)) => {
                self.render.raw(text);
                self.on_frame(frame)
            }
            Ok(Incoming::Event(event)) => self.on_event(event.run_id, event.seq, Some(&event.kind), text),
            Ok(Incoming::OtherEvent { run_id, seq, kind }) => {
                self.render.status(format_args!("(skipping an event of unknown type `{kind}`)"));
                self.on_event(run_id, seq, None, text)
            }
            Err(e) => {
                self.render.status(format_args!("(ignoring an undecodable frame: {e:#})"));
                Flow::Continue
            }
        }
    }

    fn on_frame(&mut self, frame: ServerFrame) -> Flow {
        match frame {
            ServerFrame::ConnectionReady { user_id, demo, token, .. } => {
                self.failures = 0;
                self.connected = true;
                // Keep the first identity: a demo token from a later connection would be a
                // new user who cannot resume our run.
                if self.token.is_none() {
                    self.token = token;
                }
                let demo = if demo { " (demo)" } else { "" };
                self.render.status(format_args!("connected as {user_id}{demo}"));
                self.on_ready();
                Flow::Continue
            }
            ServerFrame::Pong => Flow::Continue,
            ServerFrame::Error { code, message, run_id, client_message_id } => {
                self.render.status(format_args!("error {}: {message}", code.as_str()));
                self.on_error(code, run_id, client_message_id)
            }
            ServerFrame::MessageAccepted { run_id, thread_id, client_message_id, .. } => {
                self.on_accepted(run_id, thread_id, client_message_id);
                Flow::Continue
            }
            ServerFrame::ServerShutdown { grace_ms } => {
                self.render.status(format_args!("the server is restarting (grace {grace_ms} ms)"));
                Flow::Continue
            }
        }
    }

    /// A fresh connection: pick up where the last one left off.
    fn on_ready(&mut self) {
        if let Some(run) = &mut self.active {
            run.resumed_after = Some(run.last_seq);
            self.outbox.push(resume_frame(run.id, run.last_seq));
        } else if let Some(pending) = &mut self.pending {
            // Same client_message_id: the server recognises it if the first copy arrived.
            pending.resent = true;
            self.outbox.push(pending.to_frame(self.thread));
        } else {
            self.send_next();
        }
    }

    /// Sends the next queued message when connected and no run is in flight.
    fn send_next(&mut self) {
        if !self.connected || self.active.is_some() || self.pending.is_some() {
            return;
        }
        if let Some(text) = self.queued.pop_front() {
            let pending = Pending::new(text);
            self.outbox.push(pending.to_frame(self.thread));
            self.pending = Some(pending);
        }
    }

    fn on_error(&mut self, code: apex_protocol::ErrorCode, run_id: Option<RunId>, cid: Option<String>) -> Flow {
        let about_pending = match (&self.pending, cid.as_deref()) {
            (Some(p), Some(cid)) => p.client_message_id == cid,
            // An error naming neither message nor run while a message waits is its answer.
            (Some(_), None) => run_id.is_none(),
            (None, _) => false,
        };
        let run_lost =
            code == apex_protocol::ErrorCode::NotFound && run_id.is_some() && self.active.as_ref().map(|r| r.id) == run_id;
        if about_pending {
            self.pending = None;
        } else if run_lost {
            self.active = None;
        } else {
            return Flow::Continue;
        }
        if self.once {
            return Flow::Exit(EXIT_REFUSED);
        }
        self.send_next();
        self.exit_if_idle()
    }

    fn on_accepted(&mut self, run_id: RunId, thread_id: ThreadId, cid: Option<String>) {
        let ours = matches!((&self.pending, cid.as_deref()), (Some(p), Some(cid)) if p.client_message_id == cid);
        if !ours {
            return; // another tab's message
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        self.thread = Some(thread_id);
        self.active = Some(ActiveRun { id: run_id, last_seq: 0, resumed_after: None, started: pending.first_sent });
        if pending.resent {
            // The server may have recognised the resend and answered with the original run
            // without streaming it to this connection; ask for it explicitly (duplicates are
            // dropped by seq).
            self.outbox.push(resume_frame(run_id, 0));
        }
    }

    fn on_event(&mut self, run_id: RunId, seq: u64, kind: Option<&EventKind>, raw: &str) -> Flow {
        let Some(run) = self.active.as_mut().filter(|r| r.id == run_id) else {
            return Flow::Continue; // a run we do not follow
        };
        if seq <= run.last_seq {
            return Flow::Continue; // already printed (a resume overlaps the live stream)
        }
        if seq > run.last_seq + 1 {
            // Something is missing: ask for it once, and print nothing out of order.
            if run.resumed_after != Some(run.last_seq) {
                run.resumed_after = Some(run.last_seq);
                self.outbox.push(resume_frame(run.id, run.last_seq));
            }
            return Flow::Continue;
        }
        run.last_seq = seq;
        let started = run.started;
        self.render.raw(raw);
        let Some(kind) = kind else {
            return Flow::Continue;
        };
        self.render.event(kind);
        if !kind.is_terminal() {
            return Flow::Continue;
        }
        self.render.summary(kind.type_name(), started.elapsed(), seq);
        self.active = None;
        if self.once {
            let ok = matches!(kind, EventKind::FinalResponse { .. });
            return Flow::Exit(if ok { EXIT_OK } else { EXIT_RUN_NOT_COMPLETED });
        }
        self.send_next();
        self.exit_if_idle()
    }

    fn on_line(&mut self, line: &str) -> Flow {
        match line.trim() {
            "" => Flow::Continue,
            "/quit" => Flow::Exit(EXIT_OK),
            "/stop" => {
                match (&self.active, &self.pending) {
                    (Some(run), _) => self.outbox.push(json!({"type": "stop_agent", "run_id": run.id}).to_string()),
                    (None, Some(_)) => self.render.status(format_args!("nothing to stop yet: the message is not accepted")),
                    (None, None) => self.render.status(format_args!("no run in progress")),
                }
                Flow::Continue
            }
            command if command.starts_with('/') => {
                self.render.status(format_args!("unknown command {command}; try /stop or /quit"));
                Flow::Continue
            }
            text => {
                if self.active.is_some() || self.pending.is_some() {
                    self.render.status(format_args!("queued: it is sent when the current run ends"));
                }
                self.queued.push_back(text.to_owned());
                self.send_next();
                Flow::Continue
            }
        }
    }

    fn on_end_of_input(&mut self) -> Flow {
        self.quit_when_idle = true;
        self.exit_if_idle()
    }

    fn exit_if_idle(&self) -> Flow {
        let idle = self.active.is_none() && self.pending.is_none() && self.queued.is_empty();
        if self.quit_when_idle && idle {
            Flow::Exit(EXIT_OK)
        } else {
            Flow::Continue
        }
    }
}

impl Pending {
    fn new(text: String) -> Self {
        Self { text, client_message_id: uuid::Uuid::new_v4().to_string(), first_sent: Instant::now(), resent: false }
    }

    fn to_frame(&self, thread: Option<ThreadId>) -> String {
        let mut frame = json!({
            "type": "user_message",
            "text": self.text,
            "client_message_id": self.client_message_id,
        });
        if let Some(thread) = thread {
            frame["thread_id"] = Value::from(thread.to_string());
        }
        frame.to_string()
    }
}

fn resume_frame(run_id: RunId, after_seq: u64) -> String {
    json!({"type": "resume", "run_id": run_id, "after_seq": after_seq}).to_string()
}

/// Reads stdin on its own thread: terminal reads block, and this keeps them off the
/// runtime (it is also what tokio's own stdin does). The channel closes at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break; // the chat is over
            }
        }
    });
    rx
}

/// The next stdin line; `None` at end of input. Without stdin (`--once`) it never completes.
async fn next_line(input: &mut Input) -> Option<String> {
    match input {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    let Some(frame) = frame else {
        return "the server closed the connection".into();
    };
    let code = u16::from(frame.code);
    let why = match code {
        close::SERVICE_RESTART => "service restart",
        close::TRY_AGAIN_LATER => "try again later",
        close::GOING_AWAY => "going away",
        close::POLICY => "policy",
        close::PING_TIMEOUT => "ping timeout",
        _ => "closed",
    };
    if frame.reason.is_empty() {
        format!("the server closed the connection ({code} {why})")
    } else {
        format!("the server closed the connection ({code} {why}: {})", frame.reason)
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Writes events to stdout and status to stderr. Write errors (a closed pipe) are ignored:
/// the conversation goes on and the exit code still tells the outcome.
struct Renderer {
    json: bool,
    /// Streamed text left the cursor mid-line on stdout.
    mid_line: bool,
    /// A status line already broke that line on the screen.
    status_broke_line: bool,
    /// This run's text was streamed, so the final response need not be printed again.
    streamed: bool,
}

impl Renderer {
    fn new(json: bool) -> Self {
        Self { json, mid_line: false, status_broke_line: false, streamed: false }
    }

    /// Connection status and hints, on stderr so stdout stays the conversation. On a
    /// terminal both share the screen, so a status that interrupts streamed text first
    /// breaks the line (on stderr: the text on stdout stays exactly what was streamed).
    fn status(&mut self, msg: fmt::Arguments<'_>) {
        let sep = if self.mid_line && !self.status_broke_line { "\n" } else { "" };
        self.status_broke_line = self.mid_line;
        eprintln!("{sep}· {msg}");
    }

    /// The frame verbatim, in `--json` mode.
    fn raw(&mut self, text: &str) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }

    fn event(&mut self, kind: &EventKind) {
        if self.json {
            return;
        }
        match kind {
            EventKind::AgentStarted { agent } => self.line(format_args!("▶ {} started", agent.as_str())),
            EventKind::AgentThinking { agent, text } => self.line(format_args!("  💭 {}: {text}", agent.as_str())),
            EventKind::ToolExecuting { agent, tool, args, .. } => {
                let args = args.to_string();
                self.line(format_args!("  🔧 {} → {tool} {}", agent.as_str(), clip(&args, ARGS_SHOWN)))
            }
            EventKind::ToolCompleted { agent, tool, ok: true, duration_ms, duration_us, .. } => {
                let took = took(*duration_ms, *duration_us);
                self.line(format_args!("  ✓ {} ← {tool} ({took})", agent.as_str()))
            }
            EventKind::ToolCompleted { agent, tool, error, duration_ms, duration_us, .. } => {
                let error = error.as_deref().unwrap_or("error");
                let took = took(*duration_ms, *duration_us);
                self.line(format_args!("  ✗ {} ← {tool} ({took}): {error}", agent.as_str()))
            }
            EventKind::AgentCompleted { agent, summary, duration_ms, duration_us } => {
                let took = took(*duration_ms, *duration_us);
                self.line(format_args!("■ {} completed in {took}: {summary}", agent.as_str()))
            }
            EventKind::ResponseDelta { text, .. } => self.inline(text),
            EventKind::FinalResponse { text, .. } => self.unstreamed(text),
            EventKind::RunFailed { code, message } => self.line(format_args!("✗ run failed ({code}): {message}")),
            EventKind::RunCancelled {} => self.line(format_args!("⏹ run cancelled")),
            EventKind::RunTimedOut { partial_text } => {
                self.unstreamed(partial_text);
                self.line(format_args!("⏱ run timed out"))
            }
            EventKind::RunInterrupted { partial_text } => {
                self.unstreamed(partial_text);
                self.line(format_args!("⚠ run interrupted: the server stopped"))
            }
        }
    }

    /// The closing line of a run; on stderr in `--json` mode so stdout stays pure JSON.
    fn summary(&mut self, terminal: &str, elapsed: Duration, events: u64) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if self.json {
            eprintln!("· {terminal} in {ms:.0} ms ({events} events)");
        } else {
            self.line(format_args!("── {terminal} in {ms:.0} ms ({events} events)"));
        }
        self.streamed = false;
    }

    fn line(&mut self, msg: fmt::Arguments<'_>) {
        let mut out = std::io::stdout().lock();
        if std::mem::take(&mut self.mid_line) {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{msg}");
    }

    /// Streamed text: no newline per chunk, flushed so it appears as it arrives.
    fn inline(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}");
        let _ = out.flush();
        self.mid_line = !text.ends_with('\n');
        self.status_broke_line = false;
        self.streamed = true;
    }

    /// A run's full text, printed only when it was not already streamed.
    fn unstreamed(&mut self, text: &str) {
        if !self.streamed && !text.is_empty() {
            self.line(format_args!("{text}"));
        }
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

/// A step's duration as people read it: "0.42 ms", "12 ms", "1.25 s" (microseconds when
/// the server sent them; events stored before it did carry milliseconds only).
fn took(ms: u64, us: u64) -> String {
    match (ms, us) {
        (0, 0) => "0 ms".to_owned(),
        (_, us @ 1..) if us < 10_000 => format!("{:.2} ms", us as f64 / 1000.0),
        (ms, _) if ms < 1000 => format!("{ms} ms"),
        (ms, _) => format!("{:.2} s", ms as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_durations_read_in_the_unit_that_fits() {
        assert_eq!(took(0, 420), "0.42 ms");
        assert_eq!(took(12, 12_345), "12 ms");
        assert_eq!(took(1_250, 1_250_000), "1.25 s");
        assert_eq!(took(3, 0), "3 ms", "an event stored before microseconds");
        assert_eq!(took(0, 0), "0 ms");
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let within =
            |d: Duration, base_ms: u64| d >= Duration::from_millis(base_ms) && d < Duration::from_millis(base_ms * 6 / 5);
        assert!(within(backoff(1), 250));
        assert!(within(backoff(2), 500));
        assert!(within(backoff(5), 4000));
        assert!(within(backoff(6), 5000));
        assert!(within(backoff(60), 5000));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 5), "hi");
    }

    fn new_chat(once: bool) -> Chat {
        let args = ChatArgs {
            url: "ws://x/ws".into(),
            token: None,
            json: true,
            once: once.then(|| "hi".to_owned()),
            thread: None,
            org: None,
        };
        Chat::new(&args, None)
    }

    fn ready(chat: &mut Chat) {
        let frame = format!(
            r#"{{"type":"connection_ready","user_id":"u","connection_id":"{}","demo":true,"token":"t","protocol":"apex.v1"}}"#,
            apex_protocol::ConnectionId::new()
        );
        assert!(matches!(chat.on_text(&frame), Flow::Continue));
    }

    fn event(run: RunId, seq: u64, kind: &str) -> String {
        format!(
            r#"{{"type":"{kind}","run_id":"{run}","thread_id":"{}","seq":{seq},"ts":1,"message_id":"{}","text":"t"}}"#,
            ThreadId::new(),
            apex_protocol::MessageId::new()
        )
    }

    #[test]
    fn resumes_after_the_last_printed_seq_and_drops_duplicates() {
        let mut chat = new_chat(true);
        ready(&mut chat);
        assert_eq!(chat.outbox.len(), 1, "the --once message is sent on connect");
        let cid = chat.pending.as_ref().map(|p| p.client_message_id.clone());
        let run = RunId::new();
        chat.on_accepted(run, ThreadId::new(), cid);
        chat.outbox.clear();
        assert!(matches!(chat.on_text(&event(run, 1, "response_delta")), Flow::Continue));
        assert!(matches!(chat.on_text(&event(run, 2, "response_delta")), Flow::Continue));
        // Reconnect: resume after 2; the replay overlaps and is dropped.
        ready(&mut chat);
        assert!(chat.outbox[0].contains(r#""after_seq":2"#), "{:?}", chat.outbox);
        chat.on_text(&event(run, 2, "response_delta"));
        assert_eq!(chat.active.as_ref().map(|r| r.last_seq), Some(2));
        // A gap asks for the missing events once and prints nothing out of order.
        chat.outbox.clear();
        if let Some(run) = chat.active.as_mut() {
            run.resumed_after = None;
        }
        chat.on_text(&event(run, 4, "response_delta"));
        chat.on_text(&event(run, 5, "response_delta"));
        assert_eq!(chat.outbox.len(), 1);
        assert_eq!(chat.active.as_ref().map(|r| r.last_seq), Some(2));
        chat.on_text(&event(run, 3, "response_delta"));
        chat.on_text(&event(run, 4, "response_delta"));
        assert!(matches!(chat.on_text(&event(run, 5, "final_response")), Flow::Exit(EXIT_OK)));
    }

    #[test]
    fn queues_lines_and_continues_the_thread() {
        let mut chat = new_chat(false);
        chat.on_line("first");
        assert!(chat.outbox.is_empty(), "nothing is sent before connection_ready");
        chat.on_line("second");
        ready(&mut chat);
        assert_eq!(chat.outbox.len(), 1);
        assert!(chat.outbox[0].contains("first") && !chat.outbox[0].contains("thread_id"));
        chat.outbox.clear();
        let cid = chat.pending.as_ref().map(|p| p.client_message_id.clone());
        let (run, thread) = (RunId::new(), ThreadId::new());
        chat.on_accepted(run, thread, cid);
        chat.on_text(&event(run, 1, "final_response"));
        assert_eq!(chat.outbox.len(), 1, "the queued line follows the finished run");
        assert!(chat.outbox[0].contains("second") && chat.outbox[0].contains(&thread.to_string()));
    }

    #[test]
    fn a_resent_message_is_resumed_from_the_start() {
        let mut chat = new_chat(true);
        ready(&mut chat);
        ready(&mut chat); // the connection dropped before message_accepted
        assert_eq!(chat.outbox.len(), 2);
        assert_eq!(chat.outbox[0], chat.outbox[1], "the resend reuses the client_message_id");
        chat.outbox.clear();
        let cid = chat.pending.as_ref().map(|p| p.client_message_id.clone());
        let run = RunId::new();
        chat.on_accepted(run, ThreadId::new(), cid);
        assert!(chat.outbox[0].contains(r#""after_seq":0"#), "{:?}", chat.outbox);
    }

    #[test]
    fn once_exit_codes() {
        let mut chat = new_chat(true);
        ready(&mut chat);
        let err = r#"{"type":"error","code":"rate_limited","message":"slow down"}"#;
        assert!(matches!(chat.on_text(err), Flow::Exit(EXIT_REFUSED)));

        let mut chat = new_chat(true);
        ready(&mut chat);
        let cid = chat.pending.as_ref().map(|p| p.client_message_id.clone());
        let run = RunId::new();
        chat.on_accepted(run, ThreadId::new(), cid);
        let failed = format!(
            r#"{{"type":"run_failed","code":"llm","message":"x","run_id":"{run}","thread_id":"{}","seq":1,"ts":1}}"#,
            ThreadId::new()
        );
        assert!(matches!(chat.on_text(&failed), Flow::Exit(EXIT_RUN_NOT_COMPLETED)));
    }
}

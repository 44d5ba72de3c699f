//! `--peer langgraph`: the same workload on LangGraph's server, measured by this process.
//!
//! The peer's graph and config live in `benches/peer/langgraph/` (`graph.py`, the events
//! it replays in `events.json`, `langgraph.json`, the pinned `requirements.txt` and
//! `setup.sh`, which installs them into a throwaway virtualenv on first use). For each level the bench copies the graph
//! and config into a fresh directory (so that no state of an earlier level or run is
//! reloaded and the source tree stays clean), starts `langgraph dev --no-browser
//! --no-reload` there on a free loopback port in a process group of its own, waits for
//! `GET /ok`, and stops the whole group afterwards (SIGTERM, then SIGKILL), also when the
//! bench fails or is interrupted.
//!
//! Each user opens a keep-alive connection first (`GET /ok`, like Apex's WebSocket
//! connect), then loops until the deadline: `POST /threads` (a new thread per run, as each
//! Apex run starts a new thread), then `POST /threads/{id}/runs/stream` with
//! `stream_mode: custom`, reading the server-sent events as they arrive. The graph writes
//! each Apex event kind with a `seq`, so the same checks apply: first event = request sent →
//! first `agent_started`, full run = request sent → `final_response`, gaps and duplicates
//! counted. Creating the thread is timed separately and left out of the run's timings
//! (which favours the peer: an Apex run's timings include creating its thread).
use std::fs::File;
use std::os::fd::AsFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::deployments::process_ticks;
use super::{free_local_addr, is_terminal, BenchArgs, Latencies, Peer, RunStats, RUN_TIMEOUT};

/// The peer imports a large Python stack; on a busy 2-core machine that takes a while.
const PEER_READY_TIMEOUT: Duration = Duration::from_secs(180);
const PEER_READY_POLL: Duration = Duration::from_millis(100);
/// How long the peer may take to exit after SIGTERM before its group is killed.
const PEER_STOP_GRACE: Duration = Duration::from_secs(5);
/// The graph's id in `langgraph.json`.
const ASSISTANT: &str = "apex_peer";
const QUESTION: &str = "Analyze my AI costs";
/// Files copied from the peer directory into each server's working directory.
const PEER_FILES: [&str; 3] = ["graph.py", "events.json", "langgraph.json"];

/// Where the peer's graph is, and the virtualenv it runs in (installed).
pub(super) struct Setup {
    pub(super) peer: Peer,
    dir: PathBuf,
    venv: PathBuf,
}

/// Finds the peer's directory and makes sure its virtualenv is installed (the first time
/// this downloads the pinned packages from the package registry; later it is a no-op).
pub(super) async fn prepare(peer: Peer, args: &BenchArgs) -> anyhow::Result<Setup> {
    let dir = args.peer_dir.clone().unwrap_or_else(|| default_dir(peer));
    for file in PEER_FILES.iter().chain(&["setup.sh"]) {
        anyhow::ensure!(
            dir.join(file).is_file(),
            "{} has no {file}; point --peer-dir at benches/peer/{} of the Apex source tree",
            dir.display(),
            peer.name()
        );
    }
    let venv = args.peer_venv.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("apex-bench-{}-venv", peer.name())));
    eprintln!("apex bench: preparing {} in {}", peer.name(), venv.display());
    // The script's output goes to stderr, so that `--json` keeps stdout to itself.
    let to_stderr = || -> anyhow::Result<Stdio> { Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?)) };
    let status = tokio::process::Command::new("bash")
        .arg(dir.join("setup.sh"))
        .arg(&venv)
        .stdin(Stdio::null())
        .stdout(to_stderr()?)
        .stderr(to_stderr()?)
        .kill_on_drop(true)
        .status()
        .await
        .context("running the peer's setup.sh")?;
    anyhow::ensure!(status.success(), "the peer's setup.sh failed ({status})");
    Ok(Setup { peer, dir, venv })
}

/// `benches/peer/<name>` of the source tree this binary was built from.
fn default_dir(peer: Peer) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/peer").join(peer.name())
}

// ---------------------------------------------------------------------------------------
// The peer's server
// ---------------------------------------------------------------------------------------

/// `langgraph dev` in its own process group and working directory. Dropping it stops the
/// whole group and removes the directory.
pub(super) struct PeerServer {
    child: Child,
    work_dir: PathBuf,
    base_url: String,
    pub(super) cold_start: Duration,
}

impl PeerServer {
    pub(super) async fn start(setup: &Setup, jobs: usize) -> anyhow::Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let work_dir = std::env::temp_dir().join(format!("apex-bench-{}-{}-{nanos}", setup.peer.name(), std::process::id()));
        std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
        for file in PEER_FILES {
            std::fs::copy(setup.dir.join(file), work_dir.join(file)).with_context(|| format!("copying {file}"))?;
        }
        let log = File::create(work_dir.join("server.log")).context("creating the peer's log")?;
        let addr = free_local_addr()?;
        let port = addr.rsplit_once(':').map_or("", |(_, p)| p).to_owned();
        let started = Instant::now();
        let spawned = Command::new(setup.venv.join("bin/langgraph"))
            .args(["dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", &port])
            .args(["--n-jobs-per-worker", &jobs.to_string()])
            .current_dir(&work_dir)
            // Nothing may leave the machine: no tracing, analytics or version check.
            .env("LANGSMITH_TRACING", "false")
            .env("LANGCHAIN_TRACING_V2", "false")
            .env("LANGGRAPH_CLI_NO_ANALYTICS", "1")
            .env("LANGGRAPH_NO_VERSION_CHECK", "true")
            .env_remove("LANGSMITH_API_KEY")
            .env_remove("LANGCHAIN_API_KEY")
            // Warnings only, as the Apex server runs (`RUST_LOG=warn`): info logs a few
            // lines per run.
            .env("LOG_LEVEL", "WARNING")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the peer's log")?)
            .stderr(log)
            // A group of its own, so that stopping it reaches every process it starts.
            .process_group(0)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work_dir);
                return Err(e).context("starting `langgraph dev`");
            }
        };
        let mut server = Self { child, work_dir, base_url: format!("http://{addr}"), cold_start: Duration::ZERO };
        server.cold_start = server.wait_ready(started).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, started: Instant) -> anyhow::Result<Duration> {
        let client = client(1)?;
        let ok = format!("{}/ok", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("`langgraph dev` exited with {status} before it was ready\n{}", self.log_tail());
            }
            if let Ok(Ok(resp)) = timeout(Duration::from_secs(2), client.get(&ok).send()).await {
                if resp.status().is_success() {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() > PEER_READY_TIMEOUT {
                bail!("`langgraph dev` was not ready after {PEER_READY_TIMEOUT:?}\n{}", self.log_tail());
            }
            tokio::time::sleep(PEER_READY_POLL).await;
        }
    }

    /// Resident memory of every process in the server's group, in KiB.
    pub(super) fn rss_kib(&self) -> Option<u64> {
        let pids = self.processes()?;
        Some(pids.iter().filter_map(|pid| pid.parse().ok().and_then(|pid| super::rss_kib(pid).ok())).sum())
    }

    /// CPU ticks used so far by the processes of the server's group.
    pub(super) fn cpu_ticks(&self) -> Option<u64> {
        let pids = self.processes()?;
        Some(pids.iter().filter_map(|pid| process_ticks(pid)).sum())
    }

    /// The ids of the processes in the server's group (`langgraph dev` and any it started).
    fn processes(&self) -> Option<Vec<String>> {
        let pgid = self.child.id();
        let entries = std::fs::read_dir("/proc").ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
                .filter(|pid| process_group(pid) == Some(pgid))
                .collect(),
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.work_dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        signal_group("TERM", &group);
        let deadline = Instant::now() + PEER_STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (the leader if it ignored SIGTERM, or children
        // that outlived it); an error only means nothing is left.
        signal_group("KILL", &group);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// `kill -SIG -- -PGID`: std can only signal the leader, and this crate has no libc.
fn signal_group(signal: &str, group: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", group])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The process group of `/proc/<pid>` (field 5 of its stat line).
fn process_group(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: state, ppid, pgrp.
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        // Loopback only, whatever the environment says about proxies.
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

/// Opens one keep-alive connection per user (like Apex's connect phase: every user's
/// connection is open before the clock starts); returns the client and the failures.
pub(super) async fn connect_users(server: &PeerServer, users: usize) -> anyhow::Result<(reqwest::Client, u64)> {
    let client = client(users)?;
    let mut warm = JoinSet::new();
    for _ in 0..users {
        let (client, ok) = (client.clone(), format!("{}/ok", server.base_url));
        warm.spawn(async move { timeout(super::CONNECT_TIMEOUT, client.get(ok).send()).await });
    }
    let mut errors = 0;
    while let Some(joined) = warm.join_next().await {
        if !matches!(joined, Ok(Ok(Ok(ref resp))) if resp.status().is_success()) {
            errors += 1;
        }
    }
    Ok((client, errors))
}

/// Every user runs back to back until the deadline. Returns the merged run counts, the
/// thread-creation latencies and how long the run phase took.
pub(super) async fn run_users(
    server: &PeerServer,
    client: &reqwest::Client,
    users: usize,
    duration: Duration,
) -> (RunStats, Latencies, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..users {
        tasks.spawn(user_loop(client.clone(), server.base_url.clone(), deadline));
    }
    let mut total = RunStats::default();
    let mut threads = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((stats, created)) => {
                total.merge(stats);
                threads.merge(created);
            }
            Err(e) => total.fail(format!("a user task died: {e}")),
        }
    }
    (total, threads, started.elapsed())
}

async fn user_loop(client: reqwest::Client, base: String, deadline: Instant) -> (RunStats, Latencies) {
    let mut stats = RunStats::default();
    let mut threads = Latencies::default();
    while Instant::now() < deadline {
        match timeout(RUN_TIMEOUT, one_run(&client, &base, &mut stats, &mut threads)).await {
            Ok(Ok(())) => {}
            // The server cannot be reached; this user stops, and says why once.
            Ok(Err(e)) => {
                stats.fail(apex_client::error_chain(&e));
                break;
            }
            Err(_) => {
                stats.fail(format!("a run took longer than {RUN_TIMEOUT:?}"));
                break;
            }
        }
    }
    (stats, threads)
}

#[derive(Deserialize)]
struct Thread {
    thread_id: String,
}

/// The fields of a custom event the bench checks.
#[derive(Deserialize)]
struct Custom<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
}

/// One run on a new thread. Protocol outcomes land in `stats`; an `Err` means the server
/// could not be reached.
async fn one_run(client: &reqwest::Client, base: &str, stats: &mut RunStats, threads: &mut Latencies) -> anyhow::Result<()> {
    let creating = Instant::now();
    let resp = client.post(format!("{base}/threads")).json(&serde_json::json!({})).send().await?;
    if !resp.status().is_success() {
        return refused(stats, "creating a thread", resp).await;
    }
    let thread: Thread = resp.json().await.context("decoding the new thread")?;
    threads.record(creating.elapsed());

    let body = serde_json::json!({
        "assistant_id": ASSISTANT,
        "input": { "question": QUESTION },
        "stream_mode": ["custom"],
    });
    let sent = Instant::now();
    let mut resp = client.post(format!("{base}/threads/{}/runs/stream", thread.thread_id)).json(&body).send().await?;
    if !resp.status().is_success() {
        return refused(stats, "starting a run", resp).await;
    }
    let mut run = RunState::new(sent);
    let mut sse = SseParser::default();
    while let Some(chunk) = resp.chunk().await.context("the stream broke mid-run")? {
        sse.feed(&chunk, |event, data| run.on_event(event, data, stats));
    }
    sse.finish(|event, data| run.on_event(event, data, stats));
    if !run.ended {
        stats.fail(run.error.take().unwrap_or_else(|| "the stream ended before final_response".into()));
    }
    Ok(())
}

/// A refused request (an error status): one failed run, and a pause rather than hammering.
async fn refused(stats: &mut RunStats, what: &str, resp: reqwest::Response) -> anyhow::Result<()> {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    stats.fail(format!("{what}: {status}: {}", text.chars().take(300).collect::<String>()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// What one streamed run has shown so far.
struct RunState {
    sent: Instant,
    next_seq: u64,
    saw_start: bool,
    /// A terminal event arrived (counted as completed or failed).
    ended: bool,
    error: Option<String>,
}

impl RunState {
    fn new(sent: Instant) -> Self {
        Self { sent, next_seq: 1, saw_start: false, ended: false, error: None }
    }

    fn on_event(&mut self, event: &str, data: &str, stats: &mut RunStats) {
        match event {
            "custom" => {}
            "error" => {
                self.error.get_or_insert_with(|| format!("error event: {}", data.chars().take(300).collect::<String>()));
                return;
            }
            // metadata (the run's id) and anything else the server adds
            _ => return,
        }
        let Ok(custom) = serde_json::from_str::<Custom<'_>>(data) else {
            stats.stray += 1;
            return;
        };
        if self.ended {
            stats.stray += 1; // after the terminal event
            return;
        }
        if custom.seq < self.next_seq {
            stats.duplicated += 1;
            return;
        }
        stats.lost += custom.seq - self.next_seq;
        self.next_seq = custom.seq + 1;
        stats.events += 1;
        if custom.kind == "agent_started" && !std::mem::replace(&mut self.saw_start, true) {
            stats.first_event.record(self.sent.elapsed());
        }
        if is_terminal(custom.kind) {
            self.ended = true;
            if custom.kind == "final_response" {
                stats.completed += 1;
                stats.full_run.record(self.sent.elapsed());
            } else {
                stats.fail(format!("the run ended with {}", custom.kind));
            }
        }
    }
}

/// Server-sent events, fed as the body arrives: `event:` and `data:` lines, dispatched at
/// each blank line. Lines may end in `\n` or `\r\n`.
#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: String,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8], mut dispatch: impl FnMut(&str, &str)) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[start..start + end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = String::from_utf8_lossy(line);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    let event = if self.event.is_empty() { "message" } else { &self.event };
                    dispatch(event, &self.data);
                }
                self.event.clear();
                self.data.clear();
            } else if let Some(value) = line.strip_prefix("event:") {
                self.event = value.trim_start().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            } // `id:`, `retry:` and comments do not matter here
            start += end + 1;
        }
        self.pending.drain(..start);
    }

    /// The stream ended: an event not yet closed by a blank line still counts.
    fn finish(&mut self, dispatch: impl FnMut(&str, &str)) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
        }
        self.feed(b"\n", dispatch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut sse = SseParser::default();
        for chunk in chunks {
            sse.feed(chunk.as_bytes(), |e, d| out.push((e.to_owned(), d.to_owned())));
        }
        sse.finish(|e, d| out.push((e.to_owned(), d.to_owned())));
        out
    }

    #[test]
    fn sse_events_split_across_chunks_and_line_endings() {
        let got = parse(&["event: metadata\r\ndata: {\"run_id\":\"r\"}\r\n\r\nev", "ent: custom\ndata: {\"a\":", "1}\n\n"]);
        assert_eq!(
            got,
            [("metadata".to_owned(), r#"{"run_id":"r"}"#.to_owned()), ("custom".to_owned(), r#"{"a":1}"#.to_owned())]
        );
        // An event the stream did not close with a blank line, and multi-line data.
        assert_eq!(parse(&["data: a\ndata: b"]), [("message".to_owned(), "a\nb".to_owned())]);
    }

    #[test]
    fn run_state_counts_gaps_duplicates_and_the_terminal_event() {
        let mut stats = RunStats::default();
        let mut run = RunState::new(Instant::now());
        for (seq, kind) in [(1, "agent_started"), (2, "agent_thinking"), (2, "agent_thinking"), (4, "final_response")] {
            run.on_event("custom", &format!(r#"{{"type":"{kind}","seq":{seq}}}"#), &mut stats);
        }
        run.on_event("custom", r#"{"type":"response_delta","seq":5}"#, &mut stats);
        run.on_event("metadata", r#"{"run_id":"r"}"#, &mut stats);
        assert!(run.ended);
        assert_eq!((stats.completed, stats.lost, stats.duplicated, stats.stray, stats.events), (1, 1, 1, 1, 3));
        assert_eq!((stats.first_event.0.len(), stats.full_run.0.len()), (1, 1));
    }
}

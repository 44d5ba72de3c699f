//! `apex bench`: load a server with concurrent golden-path runs and report latency,
//! correctness (lost, duplicated and stray events; failed runs) and memory.
//!
//! Without `--url` the bench starts `apex serve` itself on a free port with a fresh data
//! directory, which is what makes cold start and server memory measurable. Phases:
//! idle-connection memory, then N users connect, then a baseline (each user does
//! `ping`/`pong` round trips back to back: the same sockets, server and machine, no run),
//! then each user runs back to back for the duration. Results are reported beside the
//! baseline as ratios, which hold up on a noisy machine where absolute numbers do not. Idle memory is measured first, on a fresh process, because memory freed by
//! the run phase stays in the allocator and would hide what idle connections cost.
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures_util::stream::{self, StreamExt as _};
use futures_util::SinkExt as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use apex_client::{connect, error_chain, WsStream};

mod capacity;
mod deployments;
mod model_stream;
mod peer;
mod questions;
mod sweep;
mod tool_rounds;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Concurrent users (one WebSocket each)
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// How long to run, in seconds
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Target an already running server (ws://HOST/ws) instead of starting one
    #[arg(long)]
    pub url: Option<String>,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
    /// Connections opened to measure idle connection memory (0 to skip)
    #[arg(long, default_value_t = 1000)]
    pub idle: usize,
    /// Compare deployments in one run, each on servers the bench starts:
    /// `sqlite`, `postgres` (PostgreSQL + Redis), `postgres-x2` (two instances on them)
    #[arg(long, value_delimiter = ',', conflicts_with = "url")]
    pub deployments: Option<Vec<Deployment>>,
    /// PostgreSQL for the `postgres` deployments; each run gets a fresh schema, dropped after
    #[arg(long, env = "APEX_BENCH_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// Redis for the `postgres` deployments (only run channels are used, nothing is stored)
    #[arg(long, env = "APEX_BENCH_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Measure at each of these user counts in turn (`1,10,100,1000`), each on a fresh
    /// server, `--duration` seconds each; one table (or JSON) for all
    #[arg(long, value_delimiter = ',', conflicts_with = "deployments")]
    pub sweep: Option<Vec<usize>>,
    /// Run the same workload against a peer's server in the same invocation and report
    /// both sides and the ratios (with `--users`, or at each level of `--sweep`)
    #[arg(long, conflicts_with = "deployments")]
    pub peer: Option<Peer>,
    /// The peer's graph and config (default: `benches/peer/langgraph` of this source tree)
    #[arg(long, env = "APEX_BENCH_PEER_DIR")]
    pub peer_dir: Option<PathBuf>,
    /// The virtualenv the peer is installed into (created on first use by the peer dir's
    /// `setup.sh`)
    #[arg(long, env = "APEX_BENCH_PEER_VENV")]
    pub peer_venv: Option<PathBuf>,
    /// Runs the peer's server executes at once (`--n-jobs-per-worker`; default: the
    /// level's user count, so that no run waits for a slot)
    #[arg(long)]
    pub peer_jobs: Option<usize>,
    /// Capacity: this many clients ask for a backlog of events and stop reading; phases
    /// with and without them take turns (three rounds of `--duration` each) and the other
    /// users' p99 is compared; every stuck client must be shed with close 1013
    #[arg(long, conflicts_with_all = ["url", "deployments", "sweep", "peer"])]
    pub slow_consumers: Option<usize>,
    /// The server's write timeout for `--slow-consumers` (`APEX_WRITE_TIMEOUT_SECS`)
    #[arg(long, default_value_t = 10.0)]
    pub write_timeout: f64,
    /// Capacity: load for this many seconds in connect → runs → disconnect cycles (with
    /// dropped and resumed runs), then check that descriptors and tasks return to their
    /// idle baseline and that memory levelled off
    #[arg(long, conflicts_with_all = ["url", "deployments", "sweep", "peer", "slow_consumers"])]
    pub soak: Option<u64>,
    /// Language models: this many runs, one after the other, with `APEX_LLM=openai` against a
    /// stand-in provider on loopback; reports the latency from the provider's write of a
    /// sentence to its `response_delta` at the WebSocket client, beside a bare reader's
    #[arg(long, conflicts_with_all = ["url", "deployments", "sweep", "peer", "slow_consumers", "soak"])]
    pub model_stream: Option<usize>,
    /// Sentences the stand-in provider streams per run (`--model-stream`)
    #[arg(long, default_value_t = 50)]
    pub model_sentences: usize,
    /// Microseconds between the stand-in provider's tokens (`--model-stream`)
    #[arg(long, default_value_t = 2000)]
    pub model_token_interval_us: u64,
    /// Language models: this many runs, one after the other, with `APEX_LLM=openai` against a
    /// stand-in provider that plans `--tool-calls` tool calls per run; reports what the
    /// planning loop adds per tool round-trip beyond the tool's own time, beside a bare
    /// HTTP client's round-trip
    #[arg(long, conflicts_with_all = ["url", "deployments", "sweep", "peer", "slow_consumers", "soak", "model_stream"])]
    pub tool_rounds: Option<usize>,
    /// Tool calls the stand-in provider makes per run (`--tool-rounds`), 1 to 8
    #[arg(long, default_value_t = 4)]
    pub tool_calls: usize,
    /// Questions at scale: import this many usage rows for one user, then time every kind of
    /// question end to end and the store's aggregations beside DuckDB (`--deployments
    /// postgres` for PostgreSQL; SQLite otherwise)
    #[arg(long, conflicts_with_all = ["url", "sweep", "peer", "slow_consumers", "soak", "model_stream", "tool_rounds"])]
    pub questions: Option<u64>,
    /// Times each question (and aggregation) is asked with `--questions`
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
}

/// A peer server `--peer` can start and load with the same workload.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// LangGraph's development server (`langgraph dev`, in-memory runtime) running a graph
    /// with a supervisor and four sub-agents that streams the same events as an Apex run.
    Langgraph,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Langgraph => "langgraph",
        }
    }
}

/// A deployment the `--deployments` mode can start and measure.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deployment {
    /// One instance on its SQLite file.
    Sqlite,
    /// One instance on PostgreSQL, with the Redis bus.
    Postgres,
    /// Two instances on the same PostgreSQL and Redis; users are spread across both.
    #[value(name = "postgres-x2")]
    PostgresX2,
}

impl Deployment {
    fn instances(self) -> usize {
        match self {
            Deployment::PostgresX2 => 2,
            _ => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Deployment::Sqlite => "sqlite",
            Deployment::Postgres => "postgres",
            Deployment::PostgresX2 => "postgres-x2",
        }
    }
}

/// Every run is a new thread (no `thread_id`) with the golden-path question.
const GOLDEN_MESSAGE: Utf8Bytes = Utf8Bytes::from_static(r#"{"type":"user_message","text":"Analyze my AI costs"}"#);
const PING: Utf8Bytes = Utf8Bytes::from_static(r#"{"type":"ping"}"#);
/// Length of the ping baseline phase.
const BASELINE: Duration = Duration::from_secs(2);
/// TCP connect + upgrade + `connection_ready`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A run longer than this counts as failed and ends that user's loop.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(2);
/// Lets the server finish setting up idle connections before RSS is read.
const IDLE_SETTLE: Duration = Duration::from_millis(500);
/// Idle connections are opened this many at a time, so the listen backlog never overflows
/// (an overflow costs a 1 s SYN retry and measures the kernel, not Apex).
const IDLE_CONCURRENCY: usize = 64;

pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    if let Some(rows) = args.questions {
        return questions::run(&args, rows).await;
    }
    if let Some(deployments) = &args.deployments {
        return deployments::run(&args, deployments).await;
    }
    if args.sweep.is_some() || args.peer.is_some() {
        return sweep::run(&args).await;
    }
    if let Some(stuck) = args.slow_consumers {
        return capacity::slow_consumers(&args, stuck).await;
    }
    if let Some(secs) = args.soak {
        return capacity::soak(&args, secs).await;
    }
    if let Some(runs) = args.model_stream {
        return model_stream::run(&args, runs).await;
    }
    if let Some(runs) = args.tool_rounds {
        return tool_rounds::run(&args, runs).await;
    }
    let server = match &args.url {
        Some(_) => None,
        None => Some(ServerProcess::start(&Backend::Sqlite).await?),
    };
    let url = match (&args.url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url.clone(),
        (None, None) => unreachable!("a server is started when no --url is given"),
    };
    let idle = match &server {
        Some(server) if args.idle > 0 => Some(measure_idle(&url, server.pid(), args.idle).await?),
        _ => None,
    };
    let connected = connect_users(&url, args.users).await;
    let users = connected.streams.len();
    let (streams, baseline) = ping_users(connected.streams, BASELINE).await;
    let (runs, elapsed) = run_users(streams, Duration::from_secs(args.duration)).await;
    let rss_kib = server.as_ref().map(|s| rss_kib(s.pid())).transpose()?;
    let report = Report {
        url,
        users: args.users,
        connect_ms: connected.latency.summary(),
        baseline_pings_per_s: baseline.count as f64 / baseline.elapsed.as_secs_f64().max(f64::EPSILON),
        baseline_ping_ms: baseline.rtt.summary(),
        run: Measured::new(runs, elapsed, users, connected.errors, connected.first_error),
        server_rss_mib: rss_kib.map(|kib| kib as f64 / 1024.0),
        idle_connections: idle.as_ref().map_or(0, |i| i.opened),
        idle_kib_per_connection: idle.map(|i| i.kib_per_connection),
        cold_start_ms: server.as_ref().map(|s| ms(s.cold_start)),
    };
    drop(server); // stop it before printing, so a slow terminal does not keep it alive
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(report.exit_code())
}

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

/// Where a started server keeps its data.
enum Backend {
    /// Its own SQLite file in its data directory, no cluster bus.
    Sqlite,
    /// A shared PostgreSQL schema and Redis.
    Postgres { database_url: String, redis_url: String },
}

/// `apex serve` in a child process. Dropping it kills the process and removes its data
/// directory, so an error anywhere in the bench leaves nothing behind.
struct ServerProcess {
    child: Child,
    data_dir: PathBuf,
    url: String,
    cold_start: Duration,
}

impl ServerProcess {
    async fn start(backend: &Backend) -> anyhow::Result<Self> {
        Self::start_with(backend, &[]).await
    }

    /// Started with these settings (environment variables) on top of the bench's own.
    async fn start_with(backend: &Backend, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let addr = free_local_addr()?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let data_dir = std::env::temp_dir().join(format!("apex-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let log = File::create(data_dir.join("server.log")).context("creating the server log")?;
        let exe = std::env::current_exe().context("locating the apex binary")?;
        let started = Instant::now();
        let mut command = Command::new(exe);
        command
            .args(["serve", "--bind", &addr])
            .env("APEX_DATA_DIR", &data_dir)
            .env("DEMO_MODE", "1")
            .env("APEX_LLM", "builtin")
            // Each bench user sends runs back to back, far above the per-connection and
            // per-user allowances meant for people, and every connection comes from this
            // one address; the bench measures the engine, not the limiters.
            .env("APEX_RATE_LIMIT", "1000000")
            .env("APEX_USER_RATE_LIMIT", "1000000")
            .env("APEX_MAX_CONNECTIONS_PER_IP", "1000000")
            .env("RUST_LOG", "warn")
            // The caller's environment must not point the bench at real infrastructure.
            .env_remove("APEX_ENV")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            // Both streams, since tracing's fmt layer writes to stdout.
            .stdout(log.try_clone().context("sharing the server log")?)
            .stderr(log);
        if let Backend::Postgres { database_url, redis_url } = backend {
            command.env("DATABASE_URL", database_url).env("REDIS_URL", redis_url);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().context("starting `apex serve`")?;
        let mut server = Self { child, data_dir, url: format!("ws://{addr}/ws"), cold_start: Duration::ZERO };
        server.cold_start = server.wait_ready(started).await?;
        Ok(server)
    }

    /// Polls until a WebSocket handshake succeeds; returns the time since spawn.
    async fn wait_ready(&mut self, started: Instant) -> anyhow::Result<Duration> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("`apex serve` exited with {status} before it was ready\n{}", self.log_tail());
            }
            if let Ok(Ok(ws)) = timeout(Duration::from_secs(1), connect(&self.url, None)).await {
                let elapsed = started.elapsed();
                drop(ws);
                return Ok(elapsed);
            }
            if started.elapsed() > SERVER_READY_TIMEOUT {
                bail!("`apex serve` was not ready after {SERVER_READY_TIMEOUT:?}\n{}", self.log_tail());
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the server's output, to explain a failed start.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Errors only mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A port nobody uses right now: bind port 0, note what the kernel chose, release it.
fn free_local_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.to_string())
}

/// Resident set size of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's memory")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS in /proc status")
}

// ---------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------

struct IdleMemory {
    opened: usize,
    kib_per_connection: f64,
}

/// Server RSS before and after opening `count` idle connections.
async fn measure_idle(url: &str, pid: u32, count: usize) -> anyhow::Result<IdleMemory> {
    let before = rss_kib(pid)?;
    let results: Vec<anyhow::Result<WsStream>> =
        stream::iter(0..count).map(|_| open(url)).buffer_unordered(IDLE_CONCURRENCY).collect().await;
    let streams: Vec<WsStream> = results.into_iter().filter_map(Result::ok).collect();
    anyhow::ensure!(!streams.is_empty(), "no idle connection could be opened");
    tokio::time::sleep(IDLE_SETTLE).await;
    let after = rss_kib(pid)?;
    let opened = streams.len();
    drop(streams);
    // Signed: RSS can shrink if the allocator returns memory meanwhile.
    let grown = after as f64 - before as f64;
    Ok(IdleMemory { opened, kib_per_connection: grown / opened as f64 })
}

struct Connected {
    streams: Vec<WsStream>,
    latency: Latencies,
    errors: u64,
    first_error: Option<String>,
}

/// All users connect at once, as a burst of real clients would.
async fn connect_users(url: &str, users: usize) -> Connected {
    connect_users_across(&[url.to_owned()], users).await
}

/// All users connect at once, user `i` to `urls[i % urls.len()]` (a load balancer's
/// round robin).
async fn connect_users_across(urls: &[String], users: usize) -> Connected {
    let mut tasks = JoinSet::new();
    for i in 0..users {
        let url = urls[i % urls.len()].clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let ws = open(&url).await?;
            Ok::<_, anyhow::Error>((ws, started.elapsed()))
        });
    }
    let mut connected =
        Connected { streams: Vec::with_capacity(users), latency: Latencies::default(), errors: 0, first_error: None };
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((ws, took)) => {
                connected.latency.record(took);
                connected.streams.push(ws);
            }
            Err(e) => {
                connected.errors += 1;
                connected.first_error.get_or_insert_with(|| format!("connect: {}", error_chain(&e)));
            }
        }
    }
    connected
}

/// A connection that has received `connection_ready`.
async fn open(url: &str) -> anyhow::Result<WsStream> {
    timeout(CONNECT_TIMEOUT, async {
        let mut ws = connect(url, None).await?;
        await_ready(&mut ws).await?;
        Ok(ws)
    })
    .await
    .context("connect timed out")?
}

/// A loopback listener for a stand-in provider, and its address. Its sockets send without
/// Nagle's delay, as real providers' servers do (Go's `net`, Python's asyncio, OpenAI's
/// edge): with Nagle on, a token written while the previous one is unacknowledged waits
/// for Apex's delayed ACK, up to 40 ms on a connection reused from the pool.
async fn stand_in_listener() -> anyhow::Result<(impl axum::serve::Listener<Addr = std::net::SocketAddr>, std::net::SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    Ok((listener, addr))
}

/// The fields of a run's frames that the benches read.
#[derive(Deserialize)]
struct RunFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    duration_us: u64,
}

/// One golden-path run on a connection of its own: every frame goes to `on_frame`, with
/// the instant it was read (`on_frame` may end the run with an error), until
/// `final_response`. A run that fails, is cancelled, times out or is interrupted, an
/// `error` frame, a close, or no end within [`RUN_TIMEOUT`] is an error.
async fn golden_run(url: &str, mut on_frame: impl FnMut(&RunFrame, Instant) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut ws = open(url).await?;
    ws.send(Message::Text(GOLDEN_MESSAGE)).await?;
    let outcome = timeout(RUN_TIMEOUT, async {
        loop {
            let text = match ws.next().await.context("the connection ended mid-run")?? {
                Message::Text(text) => text,
                Message::Close(frame) => bail!("closed mid-run: {frame:?}"),
                _ => continue,
            };
            let received = Instant::now();
            let frame: RunFrame = serde_json::from_str(&text).context("undecodable frame")?;
            on_frame(&frame, received)?;
            match frame.kind.as_str() {
                "final_response" => return Ok(()),
                "run_failed" | "run_cancelled" | "run_timed_out" | "run_interrupted" | "error" => {
                    bail!("the run ended with {}", text.as_str())
                }
                _ => {}
            }
        }
    })
    .await;
    let _ = ws.close(None).await;
    outcome.context("the run did not finish in time")?
}

async fn await_ready(ws: &mut WsStream) -> anyhow::Result<()> {
    loop {
        match ws.next().await.context("closed before connection_ready")?? {
            Message::Text(text) => {
                let probe: Probe<'_> = serde_json::from_str(&text).context("undecodable first frame")?;
                anyhow::ensure!(probe.kind == "connection_ready", "first frame was `{}`", probe.kind);
                return Ok(());
            }
            Message::Close(frame) => bail!("closed before connection_ready: {frame:?}"),
            _ => {}
        }
    }
}

/// Each user runs back to back on its own connection until the deadline; returns the
/// merged counts and how long the phase took (the last run may end after the deadline).
async fn run_users(streams: Vec<WsStream>, duration: Duration) -> (RunStats, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks: JoinSet<RunStats> = streams.into_iter().map(|ws| user_loop(ws, deadline)).collect();
    let mut total = RunStats::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(stats) => total.merge(stats),
            Err(e) => total.fail(format!("a user task died: {e}")),
        }
    }
    (total, started.elapsed())
}

struct Baseline {
    count: u64,
    rtt: Latencies,
    elapsed: Duration,
}

/// The baseline phase: every user sends `ping` and waits for `pong`, back to back, on the
/// connection it will use for runs. Returns the connections still usable.
async fn ping_users(streams: Vec<WsStream>, duration: Duration) -> (Vec<WsStream>, Baseline) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks: JoinSet<Option<(WsStream, Latencies)>> = JoinSet::new();
    for mut ws in streams {
        tasks.spawn(async move {
            let mut rtt = Latencies::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                ws.send(Message::Text(PING)).await.ok()?;
                loop {
                    match timeout(RUN_TIMEOUT, ws.next()).await.ok()??.ok()? {
                        Message::Text(t) if t.contains(r#""pong""#) => break,
                        Message::Close(_) => return None,
                        _ => {}
                    }
                }
                rtt.record(sent.elapsed());
            }
            Some((ws, rtt))
        });
    }
    let mut kept = Vec::new();
    let mut total = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Some((ws, rtt))) = joined {
            kept.push(ws);
            total.merge(rtt);
        }
    }
    let baseline = Baseline { count: total.0.len() as u64, rtt: total, elapsed: started.elapsed() };
    (kept, baseline)
}

async fn user_loop(mut ws: WsStream, deadline: Instant) -> RunStats {
    let mut stats = RunStats::default();
    while Instant::now() < deadline {
        match timeout(RUN_TIMEOUT, one_run(&mut ws, &mut stats)).await {
            Ok(Ok(())) => {}
            // The connection is unusable; this user stops, and says why once.
            Ok(Err(e)) => {
                stats.fail(error_chain(&e));
                break;
            }
            Err(_) => {
                stats.fail(format!("a run took longer than {RUN_TIMEOUT:?}"));
                break;
            }
        }
    }
    let _ = ws.close(None).await;
    stats
}

/// Just the fields the bench checks; borrowed from the frame, so nothing is allocated.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    run_id: Option<&'a str>,
    #[serde(default)]
    seq: u64,
}

fn is_terminal(kind: &str) -> bool {
    matches!(kind, "final_response" | "run_failed" | "run_cancelled" | "run_timed_out" | "run_interrupted")
}

/// One golden-path run: send, then read until its terminal event, checking the sequence.
/// Protocol outcomes land in `stats`; an `Err` means the connection itself failed.
async fn one_run(ws: &mut WsStream, stats: &mut RunStats) -> anyhow::Result<()> {
    let sent = Instant::now();
    ws.send(Message::Text(GOLDEN_MESSAGE)).await?;
    let mut run_id: Option<String> = None;
    let mut next_seq = 1;
    let mut saw_start = false;
    loop {
        let text = match ws.next().await.context("the connection ended mid-run")?? {
            Message::Text(text) => text,
            Message::Close(frame) => bail!("the server closed the connection mid-run: {frame:?}"),
            _ => continue,
        };
        let probe: Probe<'_> = serde_json::from_str(&text).context("undecodable frame")?;
        match probe.kind {
            "message_accepted" => run_id = probe.run_id.map(str::to_owned),
            "error" => {
                stats.fail(format!("error frame: {}", text.as_str()));
                // Refused (rate limited, say): pause rather than hammer the server.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(());
            }
            "connection_ready" | "pong" | "server_shutdown" => {}
            kind => {
                if run_id.is_none() || probe.run_id != run_id.as_deref() {
                    stats.stray += 1; // not this run's, or before message_accepted
                    continue;
                }
                if probe.seq < next_seq {
                    stats.duplicated += 1;
                    continue;
                }
                stats.lost += probe.seq - next_seq;
                next_seq = probe.seq + 1;
                stats.events += 1;
                if kind == "agent_started" && !std::mem::replace(&mut saw_start, true) {
                    stats.first_event.record(sent.elapsed());
                }
                if is_terminal(kind) {
                    if kind == "final_response" {
                        stats.completed += 1;
                        stats.full_run.record(sent.elapsed());
                    } else {
                        stats.fail(format!("the run ended with {kind}"));
                    }
                    return Ok(());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct RunStats {
    completed: u64,
    failed: u64,
    lost: u64,
    duplicated: u64,
    stray: u64,
    /// Events of the measured runs received (each once).
    events: u64,
    first_event: Latencies,
    full_run: Latencies,
    /// Why the first failure happened, to make a red result actionable.
    first_failure: Option<String>,
}

impl RunStats {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(why);
    }

    fn merge(&mut self, other: RunStats) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.stray += other.stray;
        self.events += other.events;
        self.first_event.merge(other.first_event);
        self.full_run.merge(other.full_run);
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// Latencies in microseconds; sorting a Vec is exact and cheap at these counts.
#[derive(Default)]
pub(crate) struct Latencies(Vec<u32>);

impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(iter: I) -> Self {
        let mut latencies = Self::default();
        iter.into_iter().for_each(|took| latencies.record(took));
        latencies
    }
}

impl Latencies {
    fn record(&mut self, took: Duration) {
        self.0.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub(crate) fn summary(mut self) -> Percentiles {
        self.0.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: the smallest sample with at least q of all samples at or below it.
            let rank = (q * self.0.len() as f64).ceil() as usize;
            self.0.get(rank.saturating_sub(1)).map_or(0.0, |&us| f64::from(us) / 1000.0)
        };
        Percentiles { count: self.0.len(), p50: at(0.50), p99: at(0.99), max: at(1.0) }
    }
}

/// Milliseconds.
#[derive(Serialize)]
pub(crate) struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One closed-loop run phase as every bench report shows it: how much was done, how fast,
/// and everything that went wrong. A phase is clean when runs completed and nothing did.
#[derive(Serialize)]
struct Measured {
    users_connected: usize,
    duration_s: f64,
    runs_completed: u64,
    runs_per_s: f64,
    first_event_ms: Percentiles,
    full_run_ms: Percentiles,
    events_lost: u64,
    events_duplicated: u64,
    stray_events: u64,
    failed_runs: u64,
    connect_errors: u64,
    /// Why the first failure happened (a refused connection first), to make a red result
    /// actionable.
    first_failure: Option<String>,
}

impl Measured {
    fn new(
        runs: RunStats,
        elapsed: Duration,
        users_connected: usize,
        connect_errors: u64,
        connect_failure: Option<String>,
    ) -> Self {
        Self {
            users_connected,
            duration_s: elapsed.as_secs_f64(),
            runs_completed: runs.completed,
            runs_per_s: runs.completed as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            first_event_ms: runs.first_event.summary(),
            full_run_ms: runs.full_run.summary(),
            events_lost: runs.lost,
            events_duplicated: runs.duplicated,
            stray_events: runs.stray,
            failed_runs: runs.failed,
            connect_errors,
            first_failure: connect_failure.or(runs.first_failure),
        }
    }

    fn clean(&self) -> bool {
        self.events_lost == 0
            && self.events_duplicated == 0
            && self.stray_events == 0
            && self.failed_runs == 0
            && self.connect_errors == 0
            && self.runs_completed > 0
    }
}

#[derive(Serialize)]
struct Report {
    url: String,
    users: usize,
    connect_ms: Percentiles,
    /// Baseline: `ping` → `pong` round trips per second over the same connections.
    baseline_pings_per_s: f64,
    baseline_ping_ms: Percentiles,
    #[serde(flatten)]
    run: Measured,
    server_rss_mib: Option<f64>,
    idle_connections: usize,
    idle_kib_per_connection: Option<f64>,
    cold_start_ms: Option<f64>,
}

impl Report {
    fn clean(&self) -> bool {
        self.run.clean()
    }

    fn exit_code(&self) -> i32 {
        if self.clean() {
            0
        } else {
            1
        }
    }

    fn print_table(&self) {
        let na = || "n/a".to_owned();
        let lat = |p: &Percentiles| format!("p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms", p.p50, p.p99, p.max);
        println!("apex bench · {}", self.url);
        println!("  users                 {} ({} connected)", self.users, self.run.users_connected);
        println!("  duration              {:.2} s", self.run.duration_s);
        println!("  runs completed        {} ({:.1} runs/s)", self.run.runs_completed, self.run.runs_per_s);
        println!("  connect               {}", lat(&self.connect_ms));
        println!("  baseline ping         {}   ({:.0} round trips/s)", lat(&self.baseline_ping_ms), self.baseline_pings_per_s);
        println!("  first event           {}", lat(&self.run.first_event_ms));
        println!("  full run              {}", lat(&self.run.full_run_ms));
        println!("  events lost           {}", self.run.events_lost);
        println!("  events duplicated     {}", self.run.events_duplicated);
        println!("  stray events          {}", self.run.stray_events);
        println!("  failed runs           {}", self.run.failed_runs);
        println!("  connect errors        {}", self.run.connect_errors);
        let rss = self.server_rss_mib.map_or_else(na, |m| format!("{m:.1} MiB"));
        println!("  server RSS after runs {rss}");
        let idle = self
            .idle_kib_per_connection
            .map_or_else(na, |k| format!("{k:.1} KiB/connection ({} connections)", self.idle_connections));
        println!("  idle memory           {idle}");
        let cold = self.cold_start_ms.map_or_else(na, |c| format!("{c:.1} ms"));
        println!("  cold start to ready   {cold}");
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.4}", a / b)
            } else {
                "n/a".into()
            }
        };
        println!(
            "  vs baseline           runs/s ÷ pings/s {}   first event p50 ÷ ping p50 {}   full run p50 ÷ ping p50 {}",
            ratio(self.run.runs_per_s, self.baseline_pings_per_s),
            ratio(self.run.first_event_ms.p50, self.baseline_ping_ms.p50),
            ratio(self.run.full_run_ms.p50, self.baseline_ping_ms.p50),
        );
        if let Some(why) = &self.run.first_failure {
            println!("  first failure         {why}");
        }
        println!("  result                {}", if self.clean() { "PASS" } else { "FAIL" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=100u64 {
            l.record(Duration::from_micros(us * 1000));
        }
        let p = l.summary();
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50.0, 99.0, 100.0));
        let empty = Latencies::default().summary();
        assert_eq!((empty.count, empty.p50, empty.max), (0, 0.0, 0.0));
    }

    #[test]
    fn probe_borrows_the_checked_fields() {
        let p: Probe<'_> = serde_json::from_str(r#"{"type":"response_delta","run_id":"r","seq":3,"text":"x"}"#).unwrap();
        assert_eq!((p.kind, p.run_id, p.seq), ("response_delta", Some("r"), 3));
        assert!(is_terminal("final_response") && !is_terminal("response_delta"));
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}

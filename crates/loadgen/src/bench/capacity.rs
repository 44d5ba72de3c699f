//! Capacity under misbehaving and long-lived load (docs/performance.md, "Capacity"). Each
//! mode starts its own `apex serve` (SQLite) and reads the server's own `/metrics`.
//!
//! - `--slow-consumers K`: clients that stop reading with a backlog of events on the way.
//!   Phases with and without K such clients take turns; in each, the usual users run back
//!   to back. Reported: the users' p99 with ÷ without, and whether every stuck client was
//!   shed with close 1013 (`apex_ws_connections_closed_total{code="1013"}`), and how fast.
//! - `--soak SECS`: cycles of connect → runs (some dropped mid-run and resumed on a new
//!   connection) → disconnect for SECS, after a warm-up. Reported: resident memory, open
//!   descriptors and runtime tasks at the idle baseline, at their peak and once the load
//!   is gone. Descriptors and tasks must be back at the baseline; memory, which bounded
//!   caches raise at first, must level off (a leak keeps it climbing).
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apex_telemetry::{parse, total, Sample};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{
    connect_users, is_terminal, run_users, Backend, BenchArgs, Measured, Probe, RunStats, ServerProcess, GOLDEN_MESSAGE,
    RUN_TIMEOUT,
};
use apex_client::{connect, connect_with_receive_buffer, WsStream};

/// A stuck client's kernel receive buffer: as small as Linux allows, so that it fills at once.
const STUCK_RECEIVE_BUFFER: u32 = 4096;
/// Phases of each kind (with and without stuck clients), taking turns.
const ROUNDS: usize = 3;
/// How long the server gets to shed every stuck client after the write timeout.
const SHED_MARGIN: Duration = Duration::from_secs(5);
/// Events still being queued for the stuck clients: the backlog has settled when the
/// count stays put this long.
const BACKLOG_SETTLE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Slow consumers
// ---------------------------------------------------------------------------------------

pub(super) async fn slow_consumers(args: &BenchArgs, stuck: usize) -> anyhow::Result<i32> {
    anyhow::ensure!(stuck > 0, "--slow-consumers must be at least 1");
    let write_timeout = Duration::from_secs_f64(args.write_timeout);
    let server =
        ServerProcess::start_with(&Backend::Sqlite, &[("APEX_WRITE_TIMEOUT_SECS", args.write_timeout.to_string())]).await?;
    let metrics = Metrics::new(&server.url);
    let backlog = Backlog::prepare(&server.url).await?;
    let phase = Duration::from_secs(args.duration);
    let mut phases = Vec::new();
    for _ in 0..ROUNDS {
        for with_stuck in [false, true] {
            let shed = if with_stuck {
                Some(Stuck::start(&server.url, &backlog, stuck, &metrics, write_timeout + SHED_MARGIN).await?)
            } else {
                None
            };
            let connected = connect_users(&server.url, args.users).await;
            let users_connected = connected.streams.len();
            let (runs, elapsed) = run_users(connected.streams, phase).await;
            let run = Measured::new(runs, elapsed, users_connected, connected.errors, connected.first_error);
            let shed = match shed {
                Some(stuck) => Some(stuck.wait_shed().await?),
                None => None,
            };
            phases.push(Phase { slow_consumers: if with_stuck { stuck } else { 0 }, run, shed });
        }
    }
    drop(server);
    let report = SlowReport::new(args, stuck, backlog.summary(), phases);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(if report.clean { 0 } else { 1 })
}

/// Runs of one demo user that every stuck client asks for again: their events are the
/// backlog that fills a stuck client's socket, the server's and the queue behind them.
struct Backlog {
    token: String,
    run_ids: Vec<String>,
    bytes: u64,
}

impl Backlog {
    /// Enough completed runs that resuming them all sends more than the largest TCP send
    /// buffer (`net.ipv4.tcp_wmem`) plus the WebSocket layer's own buffer.
    async fn prepare(url: &str) -> anyhow::Result<Self> {
        let target = tcp_wmem_max().unwrap_or(4 << 20) + (2 << 20);
        let (mut ws, token) = connect_demo(url).await?;
        let mut backlog = Self { token, run_ids: Vec::new(), bytes: 0 };
        while backlog.bytes < target {
            ws.send(Message::Text(GOLDEN_MESSAGE)).await?;
            let mut run_id = None;
            loop {
                let text = next_text(&mut ws).await?;
                let probe: Probe<'_> = serde_json::from_str(&text)?;
                match probe.kind {
                    "message_accepted" => run_id = probe.run_id.map(str::to_owned),
                    "connection_ready" | "pong" | "server_shutdown" => {}
                    "error" => anyhow::bail!("preparing the backlog: {}", text.as_str()),
                    kind => {
                        backlog.bytes += text.len() as u64;
                        if is_terminal(kind) {
                            break;
                        }
                    }
                }
            }
            backlog.run_ids.push(run_id.context("no message_accepted")?);
        }
        Ok(backlog)
    }

    fn summary(&self) -> BacklogSummary {
        BacklogSummary { runs: self.run_ids.len(), bytes: self.bytes }
    }
}

async fn next_text(ws: &mut WsStream) -> anyhow::Result<Utf8Bytes> {
    loop {
        match timeout(RUN_TIMEOUT, ws.next()).await.context("no frame in time")?.context("connection ended")?? {
            Message::Text(text) => return Ok(text),
            Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

fn tcp_wmem_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").ok()?.split_whitespace().nth(2)?.parse().ok()
}

/// Clients that asked for the whole backlog and then stopped reading.
struct Stuck {
    clients: Vec<WsStream>,
    /// Watches `/metrics` from the moment they are stuck until all are shed.
    watcher: tokio::task::JoinHandle<anyhow::Result<Shed>>,
}

impl Stuck {
    async fn start(url: &str, backlog: &Backlog, count: usize, metrics: &Metrics, limit: Duration) -> anyhow::Result<Self> {
        let before = metrics.scrape().await?;
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            let mut ws = connect_with_receive_buffer(url, Some(&backlog.token), STUCK_RECEIVE_BUFFER).await?;
            loop {
                if next_text(&mut ws).await?.contains(r#""connection_ready""#) {
                    break;
                }
            }
            for run_id in &backlog.run_ids {
                let resume = json!({"type": "resume", "run_id": run_id, "after_seq": 0}).to_string();
                ws.feed(Message::Text(resume.into())).await?;
            }
            ws.flush().await?;
            clients.push(ws); // and never read again
        }
        // The backlog is on its way when the server stops queuing events for them.
        let mut queued = total(&metrics.scrape().await?, apex_telemetry::WS_FRAMES_QUEUED);
        loop {
            tokio::time::sleep(BACKLOG_SETTLE).await;
            let now = total(&metrics.scrape().await?, apex_telemetry::WS_FRAMES_QUEUED);
            if now == queued {
                break;
            }
            queued = now;
        }
        let (slow_before, closed_before) = (total(&before, apex_telemetry::WS_SLOW_CONSUMERS), closed_with(&before, "1013"));
        let (metrics, since) = (metrics.clone(), Instant::now());
        let watcher = tokio::spawn(async move {
            loop {
                let samples = metrics.scrape().await?;
                let shed = (total(&samples, apex_telemetry::WS_SLOW_CONSUMERS) - slow_before) as usize;
                let closed_1013 = (closed_with(&samples, "1013") - closed_before) as usize;
                if (shed >= count && closed_1013 >= count) || since.elapsed() > limit {
                    return Ok(Shed { stuck: count, shed, closed_1013, after_s: since.elapsed().as_secs_f64() });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Self { clients, watcher })
    }

    /// Waits until the server has shed every one (or the watcher's limit passed).
    async fn wait_shed(self) -> anyhow::Result<Shed> {
        let shed = self.watcher.await??;
        drop(self.clients);
        Ok(shed)
    }
}

fn closed_with(samples: &[Sample], code: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == apex_telemetry::WS_CONNECTIONS_CLOSED && s.labels.iter().any(|(k, v)| k == "code" && v == code))
        .map(|s| s.value)
        .sum()
}

#[derive(Serialize)]
struct Shed {
    stuck: usize,
    /// Counted by `apex_ws_slow_consumers_total`.
    shed: usize,
    /// Counted by `apex_ws_connections_closed_total{code="1013"}`.
    closed_1013: usize,
    /// From the backlog settling (the clients stuck) to the last one shed (polled every
    /// 100 ms), or to the limit.
    after_s: f64,
}

#[derive(Serialize)]
struct Phase {
    slow_consumers: usize,
    #[serde(flatten)]
    run: Measured,
    shed: Option<Shed>,
}

#[derive(Serialize)]
struct BacklogSummary {
    runs: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct SlowReport {
    users: usize,
    slow_consumers: usize,
    write_timeout_s: f64,
    backlog: BacklogSummary,
    phases: Vec<Phase>,
    /// Median over the phases with stuck clients ÷ median over those without.
    first_event_p99_ratio: Option<f64>,
    full_run_p99_ratio: Option<f64>,
    runs_per_s_ratio: Option<f64>,
    /// Every phase clean and every stuck client shed with 1013.
    clean: bool,
    load_average: Option<[f64; 3]>,
}

impl SlowReport {
    fn new(args: &BenchArgs, stuck: usize, backlog: BacklogSummary, phases: Vec<Phase>) -> Self {
        let median_of = |with: bool, f: &dyn Fn(&Measured) -> f64| {
            median(phases.iter().filter(|p| (p.slow_consumers > 0) == with).map(|p| f(&p.run)).collect())
        };
        let ratio = |f: &dyn Fn(&Measured) -> f64| {
            let (with, without) = (median_of(true, f), median_of(false, f));
            (without > 0.0).then(|| with / without)
        };
        let clean =
            phases.iter().all(|p| p.run.clean() && p.shed.as_ref().is_none_or(|s| s.shed >= s.stuck && s.closed_1013 >= s.stuck));
        Self {
            users: args.users,
            slow_consumers: stuck,
            write_timeout_s: args.write_timeout,
            backlog,
            first_event_p99_ratio: ratio(&|m| m.first_event_ms.p99),
            full_run_p99_ratio: ratio(&|m| m.full_run_ms.p99),
            runs_per_s_ratio: ratio(&|m| m.runs_per_s),
            phases,
            clean,
            load_average: super::deployments::load_average(),
        }
    }

    fn print(&self) {
        println!(
            "apex bench --slow-consumers {} · {} users · write timeout {} s · backlog {} runs, {:.1} MiB",
            self.slow_consumers,
            self.users,
            self.write_timeout_s,
            self.backlog.runs,
            self.backlog.bytes as f64 / 1048576.0
        );
        println!("| stuck clients | runs/s | first event p50 / p99 | full run p50 / p99 | lost/dup/failed | shed (1013) | shed after |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for p in &self.phases {
            let shed = p.shed.as_ref().map_or("–".into(), |s| format!("{}/{} ({})", s.shed, s.stuck, s.closed_1013));
            let after = p.shed.as_ref().map_or("–".into(), |s| format!("{:.1} s", s.after_s));
            println!(
                "| {} | {:.0} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {}/{}/{} | {shed} | {after} |",
                p.slow_consumers,
                p.run.runs_per_s,
                p.run.first_event_ms.p50,
                p.run.first_event_ms.p99,
                p.run.full_run_ms.p50,
                p.run.full_run_ms.p99,
                p.run.events_lost,
                p.run.events_duplicated,
                p.run.failed_runs,
            );
        }
        let x = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.2}×"));
        println!(
            "with ÷ without stuck clients (medians): first event p99 {}, full run p99 {}, runs/s {}  (target: p99 within 1.10×)",
            x(self.first_event_p99_ratio),
            x(self.full_run_p99_ratio),
            x(self.runs_per_s_ratio)
        );
        if let Some([one, five, fifteen]) = self.load_average {
            println!("load average at the end: {one:.2} {five:.2} {fifteen:.2}");
        }
        for p in &self.phases {
            if let Some(why) = &p.run.first_failure {
                println!("first failure: {why}");
            }
        }
        println!("result: {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------
// Soak
// ---------------------------------------------------------------------------------------

/// Length of one connect → runs → disconnect cycle.
const CYCLE: Duration = Duration::from_secs(10);
/// Load before the baseline is read, so that pools, caches and the allocator are at their
/// working size.
const WARM_UP: Duration = Duration::from_secs(10);
/// How long the server gets to return to idle after the load.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Resident memory rises at first (bounded caches filling: demo datasets, savings,
/// SQLite's pages; the allocator's pools) and must then level off: over the last third of
/// the soak it may not trend up faster than this, in MiB per minute. A leak of one
/// kilobyte per run grows about 5 MiB a minute at this machine's rate.
const RSS_LATE_SLOPE_LIMIT: f64 = 2.0;

pub(super) async fn soak(args: &BenchArgs, secs: u64) -> anyhow::Result<i32> {
    let server = ServerProcess::start(&Backend::Sqlite).await?;
    let metrics = Metrics::new(&server.url);
    let droppers = (args.users / 10).max(1);
    let warm_up = WARM_UP.min(Duration::from_secs(secs.max(1)));
    let (warm, _) = cycle(&server.url, args.users, droppers, warm_up).await;
    let baseline = settle(&metrics, None).await?;
    let soak = Duration::from_secs(secs);
    let started = Instant::now();
    let mut stats = warm;
    let mut samples = Vec::new();
    while started.elapsed() < soak {
        let length = CYCLE.min(soak.saturating_sub(started.elapsed())).max(Duration::from_secs(1));
        let (cycle_stats, peak) = cycle(&server.url, args.users, droppers, length).await;
        stats.merge(cycle_stats);
        let mut at_peak = metrics.resources().await?;
        at_peak.connections = at_peak.connections.max(peak as f64);
        samples.push((started.elapsed().as_secs_f64(), at_peak));
    }
    let elapsed = started.elapsed();
    let end = settle(&metrics, Some(&baseline)).await?;
    drop(server);
    let report = SoakReport::new(args, secs, droppers, stats, elapsed, baseline, samples, end);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(if report.clean { 0 } else { 1 })
}

/// One cycle: `users` connect and run back to back for `length`, while `droppers` each
/// start a run, drop the connection after a few events and resume it on a new one; then
/// everyone disconnects. Returns the counts and the connections open at once.
async fn cycle(url: &str, users: usize, droppers: usize, length: Duration) -> (RunStats, usize) {
    let deadline = Instant::now() + length;
    let mut dropping: JoinSet<RunStats> = JoinSet::new();
    for _ in 0..droppers {
        let url = url.to_owned();
        dropping.spawn(async move {
            let mut stats = RunStats::default();
            while Instant::now() < deadline {
                if let Err(e) = timeout(RUN_TIMEOUT, drop_and_resume(&url, &mut stats))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a resumed run took longer than {RUN_TIMEOUT:?}")))
                {
                    stats.fail(format!("drop and resume: {}", apex_client::error_chain(&e)));
                    break;
                }
            }
            stats
        });
    }
    let connected = connect_users(url, users).await;
    let peak = connected.streams.len() + droppers;
    let mut stats = RunStats::default();
    stats.failed += connected.errors;
    if let Some(why) = connected.first_error {
        stats.first_failure.get_or_insert(why);
    }
    let (runs, _) = run_users(connected.streams, deadline.saturating_duration_since(Instant::now())).await;
    stats.merge(runs);
    while let Some(joined) = dropping.join_next().await {
        match joined {
            Ok(s) => stats.merge(s),
            Err(e) => stats.fail(format!("a dropping user died: {e}")),
        }
    }
    (stats, peak)
}

/// A run whose connection drops after its third event, resumed on a new connection (as a
/// reloaded page would) and read to its end: no event missing, none twice.
async fn drop_and_resume(url: &str, stats: &mut RunStats) -> anyhow::Result<()> {
    let sent = Instant::now();
    let (mut ws, token) = connect_demo(url).await?;
    ws.send(Message::Text(GOLDEN_MESSAGE)).await?;
    let mut run_id = None;
    let mut last_seq = 0;
    while last_seq < 3 {
        let text = next_text(&mut ws).await?;
        let probe: Probe<'_> = serde_json::from_str(&text)?;
        match probe.kind {
            "message_accepted" => run_id = probe.run_id.map(str::to_owned),
            "error" => anyhow::bail!("error frame: {}", text.as_str()),
            _ if probe.run_id.is_some() && probe.run_id == run_id.as_deref() => last_seq = probe.seq,
            _ => {}
        }
    }
    drop(ws); // no close frame: a dropped network
    let run_id = run_id.context("no message_accepted")?;
    let mut ws = connect(url, Some(&token)).await?;
    ws.send(Message::Text(json!({"type": "resume", "run_id": run_id, "after_seq": last_seq}).to_string().into())).await?;
    loop {
        let text = next_text(&mut ws).await?;
        let probe: Probe<'_> = serde_json::from_str(&text)?;
        if probe.run_id != Some(run_id.as_str()) || probe.kind == "error" {
            if probe.kind == "error" {
                anyhow::bail!("error frame: {}", text.as_str());
            }
            continue;
        }
        if probe.seq <= last_seq {
            stats.duplicated += 1;
            continue;
        }
        stats.lost += probe.seq - last_seq - 1;
        last_seq = probe.seq;
        stats.events += 1;
        if is_terminal(probe.kind) {
            if probe.kind == "final_response" {
                stats.completed += 1;
                stats.full_run.record(sent.elapsed());
            } else {
                stats.fail(format!("a resumed run ended with {}", probe.kind));
            }
            let _ = ws.close(None).await;
            return Ok(());
        }
    }
}

/// A new demo identity's connection, and the token that reconnects as it.
async fn connect_demo(url: &str) -> anyhow::Result<(WsStream, String)> {
    let mut ws = connect(url, None).await?;
    loop {
        let text = next_text(&mut ws).await?;
        let frame: serde_json::Value = serde_json::from_str(&text)?;
        if frame["type"] == "connection_ready" {
            let token = frame["token"].as_str().context("a demo connection_ready carries its token")?.to_owned();
            return Ok((ws, token));
        }
    }
}

/// The server's `/metrics`, read with a new connection each time (a kept-alive one would
/// show up as an open descriptor in one reading and not in the next).
#[derive(Clone)]
struct Metrics {
    url: String,
    client: reqwest::Client,
}

impl Metrics {
    fn new(ws_url: &str) -> Self {
        let url = ws_url.replace("ws://", "http://").replace("/ws", "/metrics");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Self { url, client }
    }

    async fn scrape(&self) -> anyhow::Result<Vec<Sample>> {
        let text = self.client.get(&self.url).send().await?.error_for_status()?.text().await?;
        Ok(parse(&text))
    }

    async fn resources(&self) -> anyhow::Result<Resources> {
        let s = self.scrape().await?;
        Ok(Resources {
            rss_mib: total(&s, "process_resident_memory_bytes") / 1048576.0,
            open_fds: total(&s, "process_open_fds"),
            tasks: total(&s, apex_telemetry::RUNTIME_TASKS_ALIVE),
            connections: total(&s, apex_telemetry::WS_CONNECTIONS_OPEN),
            runs_active: total(&s, apex_telemetry::RUNS_ACTIVE),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
struct Resources {
    rss_mib: f64,
    open_fds: f64,
    tasks: f64,
    connections: f64,
    runs_active: f64,
}

/// Waits for the server to be idle (no connection, no run; with a baseline, also no more
/// descriptors or tasks than it had), up to [`SETTLE_LIMIT`]; returns what it then holds.
async fn settle(metrics: &Metrics, baseline: Option<&Resources>) -> anyhow::Result<Resources> {
    let started = Instant::now();
    loop {
        let now = metrics.resources().await?;
        let idle = now.connections == 0.0 && now.runs_active == 0.0;
        let back = baseline.is_none_or(|b| now.open_fds <= b.open_fds && now.tasks <= b.tasks);
        if (idle && back) || started.elapsed() > SETTLE_LIMIT {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[derive(Serialize)]
struct SoakReport {
    users: usize,
    dropping_users: usize,
    soak_s: u64,
    #[serde(flatten)]
    run: Measured,
    baseline: Resources,
    peak: Resources,
    end: Resources,
    /// Resident memory over the soak, least-squares slope, MiB per minute.
    rss_mib_per_min: Option<f64>,
    /// The same over its last third: near zero once the bounded caches are full.
    rss_late_mib_per_min: Option<f64>,
    samples: Vec<(f64, Resources)>,
    clean: bool,
    load_average: Option<[f64; 3]>,
}

impl SoakReport {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &BenchArgs,
        secs: u64,
        droppers: usize,
        stats: RunStats,
        elapsed: Duration,
        baseline: Resources,
        samples: Vec<(f64, Resources)>,
        end: Resources,
    ) -> Self {
        let max = |f: fn(&Resources) -> f64| samples.iter().map(|(_, r)| f(r)).fold(0.0, f64::max);
        let peak = Resources {
            rss_mib: max(|r| r.rss_mib),
            open_fds: max(|r| r.open_fds),
            tasks: max(|r| r.tasks),
            connections: max(|r| r.connections),
            runs_active: max(|r| r.runs_active),
        };
        let run = Measured::new(stats, elapsed, args.users + droppers, 0, None);
        let late = &samples[samples.len() * 2 / 3..];
        let rss_late_mib_per_min = slope(late);
        let clean = run.clean()
            && end.open_fds <= baseline.open_fds
            && end.tasks <= baseline.tasks
            && rss_late_mib_per_min.is_none_or(|s| s <= RSS_LATE_SLOPE_LIMIT);
        Self {
            users: args.users,
            dropping_users: droppers,
            soak_s: secs,
            run,
            rss_mib_per_min: slope(&samples),
            rss_late_mib_per_min,
            baseline,
            peak,
            end,
            samples,
            clean,
            load_average: super::deployments::load_average(),
        }
    }

    fn print(&self) {
        println!(
            "apex bench --soak {} · {} users + {} dropping and resuming · {} runs ({:.0} runs/s)",
            self.soak_s, self.users, self.dropping_users, self.run.runs_completed, self.run.runs_per_s
        );
        println!("| | RSS | open fds | runtime tasks | connections |");
        println!("|---|---:|---:|---:|---:|");
        for (name, r) in [
            ("idle baseline (after warm-up)", &self.baseline),
            ("peak under load", &self.peak),
            ("idle after the soak", &self.end),
        ] {
            println!("| {name} | {:.1} MiB | {:.0} | {:.0} | {:.0} |", r.rss_mib, r.open_fds, r.tasks, r.connections);
        }
        if let (Some(all), Some(late)) = (self.rss_mib_per_min, self.rss_late_mib_per_min) {
            println!("RSS trend under load: {all:+.2} MiB/min over the soak, {late:+.2} MiB/min over its last third");
        }
        println!("lost/dup/failed: {}/{}/{}", self.run.events_lost, self.run.events_duplicated, self.run.failed_runs);
        if let Some(why) = &self.run.first_failure {
            println!("first failure: {why}");
        }
        if let Some([one, five, fifteen]) = self.load_average {
            println!("load average at the end: {one:.2} {five:.2} {fifteen:.2}");
        }
        println!(
            "result: {} (end ≤ baseline in descriptors and tasks; RSS levelled off: ≤ {RSS_LATE_SLOPE_LIMIT} MiB/min over the last third)",
            if self.clean { "PASS" } else { "FAIL" }
        );
    }
}

/// Least-squares slope of RSS over time, MiB per minute.
fn slope(samples: &[(f64, Resources)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let (mx, my) = samples.iter().fold((0.0, 0.0), |(x, y), (t, r)| (x + t / n, y + r.rss_mib / n));
    let (num, den) = samples.iter().fold((0.0, 0.0), |(a, b), (t, r)| (a + (t - mx) * (r.rss_mib - my), b + (t - mx).powi(2)));
    (den > 0.0).then(|| num / den * 60.0)
}

//! `apex bench --deployments sqlite,postgres,postgres-x2`: the same closed-loop load on
//! each deployment in turn, in one run, reported as ratios to the first one.
//!
//! Each deployment gets servers the bench starts (`apex serve` child processes with the
//! deployment's environment) and, for PostgreSQL, a fresh schema created with `psql` and
//! dropped afterwards, so nothing outside the bench's own schema is touched. Clients are
//! spread across a deployment's instances round robin, as a load balancer without sticky
//! sessions would. Beside each row the bench reports where the machine's CPU went during
//! the run phase (the Apex servers, PostgreSQL, Redis, the bench itself and everything
//! else), which is what bounds scaling on a small machine.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use super::{
    connect_users_across, ping_users, run_users, Backend, BenchArgs, Deployment, Measured, Percentiles, ServerProcess, BASELINE,
};

/// How long a PostgreSQL instance may take to report its Redis bus as connected.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Linux reports process and machine CPU time in these ticks (USER_HZ).
pub(super) const TICKS_PER_S: f64 = 100.0;

pub(super) async fn run(args: &BenchArgs, deployments: &[Deployment]) -> anyhow::Result<i32> {
    anyhow::ensure!(!deployments.is_empty(), "--deployments needs at least one deployment");
    let load_before = load_average();
    let mut rows = Vec::with_capacity(deployments.len());
    for &deployment in deployments {
        rows.push(measure(args, deployment).await?);
    }
    let load_after = load_average();
    let reference = rows[0].run.runs_per_s;
    let reference_p99 = rows[0].run.first_event_ms.p99;
    for row in &mut rows {
        row.runs_per_s_ratio = ratio(row.run.runs_per_s, reference);
        row.first_event_p99_ratio = ratio(row.run.first_event_ms.p99, reference_p99);
    }
    let find = |d: Deployment| rows.iter().find(|r| r.deployment == d).map(|r| r.run.runs_per_s);
    let scaling = match (find(Deployment::PostgresX2), find(Deployment::Postgres)) {
        (Some(two), Some(one)) => ratio(two, one),
        _ => None,
    };
    let report = Report {
        users: args.users,
        duration_s: args.duration,
        reference: rows[0].deployment,
        load_average_before: load_before,
        load_average_after: load_after,
        machine_cores: machine_cpu().map_or(0, |m| m.cores),
        clean: rows.iter().all(Row::clean),
        scaling_x2: scaling,
        deployments: rows,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(if report.clean { 0 } else { 1 })
}

/// Starts the deployment, connects the users, runs the ping baseline and the runs, and
/// stops everything it started (also when a step fails).
async fn measure(args: &BenchArgs, deployment: Deployment) -> anyhow::Result<Row> {
    // Declared before the servers so that it is dropped after them: the schema can only be
    // dropped once no server holds a connection to it.
    let schema = match deployment {
        Deployment::Sqlite => None,
        Deployment::Postgres | Deployment::PostgresX2 => Some(Schema::create(&args.postgres_url)?),
    };
    let backend = match &schema {
        None => Backend::Sqlite,
        Some(schema) => Backend::Postgres { database_url: schema.url.clone(), redis_url: args.redis_url.clone() },
    };
    let mut servers = Vec::new();
    // One after the other: the first applies the migrations, the others find them done.
    for _ in 0..deployment.instances() {
        let server = ServerProcess::start(&backend).await?;
        if schema.is_some() {
            wait_cluster_ok(&server).await?;
        }
        servers.push(server);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let connected = connect_users_across(&urls, args.users).await;
    let users_connected = connected.streams.len();
    let mut connections_per_instance = Vec::with_capacity(servers.len());
    for server in &servers {
        connections_per_instance.push(health(server).await.and_then(|h| h["components"]["websocket"]["connections"].as_u64()));
    }
    let (streams, baseline) = ping_users(connected.streams, BASELINE).await;
    let pids: Vec<u32> = servers.iter().map(ServerProcess::pid).collect();
    let cpu_before = CpuSample::take(&pids);
    let (runs, elapsed) = run_users(streams, Duration::from_secs(args.duration)).await;
    let cpu = CpuSample::take(&pids).since(&cpu_before, elapsed);
    drop(servers);
    drop(schema);
    let runs_per_s = runs.completed as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let deployment_cores = cpu.servers.iter().sum::<f64>() + cpu.postgres + cpu.redis + cpu.bench;
    Ok(Row {
        deployment,
        instances: deployment.instances(),
        connections_per_instance,
        runs_per_s_ratio: None,
        cpu_ms_per_run: ratio(deployment_cores * 1000.0, runs_per_s),
        first_event_p99_ratio: None,
        baseline_ping_ms: baseline.rtt.summary(),
        run: Measured::new(runs, elapsed, users_connected, connected.errors, connected.first_error),
        cpu_cores: cpu,
    })
}

/// Polls `/api/health` until the instance's Redis bus is connected: a degraded instance
/// would measure the store fallback, not the deployment.
async fn wait_cluster_ok(server: &ServerProcess) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let status = health(server).await;
        let cluster = status.as_ref().and_then(|v| v["components"]["cluster"]["status"].as_str().map(str::to_owned));
        if cluster.as_deref() == Some("ok") {
            return Ok(());
        }
        if started.elapsed() > CLUSTER_READY_TIMEOUT {
            anyhow::bail!(
                "the instance at {} did not report its Redis bus as ok within {CLUSTER_READY_TIMEOUT:?} (cluster: {})",
                server.url,
                cluster.unwrap_or_else(|| "unknown".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instance's `/api/health` document, `None` when it does not answer.
async fn health(server: &ServerProcess) -> Option<serde_json::Value> {
    let url = server.url.replace("ws://", "http://").replace("/ws", "/api/health");
    reqwest::get(&url).await.ok()?.json().await.ok()
}

// ---------------------------------------------------------------------------------------
// A PostgreSQL schema of the bench's own
// ---------------------------------------------------------------------------------------

/// A fresh schema, created with `psql` and dropped (with everything in it) on drop.
pub(super) struct Schema {
    base: String,
    name: String,
    pub(super) url: String,
}

impl Schema {
    pub(super) fn create(base: &str) -> anyhow::Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("apex_bench_{}_{nanos}", std::process::id());
        psql(base, &format!("CREATE SCHEMA {name}"))
            .with_context(|| format!("creating the bench schema on {base} (is PostgreSQL running?)"))?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Ok(Self { base: base.to_owned(), name, url })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Err(e) = psql(&self.base, &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)) {
            eprintln!("apex bench: could not drop schema {}: {e:#}", self.name);
        }
    }
}

fn psql(url: &str, statement: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", statement])
        .stdin(Stdio::null())
        .output()
        .context("running psql (the PostgreSQL client)")?;
    anyhow::ensure!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Where the CPU goes
// ---------------------------------------------------------------------------------------

/// CPU ticks consumed so far, by component.
struct CpuSample {
    servers: Vec<u64>,
    postgres: u64,
    redis: u64,
    bench: u64,
    machine: Option<MachineCpu>,
}

impl CpuSample {
    fn take(server_pids: &[u32]) -> Self {
        Self {
            servers: server_pids.iter().map(|&pid| process_ticks(&pid.to_string()).unwrap_or(0)).collect(),
            postgres: ticks_of_processes_named("postgres"),
            redis: ticks_of_processes_named("redis-server"),
            bench: process_ticks("self").unwrap_or(0),
            machine: machine_cpu(),
        }
    }

    /// Average cores used by each component between `before` and this sample.
    fn since(&self, before: &CpuSample, elapsed: Duration) -> CpuCores {
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let cores = |now: u64, then: u64| now.saturating_sub(then) as f64 / TICKS_PER_S / secs;
        let servers: Vec<f64> = self.servers.iter().zip(&before.servers).map(|(&n, &t)| cores(n, t)).collect();
        let postgres = cores(self.postgres, before.postgres);
        let redis = cores(self.redis, before.redis);
        let bench = cores(self.bench, before.bench);
        let busy = match (&self.machine, &before.machine) {
            (Some(now), Some(then)) => cores(now.busy, then.busy),
            _ => 0.0,
        };
        let ours = servers.iter().sum::<f64>() + postgres + redis + bench;
        CpuCores { servers, postgres, redis, bench, other: (busy - ours).max(0.0), machine_busy: busy }
    }
}

/// Average cores busy during the run phase (1.0 = one core all the time).
#[derive(Serialize)]
struct CpuCores {
    /// Each `apex serve` instance.
    servers: Vec<f64>,
    /// Every `postgres` process on the machine (the bench's backends and any other client's).
    postgres: f64,
    /// Every `redis-server` process.
    redis: f64,
    /// The load generator (this process).
    bench: f64,
    /// Everything else on the machine (other users' work).
    other: f64,
    /// The whole machine.
    machine_busy: f64,
}

/// user + system ticks of `/proc/<pid>` (`self` for this process).
pub(super) fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are fixed (state is field 3,
    // utime 14, stime 15).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn ticks_of_processes_named(name: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name))
        .filter_map(|pid| process_ticks(&pid))
        .sum()
}

pub(super) struct MachineCpu {
    busy: u64,
    pub(super) cores: usize,
}

/// Busy ticks of the whole machine (everything but idle and iowait) and its core count.
pub(super) fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let total = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = total.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    let cores = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    Some(MachineCpu { busy: all - idle, cores })
}

/// The 1, 5 and 15 minute load averages.
pub(super) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Load averages as a report prints them ("?" when they could not be read).
pub(super) fn fmt_load(load: Option<[f64; 3]>) -> String {
    load.map_or("?".to_owned(), |[one, five, fifteen]| format!("{one:.2} {five:.2} {fifteen:.2}"))
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

#[derive(Serialize)]
struct Row {
    deployment: Deployment,
    instances: usize,
    /// Open WebSocket connections each instance reported (`/api/health`) once the users
    /// had connected: how the load was spread.
    connections_per_instance: Vec<Option<u64>>,
    /// runs/s ÷ the first deployment's runs/s.
    runs_per_s_ratio: Option<f64>,
    /// CPU time of the servers, PostgreSQL, Redis and the bench per completed run: with
    /// the machine's cores, the ceiling on runs/s (cores × 1000 ÷ this).
    cpu_ms_per_run: Option<f64>,
    /// first-event p99 ÷ the first deployment's.
    first_event_p99_ratio: Option<f64>,
    baseline_ping_ms: Percentiles,
    #[serde(flatten)]
    run: Measured,
    cpu_cores: CpuCores,
}

impl Row {
    fn clean(&self) -> bool {
        self.run.clean()
    }
}

#[derive(Serialize)]
struct Report {
    users: usize,
    duration_s: u64,
    /// The deployment the ratios are relative to (the first one given).
    reference: Deployment,
    load_average_before: Option<[f64; 3]>,
    load_average_after: Option<[f64; 3]>,
    machine_cores: usize,
    /// runs/s of `postgres-x2` ÷ runs/s of `postgres`, when both ran.
    scaling_x2: Option<f64>,
    clean: bool,
    deployments: Vec<Row>,
}

impl Report {
    fn print_table(&self) {
        let load = |l: &Option<[f64; 3]>| l.map_or("n/a".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"));
        let x = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.2}x"));
        println!(
            "apex bench --deployments · {} users · {} s each · {} cores · load average {} before, {} after",
            self.users,
            self.duration_s,
            self.machine_cores,
            load(&self.load_average_before),
            load(&self.load_average_after)
        );
        println!(
            "{:<12} {:>4} {:>9} {:>7} {:>20} {:>7} {:>10} {:>10} {:>15} {:>8}   cores: {:>9} {:>8} {:>6} {:>6} {:>6}",
            "deployment",
            "inst",
            "runs/s",
            "ratio",
            "first event p50/p99",
            "ratio",
            "run p99",
            "ping p50",
            "lost/dup/failed",
            "CPU/run",
            "apex",
            "postgres",
            "redis",
            "bench",
            "other"
        );
        for r in &self.deployments {
            let servers: Vec<String> = r.cpu_cores.servers.iter().map(|c| format!("{c:.2}")).collect();
            println!(
                "{:<12} {:>4} {:>9.1} {:>7} {:>9.2}/{:>7.2} ms {:>7} {:>7.2} ms {:>7.3} ms {:>15} {:>8}          {:>9} {:>8.2} {:>6.2} {:>6.2} {:>6.2}",
                r.deployment.name(),
                r.instances,
                r.run.runs_per_s,
                x(r.runs_per_s_ratio),
                r.run.first_event_ms.p50,
                r.run.first_event_ms.p99,
                x(r.first_event_p99_ratio),
                r.run.full_run_ms.p99,
                r.baseline_ping_ms.p50,
                format!("{}/{}/{}", r.run.events_lost, r.run.events_duplicated, r.run.failed_runs),
                r.cpu_ms_per_run.map_or("n/a".into(), |c| format!("{c:.2} ms")),
                servers.join("+"),
                r.cpu_cores.postgres,
                r.cpu_cores.redis,
                r.cpu_cores.bench,
                r.cpu_cores.other,
            );
        }
        println!("ratios are to {}", self.reference.name());
        if let Some(s) = self.scaling_x2 {
            println!("scaling: postgres-x2 ÷ postgres = {s:.2}x runs/s");
        }
        for r in &self.deployments {
            if let Some(why) = &r.run.first_failure {
                println!("{}: first failure: {why}", r.deployment.name());
            }
            if r.run.stray_events > 0 || r.run.connect_errors > 0 {
                println!("{}: {} stray events, {} connect errors", r.deployment.name(), r.run.stray_events, r.run.connect_errors);
            }
        }
        println!("result {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_of_this_process_and_the_machine() {
        // Burn a little CPU so the tick counters cannot both be zero.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_ticks("self").is_some());
        let m = machine_cpu().unwrap();
        assert!(m.cores > 0 && m.busy > 0);
        assert!(load_average().is_some());
    }
}

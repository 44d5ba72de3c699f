//! `apex bench --sweep 1,10,100,1000` and `apex bench --peer langgraph`: the closed-loop
//! run phase at several user counts in one invocation, optionally beside the same
//! workload on a peer's server, as one table (or one JSON object).
//!
//! Every level gets a fresh server (a new `apex serve` with a new SQLite file, and a new
//! peer server when `--peer` is given), started before the level and stopped after it:
//! each level is then measured from the same clean state, its server memory is its own
//! (memory freed by a larger level stays in the allocator), and a level that breaks a
//! server cannot spoil the next. Apex's cold start is milliseconds, so this costs nothing;
//! the peer's is seconds, and is reported. With `--url` all Apex levels go to that server.
//!
//! Per level and side: the users connect, then (Apex only) the 2 s ping baseline, then
//! every user runs "Analyze my AI costs" back to back for `--duration` seconds. The peer
//! side is measured by the same process with the same clock and the same definitions
//! (first event = request sent → first `agent_started`; full run = request sent →
//! `final_response`; sequence numbers 1..n checked for gaps and duplicates).
use std::time::Duration;

use serde::Serialize;

use super::deployments::{load_average, machine_cpu, process_ticks, TICKS_PER_S};
use super::peer::{self, PeerServer};
use super::{
    connect_users, ping_users, rss_kib, run_users, Backend, BenchArgs, Measured, Peer, Percentiles, ServerProcess, BASELINE,
};

pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<i32> {
    let levels = args.sweep.clone().unwrap_or_else(|| vec![args.users]);
    anyhow::ensure!(!levels.is_empty(), "--sweep needs at least one user count");
    anyhow::ensure!(levels.iter().all(|&u| u > 0), "every --sweep level must be at least 1 user");
    // The peer lives in another process group (so that it can be stopped as a whole); an
    // interrupt must still stop it, so it ends the bench like an error does.
    tokio::select! {
        result = measure_all(args, &levels) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("apex bench: interrupted; stopping the servers it started");
            Ok(130)
        }
    }
}

async fn measure_all(args: &BenchArgs, levels: &[usize]) -> anyhow::Result<i32> {
    let peer_setup = match args.peer {
        Some(which) => Some(peer::prepare(which, args).await?),
        None => None,
    };
    let load_before = load_average();
    let mut rows = Vec::with_capacity(levels.len());
    for &users in levels {
        let apex = measure_apex(args, users).await?;
        let peer_side = match &peer_setup {
            Some(setup) => Some(measure_peer(setup, args, users).await?),
            None => None,
        };
        let ratios = peer_side.as_ref().map(|p| Ratios::of(&apex, p));
        rows.push(LevelRow { users, apex, peer: peer_side, ratios });
    }
    let report = Report {
        duration_s: args.duration,
        peer: args.peer,
        load_average_before: load_before,
        load_average_after: load_average(),
        machine_cores: machine_cpu().map_or(0, |m| m.cores),
        clean: rows.iter().all(|r| r.apex.clean() && r.peer.as_ref().is_none_or(Side::clean)),
        levels: rows,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(if report.clean { 0 } else { 1 })
}

/// One level on Apex: a fresh `apex serve` (unless `--url`), the users, the ping
/// baseline, the runs; the server is stopped before this returns.
async fn measure_apex(args: &BenchArgs, users: usize) -> anyhow::Result<Side> {
    let server = match &args.url {
        Some(_) => None,
        None => Some(ServerProcess::start(&Backend::Sqlite).await?),
    };
    let url = match (&args.url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url.clone(),
        (None, None) => unreachable!("a server is started when no --url is given"),
    };
    let connected = connect_users(&url, users).await;
    let users_connected = connected.streams.len();
    let (streams, baseline) = ping_users(connected.streams, BASELINE).await;
    let ticks = || server.as_ref().and_then(|s| process_ticks(&s.pid().to_string()));
    let ticks_before = ticks();
    let (runs, elapsed) = run_users(streams, Duration::from_secs(args.duration)).await;
    let cpu = Cpu::between(ticks_before, ticks(), elapsed, runs.completed);
    let rss = server.as_ref().map(|s| rss_kib(s.pid())).transpose()?;
    let cold_start_ms = server.as_ref().map(|s| super::ms(s.cold_start));
    drop(server);
    let events_per_run = per_run(runs.events, runs.completed);
    Ok(Side {
        server: "apex".into(),
        run: Measured::new(runs, elapsed, users_connected, connected.errors, connected.first_error),
        events_per_run,
        baseline_ping_ms: Some(baseline.rtt.summary()),
        thread_create_ms: None,
        server_rss_mib: rss.map(|kib| kib as f64 / 1024.0),
        server_cores: cpu.cores,
        server_cpu_ms_per_run: cpu.ms_per_run,
        cold_start_ms,
    })
}

/// One level on the peer: a fresh peer server, the users, the runs; the server (its
/// whole process group) is stopped before this returns, also on error.
async fn measure_peer(setup: &peer::Setup, args: &BenchArgs, users: usize) -> anyhow::Result<Side> {
    let server = PeerServer::start(setup, args.peer_jobs.unwrap_or(users)).await?;
    let (client, connect_errors) = peer::connect_users(&server, users).await?;
    let ticks_before = server.cpu_ticks();
    let (runs, thread_create, elapsed) = peer::run_users(&server, &client, users, Duration::from_secs(args.duration)).await;
    let cpu = Cpu::between(ticks_before, server.cpu_ticks(), elapsed, runs.completed);
    let rss_kib = server.rss_kib();
    let cold_start_ms = super::ms(server.cold_start);
    drop(server);
    let events_per_run = per_run(runs.events, runs.completed);
    Ok(Side {
        server: setup.peer.name().into(),
        run: Measured::new(runs, elapsed, users, connect_errors, None),
        events_per_run,
        baseline_ping_ms: None,
        thread_create_ms: Some(thread_create.summary()),
        server_rss_mib: rss_kib.map(|kib| kib as f64 / 1024.0),
        server_cores: cpu.cores,
        server_cpu_ms_per_run: cpu.ms_per_run,
        cold_start_ms: Some(cold_start_ms),
    })
}

/// The server's CPU during the run phase.
struct Cpu {
    cores: Option<f64>,
    ms_per_run: Option<f64>,
}

impl Cpu {
    fn between(before: Option<u64>, after: Option<u64>, elapsed: Duration, runs: u64) -> Self {
        let Some(used) = before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64 / TICKS_PER_S) else {
            return Self { cores: None, ms_per_run: None };
        };
        Self { cores: ratio(used, elapsed.as_secs_f64()), ms_per_run: ratio(used * 1000.0, runs as f64) }
    }
}

fn per_run(events: u64, runs: u64) -> Option<f64> {
    (runs > 0).then(|| events as f64 / runs as f64)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// One server's results at one level.
#[derive(Serialize)]
struct Side {
    /// `apex` or the peer's name.
    server: String,
    #[serde(flatten)]
    run: Measured,
    /// Events received per completed run (the workload's size on the wire).
    events_per_run: Option<f64>,
    /// Apex only: `ping` → `pong` on the same connections before the runs.
    baseline_ping_ms: Option<Percentiles>,
    /// Peer only: creating the thread each run starts on (not part of the run's timings).
    thread_create_ms: Option<Percentiles>,
    /// Resident memory of the server's processes after the runs.
    server_rss_mib: Option<f64>,
    /// Cores the server's processes used during the run phase (1.0 = one core all along):
    /// on a shared machine, how much CPU the server got.
    server_cores: Option<f64>,
    /// The server's CPU time per completed run: its cost, whatever else the machine ran.
    server_cpu_ms_per_run: Option<f64>,
    /// Spawn → ready.
    cold_start_ms: Option<f64>,
}

impl Side {
    fn clean(&self) -> bool {
        self.run.clean()
    }
}

/// Apex ÷ peer. Above 1 is better for Apex in runs/s; below 1 is better for Apex in
/// latency and memory.
#[derive(Serialize)]
struct Ratios {
    runs_per_s: Option<f64>,
    first_event_p50: Option<f64>,
    first_event_p99: Option<f64>,
    full_run_p50: Option<f64>,
    full_run_p99: Option<f64>,
    server_rss: Option<f64>,
    server_cpu_per_run: Option<f64>,
}

impl Ratios {
    fn of(apex: &Side, peer: &Side) -> Self {
        Self {
            runs_per_s: ratio(apex.run.runs_per_s, peer.run.runs_per_s),
            first_event_p50: ratio(apex.run.first_event_ms.p50, peer.run.first_event_ms.p50),
            first_event_p99: ratio(apex.run.first_event_ms.p99, peer.run.first_event_ms.p99),
            full_run_p50: ratio(apex.run.full_run_ms.p50, peer.run.full_run_ms.p50),
            full_run_p99: ratio(apex.run.full_run_ms.p99, peer.run.full_run_ms.p99),
            server_rss: apex.server_rss_mib.zip(peer.server_rss_mib).and_then(|(a, p)| ratio(a, p)),
            server_cpu_per_run: apex.server_cpu_ms_per_run.zip(peer.server_cpu_ms_per_run).and_then(|(a, p)| ratio(a, p)),
        }
    }
}

#[derive(Serialize)]
struct LevelRow {
    users: usize,
    apex: Side,
    /// The same level on the peer, with `--peer`.
    peer: Option<Side>,
    /// Apex ÷ peer, with `--peer`.
    ratios: Option<Ratios>,
}

#[derive(Serialize)]
struct Report {
    /// Of the run phase of each level and side.
    duration_s: u64,
    peer: Option<Peer>,
    load_average_before: Option<[f64; 3]>,
    load_average_after: Option<[f64; 3]>,
    machine_cores: usize,
    /// No event lost, duplicated or stray, no run failed and some run completed, on every
    /// side of every level.
    clean: bool,
    levels: Vec<LevelRow>,
}

impl Report {
    fn print_table(&self) {
        let load = |l: &Option<[f64; 3]>| l.map_or("n/a".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"));
        let peer = self.peer.map_or(String::new(), |p| format!(" vs {}", p.name()));
        let users: Vec<String> = self.levels.iter().map(|l| l.users.to_string()).collect();
        println!(
            "apex bench{peer} · users {} · {} s per level · fresh servers per level · {} cores · load average {} before, {} after",
            users.join(","),
            self.duration_s,
            self.machine_cores,
            load(&self.load_average_before),
            load(&self.load_average_after)
        );
        println!(
            "{:>6} {:<10} {:>10} {:>21} {:>21} {:>15} {:>10} {:>12} {:>6} {:>8} {:>10}",
            "users",
            "server",
            "runs/s",
            "first event p50/p99",
            "full run p50/p99",
            "lost/dup/failed",
            "RSS",
            "CPU/run",
            "cores",
            "ev/run",
            "start"
        );
        for level in &self.levels {
            let sides = std::iter::once(&level.apex).chain(level.peer.as_ref());
            for side in sides {
                println!(
                    "{:>6} {:<10} {:>10.1} {:>21} {:>21} {:>15} {:>10} {:>12} {:>6} {:>8} {:>10}",
                    level.users,
                    side.server,
                    side.run.runs_per_s,
                    format!("{} / {} ms", num(side.run.first_event_ms.p50), num(side.run.first_event_ms.p99)),
                    format!("{} / {} ms", num(side.run.full_run_ms.p50), num(side.run.full_run_ms.p99)),
                    format!("{}/{}/{}", side.run.events_lost, side.run.events_duplicated, side.run.failed_runs),
                    side.server_rss_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB")),
                    side.server_cpu_ms_per_run.map_or("n/a".into(), |c| format!("{} ms", num(c))),
                    side.server_cores.map_or("n/a".into(), |c| format!("{c:.2}")),
                    side.events_per_run.map_or("n/a".into(), |e| format!("{e:.1}")),
                    side.cold_start_ms.map_or("n/a".into(), |c| format!("{} ms", num(c))),
                );
            }
            if let Some(r) = &level.ratios {
                let x = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{}x", num(v)));
                println!(
                    "{:>6} {:<10} runs/s {}   first event p50 {} p99 {}   full run p50 {} p99 {}   RSS {}   CPU/run {}",
                    level.users,
                    "apex÷peer",
                    x(r.runs_per_s),
                    x(r.first_event_p50),
                    x(r.first_event_p99),
                    x(r.full_run_p50),
                    x(r.full_run_p99),
                    x(r.server_rss),
                    x(r.server_cpu_per_run),
                );
            }
        }
        for level in &self.levels {
            for side in std::iter::once(&level.apex).chain(level.peer.as_ref()) {
                if let Some(why) = &side.run.first_failure {
                    println!("{} users, {}: first failure: {why}", level.users, side.server);
                }
            }
        }
        println!("result {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

/// Three significant digits at most, without a needless exponent.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn numbers_keep_about_three_digits() {
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(42.26), "42.3");
        assert_eq!(num(4.2), "4.20");
        assert_eq!(num(0.01234), "0.012");
    }
}

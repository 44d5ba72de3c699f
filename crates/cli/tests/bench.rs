//! `apex bench --deployments`: one short run measures SQLite, PostgreSQL + Redis and two
//! instances on them, loses nothing, spreads users across both instances, and leaves no
//! schema behind; `apex bench --sweep` measures each level on its own server; the capacity
//! modes shed stuck clients with 1013 and return to their idle baseline. Timing is not
//! checked here (see docs/performance.md for the numbers).
use std::process::{Command, Stdio};

use serde_json::Value;

fn postgres_url() -> String {
    std::env::var("APEX_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("APEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[test]
fn deployments_mode_measures_three_deployments_with_nothing_lost() {
    let child = Command::new(env!("CARGO_BIN_EXE_apex"))
        .args(["bench", "--deployments", "sqlite,postgres,postgres-x2", "--users", "4", "--duration", "2", "--json"])
        .args(["--postgres-url", &postgres_url(), "--redis-url", &redis_url()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap();

    let rows = report["deployments"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["deployment"].as_str().unwrap()).collect();
    assert_eq!(names, ["sqlite", "postgres", "postgres-x2"]);
    for row in rows {
        let name = &row["deployment"];
        assert_eq!(row["users_connected"], 4, "{name}");
        assert!(row["runs_completed"].as_u64().unwrap() > 0, "{name}: no run completed");
        for counter in ["events_lost", "events_duplicated", "stray_events", "failed_runs", "connect_errors"] {
            assert_eq!(row[counter], 0, "{name}: {counter}");
        }
        // The users were spread across the deployment's instances (as each one reports).
        let instances = row["instances"].as_u64().unwrap();
        assert_eq!(row["cpu_cores"]["servers"].as_array().unwrap().len() as u64, instances, "{name}");
        let connections = row["connections_per_instance"].as_array().unwrap();
        assert_eq!(connections.len() as u64, instances, "{name}");
        for (i, open) in connections.iter().enumerate() {
            assert!(open.as_u64().unwrap() >= 4 / instances, "{name}: instance {i} had {open} connections");
        }
    }
    assert_eq!(rows[0]["runs_per_s_ratio"], 1.0);
    assert!(report["scaling_x2"].as_f64().unwrap() > 0.0);
    assert_eq!(report["clean"], true);

    // The bench's schemas are dropped when it ends.
    let left = Command::new("psql")
        .args([&postgres_url(), "-qtAc", &format!("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'apex_bench_{pid}_%'")])
        .output()
        .unwrap();
    assert!(left.status.success(), "{}", String::from_utf8_lossy(&left.stderr));
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0", "a bench schema was left behind");
}

#[test]
fn sweep_measures_each_level_on_a_fresh_server_with_nothing_lost() {
    let (report, passed) = bench_json(&["--sweep", "1,2", "--duration", "1"]);
    assert!(passed, "{report}");

    assert_eq!(report["duration_s"], 1);
    assert_eq!(report["peer"], Value::Null);
    assert_eq!(report["clean"], true);
    assert!(report["machine_cores"].as_u64().unwrap() >= 1);
    assert_eq!(report["load_average_before"].as_array().unwrap().len(), 3);
    let levels = report["levels"].as_array().unwrap();
    let users: Vec<u64> = levels.iter().map(|l| l["users"].as_u64().unwrap()).collect();
    assert_eq!(users, [1, 2]);
    for level in levels {
        let (n, apex) = (&level["users"], &level["apex"]);
        assert_eq!(apex["server"], "apex", "{n}");
        assert_eq!(apex["users_connected"], *n);
        assert_eq!(level["peer"], Value::Null, "{n}");
        assert_eq!(level["ratios"], Value::Null, "{n}");
        let runs = apex["runs_completed"].as_u64().unwrap();
        assert!(runs > 0, "{n} users: no run completed");
        assert!(apex["runs_per_s"].as_f64().unwrap() > 0.0, "{n}");
        for counter in ["events_lost", "events_duplicated", "stray_events", "failed_runs", "connect_errors"] {
            assert_eq!(apex[counter], 0, "{n} users: {counter}");
        }
        assert_eq!(apex["first_failure"], Value::Null, "{n}");
        // Every completed run was timed, and a run is the golden path's dozens of events.
        for timing in ["first_event_ms", "full_run_ms"] {
            assert_eq!(apex[timing]["count"].as_u64().unwrap(), runs, "{n} users: {timing}");
            let (p50, p99) = (apex[timing]["p50"].as_f64().unwrap(), apex[timing]["p99"].as_f64().unwrap());
            assert!(0.0 < p50 && p50 <= p99, "{n} users: {timing} p50 {p50} p99 {p99}");
        }
        assert!(apex["first_event_ms"]["p50"].as_f64() <= apex["full_run_ms"]["p50"].as_f64(), "{n}");
        assert!(apex["events_per_run"].as_f64().unwrap() >= 20.0, "{n}: {}", apex["events_per_run"]);
        assert!(apex["baseline_ping_ms"]["count"].as_u64().unwrap() > 0, "{n}");
        assert!(apex["server_rss_mib"].as_f64().unwrap() > 0.0, "{n}");
        assert!(apex["cold_start_ms"].as_f64().unwrap() > 0.0, "{n}");
    }
}

/// The bench's JSON report, and whether it exited 0.
fn bench_json(args: &[&str]) -> (Value, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_apex"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    (report, out.status.success())
}

#[test]
fn slow_consumers_mode_sheds_every_stuck_client_with_1013_while_the_others_run() {
    let (report, passed) = bench_json(&["--slow-consumers", "2", "--users", "2", "--duration", "3", "--write-timeout", "1"]);
    assert!(passed, "{report}");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 6, "three rounds with and without stuck clients");
    for phase in phases {
        assert!(phase["runs_completed"].as_u64().unwrap() > 0, "{phase}");
        assert_eq!(phase["failed_runs"], 0, "{phase}");
        if phase["slow_consumers"] == 2 {
            assert_eq!(phase["shed"]["shed"], 2, "{phase}");
            assert_eq!(phase["shed"]["closed_1013"], 2, "{phase}");
        } else {
            assert!(phase["shed"].is_null());
        }
    }
    assert!(report["backlog"]["bytes"].as_u64().unwrap() > 4 << 20, "the backlog exceeds the socket buffers");
    assert!(report["full_run_p99_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(report["clean"], true);
}

#[test]
fn soak_mode_returns_to_its_idle_baseline() {
    // Resident memory is reported, not checked here: over a few seconds the allocator and
    // SQLite's page cache still grow; a leak shows over the bench's minutes.
    let (report, _) = bench_json(&["--soak", "4", "--users", "4"]);
    assert!(report["runs_completed"].as_u64().unwrap() > 0, "{report}");
    for counter in ["events_lost", "events_duplicated", "failed_runs"] {
        assert_eq!(report[counter], 0, "{counter}: {report}");
    }
    let (base, end) = (&report["baseline"], &report["end"]);
    assert!(report["peak"]["connections"].as_f64().unwrap() >= 4.0, "{report}");
    assert!(end["open_fds"].as_f64() <= base["open_fds"].as_f64(), "descriptors left open: {report}");
    assert!(end["tasks"].as_f64() <= base["tasks"].as_f64(), "tasks left running: {report}");
    assert!(base["tasks"].as_f64().unwrap() > 0.0, "the server reports its tasks");
}

#[test]
fn model_stream_mode_times_every_sentence_from_the_provider_to_the_websocket_client() {
    let (report, passed) = bench_json(&["--model-stream", "2", "--model-sentences", "6", "--model-token-interval-us", "500"]);
    assert!(passed, "{report}");
    assert_eq!(report["runs_failed"], 0, "{report}");
    assert_eq!(report["sentences_missing"], 0, "{report}");
    // Every sentence of both runs reached the client with its stamp, through `apex serve`.
    assert_eq!(report["through_apex_ms"]["count"], 12, "{report}");
    assert_eq!(report["bare_reader_ms"]["count"], 12, "{report}");
    let (p50, max) = (report["through_apex_ms"]["p50"].as_f64().unwrap(), report["through_apex_ms"]["max"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= max, "{report}");
}

#[test]
fn tool_rounds_mode_times_every_tool_round_trip_of_the_planning_loop() {
    let (report, passed) = bench_json(&["--tool-rounds", "2", "--tool-calls", "3"]);
    assert!(passed, "{report}");
    assert_eq!(report["runs_failed"], 0, "{report}");
    assert_eq!(report["rounds_missing"], 0, "{report}");
    // Every planned call of both runs was timed: a round-trip and the tool's own time.
    for key in ["loop_overhead_ms", "tool_ms", "round_trip_ms"] {
        assert_eq!(report[key]["count"], 6, "{key}: {report}");
    }
    assert_eq!(report["bare_round_trip_ms"]["count"], 16, "{report}");
    let (trip, tool) = (report["round_trip_ms"]["p50"].as_f64().unwrap(), report["tool_ms"]["p50"].as_f64().unwrap());
    assert!(tool > 0.0 && trip > tool, "{report}");
}

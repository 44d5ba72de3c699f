//! `apex bench --deployments`: one short run measures SQLite, PostgreSQL + Redis and two
//! instances on them, loses nothing, spreads users across both instances, and leaves no
//! schema behind. Timing is not checked here (see docs/performance.md for the numbers).
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
        .args([
            &postgres_url(),
            "-qtAc",
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'apex_bench_{pid}_%'"),
        ])
        .output()
        .unwrap();
    assert!(left.status.success(), "{}", String::from_utf8_lossy(&left.stderr));
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0", "a bench schema was left behind");
}

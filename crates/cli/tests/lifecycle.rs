//! Connection and process lifecycle: nothing leaks, shutdown is graceful, a crash loses
//! nothing that was acknowledged.
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_of_a_connection_is_released_on_disconnect() {
    let app = spawn_with(|_| (), |s| s.with_tool(slow("query_usage", 100))).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // Let the health-check connection of startup wind down, then take the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = metrics.num_alive_tasks();

    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = connect(&app, By::Demo).await;
        if i % 2 == 0 {
            c.ask("Analyze my AI costs", None).await; // some leave mid-run
        }
        clients.push(c);
    }
    assert!(metrics.num_alive_tasks() >= baseline + 20 * 2, "sessions, writers and runs are running");
    for (i, c) in clients.into_iter().enumerate() {
        if i % 3 == 0 {
            drop(c); // vanish without a close frame
        } else {
            c.close().await;
        }
    }
    eventually("every connection task and run to end", || metrics.num_alive_tasks() <= baseline).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_told_to_try_again_later() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.max_connections = 2;
        },
        |s| s,
    )
    .await;
    let _a = connect(&app, By::Demo).await;
    let _b = connect(&app, By::Demo).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(app.ws_url()).await.unwrap();
    let frame = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws)).await.unwrap();
    match frame {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1013),
        other => panic!("expected close 1013, got {other:?}"),
    }
    drop(_a);
    eventually_connects(&app).await;
}

async fn eventually_connects(app: &TestApp) {
    for _ in 0..100 {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(app.ws_url()).await {
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = futures_util::StreamExt::next(&mut ws).await {
                if t.contains("connection_ready") {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a slot never freed up");
}

#[tokio::test]
async fn peers_that_stop_answering_pings_are_dropped() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.ping_interval = std::time::Duration::from_secs_f64(0.1);
        },
        |s| s,
    )
    .await;
    let mut c = connect(&app, By::Demo).await;
    // Do not read: tungstenite answers pings only while the socket is read, so this peer
    // looks dead. Wait long enough for two intervals, then look at what arrived.
    tokio::time::sleep(Duration::from_millis(600)).await;
    match c.next_frame().await {
        Frame::Close(code) => assert_eq!(code, Some(4000)),
        Frame::Json(v) => panic!("expected the ping-timeout close, got {v}"),
    }
}

#[tokio::test]
async fn a_reading_peer_is_kept_alive_by_pings() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.ping_interval = std::time::Duration::from_secs_f64(0.1);
        },
        |s| s,
    )
    .await;
    let mut c = connect(&app, By::Demo).await;
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        // Reading answers the server's pings.
        let _ = tokio::time::timeout(Duration::from_millis(50), futures_util::StreamExt::next(&mut c.ws)).await;
    }
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next_json().await["type"], "pong");
}

#[tokio::test]
async fn graceful_shutdown_lets_runs_finish_then_closes_with_1012() {
    let mut app = spawn_with(|_| (), |s| s.with_tool(slow("query_usage", 400))).await;
    let mut c = connect(&app, By::Demo).await;
    c.ask("Analyze my AI costs", None).await;
    let first = c.next_json().await;
    assert_eq!(first["type"], "agent_started");
    app.trigger_shutdown();
    let mut events = vec![first];
    let mut notice = None;
    loop {
        match c.next_frame().await {
            Frame::Json(v) if v["type"] == "server_shutdown" => notice = Some(v),
            Frame::Json(v) => events.push(v),
            Frame::Close(code) => {
                assert_eq!(code, Some(1012));
                break;
            }
        }
    }
    assert!(notice.is_some_and(|n| n["grace_ms"].as_u64().unwrap() > 0));
    assert_golden_run(&events);
    app.stop().await;
    // New connections are not accepted any more.
    assert!(try_connect(&app.ws_url(), By::Demo).await.is_err());
}

#[tokio::test]
async fn runs_past_the_grace_period_are_interrupted_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&dir, |s: &mut apex_server::Settings| {
        s.shutdown_grace = std::time::Duration::from_secs_f64(0.2);
    });
    let mut app = spawn_in(dir, settings.clone(), |s| s.with_tool(slow("find_savings", 10_000))).await;
    let mut c = connect(&app, By::Demo).await;
    let token = c.token.clone().unwrap();
    let accepted = c.ask("Analyze my AI costs", None).await;
    loop {
        let e = c.next_json().await;
        if e["type"] == "tool_executing" && e["tool"] == "find_savings" {
            break;
        }
    }
    app.trigger_shutdown();
    let mut last = Value::Null;
    loop {
        match c.next_frame().await {
            Frame::Json(v) if v["type"] == "server_shutdown" => {}
            Frame::Json(v) => last = v,
            Frame::Close(code) => {
                assert_eq!(code, Some(1012));
                break;
            }
        }
    }
    assert_eq!(last["type"], "run_interrupted", "{last}");
    app.stop().await;

    let again = spawn_in(app.dir, settings, |s| s).await;
    let run = accepted["run_id"].as_str().unwrap();
    let (_, body) = again.get(&format!("/api/runs/{run}"), &token).await;
    assert_eq!(body["run"]["status"], "interrupted");
    assert_eq!(body["run"]["error_code"], "interrupted");
    let (_, events) = again.get(&format!("/api/runs/{run}/events"), &token).await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["type"], "run_interrupted");
    assert_eq!(events.iter().filter(|e| is_terminal(e)).count(), 1);
}

/// The binary on `bind` (`127.0.0.1:0` the first time, the same address after a restart).
async fn start_binary(data_dir: &std::path::Path, bind: &str) -> (KillOnDrop, std::net::SocketAddr) {
    spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(["serve", "--bind", bind])
            .env("APEX_DATA_DIR", data_dir)
            .env("APEX_TOOL_DELAY_MS", "150")
            .env("RUST_LOG", "warn"),
    )
    .await
}

#[tokio::test]
async fn a_killed_server_marks_its_runs_interrupted_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_binary(dir.path(), "127.0.0.1:0").await;
    let url = format!("ws://{addr}/ws");

    let mut c = try_connect(&url, By::Demo).await.unwrap();
    let token = c.token.clone().unwrap();
    // One run that completes, then one killed in the middle.
    c.ask("Analyze my AI costs", None).await;
    let done = c.events_until_terminal().await;
    assert_golden_run(&done);
    let accepted = c.ask("How do I reduce spend?", done[0]["thread_id"].as_str()).await;
    // Stop reading while a (slow) tool call is open, then kill the server.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(c.next_json().await);
    }
    assert_eq!(seen[2]["type"], "tool_executing");
    drop(server); // SIGKILL: no shutdown path runs
    drop(c);

    let _server = start_binary(dir.path(), &addr.to_string()).await;
    let http = |path: String| {
        let token = token.clone();
        async move {
            let r = http_client().get(format!("http://{addr}{path}")).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let run = accepted["run_id"].as_str().unwrap();
    let (status, body) = http(format!("/api/runs/{run}")).await;
    assert_eq!(status, 200, "the demo identity survives the restart (secret kept in the data dir)");
    assert_eq!(body["run"]["status"], "interrupted");

    let thread = accepted["thread_id"].as_str().unwrap();
    let (_, messages) = http(format!("/api/threads/{thread}/messages")).await;
    let roles: Vec<&str> = messages["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "the acknowledged message is kept");

    // Resume after the restart: whatever was persisted after what we saw, then the end.
    let mut c = try_connect(&url, By::Header(token.clone())).await.unwrap();
    c.send(json!({"type": "resume", "run_id": run, "after_seq": 0})).await;
    let replay = c.events_until_terminal().await;
    assert_eq!(replay.last().unwrap()["type"], "run_interrupted");
    for (i, e) in replay.iter().enumerate() {
        assert_eq!(e["seq"], json!(i as u64 + 1));
    }
    for (a, b) in seen.iter().zip(&replay) {
        assert_eq!(a, b, "persisted events are the ones that were sent");
    }
    // A tool call the crash cut short is closed as failed, so every call is paired.
    let started: Vec<&Value> = replay.iter().filter(|e| e["type"] == "tool_executing").map(|e| &e["tool_call_id"]).collect();
    let completed: Vec<&Value> = replay.iter().filter(|e| e["type"] == "tool_completed").map(|e| &e["tool_call_id"]).collect();
    assert_eq!(started, completed);
    assert_eq!(body["run"]["error_code"], "interrupted");
    // And the server takes new work as usual.
    c.ask("Analyze my AI costs", None).await;
    assert_golden_run(&c.events_until_terminal().await);
}

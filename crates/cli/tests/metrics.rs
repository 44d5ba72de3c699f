//! `GET /metrics`: one golden-path run (with a resume from a second connection, and an
//! unauthorized upgrade) moves the metric of every stage of the golden path, with the
//! labels operators filter on. Each test file runs in a process of its own (nextest), so
//! the process-wide recorder holds only what this test did.
mod common;

use std::time::Duration;

use apex_telemetry::{parse, total, Sample, STAGES};
use common::*;
use serde_json::json;

type Rows = Vec<Sample>;

async fn scrape(app: &TestApp) -> (Rows, String) {
    let r = http_client().get(app.http("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    (parse(&text), text)
}

fn labelled(rows: &Rows, name: &str, label: &str) -> Vec<String> {
    let mut values: Vec<String> =
        rows.iter().filter(|s| s.name == name && s.value > 0.0).filter_map(|s| s.label(label).map(str::to_owned)).collect();
    values.sort();
    values.dedup();
    values
}

#[tokio::test]
async fn a_golden_path_run_moves_the_metric_of_every_stage() {
    let app = spawn_app().await;
    let (before, _) = scrape(&app).await;

    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    let accepted = client.ask("Analyze my AI costs", None).await;
    let events = client.events_until_terminal().await;
    assert_golden_run(&events);
    // Another connection of the same user resumes the finished run from seq 5.
    let mut again = connect(&app, By::Header(token)).await;
    again.send(json!({"type": "resume", "run_id": accepted["run_id"], "after_seq": 5})).await;
    let replayed = again.events_until_terminal().await;
    assert_eq!(replayed.len(), events.len() - 5);
    client.close().await;
    again.close().await;
    let refused = http_client()
        .get(app.http("/ws?token=not-a-token"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // Sessions count their close when they end: shortly after the client's close frame.
    let mut after = scrape(&app).await.0;
    for _ in 0..200 {
        if total(&after, "apex_ws_connections_closed_total") >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = scrape(&app).await.0;
    }
    let unmoved: Vec<&str> =
        STAGES.iter().filter(|s| total(&after, s.series) <= total(&before, s.series)).map(|s| s.stage).collect();
    assert!(unmoved.is_empty(), "stages whose metric did not move: {unmoved:?}");

    assert_eq!(total(&after, "apex_runs_started_total"), 1.0);
    assert_eq!(labelled(&after, "apex_runs_finished_total", "status"), ["completed"]);
    assert_eq!(
        labelled(&after, "apex_agent_duration_seconds_count", "agent"),
        ["data", "optimization", "report", "supervisor", "triage"]
    );
    let tool_calls = events.iter().filter(|e| e["type"] == "tool_completed").count() as f64;
    assert_eq!(total(&after, "apex_tool_calls_total"), tool_calls);
    assert_eq!(labelled(&after, "apex_tool_calls_total", "outcome"), ["ok"]);
    assert_eq!(total(&after, "apex_run_first_event_seconds_count"), 1.0);
    assert!(total(&after, "apex_events_persisted_total") >= events.len() as f64);
    // The run has ended but still lingers in memory: it is resumed from there.
    assert_eq!(labelled(&after, "apex_resumes_total", "source"), ["live"]);
    assert_eq!(total(&after, "apex_events_replayed_total"), replayed.len() as f64);
    // The client's `ping` checks that nothing of the run followed its terminal event.
    assert_eq!(labelled(&after, "apex_ws_frames_received_total", "type"), ["ping", "resume", "user_message"]);
    // The test's clients close without a status code (1005, "no status received").
    assert_eq!(labelled(&after, "apex_ws_connections_closed_total", "code"), ["1005"]);
    assert_eq!(labelled(&after, "apex_ws_upgrades_rejected_total", "reason"), ["unauthorized"]);
    assert_eq!(total(&after, "apex_ws_connections_opened_total"), 2.0);
    assert_eq!(total(&after, "apex_ws_connections_open"), 0.0);
    assert_eq!(total(&after, "apex_runs_active"), 0.0);
    assert!(labelled(&after, "apex_db_query_seconds_count", "op").contains(&"apply".to_owned()));
    assert!(total(&after, "process_resident_memory_bytes") > 0.0, "process figures are exported");
    assert!(total(&after, "process_open_fds") > 0.0);
}

#[tokio::test]
async fn every_metric_is_described_and_errors_are_counted_by_code() {
    let app = spawn_app().await;
    let mut client = connect(&app, By::Demo).await;
    client.send(json!({"type": "stop_agent", "run_id": uuid::Uuid::now_v7()})).await;
    assert_eq!(client.next_json().await["code"], "not_found");
    client.send_raw(tokio_tungstenite::tungstenite::Message::Text("{not json".into())).await;
    assert_eq!(client.next_json().await["type"], "error");
    let (rows, text) = scrape(&app).await;
    assert_eq!(labelled(&rows, "apex_ws_client_errors_total", "code").len(), 2, "{text}");
    assert!(labelled(&rows, "apex_ws_client_errors_total", "code").contains(&"not_found".to_owned()));
    assert!(labelled(&rows, "apex_ws_frames_received_total", "type").contains(&"invalid".to_owned()));
    // Every catalogued metric that has a series carries its help text.
    for m in apex_telemetry::CATALOGUE {
        if text.lines().any(|l| l.starts_with(m.name)) {
            assert!(text.contains(&format!("# HELP {} ", m.name)), "{} has no help text", m.name);
        }
    }
}

//! Trace export over OTLP/HTTP (the `otlp` feature; `./scripts/test` builds with it):
//! `apex serve` as a process, exporting to a receiver on loopback that decodes the
//! protobuf it is sent, the way a collector would.
#![cfg(feature = "otlp")]
mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message as _;

/// An exported span, flattened: its name, trace, and string attributes.
#[derive(Debug)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

fn strings(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            other => Some((kv.key.clone(), format!("{other:?}"))),
        })
        .collect()
}

/// A receiver of OTLP/HTTP trace exports; returns its address and what it received (the
/// resource attributes and the spans of each export).
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<(HashMap<String, String>, Vec<Span>)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = move |body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
            for rs in request.resource_spans {
                let resource = strings(&rs.resource.map(|r| r.attributes).unwrap_or_default());
                let spans = rs
                    .scope_spans
                    .into_iter()
                    .flat_map(|ss| ss.spans)
                    .map(|s| Span { name: s.name, trace_id: s.trace_id, attributes: strings(&s.attributes) })
                    .collect();
                let _ = tx.send((resource, spans));
            }
            axum::http::StatusCode::OK
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_agents_and_tools_are_exported_as_spans_with_their_ids_and_no_message_text() {
    let (collector, mut received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("APEX_DATA_DIR", dir.path())
            .env("DEMO_MODE", "1")
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL"),
    )
    .await;
    let mut client = try_connect(&format!("ws://{addr}/ws"), By::Demo).await.unwrap();
    let token = client.token.clone().expect("a demo token");
    let question = "Analyze my AI costs";
    let accepted = client.ask(question, None).await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let thread_id = accepted["thread_id"].as_str().unwrap().to_owned();
    let events = client.events_until_terminal().await;
    assert_golden_run(&events);
    let user_id = client.user_id.clone();
    client.close().await; // ends the connection's span

    // Everything the run produced arrives within a few export intervals.
    let mut spans = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let has = |spans: &[Span], name: &str| spans.iter().any(|s| s.name == name);
    while !(has(&spans, "connection") && has(&spans, "run") && has(&spans, "tool")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((resource, batch))) = tokio::time::timeout(left, received.recv()).await else {
            panic!("not every span arrived: {:?}", spans.iter().map(|s: &Span| &s.name).collect::<Vec<_>>())
        };
        assert_eq!(resource.get("service.name").map(String::as_str), Some("apex"), "{resource:?}");
        spans.extend(batch);
    }
    drop(server);

    let run = spans.iter().find(|s| s.name == "run" && s.attributes.get("run_id") == Some(&run_id)).expect("the run's span");
    assert_eq!(run.attributes.get("thread_id"), Some(&thread_id), "{run:?}");
    assert_eq!(run.attributes.get("user_id"), Some(&user_id), "{run:?}");
    let in_run: Vec<&Span> = spans.iter().filter(|s| s.trace_id == run.trace_id).collect();
    let agents: Vec<&str> =
        in_run.iter().filter(|s| s.name == "agent").filter_map(|s| s.attributes.get("agent").map(String::as_str)).collect();
    for agent in ["triage", "data", "optimization", "report"] {
        assert!(agents.contains(&agent), "an `agent` span for {agent} in the run's trace: {agents:?}");
    }
    assert!(in_run.iter().any(|s| s.name == "tool" && s.attributes.contains_key("tool")), "`tool` spans in the run's trace");
    assert!(
        spans.iter().any(|s| s.name == "connection" && s.attributes.get("user_id") == Some(&user_id)),
        "the connection's span with its user"
    );
    // Neither the message text nor the token leave the process.
    for s in &spans {
        for value in s.attributes.values() {
            assert!(!value.contains(question) && !value.contains(&token), "{} carries {value:?}", s.name);
        }
    }
}

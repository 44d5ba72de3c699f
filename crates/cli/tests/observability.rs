//! What operators see of the REST side: every request traced with its route, status, user
//! and run; `/metrics` on a listener of its own when `APEX_METRICS_BIND` says so. Each test
//! runs in a process of its own (nextest), so the log subscriber a test installs sees only
//! that test's server.
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

/// Log lines, as the server writes them, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Self {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("apex_server=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }
}

#[tokio::test]
async fn rest_requests_are_traced_with_their_route_status_user_and_run() {
    let logs = Captured::install();
    let app = spawn_app().await;
    let mut client = connect(&app, By::Header(app.token("alice"))).await;
    let accepted = client.ask("Analyze my AI costs", None).await;
    client.events_until_terminal().await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();

    let token = app.token("alice");
    let (status, _) = app.get(&format!("/api/runs/{run_id}?token=secret-in-query"), &token).await;
    assert_eq!(status, 200);
    let (status, _) = app.get("/api/threads", "not-a-token").await;
    assert_eq!(status, 401);

    let lines = logs.lines();
    let run_line = lines
        .iter()
        .find(|l| l.contains("route=\"/api/runs/{id}\"") && l.contains("response"))
        .unwrap_or_else(|| panic!("the run request is traced: {lines:#?}"));
    for field in ["method=GET", "status=200", "user_id=\"alice\"", &format!("run_id={run_id}")] {
        assert!(run_line.contains(field), "{field} in {run_line}");
    }
    assert!(!lines.iter().any(|l| l.contains("secret-in-query")), "the query (where tokens travel) is never logged");
    let refused = lines
        .iter()
        .find(|l| l.contains("route=\"/api/threads\"") && l.contains("status=401"))
        .unwrap_or_else(|| panic!("a refused request is traced too: {lines:#?}"));
    assert!(!refused.contains("user_id=\""), "no user for a refused token: {refused}");
    assert!(
        lines.iter().any(|l| l.contains("route=\"/ws\"") && l.contains("user_id=\"alice\"")),
        "the WebSocket upgrade carries its user: {lines:#?}"
    );
}

#[tokio::test]
async fn metrics_can_be_served_on_a_listener_of_their_own() {
    // A free port, for the metrics listener to bind.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.metrics_bind = Some(metrics_addr);
        },
        |s| s,
    )
    .await;
    let http = http_client();

    let main = http.get(app.http("/metrics")).send().await.unwrap();
    assert_eq!(main.status().as_u16(), 404, "not on the public listener");
    let own = http.get(format!("http://{metrics_addr}/metrics")).send().await.unwrap();
    assert_eq!(own.status().as_u16(), 200);
    let text = own.text().await.unwrap();
    assert!(text.contains("apex_"), "the metrics are there: {}", &text[..text.len().min(300)]);
    let other = http.get(format!("http://{metrics_addr}/api/threads")).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404, "and nothing else is on the metrics listener");
}

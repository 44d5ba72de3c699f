//! Capacity: a client that stops reading is shed with close 1013 (docs/protocol.md §7)
//! while everyone else is served, and loses nothing it can resume. (Idle-connection cost,
//! the slow-consumer p99 experiment and the soak are benchmarks: `apex bench
//! --slow-consumers`, `--soak`, `--idle`; docs/performance.md, "Capacity".)
mod common;

use std::time::{Duration, Instant};

use apex_telemetry::{parse, total, Sample};
use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

async fn scrape(app: &TestApp) -> Vec<Sample> {
    parse(&http_client().get(app.http("/metrics")).send().await.unwrap().text().await.unwrap())
}

fn closed_with(samples: &[Sample], code: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "apex_ws_connections_closed_total" && s.label("code") == Some(code))
        .map(|s| s.value)
        .sum()
}

/// A client whose kernel receive buffer is as small as Linux allows: once it stops
/// reading, its socket and then the server's fill at once.
async fn small_buffer_client(app: &TestApp, token: &str) -> WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert!(t.contains("connection_ready"), "{t}"),
        other => panic!("expected connection_ready, got {other:?}"),
    }
    ws
}

#[tokio::test]
async fn a_client_that_stops_reading_is_shed_with_1013_and_loses_nothing() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.write_timeout = std::time::Duration::from_secs_f64(1.0);
            s.rate_limit = 100_000;
            s.user_rate_limit = 100_000;
        },
        |server| server,
    )
    .await;
    let mut owner = connect(&app, By::Demo).await;
    let token = owner.token.clone().unwrap();
    // Finished runs whose events the stuck client will ask for again and again.
    let mut finished = Vec::new();
    for _ in 0..5 {
        let accepted = owner.ask("Analyze my AI costs", None).await;
        assert_golden_run(&owner.events_until_terminal().await);
        finished.push(accepted["run_id"].as_str().unwrap().to_owned());
    }

    let before = scrape(&app).await;
    let mut stuck = small_buffer_client(&app, &token).await;
    // A run of its own, started just before it stops reading: it must finish regardless.
    stuck.send(Message::Text(json!({"type": "user_message", "text": "Analyze my AI costs"}).to_string().into())).await.unwrap();
    let accepted: Value = loop {
        if let Some(Ok(Message::Text(t))) = stuck.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "message_accepted" {
                break v;
            }
        }
    };
    // From here on it never reads, and keeps asking for whole runs again.
    let started = Instant::now();
    let mut shed = false;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let resume = json!({"type": "resume", "run_id": finished[i % finished.len()], "after_seq": 0});
        i += 1;
        // The server may already have dropped it; then sending fails, which is fine.
        let _ = tokio::time::timeout(Duration::from_millis(100), stuck.send(Message::Text(resume.to_string().into()))).await;
        if i % 20 == 0 {
            let now = scrape(&app).await;
            if total(&now, "apex_ws_slow_consumers_total") > total(&before, "apex_ws_slow_consumers_total") {
                shed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(shed, "a client that read nothing for 30 s (write timeout 1 s) was never shed");

    // Reading again within the grace: everything the sockets held, then the close frame.
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stuck.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the connection dropped without a close frame: {e}"),
                None => panic!("the connection ended without a close frame"),
            }
        }
    })
    .await
    .expect("the close frame arrives");
    let close = close.expect("the close frame has a code");
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
    assert!(close.reason.contains("reconnect and resume"), "{close:?}");

    // Everyone else was served meanwhile, and the stuck client's own run went on: resumed
    // from a new connection, it is complete.
    let after = scrape(&app).await;
    assert!(closed_with(&after, "1013") > closed_with(&before, "1013"), "the close is counted as 1013");
    owner.ask("Analyze my AI costs", None).await;
    assert_golden_run(&owner.events_until_terminal().await);
    let mut back = connect(&app, By::Header(token)).await;
    back.send(json!({"type": "resume", "run_id": accepted["run_id"], "after_seq": 0})).await;
    assert_golden_run(&back.events_until_terminal().await);
}

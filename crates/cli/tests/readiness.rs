//! `apex readiness` against a real server: a healthy one is ready (exit 0); servers broken
//! on purpose — one that loses events, one that closes connections with 1011 mid-run,
//! one without metrics — are not, and the scorecard names what failed.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// How the proxy in front of the server breaks it.
#[derive(Clone, Copy)]
enum Fault {
    /// Every `n`-th run event never reaches the client.
    DropEvery(u64),
    /// After `n` frames, the connection is closed with 1011 (internal error).
    CloseAfter(usize),
}

/// A WebSocket proxy in front of `upstream` that breaks delivery as `fault` says.
async fn broken(upstream: SocketAddr, fault: Fault) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let events = events.clone();
            tokio::spawn(async move {
                let mut auth = None;
                let mut path = String::from("/ws");
                #[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
                let callback = |req: &Request, resp: Response| {
                    auth = req.headers().get("authorization").cloned();
                    path = req.uri().to_string();
                    Ok(resp)
                };
                let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else { return };
                let mut request = format!("ws://{upstream}{path}").into_client_request().unwrap();
                if let Some(auth) = auth {
                    request.headers_mut().insert("authorization", auth);
                }
                let Ok((server, _)) = tokio_tungstenite::connect_async(request).await else { return };
                let (mut to_client, mut from_client) = client.split();
                let (mut to_server, mut from_server) = server.split();
                let up = async {
                    while let Some(Ok(m)) = from_client.next().await {
                        if to_server.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    let mut frames = 0;
                    while let Some(Ok(m)) = from_server.next().await {
                        frames += 1;
                        match (fault, &m) {
                            (Fault::DropEvery(n), Message::Text(t))
                                if t.contains("\"seq\"") && events.fetch_add(1, Ordering::Relaxed) % n == n - 1 =>
                            {
                                continue;
                            }
                            (Fault::CloseAfter(n), _) if frames > n => {
                                let close = CloseFrame { code: CloseCode::Error, reason: "internal error".into() };
                                let _ = to_client.send(Message::Close(Some(close))).await;
                                break;
                            }
                            _ => {}
                        }
                        if to_client.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    addr
}

/// Runs `apex readiness` and returns its exit code and JSON scorecard.
async fn assess(ws: &str, http: &str) -> (i32, Value) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_apex"))
        // Runs take milliseconds here: one that is not over in 5 s lost its end.
        .args([
            "readiness",
            "--url",
            ws,
            "--http",
            http,
            "--users",
            "3",
            "--runs",
            "2",
            "--run-timeout",
            "5",
            "--sweep-secs",
            "1",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    let card: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), card)
}

fn score(card: &Value, name: &str) -> f64 {
    card["scores"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["value"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_server_is_ready() {
    let app = spawn_app().await;
    let (code, card) = assess(&app.ws_url(), &app.http("")).await;
    assert_eq!(code, 0, "{card:#}");
    assert_eq!(card["ready"], true);
    for s in card["scores"].as_array().unwrap() {
        assert_eq!(s["pass"], true, "{s}");
    }
    assert_eq!(score(&card, "state persistence reliability"), 100.0);
    assert_eq!(score(&card, "monitoring coverage"), 100.0);
    let sweep: Vec<u64> = card["sweep"].as_array().unwrap().iter().map(|l| l["users"].as_u64().unwrap()).collect();
    assert_eq!(sweep, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_events_is_not_ready() {
    let app = spawn_app().await;
    let proxy = broken(app.addr, Fault::DropEvery(15)).await;
    let (code, card) = assess(&format!("ws://{proxy}/ws"), &app.http("")).await;
    assert_eq!(code, 1, "{card:#}");
    assert_eq!(card["ready"], false);
    let failing: Vec<&str> = card["not_ready_because"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(failing.contains(&"agent execution reliability"), "{failing:?}");
    assert!(failing.contains(&"golden-path pass rate"), "{failing:?}");
    assert!(score(&card, "agent execution reliability") < 95.0);
    let problems = card["problems"].to_string();
    assert!(problems.contains("lost, duplicated or reordered"), "{problems}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_with_1011_is_not_ready() {
    let app = spawn_app().await;
    let proxy = broken(app.addr, Fault::CloseAfter(12)).await;
    let (code, card) = assess(&format!("ws://{proxy}/ws"), &app.http("")).await;
    assert_eq!(code, 1, "{card:#}");
    let failing: Vec<&str> = card["not_ready_because"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(failing.contains(&"agent execution reliability"), "{failing:?}");
    assert!(failing.contains(&"scalability score"), "{failing:?}");
    assert!(card["problems"].to_string().contains("close 1011"), "{}", card["problems"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_metrics_is_not_ready() {
    let app = spawn_app().await;
    // The REST and /metrics base points at a server that answers 404 to everything.
    let nothing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nothing_addr = nothing.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = nothing.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    let (code, card) = assess(&app.ws_url(), &format!("http://{nothing_addr}")).await;
    assert_eq!(code, 1, "{card:#}");
    let failing: Vec<&str> = card["not_ready_because"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for name in ["state persistence reliability", "monitoring coverage", "golden-path pass rate"] {
        assert!(failing.contains(&name), "{name} should fail: {card:#}");
    }
    assert!(!failing.contains(&"agent execution reliability"), "runs themselves were fine: {card:#}");
    assert_eq!(score(&card, "monitoring coverage"), 0.0);
}

//! An echo endpoint on exactly the WebSocket configuration `GET /ws` uses (buffer sizes,
//! write-buffer bound, frame limits, and the close codes for what a peer sends wrong),
//! for the Autobahn conformance cases (`scripts/autobahn`), which need a server that
//! echoes every message back. Usage: `autobahn_echo 127.0.0.1:9001`.
use apex_protocol::DEFAULT_MAX_CLIENT_FRAME;
use apex_server::ws::{close_for_read_error, configure};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::WebSocketUpgrade;
use axum::routing::get;
use axum::Router;
use futures_util::SinkExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = Router::new()
        .fallback(get(|ws: WebSocketUpgrade| async move { configure(ws, DEFAULT_MAX_CLIENT_FRAME).on_upgrade(echo) }));
    axum::serve(listener, app).await
}

async fn echo(mut socket: WebSocket) {
    while let Some(message) = socket.recv().await {
        let reply = match message {
            Ok(Message::Text(text)) => Message::Text(text),
            Ok(Message::Binary(bytes)) => Message::Binary(bytes),
            // Pongs are sent by the WebSocket layer.
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            // The close reply is queued by the WebSocket layer: closing flushes it, as the
            // session's writer does when its queue closes.
            Ok(Message::Close(_)) => {
                let _ = socket.close().await;
                return;
            }
            Err(e) => {
                if let Some((code, reason)) = close_for_read_error(e) {
                    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    let _ = socket.close().await;
                }
                return;
            }
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

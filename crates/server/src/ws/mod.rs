//! `GET /ws`: authentication at the upgrade, then one session task per connection.
mod session;

use apex_protocol::SUBPROTOCOL;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::api::ApiError;
use crate::auth::token_from;
use crate::AppState;

/// Frames above the protocol limit but below this are answered with `message_too_large`
/// and the connection stays; only larger ones hit the transport limit (close 1009).
const TRANSPORT_LIMIT: usize = 64 * 1024;
/// Per-connection socket buffers: small, because an idle connection should cost kilobytes.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "not_websocket").increment(1);
            return rejection.into_response();
        }
    };
    let query_token = query.ok().and_then(|q| q.0.token);
    let identity = match app.auth.authenticate(token_from(&headers, query_token.as_deref()).as_deref()) {
        Ok(identity) => identity,
        Err(e) => {
            tracing::info!(reason = %e, "websocket upgrade refused");
            metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "unauthorized").increment(1);
            return ApiError::Unauthorized(e.to_string()).into_response();
        }
    };
    if app.shutting_down.is_cancelled() {
        metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "shutting_down").increment(1);
        return ApiError::Unavailable("the server is shutting down; reconnect shortly").into_response();
    }
    let limit = TRANSPORT_LIMIT.max(app.settings.max_frame_bytes * 2);
    ws.protocols([SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let sessions = app.sessions.clone();
            sessions.track_future(session::run(socket, app, identity))
        })
}

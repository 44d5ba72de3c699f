//! `GET /ws`: authentication at the upgrade, then one session task per connection.
mod session;

use apex_protocol::{close, SUBPROTOCOL};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use std::sync::Arc;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use serde::Deserialize;

use crate::api::ApiError;
use crate::auth::{token_from, AuthError};
use crate::listen::Slot;
use crate::AppState;

/// Frames above the protocol limit but below this are answered with `message_too_large`
/// and the connection stays; only larger ones hit the transport limit (close 1009).
const TRANSPORT_LIMIT: usize = 64 * 1024;
/// Per-connection socket buffers: small, because an idle connection should cost kilobytes.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// The most a connection's socket buffer may hold for a peer that does not read. Beyond
/// it, the automatic replies to the peer's Pings are coalesced into one (RFC 6455 §5.5.3
/// allows answering only the latest) instead of queued without bound, and the session's
/// own frames wait in its bounded queue until the write timeout sheds the peer.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
    /// The organization whose usage the connection's runs read (default: the user's own).
    org: Option<String>,
}

async fn upgrade(
    State(app): State<AppState>,
    slot: Option<Extension<Slot>>,
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
    if let Err(origin) = origin_allowed(&headers, &app.settings.allowed_origins) {
        tracing::info!(%origin, "websocket upgrade refused: origin not allowed");
        metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "origin").increment(1);
        let message = format!("origin `{origin}` is not allowed (APEX_ALLOWED_ORIGINS)");
        return ApiError::Forbidden("origin_not_allowed", message).into_response();
    }
    let (query_token, query_org) = query.ok().map_or((None, None), |q| (q.0.token, q.0.org));
    let token = token_from(&headers, query_token.as_deref());
    let identity = match async { app.identify(token?.as_deref()).await }.await {
        Ok(identity) => identity,
        Err(AuthError::Unavailable) => {
            metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "storage").increment(1);
            return ApiError::StorageUnavailable("sessions cannot be checked right now: storage is unavailable").into_response();
        }
        Err(e) => {
            tracing::info!(reason = %e, "websocket upgrade refused");
            metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "unauthorized").increment(1);
            return ApiError::Unauthorized(e.to_string()).into_response();
        }
    };
    if let Err(refused) = crate::accounts::api_keys::check_scope(&identity, &axum::http::Method::GET, "/ws") {
        metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "scope").increment(1);
        return refused.into_response();
    }
    let requested_org = headers.get(crate::orgs::ORG_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned).or(query_org);
    let org = match crate::orgs::resolve(&app, &identity, requested_org.as_deref()).await {
        Ok((org, _)) => org,
        Err(refused) => {
            metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "organization").increment(1);
            return refused.into_response();
        }
    };
    if app.shutting_down.is_cancelled() {
        metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "shutting_down").increment(1);
        return ApiError::Unavailable("the server is shutting down; reconnect shortly").into_response();
    }
    tracing::Span::current().record("user_id", identity.user_id.as_str());
    let user: Arc<str> = Arc::from(identity.user_id.as_str());
    let Some(user) = app.users.connect(&user) else {
        metrics::counter!(apex_telemetry::WS_UPGRADES_REJECTED, "reason" => "user_connections").increment(1);
        let limit = app.settings.max_connections_per_user;
        let message = format!("this user already has {limit} connections open; close one first");
        return ApiError::TooMany("too_many_connections", message).into_response();
    };
    // A session's or an API key's socket closes when it is revoked.
    let revocable = identity.session_id.as_deref().or(identity.key.as_ref().map(|(id, _)| id.as_str()));
    let watch = revocable.map(|id| app.revocations.watch(id));
    let held = session::Held { slot: slot.map(|Extension(slot)| slot), user, watch };
    configure(ws.protocols([SUBPROTOCOL]), app.settings.max_frame_bytes).on_upgrade(move |socket| {
        let sessions = app.sessions.clone();
        sessions.track_future(session::run(socket, app, identity, org, held))
    })
}

/// Browsers send `Origin` with every WebSocket handshake, and a page on any site may open
/// one to this server: only the server's own origin (the `Host` the request was sent to)
/// and the listed ones (`*`: any) are let through. Clients that are not browsers
/// send no `Origin` and are not affected.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| "(not text)".to_owned())?.trim().to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(&origin)) {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
    match (host, origin_host) {
        (Some(host), Some(origin_host)) if origin_host == host => Ok(()),
        _ => Err(origin),
    }
}

/// The WebSocket configuration of every connection: buffer sizes, write-buffer bound and
/// frame limits. Public so that conformance tests run on exactly this configuration.
pub fn configure<F>(ws: WebSocketUpgrade<F>, max_frame_bytes: usize) -> WebSocketUpgrade<F> {
    let limit = TRANSPORT_LIMIT.max(max_frame_bytes * 2);
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER.max(limit * 2))
        .max_message_size(limit)
        .max_frame_size(limit)
}

/// The close code and reason for a read error caused by what the peer sent, or `None`
/// when the socket simply failed (then there is nobody to tell).
pub fn close_for_read_error(e: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::Error as E;
    match e.into_inner().downcast_ref::<E>()? {
        E::Capacity(_) => Some((close::TOO_BIG, "frame larger than the transport limit")),
        E::Utf8(_) => Some((close::INVALID_PAYLOAD, "text frame is not valid UTF-8")),
        E::Protocol(_) => Some((close::PROTOCOL_ERROR, "WebSocket protocol violation")),
        _ => None,
    }
}

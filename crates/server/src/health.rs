//! Liveness (`/health`: the process answers) and readiness (`/api/health`: each component).
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(live)).route("/api/health", get(ready))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let started = Instant::now();
    let store = app.runs.store().ping().await;
    let store_ms = started.elapsed().as_secs_f64() * 1000.0;
    let accepting = app.runs.is_accepting();
    // Without its bus an instance still serves its own connections' runs: degraded, not down.
    let cluster = app.runs.cluster().map(|c| c.is_healthy());
    // Reads may work while writes fail (a full disk): then nothing new can be accepted.
    let writes = app.runs.storage_health();
    let writes_failing = writes.is_failing();
    let status = match (&store, accepting, cluster) {
        (_, false, _) => "shutting_down",
        (Err(_), _, _) => "unavailable",
        (Ok(()), true, _) if writes_failing => "unavailable",
        (Ok(()), true, Some(false)) => "degraded",
        (Ok(()), true, _) => "ok",
    };
    let code = if matches!(status, "ok" | "degraded") { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "demo_mode": app.settings.demo_mode,
        "components": {
            "store": {
                "status": if store.is_err() { "unavailable" } else if writes_failing { "failing" } else { "ok" },
                "writes": if writes_failing { json!({ "status": "failing", "error": writes.error() }) } else { json!({ "status": "ok" }) },
                "backend": app.settings.database_url.split(':').next().unwrap_or(""),
                "latency_ms": (store_ms * 1000.0).round() / 1000.0,
            },
            "engine": {
                "status": if accepting { "ok" } else { "draining" },
                "active_runs": app.runs.active_runs(),
                "persistence_backlog": app.runs.persistence_backlog(),
            },
            "websocket": { "status": "ok", "connections": app.open_connections() },
            "cluster": match cluster {
                None => json!({ "status": "off" }),
                Some(true) => json!({ "status": "ok", "bus": "redis" }),
                Some(false) => json!({ "status": "degraded", "bus": "redis" }),
            },
        },
    });
    (code, Json(body))
}

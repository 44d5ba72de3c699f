//! How the server reports on itself: logs (human-readable by default, JSON lines with
//! `--log-json` / `APEX_LOG_FORMAT=json`; tokens and message text are never logged) and
//! metrics (`GET /metrics`, Prometheus text; the catalogue is `apex_telemetry`).
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing_subscriber::EnvFilter;

use crate::AppState;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    metrics::gauge!(apex_telemetry::RUNTIME_TASKS_ALIVE).set(tasks as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], apex_telemetry::render())
}

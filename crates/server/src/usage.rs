//! Usage data: import (every format of `apex_costs::import`, gzip accepted), summary, delete. Every
//! route works on the authenticated user's rows only.
use apex_costs::import::{decompressed, sniff, Format};
use apex_costs::{breakdown, summarize, GroupBy};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use apex_store::import::{import_into, ImportFailed, ImportReport};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiError, User};
use crate::AppState;

/// Largest accepted upload (compressed size).
const MAX_UPLOAD: usize = 256 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/usage/import", post(import_usage).layer(DefaultBodyLimit::max(MAX_UPLOAD)))
        .route("/api/usage/summary", get(summary))
        .route("/api/usage", delete(delete_usage))
}

#[derive(Deserialize)]
struct ImportQuery {
    format: Option<String>,
}

async fn import_usage(
    State(app): State<AppState>,
    User(user): User,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let named = query.ok().and_then(|q| q.0.format);
    let sniffed = sniff(&body[..body.len().min(64 * 1024)]);
    let format = match named.as_deref() {
        Some(name) => Some(Format::parse(name).ok_or_else(|| {
            ApiError::BadRequest("invalid_field", format!("unknown format `{name}` ({})", Format::NAMES))
        })?),
        None => sniffed.format,
    }
    .ok_or_else(|| {
        ApiError::BadRequest("unknown_format", format!("cannot tell the format; pass ?format= one of {}", Format::NAMES))
    })?;

    let input = decompressed(std::io::Cursor::new(body), sniffed.gzipped);
    let report = import_into(app.runs.store().as_ref(), &user, format, input, |_| {}).await.map_err(|e| match e {
        ImportFailed::Unreadable(why) => ApiError::BadRequest("unreadable_file", why),
        ImportFailed::Store(e) => e.into(),
    })?;
    tracing::info!(imported = report.imported, duplicates = report.duplicates, rejected = report.rejected_count, "usage imported");
    Ok(Json(report))
}

#[derive(Deserialize)]
struct SummaryQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

async fn summary(
    State(app): State<AppState>,
    User(user): User,
    query: Result<Query<SummaryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query.map_err(|e| ApiError::BadRequest("invalid_field", e.body_text()))?.0;
    for day in [&q.from, &q.to].into_iter().flatten() {
        if !is_day(day) {
            return Err(ApiError::BadRequest("invalid_field", format!("`{day}` is not a YYYY-MM-DD date")));
        }
    }
    let by = q
        .group_by
        .as_deref()
        .map(|g| {
            GroupBy::parse(g).ok_or_else(|| {
                ApiError::BadRequest("invalid_field", format!("cannot group by `{g}` (model, provider, feature, project, day, user, api_key, environment)"))
            })
        })
        .transpose()?;
    let records = app.runs.store().usage(&user, q.from.as_deref(), q.to.as_deref()).await?;
    let s = summarize(&records);
    let mut body = json!({
        "records": records.len(),
        "from": s.from, "to": s.to, "days": s.days,
        "total": s.total, "total_display": s.total.to_string(),
        "requests": s.requests, "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
        "cached_input_tokens": s.cached_input_tokens, "unpriced_records": s.unpriced_records,
    });
    match by {
        Some(by) => {
            body["group_by"] = json!(q.group_by);
            body["groups"] = json!(breakdown(&records, by));
        }
        None => {
            body["by_model"] = json!(s.by_model);
            body["by_feature"] = json!(s.by_feature);
            body["daily"] = json!(s.daily);
        }
    }
    Ok(Json(body))
}

fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && s.chars().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

async fn delete_usage(State(app): State<AppState>, User(user): User) -> Result<Json<Value>, ApiError> {
    let deleted = app.runs.store().delete_usage(&user).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

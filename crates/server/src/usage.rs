//! Usage data: import (CSV or OpenAI usage JSON, gzip accepted), summary, delete. Every
//! route works on the authenticated user's rows only.
use std::io::Read;

use apex_costs::import::{import, Format, ImportRow, Rejected};
use apex_costs::{breakdown, summarize, GroupBy};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{ApiError, User};
use crate::AppState;

/// Largest accepted upload (compressed size).
const MAX_UPLOAD: usize = 256 * 1024 * 1024;
/// Rows handed to the store per transaction.
const CHUNK: usize = 5_000;
/// Rejected lines listed in the answer (all are counted).
const MAX_LISTED: usize = 1_000;

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

#[derive(Serialize, Default)]
struct ImportReport {
    format: Option<Format>,
    rows_read: u64,
    imported: u64,
    duplicates: u64,
    rejected_count: u64,
    rejected: Vec<Rejected>,
}

async fn import_usage(
    State(app): State<AppState>,
    User(user): User,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let named = query.ok().and_then(|q| q.0.format);
    let gzipped = body.starts_with(&[0x1f, 0x8b]);
    let format = match named.as_deref() {
        Some(name) => Some(Format::parse(name).ok_or_else(|| {
            ApiError::BadRequest("invalid_field", format!("unknown format `{name}` (generic_csv, openai_usage_json, litellm_spend_logs, otel_spans_json)"))
        })?),
        None => Format::detect(&head(&body, gzipped)),
    }
    .ok_or_else(|| {
        ApiError::BadRequest("unknown_format", "cannot tell the format; pass ?format=generic_csv, openai_usage_json, litellm_spend_logs or otel_spans_json".into())
    })?;

    // Parsing is CPU work: it runs on a blocking thread and hands rows over in chunks, so
    // memory stays bounded by the chunk size, not the file.
    let (tx, mut rx) = mpsc::channel::<Result<Vec<ImportRow>, Rejected>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let input: Box<dyn Read> =
            if gzipped { Box::new(flate2::read::GzDecoder::new(&body[..])) } else { Box::new(&body[..]) };
        let mut chunk = Vec::with_capacity(CHUNK);
        let result = import(
            format,
            input,
            |row| {
                chunk.push(row);
                if chunk.len() == CHUNK {
                    let _ = tx.blocking_send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))));
                }
            },
            |bad| {
                let _ = tx.blocking_send(Err(bad));
            },
        );
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
        result
    });

    let mut report = ImportReport { format: Some(format), ..ImportReport::default() };
    let now = apex_protocol::now_ms();
    while let Some(item) = rx.recv().await {
        match item {
            Ok(rows) => {
                let new = app.runs.store().import_usage(&user, &rows, now).await?;
                report.rows_read += rows.len() as u64;
                report.imported += new;
                report.duplicates += rows.len() as u64 - new;
            }
            Err(bad) => {
                report.rejected_count += 1;
                if report.rejected.len() < MAX_LISTED {
                    report.rejected.push(bad);
                }
            }
        }
    }
    parser
        .await
        .map_err(|e| ApiError::Internal(format!("import parser failed: {e}")))?
        .map_err(|e| ApiError::BadRequest("unreadable_file", e.to_string()))?;
    tracing::info!(imported = report.imported, duplicates = report.duplicates, rejected = report.rejected_count, "usage imported");
    Ok(Json(report))
}

/// The first few KiB of the upload, decompressed if needed, for format detection.
fn head(body: &[u8], gzipped: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(4096);
    let reader: Box<dyn Read + '_> = if gzipped { Box::new(flate2::read::GzDecoder::new(body)) } else { Box::new(body) };
    let _ = reader.take(4096).read_to_end(&mut head);
    head
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
                ApiError::BadRequest("invalid_field", format!("cannot group by `{g}` (model, provider, feature, project, day)"))
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

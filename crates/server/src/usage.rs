//! Usage data: import (every format of `apex_costs::import`, gzip accepted), summary, delete. Every
//! route works on the rows of one organization the caller belongs to ([`Scope`]: their
//! personal space unless the request names a shared one): reading needs any role,
//! importing `analyst`, deleting `admin`.
use apex_costs::import::{open, Limit, OpenError};
use apex_costs::{breakdown, is_calendar_day, summarize, top_groups, GroupBy, UsageQuery};
use apex_ingest::{import_into, ImportFailed, ImportReport};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::io::{StreamReader, SyncIoBridge};

use apex_store::OrgRole;

use crate::api::ApiError;
use crate::orgs::Scope;
use crate::AppState;

/// Largest accepted upload (compressed size). The body is streamed into the parser, never
/// held whole; what it decompresses to is limited by `apex_costs::limits`.
const MAX_UPLOAD: u64 = 256 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/usage/import", post(import_usage))
        .route("/api/usage/summary", get(summary))
        .route("/api/usage", delete(delete_usage))
}

#[derive(Deserialize)]
struct ImportQuery {
    format: Option<String>,
}

/// 413 `import_too_large` for a limit, with what was stored before it.
fn too_large(limit: &Limit, report: Option<&ImportReport>) -> ApiError {
    let kept = report.map_or(String::new(), |r| {
        format!("; {} rows read before it were kept ({} new, {} already there)", r.rows_read, r.imported, r.duplicates)
    });
    ApiError::TooLarge("import_too_large", format!("{limit}{kept}"))
}

async fn import_usage(
    State(app): State<AppState>,
    scope: Scope,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    scope.require(OrgRole::Analyst, "importing usage")?;
    let named = query.ok().and_then(|q| q.0.format);
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD) {
        return Err(too_large(&Limit::Compressed(MAX_UPLOAD), None));
    }
    // The body streams into the blocking parser: memory stays that of a few buffers
    // whatever the size of the upload. If the client goes away, the body fails (or this
    // future is dropped) and the parser stops.
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let bridge = SyncIoBridge::new(StreamReader::new(stream));
    let opened = tokio::task::spawn_blocking(move || open(bridge, named.as_deref(), MAX_UPLOAD))
        .await
        .map_err(|e| ApiError::Internal(format!("the import reader stopped: {e}")))?
        .map_err(|e| match e {
            OpenError::UnknownName(_) => ApiError::BadRequest("invalid_field", e.to_string()),
            OpenError::Undetected => ApiError::BadRequest(
                "unknown_format",
                format!("cannot tell the format; pass ?format= one of {}", apex_costs::import::Format::names()),
            ),
            OpenError::Read(_) => ApiError::BadRequest("unreadable_file", e.to_string()),
        })?;
    let report =
        import_into(app.runs.store().as_ref(), &scope.org, opened.format, opened.input, |_| {}).await.map_err(|e| match e {
            ImportFailed::Unreadable(why) => ApiError::BadRequest("unreadable_file", why),
            ImportFailed::Limit { limit, report } => {
                tracing::warn!(%limit, rows = report.rows_read, "usage import stopped at a limit");
                too_large(&limit, Some(&report))
            }
            ImportFailed::Store(e) => e.into(),
        })?;
    tracing::info!(
        imported = report.imported,
        duplicates = report.duplicates,
        rejected = report.rejected_count,
        "usage imported"
    );
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
    scope: Scope,
    query: Result<Query<SummaryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query.map_err(|e| ApiError::BadRequest("invalid_field", e.body_text()))?.0;
    for day in [&q.from, &q.to].into_iter().flatten() {
        if !is_calendar_day(day) {
            return Err(ApiError::BadRequest("invalid_field", format!("`{day}` is not a YYYY-MM-DD calendar date")));
        }
    }
    let by = q
        .group_by
        .as_deref()
        .map(|g| {
            GroupBy::parse(g).ok_or_else(|| {
                ApiError::BadRequest(
                    "invalid_field",
                    format!("cannot group by `{g}` (model, provider, feature, project, day, user, api_key, environment)"),
                )
            })
        })
        .transpose()?;
    // Summed by the store: per the rollup's names, or per day, model and the tag asked for.
    let keep = UsageQuery::keep_for(by.as_slice());
    let query = UsageQuery { from: q.from.clone(), to: q.to.clone(), filters: Vec::new(), keep };
    let records = app.runs.store().usage_totals(&scope.org, &query).await?;
    let s = summarize(&app.prices, &records);
    let mut body = json!({
        "organization": scope.org,
        "records": records.len(),
        "from": s.from, "to": s.to, "days": s.days,
        "total": s.total, "total_display": s.total.to_string(),
        "requests": s.requests, "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
        "cached_input_tokens": s.cached_input_tokens, "unpriced_records": s.unpriced_records,
    });
    match by {
        Some(by) => {
            body["group_by"] = json!(q.group_by);
            let groups = breakdown(&app.prices, &records, by);
            let (listed, more) = top_groups(&groups);
            body["groups"] = json!(listed);
            body["groups_more"] = json!(more);
        }
        None => {
            let (by_model, models_more) = top_groups(&s.by_model);
            let (by_feature, features_more) = top_groups(&s.by_feature);
            body["by_model"] = json!(by_model);
            body["by_model_more"] = json!(models_more);
            body["by_feature"] = json!(by_feature);
            body["by_feature_more"] = json!(features_more);
            body["daily"] = json!(s.daily);
        }
    }
    Ok(Json(body))
}

async fn delete_usage(State(app): State<AppState>, scope: Scope) -> Result<Json<Value>, ApiError> {
    scope.require(OrgRole::Admin, "deleting usage")?;
    let deleted = app.runs.store().delete_usage(&scope.org).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

//! The REST API: threads, messages, runs and run events of the authenticated user, and
//! of threads shared with the user's organizations (`shares.rs`). Another user's
//! resource answers 404, because the store finds nothing for this user.
use apex_protocol::{RunId, ThreadId, UserId};
use apex_store::{Shareable, StoreError};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::Caller;
use crate::shares::read_as;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/threads", get(list_threads))
        .route("/api/threads/{id}/messages", get(thread_messages))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/events", get(run_events))
}

/// Every REST error: a status and a stable JSON body `{"error":{"code","message"}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("not found")]
    NotFound,
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// 413: the request (or what it decompresses to) is past a size limit.
    #[error("{1}")]
    TooLarge(&'static str, String),
    #[error("{0}")]
    Unavailable(&'static str),
    /// 503: the store cannot be read or written right now; retry once it recovers.
    #[error("{0}")]
    StorageUnavailable(&'static str),
    /// Refused by policy (403), with a stable code.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// Over an allowance (429), with a stable code.
    #[error("{1}")]
    TooMany(&'static str, String),
    /// In conflict with what exists (409), with a stable code.
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadRequest(code, _) => (StatusCode::BAD_REQUEST, *code),
            Self::TooLarge(code, _) => (StatusCode::PAYLOAD_TOO_LARGE, *code),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Self::StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::Forbidden(code, _) => (StatusCode::FORBIDDEN, *code),
            Self::TooMany(code, _) => (StatusCode::TOO_MANY_REQUESTS, *code),
            Self::Conflict(code, _) => (StatusCode::CONFLICT, *code),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut response = (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The authenticated user of a REST request (Bearer header or `?token=`; see
/// [`Caller`] for the whole identity).
pub struct User(pub UserId);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Caller(identity) = Caller::from_request_parts(parts, app).await?;
        Ok(User(UserId::from(identity.user_id)))
    }
}

fn parse<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest("invalid_field", format!("`{raw}` is not a valid {what} id")))
}

async fn list_threads(State(app): State<AppState>, User(user): User) -> Result<Response, ApiError> {
    let threads = app.runs.store().list_threads(&user).await?;
    Ok(Json(json!({ "threads": threads })).into_response())
}

async fn thread_messages(
    State(app): State<AppState>,
    Caller(identity): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let thread_id: ThreadId = parse(&id, "thread")?;
    let store = app.runs.store();
    let (messages, runs) = read_as(&app, &identity, Shareable::Thread(thread_id), |user| {
        let store = store.clone();
        async move { tokio::try_join!(store.thread_messages(&user, thread_id), store.thread_runs(&user, thread_id)) }
    })
    .await?;
    Ok(Json(json!({ "thread_id": thread_id, "messages": messages, "runs": runs })).into_response())
}

async fn get_run(State(app): State<AppState>, Caller(identity): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run_id: RunId = parse(&id, "run")?;
    tracing::Span::current().record("run_id", tracing::field::display(run_id));
    let store = app.runs.store();
    let (run, agents) = read_as(&app, &identity, Shareable::Run(run_id), |user| {
        let store = store.clone();
        async move { tokio::try_join!(store.get_run(&user, run_id), store.agent_results(&user, run_id)) }
    })
    .await?;
    Ok(Json(json!({ "run": run, "agent_results": agents })).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    after_seq: Option<u64>,
}

/// A live run answers from its in-memory log (every event there is already persisted,
/// this just saves a query); a finished one from the store.
async fn run_events(
    State(app): State<AppState>,
    Caller(identity): Caller,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let run_id: RunId = parse(&id, "run")?;
    tracing::Span::current().record("run_id", tracing::field::display(run_id));
    let after_seq = query
        .map_err(|_| ApiError::BadRequest("invalid_field", "`after_seq` must be a non-negative integer".into()))?
        .0
        .after_seq
        .unwrap_or(0);
    let user = UserId::from(identity.user_id.as_str());
    let events: Vec<std::sync::Arc<str>> = match app.runs.live_log(&user, run_id) {
        Some(log) => log.events_after(after_seq),
        None => {
            let store = app.runs.store();
            read_as(&app, &identity, Shareable::Run(run_id), |user| {
                let store = store.clone();
                async move { store.run_events(&user, run_id, after_seq).await }
            })
            .await?
            .into_iter()
            .map(Into::into)
            .collect()
        }
    };
    // The events are stored as their wire JSON: splice them in rather than re-encoding.
    let mut body = format!("{{\"run_id\":\"{run_id}\",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

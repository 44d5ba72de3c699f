//! Threads shared with an organization. A thread is its owner's; the owner may share it
//! with one organization they belong to (`PUT /api/threads/{id}/share`), and that
//! organization's members then read it — its messages, runs and their events — through the
//! same REST reads as the owner, and list it (`GET /api/orgs/{id}/threads`). Only the owner
//! writes to it. A share ends when the owner makes it personal again, leaves the
//! organization or is removed from it; to anyone else a thread not shared with them is
//! `404`, as if it did not exist.
use std::future::Future;

use apex_protocol::{now_ms, OrgId, ThreadId, UserId, ORG_ID_PREFIX};
use apex_store::{Shareable, StoreError, StoreResult};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{same_origin, Caller};
use crate::api::ApiError;
use crate::auth::Identity;
use crate::orgs::resolve;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/threads/{id}/share", put(share).delete(unshare)).route("/api/orgs/{id}/threads", get(shared_with))
}

/// Reads `item` as its caller's own; failing that, when it is (in) a thread shared with an
/// organization the caller belongs to, as its owner's. `read` is called with the user
/// whose rows to read.
pub async fn read_as<T, F, Fut>(app: &AppState, identity: &Identity, item: Shareable, read: F) -> Result<T, ApiError>
where
    F: Fn(UserId) -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    match read(UserId::from(identity.user_id.as_str())).await {
        Err(StoreError::NotFound) => {}
        own => return Ok(own?),
    }
    let share = app.runs.store().share_of(item).await?.ok_or(ApiError::NotFound)?;
    // Not a member (or a key bound to another organization): as if there were no thread.
    resolve(app, identity, Some(share.org.as_str())).await.map_err(|_| ApiError::NotFound)?;
    Ok(read(share.owner).await?)
}

#[derive(Deserialize)]
struct ShareRequest {
    org: String,
}

fn thread_id(raw: &str) -> Result<ThreadId, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest("invalid_field", format!("`{raw}` is not a valid thread id")))
}

async fn share(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Path(id): Path<String>,
    Json(body): Json<ShareRequest>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let thread = thread_id(&id)?;
    if !body.org.starts_with(ORG_ID_PREFIX) {
        return Err(ApiError::BadRequest("invalid_field", "a thread is shared with an organization (`org:…`)".into()));
    }
    // Any member may share their own thread with the organization (and then every member
    // reads it); a non-member is refused before the thread is looked at.
    let (org, _) = resolve(&app, &identity, Some(&body.org)).await?;
    let owner = UserId::from(identity.user_id.as_str());
    app.runs.store().share_thread(&owner, thread, Some(&org), now_ms()).await?;
    Ok(Json(json!({ "thread_id": thread, "shared_with": org })).into_response())
}

async fn unshare(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let thread = thread_id(&id)?;
    let owner = UserId::from(identity.user_id.as_str());
    app.runs.store().share_thread(&owner, thread, None, now_ms()).await?;
    Ok(Json(json!({ "thread_id": thread, "shared_with": null })).into_response())
}

/// The threads shared with an organization, for its members.
async fn shared_with(
    State(app): State<AppState>,
    Caller(identity): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !id.starts_with(ORG_ID_PREFIX) {
        return Err(ApiError::BadRequest("invalid_field", "only an organization (`org:…`) has shared threads".into()));
    }
    let (org, _): (OrgId, _) = resolve(&app, &identity, Some(&id)).await?;
    let threads = app.runs.store().shared_threads(&org).await?;
    Ok(Json(json!({ "id": org, "threads": threads })).into_response())
}

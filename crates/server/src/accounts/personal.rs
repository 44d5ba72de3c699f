//! What Apex holds about the caller: `GET /api/me/export` gives all of it as one JSON
//! document, `DELETE /api/me` removes it (threads, messages, runs and their events, the
//! personal space's usage, the account, the memberships; its sessions and API keys end,
//! and their sockets close with 4001 on every instance). A shared organization's usage is
//! not the caller's: it stays while others belong to the organization (one without an
//! admin left gets its longest-standing member as admin) and goes with the last member.
//! Neither is open to API keys.
use apex_protocol::{now_ms, OrgId, UserId};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{same_origin, set_cookie, Caller};
use crate::api::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/me/export", get(export)).route("/api/me", axum::routing::delete(delete))
}

async fn export(State(app): State<AppState>, Caller(identity): Caller) -> Result<Response, ApiError> {
    let store = app.runs.store();
    let user = UserId::from(identity.user_id.as_str());
    let account = store.account(apex_store::AccountKey::Id(&identity.user_id)).await?;
    let mut threads = Vec::new();
    for thread in store.list_threads(&user).await? {
        let messages = store.thread_messages(&user, thread.id).await?;
        threads.push(json!({ "thread": thread, "messages": messages }));
    }
    let body = json!({
        "exported_at": now_ms(),
        "user_id": identity.user_id,
        "account": account.map(|a| json!({ "name": a.name, "role": a.role, "created_at": a.created_at, "disabled_at": a.disabled_at })),
        "sessions": store.sessions(&identity.user_id, now_ms()).await?,
        "api_keys": store.api_keys(&identity.user_id).await?,
        "threads": threads,
        "organizations": store.orgs_of(&user).await?,
        "usage": store.usage(&OrgId::personal(&user), None, None).await?,
    });
    let disposition = (header::CONTENT_DISPOSITION, "attachment; filename=\"apex-export.json\"");
    Ok(([disposition, (header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

async fn delete(State(app): State<AppState>, headers: HeaderMap, Caller(identity): Caller) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let store = app.runs.store();
    let at = now_ms();
    let mut ended: Vec<String> = store.sessions(&identity.user_id, at).await?.into_iter().map(|s| s.id).collect();
    ended.extend(store.api_keys(&identity.user_id).await?.into_iter().map(|k| k.id));
    if !store.delete_user(&identity.user_id, at).await? {
        return Err(ApiError::Conflict("run_in_progress", "a run of yours is in progress: stop it or wait for it to end".into()));
    }
    let user = UserId::from(identity.user_id.as_str());
    store.delete_usage(&OrgId::personal(&user)).await?;
    for emptied in store.leave_all(&user).await? {
        store.delete_usage(&emptied).await?;
    }
    app.revocations.end(&ended);
    tracing::info!(user_id = %identity.user_id, "the user's data was deleted at their request");
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &app, "", std::time::Duration::ZERO);
    Ok(response)
}

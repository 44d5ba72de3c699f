//! API keys: a user's credential for scripts and other services, sent like a token
//! (`Authorization: Bearer apx_…`, the `jwt.` subprotocol or `?token=`), accepted by REST,
//! the WebSocket, `apex ingest --url` and `apex chat`. A key acts as the user who made it,
//! within its scopes: `ingest` (importing and deleting usage), `read` (every `GET` of the
//! API) and `chat` (the WebSocket). Kept as its SHA-256 with its first characters to
//! recognise it by; shown once. A key cannot manage accounts, sessions or keys, nor
//! export or delete its user's data.
//! Revoking one closes its sockets like an ended session (4001).
use apex_protocol::now_ms;
use apex_store::NewApiKey;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{manage, same_origin, Caller};
use crate::api::ApiError;
use crate::auth::{AuthError, Identity, MAX_TOKEN_LIFETIME};
use crate::AppState;

/// How every key starts: tells a key from a JWT at a glance.
pub const PREFIX: &str = "apx_";
pub const SCOPES: [&str; 3] = ["ingest", "read", "chat"];
/// A key's last use is written at most this often (ms): not a write per request.
const TOUCH_EVERY_MS: u64 = 60_000;
/// Keys one user may hold.
const MAX_KEYS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/keys", get(list).post(create)).route("/api/keys/{id}", delete(revoke))
}

pub fn is_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The identity an API key acts as, if it is a key and not revoked.
pub async fn identify(app: &AppState, key: &str) -> Result<Identity, AuthError> {
    let store = app.runs.store();
    let found = store.api_key(&manage::digest(key)).await.map_err(|_| AuthError::Unavailable)?;
    let Some(found) = found.filter(|k| k.revoked_at.is_none()) else {
        return Err(AuthError::Invalid("unknown or revoked API key".into()));
    };
    let now = now_ms();
    if found.last_used_at.is_none_or(|at| now.saturating_sub(at) >= TOUCH_EVERY_MS) {
        if let Err(e) = store.touch_api_key(&found.id, now).await {
            tracing::warn!(error = %e, "could not record an API key's use");
        }
    }
    Ok(Identity {
        user_id: found.account_id,
        demo: false,
        expires_at: now / 1000 + MAX_TOKEN_LIFETIME.as_secs(),
        issued_token: None,
        session_id: None,
        key: Some((found.id, found.scopes)),
        org: found.org_id,
    })
}

/// The scope a key needs for a request, or `None` when no key may make it (managing
/// accounts, sessions and keys).
pub fn scope_for(method: &Method, path: &str) -> Option<&'static str> {
    if path.starts_with("/api/auth/") || path == "/api/me" || path.starts_with("/api/me/") || path.starts_with("/api/keys") {
        return None;
    }
    if path == "/ws" {
        return Some("chat");
    }
    if method == Method::GET || method == Method::HEAD {
        return Some("read");
    }
    if path.starts_with("/api/orgs") {
        return None;
    }
    path.starts_with("/api/usage").then_some("ingest")
}

/// Refuses a key used beyond its scopes.
pub fn check_scope(identity: &Identity, method: &Method, path: &str) -> Result<(), ApiError> {
    let Some((_, scopes)) = &identity.key else { return Ok(()) };
    match scope_for(method, path) {
        Some(scope) if scopes.iter().any(|s| s == scope) => Ok(()),
        Some(scope) => Err(ApiError::Forbidden("insufficient_scope", format!("this API key lacks the `{scope}` scope"))),
        None => Err(ApiError::Forbidden(
            "insufficient_scope",
            "API keys cannot manage accounts, sessions, keys, organizations or shared threads".into(),
        )),
    }
}

#[derive(Deserialize)]
struct NewKey {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// An organization's key: made by one of its admins, it reaches that organization only.
    #[serde(default)]
    org: Option<String>,
}

async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Json(body): Json<NewKey>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::BadRequest("invalid_field", "a key's name has 1 to 64 characters".into()));
    }
    let mut scopes = body.scopes.unwrap_or_else(|| SCOPES.map(String::from).to_vec());
    scopes.sort_by_key(|s| SCOPES.iter().position(|k| k == s));
    scopes.dedup();
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        return Err(ApiError::BadRequest("invalid_field", format!("scopes are one or more of {}", SCOPES.join(", "))));
    }
    let org_id = match body.org.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        Some(org) => {
            let (org, role) = crate::orgs::resolve(&app, &identity, Some(org)).await?;
            if !org.is_shared() {
                None
            } else if role != apex_store::OrgRole::Admin {
                return Err(ApiError::Forbidden("insufficient_role", "an organization's keys are made by its admins".into()));
            } else {
                Some(org.to_string())
            }
        }
        None => None,
    };
    let store = app.runs.store();
    if store.api_keys(&identity.user_id).await?.len() >= MAX_KEYS {
        return Err(ApiError::TooMany("too_many_keys", format!("at most {MAX_KEYS} keys per user: revoke one first")));
    }
    let key = format!("{PREFIX}{}", manage::random_token());
    let new = NewApiKey {
        id: format!("k_{}", uuid::Uuid::new_v4().simple()),
        account_id: identity.user_id.clone(),
        name: name.to_owned(),
        prefix: key[..PREFIX.len() + 6].to_owned(),
        key_hash: manage::digest(&key),
        scopes: scopes.clone(),
        org_id,
        at: now_ms(),
    };
    store.create_api_key(&new).await?;
    let body = json!({ "key": key, "id": new.id, "name": new.name, "prefix": new.prefix, "scopes": scopes, "org_id": new.org_id, "created_at": new.at });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list(State(app): State<AppState>, Caller(identity): Caller) -> Result<Response, ApiError> {
    let keys = app.runs.store().api_keys(&identity.user_id).await?;
    Ok(Json(json!({ "keys": keys })).into_response())
}

async fn revoke(State(app): State<AppState>, Caller(identity): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !app.runs.store().revoke_api_key(&identity.user_id, &id, now_ms()).await? {
        return Err(ApiError::NotFound);
    }
    app.revocations.end(&[id]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_scope_and_keys_never_manage_credentials() {
        assert_eq!(scope_for(&Method::GET, "/ws"), Some("chat"));
        assert_eq!(scope_for(&Method::GET, "/api/threads"), Some("read"));
        assert_eq!(scope_for(&Method::GET, "/api/usage/summary"), Some("read"));
        assert_eq!(scope_for(&Method::POST, "/api/usage/import"), Some("ingest"));
        assert_eq!(scope_for(&Method::DELETE, "/api/usage"), Some("ingest"));
        assert_eq!(scope_for(&Method::POST, "/api/keys"), None);
        assert_eq!(scope_for(&Method::GET, "/api/keys"), None);
        assert_eq!(scope_for(&Method::GET, "/api/me"), None);
        assert_eq!(scope_for(&Method::GET, "/api/me/export"), None);
        assert_eq!(scope_for(&Method::DELETE, "/api/me"), None);
        assert_eq!(scope_for(&Method::POST, "/api/auth/logout"), None);
        assert_eq!(scope_for(&Method::DELETE, "/api/threads"), None, "nothing else writes");
        assert_eq!(scope_for(&Method::GET, "/api/orgs"), Some("read"));
        assert_eq!(scope_for(&Method::POST, "/api/orgs"), None);
        assert_eq!(scope_for(&Method::POST, "/api/orgs/join"), None);
    }
}

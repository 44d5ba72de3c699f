//! Local accounts and sign-in: `/api/auth/*` and `/api/me`.
//!
//! Signing in (or up) starts a session: a refresh token in an `HttpOnly`, `SameSite=Strict`
//! cookie scoped to `/api/auth` (kept in the store as its SHA-256, replaced at every use,
//! and a replayed old one ends the session), and a short-lived access token (HS256 with
//! the server's secret, carrying the session id as `sid`) that the page keeps in memory and
//! sends as a bearer, or as the WebSocket subprotocol. An access token is good only while
//! its session is: every request checks it, and a socket of an ended session is closed with
//! 4001 (`revocation`). Every POST here takes JSON only, which a cross-site form cannot
//! send, and a browser's `Origin` must be the server's own (or listed): no CSRF.
//!
//! Passwords are argon2id (`passwords`); wrong ones count per account and lock it for a
//! while after [`Settings::login_max_failures`]; attempts are also limited per address.
pub mod api_keys;
pub mod manage;
pub mod oidc;
pub mod passwords;
pub mod personal;
pub mod revocation;

use std::net::SocketAddr;

use apex_protocol::now_ms;
use apex_store::{Account, AccountChange, AccountKey, NewSession, Rotation};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::ApiError;
use crate::auth::{token_from, AuthError, Identity};
use crate::settings::Signup;
use crate::AppState;
use manage::ManageError;

/// The session cookie: the refresh token, sent to `/api/auth` only.
pub const COOKIE: &str = "apex_session";
/// How long a token of no session waits for storage to say whether its account is disabled.
const DISABLED_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const COOKIE_PATH: &str = "/api/auth";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/config", get(config))
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/sessions", get(list_sessions))
        .route("/api/auth/sessions/{id}", delete(revoke_session))
        .route("/api/auth/invitations", post(create_invitation))
        .route("/api/me", get(me))
        .merge(api_keys::router())
        .merge(oidc::router())
        .merge(personal::router())
}

impl AppState {
    /// Who a request is: an API key's user, or [`crate::Auth::authenticate`] and, for a
    /// token of a sign-in session, that session still active; for a token of no session
    /// (minted with the secret by `apex token`, or by the identity provider) whose user is
    /// a local account, that account not disabled.
    pub async fn identify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        if let Some(key) = token.filter(|t| api_keys::is_key(t)) {
            return api_keys::identify(self, key).await;
        }
        let mut identity = self.auth.authenticate(token).await?;
        if let Some(sid) = &identity.session_id {
            let session = self.runs.store().session(sid).await.map_err(|_| AuthError::Unavailable)?;
            match session {
                Some(s) if s.is_active(now_ms()) && s.account_id == identity.user_id => {
                    identity.expires_at = s.expires_at / 1000;
                }
                _ => return Err(AuthError::SessionEnded),
            }
        } else if !identity.demo {
            // Such a token needs no session: while storage is down (the store retries reads
            // for seconds) it is let through after a short wait, as before accounts existed.
            let account = self.runs.store().account(AccountKey::Id(&identity.user_id));
            match tokio::time::timeout(DISABLED_CHECK_WAIT, account).await {
                Ok(Ok(Some(account))) if account.disabled_at.is_some() => return Err(AuthError::AccountDisabled),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not check whether the token's account is disabled"),
                Err(_) => tracing::warn!("storage did not say in time whether the token's account is disabled"),
            }
        }
        Ok(identity)
    }
}

/// The authenticated caller of a REST request (a token is required: REST never makes a
/// demo identity).
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct TokenQuery {
            token: Option<String>,
        }
        let query = axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.token);
        let token = token_from(&parts.headers, query.as_deref())
            .map_err(|e| ApiError::Unauthorized(e.to_string()))?
            .ok_or_else(|| ApiError::Unauthorized(AuthError::Missing.to_string()))?;
        let identity = app.identify(Some(&token)).await.map_err(|e| match e {
            AuthError::Unavailable => {
                ApiError::StorageUnavailable("sessions cannot be checked right now: storage is unavailable")
            }
            other => ApiError::Unauthorized(other.to_string()),
        })?;
        api_keys::check_scope(&identity, &parts.method, parts.uri.path())?;
        tracing::Span::current().record("user_id", identity.user_id.as_str());
        Ok(Caller(identity))
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Invalid(m) => ApiError::BadRequest("invalid_field", m),
            ManageError::NameTaken(_) => ApiError::Conflict("name_taken", e.to_string()),
            ManageError::NoSuchAccount(_) => ApiError::NotFound,
            ManageError::Store(e) => e.into(),
            ManageError::Internal(e) => ApiError::Internal(e.to_string()),
        }
    }
}

async fn config(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "demo_mode": app.settings.demo_mode,
        "signup": app.settings.signup,
        "accounts": app.auth.can_mint(),
        "oidc": (app.auth.can_mint() && app.settings.oidc_issuer.is_some()).then(|| json!({ "name": app.settings.oidc_name })),
    }))
}

#[derive(Deserialize)]
struct Credentials {
    name: String,
    password: String,
    #[serde(default)]
    invite: Option<String>,
}

/// Local sign-in needs a secret to sign access tokens with.
fn accounts_enabled(app: &AppState) -> Result<(), ApiError> {
    if app.auth.can_mint() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "accounts_unavailable",
            "local accounts need APEX_JWT_SECRET on this server; sign in with the identity provider".into(),
        ))
    }
}

/// A browser's `Origin` must be this server (or a listed origin): sign-in and the cookie
/// are not for other sites' pages.
pub(crate) fn same_origin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    crate::ws::origin_allowed(headers, &app.settings.allowed_origins).map_err(|origin| {
        ApiError::Forbidden("origin_not_allowed", format!("origin `{origin}` is not allowed (APEX_ALLOWED_ORIGINS)"))
    })
}

/// What a sign-in or sign-up must pass before its credentials are looked at: accounts on
/// here, a request from this server's own pages, and the address's allowance of attempts.
fn attempt_allowed(
    app: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    accounts_enabled(app)?;
    same_origin(app, headers)?;
    let ip = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(addr))| addr.ip());
    if app.sign_in_attempts.allow(ip) {
        return Ok(());
    }
    metrics::counter!(apex_telemetry::SIGN_INS, "outcome" => "rate_limited").increment(1);
    Err(ApiError::TooMany("rate_limited", "too many sign-in attempts from this address; wait a minute".into()))
}

async fn signup(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    attempt_allowed(&app, peer, &headers)?;
    let store = app.runs.store();
    // Checked before the invitation is claimed: a bad name must not use it up.
    manage::normalize_name(&body.name)?;
    passwords::check(&body.password).map_err(|m| ApiError::BadRequest("invalid_field", m))?;
    let invitation = match (app.settings.signup, body.invite.as_deref().filter(|c| !c.is_empty())) {
        (Signup::Closed, _) => None,
        (Signup::Open, None) => Some(None),
        (_, Some(code)) => {
            let hash = manage::digest(code);
            let role = store.claim_invitation(&hash, Some(now_ms())).await?;
            match role {
                Some(role) => Some(Some((hash, role))),
                None => return Err(ApiError::Forbidden("invite_invalid", "this invitation is unknown, used or expired".into())),
            }
        }
        (Signup::Invite, None) => None,
    };
    let Some(invitation) = invitation else {
        let message = match app.settings.signup {
            Signup::Invite => "accounts are by invitation here: ask an admin for an invitation link",
            _ => "accounts are created by an admin here (`apex users create`)",
        };
        return Err(ApiError::Forbidden("signup_closed", message.into()));
    };
    let role = invitation.as_ref().map(|(_, role)| role.as_str());
    let account = match manage::create(store.as_ref(), &body.name, &body.password, role).await {
        Ok(account) => account,
        Err(e) => {
            if let Some((hash, _)) = &invitation {
                let _ = store.claim_invitation(hash, None).await;
            }
            return Err(e.into());
        }
    };
    tracing::info!(account = %account.id, role = %account.role, "account created");
    start_session(&app, &account, &headers, StatusCode::CREATED).await
}

async fn login(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    attempt_allowed(&app, peer, &headers)?;
    let store = app.runs.store();
    let wrong = || ApiError::Unauthorized("wrong name or password".into());
    let outcome = |o: &'static str| metrics::counter!(apex_telemetry::SIGN_INS, "outcome" => o).increment(1);
    let account = match manage::normalize_name(&body.name) {
        Ok(name) => store.account(AccountKey::Name(&name)).await?,
        Err(_) => None,
    };
    let Some(account) = account else {
        passwords::verify(body.password, None).await;
        outcome("unknown_name");
        return Err(wrong());
    };
    let now = now_ms();
    if let Some(until) = account.locked_until.filter(|&until| until > now) {
        outcome("locked");
        let minutes = (until - now).div_ceil(60_000);
        return Err(ApiError::TooMany(
            "locked",
            format!("too many wrong passwords: this account is locked for {minutes} more minute(s)"),
        ));
    }
    if !passwords::verify(body.password, Some(account.password_hash.clone())).await {
        outcome("wrong_password");
        let change = AccountChange::LoginFailed {
            at: now,
            max_failures: app.settings.login_max_failures,
            lockout_ms: app.settings.login_lockout.as_millis() as u64,
        };
        store.update_account(&account.id, &change).await?;
        return Err(wrong());
    }
    if account.disabled_at.is_some() {
        outcome("disabled");
        return Err(ApiError::Forbidden("account_disabled", "this account is disabled; ask an admin".into()));
    }
    if account.failed_logins > 0 || account.locked_until.is_some() {
        store.update_account(&account.id, &AccountChange::LoginSucceeded).await?;
    }
    outcome("ok");
    start_session(&app, &account, &headers, StatusCode::OK).await
}

async fn start_session(app: &AppState, account: &Account, headers: &HeaderMap, status: StatusCode) -> Result<Response, ApiError> {
    let (session_id, refresh) = new_session(app, account, headers).await?;
    signed_in(app, account, &session_id, Some(&refresh), status)
}

/// A new sign-in session of the account: its id and refresh token.
async fn new_session(app: &AppState, account: &Account, headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let refresh = manage::random_token();
    let at = now_ms();
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let session = NewSession {
        id: format!("s_{}", uuid::Uuid::new_v4().simple()),
        account_id: account.id.clone(),
        refresh_hash: manage::digest(&refresh),
        at,
        expires_at: at + app.settings.session_ttl.as_millis() as u64,
        user_agent: user_agent.chars().take(200).collect(),
    };
    app.runs.store().create_session(&session).await?;
    Ok((session.id, refresh))
}

/// The access token and who it is for, and the refresh cookie when it changed.
fn signed_in(
    app: &AppState,
    account: &Account,
    session_id: &str,
    refresh: Option<&str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let ttl = app.settings.access_token_ttl;
    let token =
        app.auth.mint_for_session(&account.id, session_id, ttl).ok_or_else(|| ApiError::Internal("no signing key".into()))?;
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "user": { "id": account.id, "name": account.name, "role": account.role },
    });
    let mut response = (status, Json(body)).into_response();
    if let Some(refresh) = refresh {
        set_cookie(&mut response, app, refresh, app.settings.session_ttl);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A cookie the server sets: always `HttpOnly`, `Secure` unless `APEX_COOKIE_SECURE=0`,
/// and only sent to `path`.
pub(crate) struct CookieKind {
    pub name: &'static str,
    pub path: &'static str,
    pub same_site: cookie::SameSite,
}

/// The refresh session: only for `/api/auth`, never sent from another site.
const SESSION_COOKIE: CookieKind = CookieKind { name: COOKIE, path: COOKIE_PATH, same_site: cookie::SameSite::Strict };

/// Sets (or, with an empty value and no max age, clears) a cookie of `kind`.
pub(crate) fn put_cookie(response: &mut Response, app: &AppState, kind: &CookieKind, value: &str, max_age: std::time::Duration) {
    let cookie = cookie::Cookie::build((kind.name, value.to_owned()))
        .http_only(true)
        .secure(app.settings.secure_cookies())
        .same_site(kind.same_site)
        .path(kind.path)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn set_cookie(response: &mut Response, app: &AppState, value: &str, max_age: std::time::Duration) {
    put_cookie(response, app, &SESSION_COOKIE, value, max_age);
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}

/// Ended: the cookie is removed too.
fn session_over(app: &AppState, message: &str) -> Response {
    let mut response = ApiError::Unauthorized(message.to_owned()).into_response();
    set_cookie(&mut response, app, "", std::time::Duration::ZERO);
    response
}

async fn refresh(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(_): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    accounts_enabled(&app)?;
    same_origin(&app, &headers)?;
    let Some(presented) = session_cookie(&headers) else {
        return Err(ApiError::Unauthorized("not signed in".into()));
    };
    let store = app.runs.store();
    let replacement = manage::random_token();
    let at = now_ms();
    let expires_at = at + app.settings.session_ttl.as_millis() as u64;
    let (session, refresh) =
        match store.rotate_session(&manage::digest(&presented), &manage::digest(&replacement), at, expires_at).await? {
            Rotation::Rotated(session) => (session, Some(replacement.as_str())),
            Rotation::Raced(session) => (session, None),
            Rotation::Reused(id) => {
                tracing::warn!(session = %id, "a replaced refresh token was presented again: the session is revoked");
                metrics::counter!(apex_telemetry::SESSIONS_ENDED, "reason" => "reused").increment(1);
                app.revocations.end(&[id]);
                return Ok(session_over(&app, "this sign-in was used elsewhere and has been ended: sign in again"));
            }
            Rotation::Unknown => return Ok(session_over(&app, "the session has ended: sign in again")),
        };
    let account = store.account(AccountKey::Id(&session.account_id)).await?;
    match account {
        Some(account) if account.disabled_at.is_none() => signed_in(&app, &account, &session.id, refresh, StatusCode::OK),
        _ => Ok(session_over(&app, "this account is disabled")),
    }
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, Caller(identity): Caller) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    if let Some(sid) = &identity.session_id {
        end_sessions(&app, &identity.user_id, Some(sid), "signed_out").await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &app, "", std::time::Duration::ZERO);
    Ok(response)
}

/// Revokes sessions of an account and closes their sockets here (other instances see it
/// at their next poll). Returns the sessions ended.
async fn end_sessions(
    app: &AppState,
    account_id: &str,
    session_id: Option<&str>,
    reason: &'static str,
) -> Result<Vec<String>, ApiError> {
    let ended = app.runs.store().revoke_sessions(account_id, session_id, now_ms()).await?;
    metrics::counter!(apex_telemetry::SESSIONS_ENDED, "reason" => reason).increment(ended.len() as u64);
    app.revocations.end(&ended);
    Ok(ended)
}

/// The caller's local account; identities from elsewhere have none.
async fn own_account(app: &AppState, identity: &Identity) -> Result<Account, ApiError> {
    let account = app.runs.store().account(AccountKey::Id(&identity.user_id)).await?;
    account.ok_or_else(|| ApiError::Forbidden("no_account", "this identity has no local account".into()))
}

async fn list_sessions(State(app): State<AppState>, Caller(identity): Caller) -> Result<Response, ApiError> {
    let account = own_account(&app, &identity).await?;
    let sessions = app.runs.store().sessions(&account.id, now_ms()).await?;
    let sessions: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created_at": s.created_at,
                "last_used_at": s.last_used_at,
                "expires_at": s.expires_at,
                "user_agent": s.user_agent,
                "current": identity.session_id.as_deref() == Some(s.id.as_str()),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

async fn revoke_session(
    State(app): State<AppState>,
    Caller(identity): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let account = own_account(&app, &identity).await?;
    if end_sessions(&app, &account.id, Some(&id), "revoked").await?.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct InvitationRequest {
    #[serde(default)]
    role: Option<String>,
}

async fn create_invitation(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Json(body): Json<InvitationRequest>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let account = own_account(&app, &identity).await?;
    if account.role != "admin" {
        return Err(ApiError::Forbidden("admin_only", "only an admin can invite".into()));
    }
    let role = body.role.as_deref().unwrap_or("member");
    let (code, expires_at) = manage::invite(app.runs.store().as_ref(), role, &account.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "code": code, "path": format!("/#invite={code}"), "expires_at": expires_at, "role": role })),
    )
        .into_response())
}

async fn me(State(app): State<AppState>, Caller(identity): Caller) -> Result<Response, ApiError> {
    let account = app.runs.store().account(AccountKey::Id(&identity.user_id)).await?;
    Ok(Json(json!({
        "id": identity.user_id,
        "demo": identity.demo,
        "session_id": identity.session_id,
        "account": account.map(|a| json!({ "name": a.name, "role": a.role, "created_at": a.created_at })),
    }))
    .into_response())
}

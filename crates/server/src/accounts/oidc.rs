//! Sign-in with the OpenID Connect provider a team already runs: the authorization code
//! flow with PKCE (`openidconnect`).
//!
//! `GET /api/auth/oidc/start` sends the browser to the provider with a fresh `state`,
//! `nonce` and PKCE challenge, which it also keeps in a short-lived cookie (`apex_oidc`:
//! signed with the server's secret, `HttpOnly`, `SameSite=Lax` so that it comes back with
//! the provider's redirect, `Path=/api/auth/oidc`). `GET /api/auth/oidc/callback` checks the
//! `state`, exchanges the code with the verifier, and has the ID token checked (the
//! provider's keys from its discovery document, issuer, audience, expiry, nonce). The user
//! is the local account of that provider subject (created on first sign-in), else — for a
//! verified email — the local account of that name; groups from the configured claim give
//! the install role. Then a session starts as with a password, and the browser goes back
//! to the page, which signs in through `/api/auth/refresh`. Failures go back to the page
//! as `/#signin_error=…`, never as a session.
use std::time::Duration;

use apex_protocol::now_ms;
use apex_store::{Account, AccountChange, AccountKey, NewAccount, StoreError};
use apex_telemetry::error_chain;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{manage, new_session, put_cookie, set_cookie, CookieKind};
use crate::api::ApiError;
use crate::AppState;

/// `state`, `nonce` and the PKCE verifier between `start` and `callback`: `Lax`, as the
/// provider's redirect back is a top-level navigation from another site.
const FLOW_COOKIE: CookieKind = CookieKind { name: "apex_oidc", path: "/api/auth/oidc", same_site: cookie::SameSite::Lax };
/// How long a sign-in at the provider may take.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// The provider's discovery document (and its keys) is fetched again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

pub fn router() -> Router<AppState> {
    Router::new().route("/api/auth/oidc/start", get(start)).route("/api/auth/oidc/callback", get(callback))
}

/// The provider's metadata, fetched when first needed and kept for [`DISCOVERY_TTL`].
#[derive(Default)]
pub struct Discovery(Mutex<Option<(std::time::Instant, CoreProviderMetadata)>>);

impl Discovery {
    async fn metadata(&self, http: &openidconnect::reqwest::Client, issuer: &str) -> Result<CoreProviderMetadata, String> {
        // Held across the fetch on purpose: sign-ins arriving meanwhile wait for that one
        // fetch (bounded by the HTTP client's timeout) instead of each asking the provider.
        let mut cached = self.0.lock().await;
        if let Some((_, metadata)) = cached.as_ref().filter(|(at, _)| at.elapsed() < DISCOVERY_TTL) {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|e| format!("APEX_OIDC_ISSUER is not a URL: {e}"))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, http)
            .await
            .map_err(|e| format!("the identity provider's discovery document could not be read: {}", error_chain(&e)))?;
        *cached = Some((std::time::Instant::now(), metadata.clone()));
        Ok(metadata)
    }
}

/// What the browser carries from `start` to `callback`, signed.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    redirect: String,
    exp: u64,
}

fn http_client() -> Result<openidconnect::reqwest::Client, String> {
    openidconnect::reqwest::ClientBuilder::new()
        // Following redirects would let a provider's answer point the server anywhere (SSRF).
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// The provider's client, for the redirect URL of this flow.
async fn client(
    app: &AppState,
    redirect: &str,
) -> Result<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    let (Some(issuer), Some(id)) = (&app.settings.oidc_issuer, &app.settings.oidc_client_id) else {
        return Err("sign-in with an identity provider is not configured here".into());
    };
    let metadata = app.oidc.metadata(&http_client()?, issuer).await?;
    let secret = app.settings.oidc_client_secret.as_ref().map(|s| ClientSecret::new(s.expose_secret().to_owned()));
    let redirect = RedirectUrl::new(redirect.to_owned()).map_err(|e| format!("the redirect URL is not a URL: {e}"))?;
    Ok(CoreClient::from_provider_metadata(metadata, ClientId::new(id.clone()), secret).set_redirect_uri(redirect))
}

/// Where the provider sends the browser back: configured, or this server as the browser
/// reached it.
fn redirect_url(app: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings.oidc_redirect_url {
        return url.clone();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = if app.settings.secure_cookies() { "https" } else { "http" };
    format!("{scheme}://{host}{}/callback", FLOW_COOKIE.path)
}

/// Back to the page with a reason it shows on the sign-in form.
fn back_with_error(app: &AppState, message: &str) -> Response {
    let encoded: String = openidconnect::url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let mut response = Redirect::to(&format!("/#signin_error={encoded}")).into_response();
    clear_flow(&mut response, app);
    response
}

fn clear_flow(response: &mut Response, app: &AppState) {
    put_cookie(response, app, &FLOW_COOKIE, "", Duration::ZERO);
}

async fn start(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !app.auth.can_mint() {
        return ApiError::Forbidden("accounts_unavailable", "sign-in needs APEX_JWT_SECRET on this server".into())
            .into_response();
    }
    let redirect = redirect_url(&app, &headers);
    let client = match client(&app, &redirect).await {
        Ok(client) => client,
        Err(e) if app.settings.oidc_issuer.is_none() => return ApiError::Forbidden("oidc_unavailable", e).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "sign-in with the identity provider could not start");
            return back_with_error(&app, "The identity provider cannot be reached right now; try again shortly.");
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
    for scope in app.settings.oidc_scopes.split_whitespace().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.to_owned()));
    }
    let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
    let flow = Flow {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        redirect,
        exp: now_ms() / 1000 + FLOW_TTL.as_secs(),
    };
    let Some(signed) = app.auth.sign_payload(&flow) else {
        return ApiError::Internal("no signing key".into()).into_response();
    };
    let mut response = Redirect::to(url.as_str()).into_response();
    put_cookie(&mut response, &app, &FLOW_COOKIE, &signed, FLOW_TTL);
    response
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else { return back_with_error(&app, "The identity provider's answer was malformed.") };
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or(error);
        return back_with_error(
            &app,
            &format!("The identity provider refused the sign-in: {}", why.chars().take(200).collect::<String>()),
        );
    }
    let flow = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == FLOW_COOKIE.name)
        .and_then(|c| app.auth.verify_payload::<Flow>(c.value()));
    let Some(flow) = flow else {
        return back_with_error(&app, "This sign-in expired or was started elsewhere; start it again.");
    };
    // The state ties the answer to this browser's own start (no login CSRF).
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return back_with_error(&app, "The identity provider sent no code.");
    };
    if !constant_time_eq(state.as_bytes(), flow.state.as_bytes()) {
        return back_with_error(&app, "This sign-in does not match the one started here; start it again.");
    }
    match finish(&app, &headers, &flow, code).await {
        Ok(response) => response,
        Err(Failure::Refused(message)) => back_with_error(&app, &message),
        Err(Failure::Broken(e)) => {
            tracing::warn!(error = %e, "sign-in with the identity provider failed");
            back_with_error(&app, "The sign-in with the identity provider failed; try again.")
        }
    }
}

enum Failure {
    /// Shown to the user as it is.
    Refused(String),
    /// Logged; the user gets a generic message.
    Broken(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Broken(e.to_string())
    }
}

async fn finish(app: &AppState, headers: &HeaderMap, flow: &Flow, code: String) -> Result<Response, Failure> {
    let client = client(app, &flow.redirect).await.map_err(Failure::Broken)?;
    let http = http_client().map_err(Failure::Broken)?;
    let exchange = client.exchange_code(AuthorizationCode::new(code)).map_err(|e| Failure::Broken(error_chain(&e)))?;
    let tokens = exchange
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| Failure::Broken(format!("the code exchange failed: {}", error_chain(&e))))?;
    let Some(id_token) = openidconnect::TokenResponse::id_token(&tokens) else {
        return Err(Failure::Broken("the provider sent no ID token".into()));
    };
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(flow.nonce.clone()))
        .map_err(|e| Failure::Broken(format!("the ID token was refused: {}", error_chain(&e))))?;
    let issuer = claims.issuer().as_str().to_owned();
    let subject = claims.subject().as_str().to_owned();
    let email = claims.email().map(|e| e.as_str().to_lowercase()).filter(|_| claims.email_verified() == Some(true));
    let username = claims.preferred_username().map(|u| u.as_str().to_owned());
    // Checked above: what the payload says is the provider's.
    let groups = groups_of(&id_token.to_string(), &app.settings.oidc_groups_claim);
    let role = app.settings.oidc_admin_groups.as_deref().map(|admins| {
        let admin = admins.split(',').map(str::trim).any(|g| !g.is_empty() && groups.iter().any(|have| have == g));
        if admin {
            "admin"
        } else {
            "member"
        }
    });

    let store = app.runs.store();
    let id = provider_account_id(&issuer, &subject);
    let mut account = store.account(AccountKey::Id(&id)).await?;
    if account.is_none() {
        if let Some(email) = &email {
            account = store.account(AccountKey::Name(email)).await?;
        }
    }
    let account = match account {
        Some(account) => account,
        None => create(app, &id, email.as_deref().or(username.as_deref()), role).await?,
    };
    if account.disabled_at.is_some() {
        metrics::counter!(apex_telemetry::SIGN_INS, "outcome" => "disabled").increment(1);
        return Err(Failure::Refused("This account is disabled; ask an admin.".into()));
    }
    let account = match role.filter(|r| *r != account.role) {
        Some(role) => {
            store.update_account(&account.id, &AccountChange::Role(role.to_owned())).await?;
            Account { role: role.to_owned(), ..account }
        }
        None => account,
    };
    metrics::counter!(apex_telemetry::SIGN_INS, "outcome" => "ok").increment(1);
    tracing::info!(user_id = %account.id, "signed in with the identity provider");
    let (_, refresh) = new_session(app, &account, headers).await.map_err(|e| Failure::Broken(e.to_string()))?;
    let mut response = Redirect::to("/").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    set_cookie(&mut response, app, &refresh, app.settings.session_ttl);
    clear_flow(&mut response, app);
    Ok(response)
}

/// The local account id of a provider's subject: stable, and never another's.
fn provider_account_id(issuer: &str, subject: &str) -> String {
    let digest = Sha256::digest(format!("{issuer}\n{subject}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("o_{hex}")
}

/// A new account for a provider's user, named after their email or user name (a number
/// added while the name is taken).
async fn create(app: &AppState, id: &str, wanted: Option<&str>, role: Option<&str>) -> Result<Account, Failure> {
    let base = wanted.and_then(|w| manage::normalize_name(w).ok()).unwrap_or_else(|| id.to_owned());
    for attempt in 0..20u32 {
        let name = if attempt == 0 { base.clone() } else { format!("{}-{attempt}", base.chars().take(58).collect::<String>()) };
        // No password: such an account signs in through the provider only.
        let new =
            NewAccount { id: id.to_owned(), name, password_hash: String::new(), role: role.map(str::to_owned), at: now_ms() };
        match app.runs.store().create_account(&new).await {
            Ok(account) => return Ok(account),
            Err(StoreError::Conflict) => {
                if let Some(existing) = app.runs.store().account(AccountKey::Id(id)).await? {
                    return Ok(existing); // the same user signing in twice at once
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::Refused("No free account name was found for you; ask an admin.".into()))
}

/// The groups the (already verified) ID token lists in `claim`: an array of strings, or one.
fn groups_of(jwt: &str, claim: &str) -> Vec<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok());
    let Some(value) = payload.and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok()) else { return Vec::new() };
    match &value[claim] {
        serde_json::Value::Array(items) => items.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
        serde_json::Value::String(one) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_has_one_account_id_per_issuer() {
        let a = provider_account_id("https://id.example.com", "248289761001");
        assert_eq!(a, provider_account_id("https://id.example.com", "248289761001"));
        assert_ne!(a, provider_account_id("https://other.example.com", "248289761001"));
        assert!(a.starts_with("o_") && a.len() == 34);
    }

    #[test]
    fn groups_come_from_the_configured_claim_as_a_list_or_one() {
        use base64::Engine as _;
        let jwt = |payload: &str| format!("x.{}.y", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload));
        assert_eq!(groups_of(&jwt(r#"{"groups":["ops","apex-admins"]}"#), "groups"), ["ops", "apex-admins"]);
        assert_eq!(groups_of(&jwt(r#"{"roles":"apex-admins"}"#), "roles"), ["apex-admins"]);
        assert!(groups_of(&jwt(r#"{"groups":[1,2]}"#), "groups").is_empty());
        assert!(groups_of("not a token", "groups").is_empty());
    }
}

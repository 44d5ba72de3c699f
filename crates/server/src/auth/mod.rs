//! Authentication: JWTs (HS256 with the server's secret; RS256, ES256/ES384 and EdDSA with
//! a configured public key or the identity provider's JWKS: [`keys`]), and demo identities
//! when demo mode is on.
//!
//! A token can arrive in the `Authorization: Bearer` header, as a `jwt.<token>` WebSocket
//! subprotocol (browsers cannot set headers), or as `?token=` (never logged). A credential
//! that is present but invalid — a bad token, or an `Authorization` header of another
//! scheme — is refused even in demo mode: it must not silently become a different,
//! anonymous identity.
//!
//! Validation follows RFC 7519 and RFC 8725: the algorithm is pinned per key, `exp` and
//! `sub` are required, `nbf` and `iat` are optional and honoured when present, `iss` and
//! `aud` are required when configured (`aud` may be an array), a `crit` header is refused
//! (this verifier understands no extension), and an expiry further away than
//! [`MAX_TOKEN_LIFETIME`] is refused as absurd.
use std::path::Path;
use std::time::Duration;

use apex_protocol::{now_ms, DEMO_USER_PREFIX, JWT_SUBPROTOCOL_PREFIX};
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

mod keys;

use keys::{Jwks, VerifyKey};

/// How long a token handed to a demo identity stays valid.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const SECRET_FILE: &str = "jwt-secret";
/// The furthest expiry a token may carry: beyond it, `exp` is a mistake or an attack.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;
/// Longest token accepted at all: a header of tens of KiB is not a token.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims Apex reads (and mints). `iss` and `aud` are checked by the validation and
/// not kept; `aud` may be a string or an array (RFC 7519 §4.1.3).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demo: bool,
    /// The sign-in session of a local account (`accounts`): the token is good only while
    /// that session is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Who is on the other end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub demo: bool,
    /// When the credential expires (seconds since the epoch); the connection ends then.
    pub expires_at: u64,
    /// Set for a demo identity created by this request: the token that keeps it.
    pub issued_token: Option<String>,
    /// The sign-in session the token belongs to (a local account's).
    pub session_id: Option<String>,
    /// For an API key: its id and what it may do (`None`: a token, which may do anything
    /// its user may).
    pub key: Option<(String, Vec<String>)>,
    /// For an organization's API key: that organization, the only one it reaches.
    pub org: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the Authorization header must be `Bearer <token>`")]
    WrongScheme,
    /// The token's sign-in session was signed out, revoked or has expired.
    #[error("the session has ended: sign in again")]
    SessionEnded,
    /// The token's user is a local account that an admin disabled.
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("sessions cannot be checked right now: storage is unavailable")]
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

pub struct Auth {
    /// The HS256 secret, when there is one: it signs demo tokens and `apex token`'s.
    encoding: Option<EncodingKey>,
    /// The secret and the configured public key, each for its one algorithm.
    keys: Vec<VerifyKey>,
    jwks: Option<Jwks>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    demo_mode: bool,
}

impl Auth {
    /// Builds the verifier from the settings. Without `APEX_JWT_SECRET`, demo mode uses a
    /// random secret generated once and kept in the data dir; outside demo mode, a server
    /// with no secret, no public key and no JWKS URL cannot verify anyone: a startup error.
    pub fn from_settings(settings: &Settings) -> Result<Self, KeyError> {
        Self::build(settings, Secret::CreateForDemo)
    }

    /// The settings' signer for minting a token outside the server (`apex token`): the
    /// configured secret, or the one a demo-mode server keeps in its data dir — never a new
    /// one, which the server would not know.
    pub fn for_minting(settings: &Settings) -> Result<Self, KeyError> {
        let auth = Self::build(settings, Secret::Existing)?;
        if auth.encoding.is_none() {
            return Err(KeyError(format!(
                "no signing key: APEX_JWT_SECRET is not set and {} does not exist (the secret a demo-mode server keeps in its data dir). \
                 Run this with the server's configuration (--config, --data-dir or APEX_DATA_DIR, APEX_JWT_SECRET); \
                 a server that verifies its identity provider's tokens (APEX_JWT_PUBLIC_KEY, APEX_JWT_JWKS_URL) takes tokens from the provider",
                settings.data_dir.join(SECRET_FILE).display()
            )));
        }
        Ok(auth)
    }

    fn build(settings: &Settings, secret: Secret) -> Result<Self, KeyError> {
        let secret = resolve_secret(settings, secret)?;
        let mut keys: Vec<VerifyKey> =
            secret.iter().map(|s| VerifyKey { kid: None, alg: Algorithm::HS256, key: DecodingKey::from_secret(s) }).collect();
        if let Some(pem) = &settings.jwt_public_key {
            keys.push(keys::public_key(pem)?);
        }
        let jwks = settings.jwt_jwks_url.as_deref().map(|url| Jwks::new(url, settings.jwt_jwks_refresh)).transpose()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &settings.jwt_issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &settings.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required.into_iter().map(String::from).collect();
        Ok(Self {
            encoding: secret.as_deref().map(EncodingKey::from_secret),
            keys,
            jwks,
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            demo_mode: settings.demo_mode,
        })
    }

    pub fn demo_mode(&self) -> bool {
        self.demo_mode
    }

    /// An HS256 token for `user_id`; `None` when this server has no secret (it verifies
    /// its identity provider's tokens only).
    pub fn mint(&self, user_id: &str, ttl: Duration, demo: bool) -> Option<String> {
        self.sign(user_id, ttl, demo, None)
    }

    /// An access token of a local account's sign-in session: valid while the session is.
    pub fn mint_for_session(&self, user_id: &str, session_id: &str, ttl: Duration) -> Option<String> {
        self.sign(user_id, ttl, false, Some(session_id.to_owned()))
    }

    /// Signs a payload the server hands a browser to keep and give back (an OpenID Connect
    /// sign-in in progress): HS256 with the secret. It carries `exp` and no `sub`, so it is
    /// never taken for an access token, nor an access token for it.
    pub fn sign_payload<T: Serialize>(&self, payload: &T) -> Option<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), payload, self.encoding.as_ref()?).ok()
    }

    /// A payload [`Auth::sign_payload`] signed, unless tampered with or past its `exp`.
    pub fn verify_payload<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let key = self.keys.iter().find(|k| k.alg == Algorithm::HS256)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims = std::iter::once("exp".to_owned()).collect();
        jsonwebtoken::decode::<T>(token, &key.key, &validation).ok().map(|d| d.claims)
    }

    /// Whether this server can sign tokens (and so sign local accounts in).
    pub fn can_mint(&self) -> bool {
        self.encoding.is_some()
    }

    fn sign(&self, user_id: &str, ttl: Duration, demo: bool, sid: Option<String>) -> Option<String> {
        let encoding = self.encoding.as_ref()?;
        let iat = now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: Some(iat),
            nbf: None,
            exp: iat + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
            demo,
            sid,
        };
        Some(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).expect("HS256 signing cannot fail"))
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        refuse_critical_extensions(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.kind_description()))?;
        let key = self.key_for(&header).await?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.alg];
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(e.kind_description()))?
            .claims;
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::Invalid("the subject must be 1 to 256 bytes".into()));
        }
        if claims.sub.starts_with(apex_protocol::ORG_ID_PREFIX) {
            // A user's id names their personal usage space: it must never be an organization's.
            return Err(AuthError::Invalid(format!("a subject may not begin with `{}`", apex_protocol::ORG_ID_PREFIX)));
        }
        let now = now_ms() / 1000;
        if claims.exp > now.saturating_add(MAX_TOKEN_LIFETIME.as_secs()) {
            return Err(AuthError::Invalid("expiry too far in the future".into()));
        }
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
            return Err(AuthError::Invalid("issued in the future".into()));
        }
        Ok(claims)
    }

    /// The key for a token's header: a token naming a `kid`, when there is a JWKS, takes
    /// the provider's key of that id; any other the secret or the public key for its
    /// algorithm (else a JWKS key of its algorithm).
    async fn key_for(&self, header: &Header) -> Result<VerifyKey, AuthError> {
        let from_jwks = header.kid.is_some() && self.jwks.is_some();
        if let Some(key) = self.keys.iter().find(|k| k.alg == header.alg).filter(|_| !from_jwks) {
            return Ok(key.clone());
        }
        match &self.jwks {
            Some(jwks) => jwks.key_for(header.kid.as_deref(), header.alg).await,
            None => Err(AuthError::Invalid("algorithm not accepted".into())),
        }
    }

    /// Fetches the identity provider's keys, if one is configured, so that a provider that
    /// cannot be reached shows in the log at startup rather than at the first sign-in.
    pub async fn warm(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.prefetch().await;
        }
    }

    /// Authenticates a request: a valid token, or (demo mode, no token) a new demo identity.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match token {
            Some(t) => {
                let claims = self.verify(t).await?;
                Ok(Identity {
                    user_id: claims.sub,
                    demo: claims.demo,
                    expires_at: claims.exp,
                    issued_token: None,
                    session_id: claims.sid,
                    key: None,
                    org: None,
                })
            }
            None if self.demo_mode => {
                let user_id = demo_user_id();
                tracing::warn!(user_id = %user_id, "demo mode: admitting an unauthenticated client");
                let token = self.mint(&user_id, DEMO_TOKEN_TTL, true).ok_or(AuthError::Missing)?;
                let expires_at = now_ms() / 1000 + DEMO_TOKEN_TTL.as_secs();
                Ok(Identity {
                    user_id,
                    demo: true,
                    expires_at,
                    issued_token: Some(token),
                    session_id: None,
                    key: None,
                    org: None,
                })
            }
            None => Err(AuthError::Missing),
        }
    }
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for jsonwebtoken::errors::Error {
    fn kind_description(&self) -> String {
        use jsonwebtoken::errors::ErrorKind::*;
        match self.kind() {
            ExpiredSignature => "expired".into(),
            InvalidSignature => "bad signature".into(),
            InvalidIssuer => "wrong issuer".into(),
            InvalidAudience => "wrong audience".into(),
            ImmatureSignature => "not yet valid".into(),
            InvalidAlgorithm => "algorithm not accepted".into(),
            MissingRequiredClaim(c) => format!("missing claim `{c}`"),
            Json(e) => format!("malformed claims: {e}"),
            _ => "malformed".into(),
        }
    }
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the verifier must understand, and
/// this one understands none, so any token carrying it is refused.
fn refuse_critical_extensions(token: &str) -> Result<(), AuthError> {
    use base64::Engine as _;
    let head = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| AuthError::Invalid("malformed header".into()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Invalid("malformed header".into()))?;
    if header.contains_key("crit") {
        return Err(AuthError::Invalid("critical header extensions are not supported".into()));
    }
    Ok(())
}

/// The token a request carries, from the header, the subprotocol list, or the query.
/// An `Authorization` header that is not `Bearer <token>` (the scheme in any case, RFC
/// 7235) is an error, never "no credential".
pub fn token_from(headers: &HeaderMap, query_token: Option<&str>) -> Result<Option<String>, AuthError> {
    let bearer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| AuthError::WrongScheme)?.trim();
            let (scheme, token) = value.split_once(' ').ok_or(AuthError::WrongScheme)?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                return Err(AuthError::WrongScheme);
            }
            Some(token)
        }
    };
    let subprotocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(JWT_SUBPROTOCOL_PREFIX));
    Ok(bearer.or(subprotocol).or(query_token).filter(|t| !t.is_empty()).map(str::to_owned))
}

fn demo_user_id() -> String {
    let suffix: u32 = rand::thread_rng().gen();
    format!("{DEMO_USER_PREFIX}{}-{:08x}", now_ms(), suffix)
}

/// Whether a demo-mode secret may be created in the data dir when there is none.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    CreateForDemo,
    Existing,
}

fn resolve_secret(settings: &Settings, mode: Secret) -> Result<Option<Vec<u8>>, KeyError> {
    if let Some(secret) = &settings.jwt_secret {
        let secret = secret.expose_secret();
        if secret.len() < 16 {
            return Err(KeyError("APEX_JWT_SECRET must be at least 16 bytes".into()));
        }
        return Ok(Some(secret.as_bytes().to_vec()));
    }
    if mode == Secret::Existing {
        return Ok(read_secret(&settings.data_dir));
    }
    if !settings.demo_mode {
        if settings.jwt_public_key.is_some() || settings.jwt_jwks_url.is_some() {
            return Ok(None);
        }
        return Err(KeyError(
            "no way to verify tokens: set APEX_JWT_SECRET (HS256), APEX_JWT_PUBLIC_KEY or APEX_JWT_JWKS_URL — one is required when demo mode is off (DEMO_MODE=0 or APEX_ENV=production)"
                .into(),
        ));
    }
    load_or_create_secret(&settings.data_dir)
        .map(Some)
        .map_err(|e| KeyError(format!("demo secret in {}: {e}", settings.data_dir.display())))
}

/// The demo secret in the data dir, if one was generated.
fn read_secret(dir: &Path) -> Option<Vec<u8>> {
    let s = std::fs::read_to_string(dir.join(SECRET_FILE)).ok()?;
    (s.trim().len() >= 32).then(|| s.trim().as_bytes().to_vec())
}

/// The demo secret in the data dir, generated on first use.
fn load_or_create_secret(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.join(SECRET_FILE);
    if let Some(secret) = read_secret(dir) {
        return Ok(secret);
    }
    std::fs::create_dir_all(dir)?;
    let bytes: [u8; 32] = rand::thread_rng().gen();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!("{SECRET_FILE}.tmp"));
    write_private(&tmp, &hex)?;
    std::fs::rename(&tmp, &path)?;
    Ok(hex.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Cases per fuzz property (`APEX_FUZZ_CASES` for a longer run).
    fn fuzz_cases() -> u32 {
        std::env::var("APEX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
    }

    fn auth() -> Auth {
        let settings = Settings {
            jwt_secret: Some("fuzz-secret-0123456789abcdef".into()),
            jwt_issuer: Some("https://id.example".into()),
            jwt_audience: Some("apex".into()),
            demo_mode: true,
            ..Settings::default()
        };
        Auth::from_settings(&settings).unwrap()
    }

    /// `verify` with only the secret: nothing to wait for.
    fn verify(auth: &Auth, token: &str) -> Result<Claims, AuthError> {
        futures_util::FutureExt::now_or_never(auth.verify(token)).expect("no key set to fetch")
    }

    fn headers(authorization: &[u8]) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, header::HeaderValue::from_bytes(authorization).ok()?);
        Some(h)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        /// Any text as a token: refused, never a panic.
        #[test]
        fn arbitrary_tokens_are_refused(token in ".{0,400}") {
            prop_assert!(verify(&auth(), &token).is_err());
        }

        /// A valid token with one character changed (header, claims or signature) is
        /// refused, whatever the change.
        #[test]
        fn a_tampered_token_is_refused(at in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=-]") {
            let auth = auth();
            let token = auth.mint("alice", Duration::from_secs(600), false).unwrap();
            let i = at.index(token.len());
            let mut tampered = token.clone();
            tampered.replace_range(i..i + 1, &c);
            // Base64url's last character of a segment can carry unused bits: a change
            // there may decode to the same bytes, which is the same token.
            prop_assume!(tampered != token);
            if let Ok(claims) = verify(&auth, &tampered) {
                let original = verify(&auth, &token).unwrap();
                prop_assert_eq!((claims.sub, claims.exp), (original.sub, original.exp), "only an equivalent encoding passes");
            }
        }

        /// Any `Authorization` header: either `Bearer <token>` in some case, or an error,
        /// never "no credential" (which would be a demo identity).
        #[test]
        fn the_authorization_header_is_used_or_refused(value in proptest::collection::vec(any::<u8>(), 0..64), scheme in "(?i:bearer|basic|token|)") {
            let mut raw = scheme.into_bytes();
            raw.push(b' ');
            raw.extend(value);
            let Some(h) = headers(&raw) else { return Ok(()) };
            match token_from(&h, None) {
                Ok(Some(token)) => {
                    let text = String::from_utf8_lossy(&raw).trim().to_ascii_lowercase();
                    prop_assert!(text.starts_with("bearer "), "{text}");
                    prop_assert!(!token.is_empty());
                }
                Ok(None) => prop_assert!(false, "a header present but ignored"),
                Err(_) => {}
            }
        }
    }
}

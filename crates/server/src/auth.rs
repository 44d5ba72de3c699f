//! Authentication: HS256 JWTs, and demo identities when demo mode is on.
//!
//! A token can arrive in the `Authorization: Bearer` header, as a `jwt.<token>` WebSocket
//! subprotocol (browsers cannot set headers), or as `?token=` (never logged). A token that
//! is present but invalid is refused even in demo mode: it must not silently become a
//! different, anonymous identity.
use std::path::Path;
use std::time::Duration;

use apex_protocol::{now_ms, DEMO_USER_PREFIX, JWT_SUBPROTOCOL_PREFIX};
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// How long a token handed to a demo identity stays valid.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const SECRET_FILE: &str = "jwt-secret";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demo: bool,
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
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    demo_mode: bool,
}

impl Auth {
    /// Builds the verifier from the settings. Without `APEX_JWT_SECRET`, demo mode uses a
    /// random secret generated once and kept in the data dir; outside demo mode a missing
    /// key is a startup error.
    pub fn from_settings(settings: &Settings) -> Result<Self, KeyError> {
        let secret = resolve_secret(settings)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        match &settings.jwt_issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            demo_mode: settings.demo_mode,
        })
    }

    pub fn demo_mode(&self) -> bool {
        self.demo_mode
    }

    pub fn mint(&self, user_id: &str, ttl: Duration, demo: bool) -> String {
        let iat = now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_owned(),
            iat,
            exp: iat + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            demo,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.kind_description()))?;
        if data.claims.sub.is_empty() || data.claims.sub.len() > 256 {
            return Err(AuthError::Invalid("the subject must be 1 to 256 bytes".into()));
        }
        Ok(data.claims)
    }

    /// Authenticates a request: a valid token, or (demo mode, no token) a new demo identity.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match token {
            Some(t) => {
                let claims = self.verify(t)?;
                Ok(Identity { user_id: claims.sub, demo: claims.demo, expires_at: claims.exp, issued_token: None })
            }
            None if self.demo_mode => {
                let user_id = demo_user_id();
                tracing::warn!(user_id = %user_id, "demo mode: admitting an unauthenticated client");
                let token = self.mint(&user_id, DEMO_TOKEN_TTL, true);
                let expires_at = now_ms() / 1000 + DEMO_TOKEN_TTL.as_secs();
                Ok(Identity { user_id, demo: true, expires_at, issued_token: Some(token) })
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
            _ => "malformed".into(),
        }
    }
}

/// The token a request carries, from the header, the subprotocol list, or the query.
pub fn token_from(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let subprotocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(JWT_SUBPROTOCOL_PREFIX));
    bearer.or(subprotocol).or(query_token).filter(|t| !t.is_empty()).map(str::to_owned)
}

fn demo_user_id() -> String {
    let suffix: u32 = rand::thread_rng().gen();
    format!("{DEMO_USER_PREFIX}{}-{:08x}", now_ms(), suffix)
}

fn resolve_secret(settings: &Settings) -> Result<Vec<u8>, KeyError> {
    if let Some(secret) = &settings.jwt_secret {
        if secret.len() < 16 {
            return Err(KeyError("APEX_JWT_SECRET must be at least 16 bytes".into()));
        }
        return Ok(secret.as_bytes().to_vec());
    }
    if !settings.demo_mode {
        return Err(KeyError(
            "no signing key: set APEX_JWT_SECRET (HS256) — it is required when demo mode is off (DEMO_MODE=0 or APEX_ENV=production)"
                .into(),
        ));
    }
    load_or_create_secret(&settings.data_dir).map_err(|e| KeyError(format!("demo secret in {}: {e}", settings.data_dir.display())))
}

/// The demo secret in the data dir, generated on first use.
fn load_or_create_secret(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) | Err(_) => {}
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

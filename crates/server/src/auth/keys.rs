//! The keys a token is verified with: the HS256 secret, a configured public key
//! (`APEX_JWT_PUBLIC_KEY`: RS256, ES256/ES384 or EdDSA by the key's type) and the identity
//! provider's key set (`APEX_JWT_JWKS_URL`), chosen by the token's `kid`.
//!
//! Each key verifies exactly one algorithm (RFC 8725 §3.1): an HS256 token is never checked
//! against a public key, nor an RS256 token against the secret. The key set is fetched when
//! first needed, again when a token names a key id it does not hold (a key rotation) but at
//! most once per `APEX_JWT_JWKS_REFRESH_SECS` (30 s), and again once it is [`JWKS_MAX_AGE`] old (a key the
//! provider withdrew stops verifying). A token's `jku` and `x5u` headers are never followed:
//! keys come from the configuration only.
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{AuthError, KeyError};

/// The key set is fetched again when it is older than this.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set larger than this is not one.
const JWKS_MAX_BYTES: usize = 1 << 20;

/// A key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// `APEX_JWT_PUBLIC_KEY`: PEM text, or the path of a PEM file. The algorithm follows the
/// key: RSA → RS256, EC P-256 → ES256, EC P-384 → ES384, Ed25519 → EdDSA.
pub fn public_key(setting: &str) -> Result<VerifyKey, KeyError> {
    let pem = if setting.trim_start().starts_with("-----BEGIN") {
        setting.to_owned()
    } else {
        std::fs::read_to_string(setting).map_err(|e| KeyError(format!("APEX_JWT_PUBLIC_KEY: cannot read {setting}: {e}")))?
    };
    let bytes = pem.as_bytes();
    let (alg, key) = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        (Algorithm::RS256, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        (
            ec_algorithm(&pem)
                .ok_or_else(|| KeyError("APEX_JWT_PUBLIC_KEY: an EC key on a curve other than P-256 or P-384".into()))?,
            key,
        )
    } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        (Algorithm::EdDSA, key)
    } else {
        return Err(KeyError("APEX_JWT_PUBLIC_KEY: not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into()));
    };
    Ok(VerifyKey { kid: None, alg, key })
}

/// The curve of a PEM EC key, from its named-curve object identifier.
fn ec_algorithm(pem: &str) -> Option<Algorithm> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()?;
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let holds = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if holds(P256) {
        Some(Algorithm::ES256)
    } else if holds(P384) {
        Some(Algorithm::ES384)
    } else {
        None
    }
}

/// The identity provider's key set, fetched from its URL.
pub struct Jwks {
    url: String,
    /// The soonest the set is fetched again.
    min_refresh: Duration,
    client: reqwest::Client,
    /// The keys, and when they were fetched (`None`: not yet).
    keys: RwLock<(Arc<Vec<VerifyKey>>, Option<Instant>)>,
    /// Held while fetching: one fetch at a time, and the time of the last attempt.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(url: &str, min_refresh: Duration) -> Result<Self, KeyError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| KeyError(format!("APEX_JWT_JWKS_URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(KeyError("APEX_JWT_JWKS_URL must be an http(s) URL".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KeyError(format!("APEX_JWT_JWKS_URL: {e}")))?;
        Ok(Self {
            url: url.to_owned(),
            min_refresh,
            client,
            keys: RwLock::new((Arc::new(Vec::new()), None)),
            fetching: Default::default(),
        })
    }

    /// The key for a token's `kid` and algorithm; fetches the set when it has not been, is
    /// old, or does not hold the key id (at most once per `min_refresh`).
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<VerifyKey, AuthError> {
        let find = |fresh_only: bool| {
            let (keys, fetched) = self.current();
            let fresh = fetched.is_some_and(|at| at.elapsed() < JWKS_MAX_AGE);
            keys.iter()
                .find(|k| (fresh || !fresh_only) && k.alg == alg && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
                .cloned()
        };
        if let Some(key) = find(true) {
            return Ok(key);
        }
        self.refresh(|| find(true).is_some()).await;
        // Keys past their age still verify when the provider cannot be reached: an outage
        // of its key endpoint must not sign everyone out.
        find(false).ok_or_else(|| {
            AuthError::Invalid(match (kid, self.current().1) {
                (_, None) => "the identity provider's keys could not be fetched".into(),
                (Some(kid), _) => format!("unknown key id `{kid}`"),
                (None, _) => "algorithm not accepted".into(),
            })
        })
    }

    /// Fetches the key set now (at startup), unless it was within `min_refresh`.
    pub async fn prefetch(&self) {
        self.refresh(|| false).await;
    }

    /// Fetches the set unless `done` (another request fetched what is needed while this one
    /// waited) or the last attempt was within `min_refresh`.
    async fn refresh(&self, done: impl Fn() -> bool) {
        let mut last_attempt = self.fetching.lock().await;
        if done() || last_attempt.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return;
        }
        *last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the identity provider's signing keys");
                *self.keys.write().expect("jwks lock") = (Arc::new(keys), Some(Instant::now()));
            }
            Err(e) => tracing::warn!(url = %self.url, error = %e, "could not fetch the identity provider's signing keys"),
        }
    }

    fn current(&self) -> (Arc<Vec<VerifyKey>>, Option<Instant>) {
        let guard = self.keys.read().expect("jwks lock");
        (guard.0.clone(), guard.1)
    }

    async fn fetch(&self) -> Result<Vec<VerifyKey>, String> {
        let mut response = self.client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > JWKS_MAX_BYTES {
                return Err(format!("larger than {JWKS_MAX_BYTES} bytes"));
            }
        }
        #[derive(serde::Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(&body).map_err(|e| format!("not a key set: {e}"))?;
        // A key of a type this verifier does not know is skipped, not a failure of the set.
        Ok(set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .filter_map(|jwk| verify_key(&jwk))
            .collect())
    }
}

/// A signing key of the set and its algorithm: the one it names, else the one its type
/// implies. Symmetric keys and encryption keys are skipped: a secret never comes from a URL.
fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if jwk.common.public_key_use.as_ref().is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature)) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => implied,
        Some(named) => {
            let alg = match named {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            // The named algorithm must fit the key's type (no HS/RS confusion).
            let family = |a: Algorithm| match a {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => 0,
                Algorithm::ES256 | Algorithm::ES384 => 1,
                Algorithm::EdDSA => 2,
                _ => 3,
            };
            if family(alg) != family(implied) || (family(alg) == 1 && alg != implied) {
                return None;
            }
            alg
        }
    };
    Some(VerifyKey { kid: jwk.common.key_id.clone(), alg, key: DecodingKey::from_jwk(jwk).ok()? })
}

//! Tokens from an identity provider: a configured public key (RS256, ES256, EdDSA) and the
//! provider's JWKS served over real HTTP (a loopback server standing in for the provider's
//! key endpoint, counting its requests), against a real server, over the WebSocket upgrade
//! and REST. The keys are test fixtures (`tests/keys/`).
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{http_client, spawn_with};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token for `sub` signed with the private key `key` (a fixture) as `alg`, naming `kid`.
fn signed(key: &str, alg: Algorithm, kid: Option<&str>, sub: &str) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        other => panic!("{other:?}"),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &json!({"sub": sub, "exp": now() + 600}), &encoding).unwrap()
}

/// The status of `GET /api/threads` with `token`.
async fn rest(app: &common::TestApp, token: &str) -> (u16, String) {
    let r = http_client().get(app.http("/api/threads")).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The status of a WebSocket upgrade with `token` in the `Authorization` header.
async fn upgrade(app: &common::TestApp, token: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn a_configured_public_key_verifies_its_algorithm_and_nothing_else() {
    for (key, alg, setting) in [
        // As a path, and as PEM text.
        ("rsa-a", Algorithm::RS256, fixture_path("rsa-a.pub.pem")),
        ("ec", Algorithm::ES256, fixture("ec.pub.pem")),
        ("ed", Algorithm::EdDSA, fixture("ed.pub.pem")),
    ] {
        let app = spawn_with(
            |s| {
                s.demo_mode = false;
                s.jwt_secret = None;
                s.jwt_public_key = Some(setting.clone());
            },
            |s| s,
        )
        .await;
        let good = signed(key, alg, None, "idp-user");
        assert_eq!(rest(&app, &good).await.0, 200, "{key}");
        assert_eq!(upgrade(&app, &good).await, 101, "{key}");

        // Another key of the same type, the same algorithm: a bad signature.
        let foreign = match alg {
            Algorithm::RS256 => signed("rsa-attacker", alg, None, "idp-user"),
            Algorithm::ES256 => signed("rsa-attacker", Algorithm::RS256, None, "idp-user"),
            _ => signed("ec", Algorithm::ES256, None, "idp-user"),
        };
        let (status, body) = rest(&app, &foreign).await;
        assert_eq!(status, 401, "{key}: {body}");
        assert_eq!(upgrade(&app, &foreign).await, 401, "{key}");

        // HS/RS confusion: an HS256 token "signed" with the public key as its secret.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "idp-user", "exp": now() + 600}),
            &EncodingKey::from_secret(fixture(&format!("{key}.pub.pem")).as_bytes()),
        )
        .unwrap();
        let (status, body) = rest(&app, &confused).await;
        assert_eq!(status, 401, "{key}");
        assert!(body.contains("algorithm not accepted"), "{body}");

        // `alg: none`, with no signature.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            b64.encode(json!({"sub": "idp-user", "exp": now() + 600}).to_string())
        );
        assert_eq!(rest(&app, &none).await.0, 401, "{key}");
    }
}

/// The provider's key endpoint: serves `keys` (swappable), counts fetches, and counts any
/// request to `/attacker-keys` (which a token's `jku` may point at, and nothing must fetch).
struct KeyEndpoint {
    url: String,
    keys: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    attacker_fetches: Arc<AtomicUsize>,
}

async fn key_endpoint(keys: &str) -> KeyEndpoint {
    let served = Arc::new(Mutex::new(keys.to_owned()));
    let (fetches, attacker_fetches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get({
                let (served, fetches) = (served.clone(), fetches.clone());
                move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    ([("content-type", "application/json")], body)
                }
            }),
        )
        .route(
            "/attacker-keys",
            axum::routing::get({
                let attacker_fetches = attacker_fetches.clone();
                move || async move {
                    attacker_fetches.fetch_add(1, Ordering::SeqCst);
                    "{\"keys\": []}"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    KeyEndpoint { url: format!("http://{addr}"), keys: served, fetches, attacker_fetches }
}

#[tokio::test]
async fn keys_come_from_the_providers_jwks_by_kid_and_a_rotation_is_picked_up_at_a_bounded_rate() {
    let provider = key_endpoint(&fixture("jwks.json")).await;
    let url = format!("{}/jwks", provider.url);
    let app = spawn_with(
        |s| {
            s.demo_mode = false;
            s.jwt_jwks_url = Some(url);
            s.jwt_jwks_refresh = Duration::from_secs(1);
            // A public key of the same algorithm as key-a: a token naming a kid still
            // takes the provider's key.
            s.jwt_public_key = Some(fixture_path("rsa-b.pub.pem"));
        },
        |s| s,
    )
    .await;
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1, "fetched once at startup");

    // Every key of the set, each by its kid and algorithm; the server's own secret still works.
    for (key, alg, kid) in
        [("rsa-a", Algorithm::RS256, "key-a"), ("ec", Algorithm::ES256, "key-ec"), ("ed", Algorithm::EdDSA, "key-ed")]
    {
        let token = signed(key, alg, Some(kid), "sso-user");
        assert_eq!(rest(&app, &token).await.0, 200, "{kid}");
        assert_eq!(upgrade(&app, &token).await, 101, "{kid}");
    }
    assert_eq!(rest(&app, &app.token("local")).await.0, 200, "HS256 with APEX_JWT_SECRET");
    assert_eq!(rest(&app, &signed("rsa-b", Algorithm::RS256, None, "sso-user")).await.0, 200, "no kid: the public key");
    // A token that names a kid of the set but is signed by another key.
    let (status, body) = rest(&app, &signed("rsa-attacker", Algorithm::RS256, Some("key-a"), "sso-user")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bad signature"), "{body}");
    // The RSA key's kid with the EC key's algorithm: no key has both.
    assert_eq!(rest(&app, &signed("ec", Algorithm::ES256, Some("key-a"), "sso-user")).await.0, 401);
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1, "known kids need no fetch");

    // The provider rotates: key-b appears. A token naming it is verified after one fetch.
    *provider.keys.lock().unwrap() = fixture("jwks-rotated.json");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let rotated = signed("rsa-b", Algorithm::RS256, Some("key-b"), "sso-user");
    assert_eq!(rest(&app, &rotated).await.0, 200, "the new key, after a refresh");
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);

    // A burst of tokens naming kids the provider never had: refused, and at most one
    // more fetch within the refresh interval. A `jku` header pointing elsewhere is never
    // followed.
    let jku = format!("{}/attacker-keys", provider.url);
    let mut tokens = Vec::new();
    for i in 0..20 {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("key-unknown-{i}"));
        header.jku = Some(jku.clone());
        let pem = fixture("rsa-attacker.pem");
        tokens.push(
            encode(&header, &json!({"sub": "mallory", "exp": now() + 600}), &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
                .unwrap(),
        );
    }
    let refused = futures_util::future::join_all(tokens.iter().map(|t| rest(&app, t))).await;
    for (status, body) in &refused {
        assert_eq!(*status, 401, "{body}");
    }
    assert!(refused.iter().any(|(_, body)| body.contains("unknown key id")), "{refused:?}");
    let fetches = provider.fetches.load(Ordering::SeqCst);
    assert!((2..=3).contains(&fetches), "20 unknown kids within the interval: {fetches} fetches");
    assert_eq!(provider.attacker_fetches.load(Ordering::SeqCst), 0, "jku is never followed");
}

#[tokio::test]
async fn a_server_whose_provider_is_unreachable_refuses_its_tokens_and_keeps_its_own() {
    // Nothing listens there (bound, then dropped).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let app = spawn_with(
        |s| {
            s.demo_mode = false;
            s.jwt_jwks_url = Some(format!("http://{closed}/jwks"));
        },
        |s| s,
    )
    .await;
    let (status, body) = rest(&app, &signed("rsa-a", Algorithm::RS256, Some("key-a"), "sso-user")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("could not be fetched"), "{body}");
    assert_eq!(rest(&app, &app.token("local")).await.0, 200);
}

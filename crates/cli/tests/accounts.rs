//! Local accounts against a real server: sign-up by policy, sign-in, the session cookie and
//! its rotation, sign-out, revocation closing sockets (4001) here and from `apex users` in
//! another process, lockout and per-address limits, and requests from other sites refused.
//! Cookies are read and sent by hand, so that their attributes are checked too.
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use apex_server::settings::Signup;
use common::{connect, http_client, spawn_with, By, Frame, TestApp};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// A server with demo mode off, sign-up as given.
async fn server(signup: Signup, tweak: impl FnOnce(&mut apex_server::Settings)) -> TestApp {
    spawn_with(
        |s| {
            s.demo_mode = false;
            s.signup = signup;
            s.cookie_secure = Some(true);
            tweak(s);
        },
        |s| s,
    )
    .await
}

struct Reply {
    status: u16,
    body: Value,
    /// The `apex_session` cookie set, with its attributes.
    set_cookie: Option<String>,
}

impl Reply {
    /// The cookie's value.
    fn session(&self) -> String {
        let c = self.set_cookie.as_deref().expect("a session cookie is set");
        c.split(';').next().unwrap().trim().strip_prefix("apex_session=").unwrap().to_owned()
    }

    fn token(&self) -> String {
        self.body["access_token"].as_str().unwrap_or_else(|| panic!("an access token: {}", self.body)).to_owned()
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

async fn post(app: &TestApp, path: &str, body: Value, cookie: Option<&str>, bearer: Option<&str>) -> Reply {
    let mut request = http_client().post(app.http(path)).json(&body);
    if let Some(c) = cookie {
        request = request.header(COOKIE, format!("apex_session={c}"));
    }
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    reply(request.send().await.unwrap()).await
}

async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let set_cookie =
        r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).find(|c| c.starts_with("apex_session="));
    let body = r.json().await.unwrap_or(Value::Null);
    Reply { status, body, set_cookie }
}

async fn login(app: &TestApp, name: &str, password: &str) -> Reply {
    post(app, "/api/auth/login", json!({"name": name, "password": password}), None, None).await
}

async fn threads_status(app: &TestApp, token: &str) -> u16 {
    http_client().get(app.http("/api/threads")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Runs a command to its end off the test's runtime (which also runs the server it talks to).
async fn blocking(command: &mut Command) -> std::process::Output {
    let mut command = std::mem::replace(command, Command::new("true"));
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

/// The server's store, opened beside it (as `apex users` does).
async fn store(app: &TestApp) -> std::sync::Arc<dyn apex_store::Store> {
    apex_store::connect(&app.settings.database_url).await.unwrap()
}

#[tokio::test]
async fn sign_up_sign_in_refresh_and_sign_out() {
    let app = server(Signup::Open, |_| ()).await;
    let config = http_client().get(app.http("/api/auth/config")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(config, json!({"demo_mode": false, "signup": "open", "accounts": true, "oidc": null}));

    let ann = post(&app, "/api/auth/signup", json!({"name": " Ann ", "password": PASSWORD}), None, None).await;
    assert_eq!(ann.status, 201, "{}", ann.body);
    assert_eq!((ann.body["user"]["name"].as_str(), ann.body["user"]["role"].as_str()), (Some("ann"), Some("admin")));
    let cookie = ann.set_cookie.clone().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/auth", "Secure", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let bob = post(&app, "/api/auth/signup", json!({"name": "bob", "password": PASSWORD}), None, None).await;
    assert_eq!(bob.body["user"]["role"], "member", "only the first account is an admin");
    let taken = post(&app, "/api/auth/signup", json!({"name": "ANN", "password": PASSWORD}), None, None).await;
    assert_eq!((taken.status, taken.code()), (409, "name_taken"));
    let short = post(&app, "/api/auth/signup", json!({"name": "cy", "password": "short"}), None, None).await;
    assert_eq!((short.status, short.code()), (400, "invalid_field"));

    // Wrong password and unknown name: the same answer.
    let wrong = login(&app, "ann", "not the password").await;
    let unknown = login(&app, "nobody", PASSWORD).await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    let signed_in = login(&app, "Ann", PASSWORD).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let token = signed_in.token();
    assert_eq!(threads_status(&app, &token).await, 200);
    let me = app.get("/api/me", &token).await.1;
    assert_eq!(me["account"]["name"], "ann");
    assert_eq!(me["id"], ann.body["user"]["id"]);

    // The cookie is replaced at every refresh; the replaced one, sent again at once (another
    // tab), still gives a token but no new cookie.
    let first = signed_in.session();
    let refreshed = post(&app, "/api/auth/refresh", json!({}), Some(&first), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let second = refreshed.session();
    assert_ne!(first, second);
    assert_eq!(threads_status(&app, &refreshed.token()).await, 200);
    let raced = post(&app, "/api/auth/refresh", json!({}), Some(&first), None).await;
    assert_eq!((raced.status, raced.set_cookie.is_none()), (200, true), "{}", raced.body);
    assert_eq!(post(&app, "/api/auth/refresh", json!({}), Some("made-up"), None).await.status, 401);
    assert_eq!(post(&app, "/api/auth/refresh", json!({}), None, None).await.status, 401);

    // Signing out ends the session: its access tokens and its cookie stop working.
    let out = post(&app, "/api/auth/logout", json!({}), Some(&second), Some(&token)).await;
    assert_eq!(out.status, 204);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"), "the cookie is cleared");
    assert_eq!(threads_status(&app, &token).await, 401);
    let (status, body) = app.get("/api/threads", &refreshed.token()).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("session has ended"), "{body}");
    let after = post(&app, "/api/auth/refresh", json!({}), Some(&second), None).await;
    assert_eq!(after.status, 401);
    // Bob's session is another one: untouched.
    assert_eq!(threads_status(&app, &bob.token()).await, 200);
}

#[tokio::test]
async fn sign_up_follows_the_policy_and_invitations_are_used_once() {
    let closed = server(Signup::Closed, |_| ()).await;
    let refused = post(&closed, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await;
    assert_eq!((refused.status, refused.code()), (403, "signup_closed"));

    let app = server(Signup::Invite, |_| ()).await;
    let no_code = post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await;
    assert_eq!((no_code.status, no_code.code()), (403, "signup_closed"));
    let store = store(&app).await;
    let (code, _) = apex_server::accounts::manage::invite(store.as_ref(), "admin", "test").await.unwrap();
    let bad_name = post(&app, "/api/auth/signup", json!({"name": "a b", "password": PASSWORD, "invite": code}), None, None).await;
    assert_eq!(bad_name.status, 400, "a refused name does not use the invitation up");
    let ann = post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD, "invite": code}), None, None).await;
    assert_eq!((ann.status, ann.body["user"]["role"].as_str()), (201, Some("admin")), "{}", ann.body);
    let again = post(&app, "/api/auth/signup", json!({"name": "bob", "password": PASSWORD, "invite": code}), None, None).await;
    assert_eq!((again.status, again.code()), (403, "invite_invalid"));

    // An admin invites from the API; a member may not.
    let invited = post(&app, "/api/auth/invitations", json!({}), None, Some(&ann.token())).await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    let code = invited.body["code"].as_str().unwrap();
    assert_eq!(invited.body["path"], format!("/#invite={code}"));
    let bob = post(&app, "/api/auth/signup", json!({"name": "bob", "password": PASSWORD, "invite": code}), None, None).await;
    assert_eq!((bob.status, bob.body["user"]["role"].as_str()), (201, Some("member")));
    let by_member = post(&app, "/api/auth/invitations", json!({}), None, Some(&bob.token())).await;
    assert_eq!((by_member.status, by_member.code()), (403, "admin_only"));
}

#[tokio::test]
async fn ending_a_session_closes_its_sockets_with_4001_here_and_from_another_process() {
    let app = server(Signup::Open, |_| ()).await;
    let ann = post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await;
    let phone = login(&app, "ann", PASSWORD).await;
    let sessions = app.get("/api/auth/sessions", &ann.token()).await.1;
    let listed = sessions["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{sessions}");
    assert_eq!(listed.iter().filter(|s| s["current"] == true).count(), 1);

    // Revoked from the other session: the phone's socket closes with 4001 and its token stops.
    let mut socket = connect(&app, By::Subprotocol(phone.token())).await;
    let other = listed.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    let revoke =
        http_client().delete(app.http(&format!("/api/auth/sessions/{other}"))).bearer_auth(ann.token()).send().await.unwrap();
    assert_eq!(revoke.status().as_u16(), 204);
    assert!(matches!(socket.next_frame_within(Duration::from_secs(5)).await, Frame::Close(Some(4001))));
    assert_eq!(threads_status(&app, &phone.token()).await, 401);
    let upgrade = common::try_connect(&app.ws_url(), By::Header(phone.token())).await;
    assert!(upgrade.is_err(), "an ended session's token cannot open a socket");
    let gone =
        http_client().delete(app.http(&format!("/api/auth/sessions/{other}"))).bearer_auth(ann.token()).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 404);

    // Disabled by `apex users` (another process, the same store): the socket closes within
    // the revocation poll, the account cannot sign in, and a token of no session minted
    // for it with the secret stops working.
    let ann_id = app.get("/api/me", &ann.token()).await.1["id"].as_str().unwrap().to_owned();
    let minted = app.token(&ann_id);
    assert_eq!(threads_status(&app, &minted).await, 200);
    let mut socket = connect(&app, By::Subprotocol(ann.token())).await;
    let out = Command::new(env!("CARGO_BIN_EXE_apex"))
        .args(["users", "disable", "ann", "--data-dir"])
        .arg(app.dir.path())
        .env("APEX_JWT_SECRET", common::SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(matches!(socket.next_frame_within(Duration::from_secs(5)).await, Frame::Close(Some(4001))));
    let disabled = login(&app, "ann", PASSWORD).await;
    assert_eq!((disabled.status, disabled.code()), (403, "account_disabled"));
    assert_eq!(threads_status(&app, &minted).await, 401);
    let upgrade = common::try_connect(&app.ws_url(), By::Header(minted.clone())).await;
    assert!(upgrade.is_err(), "a disabled account's token cannot open a socket");
    // Enabled again: the same token works again.
    let out = Command::new(env!("CARGO_BIN_EXE_apex"))
        .args(["users", "enable", "ann", "--data-dir"])
        .arg(app.dir.path())
        .env("APEX_JWT_SECRET", common::SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(threads_status(&app, &minted).await, 200);
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_and_attempts_are_limited_per_address() {
    let app = server(Signup::Open, |s| {
        s.login_max_failures = 3;
        s.login_rate_limit = 8;
    })
    .await;
    assert_eq!(post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await.status, 201);
    for _ in 0..3 {
        assert_eq!(login(&app, "ann", "wrong password!").await.status, 401);
    }
    let locked = login(&app, "ann", PASSWORD).await;
    assert_eq!((locked.status, locked.code()), (429, "locked"), "even the right password, while locked");
    assert!(locked.body["error"]["message"].as_str().unwrap().contains("15 more minute"), "{}", locked.body);
    // 1 sign-up + 4 sign-ins so far; the allowance is 8 a minute from one address.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(login(&app, "bob", PASSWORD).await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert_eq!(login(&app, "bob", PASSWORD).await.code(), "rate_limited");
}

#[tokio::test]
async fn sign_in_from_another_site_is_refused() {
    let app = server(Signup::Open, |_| ()).await;
    let cross_site = http_client()
        .post(app.http("/api/auth/signup"))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status().as_u16(), 403);
    // A form post (what a page on another site can send without asking) is not JSON.
    let form = http_client()
        .post(app.http("/api/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=ann&password={PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415);
    let same_site = http_client()
        .post(app.http("/api/auth/signup"))
        .header("origin", format!("http://{}", app.addr))
        .json(&json!({"name": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status().as_u16(), 201);
}

#[tokio::test]
async fn apex_users_creates_lists_resets_and_invites() {
    let app = server(Signup::Invite, |_| ()).await;
    let apex = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(args)
            .arg("--data-dir")
            .arg(app.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = apex(&["users", "create", "Ann", "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    assert!(ok && out.contains("created ann (admin"), "{out}{err}");
    let (ok, out, _) = apex(&["users", "create", "bob"], None);
    let generated = out.lines().find_map(|l| l.strip_prefix("password: ")).expect("a generated password").to_owned();
    assert!(ok && out.contains("member"), "{out}");
    assert_eq!(login(&app, "bob", &generated).await.status, 200);
    let (ok, _, err) = apex(&["users", "create", "ann"], None);
    assert!(!ok && err.contains("taken"), "{err}");
    let (_, out, _) = apex(&["users", "list"], None);
    assert_eq!(
        out.lines().map(|l| l.split('\t').take(3).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>(),
        ["ann admin active", "bob member active"]
    );

    let session = login(&app, "ann", PASSWORD).await;
    let (ok, out, _) = apex(&["users", "reset", "ann", "--password-stdin"], Some("another long password"));
    assert!(ok && out.contains("1 session(s) ended"), "{out}");
    assert_eq!(threads_status(&app, &session.token()).await, 401, "a new password ends the sessions");
    assert_eq!(login(&app, "ann", PASSWORD).await.status, 401);
    assert_eq!(login(&app, "ann", "another long password").await.status, 200);

    let (ok, code, _) = apex(&["users", "invite"], None);
    assert!(ok);
    let cy = post(&app, "/api/auth/signup", json!({"name": "cy", "password": PASSWORD, "invite": code.trim()}), None, None).await;
    assert_eq!(cy.status, 201, "{}", cy.body);
    let (ok, _, err) = apex(&["users", "disable", "nobody"], None);
    assert!(!ok && err.contains("no account named"), "{err}");
}

#[tokio::test]
async fn api_keys_act_as_their_user_within_their_scopes_and_close_their_sockets_when_revoked() {
    let app = server(Signup::Open, |_| ()).await;
    let ann = post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await;
    let session = ann.token();
    let made =
        post(&app, "/api/keys", json!({"name": "nightly export", "scopes": ["ingest", "read"]}), None, Some(&session)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let ingest_key = made.body["key"].as_str().unwrap().to_owned();
    assert!(ingest_key.starts_with("apx_") && ingest_key.starts_with(made.body["prefix"].as_str().unwrap()));
    let chat = post(&app, "/api/keys", json!({"name": "bot", "scopes": ["chat"]}), None, Some(&session)).await;
    let chat_key = chat.body["key"].as_str().unwrap().to_owned();
    let bad = post(&app, "/api/keys", json!({"name": "x", "scopes": ["admin"]}), None, Some(&session)).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_field"));

    // `apex ingest --url` with the key uploads as ann; REST reads with it.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/usage.csv");
    // (Run off the test's runtime, which also runs the server.)
    let out = blocking(Command::new(env!("CARGO_BIN_EXE_apex")).args([
        "ingest",
        fixture,
        "--url",
        &app.http(""),
        "--token",
        &ingest_key,
    ]))
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, summary) = app.get("/api/usage/summary", &ingest_key).await;
    assert_eq!((status, summary["records"].as_u64().is_some_and(|n| n > 0)), (200, true), "{summary}");
    let (status, summary) = app.get("/api/usage/summary", &session).await;
    assert_eq!(status, 200);
    assert!(summary["records"].as_u64().unwrap() > 0, "the key's import is ann's usage: {summary}");

    // Outside its scopes: refused, and keys never manage credentials.
    let upgrade = common::try_connect(&app.ws_url(), By::Header(ingest_key.clone())).await;
    assert!(upgrade.is_err(), "no chat scope, no socket");
    let (status, body) = app.get("/api/usage/summary", &chat_key).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    let minted = post(&app, "/api/keys", json!({"name": "more"}), None, Some(&ingest_key)).await;
    assert_eq!((minted.status, minted.code()), (403, "insufficient_scope"));
    assert_eq!(app.get("/api/me", &ingest_key).await.0, 403);

    // The chat key talks; `apex chat` takes it too.
    let mut socket = connect(&app, By::Subprotocol(chat_key.clone())).await;
    assert_eq!(socket.user_id, ann.body["user"]["id"].as_str().unwrap());
    let out = blocking(Command::new(env!("CARGO_BIN_EXE_apex")).args([
        "chat",
        "--url",
        &app.ws_url(),
        "--token",
        &chat_key,
        "--once",
        "How much did I spend in total?",
    ]))
    .await;
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // Listed with their last use, never with the key; revoking closes the socket (4001).
    let (_, listed) = app.get("/api/keys", &session).await;
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(keys.iter().all(|k| k["last_used_at"].is_u64() && k.get("key").is_none() && k.get("key_hash").is_none()), "{listed}");
    let id = chat.body["id"].as_str().unwrap();
    let revoked = http_client().delete(app.http(&format!("/api/keys/{id}"))).bearer_auth(&session).send().await.unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    assert!(matches!(socket.next_frame_within(Duration::from_secs(5)).await, Frame::Close(Some(4001))));
    assert_eq!(app.get("/api/threads", &chat_key).await.0, 401);
    // Another user cannot revoke ann's key.
    let bob = post(&app, "/api/auth/signup", json!({"name": "bob", "password": PASSWORD}), None, None).await;
    let other = made.body["id"].as_str().unwrap();
    let refused = http_client().delete(app.http(&format!("/api/keys/{other}"))).bearer_auth(bob.token()).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 404);
}

#[tokio::test]
async fn a_user_exports_everything_held_about_them_and_deletes_it() {
    let app = server(Signup::Open, |_| ()).await;
    let ann = post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await;
    let bob = post(&app, "/api/auth/signup", json!({"name": "bob", "password": PASSWORD}), None, None).await;
    let token = ann.token();
    let key = post(&app, "/api/keys", json!({"name": "bot", "scopes": ["chat", "read"]}), None, Some(&token)).await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    app.import_fixture(&token).await;
    let mut socket = connect(&app, By::Subprotocol(token.clone())).await;
    socket.ask("How much did I spend in total?", None).await;
    socket.events_until_terminal().await;
    let mut bobs = connect(&app, By::Subprotocol(bob.token())).await;
    bobs.ask("Analyze my AI costs", None).await;
    bobs.events_until_terminal().await;

    let r = http_client().get(app.http("/api/me/export")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("apex-export.json"));
    let export: Value = r.json().await.unwrap();
    assert_eq!(export["account"]["name"], "ann");
    assert_eq!(export["threads"].as_array().unwrap().len(), 1, "{export}");
    assert_eq!(export["threads"][0]["messages"].as_array().unwrap().len(), 2, "the question and the answer");
    assert!(export["usage"].as_array().unwrap().len() > 10);
    assert_eq!(export["api_keys"][0]["name"], "bot");
    assert_eq!(export["sessions"].as_array().unwrap().len(), 1);
    let text = export.to_string();
    assert!(
        !text.contains("argon2") && !text.contains(&key) && !text.contains("Analyze my AI costs"),
        "no secrets, nobody else's"
    );
    assert_eq!(app.get("/api/me/export", &key).await.0, 403, "not with an API key");

    let deleted = http_client().delete(app.http("/api/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(matches!(socket.next_frame_within(Duration::from_secs(5)).await, Frame::Close(Some(4001))));
    assert_eq!(app.get("/api/threads", &token).await.0, 401);
    assert_eq!(app.get("/api/threads", &key).await.0, 401);
    assert_eq!(login(&app, "ann", PASSWORD).await.status, 401, "the account is gone");
    // Signed up again under the same name: a new, empty user.
    let again = post(&app, "/api/auth/signup", json!({"name": "ann", "password": PASSWORD}), None, None).await;
    assert_eq!(again.status, 201);
    assert_ne!(again.body["user"]["id"], ann.body["user"]["id"]);
    assert_eq!(app.get("/api/threads", &again.token()).await.1["threads"], json!([]));
    // Bob's data is all there.
    let (_, threads) = app.get("/api/threads", &bob.token()).await;
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1);
}

//! Bad client input gets a typed error and the connection stays usable; authentication is
//! decided before the upgrade; one user never sees another's data.
mod common;

use std::time::Duration;

use apex_server::Auth;
use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_catalogue_of_bad_inputs_gets_the_right_codes_and_the_connection_survives() {
    let app = spawn_app().await;
    let mut c = connect(&app, By::Demo).await;
    let run = "0190a0a0-0000-7000-8000-000000000000";
    let big = json!({"type": "user_message", "text": "x".repeat(9000)}).to_string();
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "invalid_json"),
        (Message::Text("[1,2,3]".into()), "invalid_json"),
        (Message::Text("\"just a string\"".into()), "invalid_json"),
        (Message::Text("".into()), "invalid_json"),
        (Message::Text(r#"{"text":"no type"}"#.into()), "missing_field"),
        (Message::Text(r#"{"type":42}"#.into()), "invalid_field"),
        (Message::Text(r#"{"type":"launch_rockets"}"#.into()), "unknown_type"),
        (Message::Text(r#"{"type":"user_message"}"#.into()), "missing_field"),
        (Message::Text(r#"{"type":"user_message","text":{"a":1}}"#.into()), "invalid_field"),
        (Message::Text(r#"{"type":"user_message","text":"  \n "}"#.into()), "invalid_field"),
        (Message::Text(r#"{"type":"user_message","text":"hi","thread_id":"not-a-uuid"}"#.into()), "invalid_field"),
        (Message::Text(r#"{"type":"user_message","text":"hi","client_message_id":7}"#.into()), "invalid_field"),
        (Message::Text(r#"{"type":"stop_agent"}"#.into()), "missing_field"),
        (Message::Text(format!(r#"{{"type":"stop_agent","run_id":"{run}"}}"#).into()), "not_found"),
        (Message::Text(format!(r#"{{"type":"resume","run_id":"{run}","after_seq":"3"}}"#).into()), "invalid_field"),
        (Message::Text(format!(r#"{{"type":"resume","run_id":"{run}","after_seq":0}}"#).into()), "not_found"),
        (
            Message::Text(r#"{"type":"user_message","text":"hi","thread_id":"0190a0a0-0000-7000-8000-000000000001"}"#.into()),
            "not_found",
        ),
        (Message::Text(big.into()), "message_too_large"),
        (Message::Binary(vec![0, 159, 146, 150].into()), "binary_not_supported"),
        (Message::Text(format!("{}{}", "[".repeat(300), "]".repeat(300)).into()), "invalid_json"),
    ];
    assert!(cases.len() >= 12);
    for (frame, code) in cases {
        let shown = format!("{frame:?}");
        c.send_raw(frame).await;
        let reply = c.next_json().await;
        assert_eq!(reply["type"], "error", "{shown}: {reply}");
        assert_eq!(reply["code"], code, "{}: {reply}", &shown[..shown.len().min(80)]);
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still usable: a ping and then a whole run.
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next_json().await["type"], "pong");
    c.ask("Analyze my AI costs", None).await;
    assert_golden_run(&c.events_until_terminal().await);
}

#[tokio::test]
async fn a_frame_beyond_the_transport_limit_closes_with_1009_never_1011() {
    let app = spawn_app().await;
    let mut c = connect(&app, By::Demo).await;
    c.send_raw(Message::Text("y".repeat(200_000).into())).await;
    match c.next_frame().await {
        Frame::Close(code) => assert_eq!(code, Some(1009)),
        Frame::Json(v) => panic!("expected a close, got {v}"),
    }
    // The server is fine.
    let mut other = connect(&app, By::Demo).await;
    other.send(json!({"type":"ping"})).await;
    assert_eq!(other.next_json().await["type"], "pong");
}

#[tokio::test]
async fn flooding_is_rate_limited_without_closing() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.rate_limit = 5;
        },
        |s| s,
    )
    .await;
    let mut c = connect(&app, By::Demo).await;
    for _ in 0..30 {
        c.send(json!({"type": "ping"})).await;
    }
    let mut limited = 0;
    for _ in 0..30 {
        let v = c.next_json().await;
        if v["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited > 0, "some frames were refused");
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next_json().await["type"], "pong", "the allowance refills");
}

async fn upgrade_status(url: &str, by: By) -> u16 {
    match try_connect(url, by).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn bad_tokens_get_401_before_the_upgrade() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let url = app.ws_url();
    assert_eq!(upgrade_status(&url, By::Demo).await, 401, "anonymous with demo off");

    let auth = Auth::from_settings(&app.settings).unwrap();
    let good = auth.mint("zoe", Duration::from_secs(60), false).unwrap();
    assert_eq!(upgrade_status(&url, By::Header(good.clone())).await, 101);

    // Expired (beyond the 5 s leeway).
    let expired = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        encode(
            &Header::default(),
            &json!({"sub": "zoe", "iat": now - 7200, "exp": now - 3600}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    // Tampered: the payload changed, the signature kept.
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let other = auth.mint("mallory", Duration::from_secs(60), false).unwrap();
        format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2])
    };
    // Signed with another secret.
    let foreign = {
        let dir = tempfile::tempdir().unwrap();
        let s = test_settings(&dir, |s: &mut apex_server::Settings| {
            s.jwt_secret = Some("another-secret-entirely-0000".into());
        });
        Auth::from_settings(&s).unwrap().mint("zoe", Duration::from_secs(60), false).unwrap()
    };
    for (name, token) in [("expired", expired), ("tampered", tampered), ("foreign", foreign), ("garbage", "abc.def.ghi".into())] {
        assert_eq!(upgrade_status(&url, By::Header(token.clone())).await, 401, "{name} via header");
        assert_eq!(upgrade_status(&url, By::Subprotocol(token.clone())).await, 401, "{name} via subprotocol");
        assert_eq!(upgrade_status(&url, By::Query(token)).await, 401, "{name} via query");
    }
    // REST too.
    let r = http_client().get(app.http("/api/threads")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn an_invalid_token_is_refused_even_in_demo_mode() {
    let app = spawn_app().await;
    assert_eq!(upgrade_status(&app.ws_url(), By::Header("nope.nope.nope".into())).await, 401);
}

#[tokio::test]
async fn production_without_a_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = apex_server::Settings::extract(figment::Figment::new(), |s| {
        s.data_dir = dir.path().into();
        s.env = "production".into();
    })
    .unwrap();
    assert!(!settings.demo_mode, "production turns demo mode off");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = apex_server::run(listener, settings, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("APEX_JWT_SECRET"), "{err}");
}

#[tokio::test]
async fn users_never_see_each_others_threads_runs_or_events() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s.with_tool(slow("query_usage", 200)),
    )
    .await;
    let (ta, tb) = (app.token("user-a"), app.token("user-b"));
    let mut a = connect(&app, By::Header(ta.clone())).await;
    let mut b = connect(&app, By::Header(tb.clone())).await;
    let accepted = a.ask("Analyze my AI costs", None).await;
    let (run, thread) = (accepted["run_id"].as_str().unwrap(), accepted["thread_id"].as_str().unwrap());

    // B tries to follow, stop, and post into A's live run and thread.
    b.send(json!({"type": "resume", "run_id": run, "after_seq": 0})).await;
    assert_eq!(b.next_json().await["code"], "not_found");
    b.send(json!({"type": "stop_agent", "run_id": run})).await;
    assert_eq!(b.next_json().await["code"], "not_found");
    b.send(json!({"type": "user_message", "text": "hi", "thread_id": thread})).await;
    assert_eq!(b.next_json().await["code"], "not_found");

    let events = a.events_until_terminal().await;
    assert_golden_run(&events);

    for path in [
        format!("/api/threads/{thread}/messages"),
        format!("/api/runs/{run}"),
        format!("/api/runs/{run}/events"),
        format!("/api/runs/{run}/events?after_seq=3"),
    ] {
        assert_eq!(app.get(&path, &tb).await.0, 404, "{path}");
        assert_eq!(app.get(&path, &ta).await.0, 200, "{path}");
    }
    let (_, threads) = app.get("/api/threads", &tb).await;
    assert!(threads["threads"].as_array().unwrap().is_empty());
    // After the run, B still cannot resume it, and B received none of A's events.
    b.send(json!({"type": "resume", "run_id": run, "after_seq": 0})).await;
    let reply = b.next_json().await;
    assert_eq!(reply["code"], "not_found", "{reply}");
    b.send(json!({"type": "ping"})).await;
    assert_eq!(b.next_json().await["type"], "pong", "nothing of A's arrived in between");
}

#[tokio::test]
async fn a_token_that_expires_during_a_connection_closes_it_with_1008() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.ping_interval = std::time::Duration::from_secs_f64(0.5);
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = Auth::from_settings(&app.settings).unwrap().mint("short-lived", Duration::from_secs(2), false).unwrap();
    let mut c = connect(&app, By::Header(token)).await;
    // Still served while the token is valid.
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next_json().await["type"], "pong");
    let opened = std::time::Instant::now();
    let frame = c.next_frame_within(Duration::from_secs(10)).await;
    assert!(matches!(frame, Frame::Close(Some(1008))), "expected close 1008 (token expired), got {frame:?}");
    assert!(opened.elapsed() < Duration::from_secs(5), "closed {:?} after connecting, the token lived 2 s", opened.elapsed());
}

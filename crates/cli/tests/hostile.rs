//! Hostile clients, each as an attacker on loopback tried it: every buffer they can fill
//! has a bound, every credential they can bend is refused, and the server stays up for
//! everybody else. Memory is measured on the server process itself.
mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A client socket with a small receive buffer: what the server sends piles up on its side.
async fn small_window_socket(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_client_that_never_reads_is_shed_and_memory_stays_bounded() {
    let server = ServeProcess::start(&[]).await;
    let (baseline, _) = server.rss_mib();
    let tcp = small_window_socket(server.addr).await;
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), tcp).await.unwrap();
    // Control-frame Pings with the largest payload allowed, as fast as the socket takes
    // them, never reading a byte of the replies.
    let payload = vec![7u8; 125];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(4) {
        let burst: Vec<_> = (0..256).map(|_| Ok(Message::Ping(payload.clone().into()))).collect();
        match tokio::time::timeout(Duration::from_secs(1), ws.send_all(&mut futures_util::stream::iter(burst))).await {
            Ok(Ok(())) => sent += 256,
            // Shed: the server closed the connection.
            Ok(Err(_)) => break,
            // The server stopped reading us: keep the pressure on until the time is up.
            Err(_) => {}
        }
    }
    let (_, peak) = server.rss_mib();
    eprintln!(
        "ping flood: {sent} pings in {:.1} s; server RSS {baseline:.0} MiB before, peak {peak:.0} MiB",
        started.elapsed().as_secs_f64()
    );
    assert!(peak < baseline + 150.0, "the server grew from {baseline:.0} MiB to a peak of {peak:.0} MiB after {sent} pings");
    // The flooder was told why (1008) once it reads, or was simply cut off.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the flooding connection ends");
    assert!(matches!(ended, Some(1008) | None), "closed with {ended:?}");
    // Everybody else is served.
    let mut other = try_connect(&server.ws_url(), By::Demo).await.unwrap();
    other.ask("Analyze my AI costs", None).await;
    assert_golden_run(&other.events_until_terminal().await);
    let metrics = http_client().get(server.http("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("apex_ws_connections_closed_total{code=\"1008\"}")),
        "the flood is counted as a 1008 close"
    );
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_is_counted_as_1007() {
    let app = spawn_app().await;
    let mut c = connect(&app, By::Demo).await;
    // A text frame whose payload is not UTF-8, written by hand (the client library refuses to).
    let tcp = c.ws.get_mut();
    let tokio_tungstenite::MaybeTlsStream::Plain(stream) = tcp else { panic!("plain TCP") };
    let payload = [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80];
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.unwrap();
    match c.next_frame().await {
        Frame::Close(code) => assert_eq!(code, Some(1007)),
        Frame::Json(v) => panic!("expected a close, got {v}"),
    }
    let metrics = http_client().get(app.http("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("apex_ws_connections_closed_total{code=\"1007\"}"));
    assert!(line.is_some_and(|l| l.ends_with(" 1")), "counted as 1007: {line:?}");
}

/// A token signed with the test secret from raw claims and header.
fn sign(header: serde_json::Value, claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    if let Some(kid) = header.get("kid").and_then(|k| k.as_str()) {
        h.kid = Some(kid.to_owned());
    }
    let token = jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    if header.get("crit").is_none() {
        return token;
    }
    // jsonwebtoken's header has no `crit`: build that one by hand.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(json!({"alg": "HS256", "typ": "JWT", "crit": header["crit"]}).to_string());
    let body = token.split('.').nth(1).unwrap();
    let signing_input = format!("{head}.{body}");
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{signing_input}.{signature}")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn tokens_are_checked_as_rfc_7519_and_8725_say() {
    let layer = |s: &mut apex_server::Settings| {
        s.jwt_issuer = Some("https://id.example".into());
        s.jwt_audience = Some("apex".into());
    };
    let app = spawn_with(layer, |s| s).await;
    let http = http_client();
    let status = |token: String| {
        let http = http.clone();
        let url = app.http("/api/threads");
        async move { http.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    let t = now();
    let good = json!({"sub": "alice", "exp": t + 600, "iss": "https://id.example", "aud": "apex"});
    let with = |patch: serde_json::Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        sign(json!({}), claims)
    };
    let cases = [
        ("no iat (optional in RFC 7519)", with(json!({})), 200),
        ("iat in the past", with(json!({"iat": t - 60})), 200),
        ("aud as an array holding ours", with(json!({"aud": ["other", "apex"]})), 200),
        ("no iss while one is configured", with(json!({"iss": null})), 401),
        ("no aud while one is configured", with(json!({"aud": null})), 401),
        ("wrong iss", with(json!({"iss": "https://evil.example"})), 401),
        ("aud array without ours", with(json!({"aud": ["other"]})), 401),
        ("nbf in the future", with(json!({"nbf": t + 600})), 401),
        ("nbf in the past", with(json!({"nbf": t - 60})), 200),
        ("iat in the future", with(json!({"iat": t + 600})), 401),
        ("exp = 2^64 - 1", with(json!({"exp": u64::MAX})), 401),
        ("exp a century away", with(json!({"exp": t + 100 * 366 * 86400})), 401),
        ("no exp", with(json!({"exp": null})), 401),
        ("expired", with(json!({"exp": t - 600})), 401),
        ("a crit header", sign(json!({"crit": ["exp"]}), good.clone()), 401),
    ];
    for (what, token, expected) in cases {
        assert_eq!(status(token).await, expected, "{what}");
    }
}

#[tokio::test]
async fn an_authorization_header_is_used_in_any_case_and_never_downgraded_to_demo() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let http = http_client();
    let get = |value: String| {
        let (http, url) = (http.clone(), app.http("/api/threads"));
        async move { http.get(url).header("authorization", value).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(format!("BEARER {token}")).await, 200, "the scheme is case-insensitive (RFC 7235)");
    assert_eq!(get(format!("bearer   {token}")).await, 200);
    assert_eq!(get("Basic YWxpY2U6c2VjcmV0".into()).await, 401);
    assert_eq!(get("Bearer".into()).await, 401);
    assert_eq!(get(token.clone()).await, 401, "a bare token without a scheme");
    // On the WebSocket, in demo mode: refused before the upgrade, not admitted as a new demo user.
    for value in [format!("BEARER {token}"), "Basic YWxpY2U6c2VjcmV0".to_owned()] {
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(app.ws_url()).unwrap();
        request.headers_mut().insert("authorization", value.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut ws, _)) => {
                let ready = ws.next().await.unwrap().unwrap().into_text().unwrap();
                let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
                assert!(value.starts_with("BEARER"), "{value} was admitted: {ready}");
                assert_eq!(ready["user_id"], "alice", "the token's user, not a demo user");
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert!(value.starts_with("Basic"), "{value} was refused");
                assert_eq!(response.status().as_u16(), 401);
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Waits until the server holds `n` connections besides the one asking (its metrics, read
/// from another loopback address so as not to count against 127.0.0.1).
async fn settle_open_connections(addr: std::net::SocketAddr, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        let open =
            answer.lines().find_map(|l| l.strip_prefix("apex_tcp_connections_open ")).and_then(|v| v.trim().parse::<f64>().ok());
        if open == Some(n as f64 + 1.0) {
            return;
        }
        assert!(Instant::now() < deadline, "the server holds {open:?} connections, not {n} and the one asking");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_time_out_and_count_toward_the_caps() {
    // The header timeout is long enough that no hog times out before the 41st connection is
    // accepted, even when the machine is busy with other tests (with 1 s, a slow accept loop
    // let hogs expire first, freed their slots, and the 41st was served).
    let server = ServeProcess::start(&[("APEX_HEADER_TIMEOUT_SECS", "4"), ("APEX_MAX_CONNECTIONS_PER_IP", "40")]).await;
    // Nothing else holds a slot of 127.0.0.1 (the health check's connection may still be
    // open on the server's side), so that exactly the 40 below count.
    settle_open_connections(server.addr, 0).await;
    // 40 connections that never finish a request: half a request line, or nothing at all.
    let mut hogs = Vec::new();
    for i in 0..40 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 0 {
            tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        }
        hogs.push(tcp);
    }
    settle_open_connections(server.addr, 40).await;
    // The 41st from the same address is closed at once…
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await.expect("closed at once").unwrap_or(0);
    assert_eq!(n, 0, "over the per-address cap: closed without an answer, not {:?}", String::from_utf8_lossy(&buf[..n]));
    // …while another address is served (all of 127/8 is loopback).
    let other = TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(server.addr).await.unwrap();
    other.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), other.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Within the header timeout (4 s, and some slack) every hog is closed by the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, hog) in hogs.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, hog.read(&mut buf)).await;
        assert!(read.is_ok(), "connection {i} was not timed out");
    }
    // And the address may connect again.
    let mut again = TcpStream::connect(server.addr).await.unwrap();
    again.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), again.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_page_from_another_origin_cannot_open_a_websocket() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.allowed_origins = vec!["https://app.example".into()];
        },
        |s| s,
    )
    .await;
    let upgrade = |origin: Option<String>| {
        let url = app.ws_url();
        async move {
            let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
            if let Some(o) = origin {
                request.headers_mut().insert("origin", o.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(upgrade(Some("https://evil.example".into())).await, 403);
    assert_eq!(upgrade(Some("null".into())).await, 403);
    assert_eq!(upgrade(Some(format!("http://{}", app.addr))).await, 101, "the server's own page");
    assert_eq!(upgrade(Some("https://app.example".into())).await, 101, "a listed origin");
    assert_eq!(upgrade(None).await, 101, "not a browser");
}

#[tokio::test]
async fn one_user_is_limited_across_all_of_their_connections() {
    let layer = |s: &mut apex_server::Settings| {
        s.max_connections_per_user = 3;
        s.max_runs_per_user = 2;
        s.tool_delay = std::time::Duration::from_millis(300);
    };
    let app = spawn_with(layer, |s| s).await;
    let token = app.token("mallory");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connect(&app, By::Header(token.clone())).await);
    }
    match try_connect(&app.ws_url(), By::Header(token.clone())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        Ok(_) => panic!("a fourth connection of the same user was admitted"),
        Err(e) => panic!("{e}"),
    }
    // Two runs in flight at most, whichever connection asks.
    let mut replies = Vec::new();
    for c in sockets.iter_mut() {
        c.send(json!({"type": "user_message", "text": "Analyze my AI costs"})).await;
        replies.push(c.next_json().await);
    }
    let accepted = replies.iter().filter(|r| r["type"] == "message_accepted").count();
    assert_eq!(accepted, 2, "{replies:?}");
    assert!(replies.iter().any(|r| r["code"] == "too_many_runs"), "{replies:?}");
    // Once one ends, the user may start another.
    sockets[0].events_until_terminal().await;
    sockets[1].events_until_terminal().await;
    sockets[2].ask("Analyze my AI costs", None).await;
    assert_golden_run(&sockets[2].events_until_terminal().await);
    // A different user is not affected by mallory's connections.
    let mut bob = connect(&app, By::Header(app.token("bob"))).await;
    bob.send(json!({"type": "ping"})).await;
    assert_eq!(bob.next_json().await["type"], "pong");
}

#[tokio::test]
async fn the_frame_allowance_is_per_user_across_connections() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.user_rate_limit = 5;
            s.rate_limit = 50;
        },
        |s| s,
    )
    .await;
    let token = app.token("mallory");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connect(&app, By::Header(token.clone())).await);
    }
    // 18 pings over three connections, each far inside its own allowance (50/s, bursts
    // of 100), together well past the user's (5/s, bursts of 10).
    for c in sockets.iter_mut() {
        for _ in 0..6 {
            c.send(json!({"type": "ping"})).await;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    for c in sockets.iter_mut() {
        for _ in 0..6 {
            let reply = c.next_json().await;
            match (reply["type"].as_str(), reply["code"].as_str()) {
                (Some("pong"), _) => pongs += 1,
                (Some("error"), Some("rate_limited")) => limited += 1,
                _ => panic!("{reply}"),
            }
        }
    }
    assert!(pongs <= 12 && limited >= 6, "{pongs} pongs, {limited} rate_limited");
    // Another user has an allowance of their own.
    let mut bob = connect(&app, By::Header(app.token("bob"))).await;
    bob.send(json!({"type": "ping"})).await;
    assert_eq!(bob.next_json().await["type"], "pong");
}

/// A token for `user`, signed with the secret `ServeProcess` gives the server.
fn token_for(user: &str) -> String {
    sign(json!({}), json!({"sub": user, "exp": now() + 3600}))
}

/// `header`, then `filler` bytes of `byte` (no newline), then `tail`, gzip-compressed as
/// it is generated: a few MB that decompress to `filler` bytes.
fn gzip_bomb(header: &str, byte: u8, filler: usize, tail: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(header.as_bytes()).unwrap();
    let block = vec![byte; 1 << 20];
    for _ in 0..filler >> 20 {
        gz.write_all(&block).unwrap();
    }
    gz.write_all(tail.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_refused_and_the_server_stays_small() {
    let server = ServeProcess::start(&[]).await;
    let (baseline, _) = server.rss_mib();
    let token = token_for("bomber");
    let bombs = [
        ("a CSV with one 1 GiB line", gzip_bomb("date,model,input_tokens\n2026-11-01,", b'x', 1 << 30, ",5\n")),
        (
            "an OpenAI usage page with a 1 GiB model name",
            gzip_bomb(
                r#"{"object":"page","data":[{"results":[{"object":"organization.usage.completions.result","model":""#,
                b'y',
                1 << 30,
                r#""}]}]}"#,
            ),
        ),
    ];
    for (what, body) in bombs {
        let compressed = body.len();
        let response = http_client().post(server.http("/api/usage/import")).bearer_auth(&token).body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.unwrap();
        let (_, peak) = server.rss_mib();
        eprintln!("{what}: {compressed} bytes compressed → {status} {answer}; server peak {peak:.0} MiB (from {baseline:.0})");
        assert!(matches!(status, 413 | 400), "{what}: {status} {answer}");
        assert!(peak < baseline + 200.0, "{what}: the server grew from {baseline:.0} MiB to a peak of {peak:.0} MiB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_are_streamed_not_held() {
    let server = ServeProcess::start(&[]).await;
    let (baseline, _) = server.rss_mib();
    let token = token_for("uploader");
    // 100 MB on one line between two good rows: one row error, two rows kept.
    let mut csv = b"date,model,input_tokens,output_tokens\n2026-11-01,gpt-4o,10,5\n".to_vec();
    csv.resize(csv.len() + (100 << 20), b'z');
    csv.extend_from_slice(b"\n2026-11-02,gpt-4o,10,5\n");
    let body = csv;
    let uploads = (0..3).map(|_| {
        let (url, token, body) = (server.http("/api/usage/import"), token.clone(), body.clone());
        async move {
            let response = http_client().post(url).bearer_auth(token).body(body).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    });
    for (status, report) in futures_util::future::join_all(uploads).await {
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["rejected_count"], 1, "{report}");
        assert_eq!(report["rows_read"], 2, "{report}");
    }
    let (_, peak) = server.rss_mib();
    eprintln!("3 × 100 MB uploads at once: server peak {peak:.0} MiB (from {baseline:.0})");
    assert!(peak < baseline + 200.0, "three 100 MB uploads took the server from {baseline:.0} MiB to {peak:.0} MiB");
}

/// Rows stored for `token`'s user so far (each row of the test's file is one request; the
/// store keeps one record per day and model, so `records` would not count them).
async fn stored_rows(app: &TestApp, token: &str) -> u64 {
    let (status, summary) = app.get("/api/usage/summary", token).await;
    assert_eq!(status, 200, "{summary}");
    summary["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stops_when_its_client_hangs_up() {
    use std::io::Write;
    const ROWS: u64 = 1_000_000;
    /// Rows the store commits per transaction (`apex_ingest`).
    const CHUNK: u64 = 10_000;
    let app = spawn_app().await;
    let token = app.token("leaver");
    // A million distinct rows, gzip-compressed: the server needs minutes to store them all.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    writeln!(gz, "date,model,input_tokens,output_tokens").unwrap();
    for i in 0..ROWS {
        writeln!(gz, "2026-11-{:02},gpt-4o-mini,{},5", 1 + i % 28, 100 + i).unwrap();
    }
    let body = gz.finish().unwrap();
    // A small send buffer, so that the upload cannot be all in the kernel's buffers by
    // the time the first chunk is stored (with the default, up to 4 MiB: most of the
    // compressed body, on a busy machine where storing the first chunk takes a while).
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(app.addr).await.unwrap();
    // Closing with linger 0 resets the connection, as a client that dies does.
    #[allow(deprecated)]
    tcp.set_linger(Some(Duration::ZERO)).unwrap();
    let head = format!(
        "POST /api/usage/import HTTP/1.1\r\nhost: apex\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let upload = tokio::spawn(async move {
        let mut tcp = tcp;
        tcp.write_all(head.as_bytes()).await.unwrap();
        let _ = tcp.write_all(&body).await; // blocks: the server reads as fast as it stores
        tcp
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_hangup = loop {
        let n = stored_rows(&app, &token).await;
        if n >= CHUNK {
            break n;
        }
        assert!(Instant::now() < deadline, "no chunk of the import was stored within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    upload.abort();
    assert!(upload.await.unwrap_err().is_cancelled(), "the upload was still going");
    // The import stops: the count settles within a few chunks and stays there.
    let (mut last, mut same_since) = (at_hangup, Instant::now());
    while same_since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = stored_rows(&app, &token).await;
        if n != last {
            (last, same_since) = (n, Instant::now());
        }
        assert!(Instant::now() < deadline, "the import was still storing rows a minute later ({n} rows)");
    }
    eprintln!("client hung up at {at_hangup} stored rows; the import stopped at {last} of {ROWS}");
    // What the kernel had already buffered of the upload is still read (tens of thousands
    // of rows here); nothing past it.
    assert!(last < ROWS / 2, "the import went on after its client hung up: {at_hangup} → {last} rows");
    assert_eq!(last % CHUNK, 0, "only whole chunks are kept, {last} rows were");
    // Nothing is left locked: the same user imports again at once.
    app.import_fixture(&token).await;
}

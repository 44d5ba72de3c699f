//! The OpenAI-compatible client against a small HTTP server written here that misbehaves
//! on purpose: 429 with `Retry-After`, 500, a stall, a refused connection, and the circuit
//! breaker that stops calling a server that keeps failing.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_llm::openai::{OpenAi, OpenAiConfig};
use apex_llm::{ChatMessage, ChatRequest, LlmError, LlmProvider, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers to its n-th request (0-based).
#[derive(Clone, Copy)]
enum Reply {
    Ok,
    TooMany {
        retry_after_secs: u32,
    },
    Error500,
    /// Headers, one piece of text, then nothing.
    StallMidStream,
    /// Reads the request and never answers.
    StallBeforeHeaders,
}

struct FaultServer {
    url: String,
    requests: Arc<AtomicUsize>,
}

async fn fault_server(script: fn(usize) -> Reply) -> FaultServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(socket, script(n)));
        }
    });
    FaultServer { url, requests }
}

async fn answer(mut socket: TcpStream, reply: Reply) {
    read_request(&mut socket).await;
    let sse = |chunks: &[&str]| {
        let mut body = String::new();
        for c in chunks {
            body.push_str(&format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{c}\"}},\"finish_reason\":null}}]}}\n\n"
            ));
        }
        body
    };
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    match reply {
        Reply::Ok => {
            let mut body = sse(&["Hello", " there"]);
            body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n");
            let _ = socket.write_all(format!("{head}{body}").as_bytes()).await;
        }
        Reply::TooMany { retry_after_secs } => {
            let body = r#"{"error":{"message":"slow down"}}"#;
            let _ = socket
                .write_all(format!("HTTP/1.1 429 Too Many Requests\r\nretry-after: {retry_after_secs}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                .await;
        }
        Reply::Error500 => {
            let body = r#"{"error":{"message":"upstream exploded"}}"#;
            let _ = socket
                .write_all(
                    format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        Reply::StallMidStream => {
            let _ = socket.write_all(format!("{head}{}", sse(&["Partial"])).as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Reply::StallBeforeHeaders => tokio::time::sleep(Duration::from_secs(30)).await,
    }
}

/// Reads the headers and the body (by content-length).
async fn read_request(socket: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            while buf.len() < end + 4 + length {
                let Ok(n) = socket.read(&mut chunk).await else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return;
        }
    }
}

fn client(url: &str) -> OpenAi {
    let mut c = OpenAiConfig::new(url, "test-model");
    c.read_timeout = Duration::from_millis(500);
    c.backoff = Duration::from_millis(20);
    c.retries = 2;
    c.max_retry_wait = Duration::from_secs(3);
    c.breaker_threshold = 3;
    c.breaker_cool_down = Duration::from_millis(300);
    OpenAi::new(c).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user("hi")])
}

#[tokio::test]
async fn a_429_is_retried_after_the_time_the_server_asked_for() {
    let server = fault_server(|n| if n == 0 { Reply::TooMany { retry_after_secs: 1 } } else { Reply::Ok }).await;
    let started = Instant::now();
    let answer = client(&server.url).chat(request()).await.expect("retried").collect().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured: {:?}", started.elapsed());
    assert_eq!(answer.text, "Hello there");
    assert_eq!((answer.usage.input_tokens, answer.usage.output_tokens), (7, 2));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_fails_at_once() {
    let server = fault_server(|_| Reply::TooMany { retry_after_secs: 120 }).await;
    let started = Instant::now();
    let err = client(&server.url).chat(request()).await.err().expect("rate limited");
    assert_eq!(err, LlmError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_then_reported() {
    let server = fault_server(|_| Reply::Error500).await;
    let err = client(&server.url).chat(request()).await.err().expect("fails");
    assert_eq!(err, LlmError::Status { status: 500, message: "upstream exploded".into() });
    assert_eq!(server.requests.load(Ordering::SeqCst), 3, "the first attempt and two retries");

    let recovers = fault_server(|n| if n < 2 { Reply::Error500 } else { Reply::Ok }).await;
    let answer = client(&recovers.url).chat(request()).await.unwrap().collect().await.unwrap();
    assert_eq!(answer.text, "Hello there");
}

#[tokio::test]
async fn a_server_that_stalls_times_out_before_and_during_the_answer() {
    let silent = fault_server(|_| Reply::StallBeforeHeaders).await;
    let mut c = client(&silent.url);
    let started = Instant::now();
    assert!(matches!(c.chat(request()).await.err(), Some(LlmError::Timeout(_))));
    // Three attempts of 500 ms each, plus backoff.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let stalls = fault_server(|_| Reply::StallMidStream).await;
    c = client(&stalls.url);
    let mut stream = c.chat(request()).await.expect("headers arrive");
    assert_eq!(stream.next().await, Some(Ok(StreamEvent::Text("Partial".into()))));
    let started = Instant::now();
    assert!(matches!(stream.next().await, Some(Err(LlmError::Timeout(_)))));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_the_breaker_then_stops_calling() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(&format!("http://127.0.0.1:{port}/v1"));
    assert!(matches!(c.chat(request()).await.err(), Some(LlmError::Unreachable(_))));

    let server = fault_server(|_| Reply::Error500).await;
    let c = client(&server.url);
    for _ in 0..3 {
        assert!(matches!(c.chat(request()).await.err(), Some(LlmError::Status { status: 500, .. })));
    }
    let before = server.requests.load(Ordering::SeqCst);
    assert_eq!(c.chat(request()).await.err(), Some(LlmError::CircuitOpen));
    assert_eq!(server.requests.load(Ordering::SeqCst), before, "an open circuit sends nothing");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(c.chat(request()).await.err(), Some(LlmError::Status { .. })), "the trial call goes out");
    assert_eq!(c.chat(request()).await.err(), Some(LlmError::CircuitOpen), "and its failure re-opens the circuit");
}

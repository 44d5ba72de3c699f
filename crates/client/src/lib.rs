//! The WebSocket client of Apex's protocol, shared by `apex chat`, `apex bench`,
//! `apex readiness` and the end-to-end tests: connecting with any of the credentials, decoding the server's frames and events
//! (tolerating event types added later), and reporting errors on one line.
use std::borrow::Cow;

use anyhow::Context as _;
use apex_protocol::{RunEvent, RunId, ServerFrame};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a client proves who it is when it opens the WebSocket (docs/protocol.md).
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    /// None: in demo mode the server admits the client as a new demo user.
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer(&'a str),
    /// `Sec-WebSocket-Protocol: apex.v1, jwt.TOKEN` (what browsers can send).
    Subprotocol(&'a str),
    /// `?token=TOKEN` on the URL.
    Query(&'a str),
}

/// The upgrade request for `url` carrying `credentials`.
pub fn request(url: &str, credentials: Credentials<'_>) -> anyhow::Result<Request> {
    let url = match credentials {
        Credentials::Query(token) => Cow::Owned(format!("{url}?token={token}")),
        _ => Cow::Borrowed(url),
    };
    let mut request = url.as_ref().into_client_request().with_context(|| format!("invalid URL {url}"))?;
    let header = match credentials {
        Credentials::Bearer(token) => Some((AUTHORIZATION, format!("Bearer {token}"))),
        Credentials::Subprotocol(token) => Some((SEC_WEBSOCKET_PROTOCOL, format!("apex.v1, jwt.{token}"))),
        Credentials::None | Credentials::Query(_) => None,
    };
    if let Some((name, value)) = header {
        let value = HeaderValue::from_str(&value).context("the token is not a valid header value")?;
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

/// Opens a WebSocket with `request` (see [`request`]), and gives the server's upgrade
/// response too (its chosen subprotocol, say). Errors are tungstenite's, so that a refusal's
/// HTTP status can be read.
pub async fn open(request: Request) -> Result<(WsStream, Response), tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async_with_config(request, Some(client_config()), true).await
}

/// Opens a WebSocket to `url`, authenticating with `Authorization: Bearer` when a token is
/// given. Nagle is off: frames are small and latency matters more than packet count. The
/// read buffer is 8 KiB instead of tungstenite's eager 128 KiB: our frames are small, and
/// `apex bench` holds a thousand connections on the machine it measures.
pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<WsStream> {
    let (ws, _response) = open(client_request(url, token)?).await?;
    Ok(ws)
}

/// Like [`connect`] (plain `ws://` only), over a socket whose kernel receive buffer is
/// `receive_buffer` bytes: a client that stops reading fills it, and then the server's side,
/// at once.
pub async fn connect_with_receive_buffer(url: &str, token: Option<&str>, receive_buffer: u32) -> anyhow::Result<WsStream> {
    let request = client_request(url, token)?;
    let host = request.uri().host().context("the URL has no host")?;
    let port = request.uri().port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host, port)).await?.next().context("the host has no address")?;
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_recv_buffer_size(receive_buffer)?;
    let stream = socket.connect(addr).await?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(client_config())).await?;
    Ok(ws)
}

fn client_request(url: &str, token: Option<&str>) -> anyhow::Result<Request> {
    request(url, token.map_or(Credentials::None, Credentials::Bearer))
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// One decoded server text frame.
#[derive(Debug)]
pub enum Incoming {
    Frame(ServerFrame),
    Event(RunEvent),
    /// An event of a type this client does not know (the protocol may grow); its place in
    /// the run still counts.
    OtherEvent {
        run_id: RunId,
        seq: u64,
        kind: String,
    },
}

/// The `type` values of [`ServerFrame`]; every other `type` is a run event.
const SERVER_FRAME_TYPES: [&str; 5] = ["connection_ready", "pong", "error", "message_accepted", "server_shutdown"];

#[derive(Deserialize)]
struct TypeTag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct EventHeader {
    run_id: RunId,
    seq: u64,
}

pub fn decode(text: &str) -> anyhow::Result<Incoming> {
    let tag: TypeTag<'_> = serde_json::from_str(text).context("not a JSON object with a string `type`")?;
    if SERVER_FRAME_TYPES.contains(&tag.kind.as_ref()) {
        let frame = serde_json::from_str(text).with_context(|| format!("malformed `{}` frame", tag.kind))?;
        return Ok(Incoming::Frame(frame));
    }
    match serde_json::from_str::<RunEvent>(text) {
        Ok(event) => Ok(Incoming::Event(event)),
        Err(full) => {
            let header: EventHeader =
                serde_json::from_str(text).with_context(|| format!("malformed `{}` event: {full}", tag.kind))?;
            Ok(Incoming::OtherEvent { run_id: header.run_id, seq: header.seq, kind: tag.kind.into_owned() })
        }
    }
}

/// An error and its causes on one line, skipping causes that repeat their parent's text
/// (tungstenite's I/O errors display their source inline).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    let mut previous = line.clone();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !previous.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
        previous = cause;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use apex_protocol::ThreadId;

    #[test]
    fn decodes_frames_events_and_unknown_events() {
        let run = RunId::new();
        let thread = ThreadId::new();
        assert!(matches!(decode(r#"{"type":"pong"}"#), Ok(Incoming::Frame(ServerFrame::Pong))));
        let started =
            format!(r#"{{"type":"agent_started","agent":"supervisor","run_id":"{run}","thread_id":"{thread}","seq":1,"ts":5}}"#);
        assert!(matches!(decode(&started), Ok(Incoming::Event(e)) if e.seq == 1 && e.run_id == run));
        let future = format!(r#"{{"type":"agent_dreaming","run_id":"{run}","thread_id":"{thread}","seq":2,"ts":5}}"#);
        assert!(matches!(decode(&future), Ok(Incoming::OtherEvent { seq: 2, .. })));
        assert!(decode("[]").is_err());
        assert!(decode(r#"{"type":"error"}"#).is_err());
    }
}

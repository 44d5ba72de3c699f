//! One WebSocket connection: parse, validate and authorize client frames, and deliver the
//! events of every run this connection follows.
//!
//! Three kinds of tasks, all owned here and released when the connection ends: this
//! session loop (reads frames), one writer (the only owner of the socket's write half,
//! fed by a bounded queue) and one follower per followed run (copies the run's events
//! into the queue). A client that stops reading fills the socket, then the queue (which
//! holds back its followers, never the runs); when the socket has taken nothing for the
//! write timeout, the client is shed with close 1013 and the connection ends, without
//! touching the run itself.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_engine::{Follow, StartError};
use apex_protocol::{
    close, now_ms, parse_client_frame, ClientFrame, ConnectionId, ErrorCode, OrgId, RunId, ServerFrame, UserId, SUBPROTOCOL,
};
use apex_telemetry as m;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tracing::Instrument;

use crate::auth::Identity;
use crate::limits::{TokenBucket, UserConnection};
use crate::listen::Slot;
use crate::AppState;

enum Outbound {
    Text(Utf8Bytes),
    Ping,
    Close(u16, &'static str),
}

/// What a connection holds for its whole life: its place under the TCP caps (absent when
/// served by something other than [`crate::listen`]) and under the user's cap.
#[allow(dead_code)] // held for what dropping them releases
pub(super) struct Held {
    pub slot: Option<Slot>,
    pub user: UserConnection,
    /// For a signed-in session's socket: cancelled when the session ends.
    pub watch: Option<crate::accounts::revocation::Watch>,
}

pub(super) async fn run(socket: WebSocket, app: AppState, identity: Identity, org: OrgId, held: Held) {
    let connection_id = ConnectionId::new();
    let span = tracing::info_span!("connection", user_id = %identity.user_id, %connection_id);
    let _open = ConnectionCount::open(&app.connections);
    let session_ended = held.watch.as_ref().map(|w| w.ended.clone()).unwrap_or_default();
    let _held = held;
    let (sink, stream) = socket.split();
    let (out, rx) = mpsc::channel(app.settings.outbound_queue);
    let writer = tokio::spawn(write_loop(sink, rx, app.settings.write_timeout).instrument(span.clone()));
    let mut session = Session {
        limiter: TokenBucket::new(app.settings.rate_limit),
        control: TokenBucket::new(app.settings.rate_limit),
        app,
        user: UserId::from(identity.user_id.as_str()),
        demo: identity.demo,
        org,
        out,
        followers: JoinSet::new(),
        following: HashMap::new(),
    };
    session.serve(stream, writer, identity, connection_id, session_ended).instrument(span).await;
}

struct Session {
    app: AppState,
    user: UserId,
    /// A demo identity (from its token), shown demo data until it imports its own.
    demo: bool,
    /// Whose usage the connection's runs read: checked at the upgrade, and again at every
    /// message for a shared organization (a member removed meanwhile is refused).
    org: OrgId,
    out: mpsc::Sender<Outbound>,
    followers: JoinSet<()>,
    following: HashMap<RunId, AbortHandle>,
    limiter: TokenBucket,
    /// Pings and Pongs from the peer: each Ping costs a reply, so a flood of them is shed.
    control: TokenBucket,
}

impl Session {
    async fn serve(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        mut writer: JoinHandle<WriterEnd>,
        identity: Identity,
        connection_id: ConnectionId,
        session_ended: tokio_util::sync::CancellationToken,
    ) {
        tracing::debug!("connected");
        if self.app.open_connections() > self.app.settings.max_connections {
            tracing::warn!(limit = self.app.settings.max_connections, "connection cap reached; closing with 1013");
            self.close(close::TRY_AGAIN_LATER, "too many connections; retry shortly").await;
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
            closed(close::TRY_AGAIN_LATER);
            return;
        }
        self.send(ServerFrame::ConnectionReady {
            user_id: identity.user_id.clone(),
            connection_id,
            demo: identity.demo,
            token: identity.issued_token.clone(),
            protocol: SUBPROTOCOL.into(),
        })
        .await;
        let interval = self.app.settings.ping_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut last_seen = Instant::now();
        let mut announced_shutdown = false;
        let (shutting_down, close_sessions) = (self.app.shutting_down.clone(), self.app.close_sessions.clone());
        // Set when the writer task has ended: its handle must not be polled again.
        let mut writer_ended = false;
        let (reason, code) = loop {
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(message)) => {
                        last_seen = Instant::now();
                        match message {
                            Message::Text(text) => self.on_text(&text).await,
                            Message::Binary(_) => {
                                received("binary");
                                self.error(ErrorCode::BinaryNotSupported, "send JSON text frames", None).await
                            }
                            Message::Ping(_) | Message::Pong(_) => {
                                if !self.control.allow() {
                                    received("control_flood");
                                    self.close(close::POLICY, "too many control frames").await;
                                    break ("control frame flood", close::POLICY);
                                }
                            }
                            Message::Close(frame) => break ("client closed", frame.map_or(NO_STATUS, |f| f.code)),
                        }
                    }
                    Some(Err(e)) => match super::close_for_read_error(e) {
                        Some((code, reason)) => {
                            self.close(code, reason).await;
                            break (reason, code);
                        }
                        None => break ("read error", ABNORMAL),
                    },
                    None => break ("disconnected", ABNORMAL),
                },
                _ = ping.tick() => {
                    if last_seen.elapsed() > interval * 2 {
                        self.close(close::PING_TIMEOUT, "no answer to ping").await;
                        break ("ping timeout", close::PING_TIMEOUT);
                    }
                    if now_ms() / 1000 >= identity.expires_at {
                        self.close(close::POLICY, "token expired").await;
                        break ("token expired", close::POLICY);
                    }
                    let _ = self.out.send(Outbound::Ping).await;
                }
                _ = session_ended.cancelled() => {
                    self.close(close::SESSION_ENDED, "session ended: sign in again").await;
                    break ("session ended", close::SESSION_ENDED);
                }
                _ = shutting_down.cancelled(), if !announced_shutdown => {
                    announced_shutdown = true;
                    let grace_ms = self.app.settings.shutdown_grace.as_millis() as u64;
                    self.send(ServerFrame::ServerShutdown { grace_ms }).await;
                }
                _ = close_sessions.cancelled() => {
                    // Runs are over: let followers deliver their last events, then close.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while self.followers.join_next().await.is_some() {}
                    })
                    .await;
                    self.close(close::SERVICE_RESTART, "server restarting").await;
                    break ("server shutdown", close::SERVICE_RESTART);
                }
                ended = &mut writer => {
                    writer_ended = true;
                    match ended {
                        Ok(WriterEnd::SlowConsumer) => break ("slow consumer", close::TRY_AGAIN_LATER),
                        _ => break ("write failed", ABNORMAL),
                    }
                }
                Some(_) = self.followers.join_next(), if !self.followers.is_empty() => {}
            }
        };
        tracing::debug!(reason, code, "connection ended");
        closed(code);
        self.followers.abort_all();
        // Dropping the last sender lets the writer send what is queued, then finish.
        drop(std::mem::replace(&mut self.out, mpsc::channel(1).0));
        if !writer_ended && tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
            writer.abort();
        }
    }

    /// Why the user may no longer ask about the connection's organization, if they may not.
    async fn membership_lost(&self) -> Option<(ErrorCode, String)> {
        if !self.org.is_shared() {
            return None;
        }
        match self.app.runs.store().role_in(&self.org, &self.user).await {
            Ok(Some(_)) => None,
            Ok(None) => Some((ErrorCode::NotAMember, format!("you are no longer a member of organization `{}`", self.org))),
            Err(_) => Some((ErrorCode::StorageUnavailable, "storage is unavailable; retry shortly".into())),
        }
    }

    async fn on_text(&mut self, text: &str) {
        if !self.limiter.allow() || !self.app.users.allow_frame(self.user.as_str()) {
            received("rate_limited");
            return self.error(ErrorCode::RateLimited, "too many frames; slow down", None).await;
        }
        let frame = match parse_client_frame(text, self.app.settings.max_frame_bytes) {
            Ok(frame) => frame,
            Err(e) => {
                received("invalid");
                let frame =
                    ServerFrame::Error { code: e.code, message: e.message, run_id: None, client_message_id: e.client_message_id };
                return self.send(frame).await;
            }
        };
        received(match &frame {
            ClientFrame::Ping => "ping",
            ClientFrame::UserMessage(_) => "user_message",
            ClientFrame::StopAgent { .. } => "stop_agent",
            ClientFrame::Resume { .. } => "resume",
        });
        match frame {
            ClientFrame::Ping => self.send(ServerFrame::Pong).await,
            ClientFrame::UserMessage(message) => {
                let client_message_id = message.client_message_id.clone();
                if let Some((code, message)) = self.membership_lost().await {
                    return self.send(ServerFrame::Error { code, message, run_id: None, client_message_id }).await;
                }
                match self.app.runs.submit(&self.user, &self.org, self.demo, message).await {
                    Ok(accepted) => {
                        self.send(ServerFrame::MessageAccepted {
                            run_id: accepted.run_id,
                            thread_id: accepted.thread_id,
                            message_id: accepted.message_id,
                            client_message_id,
                        })
                        .await;
                        self.follow(accepted.run_id, 0).await;
                    }
                    Err(e) => {
                        let (code, message, run_id) = start_error(e);
                        self.send(ServerFrame::Error { code, message, run_id, client_message_id }).await;
                    }
                }
            }
            ClientFrame::StopAgent { run_id } => {
                if let Err(e) = self.app.runs.stop(&self.user, run_id).await {
                    let (code, message, _) = start_error(e);
                    self.error(code, message, Some(run_id)).await;
                }
            }
            ClientFrame::Resume { run_id, after_seq } => self.follow(run_id, after_seq).await,
        }
    }

    /// Starts delivering a run's events after `after_seq`. Following a run again replaces
    /// the previous follower, so each event reaches this connection once per request.
    async fn follow(&mut self, run_id: RunId, after_seq: u64) {
        match self.app.runs.follow(&self.user, run_id, after_seq).await {
            Ok(follow) => {
                self.following.retain(|_, task| !task.is_finished());
                if let Some(previous) = self.following.remove(&run_id) {
                    previous.abort();
                }
                let task = self.followers.spawn(forward(follow, self.out.clone()).in_current_span());
                self.following.insert(run_id, task);
            }
            Err(e) => {
                let (code, message, _) = start_error(e);
                self.error(code, message, Some(run_id)).await;
            }
        }
    }

    async fn send(&self, frame: ServerFrame) {
        if let ServerFrame::Error { code, .. } = &frame {
            metrics::counter!(m::WS_CLIENT_ERRORS, "code" => code.as_str()).increment(1);
        }
        metrics::counter!(m::WS_FRAMES_QUEUED).increment(1);
        let _ = self.out.send(Outbound::Text(Utf8Bytes::from(frame.to_json()))).await;
    }

    async fn error(&self, code: ErrorCode, message: impl Into<String>, run_id: Option<RunId>) {
        self.send(ServerFrame::Error { code, message: message.into(), run_id, client_message_id: None }).await;
    }

    async fn close(&self, code: u16, reason: &'static str) {
        let _ = self.out.send(Outbound::Close(code, reason)).await;
    }
}

fn start_error(e: StartError) -> (ErrorCode, String, Option<RunId>) {
    match e {
        StartError::ThreadBusy(run) => {
            (ErrorCode::ThreadBusy, "this thread has an active run; wait for it to finish or stop it".into(), run)
        }
        StartError::NotFound => (ErrorCode::NotFound, "no such thread or run".into(), None),
        StartError::Branch { not_found, message } => {
            (if not_found { ErrorCode::NotFound } else { ErrorCode::InvalidField }, message, None)
        }
        StartError::ShuttingDown => (ErrorCode::ShuttingDown, "the server is restarting; retry shortly".into(), None),
        StartError::StorageUnavailable => (
            ErrorCode::StorageUnavailable,
            "the message could not be saved because storage is failing; it was not accepted, retry later".into(),
            None,
        ),
        StartError::TooManyRuns(limit) => {
            (ErrorCode::TooManyRuns, format!("you already have {limit} runs in flight; wait for one to finish"), None)
        }
        StartError::Store(detail) => {
            tracing::error!(error = %detail, "storage failed while handling a frame");
            (ErrorCode::Internal, "the request could not be saved; retry".into(), None)
        }
    }
}

/// Copies a run's events into the connection's queue until the terminal event.
async fn forward(mut follow: Follow, out: mpsc::Sender<Outbound>) {
    while let Some(batch) = follow.next_batch().await {
        metrics::counter!(m::WS_FRAMES_QUEUED).increment(batch.len() as u64);
        for event in batch {
            if out.send(Outbound::Text(Utf8Bytes::from(&*event))).await.is_err() {
                return;
            }
        }
    }
}

/// How long a slow consumer's socket gets to take the close frame once it is shed.
const SHED_GRACE: Duration = Duration::from_secs(2);

/// The reason sent with 1013 to a slow consumer.
const SLOW_CONSUMER_REASON: &str = "too slow to keep up: reconnect and resume";

/// Why the writer stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriterEnd {
    /// The queue was closed or a close frame was sent: the session decided.
    Done,
    /// The socket took nothing for the write timeout: the client was shed with 1013.
    SlowConsumer,
    /// Writing failed (the socket is gone).
    Broken,
}

/// Owns the socket's write half. Queued frames are fed together and flushed once.
async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outbound>, timeout: Duration) -> WriterEnd {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take().or_else(|| rx.try_recv().ok()) {
            let message = match item {
                Outbound::Text(text) => Message::Text(text),
                Outbound::Ping => Message::Ping(Default::default()),
                Outbound::Close(code, reason) => {
                    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                    let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(frame)))).await;
                    let _ = tokio::time::timeout(timeout, sink.close()).await;
                    return WriterEnd::Done;
                }
            };
            match tokio::time::timeout(timeout, sink.feed(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return broken(&rx, 1),
                Err(_) => return shed(sink, &rx, 1).await,
            }
        }
        match tokio::time::timeout(timeout, sink.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return broken(&rx, 0),
            Err(_) => return shed(sink, &rx, 0).await,
        }
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
    WriterEnd::Done
}

/// A slow consumer: its socket took nothing for the write timeout. What is left in its
/// queue is dropped (`in_hand` frames were already taken from it; the client gets them
/// back with `resume`), and the close frame 1013 follows what the socket already holds,
/// for a client that reads again within [`SHED_GRACE`]; then the connection is dropped.
async fn shed(mut sink: SplitSink<WebSocket, Message>, rx: &mpsc::Receiver<Outbound>, in_hand: usize) -> WriterEnd {
    tracing::info!("shedding a slow consumer: its socket took nothing for the write timeout");
    metrics::counter!(m::WS_SLOW_CONSUMERS).increment(1);
    metrics::counter!(m::WS_FRAMES_DROPPED).increment((rx.len() + in_hand) as u64);
    let frame = CloseFrame { code: close::TRY_AGAIN_LATER, reason: Utf8Bytes::from_static(SLOW_CONSUMER_REASON) };
    let _ = tokio::time::timeout(SHED_GRACE, sink.send(Message::Close(Some(frame)))).await;
    WriterEnd::SlowConsumer
}

/// The socket is broken: what is left in the queue goes with it.
fn broken(rx: &mpsc::Receiver<Outbound>, in_hand: usize) -> WriterEnd {
    tracing::debug!("writing to the socket failed");
    metrics::counter!(m::WS_FRAMES_DROPPED).increment((rx.len() + in_hand) as u64);
    WriterEnd::Broken
}

/// Counts a client frame by type.
fn received(kind: &'static str) {
    metrics::counter!(m::WS_FRAMES_RECEIVED, "type" => kind).increment(1);
}

/// Keeps the open-connection count and gauge right however the session ends.
struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    fn open(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::WS_CONNECTIONS_OPENED).increment(1);
        metrics::gauge!(m::WS_CONNECTIONS_OPEN).increment(1.0);
        Self(counter.clone())
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::WS_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// No close frame: the socket dropped (RFC 6455's "abnormal closure").
const ABNORMAL: u16 = 1006;
/// The client's close frame carried no code.
const NO_STATUS: u16 = 1005;

fn closed(code: u16) {
    metrics::counter!(m::WS_CONNECTIONS_CLOSED, "code" => code.to_string()).increment(1);
}

//! Accepting connections. Every TCP connection holds a [`Slot`] from the moment it is
//! accepted until it closes — while it sends its request headers, while it idles between
//! requests, and for the whole life of a WebSocket it upgrades to — so the caps count
//! what really holds a descriptor. Beyond the total or the per-address cap a connection
//! is closed at once; an HTTP request whose headers do not arrive within the header
//! timeout (a half-sent request, or an idle keep-alive connection) is closed too.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apex_telemetry as m;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Open connections, in all and per remote address.
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, total: AtomicUsize::new(0), per_ip: Mutex::default() })
    }

    /// A slot for a connection from `ip`, or `None` (and why) when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut per_ip = self.per_ip.lock().expect("admission lock");
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err("total");
        }
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err("per_ip");
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(m::TCP_CONNECTIONS_OPEN).increment(1.0);
        Ok(Slot(Arc::new(SlotInner { admission: self.clone(), ip })))
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// One admitted connection; released when the last clone is dropped (the connection task
/// and, after an upgrade, the WebSocket session hold one each).
#[derive(Clone)]
pub struct Slot(#[allow(dead_code)] Arc<SlotInner>);

struct SlotInner {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock().expect("admission lock");
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::TCP_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting, lets
/// requests in progress finish (up to `drain`), and returns. Upgraded connections
/// (WebSockets) are not waited for here: their sessions are tracked by the server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    admission: Arc<Admission>,
    header_timeout: Duration,
    stop: CancellationToken,
    drain: Duration,
) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: wait instead of spinning; the
                    // connections that hold them will close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                metrics::counter!(m::TCP_CONNECTIONS_REFUSED, "cap" => cap).increment(1);
                tracing::debug!(%peer, cap, "connection cap reached; closing the connection");
                drop(tcp);
                continue;
            }
        };
        // Events are small frames that must leave at once: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(tcp, peer, slot, router.clone(), header_timeout, stop.clone()));
    }
    connections.close();
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!("some HTTP requests did not finish in time");
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let service = {
        let slot = slot.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(slot.clone());
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(Body::new))
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
    drop(slot);
}

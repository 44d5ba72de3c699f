//! The cluster bus over Redis: how the instances of one deployment follow, resume and stop
//! each other's runs.
//!
//! - Every committed event of a run is published on the channel `apex:run:<run id>` as
//!   `<seq> <wire json>`; an instance with a follower of that run subscribes to the
//!   channel. Publishing is pipelined by one task, so a burst of events costs one round
//!   trip.
//! - `stop_agent` for a run executing elsewhere is published on `apex:stop`; every
//!   instance listens and the one executing the run cancels it.
//! - Redis carries only the live tail. The store is the durable record: followers fill any
//!   gap from it (see `apex_engine::cluster`), so a Redis outage delays remote followers by
//!   at most the store poll interval and loses nothing.
//! - The shared cache (recommendations per user and dataset version) is plain keys with
//!   a time to live; an unreachable Redis is a miss.
//! - A user's runs in flight are counted across instances (`apex:in-flight:<user>`, a sorted
//!   set of run slots that expire after the longest a run can last), so
//!   `APEX_MAX_RUNS_PER_USER` holds for the deployment; an unreachable Redis leaves each
//!   instance's own count.
//! - The connection is RESP3 with automatic resubscription; a ping every second notices an
//!   outage (reported by `is_healthy`), reconnects with backoff and resubscribes.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apex_engine::cluster::{BusEvent, Cluster};
use apex_protocol::RunId;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{broadcast, mpsc};

const STOP_CHANNEL: &str = "apex:stop";
const RUN_CHANNEL_PREFIX: &str = "apex:run:";
/// Events waiting to be published; when Redis is slower than this, events are dropped
/// from the bus (remote followers read them from the store).
const PUBLISH_QUEUE: usize = 65_536;
const PUBLISH_BATCH: usize = 1_024;
/// Events buffered per local subscription before the subscriber falls back to the store.
const SUBSCRIBER_QUEUE: usize = 1_024;
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// A user's runs in flight in the deployment: a sorted set of run slots scored by the time
/// (Redis's clock, ms) each stops counting if nobody releases it.
const IN_FLIGHT_PREFIX: &str = "apex:in-flight:";
/// Drops the expired slots, then adds this one if the user is under the cap (1) or refuses
/// it (0). One script, so that two instances cannot both take the last place.
const ADMIT_RUN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

pub struct RedisCluster {
    conn: ConnectionManager,
    publish_tx: mpsc::Sender<(RunId, u64, Arc<str>)>,
    shared: Arc<Shared>,
}

/// A local follower's queue, with an id to remove it by.
type Subscriber = (u64, mpsc::Sender<BusEvent>);

struct Shared {
    /// Local subscribers per run channel.
    subscribers: Mutex<HashMap<RunId, Vec<Subscriber>>>,
    next_subscriber: AtomicU64,
    stops: broadcast::Sender<RunId>,
    healthy: AtomicBool,
    /// Events not published because the bus was down or slow.
    dropped: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid REDIS_URL: {0}")]
pub struct ConfigError(String);

impl RedisCluster {
    /// Starts without waiting for Redis: an instance whose Redis is down starts degraded
    /// and joins the bus when Redis comes back.
    pub fn start(url: &str) -> Result<Arc<Self>, ConfigError> {
        let url = with_resp3(url);
        let client = redis::Client::open(url.as_str()).map_err(|e| ConfigError(e.to_string()))?;
        let shared = Arc::new(Shared {
            subscribers: Mutex::default(),
            next_subscriber: AtomicU64::new(0),
            stops: broadcast::channel(1_024).0,
            healthy: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let dispatch = Arc::downgrade(&shared);
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| -> Result<(), std::convert::Infallible> {
                if let Some(shared) = dispatch.upgrade() {
                    shared.dispatch(push);
                }
                Ok(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| ConfigError(e.to_string()))?;
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_batches(conn.clone(), publish_rx, Arc::downgrade(&shared)));
        let cluster = Arc::new(Self { conn, publish_tx, shared });
        tokio::spawn(watch_health(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// Events that did not go out on the bus (Redis down or too slow).
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Ends one local subscription; the last one for a run leaves its channel.
fn remove_subscriber(shared: &Shared, conn: &ConnectionManager, run_id: RunId, id: u64) {
    let last = {
        let mut subs = shared.subscribers.lock().expect("subscribers lock");
        let Some(list) = subs.get_mut(&run_id) else { return };
        list.retain(|(i, _)| *i != id);
        let last = list.is_empty();
        if last {
            subs.remove(&run_id);
        }
        last
    };
    if last {
        let mut conn = conn.clone();
        tokio::spawn(async move {
            let _ = conn.unsubscribe(run_channel(run_id)).await;
        });
    }
}

impl Shared {
    /// Handles one push from Redis (called on the connection's task: never blocks).
    fn dispatch(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {}
            PushKind::Disconnection => {
                self.healthy.store(false, Ordering::Relaxed);
                return;
            }
            _ => return,
        }
        let [channel, payload] = push.data.as_slice() else { return };
        let (Some(channel), Some(payload)) = (text(channel), text(payload)) else { return };
        if channel == STOP_CHANNEL {
            if let Ok(run_id) = payload.parse() {
                let _ = self.stops.send(run_id);
            }
            return;
        }
        let Some(run_id) = channel.strip_prefix(RUN_CHANNEL_PREFIX).and_then(|id| id.parse::<RunId>().ok()) else {
            return;
        };
        let Some((seq, json)) = payload.split_once(' ') else { return };
        let Ok(seq) = seq.parse::<u64>() else { return };
        let json: Arc<str> = Arc::from(json);
        let subs = self.subscribers.lock().expect("subscribers lock");
        for (_, tx) in subs.get(&run_id).into_iter().flatten() {
            // A full queue means a slow follower: it reads the gap from the store.
            let _ = tx.try_send((seq, json.clone()));
        }
    }
}

#[async_trait]
impl Cluster for RedisCluster {
    fn publish(&self, run_id: RunId, seq: u64, json: Arc<str>) {
        if self.publish_tx.try_send((run_id, seq, json)).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn subscribe(&self, run_id: RunId) -> mpsc::Receiver<BusEvent> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let id = self.shared.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut subs = self.shared.subscribers.lock().expect("subscribers lock");
            let list = subs.entry(run_id).or_default();
            list.push((id, tx.clone()));
            list.len() == 1
        };
        if first {
            let mut conn = self.conn.clone();
            if let Err(e) = conn.subscribe(run_channel(run_id)).await {
                // Degraded: the follower reads the store until the bus is back.
                tracing::warn!(%run_id, error = %e, "subscribing to a run's events failed");
            }
        }
        // The subscription ends when the follower drops its receiver.
        let shared = Arc::downgrade(&self.shared);
        let conn = self.conn.clone();
        tokio::spawn(async move {
            tx.closed().await;
            if let Some(shared) = shared.upgrade() {
                remove_subscriber(&shared, &conn, run_id, id);
            }
        });
        rx
    }

    async fn request_stop(&self, run_id: RunId) {
        let mut conn = self.conn.clone();
        let sent: Result<i64, _> = redis::cmd("PUBLISH").arg(STOP_CHANNEL).arg(run_id.to_string()).query_async(&mut conn).await;
        if let Err(e) = sent {
            tracing::warn!(%run_id, error = %e, "a stop request could not be sent to the other instances");
        }
    }

    fn stop_requests(&self) -> broadcast::Receiver<RunId> {
        self.shared.stops.subscribe()
    }

    fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    async fn cache_get(&self, key: &str) -> Option<String> {
        if !self.is_healthy() {
            return None; // no waiting on a Redis that is down: compute instead
        }
        let mut conn = self.conn.clone();
        redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut conn).await.ok().flatten()
    }

    async fn cache_put(&self, key: &str, value: &str, ttl: Duration) {
        if !self.is_healthy() {
            return;
        }
        let mut conn = self.conn.clone();
        let stored: Result<(), _> =
            redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl.as_secs().max(1)).query_async(&mut conn).await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "storing in the shared cache failed");
        }
    }

    async fn admit_run(&self, user: &str, slot: &str, max: usize, ttl: Duration) -> Option<bool> {
        if !self.is_healthy() {
            return None; // no waiting on a Redis that is down: the local cap applies
        }
        let mut conn = self.conn.clone();
        let admitted = redis::cmd("EVAL")
            .arg(ADMIT_RUN)
            .arg(1)
            .arg(in_flight_key(user))
            .arg(max)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(slot)
            .query_async::<i64>(&mut conn)
            .await;
        match admitted {
            Ok(n) => Some(n == 1),
            Err(e) => {
                tracing::warn!(error = %e, "counting a run across instances failed; this instance's cap applies");
                None
            }
        }
    }

    async fn release_run(&self, user: &str, slot: &str) {
        let mut conn = self.conn.clone();
        let released: Result<i64, _> = redis::cmd("ZREM").arg(in_flight_key(user)).arg(slot).query_async(&mut conn).await;
        if let Err(e) = released {
            tracing::debug!(error = %e, "releasing a run's place across instances failed; it expires");
        }
    }
}

fn in_flight_key(user: &str) -> String {
    format!("{IN_FLIGHT_PREFIX}{user}")
}

/// Publishes queued events, as many as are waiting in one pipeline.
async fn publish_batches(mut conn: ConnectionManager, mut rx: mpsc::Receiver<(RunId, u64, Arc<str>)>, shared: Weak<Shared>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (run_id, seq, json) in &batch {
            pipe.cmd("PUBLISH").arg(run_channel(*run_id)).arg(format!("{seq} {json}")).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            if let Some(shared) = shared.upgrade() {
                shared.healthy.store(false, Ordering::Relaxed);
                shared.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, events = batch.len(), "publishing events failed; remote followers read the store");
        }
        batch.clear();
    }
}

/// Pings Redis every second: notices outages, and makes the connection manager reconnect
/// (and resubscribe) as soon as Redis is back.
async fn watch_health(cluster: Weak<RedisCluster>) {
    let mut subscribed_to_stops = false;
    loop {
        let Some(cluster) = cluster.upgrade() else { return };
        let mut conn = cluster.conn.clone();
        let ok = redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok();
        if ok && !subscribed_to_stops {
            subscribed_to_stops = conn.subscribe(STOP_CHANNEL).await.is_ok();
        }
        let was = cluster.shared.healthy.swap(ok && subscribed_to_stops, Ordering::Relaxed);
        match (was, ok) {
            (false, true) => tracing::info!("connected to Redis: this instance is on the cluster bus"),
            (true, false) => tracing::warn!("Redis is unreachable: serving this instance's runs alone, retrying"),
            _ => {}
        }
        drop(cluster);
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

fn run_channel(run_id: RunId) -> String {
    format!("{RUN_CHANNEL_PREFIX}{run_id}")
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// Push messages (pub/sub on a shared connection) need RESP3.
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}protocol=resp3")
}

//! The seam between the instances of one deployment. With it, a run executing on
//! instance A can be followed, resumed and stopped from a connection on instance B.
//!
//! The store stays the durable record: an event reaches the cluster only after it is
//! committed, so a follower elsewhere can always fill a gap (a message lost while the bus
//! was down, a slow subscriber) from the store, and the bus only makes delivery live.
//! `apex-cluster` implements this over Redis; without `REDIS_URL` there is no cluster and
//! a single instance works exactly as before.
use std::sync::Arc;
use std::time::Duration;

use apex_protocol::{RunEvent, RunId, UserId};
use apex_store::Store;
use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

/// One event of a run as it travels between instances: its seq and its wire JSON.
pub type BusEvent = (u64, Arc<str>);

#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Announces a committed event of a run this instance executes. Never blocks: when the
    /// bus is slow or down the event is dropped, and remote followers read the store.
    fn publish(&self, run_id: RunId, seq: u64, json: Arc<str>);

    /// Live events of a run, wherever it executes, from now on. Dropping the receiver
    /// ends the subscription.
    async fn subscribe(&self, run_id: RunId) -> mpsc::Receiver<BusEvent>;

    /// Asks whichever instance executes this run to stop it.
    async fn request_stop(&self, run_id: RunId);

    /// Stop requests for runs, from any instance (this one's own included).
    fn stop_requests(&self) -> broadcast::Receiver<RunId>;

    /// False while the bus is unreachable (reported as `degraded` by readiness).
    fn is_healthy(&self) -> bool;

    /// A value every instance can read (e.g. a user's recommendations for one version of
    /// their data), or `None` (absent, expired, or the cache unreachable).
    async fn cache_get(&self, key: &str) -> Option<String>;

    /// Stores a value for every instance, for `ttl`. Best effort: a failure only costs a
    /// recomputation elsewhere.
    async fn cache_put(&self, key: &str, value: &str, ttl: Duration);

    /// Counts a run of `user` among that user's runs in flight on every instance, under the
    /// name `slot` (unique per run): `Some(true)` when it is within `max`, and it then stays
    /// counted until [`Cluster::release_run`] or for `ttl` (an instance that dies cannot hold
    /// it forever); `Some(false)` when the user already has `max` runs in flight in the
    /// deployment; `None` when the bus cannot say (the instance's own cap still applies).
    async fn admit_run(&self, user: &str, slot: &str, max: usize, ttl: Duration) -> Option<bool>;

    /// Stops counting the run admitted as `slot`. Best effort: a failure leaves it counted
    /// until its `ttl`.
    async fn release_run(&self, user: &str, slot: &str);
}

/// How long a remote follower waits for the bus before it reads the store itself: the
/// bound on the delay a lost bus message can cause.
pub const STORE_POLL: Duration = Duration::from_millis(500);

/// Follows a run that executes on another instance: the stored events after `sent`, then
/// the bus, with every gap filled from the store, until the terminal event.
pub struct RemoteFollow {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) user_id: UserId,
    pub(crate) run_id: RunId,
    pub(crate) rx: mpsc::Receiver<BusEvent>,
    /// The highest seq delivered.
    pub(crate) sent: u64,
    pub(crate) done: bool,
    /// The store has been read once (right after subscribing).
    pub(crate) primed: bool,
}

impl RemoteFollow {
    pub async fn next_batch(&mut self) -> Option<Vec<Arc<str>>> {
        loop {
            if self.done {
                return None;
            }
            let batch = if !self.primed {
                self.primed = true;
                let stored = self.read_store().await;
                if self.sent > 0 {
                    metrics::counter!(apex_telemetry::EVENTS_REPLAYED).increment(stored.len() as u64);
                }
                stored
            } else {
                self.next_from_bus().await
            };
            if batch.is_empty() {
                continue;
            }
            self.sent += batch.len() as u64;
            self.done = batch.last().is_some_and(|e| is_terminal(e));
            return Some(batch);
        }
    }

    /// Events after `sent` from the bus when they arrive in order, else from the store.
    async fn next_from_bus(&mut self) -> Vec<Arc<str>> {
        loop {
            return match tokio::time::timeout(STORE_POLL, self.rx.recv()).await {
                Ok(Some((seq, json))) if seq == self.sent + 1 => {
                    let mut batch = vec![json];
                    // Whatever else already arrived, as long as it is contiguous.
                    while let Ok((seq, json)) = self.rx.try_recv() {
                        if seq == self.sent + batch.len() as u64 + 1 {
                            batch.push(json);
                        } else if seq > self.sent + batch.len() as u64 + 1 {
                            // A gap: the next read of the store covers it.
                            break;
                        }
                    }
                    batch
                }
                // Already delivered (it was in the store when we started).
                Ok(Some((seq, _))) if seq <= self.sent => continue,
                // A gap, a quiet bus, or a closed one: the store has every committed event.
                Ok(Some(_)) | Err(_) => self.read_store().await,
                Ok(None) => {
                    let batch = self.read_store().await;
                    if batch.is_empty() {
                        tokio::time::sleep(STORE_POLL).await;
                    }
                    batch
                }
            };
        }
    }

    async fn read_store(&mut self) -> Vec<Arc<str>> {
        match self.store.run_events(&self.user_id, self.run_id, self.sent).await {
            Ok(events) => events.into_iter().map(Arc::from).collect(),
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "reading a remote run's events failed; retrying");
                Vec::new()
            }
        }
    }
}

pub(crate) fn is_terminal(json: &str) -> bool {
    serde_json::from_str::<RunEvent>(json).is_ok_and(|e| e.kind.is_terminal())
}

//! The persistence writer: one task that turns the engine's writes into batched
//! transactions, and publishes each event to its run's log once the batch holding it is
//! committed.
//!
//! Runs hand events over and go on without waiting; delivery waits only for the group
//! commit that makes the event durable, so a client never sees an event that a crash
//! could take back. Batches grow with load, which keeps commits per event low.
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_store::{BeginOutcome, NewRun, Store, Write};
use apex_telemetry as m;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::log::RunLog;

/// Upper bound of writes applied in one transaction.
const MAX_BATCH: usize = 4096;
/// Queue length between runs and the writer; a full queue slows runs down instead of
/// growing memory without bound.
const QUEUE: usize = 16_384;
/// A failed batch is retried with doubling delays from this…
const RETRY_FIRST: Duration = Duration::from_millis(20);
/// …up to this…
const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);
/// …for this long in all: long enough for a database restart or failover, during which
/// runs and accepted messages wait (a delay for clients, never a loss).
const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// An event on its way to its run's followers.
pub struct Publish {
    pub log: Arc<RunLog>,
    pub seq: u64,
    pub json: Arc<str>,
    /// True for the event that ends the run.
    pub terminal: bool,
    /// For a run's first event: when the message that started the run was received.
    pub received: Option<Instant>,
}

struct Item {
    /// An accepted user message, answered once it is durable.
    begin: Option<(NewRun, oneshot::Sender<Option<BeginOutcome>>)>,
    /// Applied in the same transaction, never split across batches.
    writes: Vec<Write>,
    /// Published once `writes` are committed.
    publish: Option<Publish>,
    ack: Option<oneshot::Sender<bool>>,
    queued: Instant,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Item>,
}

impl WriterHandle {
    /// Queues a write without waiting for it to be durable.
    pub async fn send(&self, write: Write) {
        self.push(Item { begin: None, writes: vec![write], publish: None, ack: None, queued: Instant::now() }).await;
    }

    /// Queues writes and an event to publish once they are committed.
    pub async fn publish(&self, writes: Vec<Write>, publish: Publish) {
        self.push(Item { begin: None, writes, publish: Some(publish), ack: None, queued: Instant::now() }).await;
    }

    /// Like [`publish`](Self::publish), and waits until the event is committed and
    /// published. Returns false when the writes could not be persisted.
    pub async fn publish_acked(&self, writes: Vec<Write>, publish: Publish) -> bool {
        let (ack, done) = oneshot::channel();
        self.push(Item { begin: None, writes, publish: Some(publish), ack: Some(ack), queued: Instant::now() }).await;
        done.await.unwrap_or(false)
    }

    /// Persists an accepted user message with its run, together with whatever else is
    /// queued (group commit). `None` when it could not be persisted.
    pub async fn begin(&self, new: NewRun) -> Option<BeginOutcome> {
        let (tx, rx) = oneshot::channel();
        self.push(Item { begin: Some((new, tx)), writes: Vec::new(), publish: None, ack: None, queued: Instant::now() }).await;
        rx.await.ok().flatten()
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> bool {
        let (ack, done) = oneshot::channel();
        self.push(Item { begin: None, writes: Vec::new(), publish: None, ack: Some(ack), queued: Instant::now() }).await;
        done.await.unwrap_or(false)
    }

    async fn push(&self, item: Item) {
        if self.tx.send(item).await.is_err() {
            tracing::error!("persistence writer is gone; a write was dropped");
        }
    }

    /// Writes waiting in the queue.
    pub fn backlog(&self) -> usize {
        QUEUE - self.tx.capacity()
    }
}

/// Starts the writer. It stops once every handle is dropped and the queue is drained.
/// With a cluster, every committed event is also announced to the other instances.
pub fn spawn(store: Arc<dyn Store>, cluster: Option<Arc<dyn Cluster>>) -> (WriterHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (WriterHandle { tx }, tokio::spawn(run(store, cluster, rx)))
}

async fn run(store: Arc<dyn Store>, cluster: Option<Arc<dyn Cluster>>, mut rx: mpsc::Receiver<Item>) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut begins = Vec::new();
    let mut writes = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut answers = Vec::new();
        for item in &mut items {
            writes.append(&mut item.writes);
            if let Some((new, answer)) = item.begin.take() {
                begins.push(new);
                answers.push(answer);
            }
        }
        // Publish even when persisting failed for good: a run must never hang. The
        // failure is logged; liveness wins over durability here.
        let outcomes = if begins.is_empty() && writes.is_empty() {
            Some(Vec::new())
        } else {
            apply_with_retry(store.as_ref(), &begins, &writes).await
        };
        let ok = outcomes.is_some();
        if ok && !(begins.is_empty() && writes.is_empty()) {
            let events = writes.iter().filter(|w| matches!(w, Write::Event { .. })).count();
            metrics::counter!(m::EVENTS_PERSISTED).increment(events as u64);
            if let Some(oldest) = items.iter().map(|i| i.queued).min() {
                metrics::histogram!(m::PERSIST_LAG).record(oldest.elapsed().as_secs_f64());
            }
        }
        let mut outcomes = outcomes.map(Vec::into_iter);
        for answer in answers {
            let _ = answer.send(outcomes.as_mut().and_then(Iterator::next));
        }
        begins.clear();
        writes.clear();
        for item in items.drain(..) {
            if let Some(p) = item.publish {
                if let Some(cluster) = &cluster {
                    cluster.publish(p.log.run_id, p.seq, p.json.clone());
                }
                p.log.publish(p.seq, p.json, p.terminal);
                if let Some(received) = p.received {
                    metrics::histogram!(m::RUN_FIRST_EVENT).record(received.elapsed().as_secs_f64());
                }
            }
            if let Some(ack) = item.ack {
                let _ = ack.send(ok);
            }
        }
    }
}

async fn apply_with_retry(store: &dyn Store, begins: &[NewRun], writes: &[Write]) -> Option<Vec<BeginOutcome>> {
    let started = tokio::time::Instant::now();
    let mut delay = RETRY_FIRST;
    let mut attempt = 0u32;
    loop {
        match store.apply(begins, writes).await {
            Ok(outcomes) => {
                if attempt > 0 {
                    tracing::info!(attempt, "a batch was persisted after retries");
                }
                return Some(outcomes);
            }
            Err(e) if started.elapsed() + delay <= RETRY_BUDGET => {
                metrics::counter!(m::PERSIST_RETRIES).increment(1);
                tracing::warn!(attempt, error = %e, writes = writes.len() + begins.len(), "persisting a batch failed; retrying")
            }
            Err(e) => {
                metrics::counter!(m::PERSIST_FAILURES).increment(1);
                tracing::error!(error = %e, writes = writes.len() + begins.len(), "giving up on a batch after retries");
                return None;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX_DELAY);
        attempt += 1;
    }
}

//! The persistence writer: one task that turns the engine's writes into batched
//! transactions, and publishes each event to its run's log once the batch holding it is
//! committed.
//!
//! Runs hand events over and go on without waiting; delivery waits only for the group
//! commit that makes the event durable, so a client never sees an event that a crash
//! could take back. Batches grow with load, which keeps commits per event low.
//!
//! When a batch cannot be committed, nothing in it is acknowledged: an accepted message
//! is refused instead (`storage_unavailable`), an event is not delivered and its run ends
//! with `run_failed` at that event's seq, and the store's health says why until a batch
//! commits again. Errors of the connection (a restart, a failover) are retried for
//! [`RETRY_BUDGET`]; errors of the storage itself (a full disk) only for
//! [`FAILING_BUDGET`], and new messages are not kept waiting on them.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apex_protocol::{now_ms, EventKind, RunEvent};
use apex_store::retry::is_transient;
use apex_store::{BeginOutcome, NewRun, Store, StoreError, Write};
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
/// How long events wait for storage that failed for a reason of its own (full disk,
/// read-only file, corrupt page) before their runs end as failed.
const FAILING_BUDGET: Duration = Duration::from_secs(3);

/// The code of the `run_failed` a run ends with when its events cannot be persisted, and
/// of the error a message gets while storage fails.
pub const STORAGE_UNAVAILABLE: &str = "storage_unavailable";

/// Whether the last batch could be committed, shared with readiness checks.
#[derive(Default)]
pub struct StorageHealth {
    failing: AtomicBool,
    error: Mutex<Option<String>>,
}

impl StorageHealth {
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Why the last batch failed, while it is failing.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("health lock").clone()
    }

    /// The outcome of a write made to probe the storage (the lease heartbeat). A
    /// connection error says nothing about the storage itself.
    pub fn probed(&self, error: Option<&StoreError>) {
        match error {
            Some(e) if is_transient(e) => {}
            other => self.set(other),
        }
    }

    fn set(&self, error: Option<&StoreError>) {
        let failing = error.is_some();
        if !failing && !self.is_failing() {
            return;
        }
        if self.failing.swap(failing, Ordering::AcqRel) != failing {
            if failing {
                tracing::error!(error = %error.expect("failing"), "storage is failing: new messages are refused until a write succeeds");
            } else {
                tracing::info!("storage recovered: writes succeed again");
            }
            metrics::gauge!(m::STORAGE_FAILING).set(if failing { 1.0 } else { 0.0 });
        }
        *self.error.lock().expect("health lock") = error.map(|e| e.to_string());
    }
}

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
    health: Arc<StorageHealth>,
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

    pub fn health(&self) -> &Arc<StorageHealth> {
        &self.health
    }
}

/// Starts the writer. It stops once every handle is dropped and the queue is drained.
/// With a cluster, every committed event is also announced to the other instances.
pub fn spawn(store: Arc<dyn Store>, cluster: Option<Arc<dyn Cluster>>) -> (WriterHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let health = Arc::new(StorageHealth::default());
    metrics::gauge!(m::STORAGE_FAILING).set(0.0);
    (WriterHandle { tx, health: health.clone() }, tokio::spawn(run(store, cluster, health, rx)))
}

async fn run(store: Arc<dyn Store>, cluster: Option<Arc<dyn Cluster>>, health: Arc<StorageHealth>, mut rx: mpsc::Receiver<Item>) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut begins = Vec::new();
    let mut writes = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut answers = Vec::new();
        for item in &mut items {
            // Events of a run that already lost one are neither stored nor delivered, and
            // its terminal event takes the lost seq.
            if let Some(p) = &item.publish {
                if !p.terminal && p.log.lost_from().is_some() {
                    item.writes.clear();
                    item.publish = None;
                    continue;
                }
                if p.terminal && p.log.lost_from().is_some_and(|lost| lost < p.seq) {
                    relocate_terminal(item);
                }
            }
            writes.append(&mut item.writes);
            if let Some((new, answer)) = item.begin.take() {
                begins.push(new);
                answers.push(answer);
            }
        }
        let (outcomes, committed) = if begins.is_empty() && writes.is_empty() {
            (Some(Vec::new()), true)
        } else {
            apply_with_retry(store.as_ref(), &health, &mut begins, &mut answers, &writes).await
        };
        if committed && !(begins.is_empty() && writes.is_empty()) {
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
                if committed {
                    deliver(&cluster, p);
                } else if p.terminal {
                    // The run must end for its followers even so: with a failure that
                    // says what happened, at the first seq they have not seen.
                    let seq = p.log.lost_from().filter(|&lost| lost < p.seq).unwrap_or(p.seq);
                    let json = storage_failed_event(&p.log, seq);
                    deliver(&cluster, Publish { json, seq, ..p });
                } else {
                    p.log.mark_lost(p.seq);
                }
            }
            if let Some(ack) = item.ack {
                let _ = ack.send(committed);
            }
        }
    }
}

fn deliver(cluster: &Option<Arc<dyn Cluster>>, p: Publish) {
    if let Some(cluster) = cluster {
        cluster.publish(p.log.run_id, p.seq, p.json.clone());
    }
    p.log.publish(p.seq, p.json, p.terminal);
    if let Some(received) = p.received {
        metrics::histogram!(m::RUN_FIRST_EVENT).record(received.elapsed().as_secs_f64());
    }
}

const STORAGE_FAILED_MESSAGE: &str = "the answer could not be saved (storage is failing); ask again once it recovers";

/// The terminal event delivered in place of one that could not be persisted.
fn storage_failed_event(log: &RunLog, seq: u64) -> Arc<str> {
    let kind = EventKind::RunFailed { code: STORAGE_UNAVAILABLE.into(), message: STORAGE_FAILED_MESSAGE.into() };
    let event = RunEvent { kind, run_id: log.run_id, thread_id: log.thread_id, seq, ts: now_ms() };
    Arc::from(serde_json::to_string(&event).expect("run events always serialize"))
}

/// A run that lost an event ended before it noticed: its terminal event becomes a
/// `run_failed` at the lost seq, and the run is stored as failed, so that the store holds
/// exactly the events its followers saw.
fn relocate_terminal(item: &mut Item) {
    let Some(p) = &mut item.publish else { return };
    let Some(seq) = p.log.lost_from() else { return };
    let json = storage_failed_event(&p.log, seq);
    for write in &mut item.writes {
        match write {
            Write::Event { seq: s, kind, json: j, .. } => {
                *s = seq;
                *kind = "run_failed";
                *j = json.clone();
            }
            Write::Finish(finish) => {
                finish.status = apex_store::RunStatus::Failed;
                finish.error = Some((STORAGE_UNAVAILABLE.into(), STORAGE_FAILED_MESSAGE.into()));
            }
            _ => {}
        }
    }
    p.seq = seq;
    p.json = json;
}

/// Commits the batch, retrying as the error allows. Returns the begins' outcomes (`None`:
/// not accepted) and whether `writes` were committed. Once storage fails for a reason of
/// its own, the begins are answered at once (refused) and only the writes wait.
async fn apply_with_retry(
    store: &dyn Store,
    health: &StorageHealth,
    begins: &mut Vec<NewRun>,
    answers: &mut Vec<oneshot::Sender<Option<BeginOutcome>>>,
    writes: &[Write],
) -> (Option<Vec<BeginOutcome>>, bool) {
    let started = tokio::time::Instant::now();
    let mut delay = RETRY_FIRST;
    let mut attempt = 0u32;
    let mut budget = RETRY_BUDGET;
    loop {
        match store.apply(begins, writes).await {
            Ok(outcomes) => {
                if attempt > 0 {
                    tracing::info!(attempt, "a batch was persisted after retries");
                }
                health.set(None);
                return (Some(outcomes), true);
            }
            Err(e) => {
                if !is_transient(&e) {
                    budget = FAILING_BUDGET;
                    health.set(Some(&e));
                    for answer in answers.drain(..) {
                        let _ = answer.send(None);
                    }
                    begins.clear();
                }
                if started.elapsed() + delay > budget {
                    metrics::counter!(m::PERSIST_FAILURES).increment(1);
                    health.set(Some(&e));
                    tracing::error!(error = %e, writes = writes.len() + begins.len(), "giving up on a batch after retries");
                    return (None, false);
                }
                metrics::counter!(m::PERSIST_RETRIES).increment(1);
                tracing::warn!(attempt, error = %e, writes = writes.len() + begins.len(), "persisting a batch failed; retrying");
                if begins.is_empty() && writes.is_empty() {
                    return (None, false);
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX_DELAY);
        attempt += 1;
    }
}

//! The persistence writer: one task that turns the engine's writes into batched
//! transactions, off the event delivery path.
//!
//! Events are handed over and forgotten (the run never waits for the disk); a run's end
//! is handed over with an acknowledgement, so its terminal event is only published once
//! everything before it, and the answer, is durable.
use std::sync::Arc;
use std::time::Duration;

use apex_store::{Store, Write};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Upper bound of writes applied in one transaction.
const MAX_BATCH: usize = 2048;
/// Queue length between runs and the writer; a full queue slows runs down instead of
/// growing memory without bound.
const QUEUE: usize = 16_384;
const RETRY_DELAYS_MS: [u64; 4] = [20, 100, 500, 2000];

struct Item {
    write: Write,
    ack: Option<oneshot::Sender<bool>>,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Item>,
}

impl WriterHandle {
    /// Queues a write without waiting for it to be durable.
    pub async fn send(&self, write: Write) {
        if self.tx.send(Item { write, ack: None }).await.is_err() {
            tracing::error!("persistence writer is gone; a write was dropped");
        }
    }

    /// Queues writes and waits until they (and everything queued before) are committed.
    /// Returns false when they could not be persisted.
    pub async fn commit(&self, writes: Vec<Write>) -> bool {
        let (ack, done) = oneshot::channel();
        let last = writes.len().saturating_sub(1);
        let mut ack = Some(ack);
        for (i, write) in writes.into_iter().enumerate() {
            let item = Item { write, ack: if i == last { ack.take() } else { None } };
            if self.tx.send(item).await.is_err() {
                return false;
            }
        }
        done.await.unwrap_or(false)
    }

    /// Writes waiting in the queue.
    pub fn backlog(&self) -> usize {
        QUEUE - self.tx.capacity()
    }
}

/// Starts the writer. It stops once every handle is dropped and the queue is drained.
pub fn spawn(store: Arc<dyn Store>) -> (WriterHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (WriterHandle { tx }, tokio::spawn(run(store, rx)))
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Item>) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut writes = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut acks = Vec::new();
        for item in items.drain(..) {
            writes.push(item.write);
            acks.extend(item.ack);
        }
        let ok = apply_with_retry(store.as_ref(), &writes).await;
        writes.clear();
        for ack in acks {
            let _ = ack.send(ok);
        }
    }
}

async fn apply_with_retry(store: &dyn Store, writes: &[Write]) -> bool {
    for (attempt, delay) in std::iter::once(0).chain(RETRY_DELAYS_MS).enumerate() {
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match store.apply(writes).await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(attempt, error = %e, writes = writes.len(), "persisting a batch failed"),
        }
    }
    tracing::error!(writes = writes.len(), "giving up on a batch after retries");
    false
}

//! The per-run event log: the ordered history of a live run and its fan-out.
//!
//! Events enter the log only once they are durable (the persistence writer publishes them
//! after each commit), so whatever a client has seen survives a crash, and the seq of
//! the `run_interrupted` written at recovery is always past anything a client saw.
//!
//! The history itself is the buffer: followers keep the next `seq` they need and read from
//! it whenever the watch channel says something was appended. A slow follower therefore
//! never loses events and never slows the run; the history is released when the run
//! ends and its linger period is over (the store has everything by then).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use apex_protocol::{RunId, ThreadId, UserId};
use tokio::sync::watch;

pub struct RunLog {
    pub run_id: RunId,
    pub thread_id: ThreadId,
    pub user_id: UserId,
    /// Wire JSON of each event; index `i` holds `seq = i + 1`.
    events: RwLock<Vec<Arc<str>>>,
    published: watch::Sender<u64>,
    /// The seq of the terminal event once published, 0 before.
    terminal_seq: AtomicU64,
    /// The first seq that could not be persisted, 0 while none: from it on nothing is
    /// published but the terminal event, which takes that seq (no gap, nothing a client
    /// saw is missing from the store).
    lost_from: AtomicU64,
    /// Cancelled when an event of this run could not be persisted: the run ends.
    lost: tokio_util::sync::CancellationToken,
}

impl RunLog {
    pub fn new(run_id: RunId, thread_id: ThreadId, user_id: UserId) -> Self {
        Self {
            run_id,
            thread_id,
            user_id,
            events: RwLock::new(Vec::with_capacity(64)),
            published: watch::channel(0).0,
            terminal_seq: AtomicU64::new(0),
            lost_from: AtomicU64::new(0),
            lost: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Notes that the event `seq` could not be persisted (the first such seq is kept) and
    /// tells the run to end.
    pub fn mark_lost(&self, seq: u64) {
        let _ = self.lost_from.compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire);
        self.lost.cancel();
    }

    /// The first seq that could not be persisted, if any.
    pub fn lost_from(&self) -> Option<u64> {
        Some(self.lost_from.load(Ordering::Acquire)).filter(|&s| s != 0)
    }

    /// Resolves once an event of this run could not be persisted.
    pub async fn storage_lost(&self) {
        self.lost.cancelled().await
    }

    /// Publishes the next event to every follower. Events arrive in seq order (one
    /// writer, FIFO); `seq` is checked against the history length.
    pub fn publish(&self, seq: u64, json: Arc<str>, terminal: bool) {
        {
            let mut events = self.events.write().expect("event log lock");
            debug_assert_eq!(seq, events.len() as u64 + 1, "events are published in seq order");
            events.push(json);
            if terminal {
                self.terminal_seq.store(seq, Ordering::Release);
            }
        }
        self.published.send_replace(seq);
    }

    pub fn is_finished(&self) -> bool {
        self.terminal_seq.load(Ordering::Acquire) != 0
    }

    /// How many events with `seq > after_seq` are published.
    pub fn published_after(&self, after_seq: u64) -> usize {
        (self.events.read().expect("event log lock").len() as u64).saturating_sub(after_seq) as usize
    }

    /// Events with `seq > after_seq`, in order.
    pub fn events_after(&self, after_seq: u64) -> Vec<Arc<str>> {
        let events = self.events.read().expect("event log lock");
        let from = (after_seq as usize).min(events.len());
        events[from..].to_vec()
    }

    /// A follower that yields the events after `after_seq`, then live ones until the
    /// terminal event.
    pub fn follow(self: &Arc<Self>, after_seq: u64) -> Follow {
        Follow::Live { rx: self.published.subscribe(), log: self.clone(), sent: after_seq }
    }
}

/// A stream of event batches for one follower of one run.
pub enum Follow {
    Live {
        log: Arc<RunLog>,
        rx: watch::Receiver<u64>,
        sent: u64,
    },
    /// A run that is no longer in memory: its stored events, delivered once.
    Stored(Option<Vec<Arc<str>>>),
    /// A run executing on another instance of the cluster.
    Remote(Box<crate::cluster::RemoteFollow>),
}

impl Follow {
    /// The next batch of events, or `None` once the terminal event has been yielded.
    pub async fn next_batch(&mut self) -> Option<Vec<Arc<str>>> {
        match self {
            Follow::Stored(events) => events.take().filter(|e| !e.is_empty()),
            Follow::Remote(remote) => remote.next_batch().await,
            Follow::Live { log, rx, sent } => loop {
                let terminal = log.terminal_seq.load(Ordering::Acquire);
                if terminal != 0 && *sent >= terminal {
                    return None;
                }
                let batch = log.events_after(*sent);
                if !batch.is_empty() {
                    *sent += batch.len() as u64;
                    return Some(batch);
                }
                // The log owns the sender, and we hold the log: this only wakes on append.
                if rx.changed().await.is_err() {
                    return None;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_see_history_then_live_events_without_gaps() {
        let log = Arc::new(RunLog::new(RunId::new(), ThreadId::new(), "u".into()));
        log.publish(1, Arc::from("e1"), false);
        log.publish(2, Arc::from("e2"), false);
        let mut late = log.follow(1);
        let mut from_start = log.follow(0);
        assert_eq!(late.next_batch().await.unwrap(), vec![Arc::from("e2")]);
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for s in 3..=102 {
                    log.publish(s, Arc::from(format!("e{s}")), s == 102);
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut seen = Vec::new();
        while let Some(batch) = from_start.next_batch().await {
            seen.extend(batch);
        }
        writer.await.unwrap();
        let expected: Vec<Arc<str>> = (1..=102).map(|s| Arc::from(format!("e{s}"))).collect();
        assert_eq!(seen, expected);
        assert!(log.is_finished());
    }
}

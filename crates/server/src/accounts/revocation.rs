//! Ending the sockets of a session that ended: signed out, revoked, its refresh token
//! replayed, or its account disabled or given a new password — here, on another instance or
//! by `apex users`. Each WebSocket of a signed-in session holds a [`Watch`]; this instance's
//! own revocations end them at once, and a watcher reads the sessions revoked anywhere from
//! the store every [`POLL`] (only while such sockets are open) and ends those too. The
//! sockets close with 4001 (`close::SESSION_ENDED`).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apex_protocol::now_ms;
use apex_store::Store;
use tokio_util::sync::CancellationToken;

/// How often the store is asked for revoked sessions.
pub const POLL: Duration = Duration::from_secs(1);
/// How far back each poll looks: revocations stamped by another process's clock (another
/// instance, `apex users`) are seen even when it runs a few seconds behind.
const LOOK_BACK: Duration = Duration::from_secs(15);

#[derive(Default)]
pub struct Revocations {
    sockets: Mutex<HashMap<String, Vec<(u64, CancellationToken)>>>,
    next: AtomicU64,
}

/// A socket of a session; cancelled when the session ends. Dropping it stops the watch.
pub struct Watch {
    pub ended: CancellationToken,
    registry: Arc<Revocations>,
    session_id: String,
    id: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut sockets = self.registry.sockets.lock().expect("revocations lock");
        if let Some(list) = sockets.get_mut(&self.session_id) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                sockets.remove(&self.session_id);
            }
        }
    }
}

impl Revocations {
    pub fn watch(self: &Arc<Self>, session_id: &str) -> Watch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let ended = CancellationToken::new();
        self.sockets.lock().expect("revocations lock").entry(session_id.to_owned()).or_default().push((id, ended.clone()));
        Watch { ended, registry: self.clone(), session_id: session_id.to_owned(), id }
    }

    /// Ends the sockets of these sessions; returns how many.
    pub fn end(&self, session_ids: &[String]) -> usize {
        let sockets = self.sockets.lock().expect("revocations lock");
        let mut ended = 0;
        for id in session_ids {
            for (_, token) in sockets.get(id).into_iter().flatten() {
                if !token.is_cancelled() {
                    token.cancel();
                    ended += 1;
                }
            }
        }
        ended
    }

    fn watching(&self) -> bool {
        !self.sockets.lock().expect("revocations lock").is_empty()
    }

    /// Polls the store until `stop`; a failed poll is retried at the next.
    pub async fn watch_store(self: Arc<Self>, store: Arc<dyn Store>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if !self.watching() {
                continue;
            }
            let since = now_ms().saturating_sub(LOOK_BACK.as_millis() as u64);
            match store.revoked_since(since).await {
                Ok(ids) => {
                    let ended = self.end(&ids);
                    if ended > 0 {
                        tracing::info!(sockets = ended, "closed the sockets of sessions revoked elsewhere");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read revoked sessions; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_session_cancels_its_sockets_only_and_a_dropped_watch_is_forgotten() {
        let registry = Arc::new(Revocations::default());
        let (a1, a2, b) = (registry.watch("a"), registry.watch("a"), registry.watch("b"));
        assert_eq!(registry.end(&["a".into()]), 2);
        assert!(a1.ended.is_cancelled() && a2.ended.is_cancelled() && !b.ended.is_cancelled());
        assert_eq!(registry.end(&["a".into()]), 0, "ended once");
        drop((a1, a2));
        drop(b);
        assert!(!registry.watching());
    }
}

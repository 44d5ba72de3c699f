//! Transient database errors (a restart, a failover, a dropped connection) are retried
//! with backoff instead of failing the request or the run that needed the data. Writes of
//! running runs are retried by the engine's writer; this covers everything else.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apex_costs::import::ImportRow;
use apex_costs::UsageRecord;
use apex_protocol::{RunId, ThreadId};
use async_trait::async_trait;

use crate::model::*;
use crate::{Store, StoreError, StoreResult};

const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// How long a read may wait for the database to come back before it fails.
const BUDGET: Duration = Duration::from_secs(15);

/// A store whose reads (and idempotent writes: usage imports are keyed, heartbeats and
/// deletes repeatable) survive transient errors of the one it wraps.
pub struct Retrying(pub Arc<dyn Store>);

/// True for errors that a later attempt can succeed after: the connection, not the query.
pub fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(e) if is_transient_sqlx(e))
}

pub fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // Connection exceptions (08…), the server shutting down or starting (57P01-03),
        // serialization failures and deadlocks (40001, 40P01).
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01")
        }
        _ => false,
    }
}

async fn retry<T, F, Fut>(what: &'static str, mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        match op().await {
            Err(e) if is_transient(&e) && started.elapsed() + delay <= BUDGET => {
                tracing::warn!(operation = what, error = %e, "the database is unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            result => return result,
        }
    }
}

#[async_trait]
impl Store for Retrying {
    async fn ping(&self) -> StoreResult<()> {
        // Readiness must see the outage as it is.
        self.0.ping().await
    }

    async fn apply(&self, begins: &[NewRun], writes: &[Write]) -> StoreResult<Vec<BeginOutcome>> {
        // The writer retries whole batches itself, within its own budget.
        self.0.apply(begins, writes).await
    }

    async fn heartbeat(&self, instance: &str, at_ms: u64) -> StoreResult<()> {
        self.0.heartbeat(instance, at_ms).await
    }

    async fn interrupt_orphaned(&self, instance: &str, lease: Duration) -> StoreResult<Vec<RunId>> {
        self.0.interrupt_orphaned(instance, lease).await
    }

    async fn find_client_message(&self, user_id: &str, client_message_id: &str) -> StoreResult<Option<BegunRun>> {
        retry("find_client_message", || self.0.find_client_message(user_id, client_message_id)).await
    }

    async fn list_threads(&self, user_id: &str) -> StoreResult<Vec<ThreadRow>> {
        retry("list_threads", || self.0.list_threads(user_id)).await
    }

    async fn thread_messages(&self, user_id: &str, thread_id: ThreadId) -> StoreResult<Vec<MessageRow>> {
        retry("thread_messages", || self.0.thread_messages(user_id, thread_id)).await
    }

    async fn get_run(&self, user_id: &str, run_id: RunId) -> StoreResult<RunRow> {
        retry("get_run", || self.0.get_run(user_id, run_id)).await
    }

    async fn run_events(&self, user_id: &str, run_id: RunId, after_seq: u64) -> StoreResult<Vec<String>> {
        retry("run_events", || self.0.run_events(user_id, run_id, after_seq)).await
    }

    async fn agent_results(&self, user_id: &str, run_id: RunId) -> StoreResult<Vec<AgentResultRow>> {
        retry("agent_results", || self.0.agent_results(user_id, run_id)).await
    }

    async fn import_usage(&self, user_id: &str, rows: &[ImportRow], at_ms: u64) -> StoreResult<u64> {
        retry("import_usage", || self.0.import_usage(user_id, rows, at_ms)).await
    }

    async fn usage(&self, user_id: &str, from: Option<&str>, to: Option<&str>) -> StoreResult<Vec<UsageRecord>> {
        retry("usage", || self.0.usage(user_id, from, to)).await
    }

    async fn delete_usage(&self, user_id: &str) -> StoreResult<u64> {
        retry("delete_usage", || self.0.delete_usage(user_id)).await
    }

    async fn usage_version(&self, user_id: &str) -> StoreResult<u64> {
        retry("usage_version", || self.0.usage_version(user_id)).await
    }
}

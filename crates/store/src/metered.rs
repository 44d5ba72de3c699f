//! Every store operation timed and its failures counted (`apex_db_query_seconds`,
//! `apex_db_errors_total`, by operation). It wraps the backend directly, under the retry
//! layer, so each attempt of a retried read is seen as it happened.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_costs::import::ImportRow;
use apex_costs::UsageRecord;
use apex_protocol::{RunId, ThreadId};
use apex_telemetry::{DB_ERRORS, DB_QUERY};
use async_trait::async_trait;

use crate::model::*;
use crate::{Store, StoreError, StoreResult};

pub struct Metered(pub Arc<dyn Store>);

async fn measure<T>(op: &'static str, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let started = Instant::now();
    let result = work.await;
    metrics::histogram!(DB_QUERY, "op" => op).record(started.elapsed().as_secs_f64());
    // "Not found" is an answer, not a failure of the database.
    if matches!(&result, Err(e) if !matches!(e, StoreError::NotFound)) {
        metrics::counter!(DB_ERRORS, "op" => op).increment(1);
    }
    result
}

#[async_trait]
impl Store for Metered {
    async fn ping(&self) -> StoreResult<()> {
        measure("ping", self.0.ping()).await
    }

    async fn apply(&self, begins: &[NewRun], writes: &[Write]) -> StoreResult<Vec<BeginOutcome>> {
        measure("apply", self.0.apply(begins, writes)).await
    }

    async fn heartbeat(&self, instance: &str, at_ms: u64) -> StoreResult<()> {
        measure("heartbeat", self.0.heartbeat(instance, at_ms)).await
    }

    async fn interrupt_orphaned(&self, instance: &str, lease: Duration) -> StoreResult<Vec<RunId>> {
        measure("interrupt_orphaned", self.0.interrupt_orphaned(instance, lease)).await
    }

    async fn find_client_message(&self, user_id: &str, client_message_id: &str) -> StoreResult<Option<BegunRun>> {
        measure("find_client_message", self.0.find_client_message(user_id, client_message_id)).await
    }

    async fn list_threads(&self, user_id: &str) -> StoreResult<Vec<ThreadRow>> {
        measure("list_threads", self.0.list_threads(user_id)).await
    }

    async fn thread_messages(&self, user_id: &str, thread_id: ThreadId) -> StoreResult<Vec<MessageRow>> {
        measure("thread_messages", self.0.thread_messages(user_id, thread_id)).await
    }

    async fn get_run(&self, user_id: &str, run_id: RunId) -> StoreResult<RunRow> {
        measure("get_run", self.0.get_run(user_id, run_id)).await
    }

    async fn run_events(&self, user_id: &str, run_id: RunId, after_seq: u64) -> StoreResult<Vec<String>> {
        measure("run_events", self.0.run_events(user_id, run_id, after_seq)).await
    }

    async fn agent_results(&self, user_id: &str, run_id: RunId) -> StoreResult<Vec<AgentResultRow>> {
        measure("agent_results", self.0.agent_results(user_id, run_id)).await
    }

    async fn import_usage(&self, user_id: &str, rows: &[ImportRow], at_ms: u64) -> StoreResult<u64> {
        measure("import_usage", self.0.import_usage(user_id, rows, at_ms)).await
    }

    async fn usage(&self, user_id: &str, from: Option<&str>, to: Option<&str>) -> StoreResult<Vec<UsageRecord>> {
        measure("usage", self.0.usage(user_id, from, to)).await
    }

    async fn delete_usage(&self, user_id: &str) -> StoreResult<u64> {
        measure("delete_usage", self.0.delete_usage(user_id)).await
    }

    async fn usage_version(&self, user_id: &str) -> StoreResult<u64> {
        measure("usage_version", self.0.usage_version(user_id)).await
    }
}

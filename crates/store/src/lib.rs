//! Persistence for Apex: the [`Store`] trait and its backends.
//!
//! Every read takes the user id and filters by it: isolation is enforced where data is
//! loaded, so a query for another user's thread or run simply finds nothing. Writes of a
//! running run arrive in batches ([`Write`]) from the engine's writer task, so that the
//! database never sits on the event delivery path.
#![forbid(unsafe_code)]

pub mod import;
mod model;
pub mod sqlite;

pub use model::*;

use apex_costs::import::ImportRow;
use apex_costs::UsageRecord;
use apex_protocol::{RunId, ThreadId};
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Applies a batch in one transaction: first the accepted user messages (`begins`: the
    /// user and thread, created on first use and titled from the text, the message, and its
    /// run in state `queued`), then `writes`. Returns one outcome per begin, in order. A
    /// `client_message_id` seen before for this user gives the original run; a `thread_id`
    /// that is not this user's gives `ThreadNotFound`. Either way the rest of the batch is
    /// written.
    async fn apply(&self, begins: &[NewRun], writes: &[Write]) -> StoreResult<Vec<BeginOutcome>>;

    /// One accepted message, in a transaction of its own.
    async fn begin_run(&self, new: NewRun) -> StoreResult<BeginOutcome> {
        let mut outcomes = self.apply(std::slice::from_ref(&new), &[]).await?;
        Ok(outcomes.pop().expect("one outcome per begin"))
    }

    /// Marks every run left `queued` or `running` (by a crash) as `interrupted`, appends its
    /// terminal `run_interrupted` event and keeps its partial answer. Returns those runs.
    async fn interrupt_unfinished(&self) -> StoreResult<Vec<RunId>>;

    /// The message (and run) this user sent earlier with this `client_message_id`.
    async fn find_client_message(&self, user_id: &str, client_message_id: &str) -> StoreResult<Option<BegunRun>>;

    async fn list_threads(&self, user_id: &str) -> StoreResult<Vec<ThreadRow>>;
    async fn thread_messages(&self, user_id: &str, thread_id: ThreadId) -> StoreResult<Vec<MessageRow>>;
    async fn get_run(&self, user_id: &str, run_id: RunId) -> StoreResult<RunRow>;
    /// Events of a run with `seq > after_seq`, in order, as their wire JSON.
    async fn run_events(&self, user_id: &str, run_id: RunId, after_seq: u64) -> StoreResult<Vec<String>>;
    async fn agent_results(&self, user_id: &str, run_id: RunId) -> StoreResult<Vec<AgentResultRow>>;

    /// Adds imported usage rows for this user; rows whose key is already stored are
    /// skipped. Returns how many were new. A new row whose `request_hash` (when not empty)
    /// this user already has, stored or earlier in `rows`, counts its requests as
    /// `repeat_requests` (migration 0005).
    async fn import_usage(&self, user_id: &str, rows: &[ImportRow], at_ms: u64) -> StoreResult<u64>;
    /// This user's usage, optionally limited to days `from..=to` (`YYYY-MM-DD`), summed
    /// per day, provider, model, feature, project, end user, API key and environment (rows
    /// with a billed cost apart from rows without). Every field of `UsageRecord` round-trips
    /// (migration 0005 added the tags and the cache-write and reasoning tokens; the
    /// signature is unchanged).
    async fn usage(&self, user_id: &str, from: Option<&str>, to: Option<&str>) -> StoreResult<Vec<UsageRecord>>;
    /// Removes all of this user's usage rows; returns how many.
    async fn delete_usage(&self, user_id: &str) -> StoreResult<u64>;
    /// The version of this user's usage data: it changes whenever an import adds rows or
    /// the data is deleted (0 before any import).
    async fn usage_version(&self, user_id: &str) -> StoreResult<u64>;
}

/// Opens the backend named by the URL scheme (`sqlite://…`).
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported DATABASE_URL scheme in `{}`: this build supports sqlite://",
            url.split(':').next().unwrap_or("")
        )))
    }
}

//! Transient database errors (a restart, a failover, a dropped connection) are retried
//! with backoff instead of failing the request or the run that needed the data. Writes of
//! running runs are retried by the engine's writer; this covers everything else.
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::decorate::{Around, Decorated, Op};
use crate::{StoreError, StoreResult};

const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// How long a read may wait for the database to come back before it fails.
const BUDGET: Duration = Duration::from_secs(15);

/// A store whose reads (and idempotent writes: usage imports are keyed, deletes
/// repeatable) survive transient errors of the one it wraps.
pub type Retrying = Decorated<Retry>;

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

/// Retries the repeatable operations of the store it decorates.
pub struct Retry;

#[async_trait]
impl Around for Retry {
    async fn around<T, F, Fut>(&self, op: Op, mut call: F) -> StoreResult<T>
    where
        T: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = StoreResult<T>> + Send,
    {
        if !op.repeatable {
            // Readiness must see an outage as it is; the writer retries its batches itself.
            return call().await;
        }
        let started = tokio::time::Instant::now();
        let mut delay = FIRST_DELAY;
        loop {
            match call().await {
                Err(e) if is_transient(&e) && started.elapsed() + delay <= BUDGET => {
                    tracing::warn!(operation = op.name, error = %e, "the database is unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_DELAY);
                }
                result => return result,
            }
        }
    }
}

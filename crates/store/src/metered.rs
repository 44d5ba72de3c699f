//! Every store operation timed and its failures counted (`apex_db_query_seconds`,
//! `apex_db_errors_total`, by operation). It wraps the backend directly, under the retry
//! layer, so each attempt of a retried read is seen as it happened.
use std::future::Future;
use std::time::Instant;

use apex_telemetry::{DB_ERRORS, DB_QUERY};
use async_trait::async_trait;

use crate::decorate::{Around, Decorated, Op};
use crate::{StoreError, StoreResult};

/// Times every operation of the store it decorates.
pub struct Meter;

/// A store with every operation timed.
pub type Metered = Decorated<Meter>;

#[async_trait]
impl Around for Meter {
    async fn around<T, F, Fut>(&self, op: Op, mut call: F) -> StoreResult<T>
    where
        T: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = StoreResult<T>> + Send,
    {
        let started = Instant::now();
        let result = call().await;
        metrics::histogram!(DB_QUERY, "op" => op.name).record(started.elapsed().as_secs_f64());
        // "Not found" is an answer, not a failure of the database.
        if matches!(&result, Err(e) if !matches!(e, StoreError::NotFound)) {
            metrics::counter!(DB_ERRORS, "op" => op.name).increment(1);
        }
        result
    }
}

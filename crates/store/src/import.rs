//! Importing usage into the store: the parsing runs on a blocking thread and hands rows
//! over in chunks, each stored in one transaction, so memory stays bounded by the chunk
//! size whatever the size of the file. Used by `POST /api/usage/import` and `apex ingest`.
use std::cell::{Cell, RefCell};
use std::io::Read;

use apex_costs::import::{import, Format, ImportRow, Rejected};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{Store, StoreError};

/// Rows stored per transaction: large enough that the daily sums a chunk adds to are
/// written once for many rows, small enough that the store's single writer is held for
/// tens of milliseconds at a time and memory stays low.
const CHUNK: usize = 10_000;
/// Rejected lines listed in the report (all are counted).
const MAX_LISTED: usize = 1_000;

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct ImportReport {
    pub format: Option<Format>,
    pub rows_read: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub rejected_count: u64,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportFailed {
    /// The file as a whole is not in this format.
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports `input` (already decompressed) for `user_id`. `progress` is called after each
/// stored chunk with the rows read so far.
pub async fn import_into(
    store: &dyn Store,
    user_id: &str,
    format: Format,
    input: impl Read + Send + 'static,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportFailed> {
    // One batch waiting while one is stored: the parser is faster than the store, so a
    // longer queue would only hold more rows in memory.
    let (tx, mut rx) = mpsc::channel::<Batch>(1);
    let parser = tokio::task::spawn_blocking(move || {
        let batch = RefCell::new(Batch::new());
        let listed = Cell::new(0);
        let result = import(
            format,
            input,
            |row| {
                let mut b = batch.borrow_mut();
                b.rows.push(row);
                if b.rows.len() == CHUNK {
                    let full = std::mem::replace(&mut *b, Batch::new());
                    drop(b);
                    let _ = tx.blocking_send(full);
                }
            },
            |bad| {
                let mut b = batch.borrow_mut();
                b.rejected_count += 1;
                if listed.get() < MAX_LISTED {
                    listed.set(listed.get() + 1);
                    b.rejected.push(bad);
                }
            },
        );
        let last = batch.into_inner();
        if !last.rows.is_empty() || last.rejected_count > 0 {
            let _ = tx.blocking_send(last);
        }
        result
    });
    let mut report = ImportReport { format: Some(format), ..ImportReport::default() };
    let now = apex_protocol::now_ms();
    while let Some(batch) = rx.recv().await {
        report.rejected_count += batch.rejected_count;
        report.rejected.extend(batch.rejected);
        if !batch.rows.is_empty() {
            let rows = batch.rows;
            let new = store.import_usage(user_id, &rows, now).await?;
            report.rows_read += rows.len() as u64;
            report.imported += new;
            report.duplicates += rows.len() as u64 - new;
            progress(report.rows_read);
        }
    }
    parser
        .await
        .map_err(|e| ImportFailed::Unreadable(format!("the import parser stopped: {e}")))?
        .map_err(|e| ImportFailed::Unreadable(e.to_string()))?;
    Ok(report)
}

/// What the parser hands over: up to `CHUNK` rows, and the lines rejected since the last
/// batch (all counted; listed up to `MAX_LISTED` over the whole file).
struct Batch {
    rows: Vec<ImportRow>,
    rejected: Vec<Rejected>,
    rejected_count: u64,
}

impl Batch {
    fn new() -> Self {
        Self { rows: Vec::with_capacity(CHUNK), rejected: Vec::new(), rejected_count: 0 }
    }
}

//! Importing usage into the store: the parsing (`apex_costs::import`: detection,
//! decompression and the format's reader) runs on a blocking thread and hands rows over in
//! chunks, each stored in one transaction (`Store::import_usage`, which deduplicates), so
//! memory stays bounded by the chunk size whatever the size of the file. The one pipeline
//! behind `POST /api/usage/import` and `apex ingest`; the store only receives rows.
use std::cell::{Cell, RefCell};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use apex_costs::import::{import, Format, ImportError, ImportRow, Limit, Rejected};
use apex_costs::limits::{MAX_ACCOUNT_COST, MAX_ACCOUNT_COUNT};
use apex_costs::UsageRecord;
use apex_protocol::OrgId;
use serde::Serialize;
use tokio::sync::mpsc;

use apex_store::{Store, StoreError};

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
    /// The upload went past a byte limit; the whole chunks stored before it stay, and
    /// `report` says what they were.
    #[error("{limit}")]
    Limit { limit: Limit, report: ImportReport },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports `input` (already decompressed) into `org` (a shared organization or a personal space). `progress` is called after each
/// stored chunk with the rows read so far.
pub async fn import_into(
    store: &dyn Store,
    org: &OrgId,
    format: Format,
    input: impl Read + Send + 'static,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportFailed> {
    // One batch waiting while one is stored: the parser is faster than the store, so a
    // longer queue would only hold more rows in memory.
    let (tx, mut rx) = mpsc::channel::<Batch>(1);
    // Set when the receiving side is gone (the request was dropped: its client hung up):
    // the parser's next read fails, so it stops within one buffer of the file.
    let gone = Arc::new(AtomicBool::new(false));
    let input = StopOn { inner: input, gone: gone.clone() };
    let parser = tokio::task::spawn_blocking(move || {
        let send = |batch: Batch| {
            if tx.blocking_send(batch).is_err() {
                gone.store(true, Ordering::Relaxed);
            }
        };
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
                    send(full);
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
        let mut last = batch.into_inner();
        if result.is_err() {
            // A failed read (the client hung up, a limit) ends the import at the last whole
            // chunk: the rows parsed since are dropped, their rejections still reported.
            last.rows.clear();
        }
        if !last.rows.is_empty() || last.rejected_count > 0 {
            send(last);
        }
        result
    });
    let mut report = ImportReport { format: Some(format), ..ImportReport::default() };
    let now = apex_protocol::now_ms();
    // What the account holds already, summed by the store.
    let mut totals = AccountTotals::of(&store.usage_totals(org, &apex_costs::UsageQuery::default()).await?);
    while let Some(batch) = rx.recv().await {
        report.rejected_count += batch.rejected_count;
        report.rejected.extend(batch.rejected);
        if !batch.rows.is_empty() {
            let rows = batch.rows;
            // Counted as if every row were new: a repeat only makes the check stricter.
            for row in &rows {
                totals.add(&row.record);
            }
            if !totals.within_ceilings() {
                // Dropping the receiver stops the parser at its next read.
                drop(rx);
                return Err(ImportFailed::Limit { limit: Limit::Account, report });
            }
            let new = store.import_usage(org, &rows, now).await?;
            report.rows_read += rows.len() as u64;
            report.imported += new;
            report.duplicates += rows.len() as u64 - new;
            progress(report.rows_read);
        }
    }
    match parser.await.map_err(|e| ImportFailed::Unreadable(format!("the import parser stopped: {e}")))? {
        Ok(()) => Ok(report),
        Err(ImportError::Limit(limit)) => Err(ImportFailed::Limit { limit, report }),
        Err(ImportError::Unreadable(why)) => Err(ImportFailed::Unreadable(why)),
    }
}

/// What an account's usage adds up to, in 128 bits, checked against the ceilings that keep
/// the store's 64-bit sums far from overflowing.
#[derive(Default)]
struct AccountTotals {
    cost: i128,
    counts: [u128; 6],
}

impl AccountTotals {
    fn of(records: &[UsageRecord]) -> Self {
        let mut totals = Self::default();
        for r in records {
            totals.add(r);
        }
        totals
    }

    fn add(&mut self, r: &UsageRecord) {
        self.cost += i128::from(r.cost.map_or(0, |m| m.0));
        let counts =
            [r.requests, r.input_tokens, r.output_tokens, r.cached_input_tokens, r.cache_write_tokens, r.reasoning_tokens];
        for (total, n) in self.counts.iter_mut().zip(counts) {
            *total += u128::from(n);
        }
    }

    fn within_ceilings(&self) -> bool {
        self.cost <= i128::from(MAX_ACCOUNT_COST.0) && self.counts.iter().all(|&n| n <= u128::from(MAX_ACCOUNT_COUNT))
    }
}

/// The file, failing every read once the import's receiver is gone.
struct StopOn<R> {
    inner: R,
    gone: Arc<AtomicBool>,
}

impl<R: Read> Read for StopOn<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the import was abandoned"));
        }
        self.inner.read(buf)
    }
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

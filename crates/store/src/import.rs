//! Importing usage into the store: the parsing runs on a blocking thread and hands rows
//! over in chunks, each stored in one transaction, so memory stays bounded by the chunk
//! size whatever the size of the file. Used by `POST /api/usage/import` and `apex ingest`.
use std::io::Read;

use apex_costs::import::{import, Format, ImportRow, Rejected};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{Store, StoreError};

/// Rows stored per transaction.
const CHUNK: usize = 5_000;
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
    let (tx, mut rx) = mpsc::channel::<Result<Vec<ImportRow>, Rejected>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(CHUNK);
        let result = import(
            format,
            input,
            |row| {
                chunk.push(row);
                if chunk.len() == CHUNK {
                    let _ = tx.blocking_send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))));
                }
            },
            |bad| {
                let _ = tx.blocking_send(Err(bad));
            },
        );
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
        result
    });
    let mut report = ImportReport { format: Some(format), ..ImportReport::default() };
    let now = apex_protocol::now_ms();
    while let Some(item) = rx.recv().await {
        match item {
            Ok(rows) => {
                let new = store.import_usage(user_id, &rows, now).await?;
                report.rows_read += rows.len() as u64;
                report.imported += new;
                report.duplicates += rows.len() as u64 - new;
                progress(report.rows_read);
            }
            Err(bad) => {
                report.rejected_count += 1;
                if report.rejected.len() < MAX_LISTED {
                    report.rejected.push(bad);
                }
            }
        }
    }
    parser
        .await
        .map_err(|e| ImportFailed::Unreadable(format!("the import parser stopped: {e}")))?
        .map_err(|e| ImportFailed::Unreadable(e.to_string()))?;
    Ok(report)
}

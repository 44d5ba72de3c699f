//! What an import keeps when it stops early: whole chunks only, and never an account whose
//! sums would pass the ceilings that keep the store's 64-bit totals exact.
use std::io::Read;

use apex_costs::import::{Format, Limit};
use apex_costs::summarize;
use apex_ingest::{import_into, ImportFailed};

async fn store() -> (tempfile::TempDir, std::sync::Arc<dyn apex_store::Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = apex_store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    (dir, store)
}

fn csv(rows: usize, cost: &str, first_id: usize) -> String {
    let mut body = String::from("date,model,input_tokens,cost_usd,request_id\n");
    for i in first_id..first_id + rows {
        body.push_str(&format!("2026-11-{:02},gpt-4o,10,{cost},r{i}\n", 1 + i % 28));
    }
    body
}

/// A reader that gives `data` and then fails, as a request body does when its client
/// hangs up.
struct CutOff(std::io::Cursor<Vec<u8>>);

impl Read for CutOff {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the client hung up")),
            n => Ok(n),
        }
    }
}

#[tokio::test]
async fn an_import_cut_off_keeps_its_whole_chunks_only() {
    let (_dir, store) = store().await;
    // 25,000 rows arrive, then the body fails: two chunks of 10,000 were stored, the
    // 5,000 parsed since are not.
    let body = csv(25_000, "0.01", 0);
    let result =
        import_into(store.as_ref(), &"u".into(), Format::GenericCsv, CutOff(std::io::Cursor::new(body.into_bytes())), |_| {})
            .await;
    assert!(matches!(result, Err(ImportFailed::Unreadable(_))), "{result:?}");
    let stored = summarize(apex_costs::PriceBook::catalog(), &store.usage(&"u".into(), None, None).await.unwrap());
    assert_eq!(stored.requests, 20_000);
}

#[tokio::test]
async fn an_account_cannot_pass_the_account_ceilings() {
    let (_dir, store) = store().await;
    // Each row is under the per-row ceiling ($1,000,000,000); 999 of them stay under the
    // account's ($1,000,000,000,000).
    let report = import_into(
        store.as_ref(),
        &"u".into(),
        Format::GenericCsv,
        std::io::Cursor::new(csv(999, "999999999", 0).into_bytes()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.imported, 999);
    let before = summarize(apex_costs::PriceBook::catalog(), &store.usage(&"u".into(), None, None).await.unwrap()).total;
    // Ten more would pass it: refused as a whole, nothing of the file stored.
    let result = import_into(
        store.as_ref(),
        &"u".into(),
        Format::GenericCsv,
        std::io::Cursor::new(csv(10, "999999999", 999).into_bytes()),
        |_| {},
    )
    .await;
    match result {
        Err(ImportFailed::Limit { limit: Limit::Account, report }) => assert_eq!(report.imported, 0),
        other => panic!("expected the account ceiling, got {other:?}"),
    }
    let after = summarize(apex_costs::PriceBook::catalog(), &store.usage(&"u".into(), None, None).await.unwrap()).total;
    assert_eq!(before, after);
    // Another account is not affected.
    let other = import_into(
        store.as_ref(),
        &"v".into(),
        Format::GenericCsv,
        std::io::Cursor::new(csv(10, "999999999", 0).into_bytes()),
        |_| {},
    )
    .await;
    assert_eq!(other.unwrap().imported, 10);
}

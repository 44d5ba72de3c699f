//! Importing is idempotent and order-free: however a file is cut into pieces, and however
//! often the pieces are sent again, the stored sums are those of one import of the file.
use apex_costs::import::Format;
use apex_costs::summarize;
use apex_ingest::import_into;
use proptest::prelude::*;

const HEADER: &str = "date,model,input_tokens,output_tokens,requests,cost_usd,feature,request_id";

fn file(rows: &[(u32, usize, u64, u64, u32, usize)]) -> Vec<String> {
    const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"];
    rows.iter()
        .enumerate()
        .map(|(i, (day, model, input, output, cost_cents, feature))| {
            let cost = if i % 3 == 0 { format!("{}.{:02}", cost_cents / 100, cost_cents % 100) } else { String::new() };
            format!("2026-11-{:02},{},{input},{output},1,{cost},f{feature},id-{i}", day, MODELS[*model])
        })
        .collect()
}

async fn totals(pieces: &[Vec<String>]) -> (i64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = apex_store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    for piece in pieces {
        let body = format!("{HEADER}\n{}\n", piece.join("\n"));
        import_into(store.as_ref(), &"u".into(), Format::GenericCsv, std::io::Cursor::new(body.into_bytes()), |_| {})
            .await
            .unwrap();
    }
    let s = summarize(apex_costs::PriceBook::catalog(), &store.usage(&"u".into(), None, None).await.unwrap());
    (s.total.0, s.input_tokens, s.requests)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_split_and_any_resend_give_the_same_totals(
        rows in proptest::collection::vec((1u32..=28, 0usize..3, 0u64..50_000, 0u64..5_000, 0u32..10_000, 0usize..4), 1..120),
        cuts in proptest::collection::vec(0usize..120, 0..6),
        resend in proptest::collection::vec(0usize..7, 0..3),
    ) {
        let lines = file(&rows);
        let mut at: Vec<usize> = cuts.into_iter().map(|c| c % (lines.len() + 1)).collect();
        at.extend([0, lines.len()]);
        at.sort_unstable();
        at.dedup();
        let mut pieces: Vec<Vec<String>> = at.windows(2).map(|w| lines[w[0]..w[1]].to_vec()).collect();
        let again: Vec<Vec<String>> = resend.iter().filter_map(|i| pieces.get(*i).cloned()).collect();
        pieces.extend(again);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let whole = rt.block_on(totals(std::slice::from_ref(&lines)));
        let split = rt.block_on(totals(&pieces));
        prop_assert_eq!(whole, split);
    }
}

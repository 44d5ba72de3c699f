//! Every field of a usage row survives the store: tags, cache-write and reasoning tokens,
//! and the repeats counted from request hashes across and within imports.
use apex_costs::import::Format;
use apex_ingest::import_into;

async fn import(store: &dyn apex_store::Store, user: &str, csv: &str) -> u64 {
    let report = import_into(store, &user.into(), Format::GenericCsv, std::io::Cursor::new(csv.as_bytes().to_vec()), |_| {})
        .await
        .unwrap();
    assert_eq!(report.rejected_count, 0, "{:?}", report.rejected);
    report.imported
}

#[tokio::test]
async fn tags_tokens_and_repeats_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = apex_store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    tags_tokens_and_repeats_round_trip(store).await;
}

#[tokio::test]
async fn tags_tokens_and_repeats_round_trip_on_postgres() {
    let schema = apex_store::testing::TempSchema::create().await;
    tags_tokens_and_repeats_round_trip(apex_store::connect(&schema.url).await.unwrap()).await;
}

async fn tags_tokens_and_repeats_round_trip(store: std::sync::Arc<dyn apex_store::Store>) {
    let header = "date,model,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,\
                  request_id,request_hash,user,api_key,environment,feature";
    // r2 repeats r1 within the file; r3 has a hash of its own; r4 has none.
    let first = format!(
        "{header}\n\
         2026-11-01,o3-mini,100,10,20,50,30,r1,h-a,alice,key_1,production,qa\n\
         2026-11-01,o3-mini,100,10,20,50,30,r2,h-a,alice,key_1,production,qa\n\
         2026-11-01,o3-mini,100,10,20,50,30,r3,h-b,alice,key_1,production,qa\n\
         2026-11-01,o3-mini,100,10,20,50,30,r4,,alice,key_1,production,qa\n"
    );
    assert_eq!(import(store.as_ref(), "u", &first).await, 4);
    // A later import: r5 repeats h-b from the first one; r1 again is a duplicate, not a repeat.
    let second = format!(
        "{header}\n\
         2026-11-01,o3-mini,100,10,20,50,30,r5,h-b,alice,key_1,production,qa\n\
         2026-11-01,o3-mini,100,10,20,50,30,r1,h-a,alice,key_1,production,qa\n"
    );
    assert_eq!(import(store.as_ref(), "u", &second).await, 1);
    // Another user's identical hashes are not this user's repeats.
    assert_eq!(import(store.as_ref(), "v", &first).await, 4);

    let rows = store.usage(&"u".into(), None, None).await.unwrap();
    assert_eq!(rows.len(), 1, "one day, one model, one set of tags: {rows:?}");
    let r = &rows[0];
    assert_eq!((r.requests, r.repeat_requests), (5, 2));
    assert_eq!((r.input_tokens, r.cached_input_tokens, r.cache_write_tokens), (500, 50, 100));
    assert_eq!((r.output_tokens, r.reasoning_tokens), (250, 150));
    assert_eq!((r.user.as_str(), r.api_key.as_str(), r.environment.as_str()), ("alice", "key_1", "production"));
    assert_eq!(store.usage(&"v".into(), None, None).await.unwrap()[0].repeat_requests, 1);
}

/// A file of 12,500 rows (more than one stored chunk, many statements; with and without
/// tags, request hashes, cache-write and reasoning tokens and costs; some lines twice) gives
/// the same daily sums, every field of them, imported whole or as two overlapping parts,
/// on SQLite and on PostgreSQL.
#[tokio::test]
async fn large_files_sum_the_same_whole_or_in_overlapping_parts_on_both_backends() {
    let header = "date,model,provider,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,\
                  reasoning_tokens,requests,cost_usd,feature,project,user,api_key,environment,request_id,request_hash";
    let lines = generated_lines(12_500);
    let csv = |part: &[String]| format!("{header}\n{}\n", part.join("\n"));
    let distinct = lines.len() - lines.windows(2).filter(|w| w[0] == w[1]).count();

    let mut results = Vec::new();
    for backend in ["sqlite", "postgres"] {
        for split in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let schema = match backend {
                "postgres" => Some(apex_store::testing::TempSchema::create().await),
                _ => None,
            };
            let url = match &schema {
                Some(schema) => schema.url.clone(),
                None => format!("sqlite://{}", dir.path().join("t.db").display()),
            };
            let store = apex_store::connect(&url).await.unwrap();
            let imported = if split {
                import(store.as_ref(), "u", &csv(&lines[..7_000])).await
                    + import(store.as_ref(), "u", &csv(&lines[4_000..])).await
            } else {
                import(store.as_ref(), "u", &csv(&lines)).await
            };
            assert_eq!(imported as usize, distinct, "{backend}, split: {split}");
            let mut usage = store.usage(&"u".into(), None, None).await.unwrap();
            usage.sort_by(|a, b| {
                let key = |r: &apex_costs::UsageRecord| {
                    (
                        r.day.clone(),
                        r.model.clone(),
                        r.feature.clone(),
                        r.project.clone(),
                        r.user.clone(),
                        r.api_key.clone(),
                        r.cost.is_some(),
                    )
                };
                key(a).cmp(&key(b))
            });
            results.push((backend, split, usage, stored_rows(&url).await));
        }
    }
    let (_, _, first, first_rows) = &results[0];
    assert_eq!(first_rows.len(), distinct);
    assert!(first.iter().map(|r| r.repeat_requests).sum::<u64>() > 0, "the file has repeats");
    assert!(first.iter().any(|r| !r.user.is_empty()) && first.iter().any(|r| r.reasoning_tokens > 0));
    assert!(first.iter().any(|r| r.cache_write_tokens > 0) && first.iter().any(|r| r.cost.is_none()));
    for (backend, split, usage, rows) in &results[1..] {
        assert!(usage == first, "{backend}, split: {split}: the sums differ from sqlite, whole");
        assert!(rows == first_rows, "{backend}, split: {split}: the stored rows differ from sqlite, whole");
    }
}

/// Every stored row of user `u`, all its columns but the import time, one text per row.
async fn stored_rows(url: &str) -> Vec<String> {
    let sql = "SELECT key || '|' || day || '|' || provider || '|' || model || '|' || feature || '|' || project \
               || '|' || end_user || '|' || api_key || '|' || environment || '|' || requests || '|' || input_tokens \
               || '|' || output_tokens || '|' || cached_input_tokens || '|' || cache_write_tokens || '|' \
               || reasoning_tokens || '|' || COALESCE(cost_micros, -1) || '|' || request_hash || '|' || repeat_requests \
               FROM usage_records WHERE user_id = 'u'";
    let mut rows: Vec<String> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
    };
    rows.sort();
    rows
}

/// `n` lines of the generic CSV (columns as in the test above), the same on every run. The
/// file comes in runs of 600 lines of five kinds, each on days of its own: plain lines;
/// lines some of which have reasoning tokens; cache-write tokens; tags; request hashes
/// (drawn from 400, so that many repeat). Statements for plain rows bind fewer values than
/// the others, and every kind ends up in statements of its own.
fn generated_lines(n: usize) -> Vec<String> {
    let mut seed: u64 = 7;
    let mut next = |m: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % m
    };
    let mut lines: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        if i % 97 == 5 {
            // The same line again: its key counts once.
            lines.push(lines[i - 1].clone());
            continue;
        }
        let kind = (i / 600) % 5;
        let day = 1 + kind * 5 + next(5) as usize;
        let model = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"][next(3) as usize];
        let input = 100 + next(5_000);
        let cached = next(input / 2 + 1);
        let write = if kind == 2 && next(3) == 0 { next(input - cached + 1) } else { 0 };
        let output = next(2_000);
        let reasoning = if kind == 1 && next(3) == 0 { next(output + 1) } else { 0 };
        let cost = if next(3) == 0 { format!("0.{:04}", next(10_000)) } else { String::new() };
        let tag = |set: bool, value: String| if kind == 3 && set { value } else { String::new() };
        let user = tag(next(2) == 0, format!("u{}", next(3)));
        let api_key = tag(next(3) == 0, format!("k{}", next(2)));
        let env = tag(next(4) == 0, "production".to_owned());
        let hash = if kind == 4 && next(2) == 0 { format!("h{}", next(400)) } else { String::new() };
        let (feature, project) = (next(6), next(4));
        lines.push(format!(
            "2026-11-{day:02},{model},,{input},{cached},{write},{output},{reasoning},1,{cost},f{feature},p{project},\
             {user},{api_key},{env},id-{i:05},{hash}"
        ));
    }
    lines
}

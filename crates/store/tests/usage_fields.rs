//! Every field of a usage row survives the store: tags, cache-write and reasoning tokens,
//! and the repeats counted from request hashes across and within imports.
use apex_costs::import::Format;
use apex_store::import::import_into;

async fn import(store: &dyn apex_store::Store, user: &str, csv: &str) -> u64 {
    let report = import_into(store, user, Format::GenericCsv, std::io::Cursor::new(csv.as_bytes().to_vec()), |_| {})
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

    let rows = store.usage("u", None, None).await.unwrap();
    assert_eq!(rows.len(), 1, "one day, one model, one set of tags: {rows:?}");
    let r = &rows[0];
    assert_eq!((r.requests, r.repeat_requests), (5, 2));
    assert_eq!((r.input_tokens, r.cached_input_tokens, r.cache_write_tokens), (500, 50, 100));
    assert_eq!((r.output_tokens, r.reasoning_tokens), (250, 150));
    assert_eq!((r.user.as_str(), r.api_key.as_str(), r.environment.as_str()), ("alice", "key_1", "production"));
    assert_eq!(store.usage("v", None, None).await.unwrap()[0].repeat_requests, 1);
}

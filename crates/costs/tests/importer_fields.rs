//! Every importer keeps every field it documents: the billed cost and the tags (end user,
//! API key, environment, feature, project) arrive on the record, so breakdowns by user or
//! key and the billed-versus-list comparison see them. Only the public entry points are
//! used (`Format`, `import_on`), so these hold whatever the importers look like inside.
use apex_costs::import::{import_on, Format, ImportRow, Rejected};
use apex_costs::{breakdown, GroupBy, Money};

/// 2026-12-05 as a day number: the fixtures' November days are in the import window.
const TODAY: i64 = 20_792;

fn rows(format: Format, text: &str) -> Vec<ImportRow> {
    let (mut rows, mut bad): (Vec<ImportRow>, Vec<Rejected>) = (Vec::new(), Vec::new());
    import_on(TODAY, format, text.as_bytes(), &mut |r| rows.push(r), &mut |r| bad.push(r)).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    rows
}

fn one(format: Format, text: &str) -> apex_costs::UsageRecord {
    let mut all = rows(format, text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0).record
}

#[test]
fn the_generic_csv_keeps_the_cost_every_count_and_every_tag() {
    let r = one(
        Format::GenericCsv,
        "date,model,provider,input_tokens,cached_input_tokens,output_tokens,requests,cost_usd,cache_write_tokens,\
         reasoning_tokens,feature,project,user,api_key,environment\n\
         2026-11-02,gpt-4o,openai,1000,200,300,4,0.0125,100,50,chat,web,alice,key-1,prod\n",
    );
    assert_eq!((r.day.as_str(), r.model.as_str(), r.provider.as_str()), ("2026-11-02", "gpt-4o", "openai"));
    assert_eq!((r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests), (1000, 200, 300, 4));
    assert_eq!((r.cache_write_tokens, r.reasoning_tokens), (100, 50));
    assert_eq!(r.cost, Some(Money(12_500)));
    assert_eq!((r.feature.as_str(), r.project.as_str()), ("chat", "web"));
    assert_eq!((r.user.as_str(), r.api_key.as_str(), r.environment.as_str()), ("alice", "key-1", "prod"));
}

#[test]
fn generic_csv_rows_differing_only_in_a_tag_are_different_rows() {
    let all = rows(
        Format::GenericCsv,
        "date,model,input_tokens,user,api_key,environment\n\
         2026-11-02,gpt-4o,10,alice,,\n\
         2026-11-02,gpt-4o,10,bob,,\n\
         2026-11-02,gpt-4o,10,,k1,\n\
         2026-11-02,gpt-4o,10,,k2,\n\
         2026-11-02,gpt-4o,10,,,prod\n\
         2026-11-02,gpt-4o,10,,,dev\n\
         2026-11-02,gpt-4o,10,,,\n",
    );
    let mut keys: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 7, "each row has its own identity: {keys:?}");
}

#[test]
fn generic_csv_keys_tell_apart_the_cost_and_the_cache_and_reasoning_counts() {
    let all = rows(
        Format::GenericCsv,
        "date,model,input_tokens,output_tokens,cost_usd,cache_write_tokens,reasoning_tokens\n\
         2026-11-02,gpt-4o,10,10,0.01,0,0\n\
         2026-11-02,gpt-4o,10,10,0.02,0,0\n\
         2026-11-02,gpt-4o,10,10,0.01,5,0\n\
         2026-11-02,gpt-4o,10,10,0.01,0,5\n",
    );
    let mut keys: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[test]
fn generic_csv_aliases_name_the_same_fields() {
    let r = one(
        Format::GenericCsv,
        "day,model,prompt_tokens,cached_tokens,completion_tokens,num_requests,spend,cache_creation_input_tokens,\
         end_user,api_key_id,env\n\
         2026-11-02,gpt-4o,1000,200,300,4,1.5,100,alice,key-1,prod\n",
    );
    assert_eq!(
        (r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests, r.cache_write_tokens),
        (1000, 200, 300, 4, 100)
    );
    assert_eq!(r.cost, Some(Money(1_500_000)));
    assert_eq!((r.user.as_str(), r.api_key.as_str(), r.environment.as_str()), ("alice", "key-1", "prod"));
}

#[test]
fn litellm_spend_logs_keep_the_spend_the_end_user_and_the_key() {
    let json = r#"[{"request_id":"r1","spend":0.25,"prompt_tokens":1000,"completion_tokens":500,"api_key":"hashed-key",
        "end_user":"alice","startTime":"2026-11-02T09:15:01.123Z","model":"gpt-4o-mini","model_group":"support-bot",
        "team_id":"team-a","custom_llm_provider":"openai","cache_key":"h1"}]"#;
    let all = rows(Format::LitellmSpendLogs, json);
    let r = &all[0].record;
    assert_eq!(r.cost, Some(Money(250_000)));
    assert_eq!((r.user.as_str(), r.api_key.as_str()), ("alice", "hashed-key"));
    assert_eq!((r.feature.as_str(), r.project.as_str()), ("support-bot", "team-a"));
    assert_eq!((r.input_tokens, r.output_tokens), (1000, 500));
    assert_eq!(all[0].request_hash, "h1");

    let csv = "request_id,api_key,spend,prompt_tokens,completion_tokens,startTime,model,model_group,custom_llm_provider,\
               user,team_id\n\
               r1,hashed-key,0.25,1000,500,2026-11-02 09:15:01.000,gpt-4o-mini,support-bot,openai,alice,team-a\n";
    let r = one(Format::LitellmSpendLogs, csv);
    assert_eq!(r.cost, Some(Money(250_000)));
    assert_eq!((r.user.as_str(), r.api_key.as_str()), ("alice", "hashed-key"));
}

#[test]
fn helicone_requests_keep_the_cost_the_user_and_the_property_tags() {
    let line = r#"{"response_id":"resp-1","request_created_at":"2026-11-02T10:00:00Z","model":"gpt-4o","provider":"OPENAI",
        "prompt_tokens":100,"completion_tokens":20,"cost":0.75,"request_user_id":"alice",
        "request_properties":{"Helicone-Property-Feature":"chat","project":"web","Environment":"prod","api_key":"key-1"}}"#
        .replace('\n', " ");
    let r = one(Format::HeliconeRequests, &format!("{line}\n"));
    assert_eq!(r.cost, Some(Money(750_000)));
    assert_eq!(r.user, "alice");
    assert_eq!((r.feature.as_str(), r.project.as_str()), ("chat", "web"));
    assert_eq!((r.environment.as_str(), r.api_key.as_str()), ("prod", "key-1"));
    assert_eq!((r.provider.as_str(), r.input_tokens, r.output_tokens), ("openai", 100, 20));
}

#[test]
fn langfuse_generations_keep_the_cost_and_the_user() {
    let page = r#"{"data":[{"id":"obs-1","type":"GENERATION","name":"support-answer","startTime":"2026-11-03T08:00:01.000Z",
        "model":"gpt-4o-mini","environment":"production","userId":"alice",
        "usageDetails":{"input":1200,"output":300,"input_cached_tokens":200},"costDetails":{"total":0.5}}]}"#;
    let r = one(Format::LangfuseObservations, page);
    assert_eq!(r.cost, Some(Money(500_000)));
    assert_eq!((r.user.as_str(), r.environment.as_str(), r.feature.as_str()), ("alice", "production", "support-answer"));
    assert_eq!((r.input_tokens, r.cached_input_tokens, r.output_tokens), (1200, 200, 300));
}

#[test]
fn otel_spans_keep_the_end_user() {
    let doc = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"support-bot"}},
        {"key":"deployment.environment","value":{"stringValue":"prod"}}]},"scopeSpans":[{"spans":[{"traceId":"t1",
        "spanId":"s1","name":"chat","startTimeUnixNano":"1793577600123000000","attributes":[
        {"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
        {"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}},
        {"key":"user.id","value":{"stringValue":"alice"}}]}]}]}]}"#
        .replace('\n', "");
    let r = one(Format::OtelSpansJson, &doc);
    assert_eq!((r.user.as_str(), r.environment.as_str(), r.feature.as_str()), ("alice", "prod", "support-bot"));
}

#[test]
fn openai_usage_exports_keep_the_user_and_the_key() {
    let csv = "start_time,end_time,project_id,num_model_requests,user_id,api_key_id,model,batch,input_tokens,output_tokens,\
               input_cached_tokens\n\
               1793577600,1793664000,proj_a,9,user-7,key_support,gpt-4o-mini,False,1000,100,0\n";
    let r = one(Format::OpenaiUsageCsv, csv);
    assert_eq!((r.user.as_str(), r.api_key.as_str(), r.project.as_str()), ("user-7", "key_support", "proj_a"));
    assert_eq!((r.requests, r.input_tokens, r.output_tokens), (9, 1000, 100));

    let json = r#"{"object":"page","data":[{"object":"bucket","start_time":1793577600,"end_time":1793664000,"results":[
        {"object":"organization.usage.completions.result","input_tokens":1000,"output_tokens":100,
         "input_cached_tokens":0,"num_model_requests":9,"project_id":"proj_a","user_id":"user-7",
         "api_key_id":"key_support","model":"gpt-4o-mini","batch":false}]}],"has_more":false}"#;
    let r = one(Format::OpenaiUsageJson, json);
    assert_eq!((r.user.as_str(), r.api_key.as_str(), r.project.as_str()), ("user-7", "key_support", "proj_a"));
}

#[test]
fn a_breakdown_by_user_or_key_sees_the_imported_tags() {
    let all = rows(
        Format::GenericCsv,
        "date,model,cost_usd,user,api_key\n\
         2026-11-02,gpt-4o,3,alice,k1\n\
         2026-11-02,gpt-4o,1,,k1\n",
    );
    let records: Vec<_> = all.into_iter().map(|r| r.record).collect();
    let by_user: Vec<(String, Money)> =
        breakdown(apex_costs::PriceBook::catalog(), &records, GroupBy::User).into_iter().map(|g| (g.key, g.cost)).collect();
    assert_eq!(by_user, [("alice".to_owned(), Money(3_000_000)), ("unattributed".to_owned(), Money(1_000_000))]);
    let by_key: Vec<(String, Money)> =
        breakdown(apex_costs::PriceBook::catalog(), &records, GroupBy::ApiKey).into_iter().map(|g| (g.key, g.cost)).collect();
    assert_eq!(by_key, [("k1".to_owned(), Money(4_000_000))]);
}

#[test]
fn openai_cost_rows_are_openai_spend_on_the_line_items_model() {
    let r =
        one(Format::OpenaiCostCsv, "start_time,amount_value,line_item,project_id\n1793491200,1.25,\"gpt-4o, input\",proj_1\n");
    assert_eq!(
        (r.provider.as_str(), r.model.as_str(), r.project.as_str(), r.feature.as_str(), r.cost),
        ("openai", "gpt-4o", "proj_1", "unattributed", Some(Money(1_250_000)))
    );
}

#[test]
fn a_row_the_csv_reader_cannot_read_is_reported_on_its_own_line() {
    // Line 3 is not UTF-8; the rows on lines 2 and 4 are kept.
    let files: [(Format, &[u8]); 3] = [
        (Format::GenericCsv, b"date,model\n2026-11-01,gpt-4o\n2026-11-01,gpt\xff4o\n2026-11-01,gpt-4o\n"),
        (
            Format::OpenaiUsageCsv,
            b"start_time,model,num_model_requests\n1793491200,gpt-4o,1\n1793491200,gpt\xff4o,1\n1793577600,gpt-4o,1\n",
        ),
        (
            Format::HeliconeRequests,
            b"request_created_at,response_id,model\n2026-11-01T00:00:00Z,r1,gpt-4o\n2026-11-01T00:00:00Z,r2,gpt\xff4o\n\
              2026-11-01T00:00:00Z,r3,gpt-4o\n",
        ),
    ];
    for (format, file) in files {
        let (mut kept, mut bad) = (0, Vec::new());
        import_on(TODAY, format, file, &mut |_| kept += 1, &mut |r| bad.push(r)).unwrap();
        assert_eq!(kept, 2, "{format:?}");
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [3], "{format:?}: {bad:?}");
        assert!(bad[0].reason.starts_with("unreadable CSV row"), "{format:?}: {bad:?}");
    }
}

#[test]
fn detection_reads_past_the_first_kibibyte_of_an_upload() {
    // A Helicone export whose first request starts with a 2 KiB body: the keys that tell
    // the format come after it.
    let body = "x".repeat(2048);
    let file = format!(
        r#"[{{"request_body":"{body}","request_created_at":"2026-11-01T00:00:00Z","response_id":"r1","model":"gpt-4o"}}]"#
    );
    let opened = apex_costs::import::open(std::io::Cursor::new(file.into_bytes()), None, u64::MAX).expect("detected");
    assert_eq!(opened.format, Format::HeliconeRequests);
}

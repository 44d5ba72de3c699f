//! The OpenAI dashboard CSV and Helicone importers on realistic fixtures
//! (`tests/fixtures/`). Expected totals are computed here from the files themselves, with
//! the published rates written out by hand, never by the engine's own code paths.
use std::collections::HashMap;
use std::io::Write as _;

use apex_costs::import::{import, open, Format, ImportRow, Rejected};
use apex_costs::{summarize, Money, UsageRecord};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Detects the format (looking through gzip) and imports.
fn load(bytes: &[u8]) -> (Format, Vec<ImportRow>, Vec<Rejected>) {
    let opened = open(std::io::Cursor::new(bytes.to_vec()), None, u64::MAX).expect("format detected");
    let (format, input) = (opened.format, opened.input);
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    import(format, input, |r| rows.push(r), |r| bad.push(r)).unwrap();
    (format, rows, bad)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// What a store keeps: the first row of each key.
fn dedupe(batches: &[&[ImportRow]]) -> Vec<UsageRecord> {
    let mut seen = HashMap::new();
    let mut kept = Vec::new();
    for row in batches.iter().flat_map(|b| b.iter()) {
        if seen.insert(row.key.clone(), ()).is_none() {
            kept.push(row.record.clone());
        }
    }
    kept
}

/// The file's rows as header → value maps, read with the csv crate alone.
fn csv_rows(bytes: &[u8]) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().unwrap().clone();
    reader.records().map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect()).collect()
}

/// `"1063225.0"` → 1,063,225.
fn int(v: &str) -> u64 {
    v.trim_end_matches(".0").parse().unwrap()
}

/// Decimal dollars to micro-dollars, half up at the seventh decimal (by hand: no floats).
fn micros(v: &str) -> i64 {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let frac = format!("{frac:0<7}");
    let mut m = whole.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap();
    if frac.as_bytes()[6] >= b'5' {
        m += 1;
    }
    m
}

/// `tokens × rate / 1M`, half up: one price component.
fn part(tokens: u64, micros_per_mtok: u64) -> i64 {
    ((tokens * micros_per_mtok + 500_000) / 1_000_000) as i64
}

/// OpenAI's published rates (input, cached input, output; micro-dollars per 1M tokens).
fn openai_rate(model: &str) -> (u64, u64, u64) {
    match model {
        m if m.starts_with("gpt-4o-mini") => (150_000, 75_000, 600_000),
        m if m.starts_with("gpt-4o") => (2_500_000, 1_250_000, 10_000_000),
        m if m.starts_with("gpt-4.1") => (2_000_000, 500_000, 8_000_000),
        m if m.starts_with("text-embedding-3-small") => (20_000, 20_000, 0),
        other => panic!("no rate written down for {other}"),
    }
}

#[test]
fn openai_usage_csv_totals_match_the_file() {
    let bytes = fixture("openai_usage.csv");
    let (format, rows, bad) = load(&bytes);
    assert_eq!(format, Format::OpenaiUsageCsv);
    assert!(bad.is_empty(), "{bad:?}");

    let lines = csv_rows(&bytes);
    let used: Vec<_> = lines.iter().filter(|l| !l["model"].is_empty()).collect();
    assert!(used.len() < lines.len(), "the fixture has an idle bucket, which is skipped");
    assert_eq!(rows.len(), used.len());
    let sum = |col: &str| used.iter().map(|l| int(&l[col])).sum::<u64>();
    let expected_cost: i64 = used
        .iter()
        .map(|l| {
            let (input, cached_rate, output) = openai_rate(&l["model"]);
            let (i, c, o) = (int(&l["input_tokens"]), int(&l["input_cached_tokens"]), int(&l["output_tokens"]));
            part(i - c, input) + part(c, cached_rate) + part(o, output)
        })
        .sum();

    let records: Vec<UsageRecord> = rows.iter().map(|r| r.record.clone()).collect();
    let s = summarize(apex_costs::PriceBook::catalog(), &records);
    assert_eq!(s.requests, sum("num_model_requests"));
    assert_eq!(s.input_tokens, sum("input_tokens"));
    assert_eq!(s.cached_input_tokens, sum("input_cached_tokens"));
    assert_eq!(s.output_tokens, sum("output_tokens"));
    assert_eq!(s.total, Money(expected_cost));
    assert_eq!((s.from.as_str(), s.to.as_str()), ("2026-11-01", "2026-11-07"));
    let r = &rows[0].record;
    assert_eq!(
        (r.user.as_str(), r.api_key.as_str(), r.feature.as_str()),
        ("user-Jt4wQ2eRk8ZmN1xPbV7c", "key_h2KsA9dLq0Wz3", "key_h2KsA9dLq0Wz3")
    );

    // Gzipped, the same rows.
    let (_, gz_rows, _) = load(&gzip(&bytes));
    assert_eq!(gz_rows, rows);
}

#[test]
fn openai_usage_csv_and_the_usage_api_json_of_the_same_buckets_count_once() {
    let bytes = fixture("openai_usage.csv");
    let (_, csv_rows_, _) = load(&bytes);
    // The same buckets as the Usage API returns them.
    let mut buckets: Vec<(i64, Vec<serde_json::Value>)> = Vec::new();
    for l in csv_rows(&bytes).iter().filter(|l| !l["model"].is_empty()) {
        let start: i64 = l["start_time"].parse().unwrap();
        let result = serde_json::json!({
            "object": "organization.usage.completions.result",
            "input_tokens": int(&l["input_tokens"]), "output_tokens": int(&l["output_tokens"]),
            "input_cached_tokens": int(&l["input_cached_tokens"]), "num_model_requests": int(&l["num_model_requests"]),
            "project_id": l["project_id"], "user_id": l["user_id"], "api_key_id": l["api_key_id"],
            "model": l["model"], "batch": l["batch"] == "TRUE",
        });
        match buckets.last_mut() {
            Some((s, results)) if *s == start => results.push(result),
            _ => buckets.push((start, vec![result])),
        }
    }
    let page = serde_json::json!({"object": "page", "data": buckets.iter().map(|(s, results)| serde_json::json!({
        "object": "bucket", "start_time": s, "end_time": s + 86_400, "results": results})).collect::<Vec<_>>()});
    let (format, json_rows, bad) = load(page.to_string().as_bytes());
    assert_eq!((format, bad.len()), (Format::OpenaiUsageJson, 0));
    assert_eq!(dedupe(&[&csv_rows_, &json_rows]).len(), csv_rows_.len(), "every JSON result is a duplicate");
    assert!(csv_rows_.iter().chain(&json_rows).all(|r| r.record.provider == "openai"));
}

#[test]
fn openai_cost_csv_keeps_the_billed_amounts() {
    let bytes = fixture("openai_costs.csv");
    let (format, rows, bad) = load(&bytes);
    assert_eq!(format, Format::OpenaiCostCsv);
    assert!(bad.is_empty(), "{bad:?}");
    let lines = csv_rows(&bytes);
    let billed: Vec<_> = lines.iter().filter(|l| !l["amount_value"].is_empty()).collect();
    assert_eq!(rows.len(), billed.len());
    let expected: i64 = billed.iter().map(|l| micros(&l["amount_value"])).sum();
    let records: Vec<UsageRecord> = rows.iter().map(|r| r.record.clone()).collect();
    let s = summarize(apex_costs::PriceBook::catalog(), &records);
    assert_eq!(s.total, Money(expected));
    assert_eq!(s.unpriced_records, 0, "billed rows need no catalog price");
    let models: std::collections::BTreeSet<&str> = records.iter().map(|r| r.model.as_str()).collect();
    assert!(models.contains("gpt-4o-2024-08-06") && models.contains("web search tool calls"), "{models:?}");
    // Input and output line items of one bucket are distinct rows.
    let keys: std::collections::HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), rows.len());
}

#[test]
fn openai_dashboard_bad_rows_are_reported_by_line() {
    let mut text = String::from_utf8(fixture("openai_usage.csv")).unwrap();
    let good = text.lines().count() - 1;
    let t = "1794009600,1794096000,2026-11-07T00:00:00+00:00,2026-11-08T00:00:00+00:00";
    text.push_str(&format!("{t},proj_a,3.0,,key_a,gpt-4o,FALSE,default,10.0,1.0,20.0\n")); // cached > input
    text.push_str(&format!("{t},proj_a,3.5,,key_a,gpt-4o,FALSE,default,10.0,1.0,0.0\n")); // a fractional count
    text.push_str(&format!("{t},proj_a,3.0,,key_a,,FALSE,default,10.0,1.0,0.0\n")); // usage without a model
    text.push_str("1794009600,1794096000,2026-11-09T00:00:00+00:00,2026-11-10T00:00:00+00:00,proj_a,1.0,,key_a,gpt-4o,FALSE,default,1.0,1.0,0.0\n");
    let (_, rows, bad) = load(text.as_bytes());
    assert_eq!(rows.len(), good - 1, "the idle bucket is skipped, the good rows are kept");
    let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
    let first = good as u64 + 2;
    assert_eq!(lines, [first, first + 1, first + 2, first + 3], "{bad:?}");
    assert!(bad[0].reason.contains("exceeds"));
    assert!(bad[1].reason.contains("whole number"));
    assert!(bad[2].reason.contains("`model` is empty"));
    assert!(bad[3].reason.contains("start_time_iso"));

    let costs = "start_time,amount_value,amount_currency,line_item\n1793491200,1.5,eur,x\n1793491200,abc,usd,y\n";
    let (format, rows, bad) = load(costs.as_bytes());
    assert_eq!((format, rows.len()), (Format::OpenaiCostCsv, 0));
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [2, 3]);
}

/// Helicone's requests by response id, from the CSV and the JSONL fixtures read by hand.
struct HeliconeTruth {
    cost: HashMap<String, i64>,
    output: HashMap<String, u64>,
}

fn helicone_truth() -> HeliconeTruth {
    let mut t = HeliconeTruth { cost: HashMap::new(), output: HashMap::new() };
    for l in csv_rows(&fixture("helicone.csv")) {
        t.cost.insert(l["response_id"].clone(), micros(&l["cost"]));
        t.output.insert(l["response_id"].clone(), l["completion_tokens"].parse().unwrap());
    }
    for line in String::from_utf8(fixture("helicone.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["response_id"].as_str().unwrap().to_owned();
        // The JSON number's own text, so no float rounding creeps in.
        t.cost.entry(id.clone()).or_insert_with(|| micros(&v["cost"].to_string()));
        t.output.entry(id).or_insert(v["completion_tokens"].as_u64().unwrap());
    }
    t
}

#[test]
fn helicone_csv_and_jsonl_overlap_and_count_each_request_once() {
    let csv = fixture("helicone.csv");
    let jsonl = fixture("helicone.jsonl");
    let (f1, csv_rows_, bad1) = load(&csv);
    let (f2, jsonl_rows, bad2) = load(&gzip(&jsonl));
    assert_eq!((f1, f2), (Format::HeliconeRequests, Format::HeliconeRequests));
    assert!(bad1.is_empty() && bad2.is_empty(), "{bad1:?} {bad2:?}");
    assert_eq!(csv_rows_.len(), csv.iter().filter(|b| **b == b'\n').count() - 1);
    assert_eq!(jsonl_rows.len(), jsonl.iter().filter(|b| **b == b'\n').count());

    let truth = helicone_truth();
    let records = dedupe(&[&csv_rows_, &jsonl_rows]);
    assert_eq!(records.len(), truth.cost.len(), "the overlapping requests count once");
    let s = summarize(apex_costs::PriceBook::catalog(), &records);
    assert_eq!(s.total, Money(truth.cost.values().sum()));
    assert_eq!(s.output_tokens, truth.output.values().sum::<u64>());
    assert_eq!(s.requests, truth.cost.len() as u64);
    // Importing the files again, in the other order, keeps the same totals.
    let again = dedupe(&[&jsonl_rows, &csv_rows_, &jsonl_rows]);
    assert_eq!(summarize(apex_costs::PriceBook::catalog(), &again).total, s.total);
}

#[test]
fn helicone_api_pages_read_like_the_jsonl_export() {
    let (_, jsonl_rows, _) = load(&fixture("helicone.jsonl"));
    let items: Vec<serde_json::Value> =
        String::from_utf8(fixture("helicone.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let page = serde_json::json!({ "data": items, "error": null });
    for text in [page.to_string(), serde_json::to_string_pretty(&page).unwrap()] {
        let (format, rows, bad) = load(text.as_bytes());
        assert_eq!((format, bad.len()), (Format::HeliconeRequests, 0), "{bad:?}");
        assert_eq!(rows, jsonl_rows);
    }
}

#[test]
fn helicone_json_reads_the_cost_from_cost_usd_when_cost_is_absent() {
    let (_, rows, _) = load(&fixture("helicone.jsonl"));
    let renamed = String::from_utf8(fixture("helicone.jsonl")).unwrap().replace("\"cost\":", "\"costUSD\":");
    let (format, renamed_rows, bad) = load(renamed.as_bytes());
    assert_eq!((format, bad.len()), (Format::HeliconeRequests, 0));
    assert!(rows.iter().all(|r| r.record.cost.is_some()));
    assert_eq!(
        renamed_rows.iter().map(|r| r.record.cost).collect::<Vec<_>>(),
        rows.iter().map(|r| r.record.cost).collect::<Vec<_>>()
    );
}

#[test]
fn helicone_rows_carry_tags_and_anthropic_cache_tokens() {
    let (_, rows, _) = load(&fixture("helicone.jsonl"));
    let first = &rows[0].record;
    assert_eq!(first.day, "2026-11-04");
    assert_eq!(
        (first.user.as_str(), first.feature.as_str(), first.environment.as_str()),
        ("cust_3307", "support-chat", "production")
    );
    // Row 2 is Anthropic: 2,538 prompt tokens plus 2,048 read from the cache.
    let claude = &rows[1].record;
    assert_eq!((claude.provider.as_str(), claude.feature.as_str()), ("anthropic", "ticket-classification"));
    assert_eq!((claude.input_tokens, claude.cached_input_tokens), (2_538 + 2_048, 2_048));
    assert_eq!(claude.user, "", "a null user is no tag");
    assert!(rows.iter().any(|r| r.record.cache_write_tokens > 0));
}

#[test]
fn helicone_bad_rows_are_reported_by_line() {
    let mut jsonl = String::from_utf8(fixture("helicone.jsonl")).unwrap();
    let good = jsonl.lines().count();
    jsonl.push_str("{\"response_id\":\"x1\",\"request_created_at\":\"2026-11-09 10:00:00.000\",\"model\":\"gpt-4o\",\"prompt_tokens\":\"many\"}\n");
    jsonl.push_str("not json\n");
    jsonl.push_str("{\"request_created_at\":\"2026-11-09 10:00:00.000\",\"model\":\"gpt-4o\"}\n");
    let (_, rows, bad) = load(jsonl.as_bytes());
    assert_eq!(rows.len(), good);
    let n = good as u64;
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [n + 1, n + 2, n + 3], "{bad:?}");
    assert!(bad[2].reason.contains("response_id"));

    let csv = "response_id,request_created_at,request_properties,model,prompt_tokens,completion_tokens,cost\n\
               a,2026-11-01 10:00:00.000,{not json},gpt-4o,1,1,0.1\n\
               b,2026-11-01 10:00:00.000,,gpt-4o,1,1,0.1\n\
               c,yesterday,,gpt-4o,1,1,0.1\n";
    let (format, rows, bad) = load(csv.as_bytes());
    assert_eq!((format, rows.len()), (Format::HeliconeRequests, 1));
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [2, 4]);
}

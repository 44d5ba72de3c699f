//! Fuzzing every importer and the analyses behind them (proptest): arbitrary bytes, and
//! byte-level mutations of a real sample of each format, plain and gzip-compressed. Whatever
//! the file, reading it never panics, answers the same twice, keeps only rows that pass the
//! shared checks, quotes the file in bounded reasons, and the analyses over what it kept
//! (summary, breakdowns, recommendations, forecast, anomalies) never panic either.
//!
//! A bounded run in CI; `APEX_FUZZ_CASES=200000 cargo test -p apex-costs --test fuzz
//! --release -- --nocapture` is the longer run (docs/security.md); each property prints how
//! many cases it ran.
use std::io::{Read, Write};

use apex_costs::import::{check_row, import_on, importers, open, Format, ImportError, ImportRow, Rejected, MAX_REASON_BYTES};
use apex_costs::{breakdown, detect_anomalies, forecast, recommend, summarize, top_drivers, week_over_week, GroupBy};
use proptest::prelude::*;

/// Cases per property: the CI run unless `APEX_FUZZ_CASES` says otherwise.
fn fuzz_cases() -> u32 {
    std::env::var("APEX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// 2026-12-01 as a day number: the date window is checked against a fixed today.
const TODAY: i64 = 20_423;

/// Every registered format.
fn formats() -> Vec<Format> {
    importers().iter().map(|i| i.format).collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A real sample of each format (the importers' own test inputs), cut to a few rows so that
/// a mutation lands in the data rather than only in a long tail.
fn seeds() -> Vec<(Format, Vec<u8>)> {
    let head = |bytes: Vec<u8>, lines: usize| -> Vec<u8> {
        let text = String::from_utf8(bytes).unwrap();
        text.lines().take(lines).map(|l| format!("{l}\n")).collect::<String>().into_bytes()
    };
    let otel_attr = |k: &str, v: &str| format!(r#"{{"key":"{k}","value":{v}}}"#);
    let otel = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"spans":[{{"traceId":"t1","spanId":"s1","name":"chat","startTimeUnixNano":"1793577600123000000","attributes":[{},{},{},{}]}}]}}]}}]}}"#,
        otel_attr("service.name", r#"{"stringValue":"support-bot"}"#),
        otel_attr("gen_ai.system", r#"{"stringValue":"openai"}"#),
        otel_attr("gen_ai.request.model", r#"{"stringValue":"gpt-4o"}"#),
        otel_attr("gen_ai.usage.input_tokens", r#"{"intValue":"1200"}"#),
        otel_attr("gen_ai.usage.output_tokens", r#"{"intValue":"80"}"#),
    );
    vec![
        (
            Format::GenericCsv,
            b"date,model,input_tokens,output_tokens,cached_tokens,requests,cost_usd,feature,project,user\n\
              2026-11-02,gpt-4o-2024-08-06,1000,200,100,3,0.0125,chat,web,u1\n\
              2026-11-03,claude-3-5-haiku,10,1,,,,search,,\n"
                .to_vec(),
        ),
        (
            Format::OpenaiUsageJson,
            br#"{"object":"page","has_more":false,"data":[{"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[
              {"object":"organization.usage.completions.result","input_tokens":1200000,"output_tokens":300000,"input_cached_tokens":200000,
               "num_model_requests":900,"project_id":"proj_a","api_key_id":"key_support","model":"gpt-4o-2024-08-06","batch":false}]}]}"#
                .to_vec(),
        ),
        (Format::OpenaiUsageCsv, head(fixture("openai_usage.csv"), 4)),
        (Format::OpenaiCostCsv, head(fixture("openai_costs.csv"), 4)),
        (Format::HeliconeRequests, head(fixture("helicone.csv"), 4)),
        (Format::HeliconeRequests, head(fixture("helicone.jsonl"), 3)),
        (
            Format::LitellmSpendLogs,
            b"request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,custom_llm_provider,user,team_id\n\
              chatcmpl-1,acompletion,hashed,0.00375,1500,1000,500,2026-11-02 09:15:01.123,2026-11-02 09:15:02.900,gpt-4o-mini,support-bot,openai,u1,team-a\n"
                .to_vec(),
        ),
        (Format::OtelSpansJson, otel.into_bytes()),
        (
            Format::LangfuseObservations,
            br#"{"data":[{"id":"obs-1","traceId":"t1","type":"GENERATION","name":"support-answer","startTime":"2026-11-03T08:00:01.000Z",
              "model":"gpt-4o-mini","environment":"production","usageDetails":{"input":1200,"output":300,"input_cached_tokens":200},
              "costDetails":{"total":0.00036}}],"meta":{"page":1}}"#
                .to_vec(),
        ),
    ]
}

/// What one import did: the rows kept, the rows refused, and how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    rows: Vec<ImportRow>,
    rejected: Vec<Rejected>,
    ended: Result<(), String>,
}

fn read(format: Format, input: impl Read) -> Outcome {
    let (mut rows, mut rejected) = (Vec::new(), Vec::new());
    let ended = import_on(TODAY, format, input, &mut |r| rows.push(r), &mut |r| rejected.push(r)).map_err(|e| match e {
        ImportError::Limit(limit) => format!("limit: {limit}"),
        ImportError::Unreadable(why) => format!("unreadable: {why}"),
    });
    Outcome { rows, rejected, ended }
}

/// The properties every import holds, whatever it was given.
fn check(outcome: &Outcome, input_len: usize) {
    let first = 10_957; // 2000-01-01
    for row in &outcome.rows {
        check_row(row, (first, TODAY + 366)).unwrap_or_else(|why| panic!("a kept row fails the shared checks: {why}: {row:?}"));
    }
    for bad in &outcome.rejected {
        assert!(bad.line >= 1, "{bad:?}");
        assert!(bad.reason.len() <= MAX_REASON_BYTES + '…'.len_utf8(), "a reason of {} bytes", bad.reason.len());
    }
    // Each row and each refusal comes from its own part of the input: a file cannot turn
    // into more rows than it has bytes.
    assert!(outcome.rows.len() + outcome.rejected.len() <= input_len + 1, "{} rows from {input_len} bytes", outcome.rows.len());
    if let Err(why) = &outcome.ended {
        assert!(why.len() < 4096, "an error of {} bytes", why.len());
    }
    // The analyses over whatever was kept: bounded and panic-free.
    let records: Vec<_> = outcome.rows.iter().map(|r| r.record.clone()).collect();
    let summary = summarize(apex_costs::PriceBook::catalog(), &records);
    assert!(summary.daily.len() <= records.len().max(3_661), "{} daily entries from {} rows", summary.daily.len(), records.len());
    for by in [GroupBy::Model, GroupBy::Feature, GroupBy::Day, GroupBy::User, GroupBy::ApiKey, GroupBy::Environment] {
        assert!(breakdown(apex_costs::PriceBook::catalog(), &records, by).len() <= records.len());
    }
    let _ = (
        recommend(apex_costs::PriceBook::catalog(), &records),
        forecast(&summary),
        detect_anomalies(apex_costs::PriceBook::catalog(), &records),
        top_drivers(apex_costs::PriceBook::catalog(), &records, 5),
        week_over_week(apex_costs::PriceBook::catalog(), &records),
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// One byte-level edit of a sample.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// A run of one byte, as a bomb or an absurd field would be.
    Repeat(usize, u8, usize),
}

/// Bytes that mean something to one of the formats: separators, quotes, signs, exponents,
/// nulls, very large numbers, dates at the edges of the window.
const INTERESTING: [&[u8]; 16] = [
    b",",
    b"\"",
    b"\n",
    b"\r\n",
    b"-",
    b"e308",
    b"1e400",
    b"99999999999999999999999",
    b"null",
    b"{",
    b"]",
    b"0000-03-01",
    b"9998-12-31",
    b"\xff\xfe",
    b"NaN",
    b"\\u0000",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (any::<usize>(), prop::sample::select(INTERESTING.to_vec())).prop_map(|(at, s)| Edit::Insert(at, s.to_vec())),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::sample::select(b"x9,\"{".to_vec()), 1usize..4096).prop_map(|(at, b, n)| Edit::Repeat(at, b, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Flip(at, b) if !bytes.is_empty() => bytes[at % len] = *b,
            Edit::Insert(at, s) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, s.iter().copied());
            }
            Edit::Delete(at, n) if !bytes.is_empty() => {
                let at = at % len;
                bytes.drain(at..(at + n).min(bytes.len()));
            }
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Edit::Repeat(at, b, n) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, std::iter::repeat_n(*b, *n));
            }
            _ => {}
        }
    }
    bytes
}

/// Runs `property` over `cases` inputs from `strategy`, failing with proptest's shrunk
/// counterexample, and says how many it read.
fn fuzz<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let cases = fuzz_cases();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    if let Err(e) = runner.run(&strategy, property) {
        panic!("{name}: {e}");
    }
    eprintln!("importer fuzz, {name}: {cases} cases passed");
}

/// Arbitrary bytes, read as every format.
#[test]
fn arbitrary_bytes_in_every_format() {
    fuzz("arbitrary bytes × 8 formats", prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
        for format in formats() {
            check(&read(format, bytes.as_slice()), bytes.len());
        }
        Ok(())
    });
}

/// Mutations of a real sample, read in the sample's format: the same answer twice, and the
/// same answer again through gzip.
#[test]
fn mutated_samples_of_every_format() {
    let seeds = seeds();
    fuzz("mutated samples", (0..seeds.len(), prop::collection::vec(edit(), 1..6)), |(seed, edits)| {
        let (format, sample) = &seeds[seed];
        let bytes = apply(sample.clone(), &edits);
        let first = read(*format, bytes.as_slice());
        check(&first, bytes.len());
        prop_assert_eq!(&first, &read(*format, bytes.as_slice()), "the same file read twice answered differently");
        let opened = open(std::io::Cursor::new(gzip(&bytes)), Some(&format_name(*format)), u64::MAX).unwrap();
        prop_assert_eq!(&first, &read(opened.format, opened.input), "gzip changed the answer");
        Ok(())
    });
}

/// Format detection (through gzip or not) on mutated samples and arbitrary bytes, then the
/// import of whatever was detected.
#[test]
fn detection_never_panics() {
    let seeds = seeds();
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(edit(), 0..4),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..512)),
        any::<bool>(),
    );
    fuzz("detection", strategy, |(seed, edits, noise, zip)| {
        let mut bytes = noise.unwrap_or_else(|| apply(seeds[seed].1.clone(), &edits));
        if zip {
            bytes = gzip(&bytes);
        }
        let len = bytes.len();
        if let Ok(opened) = open(std::io::Cursor::new(bytes), None, 1 << 20) {
            check(&read(opened.format, opened.input), len.max(64 * 1024));
        }
        Ok(())
    });
}

fn format_name(format: Format) -> String {
    serde_json::to_value(format).unwrap().as_str().unwrap().to_owned()
}

/// Every seed is a real sample: read unmutated, each gives rows and no refusal, so the
/// mutations start from files the importers accept.
#[test]
fn every_seed_is_accepted_as_it_stands() {
    let seeds = seeds();
    let seeded: std::collections::HashSet<_> = seeds.iter().map(|(f, _)| format_name(*f)).collect();
    assert_eq!(seeded.len(), formats().len(), "one seed per format at least");
    for (format, sample) in seeds {
        let outcome = read(format, sample.as_slice());
        assert!(outcome.ended.is_ok() && !outcome.rows.is_empty(), "{format:?}: {outcome:?}");
    }
}

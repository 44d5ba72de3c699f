//! The import limits (`apex_costs::limits`, `docs/security.md`) against hostile files:
//! decompression bombs, over-long rows and fields, dates outside the window, amounts past
//! the ceilings. Each test here failed before its limit existed.
use std::io::Read;

use apex_costs::import::{import, import_on, open, Format, ImportError, ImportRow, Limit, Rejected};
use apex_costs::limits;

fn gzip_of(mut source: impl Read) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::copy(&mut source, &mut gz).unwrap();
    gz.finish().unwrap()
}

fn run(format: Format, input: impl Read) -> (Result<(), ImportError>, Vec<ImportRow>, Vec<Rejected>) {
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    let result = import(format, input, |r| rows.push(r), |r| bad.push(r));
    (result, rows, bad)
}

/// A CSV header, then `n` zero bytes on one line: 1 GiB of it gzips to about 1 MiB.
fn bomb(n: u64) -> Vec<u8> {
    gzip_of(std::io::Cursor::new(b"date,model\n2026-11-01,".to_vec()).chain(std::io::repeat(b'a').take(n)))
}

#[test]
fn a_decompression_bomb_stops_at_the_ratio_limit() {
    let file = bomb(1 << 30);
    assert!(file.len() < 2 << 20, "{} bytes", file.len());
    let opened = open(std::io::Cursor::new(file), None, 256 << 20).unwrap();
    assert_eq!(opened.format, Format::GenericCsv);
    let started = std::time::Instant::now();
    let (result, rows, _) = run(opened.format, opened.input);
    assert_eq!(result, Err(ImportError::Limit(Limit::Ratio(limits::MAX_COMPRESSION_RATIO))));
    assert!(rows.is_empty());
    // Stopped early: past the allowance, not after decompressing the gigabyte.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn the_compressed_size_is_limited_while_streaming() {
    let body = b"date,model\n".iter().copied().chain(std::iter::repeat_n(b'\n', 4096)).collect::<Vec<u8>>();
    let opened = open(std::io::Cursor::new(body), None, 1024).unwrap();
    let (result, _, _) = run(opened.format, opened.input);
    assert_eq!(result, Err(ImportError::Limit(Limit::Compressed(1024))));
}

#[test]
fn a_huge_single_line_is_one_rejected_row_and_is_never_held_whole() {
    // 100 MB on one line, then a good row: the line is cut at the row limit.
    let long = std::io::Cursor::new(b"date,model,feature\n2026-11-01,gpt-4o,".to_vec())
        .chain(std::io::repeat(b'x').take(100_000_000))
        .chain(std::io::Cursor::new(b"\n2026-11-02,gpt-4o,chat\n".to_vec()));
    let (result, rows, bad) = run(Format::GenericCsv, long);
    result.unwrap();
    assert_eq!(rows.len(), 1, "the good row after it is kept");
    assert_eq!(rows[0].record.day, "2026-11-02");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 2);
    assert!(bad[0].reason.contains("longer than"), "{bad:?}");
}

#[test]
fn a_long_quoted_record_over_many_lines_is_cut_and_line_numbers_stay_true() {
    let mut csv = String::from("date,model,feature\n2026-11-01,gpt-4o,\"");
    for _ in 0..40_000 {
        csv.push_str("a line inside a quoted field\n");
    }
    csv.push_str("\"\n2026-11-03,gpt-4o,chat\n");
    let (result, rows, bad) = run(Format::GenericCsv, csv.as_bytes());
    result.unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].line, 2);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record.day, "2026-11-03");
}

#[test]
fn names_and_tags_longer_than_the_field_limit_are_rejected_in_every_format() {
    let long = "m".repeat(limits::MAX_FIELD_BYTES + 1);
    let files: Vec<(Format, String)> = vec![
        (Format::GenericCsv, format!("date,model\n2026-11-01,{long}\n")),
        (Format::OpenaiUsageCsv, format!("start_time,model,num_model_requests\n1793491200,{long},1\n")),
        (Format::OpenaiCostCsv, format!("start_time,amount_value,line_item\n1793491200,1.0,\"{long}, input\"\n")),
        (
            Format::OpenaiUsageJson,
            format!(
                r#"{{"data":[{{"start_time":1793491200,"results":[{{"object":"organization.usage.completions.result","model":"{long}","input_tokens":1}}]}}]}}"#
            ),
        ),
        (Format::HeliconeRequests, format!("request_created_at,response_id,model\n2026-11-01T00:00:00Z,r1,{long}\n")),
        (
            Format::LitellmSpendLogs,
            format!(r#"[{{"request_id":"r1","startTime":"2026-11-01T00:00:00","model":"{long}","spend":0.1}}]"#),
        ),
        (
            Format::OtelSpansJson,
            format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"t","spanId":"s","startTimeUnixNano":"1793577600000000000","attributes":[{{"key":"gen_ai.request.model","value":{{"stringValue":"{long}"}}}},{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"1"}}}}]}}]}}]}}]}}"#
            ),
        ),
        (
            Format::LangfuseObservations,
            format!(r#"{{"data":[{{"id":"o1","type":"GENERATION","startTime":"2026-11-01T00:00:00Z","model":"{long}"}}]}}"#),
        ),
    ];
    for (format, file) in files {
        let (result, rows, bad) = run(format, file.as_bytes());
        result.unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(rows.is_empty(), "{format:?} stored a row with a {}-byte model", long.len());
        assert_eq!(bad.len(), 1, "{format:?}: {bad:?}");
        assert!(bad[0].reason.contains("longer than"), "{format:?}: {}", bad[0].reason);
        assert!(bad[0].reason.len() <= apex_costs::import::MAX_REASON_BYTES + 3);
    }
}

#[test]
fn a_json_entry_larger_than_a_row_stops_the_import_without_holding_it() {
    let mut file =
        br#"[{"request_id":"r1","startTime":"2026-11-01T00:00:00","model":"gpt-4o","spend":0.1},{"request_id":""#.to_vec();
    file.extend(std::iter::repeat_n(b'x', 2 * limits::MAX_ROW_BYTES));
    file.extend(br#""}]"#);
    let (result, rows, _) = run(Format::LitellmSpendLogs, &file[..]);
    assert!(matches!(result, Err(ImportError::Unreadable(ref why)) if why.contains("larger than")), "{result:?}");
    assert_eq!(rows.len(), 1, "the entry before it was delivered");
}

#[test]
fn days_outside_the_window_are_rejected_with_a_reason() {
    let today = 20_791; // 2026-12-04
    let csv = "date,model\n0000-03-01,gpt-4o\n9998-12-31,gpt-4o\n1999-12-31,gpt-4o\n2000-01-01,gpt-4o\n2027-12-06,gpt-4o\n2026-12-04,gpt-4o\n";
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    import_on(today, Format::GenericCsv, csv.as_bytes(), &mut |r| rows.push(r), &mut |r| bad.push(r)).unwrap();
    let days: Vec<&str> = rows.iter().map(|r| r.record.day.as_str()).collect();
    assert_eq!(days, ["2000-01-01", "2026-12-04"]);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [2, 3, 4, 6]);
    assert!(bad[0].reason.contains("outside 2000-01-01"), "{}", bad[0].reason);
}

#[test]
fn amounts_past_the_row_ceiling_are_row_errors_not_wrapped_totals() {
    let csv = "date,model,cost_usd,input_tokens\n\
               2026-11-01,gpt-4o,9000000000000,1\n\
               2026-11-01,gpt-4o,9000000000000,2\n\
               2026-11-01,gpt-4o,9000000000000,3\n\
               2026-11-01,gpt-4o,5,18446744073709551615\n\
               2026-11-01,gpt-4o,12.5,4\n";
    let (result, rows, bad) = run(Format::GenericCsv, csv.as_bytes());
    result.unwrap();
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(bad[0].reason.contains("ceiling"), "{}", bad[0].reason);
    let records: Vec<_> = rows.into_iter().map(|r| r.record).collect();
    assert_eq!(apex_costs::summarize(&records).total, apex_costs::Money(12_500_000));
}

#[test]
fn a_wide_span_of_days_gives_a_series_of_the_days_present() {
    let day = |d: &str| apex_costs::UsageRecord { day: d.into(), model: "gpt-4o".into(), input_tokens: 1, ..Default::default() };
    let s = apex_costs::summarize(&[day("0000-03-01"), day("9998-12-31")]);
    assert_eq!(s.daily.len(), 2, "not one entry per calendar day");
    let anomalies = apex_costs::detect_anomalies(&[day("0000-03-01"), day("9998-12-31")]);
    assert!(anomalies.is_empty());
}

#[test]
fn summary_dates_are_calendar_dates() {
    assert!(apex_costs::is_calendar_day("2026-02-28"));
    assert!(!apex_costs::is_calendar_day("2026-99-99"));
    assert!(!apex_costs::is_calendar_day("2026-02-30"));
}

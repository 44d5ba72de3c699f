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

/// A CSV header, then `n` bytes `a` on one line: 1 GiB of it gzips to about 1 MiB.
fn bomb(n: u64) -> Vec<u8> {
    gzip_of(std::io::Cursor::new(b"date,model\n2026-11-01,".to_vec()).chain(std::io::repeat(b'a').take(n)))
}

#[test]
fn a_decompression_bomb_stops_at_the_ratio_limit() {
    // 64 MiB in about 64 KiB: four times the allowance, past which the ratio stops it (a
    // gigabyte takes seconds to compress and shows no more).
    let file = bomb(1 << 26);
    assert!(file.len() < 128 << 10, "{} bytes", file.len());
    let opened = open(std::io::Cursor::new(file), None, 256 << 20).unwrap();
    assert_eq!(opened.format, Format::GenericCsv);
    let started = std::time::Instant::now();
    let (result, rows, _) = run(opened.format, opened.input);
    assert_eq!(result, Err(ImportError::Limit(Limit::Ratio(limits::MAX_COMPRESSION_RATIO))));
    assert!(rows.is_empty());
    // Stopped early: past the allowance, not after decompressing the whole file.
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
    // 16 MB on one line (sixteen times the row limit), then a good row: the line is cut at
    // the row limit.
    let long = std::io::Cursor::new(b"date,model,feature\n2026-11-01,gpt-4o,".to_vec())
        .chain(std::io::repeat(b'x').take(16_000_000))
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
    assert_eq!(apex_costs::summarize(apex_costs::PriceBook::catalog(), &records).total, apex_costs::Money(12_500_000));
}

#[test]
fn a_wide_span_of_days_gives_a_series_of_the_days_present() {
    let day = |d: &str| apex_costs::UsageRecord { day: d.into(), model: "gpt-4o".into(), input_tokens: 1, ..Default::default() };
    let s = apex_costs::summarize(apex_costs::PriceBook::catalog(), &[day("0000-03-01"), day("9998-12-31")]);
    assert_eq!(s.daily.len(), 2, "not one entry per calendar day");
    let anomalies = apex_costs::detect_anomalies(apex_costs::PriceBook::catalog(), &[day("0000-03-01"), day("9998-12-31")]);
    assert!(anomalies.is_empty());
}

#[test]
fn summary_dates_are_calendar_dates() {
    assert!(apex_costs::is_calendar_day("2026-02-28"));
    assert!(!apex_costs::is_calendar_day("2026-99-99"));
    assert!(!apex_costs::is_calendar_day("2026-02-30"));
}

/// Reads `input` to its end or its first error, in chunks of `chunk` bytes: the bytes
/// delivered, and the limit that stopped it.
fn drain(mut input: impl Read, chunk: usize) -> (u64, Option<Limit>) {
    let mut buf = vec![0; chunk];
    let mut delivered = 0;
    loop {
        match input.read(&mut buf) {
            Ok(0) => return (delivered, None),
            Ok(n) => delivered += n as u64,
            Err(e) => return (delivered, Some(Limit::of(&e).unwrap_or_else(|| panic!("{e}")).clone())),
        }
    }
}

#[test]
fn an_upload_may_decompress_to_exactly_the_limit_and_not_a_byte_more() {
    // Not gzip, so no ratio: only the size limit applies. Every byte up to the limit is
    // delivered; the read that goes past it fails.
    let past = std::io::repeat(0).take(limits::MAX_DECOMPRESSED_BYTES + 1);
    let (delivered, limit) = drain(apex_costs::import::decompressed(past, false, u64::MAX), 1 << 20);
    assert_eq!(delivered, limits::MAX_DECOMPRESSED_BYTES);
    assert_eq!(limit, Some(Limit::Decompressed(limits::MAX_DECOMPRESSED_BYTES)));
}

#[test]
fn the_compressed_limit_counts_every_byte_read_even_in_one_read() {
    let upload = |len: usize| apex_costs::import::decompressed(std::io::Cursor::new(vec![b'x'; len]), false, 1024);
    assert_eq!(drain(upload(1024), 4096), (1024, None), "exactly the limit");
    assert_eq!(drain(upload(1025), 4096), (0, Some(Limit::Compressed(1024))), "one byte past it, in the first read");
    assert_eq!(drain(upload(1500), 1000), (1000, Some(Limit::Compressed(1024))), "past it in the second read");
}

#[test]
fn each_limit_tells_the_client_which_one_in_words() {
    assert_eq!(Limit::Compressed(256 << 20).to_string(), "the upload is larger than 256 MiB");
    assert_eq!(
        Limit::Decompressed(limits::MAX_DECOMPRESSED_BYTES).to_string(),
        "the file is larger than 2048 MiB once decompressed"
    );
    assert_eq!(
        Limit::Ratio(limits::MAX_COMPRESSION_RATIO).to_string(),
        "the file decompresses more than 100 times its compressed size (past the first 16 MiB): refused as a \
         decompression bomb"
    );
    assert_eq!(
        Limit::Account.to_string(),
        "the account's usage would add up to more than $1,000,000,000,000.00 or 100000000000000000 tokens of a kind: \
         refused as implausible"
    );
    assert_eq!(ImportError::Limit(Limit::Compressed(1 << 20)).to_string(), "the upload is larger than 1 MiB");
}

/// A row at every per-row ceiling at once, dated `day`.
fn row_at_the_ceilings(day: &str) -> ImportRow {
    let name = "n".repeat(limits::MAX_FIELD_BYTES);
    let count = limits::MAX_ROW_COUNT;
    ImportRow {
        record: apex_costs::UsageRecord {
            day: day.into(),
            provider: name.clone(),
            model: name.clone(),
            feature: name.clone(),
            project: name.clone(),
            requests: count,
            input_tokens: count,
            output_tokens: count,
            cached_input_tokens: count,
            cache_write_tokens: count,
            reasoning_tokens: count,
            user: name.clone(),
            api_key: name.clone(),
            environment: name.clone(),
            repeat_requests: count,
            cost: Some(limits::MAX_ROW_COST),
        },
        key: "k".repeat(apex_costs::import::MAX_KEY_BYTES),
        request_hash: name,
    }
}

#[test]
fn every_ceiling_a_row_passes_is_inclusive_and_one_past_it_is_rejected() {
    use apex_costs::import::check_row;
    let day = |d: &str| {
        let (y, m, dd): (i64, i64, i64) = (d[..4].parse().unwrap(), d[5..7].parse().unwrap(), d[8..].parse().unwrap());
        // Days since 1970-01-01 (civil calendar), written out for the test's few dates.
        let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + dd - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    };
    let window = (day("2000-01-01"), day("2026-12-31"));
    for d in ["2000-01-01", "2026-12-31"] {
        assert_eq!(check_row(&row_at_the_ceilings(d), window), Ok(()), "{d}");
    }
    for d in ["1999-12-31", "2027-01-01"] {
        let why = check_row(&row_at_the_ceilings(d), window).unwrap_err();
        assert!(why.contains("outside 2000-01-01 … 2026-12-31"), "{why}");
    }
    let ok = row_at_the_ceilings("2026-11-01");
    let long = "n".repeat(limits::MAX_FIELD_BYTES + 1);
    type Edit = fn(&mut ImportRow, &str);
    let fields: [(&str, Edit); 8] = [
        ("model", |r, v| r.record.model = v.into()),
        ("provider", |r, v| r.record.provider = v.into()),
        ("feature", |r, v| r.record.feature = v.into()),
        ("project", |r, v| r.record.project = v.into()),
        ("user", |r, v| r.record.user = v.into()),
        ("api_key", |r, v| r.record.api_key = v.into()),
        ("environment", |r, v| r.record.environment = v.into()),
        ("request_hash", |r, v| r.request_hash = v.into()),
    ];
    for (name, edit) in fields {
        let mut r = ok.clone();
        edit(&mut r, &long);
        assert_eq!(check_row(&r, window), Err(format!("`{name}` is longer than 256 bytes (257 bytes)")));
    }
    let mut r = ok.clone();
    r.key.push('k');
    assert!(check_row(&r, window).unwrap_err().contains("identity"));
    type Count = fn(&mut apex_costs::UsageRecord) -> &mut u64;
    let counts: [(&str, Count); 7] = [
        ("requests", |r| &mut r.requests),
        ("input_tokens", |r| &mut r.input_tokens),
        ("output_tokens", |r| &mut r.output_tokens),
        ("cached_input_tokens", |r| &mut r.cached_input_tokens),
        ("cache_write_tokens", |r| &mut r.cache_write_tokens),
        ("reasoning_tokens", |r| &mut r.reasoning_tokens),
        ("repeat_requests", |r| &mut r.repeat_requests),
    ];
    for (name, count) in counts {
        let mut r = ok.clone();
        *count(&mut r.record) += 1;
        assert_eq!(
            check_row(&r, window),
            Err(format!("`{name}` is above the ceiling of 1,000,000,000,000 per row: 1000000000001"))
        );
    }
    for cost in [apex_costs::Money(limits::MAX_ROW_COST.0 + 1), apex_costs::Money(-1)] {
        let mut r = ok.clone();
        r.record.cost = Some(cost);
        assert!(check_row(&r, window).unwrap_err().contains("the cost"), "{cost:?}");
    }
    let mut free = ok.clone();
    free.record.cost = Some(apex_costs::Money(0));
    assert_eq!(check_row(&free, window), Ok(()));
}

/// The lines of the rejections of a generic CSV import.
fn rejected_lines(csv: &[u8]) -> (Vec<u64>, Vec<String>) {
    let (result, rows, bad) = run(Format::GenericCsv, csv);
    result.unwrap();
    (bad.iter().map(|b| b.line).collect(), rows.iter().map(|r| r.record.feature.clone()).collect())
}

#[test]
fn rows_after_a_cut_row_keep_their_line_numbers() {
    // A long unquoted row, cut at an ordinary byte, then a bad row on line 3.
    let mut csv = b"date,model,feature\n2026-11-01,gpt-4o,".to_vec();
    csv.extend(std::iter::repeat_n(b'x', limits::MAX_ROW_BYTES + 100));
    csv.extend(b"\nnot a date,gpt-4o,late\n2026-11-02,gpt-4o,kept\n");
    let (lines, kept) = rejected_lines(&csv);
    assert_eq!((lines, kept), (vec![2, 3], vec!["kept".to_owned()]));

    // A long quoted field over many lines, cut exactly on one of its newlines: the record
    // starts on line 2 and spans 1,101 lines, so the bad row after it is line 1,103.
    let mut csv = b"date,model,feature\n2026-11-01,gpt-4o,\"".to_vec();
    let before_lines = limits::MAX_ROW_BYTES + 1 - csv.len() + "date,model,feature\n".len() - 1023 * 1024;
    csv.extend(std::iter::repeat_n(b'a', before_lines));
    for _ in 0..1_100 {
        csv.extend(std::iter::repeat_n(b'b', 1023));
        csv.push(b'\n');
    }
    csv.extend(b"\"\nnot a date,gpt-4o,late\n2026-11-02,gpt-4o,kept\n");
    let (lines, kept) = rejected_lines(&csv);
    assert_eq!((lines, kept), (vec![2, 1_103], vec!["kept".to_owned()]));

    // The same, cut inside a line rather than on its newline.
    let at = csv.iter().position(|&b| b == b'b').unwrap();
    csv.insert(at, b'a');
    let (lines, kept) = rejected_lines(&csv);
    assert_eq!((lines, kept), (vec![2, 1_103], vec!["kept".to_owned()]));
}

#[test]
fn a_cut_row_is_rejected_as_too_long_whether_or_not_its_field_was_quoted() {
    for quote in ["", "\""] {
        let mut csv = format!("date,model,feature\n2026-11-01,gpt-4o,{quote}").into_bytes();
        csv.extend(std::iter::repeat_n(b'x', limits::MAX_ROW_BYTES + 100));
        csv.extend(format!("{quote}\n2026-11-02,gpt-4o,kept\n").as_bytes());
        let (result, rows, bad) = run(Format::GenericCsv, &csv[..]);
        result.unwrap();
        assert_eq!(rows.len(), 1, "{quote}");
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason.as_str()).collect();
        assert_eq!(reasons, ["the row is longer than 1048576 bytes"], "{quote}");
    }
}

#[test]
fn a_row_may_cost_up_to_a_billion_dollars() {
    let csv = "date,model,cost_usd\n2026-11-01,gpt-4o,1000000000\n2026-11-01,gpt-4o,1000000000.000001\n";
    let (result, rows, bad) = run(Format::GenericCsv, csv.as_bytes());
    result.unwrap();
    assert_eq!(rows.iter().map(|r| r.record.cost).collect::<Vec<_>>(), [Some(apex_costs::Money(1_000_000_000_000_000))]);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [3]);
}

#[test]
fn a_single_json_document_of_up_to_16_mib_is_read_whole() {
    // An OTLP export is one document, not an array of entries: up to 16 MiB of it is
    // parsed whole. Padded with blanks to the limit, then to one byte past it.
    let span = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"t","spanId":"s","startTimeUnixNano":"1793577600000000000","attributes":[{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"7"}}]}]}]}]"#;
    let at_limit = format!("{span}{}}}", " ".repeat(limits::MAX_JSON_DOCUMENT_BYTES - span.len() - 1));
    let (result, rows, bad) = run(Format::OtelSpansJson, at_limit.as_bytes());
    result.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(rows.iter().map(|r| r.record.input_tokens).collect::<Vec<_>>(), [7]);
    // One byte more is not one document to parse whole (nor an array to stream).
    let (result, rows, _) = run(Format::OtelSpansJson, format!("{at_limit} ").as_bytes());
    assert!(matches!(result, Err(ImportError::Unreadable(_))), "{result:?}");
    assert!(rows.is_empty());
}

#[test]
fn an_openai_usage_page_may_be_16_mib_and_not_a_byte_more() {
    // A page with one bucket, padded with blanks to the limit, then to one byte past it.
    let page = r#"{"object":"page","data":[{"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[{"object":"organization.usage.completions.result","model":"gpt-4o","input_tokens":5,"num_model_requests":1}]}]"#;
    let padded = |len: usize| format!("{page}{}}}", " ".repeat(len - page.len() - 1));
    let (result, rows, _) = run(Format::OpenaiUsageJson, padded(limits::MAX_JSON_DOCUMENT_BYTES).as_bytes());
    result.unwrap();
    assert_eq!(rows.iter().map(|r| r.record.input_tokens).collect::<Vec<_>>(), [5]);
    let (result, rows, _) = run(Format::OpenaiUsageJson, padded(limits::MAX_JSON_DOCUMENT_BYTES + 1).as_bytes());
    assert_eq!(
        result,
        Err(ImportError::Unreadable("an OpenAI usage page is larger than 16 MiB: import the pages one by one".into()))
    );
    assert!(rows.is_empty());
}

#[test]
fn a_reason_is_kept_whole_up_to_300_bytes_and_cut_past_them() {
    // OpenAI's page quotes a bad value in full in its reason: a string where a count goes.
    let reason = |value_len: usize| {
        let page = format!(
            r#"{{"object":"page","data":[{{"start_time":1793491200,"results":[{{"object":"organization.usage.completions.result","model":"gpt-4o","input_tokens":"{}"}}]}}]}}"#,
            "x".repeat(value_len)
        );
        let (result, rows, bad) = run(Format::OpenaiUsageJson, page.as_bytes());
        result.unwrap();
        assert!(rows.is_empty());
        bad[0].reason.clone()
    };
    let said = |value_len: usize| format!("bucket 1, result 1: invalid type: string \"{}\", expected u64", "x".repeat(value_len));
    let exactly = apex_costs::import::MAX_REASON_BYTES - said(0).len();
    assert_eq!(reason(exactly), said(exactly), "300 bytes, whole");
    let cut = reason(exactly + 1);
    assert_eq!(cut, format!("{}…", &said(exactly + 1)[..297]), "cut to 297 bytes and a 3-byte ellipsis");
}

#[test]
fn a_json_entry_of_exactly_the_row_limit_is_read() {
    // LiteLLM entries padded with blanks inside the object to `len` bytes.
    let entry = |id: &str, len: usize| {
        let e = format!(r#"{{"request_id":"{id}","startTime":"2026-11-01T00:00:00","model":"gpt-4o","spend":0.1"#);
        format!("{e}{}}}", " ".repeat(len - e.len() - 1))
    };
    let small = entry("r2", 100);
    let file = format!("[{},{small}]", entry("r1", limits::MAX_ROW_BYTES));
    let (result, rows, bad) = run(Format::LitellmSpendLogs, file.as_bytes());
    result.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["litellm:r1", "litellm:r2"]);
    let file = format!("[{small},{}]", entry("r3", limits::MAX_ROW_BYTES + 1));
    let (result, rows, _) = run(Format::LitellmSpendLogs, file.as_bytes());
    assert!(matches!(result, Err(ImportError::Unreadable(ref why)) if why.contains("larger than")), "{result:?}");
    assert_eq!(rows.len(), 1);
}

#[test]
fn an_upload_may_decompress_to_exactly_the_ratio_limit() {
    // 20,000,000 bytes (150,000 of noise, then one letter) gzipped to exactly 200,000,
    // padded with a gzip comment: 100 times is allowed. One byte less of comment makes it
    // more than 100 times, refused.
    let size = 20_000_000u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..150_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let gzipped = |comment: usize| {
        let mut gz = flate2::GzBuilder::new().comment(vec![b'c'; comment]).write(Vec::new(), flate2::Compression::best());
        let mut data = std::io::Cursor::new(&noise).chain(std::io::repeat(b'a').take(size - noise.len() as u64));
        std::io::copy(&mut data, &mut gz).unwrap();
        gz.finish().unwrap()
    };
    let comment = 200_000 - gzipped(0).len();
    let exact = gzipped(comment);
    assert_eq!(exact.len() as u64 * limits::MAX_COMPRESSION_RATIO, size);
    let read = |file: Vec<u8>| drain(apex_costs::import::decompressed(std::io::Cursor::new(file), true, u64::MAX), 1 << 20);
    assert_eq!(read(exact), (size, None));
    let (_, limit) = read(gzipped(comment - 1));
    assert_eq!(limit, Some(Limit::Ratio(limits::MAX_COMPRESSION_RATIO)));
}

#[test]
fn the_first_16_mib_of_an_upload_may_decompress_at_any_ratio() {
    // 16 MiB of one letter gzips about a thousand times smaller: allowed, as a small
    // repetitive file; one byte more is past the allowance at that ratio.
    let read = |len: u64| {
        let file = gzip_of(std::io::repeat(b'a').take(len));
        drain(apex_costs::import::decompressed(std::io::Cursor::new(file), true, u64::MAX), 1 << 20)
    };
    assert_eq!(read(limits::RATIO_ALLOWANCE_BYTES), (limits::RATIO_ALLOWANCE_BYTES, None));
    assert_eq!(read(limits::RATIO_ALLOWANCE_BYTES + 1).1, Some(Limit::Ratio(limits::MAX_COMPRESSION_RATIO)));
}

#[test]
fn an_openai_bucket_with_every_name_at_the_field_limit_is_kept() {
    // Its identity joins the model, project, API key and user: 4 × 256 bytes and the rest.
    let name = |c: char| c.to_string().repeat(limits::MAX_FIELD_BYTES);
    let (model, project, key, user) = (name('m'), name('p'), name('k'), name('u'));
    let page = format!(
        r#"{{"object":"page","data":[{{"start_time":1793491200,"results":[{{"object":"organization.usage.completions.result","model":"{model}","project_id":"{project}","api_key_id":"{key}","user_id":"{user}","batch":true,"input_tokens":1}}]}}]}}"#
    );
    let (result, rows, bad) = run(Format::OpenaiUsageJson, page.as_bytes());
    result.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(rows.len(), 1);
}

#[test]
fn a_row_identity_may_be_1088_bytes() {
    // The generic CSV's identity is `req:` and the request id: ids of 1,084 bytes are kept,
    // longer ones rejected (an identity is at most four names and a prefix).
    let csv = |id_len: usize| format!("date,model,request_id\n2026-11-01,gpt-4o,{}\n", "i".repeat(id_len));
    let (result, rows, _) = run(Format::GenericCsv, csv(1_084).as_bytes());
    result.unwrap();
    assert_eq!(rows[0].key.len(), 1_088);
    let (result, rows, bad) = run(Format::GenericCsv, csv(1_085).as_bytes());
    result.unwrap();
    assert!(rows.is_empty());
    assert_eq!(bad[0].reason, "the row's identity (request id) is longer than 1088 bytes");
}

#[test]
fn a_reason_is_cut_between_characters() {
    // A value of euro signs (3 bytes each), shifted by 0, 1 and 2 bytes: wherever byte 297
    // falls, the reason is cut before the character it is in.
    for shift in 0..3 {
        let value = format!("{}{}", "x".repeat(shift), "€".repeat(100));
        let page = format!(
            r#"{{"object":"page","data":[{{"start_time":1793491200,"results":[{{"object":"organization.usage.completions.result","model":"gpt-4o","input_tokens":"{value}"}}]}}]}}"#
        );
        let (_, _, bad) = run(Format::OpenaiUsageJson, page.as_bytes());
        let reason = &bad[0].reason;
        let kept = reason.strip_suffix('…').expect("cut");
        assert!((295..=297).contains(&kept.len()), "{shift}: {} bytes", kept.len());
        assert!(format!("bucket 1, result 1: invalid type: string \"{value}\"").starts_with(kept), "{shift}");
    }
}

#[test]
fn a_csv_row_of_exactly_the_row_limit_is_read_not_cut() {
    // The row (without its newline) is 1 MiB: it is read, and rejected for its long feature
    // name; a byte longer, it is cut.
    let row = |len: usize| {
        let start = "2026-11-01,gpt-4o,";
        format!("date,model,feature\n{start}{}\n", "f".repeat(len - start.len()))
    };
    let (_, _, bad) = run(Format::GenericCsv, row(limits::MAX_ROW_BYTES).as_bytes());
    assert!(bad[0].reason.starts_with("`feature` is longer than 256 bytes"), "{}", bad[0].reason);
    let (_, _, bad) = run(Format::GenericCsv, row(limits::MAX_ROW_BYTES + 1).as_bytes());
    assert_eq!(bad[0].reason, "the row is longer than 1048576 bytes");
}

//! The generic CSV: one row per usage line, columns found by header name (case and
//! surrounding spaces ignored; the aliases below are accepted). Documented in
//! `docs/cost-analysis.md`.
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `date` / `day` / `timestamp` | yes | `YYYY-MM-DD`, or an RFC 3339 time (its UTC date is used) |
//! | `model` | yes | model name as billed (dated snapshots are resolved) |
//! | `provider` | no | defaults to the catalog's provider for the model, else `unknown` |
//! | `input_tokens` / `prompt_tokens` | no (0) | all input tokens, cached ones included |
//! | `cached_input_tokens` / `cached_tokens` | no (0) | the part of the input served from cache |
//! | `output_tokens` / `completion_tokens` | no (0) | |
//! | `requests` / `num_requests` | no (1) | requests this row stands for |
//! | `cost_usd` / `cost` / `spend` | no | what the source billed, in dollars; list price otherwise |
//! | `cache_write_tokens` / `cache_creation_input_tokens` | no (0) | the part of the input written to the cache |
//! | `reasoning_tokens` | no (0) | the part of the output spent on reasoning |
//! | `feature`, `project` | no | tags (`unattributed`, `default`) |
//! | `user` / `end_user`, `api_key` / `api_key_id`, `environment` / `env` | no | tags (empty) |
//! | `request_id` | no | identifies the row across imports (else its content does) |
//! | `request_hash` / `prompt_hash` | no | a hash of the request: identical requests share it |
use std::collections::HashMap;

use super::clip;
use super::{content_key, parse_usd, CsvRows, Format, ImportError, ImportRow, Importer, Sink};
use crate::date::parse_day;
use crate::limits::MAX_ROW_COUNT;
use crate::money::group_thousands;
use crate::prices::PriceBook;
use crate::records::UsageRecord;

pub(super) type Aliases = &'static [(&'static str, &'static [&'static str])];

pub(super) const IMPORTER: Importer = Importer {
    format: Format::GenericCsv,
    name: "generic_csv",
    aliases: &["csv"],
    describes: "any spreadsheet with `date` and `model` columns (tokens, cost and tags optional), \
                documented column by column in docs/cost-analysis.md",
    detect: |h| h.csv_with(&[&["model"], &["date", "day", "timestamp"]]),
    read: |input, out| read(GENERIC, "req:", input, out),
};

pub(super) const GENERIC: Aliases = &[
    ("date", &["date", "day", "timestamp"]),
    ("model", &["model"]),
    ("provider", &["provider"]),
    ("input_tokens", &["input_tokens", "prompt_tokens"]),
    ("cached_input_tokens", &["cached_input_tokens", "cached_tokens"]),
    ("output_tokens", &["output_tokens", "completion_tokens"]),
    ("requests", &["requests", "num_requests"]),
    ("cost", &["cost_usd", "cost", "spend"]),
    ("cache_write_tokens", &["cache_write_tokens", "cache_creation_input_tokens"]),
    ("reasoning_tokens", &["reasoning_tokens"]),
    ("feature", &["feature"]),
    ("project", &["project"]),
    ("user", &["user", "end_user"]),
    ("api_key", &["api_key", "api_key_id"]),
    ("environment", &["environment", "env"]),
    ("request_id", &["request_id"]),
    ("request_hash", &["request_hash", "prompt_hash"]),
];

/// Reads a CSV whose columns are named by `aliases` (canonical name → accepted headers).
pub(super) fn read(aliases: Aliases, key_prefix: &str, input: impl std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    // Fields are not trimmed by the reader (that copies every record): `parse_row` trims
    // the ones it reads, and `columns` the header's.
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(CsvRows::new(input));
    let headers = reader
        .headers()
        .map_err(|e| ImportError::of_csv(e).unwrap_or_else(|e| ImportError::Unreadable(format!("no CSV header: {e}"))))?
        .clone();
    let columns = columns(aliases, &headers)?;
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) if record.iter().all(|f| f.trim_ascii().is_empty()) => {}
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                if super::is_cut(&record) {
                    out.reject(line, super::cut_reason());
                    continue;
                }
                match parse_row(key_prefix, |name| columns.get(name).and_then(|&i| record.get(i))) {
                    Ok(r) => out.row(line, "", r),
                    Err(reason) => out.reject(line, reason),
                }
            }
            Err(e) => match ImportError::of_csv(e) {
                Ok(fatal) => return Err(fatal),
                Err(e) => out.reject(line, format!("unreadable CSV row: {e}")),
            },
        }
    }
}

/// Column index per canonical name. Looked up about 17 times per row: hashed cheaply, the
/// names being this module's own, not the file's.
fn columns(aliases: Aliases, headers: &csv::StringRecord) -> Result<Columns, ImportError> {
    let mut found = Columns::default();
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase();
        if let Some((name, _)) = aliases.iter().find(|(_, names)| names.contains(&h.as_str())) {
            found.entry(*name).or_insert(i);
        }
    }
    for required in ["date", "model"] {
        if !found.contains_key(required) {
            return Err(ImportError::Unreadable(format!("the header has no `{required}` column")));
        }
    }
    Ok(found)
}

/// FNV-1a: a few instructions per byte of a short name, where SipHash costs a hundred per
/// lookup.
type Columns = HashMap<&'static str, usize, fnv::FnvBuildHasher>;

/// Builds a row from canonical fields (`field(name)` gives the raw text of one).
pub(super) fn parse_row<'a>(key_prefix: &str, field: impl Fn(&str) -> Option<&'a str>) -> Result<ImportRow, String> {
    let get = |name: &str| field(name).map(str::trim).filter(|v| !v.is_empty());
    let count = |name: &str, default: u64| -> Result<u64, String> {
        get(name).map_or(Ok(default), |v| {
            let n: u64 = v.parse().map_err(|_| format!("`{name}` is not a non-negative integer: `{}`", clip(v)))?;
            // Checked here as well as by `check_row`: the sums below must not overflow.
            if n > MAX_ROW_COUNT {
                return Err(format!("`{name}` is above the ceiling of {} per row: {n}", group_thousands(MAX_ROW_COUNT)));
            }
            Ok(n)
        })
    };
    let day = get("date").ok_or("`date` is empty")?;
    let day = day_of(day).ok_or_else(|| format!("`date` is not a date: `{}`", clip(day)))?;
    let model = get("model").ok_or("`model` is empty")?.to_owned();
    let input_tokens = count("input_tokens", 0)?;
    let cached_input_tokens = count("cached_input_tokens", 0)?;
    if cached_input_tokens > input_tokens {
        return Err(format!("`cached_input_tokens` ({cached_input_tokens}) exceeds `input_tokens` ({input_tokens})"));
    }
    let cache_write_tokens = count("cache_write_tokens", 0)?;
    if cached_input_tokens + cache_write_tokens > input_tokens {
        return Err(format!(
            "cache reads ({cached_input_tokens}) and writes ({cache_write_tokens}) exceed `input_tokens` ({input_tokens})"
        ));
    }
    let output_tokens = count("output_tokens", 0)?;
    let reasoning_tokens = count("reasoning_tokens", 0)?;
    if reasoning_tokens > output_tokens {
        return Err(format!("`reasoning_tokens` ({reasoning_tokens}) exceeds `output_tokens` ({output_tokens})"));
    }
    let cost =
        get("cost").map(|v| parse_usd(v).ok_or_else(|| format!("`cost_usd` is not an amount: `{}`", clip(v)))).transpose()?;
    let provider = get("provider")
        .map(str::to_owned)
        .unwrap_or_else(|| PriceBook::catalog().price_for(&model).map_or("unknown", |p| &p.provider).to_owned());
    let record = UsageRecord {
        day,
        provider,
        model,
        feature: get("feature").unwrap_or("unattributed").to_owned(),
        project: get("project").unwrap_or("default").to_owned(),
        requests: count("requests", 1)?,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_write_tokens,
        reasoning_tokens,
        cost,
        user: get("user").unwrap_or("").to_owned(),
        api_key: get("api_key").unwrap_or("").to_owned(),
        environment: get("environment").unwrap_or("").to_owned(),
        repeat_requests: 0, // counted by the store, which has seen earlier imports
    };
    let key = match get("request_id") {
        Some(id) => format!("{key_prefix}{id}"),
        None => {
            let numbers =
                [record.requests, record.input_tokens, record.cached_input_tokens, record.output_tokens].map(|n| n.to_string());
            let cost = record.cost.map(|c| c.0.to_string()).unwrap_or_default();
            let mut fields = vec![record.day.as_str(), &record.provider, &record.model, &record.feature, &record.project, &cost];
            fields.extend(numbers.iter().map(String::as_str));
            // Fields added later join the key only when set, so rows without them keep
            // the key earlier imports gave them.
            let extra = [record.cache_write_tokens, record.reasoning_tokens].map(|n| n.to_string());
            if record.cache_write_tokens + record.reasoning_tokens > 0 {
                fields.extend(extra.iter().map(String::as_str));
            }
            let tags: Vec<String> = [("user", &record.user), ("api_key", &record.api_key), ("env", &record.environment)]
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            fields.extend(tags.iter().map(String::as_str));
            content_key(&fields)
        }
    };
    // LiteLLM writes `Cache OFF` as the cache key of requests it did not hash.
    let request_hash = get("request_hash").filter(|h| !h.eq_ignore_ascii_case("cache off")).unwrap_or("").to_owned();
    Ok(ImportRow { record, key, request_hash })
}

/// `YYYY-MM-DD`, or the date part of a time in UTC (`…Z`, or without any offset, which
/// exports such as LiteLLM's write for UTC).
fn day_of(value: &str) -> Option<String> {
    let date = value.get(..10)?;
    parse_day(date)?;
    let rest = &value[10..];
    let time_ok =
        rest.is_empty() || (rest.starts_with(['T', 't', ' ']) && !rest.contains(['+', '-']) && !rest[1..].contains(['T', ' ']));
    // An offset other than UTC would move the date; refuse rather than guess.
    time_ok.then(|| date.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format, Rejected};
    use super::*;
    use crate::money::Money;

    fn run(csv: &str) -> (Vec<ImportRow>, Vec<Rejected>) {
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::GenericCsv, csv.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        (rows, bad)
    }

    #[test]
    fn reads_columns_by_name_with_defaults() {
        let (rows, bad) = run("Model, Date ,prompt_tokens,completion_tokens,cached_tokens,requests,cost_usd,feature\n\
             gpt-4o-2024-08-06,2026-11-02,1000,200,100,3,0.0125,chat\n\
             claude-3-5-haiku,2026-11-03T10:00:00Z,10,1,,,,\n");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        let r = &rows[0].record;
        assert_eq!((r.day.as_str(), r.provider.as_str(), r.requests), ("2026-11-02", "openai", 3));
        assert_eq!((r.input_tokens, r.cached_input_tokens, r.output_tokens), (1000, 100, 200));
        assert_eq!(r.cost, Some(Money(12_500)));
        let h = &rows[1].record;
        assert_eq!(
            (h.day.as_str(), h.provider.as_str(), h.feature.as_str(), h.project.as_str()),
            ("2026-11-03", "anthropic", "unattributed", "default")
        );
        assert_eq!((h.requests, h.cost), (1, None));
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_kept() {
        let (rows, bad) = run("date,model,input_tokens,cached_input_tokens\n\
             2026-11-01,gpt-4o,10,0\n\
             2026-13-01,gpt-4o,10,0\n\
             2026-11-02,,10,0\n\
             2026-11-02,gpt-4o,-5,0\n\
             2026-11-02,gpt-4o,5,6\n\
             2026-11-02T10:00:00+05:00,gpt-4o,5,0\n\
             \n\
             2026-11-03,gpt-4o,7,0\n");
        assert_eq!(rows.len(), 2);
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7], "{bad:?}");
        assert!(bad[0].reason.contains("not a date"));
        assert!(bad[3].reason.contains("exceeds"));
    }

    #[test]
    fn rejected_rows_are_numbered_by_their_line_whatever_the_line_endings() {
        // CRLF is what Excel and Python's csv module write; a lone CR what old Macs did.
        for eol in ["\n", "\r\n", "\r"] {
            let lines = [
                "date,model,input_tokens",
                "2026-11-01,gpt-4o,10",
                "2026-13-01,gpt-4o,10",
                "2026-11-09,gpt-4o,10",
                "2026-11-02,,10",
                "2026-11-03,gpt-4o,10",
            ];
            let (rows, bad) = run(&(lines.join(eol) + eol));
            assert_eq!(rows.len(), 3, "{eol:?}");
            assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [3, 5], "{eol:?}: {bad:?}");
        }
    }

    #[test]
    fn keys_are_stable_and_request_ids_win() {
        let csv = "date,model,input_tokens,request_id\n2026-11-01,gpt-4o,10,\n2026-11-01,gpt-4o,10,abc\n";
        let (a, _) = run(csv);
        let (b, _) = run(csv);
        assert_eq!(a, b);
        assert!(a[0].key.starts_with("row:"));
        assert_eq!(a[1].key, "req:abc");
    }

    #[test]
    fn each_limit_between_columns_is_inclusive() {
        // Cached (and cache writes) may make up all of the input, reasoning all of the
        // output, and a count may sit at the per-row ceiling; one more is a bad row.
        let (rows, bad) = run("date,model,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens\n\
             2026-11-01,gpt-4o,100,100,0,7,7\n\
             2026-11-01,gpt-4o,100,60,40,7,0\n\
             2026-11-01,gpt-4o,1000000000000,0,0,1000000000000,0\n\
             2026-11-01,gpt-4o,100,101,0,7,0\n\
             2026-11-01,gpt-4o,100,60,41,7,0\n\
             2026-11-01,gpt-4o,100,0,0,7,8\n\
             2026-11-01,gpt-4o,1000000000001,0,0,0,0\n");
        assert_eq!(rows.len(), 3, "{bad:?}");
        assert_eq!((rows[2].record.input_tokens, rows[2].record.output_tokens), (1_000_000_000_000, 1_000_000_000_000));
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "`cached_input_tokens` (101) exceeds `input_tokens` (100)",
                "cache reads (60) and writes (41) exceed `input_tokens` (100)",
                "`reasoning_tokens` (8) exceeds `output_tokens` (7)",
                "`input_tokens` is above the ceiling of 1,000,000,000,000 per row: 1000000000001",
            ]
        );
    }

    #[test]
    fn content_keys_are_the_same_from_one_release_to_the_next() {
        // The key a row without a request id gets is its identity in every store that
        // imported it before: it must never change. Cache writes and reasoning join it
        // only when set, so rows without them kept their earlier keys. The expected keys
        // are FNV-1a (64-bit) over the fields, each followed by 0x1f, computed apart:
        // day, provider, model, feature, project, cost, requests, input, cached, output,
        // [cache writes, reasoning], [tags as `user=…`].
        let (rows, _) = run("date,model,input_tokens,output_tokens,cache_write_tokens,reasoning_tokens,user\n\
             2026-11-01,gpt-4o,10,5,,,\n\
             2026-11-01,gpt-4o,10,5,0,0,\n\
             2026-11-01,gpt-4o,10,5,2,0,\n\
             2026-11-01,gpt-4o,10,5,0,1,\n\
             2026-11-01,gpt-4o,10,5,,,u1\n");
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys[0], "row:a4403372391de4f0");
        assert_eq!(keys[1], keys[0], "explicit zeros are the same row");
        assert_eq!(keys[2], "row:9adadfbe337d1e0a");
        assert_eq!(keys[3], "row:c2671fadc1924271");
        assert_eq!(keys[4], "row:cdcac80a678f2091");
    }

    #[test]
    fn rows_of_blank_cells_are_skipped_not_rejected() {
        let (rows, bad) = run("date,model,feature\n,,\n , ,\n2026-11-01,gpt-4o,chat\n");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn a_file_without_the_required_columns_is_unreadable() {
        let err = import(Format::GenericCsv, "when,what\n1,2\n".as_bytes(), |_| {}, |_| {}).unwrap_err();
        assert!(err.to_string().contains("`date`"));
    }
}

//! The CSV exports of OpenAI's usage dashboard (platform.openai.com → Usage → Export):
//!
//! - the **usage** export: one row per time bucket and group (`start_time`, `project_id`,
//!   `num_model_requests`, `user_id`, `api_key_id`, `model`, `batch`, `service_tier`,
//!   `input_tokens`, `output_tokens`, `input_cached_tokens`, …). Token counts may be written
//!   as floats (`59200.0`). The rows are priced from the catalog. A row's identity is the
//!   one the Usage API JSON importer gives the same bucket and group, so importing the CSV
//!   and the JSON of the same period counts each bucket once.
//! - the **cost** export: one row per time bucket (and line item, when grouped so):
//!   `start_time`, `amount_value`, `amount_currency`, `line_item`, `project_id`. The amount
//!   is kept as the billed cost; the model is the line item's first part
//!   (`gpt-4o-2024-08-06, input` → `gpt-4o-2024-08-06`), or `openai` without one. It carries
//!   no tokens: import the usage export *or* the cost export for a period, not both.
//!
//! Columns are read by header name; buckets without any usage (every value empty, as the
//! dashboard writes for idle days) are skipped.
use std::collections::HashMap;

use super::{clip, parse_usd, CsvRows, Format, ImportError, ImportRow, Importer, Sink};
use crate::date::{format_day, parse_day};
use crate::records::UsageRecord;

/// The usage export.
pub(super) const USAGE: Importer = Importer {
    format: Format::OpenaiUsageCsv,
    name: "openai_usage_csv",
    aliases: &[],
    describes: "platform.openai.com → Usage → Export, the usage CSV (tokens per bucket, model, project and key)",
    detect: |h| h.csv_with(&[&["start_time"], &["num_model_requests"], &["model"]]),
    read: |input, out| each_row(input, &["model", "num_model_requests"], usage_row, out),
};

/// The cost export.
pub(super) const COSTS: Importer = Importer {
    format: Format::OpenaiCostCsv,
    name: "openai_cost_csv",
    aliases: &["openai_costs_csv"],
    describes: "platform.openai.com → Usage → Export, the cost CSV (dollars per bucket and line item, no tokens)",
    detect: |h| h.csv_with(&[&["start_time"], &["amount_value"]]),
    read: |input, out| each_row(input, &["amount_value"], cost_row, out),
};

/// What a row parser is given: the trimmed, non-empty value of the column of that
/// (lower-case) name.
type Field<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses each CSV row with `parse`: a row, nothing (an idle bucket) or the reason it is bad.
fn each_row(
    input: impl std::io::Read,
    required: &[&str],
    parse: fn(Field) -> Result<Option<ImportRow>, String>,
    out: &mut Sink,
) -> Result<(), ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(CsvRows::new(input));
    let headers = reader
        .headers()
        .map_err(|e| ImportError::of_csv(e).unwrap_or_else(|e| ImportError::Unreadable(format!("no CSV header: {e}"))))?;
    let columns: HashMap<String, usize> =
        headers.iter().enumerate().map(|(i, h)| (h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase(), i)).collect();
    for name in required.iter().chain(&["start_time"]) {
        if !columns.contains_key(*name) {
            return Err(ImportError::Unreadable(format!("the header has no `{name}` column")));
        }
    }
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                if super::is_cut(&record) {
                    out.reject(line, super::cut_reason());
                    continue;
                }
                let get = |name: &str| {
                    columns.get(name).and_then(|&i| record.get(i)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
                };
                match parse(&get) {
                    Ok(Some(r)) => out.row(line, "", r),
                    Ok(None) => {}
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

/// The bucket's start: `start_time` (Unix seconds), its UTC day.
fn bucket(get: Field) -> Result<(i64, String), String> {
    let raw = get("start_time").ok_or("`start_time` is empty")?;
    let secs = whole_number(&raw).ok_or_else(|| format!("`start_time` is not a Unix time: `{}`", clip(&raw)))?;
    let secs = i64::try_from(secs).map_err(|_| format!("`start_time` is out of range: `{}`", clip(&raw)))?;
    let day = format_day(secs.div_euclid(86_400));
    // The ISO column, when present, must agree: it is what a person reads in the file.
    if let Some(iso) = get("start_time_iso") {
        if iso.get(..10).and_then(parse_day).is_none() || !iso.starts_with(&day) {
            return Err(format!("`start_time_iso` `{}` is not the day of `start_time` ({day})", clip(&iso)));
        }
    }
    Ok((secs, day))
}

/// `"59200"` or `"59200.0"` → 59,200; fractions and negatives are refused.
fn whole_number(s: &str) -> Option<u64> {
    let digits = match s.split_once('.') {
        Some((whole, frac)) if frac.bytes().all(|b| b == b'0') => whole,
        Some(_) => return None,
        None => s,
    };
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

fn usage_row(get: Field) -> Result<Option<ImportRow>, String> {
    let Some(model) = get("model") else {
        // An idle bucket has only its times; a bucket with usage but no model cannot be priced.
        let has_usage = ["num_model_requests", "input_tokens", "output_tokens"].iter().any(|c| get(c).is_some());
        return if has_usage { Err("`model` is empty (group the export by model)".into()) } else { Ok(None) };
    };
    let (start, day) = bucket(get)?;
    let count = |name: &str| -> Result<u64, String> {
        get(name).map_or(Ok(0), |v| whole_number(&v).ok_or_else(|| format!("`{name}` is not a whole number: `{}`", clip(&v))))
    };
    let input = count("input_tokens")?;
    let cached = count("input_cached_tokens")?;
    if cached > input {
        return Err(format!("`input_cached_tokens` ({cached}) exceeds `input_tokens` ({input})"));
    }
    let batch = match get("batch").map(|b| b.to_ascii_lowercase()).as_deref() {
        None => "",
        Some("true") => "batch",
        Some("false") => "sync",
        Some(other) => return Err(format!("`batch` is not TRUE or FALSE: `{}`", clip(other))),
    };
    let project = get("project_id").unwrap_or_else(|| "default".into());
    let api_key = get("api_key_id").unwrap_or_default();
    let user = get("user_id").unwrap_or_default();
    // The same identity as the Usage API JSON importer gives this bucket and group.
    let key = format!("openai:{start}:{model}:{project}:{api_key}:{user}:{batch}");
    let record = UsageRecord {
        day,
        provider: "openai".into(),
        model,
        feature: if api_key.is_empty() { "unattributed".into() } else { api_key.clone() },
        project,
        requests: count("num_model_requests")?,
        input_tokens: input,
        output_tokens: count("output_tokens")?,
        cached_input_tokens: cached,
        user,
        api_key,
        ..Default::default()
    };
    Ok(Some(ImportRow { record, key, request_hash: String::new() }))
}

fn cost_row(get: Field) -> Result<Option<ImportRow>, String> {
    let Some(amount) = get("amount_value") else {
        return Ok(None); // a bucket without spend
    };
    let (start, day) = bucket(get)?;
    if let Some(currency) = get("amount_currency") {
        if !currency.eq_ignore_ascii_case("usd") {
            return Err(format!("`amount_currency` is `{}`; only USD amounts are read", clip(&currency)));
        }
    }
    let cost = parse_usd(&amount).ok_or_else(|| format!("`amount_value` is not an amount: `{}`", clip(&amount)))?;
    let line_item = get("line_item").unwrap_or_default();
    let model = line_item.split(',').next().map(str::trim).filter(|m| !m.is_empty()).unwrap_or("openai").to_owned();
    let project = get("project_id").unwrap_or_else(|| "default".into());
    let key = format!("openai-cost:{start}:{line_item}:{project}");
    let record = UsageRecord {
        day,
        provider: "openai".into(),
        model,
        feature: "unattributed".into(),
        project,
        requests: 0,
        cost: Some(cost),
        ..Default::default()
    };
    Ok(Some(ImportRow { record, key, request_hash: String::new() }))
}

#[cfg(test)]
mod tests {
    use super::whole_number;

    #[test]
    fn token_counts_may_be_written_as_floats() {
        assert_eq!(whole_number("59200.0"), Some(59_200));
        assert_eq!(whole_number("7"), Some(7));
        assert_eq!(whole_number("7.5"), None);
        assert_eq!(whole_number("-1"), None);
        assert_eq!(whole_number(".0"), None);
        assert_eq!(whole_number("1e3"), None);
        assert_eq!(whole_number("+5"), None, "digits only");
        assert_eq!(whole_number(""), None);
    }
}

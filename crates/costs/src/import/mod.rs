//! Importers: usage exports in, [`ImportRow`]s out, one callback per row so that a caller
//! can store them in batches without holding the file's rows in memory.
//!
//! A bad row never stops an import: it is reported with its line number and reason, and
//! the good rows are kept. Every row carries a `key` that identifies it across imports,
//! so that importing the same file twice, or overlapping files, never double counts.
mod generic_csv;
mod helicone;
mod langfuse;
mod litellm;
mod openai;
mod openai_csv;
mod otel;

use crate::money::Money;
use crate::records::UsageRecord;

/// One usage row and its identity across imports.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportRow {
    pub record: UsageRecord,
    /// The source's request id where it has one, otherwise a hash of the row's content.
    pub key: String,
    /// A hash of the request itself (prompt and parameters) where the source gives one or
    /// the request body to make one: identical requests share it, whatever their key.
    /// Empty when unknown. The store counts a request whose hash it has seen before as a
    /// repeat (`UsageRecord::repeat_requests`).
    pub request_hash: String,
}

/// A row that could not be imported.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// 1-based line of the file (the header is line 1 of a CSV).
    pub line: u64,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The documented generic CSV (`docs/cost-analysis.md`).
    GenericCsv,
    /// OpenAI's Usage API, completions endpoint (`organization.usage.completions.result`).
    OpenaiUsageJson,
    /// The usage dashboard's CSV export of completions usage (platform.openai.com).
    OpenaiUsageCsv,
    /// The usage dashboard's CSV export of costs (`amount_value`, `line_item`).
    OpenaiCostCsv,
    /// Helicone request exports: CSV, JSON Lines or a JSON array.
    HeliconeRequests,
    /// LiteLLM proxy spend logs (`LiteLLM_SpendLogs`), as CSV or as a JSON array.
    LitellmSpendLogs,
    /// OpenTelemetry GenAI spans as OTLP JSON (`gen_ai.usage.*` attributes).
    OtelSpansJson,
    /// Langfuse observations (`GET /api/public/observations`), generations only.
    LangfuseObservations,
}

impl Format {
    /// The names `parse` accepts, one per format, for messages.
    pub const NAMES: &'static str = "generic_csv, openai_usage_json, openai_usage_csv, openai_cost_csv, \
        litellm_spend_logs, otel_spans_json, langfuse_observations, helicone_requests";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "generic_csv" | "csv" => Some(Self::GenericCsv),
            "openai_usage_json" | "openai" => Some(Self::OpenaiUsageJson),
            "openai_usage_csv" => Some(Self::OpenaiUsageCsv),
            "openai_cost_csv" | "openai_costs_csv" => Some(Self::OpenaiCostCsv),
            "helicone" | "helicone_requests" => Some(Self::HeliconeRequests),
            "litellm_spend_logs" | "litellm" => Some(Self::LitellmSpendLogs),
            "otel_spans_json" | "otel" | "otlp" => Some(Self::OtelSpansJson),
            "langfuse_observations" | "langfuse" => Some(Self::LangfuseObservations),
            _ => None,
        }
    }

    /// Guesses the format from the first bytes of the file.
    pub fn detect(head: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            if text.contains("organization.usage.completions") {
                return Some(Self::OpenaiUsageJson);
            }
            if text.contains("\"resourceSpans\"") {
                return Some(Self::OtelSpansJson);
            }
            if text.contains("\"GENERATION\"") && text.contains("\"startTime\"") {
                return Some(Self::LangfuseObservations);
            }
            if text.contains("\"request_created_at\"") && text.contains("\"response_id\"") {
                return Some(Self::HeliconeRequests);
            }
            let litellm = ["\"request_id\"", "\"spend\"", "\"startTime\""].iter().all(|k| text.contains(k));
            return litellm.then_some(Self::LitellmSpendLogs);
        }
        let header = trimmed.lines().next().unwrap_or("").to_ascii_lowercase();
        let has = |names: &[&str]| header.split(',').any(|h| names.contains(&h.trim().trim_matches('"')));
        if has(&["request_id"]) && has(&["spend"]) && has(&["starttime"]) {
            return Some(Self::LitellmSpendLogs);
        }
        if has(&["start_time"]) && has(&["num_model_requests"]) && has(&["model"]) {
            return Some(Self::OpenaiUsageCsv);
        }
        if has(&["start_time"]) && has(&["amount_value"]) {
            return Some(Self::OpenaiCostCsv);
        }
        if has(&["request_created_at"]) && has(&["response_id", "request_id"]) && has(&["model"]) {
            return Some(Self::HeliconeRequests);
        }
        (has(&["model"]) && has(&["date", "day", "timestamp"])).then_some(Self::GenericCsv)
    }
}

/// What the first bytes of an upload say: whether it is gzip, and its format if one is
/// recognized (looking inside the compression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sniffed {
    pub gzipped: bool,
    pub format: Option<Format>,
}

/// Looks at the start of a file (a few KiB are enough).
pub fn sniff(head: &[u8]) -> Sniffed {
    use std::io::Read as _;
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    if !gzipped {
        return Sniffed { gzipped, format: Format::detect(head) };
    }
    // A truncated stream still yields its first bytes, which is all detection needs.
    let mut inner = Vec::with_capacity(4096);
    let _ = flate2::read::GzDecoder::new(head).take(4096).read_to_end(&mut inner);
    Sniffed { gzipped, format: Format::detect(&inner) }
}

/// `input`, decompressed when the upload is gzip.
pub fn decompressed<R: std::io::Read + Send + 'static>(input: R, gzipped: bool) -> Box<dyn std::io::Read + Send> {
    if gzipped {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ImportError {
    /// The file as a whole cannot be read in this format (no header, not JSON, …).
    Unreadable(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ImportError {}

/// Reads `input` in `format`, calling `row` for each good row and `reject` for each bad one.
pub fn import(
    format: Format,
    input: impl std::io::Read,
    row: impl FnMut(ImportRow),
    reject: impl FnMut(Rejected),
) -> Result<(), ImportError> {
    match format {
        Format::GenericCsv => generic_csv::read(generic_csv::GENERIC, "req:", input, row, reject),
        Format::OpenaiUsageJson => openai::read(input, row, reject),
        Format::OpenaiUsageCsv => openai_csv::read_usage(input, row, reject),
        Format::OpenaiCostCsv => openai_csv::read_costs(input, row, reject),
        Format::HeliconeRequests => helicone::read(input, row, reject),
        Format::LitellmSpendLogs => litellm::read(input, row, reject),
        Format::OtelSpansJson => otel::read(input, row, reject),
        Format::LangfuseObservations => langfuse::read(input, row, reject),
    }
}

/// Parses a non-negative decimal amount of dollars exactly ("12.3456785" → 12,345,679
/// micro-dollars, half away from zero past the sixth decimal). No floating point.
pub fn parse_usd(s: &str) -> Option<Money> {
    let s = s.trim().trim_start_matches('$');
    // Exports that went through a float write small amounts as `1.5e-05`: shift the
    // decimal point in the text, still without floating point.
    if let Some((mantissa, exp)) = s.split_once(['e', 'E']) {
        return parse_usd(&shift_decimal(mantissa, exp.parse().ok()?)?);
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut micros: i64 = 0;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += i64::from(b - b'0') * 10_i64.pow(5 - i as u32);
    }
    let round_up = frac.as_bytes().get(6).is_some_and(|b| *b >= b'5');
    whole.checked_mul(1_000_000)?.checked_add(micros + i64::from(round_up)).map(Money)
}

/// `"1.5"` shifted by `-5` → `"0.000015"`; `None` for anything that is not plain digits.
fn shift_decimal(mantissa: &str, exp: i32) -> Option<String> {
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = [whole, frac].concat();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || exp.abs() > 30 {
        return None;
    }
    let point = whole.len() as i32 + exp; // where the decimal point lands in `digits`
    Some(if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}", digits, "0".repeat(point as usize - digits.len()))
    } else {
        format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
    })
}

/// The first non-blank byte of `input`, without consuming it.
pub(crate) fn first_byte(input: &mut impl std::io::BufRead) -> Result<Option<u8>, ImportError> {
    loop {
        let buf = input.fill_buf().map_err(|e| ImportError::Unreadable(e.to_string()))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => return Ok(Some(buf[i])),
            None if buf.is_empty() => return Ok(None),
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// A JSON export read whole: one document (`whole`), or JSON Lines, each with its line.
pub(crate) struct JsonDocuments {
    pub whole: bool,
    pub items: Vec<(u64, serde_json::Value)>,
}

pub(crate) fn json_documents(mut input: impl std::io::Read, what: &str) -> Result<JsonDocuments, ImportError> {
    let mut text = String::new();
    input.read_to_string(&mut text).map_err(|e| ImportError::Unreadable(format!("cannot read {what}: {e}")))?;
    if let Ok(doc) = serde_json::from_str(&text) {
        return Ok(JsonDocuments { whole: true, items: vec![(1, doc)] });
    }
    let items = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|doc| (i as u64 + 1, doc))
                .map_err(|e| ImportError::Unreadable(format!("line {}: not {what}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    Ok(JsonDocuments { whole: false, items })
}

/// FNV-1a over the fields that identify a row: stable across runs and machines.
pub(crate) fn content_key(fields: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for b in field.bytes().chain([0x1f]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("row:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(parse_usd("12.34"), Some(Money(12_340_000)));
        assert_eq!(parse_usd("$0.000001"), Some(Money(1)));
        assert_eq!(parse_usd("1.0000005"), Some(Money(1_000_001)));
        assert_eq!(parse_usd("7"), Some(Money(7_000_000)));
        assert_eq!(parse_usd(".5"), Some(Money(500_000)));
        assert_eq!(parse_usd("-1"), None);
        assert_eq!(parse_usd("1e3"), Some(Money(1_000_000_000)));
        assert_eq!(parse_usd("1.5e-05"), Some(Money(15)));
        assert_eq!(parse_usd("2.5E-7"), Some(Money(0)), "below half a micro-dollar");
        assert_eq!(parse_usd("7.5e-7"), Some(Money(1)));
        assert_eq!(parse_usd("1e"), None);
        assert_eq!(parse_usd("x1e3"), None);
        assert_eq!(parse_usd(""), None);
    }

    #[test]
    fn formats_are_detected_from_the_head_of_the_file() {
        assert_eq!(Format::detect(b"date,model,input_tokens\n"), Some(Format::GenericCsv));
        assert_eq!(Format::detect(b"\xef\xbb\xbf\"Day\",\"Model\"\n"), Some(Format::GenericCsv), "BOM, quotes, case");
        assert_eq!(Format::detect(b"day,model\n"), Some(Format::GenericCsv));
        assert_eq!(
            Format::detect(br#"{"object":"page","data":[{"results":[{"object":"organization.usage.completions.result"}]}]}"#),
            Some(Format::OpenaiUsageJson)
        );
        assert_eq!(Format::detect(b"hello"), None);
    }
}

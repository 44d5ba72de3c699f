//! Helicone request exports (`npx @helicone/export`, or the response of
//! `POST /v1/request/query-clickhouse`), as CSV, JSON Lines, a JSON array or the API's
//! `{"data": [...]}` page. One row per
//! request; `response_id` (else `request_id`) identifies it across imports, so the CSV and
//! the JSONL of the same requests count once.
//!
//! Fields read: `request_created_at` (UTC day), `model`, `provider`, `prompt_tokens`,
//! `completion_tokens`, `prompt_cache_read_tokens`, `prompt_cache_write_tokens`, `cost`
//! (else `costUSD`; Helicone's computed cost in dollars, kept as the billed cost), the end
//! user from `request_user_id` and the tags `feature`, `project`, `environment` (or `env`)
//! and `api_key` from the custom properties (`request_properties`, a JSON object; its keys
//! are matched case-insensitively, with or without the `Helicone-Property-` prefix). When
//! the export includes the request bodies (`--include-body`), identical bodies share a
//! request hash, so repeated requests can be counted.
//!
//! Helicone counts Anthropic's cache reads and writes apart from `prompt_tokens`, and
//! OpenAI's cached tokens inside it; for Anthropic rows they are added to the input, which
//! in Apex always includes the cached part.
use serde_json::Value;

use super::generic_csv::parse_row;
use super::{content_key, CsvRows, Format, Head, ImportError, Importer, JsonDoc, Sink};

const KEY_PREFIX: &str = "helicone:";

pub(super) const IMPORTER: Importer = Importer {
    format: Format::HeliconeRequests,
    name: "helicone_requests",
    aliases: &["helicone"],
    describes: "a Helicone request export (`npx @helicone/export`: CSV, JSONL or JSON)",
    detect: |h| json_export(h) || h.csv_with(&[&["request_created_at"], &["response_id", "request_id"], &["model"]]),
    read,
};

/// Whether the start of a file is a Helicone JSON export (LiteLLM's rule defers to it).
pub(super) fn json_export(h: &Head) -> bool {
    h.json_with(&["\"request_created_at\"", "\"response_id\""])
}

fn read(input: &mut dyn std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    let mut input = std::io::BufReader::new(input);
    match super::first_byte(&mut input)? {
        Some(b'[' | b'{') => {
            // An array or the API's page (`{"data": [...]}`), streamed entry by entry when
            // large, or JSON Lines read one line at a time: memory stays flat.
            super::json_documents(input, "a Helicone JSON export", out, &mut |doc, out| {
                match doc {
                    JsonDoc::Whole(Value::Array(items)) => each_item(items.into_iter(), out),
                    JsonDoc::Whole(Value::Object(mut page)) if page.get("data").is_some_and(Value::is_array) => {
                        let Some(Value::Array(items)) = page.remove("data") else { unreachable!("checked") };
                        each_item(items.into_iter(), out)
                    }
                    JsonDoc::Whole(item) => emit(&json_fields(&item), out, 1, ""),
                    JsonDoc::Line(number, item) if item.is_object() => emit(&json_fields(&item), out, number, ""),
                    JsonDoc::Line(number, _) => out.reject(number, "not a JSON object".into()),
                    JsonDoc::Entry(i, item) => emit(&json_fields(&item), out, 1, &format!("request {i}: ")),
                }
                Ok(())
            })
        }
        _ => read_csv(input, out),
    }
}

/// The requests of a JSON document (an array, or a page's `data`); line numbers mean
/// nothing there, so a bad one is named by its position.
fn each_item(items: impl Iterator<Item = Value>, out: &mut Sink) {
    for (i, item) in items.enumerate() {
        emit(&json_fields(&item), out, 1, &format!("request {}: ", i + 1));
    }
}

/// The canonical fields of one request, as text.
type Fields = Vec<(&'static str, Option<String>)>;

fn read_csv(input: impl std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(CsvRows::new(input));
    let headers = reader
        .headers()
        .map_err(|e| ImportError::of_csv(e).unwrap_or_else(|e| ImportError::Unreadable(format!("no CSV header: {e}"))))?
        .clone();
    let index = |name: &str| headers.iter().position(|h| h.trim_start_matches('\u{feff}').trim().eq_ignore_ascii_case(name));
    for required in ["request_created_at", "model"] {
        if index(required).is_none() {
            return Err(ImportError::Unreadable(format!("the header has no `{required}` column")));
        }
    }
    let columns: Vec<(&str, Option<usize>)> = COLUMNS.iter().map(|c| (*c, index(c))).collect();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) if record.iter().all(str::is_empty) => {}
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                if super::is_cut(&record) {
                    out.reject(line, super::cut_reason());
                    continue;
                }
                let text =
                    |name: &str| columns.iter().find(|(c, _)| *c == name).and_then(|(_, i)| record.get((*i)?)).map(str::to_owned);
                let properties = match text("request_properties").filter(|p| !p.is_empty()) {
                    None => Value::Null,
                    Some(p) => match serde_json::from_str(&p) {
                        Ok(v) => v,
                        Err(e) => {
                            out.reject(line, format!("`request_properties` is not JSON: {e}"));
                            continue;
                        }
                    },
                };
                let body_hash = text("request_body")
                    .filter(|b| !b.is_empty())
                    .map(|b| serde_json::from_str::<Value>(&b).map_or_else(|_| content_key(&[&b]), |v| body_hash(&v)));
                let fields = fields(
                    |name| match name {
                        "request_body_hash" => body_hash.clone(),
                        _ => text(name).filter(|v| !v.is_empty()),
                    },
                    &properties,
                );
                emit(&fields, out, line, "");
            }
            Err(e) => match ImportError::of_csv(e) {
                Ok(fatal) => return Err(fatal),
                Err(e) => out.reject(line, format!("unreadable CSV row: {e}")),
            },
        }
    }
}

/// The columns read from a CSV export.
const COLUMNS: [&str; 13] = [
    "response_id",
    "request_id",
    "request_created_at",
    "model",
    "provider",
    "prompt_tokens",
    "completion_tokens",
    "prompt_cache_read_tokens",
    "prompt_cache_write_tokens",
    "cost",
    "request_user_id",
    "request_properties",
    "request_body",
];

fn json_fields(item: &Value) -> Fields {
    let text = |key: &str| match item.get(key)? {
        Value::String(s) => Some(s.clone()),
        // Numbers keep their JSON text (`1.5e-05`), which `parse_usd` reads exactly.
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let properties = item.get("request_properties").or_else(|| item.get("properties")).cloned().unwrap_or(Value::Null);
    let body_hash = item.get("request_body").filter(|b| !b.is_null()).map(body_hash);
    fields(
        |name| match name {
            "cost" => text("cost").or_else(|| text("costUSD")),
            "request_body_hash" => body_hash.clone(),
            _ => text(name),
        },
        &properties,
    )
}

fn fields(text: impl Fn(&str) -> Option<String>, properties: &Value) -> Fields {
    let property = |names: &[&str]| -> Option<String> {
        let map = properties.as_object()?;
        map.iter().find_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            let k = k.strip_prefix("helicone-property-").unwrap_or(&k);
            names.contains(&k).then(|| v.as_str().map(str::to_owned)).flatten()
        })
    };
    let provider = text("provider").map(|p| p.to_ascii_lowercase());
    let count = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
    let (prompt, read, write) = (count("prompt_tokens"), count("prompt_cache_read_tokens"), count("prompt_cache_write_tokens"));
    // Anthropic's prompt_tokens leave the cache out; Apex's input includes it.
    let input = match (provider.as_deref(), prompt) {
        (Some("anthropic"), Some(p)) => Some((p + read.unwrap_or(0) + write.unwrap_or(0)).to_string()),
        _ => text("prompt_tokens"),
    };
    vec![
        ("request_id", text("response_id").or_else(|| text("request_id"))),
        ("date", text("request_created_at")),
        ("model", text("model")),
        ("provider", provider),
        ("input_tokens", input),
        ("output_tokens", text("completion_tokens")),
        ("cached_input_tokens", text("prompt_cache_read_tokens")),
        ("cache_write_tokens", text("prompt_cache_write_tokens")),
        ("cost", text("cost")),
        ("user", text("request_user_id").or_else(|| property(&["user"]))),
        ("feature", property(&["feature"])),
        ("project", property(&["project"])),
        ("environment", property(&["environment", "env"])),
        ("api_key", property(&["api_key", "api-key"])),
        ("request_hash", text("request_body_hash")),
    ]
}

/// Identical request bodies (exported with `--include-body`) hash alike: a repeat.
fn body_hash(body: &Value) -> String {
    content_key(&[&body.to_string()])
}

fn emit(fields: &Fields, out: &mut Sink, line: u64, at: &str) {
    let lookup = |name: &str| fields.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref());
    if lookup("request_id").is_none() {
        out.reject(line, format!("{at}no `response_id` or `request_id`"));
        return;
    }
    match parse_row(KEY_PREFIX, lookup) {
        Ok(r) => out.row(line, at, r),
        Err(reason) => out.reject(line, format!("{at}{reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format, ImportRow, Rejected};

    fn read(file: &str) -> (Vec<ImportRow>, Vec<Rejected>) {
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::HeliconeRequests, file.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        (rows, bad)
    }

    fn hashes(rows: &[ImportRow]) -> Vec<&str> {
        rows.iter().map(|r| r.request_hash.as_str()).collect()
    }

    #[test]
    fn identical_request_bodies_share_a_request_hash_in_json_and_in_csv() {
        let json = r#"[
            {"response_id":"a","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o","request_body":{"messages":[{"role":"user","content":"hi"}]}},
            {"response_id":"b","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o","request_body":{"messages":[{"role":"user","content":"hi"}]}},
            {"response_id":"c","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o","request_body":{"messages":[{"role":"user","content":"bye"}]}},
            {"response_id":"d","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"}
        ]"#;
        let (rows, bad) = read(json);
        assert!(bad.is_empty(), "{bad:?}");
        let h = hashes(&rows);
        assert!(!h[0].is_empty() && h[0] == h[1] && h[0] != h[2], "{h:?}");
        assert_eq!(h[3], "", "no body, no hash");

        let csv = "response_id,request_created_at,model,request_body\n\
                   a,2026-11-01T00:00:00Z,gpt-4o,\"{\"\"messages\"\":[{\"\"role\"\":\"\"user\"\",\"\"content\"\":\"\"hi\"\"}]}\"\n\
                   b,2026-11-01T00:00:00Z,gpt-4o,\"{\"\"messages\"\":[{\"\"role\"\":\"\"user\"\",\"\"content\"\":\"\"hi\"\"}]}\"\n\
                   c,2026-11-01T00:00:00Z,gpt-4o,not json\n\
                   d,2026-11-01T00:00:00Z,gpt-4o,\n";
        let (csv_rows, bad) = read(csv);
        assert!(bad.is_empty(), "{bad:?}");
        let c = hashes(&csv_rows);
        assert_eq!(c[0], h[0], "the CSV's body hashes as the JSON's does");
        assert!(c[1] == c[0] && !c[2].is_empty() && c[2] != c[0], "{c:?}");
        assert_eq!(c[3], "");
    }

    #[test]
    fn anthropic_input_adds_the_cache_reads_and_writes_helicone_counts_apart() {
        let line = |provider: &str, read: u64| {
            format!(
                r#"{{"response_id":"{provider}","request_created_at":"2026-11-01T00:00:00Z","model":"m","provider":"{provider}","prompt_tokens":100,"prompt_cache_read_tokens":{read},"prompt_cache_write_tokens":20,"completion_tokens":5}}"#
            )
        };
        let (rows, bad) = read(&format!("{}\n{}\n", line("ANTHROPIC", 1_000), line("openai", 10)));
        assert!(bad.is_empty(), "{bad:?}");
        let shape = |r: &ImportRow| (r.record.input_tokens, r.record.cached_input_tokens, r.record.cache_write_tokens);
        assert_eq!(shape(&rows[0]), (1_120, 1_000, 20));
        assert_eq!(rows[0].record.provider, "anthropic");
        // OpenAI's cached tokens are already inside prompt_tokens.
        assert_eq!(shape(&rows[1]), (100, 10, 20));
    }

    #[test]
    fn a_json_line_that_is_not_an_object_is_rejected_as_such_and_blank_csv_rows_are_skipped() {
        let line = r#"{"response_id":"a","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"}"#;
        let (rows, bad) = read(&format!("{line}\n[1, 2]\n"));
        assert_eq!(rows.len(), 1);
        assert_eq!(bad, [Rejected { line: 2, reason: "not a JSON object".into() }]);
        let (rows, bad) = read("request_created_at,response_id,model\n,,\n2026-11-01T00:00:00Z,r1,gpt-4o\n");
        assert_eq!((rows.len(), bad), (1, vec![]));
    }

    #[test]
    fn a_bad_request_of_a_json_array_is_named_by_its_position() {
        let json = r#"[{"response_id":"a","request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"},
                       {"request_created_at":"2026-11-01T00:00:00Z","model":"gpt-4o"},
                       {"response_id":"c","request_created_at":"never","model":"gpt-4o"}]"#;
        let (rows, bad) = read(json);
        assert_eq!(rows.len(), 1);
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason.as_str()).collect();
        assert!(reasons[0].starts_with("request 2: no `response_id`"), "{reasons:?}");
        assert!(reasons[1].starts_with("request 3: `date`"), "{reasons:?}");
    }
}

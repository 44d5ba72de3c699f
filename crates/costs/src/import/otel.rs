//! OpenTelemetry GenAI spans, as OTLP JSON (`ExportTraceServiceRequest`: one document, or
//! one per line). Spans carrying `gen_ai.*` usage attributes become rows; other spans of
//! the same traces are skipped. `traceId:spanId` identifies a span across imports.
//!
//! Attributes read: `gen_ai.response.model` (else `gen_ai.request.model`),
//! `gen_ai.provider.name` (else `gen_ai.system`), `gen_ai.usage.input_tokens` /
//! `output_tokens` (or the older `prompt_tokens` / `completion_tokens`), and the cached
//! part of the input from `gen_ai.usage.cache_read.input_tokens` (or
//! `gen_ai.usage.cache_read_input_tokens`), the part written to the cache from
//! `gen_ai.usage.cache_creation.input_tokens`, and the end user from `user.id` (or
//! `enduser.id`). The resource's `service.name` is the feature and
//! `deployment.environment` (or `deployment.environment.name`) both the project and the
//! environment tag.
use serde_json::Value;

use super::{json_documents, Format, ImportError, ImportRow, Importer, JsonDoc, Sink};
use crate::date::format_day;
use crate::records::UsageRecord;

pub(super) const IMPORTER: Importer = Importer {
    format: Format::OtelSpansJson,
    name: "otel_spans_json",
    aliases: &["otel", "otlp"],
    describes: "OpenTelemetry GenAI spans as OTLP JSON (one export request, or one per line)",
    detect: |h| h.json_with(&["\"resourceSpans\""]),
    read,
};

fn read(input: &mut dyn std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    // One export request, or one per line (JSON Lines).
    json_documents(input, "OTLP JSON", out, &mut |doc, out| {
        let (line, doc) = match doc {
            JsonDoc::Whole(doc) => (1, doc),
            JsonDoc::Line(line, doc) => (line, doc),
            JsonDoc::Entry(..) => {
                return Err(ImportError::Unreadable(format!(
                    "an OTLP JSON document larger than {} MiB: export JSON Lines, one request per line",
                    crate::limits::MAX_JSON_DOCUMENT_BYTES / (1024 * 1024)
                )))
            }
        };
        let resource_spans = doc["resourceSpans"]
            .as_array()
            .ok_or_else(|| ImportError::Unreadable(format!("line {line}: no `resourceSpans` (not an OTLP trace export)")))?;
        for rs in resource_spans {
            let resource = attributes(&rs["resource"]["attributes"]);
            let spans =
                rs["scopeSpans"].as_array().into_iter().flatten().flat_map(|ss| ss["spans"].as_array().into_iter().flatten());
            for span in spans {
                match span_row(span, &resource) {
                    Ok(Some(r)) => out.row(line, "", r),
                    Ok(None) => {}
                    Err(reason) => out.reject(line, reason),
                }
            }
        }
        Ok(())
    })
}

/// OTLP attributes as `(key, value)`; values keep their JSON form (`intValue` is a string).
fn attributes(list: &Value) -> Vec<(String, Value)> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let key = a["key"].as_str()?.to_owned();
            let v = &a["value"];
            let value = ["stringValue", "intValue", "doubleValue", "boolValue"].iter().find_map(|k| v.get(*k).cloned())?;
            Some((key, value))
        })
        .collect()
}

fn span_row(span: &Value, resource: &[(String, Value)]) -> Result<Option<ImportRow>, String> {
    let attrs = attributes(&span["attributes"]);
    let get = |keys: &[&str]| keys.iter().find_map(|k| attrs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()));
    let text = |keys: &[&str]| get(keys).and_then(|v| v.as_str().map(str::to_owned));
    let count = |keys: &[&str]| -> Result<Option<u64>, String> {
        match get(keys) {
            None => Ok(None),
            Some(Value::String(s)) => {
                s.parse().map(Some).map_err(|_| format!("`{}` is not a count: `{}`", keys[0], super::clip(&s)))
            }
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| format!("`{}` is not a count: `{n}`", keys[0])),
            Some(other) => Err(format!("`{}` is not a count: `{other}`", keys[0])),
        }
    };
    let input = count(&["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"])?;
    let output = count(&["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"])?;
    if input.is_none() && output.is_none() {
        return Ok(None); // not a GenAI call (or one without usage): nothing to bill
    }
    let name = span["name"].as_str().unwrap_or("?");
    let model = text(&["gen_ai.response.model", "gen_ai.request.model"])
        .ok_or_else(|| format!("span `{}`: no `gen_ai.response.model` or `gen_ai.request.model`", super::clip(name)))?;
    let start = match &span["startTimeUnixNano"] {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| format!("span `{}`: no `startTimeUnixNano`", super::clip(name)))?;
    let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
    let cached = count(&["gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"])?.unwrap_or(0);
    let cache_write =
        count(&["gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"])?.unwrap_or(0);
    if cached.saturating_add(cache_write) > input {
        return Err(format!("span `{}`: cache reads and writes exceed input tokens", super::clip(name)));
    }
    let resource_text = |key: &str| resource.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_str().map(str::to_owned));
    let record = UsageRecord {
        day: format_day((start / 1_000_000_000 / 86_400) as i64),
        provider: text(&["gen_ai.provider.name", "gen_ai.system"]).unwrap_or_else(|| "unknown".into()),
        model,
        feature: resource_text("service.name").unwrap_or_else(|| "unattributed".into()),
        project: resource_text("deployment.environment").unwrap_or_else(|| "default".into()),
        requests: 1,
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: cache_write,
        cost: None,
        user: text(&["user.id", "enduser.id"]).unwrap_or_default(),
        environment: resource_text("deployment.environment.name")
            .or_else(|| resource_text("deployment.environment"))
            .unwrap_or_default(),
        ..Default::default()
    };
    let key = format!("otel:{}:{}", span["traceId"].as_str().unwrap_or(""), span["spanId"].as_str().unwrap_or(name));
    Ok(Some(ImportRow { record, key, request_hash: String::new() }))
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};

    fn span(id: &str, attrs: &str) -> String {
        format!(
            r#"{{"traceId":"t1","spanId":"{id}","name":"chat","startTimeUnixNano":"1793577600123000000","endTimeUnixNano":"1793577601000000000","attributes":[{attrs}]}}"#
        )
    }

    fn doc(spans: &[String]) -> String {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"support-bot"}}}},{{"key":"deployment.environment","value":{{"stringValue":"prod"}}}}]}},"scopeSpans":[{{"scope":{{"name":"genai"}},"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        )
    }

    #[test]
    fn a_start_time_may_be_a_json_number() {
        let s = span("s1", r#"{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"3"}}"#)
            .replace(r#""startTimeUnixNano":"1793577600123000000""#, r#""startTimeUnixNano":1793577600123000000"#);
        let (mut days, mut bad) = (Vec::new(), Vec::new());
        import(Format::OtelSpansJson, doc(&[s]).as_bytes(), |r| days.push(r.record.day), |r| bad.push(r)).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(days, ["2026-11-02"]);
    }

    #[test]
    fn cache_reads_and_writes_are_kept_apart() {
        let s = span(
            "s1",
            r#"{"key":"gen_ai.request.model","value":{"stringValue":"claude-3-5-sonnet"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"1000"}},{"key":"gen_ai.usage.cache_read_input_tokens","value":{"intValue":"300"}},{"key":"gen_ai.usage.cache_creation.input_tokens","value":{"intValue":"200"}}"#,
        );
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::OtelSpansJson, doc(&[s]).as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let r = &rows[0].record;
        assert_eq!((r.input_tokens, r.cached_input_tokens, r.cache_write_tokens, r.output_tokens), (1000, 300, 200, 0));
    }

    #[test]
    fn genai_spans_become_rows_and_other_spans_are_skipped() {
        let good = span(
            "s1",
            r#"{"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},{"key":"gen_ai.response.model","value":{"stringValue":"gpt-4o-2024-08-06"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"1200"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"80"}},{"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":"200"}}"#,
        );
        let http = span("s2", r#"{"key":"http.method","value":{"stringValue":"POST"}}"#);
        let no_model = span("s3", r#"{"key":"gen_ai.usage.input_tokens","value":{"intValue":"5"}}"#);
        let text = doc(&[good, http, no_model]);
        assert_eq!(Format::detect(text.as_bytes()), Some(Format::OtelSpansJson));
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::OtelSpansJson, text.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0].record;
        assert_eq!((r.day.as_str(), r.provider.as_str(), r.model.as_str()), ("2026-11-02", "openai", "gpt-4o-2024-08-06"));
        assert_eq!((r.feature.as_str(), r.project.as_str()), ("support-bot", "prod"));
        assert_eq!((r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests), (1200, 200, 80, 1));
        assert_eq!(rows[0].key, "otel:t1:s1");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("no `gen_ai.response.model`"));
    }

    #[test]
    fn json_lines_of_export_requests_are_accepted() {
        let a = doc(&[span(
            "a",
            r#"{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o-mini"}},{"key":"gen_ai.usage.prompt_tokens","value":{"intValue":10}}"#,
        )]);
        let b = doc(&[span(
            "b",
            r#"{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o-mini"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"3"}}"#,
        )]);
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::OtelSpansJson, format!("{a}\n{b}\n").as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert_eq!(rows.len(), 2, "{bad:?}");
        assert_eq!((rows[0].record.input_tokens, rows[1].record.output_tokens), (10, 3));
    }
}

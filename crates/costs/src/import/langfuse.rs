//! Langfuse observations: the `data` array of `GET /api/public/observations` (or a bare
//! array, or JSON Lines of observations). Each `GENERATION` becomes a one-request row; its
//! `id` identifies it across imports; Langfuse's computed cost is kept as the billed cost.
//!
//! Fields read: `startTime` (UTC day), `model`, `usageDetails.input` / `.output` (else the
//! older `usage.input` / `usage.output`, or `promptTokens` / `completionTokens`), cached
//! input from `usageDetails.input_cached_tokens` or `cache_read_input_tokens`, cost from
//! `costDetails.total` (else `calculatedTotalCost`), the feature from `name`, the
//! project and the environment tag from `environment`, the end user from `userId` (where
//! the export joined it from the trace), cache writes from
//! `usageDetails.cache_creation_input_tokens` and reasoning from
//! `usageDetails.output_reasoning_tokens`.
use serde_json::Value;

use super::generic_csv::parse_row;
use super::{json_documents, Format, ImportError, Importer, JsonDoc, Sink};

const KEY_PREFIX: &str = "langfuse:";

pub(super) const IMPORTER: Importer = Importer {
    format: Format::LangfuseObservations,
    name: "langfuse_observations",
    aliases: &["langfuse"],
    describes: "Langfuse observations, `GET /api/public/observations` (JSON or JSONL; generations are read)",
    detect: |h| h.json_with(&["\"GENERATION\"", "\"startTime\""]),
    read,
};

fn read(input: &mut dyn std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    json_documents(input, "a Langfuse export", out, &mut |doc, out| {
        match doc {
            JsonDoc::Whole(Value::Object(mut page)) => match page.remove("data") {
                Some(Value::Array(items)) => {
                    for (i, o) in items.iter().enumerate() {
                        observation(i + 1, 1, o, out);
                    }
                }
                _ => return Err(ImportError::Unreadable("a Langfuse page has a `data` array".into())),
            },
            JsonDoc::Whole(Value::Array(items)) => {
                for (i, o) in items.iter().enumerate() {
                    observation(i + 1, 1, o, out);
                }
            }
            JsonDoc::Whole(_) => return Err(ImportError::Unreadable("not a Langfuse observations export".into())),
            // JSON Lines: one observation per line.
            JsonDoc::Line(line, o) => observation(line as usize, line, &o, out),
            JsonDoc::Entry(i, o) => observation(i, 1, &o, out),
        }
        Ok(())
    })
}

/// The `i`th observation (found at `line`): a row if it is a generation.
fn observation(i: usize, line: u64, o: &Value, out: &mut Sink) {
    {
        if o["type"].as_str().is_some_and(|t| t != "GENERATION") {
            return; // spans and events carry no model usage
        }
        let first = |paths: &[&[&str]]| -> Option<String> {
            paths.iter().find_map(|path| {
                let v = path.iter().try_fold(o, |v, key| v.get(*key))?;
                match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            })
        };
        let fields = [
            ("date", first(&[&["startTime"]])),
            ("model", first(&[&["model"]])),
            ("input_tokens", first(&[&["usageDetails", "input"], &["usage", "input"], &["promptTokens"]])),
            ("output_tokens", first(&[&["usageDetails", "output"], &["usage", "output"], &["completionTokens"]])),
            (
                "cached_input_tokens",
                first(&[&["usageDetails", "input_cached_tokens"], &["usageDetails", "cache_read_input_tokens"]]),
            ),
            ("cost", first(&[&["costDetails", "total"], &["calculatedTotalCost"]])),
            ("feature", first(&[&["name"]])),
            ("project", first(&[&["environment"]])),
            ("environment", first(&[&["environment"]])),
            ("user", first(&[&["userId"]])),
            (
                "cache_write_tokens",
                first(&[&["usageDetails", "cache_creation_input_tokens"], &["usageDetails", "input_cache_creation"]]),
            ),
            ("reasoning_tokens", first(&[&["usageDetails", "output_reasoning_tokens"], &["usageDetails", "output_reasoning"]])),
            ("request_id", first(&[&["id"]])),
        ];
        let lookup = |name: &str| fields.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref());
        match parse_row(KEY_PREFIX, lookup) {
            Ok(r) => out.row(line, &format!("observation {i}: "), r),
            Err(reason) => out.reject(line, format!("observation {i}: {reason}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};
    use crate::money::Money;

    const PAGE: &str = r#"{"data":[
      {"id":"obs-1","traceId":"t1","type":"GENERATION","name":"support-answer","startTime":"2026-11-03T08:00:01.000Z",
       "model":"gpt-4o-mini","environment":"production",
       "usageDetails":{"input":1200,"output":300,"input_cached_tokens":200,"total":1500},
       "costDetails":{"input":0.00018,"output":0.00018,"total":0.00036}},
      {"id":"obs-2","traceId":"t1","type":"SPAN","name":"retrieval","startTime":"2026-11-03T08:00:00.000Z"},
      {"id":"obs-3","type":"GENERATION","name":"summarize","startTime":"2026-11-03T09:00:00Z","model":"gpt-4o",
       "usage":{"input":100,"output":10,"unit":"TOKENS"},"calculatedTotalCost":1.5e-4},
      {"id":"obs-4","type":"GENERATION","startTime":"2026-11-03T09:00:00Z","usage":{"input":1,"output":1}}
    ],"meta":{"page":1,"limit":50,"totalItems":4,"totalPages":1}}"#;

    #[test]
    fn generations_become_rows_spans_are_skipped_and_costs_kept() {
        assert_eq!(Format::detect(PAGE.as_bytes()), Some(Format::LangfuseObservations));
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::LangfuseObservations, PAGE.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert_eq!(rows.len(), 2);
        let r = &rows[0].record;
        assert_eq!(
            (r.day.as_str(), r.model.as_str(), r.feature.as_str(), r.project.as_str()),
            ("2026-11-03", "gpt-4o-mini", "support-answer", "production")
        );
        assert_eq!((r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests), (1200, 200, 300, 1));
        assert_eq!((rows[0].key.as_str(), r.cost), ("langfuse:obs-1", Some(Money(360))));
        assert_eq!(rows[1].record.cost, Some(Money(150)));
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.starts_with("observation 4: `model` is empty"), "{bad:?}");
    }

    #[test]
    fn an_array_export_names_observations_by_position_as_a_page_does() {
        let data = &PAGE[PAGE.find('[').unwrap()..PAGE.find(r#","meta""#).unwrap()];
        let mut bad = Vec::new();
        import(Format::LangfuseObservations, data.as_bytes(), |_| {}, |r| bad.push(r)).unwrap();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.starts_with("observation 4: `model` is empty"), "{bad:?}");
    }
}

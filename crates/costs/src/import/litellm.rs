//! LiteLLM proxy spend logs (the `LiteLLM_SpendLogs` table): one row per request, as a CSV
//! export of the table or as the JSON array its `/spend/logs` API returns. `request_id`
//! identifies a row across imports; `spend` is what LiteLLM billed.
use serde_json::Value;

use super::generic_csv::{self, parse_row, Aliases};
use super::{Format, ImportError, Importer, Sink};

const KEY_PREFIX: &str = "litellm:";

/// The canonical field each LiteLLM field feeds (JSON keys keep LiteLLM's case).
const FIELDS: [(&str, &str); 12] = [
    ("date", "startTime"),
    ("model", "model"),
    ("provider", "custom_llm_provider"),
    ("input_tokens", "prompt_tokens"),
    ("output_tokens", "completion_tokens"),
    ("cost", "spend"),
    ("feature", "model_group"),
    ("project", "team_id"),
    ("request_id", "request_id"),
    ("user", "end_user"),
    ("api_key", "api_key"),
    ("request_hash", "cache_key"),
];

/// The same, for CSV headers (matched lower-cased).
const COLUMNS: Aliases = &[
    ("date", &["starttime"]),
    ("model", &["model"]),
    ("provider", &["custom_llm_provider"]),
    ("input_tokens", &["prompt_tokens"]),
    ("output_tokens", &["completion_tokens"]),
    ("cost", &["spend"]),
    ("feature", &["model_group"]),
    ("project", &["team_id"]),
    ("request_id", &["request_id"]),
    ("user", &["end_user", "user"]),
    ("api_key", &["api_key"]),
    ("request_hash", &["cache_key"]),
];

pub(super) const IMPORTER: Importer = Importer {
    format: Format::LitellmSpendLogs,
    name: "litellm_spend_logs",
    aliases: &["litellm"],
    describes: "LiteLLM proxy spend logs (a `LiteLLM_SpendLogs` CSV, or the `/spend/logs` JSON)",
    // Ahead of Helicone for a CSV header, behind it for JSON: a JSON start with Helicone's
    // keys is Helicone's (its exports can quote any text in their request bodies).
    detect: |h| {
        (h.json_with(&["\"request_id\"", "\"spend\"", "\"startTime\""]) && !super::helicone::json_export(h))
            || h.csv_with(&[&["request_id"], &["spend"], &["starttime"]])
    },
    read,
};

fn read(input: &mut dyn std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    let mut input = std::io::BufReader::new(input);
    let first = super::first_byte(&mut input)?;
    if first != Some(b'[') {
        return generic_csv::read(COLUMNS, KEY_PREFIX, input, out);
    }
    // Streamed entry by entry: the array is never held whole.
    super::json_entries(input, "a LiteLLM spend log array", out, &mut |i, log, out| {
        // Numbers keep their JSON text (`1.5e-05`), which `parse_usd` reads exactly.
        let text = |key: &str| match log.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let fields: Vec<(&str, Option<String>)> = FIELDS.iter().map(|(name, key)| (*name, text(key))).collect();
        let lookup = |name: &str| fields.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref());
        match parse_row(KEY_PREFIX, lookup) {
            Ok(r) => out.row(1, &format!("entry {i}: "), r),
            Err(reason) => out.reject(1, format!("entry {i}: {reason}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};
    use crate::money::Money;

    const CSV: &str = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,custom_llm_provider,user,team_id\n\
chatcmpl-1,acompletion,hashed,0.00375,1500,1000,500,2026-11-02 09:15:01.123,2026-11-02 09:15:02.900,gpt-4o-mini,support-bot,openai,u1,team-a\n\
chatcmpl-2,acompletion,hashed,1.5e-05,30,20,10,2026-11-02 09:16:00.000,2026-11-02 09:16:00.500,claude-haiku-4-5,,anthropic,u2,\n\
chatcmpl-3,acompletion,hashed,abc,30,20,10,2026-11-02 09:16:00.000,2026-11-02 09:16:00.500,gpt-4o,,openai,u2,\n";

    #[test]
    fn spend_log_csv_keeps_litellm_spend_and_dedupes_by_request_id() {
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        assert_eq!(Format::detect(CSV.as_bytes()), Some(Format::LitellmSpendLogs));
        import(Format::LitellmSpendLogs, CSV.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, "litellm:chatcmpl-1");
        let r = &rows[0].record;
        assert_eq!(
            (r.day.as_str(), r.model.as_str(), r.feature.as_str(), r.project.as_str()),
            ("2026-11-02", "gpt-4o-mini", "support-bot", "team-a")
        );
        assert_eq!((r.input_tokens, r.output_tokens, r.requests, r.cost), (1000, 500, 1, Some(Money(3_750))));
        assert_eq!(rows[1].record.cost, Some(Money(15)));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4);
    }

    #[test]
    fn spend_log_json_array_reads_the_same_fields() {
        let json = r#"[{"request_id":"r1","spend":0.00375,"prompt_tokens":1000,"completion_tokens":500,
            "startTime":"2026-11-02T09:15:01.123Z","model":"gpt-4o-mini","model_group":"support-bot","custom_llm_provider":"openai"},
            {"request_id":"r2","spend":0.1,"startTime":"not a time","model":"gpt-4o"}]"#;
        assert_eq!(Format::detect(json.as_bytes()), Some(Format::LitellmSpendLogs));
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::LitellmSpendLogs, json.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].key.as_str(), rows[0].record.cost), ("litellm:r1", Some(Money(3_750))));
        assert!(bad[0].reason.starts_with("entry 2:"), "{bad:?}");
    }
}

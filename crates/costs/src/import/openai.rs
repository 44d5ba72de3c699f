//! OpenAI's Usage API, completions endpoint: a page of time buckets, each with
//! `organization.usage.completions.result` entries (grouped by model, project, key, …).
//! Line numbers are not meaningful in JSON; a rejected result is reported by its position
//! (`bucket N, result M`) in `reason` and the line of the document's start.
use serde::Deserialize;

use super::{Format, ImportError, ImportRow, Importer, Sink};
use crate::date::format_day;
use crate::limits::MAX_JSON_DOCUMENT_BYTES;
use crate::records::UsageRecord;

#[derive(Deserialize)]
struct Page {
    data: Vec<Bucket>,
}

#[derive(Deserialize)]
struct Bucket {
    start_time: i64,
    #[serde(default)]
    results: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Completions {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    input_cached_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    num_model_requests: u64,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    batch: Option<bool>,
}

pub(super) const IMPORTER: Importer = Importer {
    format: Format::OpenaiUsageJson,
    name: "openai_usage_json",
    aliases: &["openai"],
    describes: "a page of OpenAI's Usage API, `GET /v1/organization/usage/completions` (JSON)",
    detect: |h| h.json_with(&["organization.usage.completions"]),
    read,
};

fn read(input: &mut dyn std::io::Read, out: &mut Sink) -> Result<(), ImportError> {
    // A page holds a month of daily buckets at most: a few KiB. It is parsed whole, so
    // its size is bounded.
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(input, MAX_JSON_DOCUMENT_BYTES as u64 + 1), &mut text)
        .map_err(|e| ImportError::io(e, "cannot read the OpenAI usage page"))?;
    if text.len() > MAX_JSON_DOCUMENT_BYTES {
        return Err(ImportError::Unreadable(format!(
            "an OpenAI usage page is larger than {} MiB: import the pages one by one",
            MAX_JSON_DOCUMENT_BYTES / (1024 * 1024)
        )));
    }
    let page: Page =
        serde_json::from_slice(&text).map_err(|e| ImportError::Unreadable(format!("not an OpenAI usage page: {e}")))?;
    drop(text);
    for (b, bucket) in page.data.iter().enumerate() {
        let day = format_day(bucket.start_time.div_euclid(86_400));
        for (r, raw) in bucket.results.iter().enumerate() {
            let at = format!("bucket {}, result {}", b + 1, r + 1);
            if raw.get("object").and_then(|o| o.as_str()) != Some("organization.usage.completions.result") {
                out.reject(1, format!("{at}: not a completions usage result"));
                continue;
            }
            let c: Completions = match serde_json::from_value(raw.clone()) {
                Ok(c) => c,
                Err(e) => {
                    out.reject(1, format!("{at}: {e}"));
                    continue;
                }
            };
            let Some(model) = c.model.clone() else {
                out.reject(1, format!("{at}: no `model` (group the export by model)"));
                continue;
            };
            if c.input_cached_tokens > c.input_tokens {
                out.reject(1, format!("{at}: cached tokens exceed input tokens"));
                continue;
            }
            let project = c.project_id.clone().unwrap_or_else(|| "default".into());
            let key = format!(
                "openai:{}:{}:{}:{}:{}:{}",
                bucket.start_time,
                model,
                project,
                c.api_key_id.as_deref().unwrap_or(""),
                c.user_id.as_deref().unwrap_or(""),
                c.batch.map_or("", |b| if b { "batch" } else { "sync" }),
            );
            let record = UsageRecord {
                day: day.clone(),
                provider: "openai".into(),
                model,
                feature: c.api_key_id.clone().unwrap_or_else(|| "unattributed".into()),
                project,
                requests: c.num_model_requests,
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
                cached_input_tokens: c.input_cached_tokens,
                cost: None,
                user: c.user_id.unwrap_or_default(),
                api_key: c.api_key_id.unwrap_or_default(),
                ..Default::default()
            };
            out.row(1, &format!("{at}: "), ImportRow { record, key, request_hash: String::new() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};

    const PAGE: &str = r#"{"object":"page","has_more":false,"next_page":null,"data":[
      {"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[
        {"object":"organization.usage.completions.result","input_tokens":1200000,"output_tokens":300000,
         "input_cached_tokens":200000,"num_model_requests":900,"project_id":"proj_a","user_id":null,
         "api_key_id":"key_support","model":"gpt-4o-2024-08-06","batch":false},
        {"object":"organization.usage.completions.result","input_tokens":5,"output_tokens":1,
         "input_cached_tokens":9,"num_model_requests":1,"model":"gpt-4o-mini"}]},
      {"object":"bucket","start_time":1793577600,"end_time":1793664000,"results":[
        {"object":"organization.usage.completions.result","input_tokens":10,"output_tokens":2,
         "input_cached_tokens":0,"num_model_requests":1,"model":null}]}]}"#;

    #[test]
    fn a_bucket_whose_input_was_all_cached_is_kept() {
        let page = r#"{"object":"page","data":[{"object":"bucket","start_time":1793491200,"results":[
            {"object":"organization.usage.completions.result","input_tokens":10,"output_tokens":2,"input_cached_tokens":10,"num_model_requests":1,"model":"gpt-4o"}]}]}"#;
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::OpenaiUsageJson, page.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert!(bad.is_empty(), "{:?}", bad.iter().map(|b| &b.reason).collect::<Vec<_>>());
        assert_eq!((rows[0].record.input_tokens, rows[0].record.cached_input_tokens), (10, 10));
        assert_eq!(rows[0].record.provider, "openai");
    }

    #[test]
    fn buckets_become_daily_rows_and_bad_results_are_reported() {
        let (mut rows, mut bad) = (Vec::new(), Vec::new());
        import(Format::OpenaiUsageJson, PAGE.as_bytes(), |r| rows.push(r), |r| bad.push(r)).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0].record;
        assert_eq!(r.day, "2026-11-01"); // 1793491200 is 2026-11-01T00:00:00Z
        assert_eq!((r.model.as_str(), r.project.as_str(), r.feature.as_str()), ("gpt-4o-2024-08-06", "proj_a", "key_support"));
        assert_eq!((r.requests, r.input_tokens, r.cached_input_tokens, r.output_tokens), (900, 1_200_000, 200_000, 300_000));
        assert_eq!(bad.len(), 2);
        assert!(bad[0].reason.starts_with("bucket 1, result 2"));
        assert!(bad[1].reason.contains("no `model`"));
    }
}

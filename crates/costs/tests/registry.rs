//! The importer registry (`apex_costs::import::IMPORTERS`) is the one list of formats:
//! names, aliases, detection and the docs all agree with it.
use std::collections::HashSet;

use apex_costs::import::{formats_markdown, importers, open, Format};

fn read(relative: &str) -> String {
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_docs_list_every_format() {
    for doc in ["../../README.md", "../../docs/cost-analysis.md"] {
        let text = read(doc);
        let missing: Vec<&str> = importers().iter().map(|i| i.name).filter(|name| !text.contains(&format!("`{name}`"))).collect();
        assert!(missing.is_empty(), "{doc} does not list the format(s) {missing:?}");
    }
}

#[test]
fn every_name_and_alias_parses_back_to_its_format_and_none_is_taken_twice() {
    let mut seen = HashSet::new();
    let mut formats = HashSet::new();
    for i in importers() {
        assert!(formats.insert(i.format), "{:?} is registered twice", i.format);
        assert_eq!(i.format.name(), i.name);
        assert!(std::ptr::eq(i.format.importer(), *i));
        for name in std::iter::once(&i.name).chain(i.aliases) {
            assert!(seen.insert(*name), "`{name}` names two formats");
            assert_eq!(Format::parse(name), Some(i.format), "`{name}`");
        }
        assert!(!i.describes.is_empty() && !i.describes.contains('\n'), "{}: one line of description", i.name);
    }
    assert_eq!(Format::parse("nope"), None);
    let names: Vec<&str> = importers().iter().map(|i| i.name).collect();
    assert_eq!(Format::names(), names.join(", "));
}

/// The names are the wire format (the import report's `format`): they never change.
#[test]
fn the_wire_names_stay() {
    let wire = [
        (Format::GenericCsv, "generic_csv"),
        (Format::OpenaiUsageJson, "openai_usage_json"),
        (Format::OpenaiUsageCsv, "openai_usage_csv"),
        (Format::OpenaiCostCsv, "openai_cost_csv"),
        (Format::HeliconeRequests, "helicone_requests"),
        (Format::LitellmSpendLogs, "litellm_spend_logs"),
        (Format::OtelSpansJson, "otel_spans_json"),
        (Format::LangfuseObservations, "langfuse_observations"),
    ];
    for (format, name) in wire {
        assert_eq!(serde_json::to_value(format).unwrap(), name);
        assert_eq!(serde_json::from_value::<Format>(name.into()).unwrap(), format);
        assert!(importers().iter().any(|i| std::ptr::eq(*i, format.importer())), "{name} is not in IMPORTERS");
    }
    assert_eq!(wire.len(), importers().len(), "a format is missing from this list");
    assert!(serde_json::from_value::<Format>("csv".into()).is_err(), "aliases are for people, not the wire");
}

#[test]
fn every_fixture_is_detected_as_its_format() {
    let fixtures = [
        ("tests/fixtures/openai_usage.csv", Format::OpenaiUsageCsv),
        ("tests/fixtures/openai_costs.csv", Format::OpenaiCostCsv),
        ("tests/fixtures/helicone.csv", Format::HeliconeRequests),
        ("tests/fixtures/helicone.jsonl", Format::HeliconeRequests),
        ("../cli/tests/fixtures/usage.csv", Format::GenericCsv),
    ];
    let listed: HashSet<&str> = fixtures.iter().map(|(path, _)| *path).collect();
    for dir in ["tests/fixtures", "../cli/tests/fixtures"] {
        for entry in std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap() {
            let path = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(listed.contains(path.as_str()), "{path}: add it to this list with its format");
        }
    }
    for (path, format) in fixtures {
        let bytes = read(path).into_bytes();
        assert_eq!(Format::detect(&bytes), Some(format), "{path}");
        let opened = open(std::io::Cursor::new(bytes), None, u64::MAX).unwrap();
        assert_eq!(opened.format, format, "{path}, opened");
    }
}

/// Where two rules overlap, the order of the registry decides, as it always has.
#[test]
fn overlapping_rules_keep_their_precedence() {
    // A CSV header of both LiteLLM's and Helicone's columns is LiteLLM's…
    let csv = b"request_id,spend,startTime,request_created_at,model\n";
    assert_eq!(Format::detect(csv), Some(Format::LitellmSpendLogs));
    // …and one of the OpenAI usage export's and Helicone's is OpenAI's…
    let csv = b"start_time,num_model_requests,model,request_created_at,response_id\n";
    assert_eq!(Format::detect(csv), Some(Format::OpenaiUsageCsv));
    // …but JSON with both's keys is Helicone's.
    let json = br#"[{"request_id":"r","spend":1,"startTime":"x","request_created_at":"y","response_id":"z"}]"#;
    assert_eq!(Format::detect(json), Some(Format::HeliconeRequests));
    // Langfuse's keys win over LiteLLM's.
    let json = br#"[{"request_id":"r","spend":1,"startTime":"x","type":"GENERATION"}]"#;
    assert_eq!(Format::detect(json), Some(Format::LangfuseObservations));
    // JSON is never read as CSV, whatever its text.
    assert_eq!(Format::detect(br#"["date,model"]"#), None);
}

#[test]
fn the_markdown_list_has_one_line_per_format() {
    let list = formats_markdown();
    assert_eq!(list.lines().count(), importers().len());
    for (line, i) in list.lines().zip(importers()) {
        assert!(line.starts_with(&format!("- **{}**", i.name)) && line.ends_with(i.describes), "{line}");
        for alias in i.aliases {
            assert!(line.contains(&format!("`{alias}`")), "{line}");
        }
    }
}

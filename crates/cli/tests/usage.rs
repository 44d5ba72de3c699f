//! Usage import over REST, then the golden path analyzes the user's own data.
mod common;

use std::collections::HashSet;
use std::io::Write as _;

use common::*;
use serde_json::{json, Value};

/// Hand-checked figures. Rows with `cost_usd` keep it; the gpt-4o-mini row is priced from
/// the catalog: 2,000,000 input × $0.15/M + 1,000,000 output × $0.60/M = $0.90.
const CSV: &str = "date,model,provider,input_tokens,output_tokens,cached_input_tokens,requests,cost_usd,feature,project\n\
2026-11-01,gpt-4o,openai,100000,20000,0,50,1200.00,support-chat,web\n\
2026-11-02,gpt-4o,openai,100000,20000,0,50,1300.50,support-chat,web\n\
2026-11-02,claude-3-5-sonnet,anthropic,50000,5000,0,20,400.25,nightly-summaries,batch\n\
2026-11-03,gpt-4o-mini,openai,2000000,1000000,0,100,,classification,web\n\
2026-11-03,gpt-4o,openai,oops,1,0,1,1,support-chat,web\n\
2026-11-40,gpt-4o,openai,1,1,0,1,1,support-chat,web\n";
const TOTAL: &str = "$2,901.65"; // 1200.00 + 1300.50 + 400.25 + 0.90

async fn import(app: &TestApp, token: &str, body: Vec<u8>, query: &str) -> (u16, Value) {
    let r =
        http_client().post(app.http(&format!("/api/usage/import{query}"))).bearer_auth(token).body(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Every `$…` figure in `text`.
fn dollar_figures(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('$') {
        let end = bytes[i + 1..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b',' || *b == b'.'))
            .map_or(text.len(), |p| i + 1 + p);
        let fig = text[i..end].trim_end_matches(['.', ',']);
        if fig.len() > 1 {
            out.push(fig.to_owned());
        }
    }
    out
}

/// Every money amount the tools returned this run, as the report would print it, plus
/// every `$…` figure inside their text fields.
fn tool_figures(events: &[Value]) -> HashSet<String> {
    fn walk(v: &Value, out: &mut HashSet<String>) {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    out.insert(apex_costs::Money(i).to_string());
                }
            }
            Value::String(s) => out.extend(dollar_figures(s)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    for e in events.iter().filter(|e| e["type"] == "tool_completed") {
        walk(&e["result"], &mut out);
    }
    out
}

#[tokio::test]
async fn imported_usage_is_what_the_agents_analyze() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = app.token("finance@acme");

    let (status, report) = import(&app, &token, CSV.as_bytes().to_vec(), "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["format"], "generic_csv");
    assert_eq!(report["imported"], 4);
    assert_eq!(report["rejected_count"], 2);
    let lines: Vec<u64> = report["rejected"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [6, 7]);

    // Importing the same file again changes nothing.
    let (_, again) = import(&app, &token, CSV.as_bytes().to_vec(), "?format=generic_csv").await;
    assert_eq!((again["imported"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(4)));

    let (status, summary) = app.get("/api/usage/summary?group_by=feature", &token).await;
    assert_eq!(status, 200);
    assert_eq!(summary["total_display"], TOTAL);
    assert_eq!(summary["groups"][0]["key"], "support-chat");
    assert_eq!(summary["groups"][0]["cost"], 2_500_500_000_i64);
    let (_, ranged) = app.get("/api/usage/summary?from=2026-11-02&to=2026-11-02", &token).await;
    assert_eq!(ranged["total"], 1_700_750_000_i64);

    let mut c = connect(&app, By::Header(token.clone())).await;
    c.ask("Analyze my AI costs", None).await;
    let events = c.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    assert!(answer.contains(&format!("Your AI spend: {TOTAL}")), "{answer}");
    assert!(answer.contains("| gpt-4o | $2,500.50 |"), "the top driver: {answer}");
    assert!(!answer.contains("demo dataset"), "these are the user's own figures");
    assert!(!answer.contains("No usage data"));
    // 1,200.00 + 1,300.50 + 400.25 billed, against $1.13 at list price for the same tokens.
    assert!(answer.contains("3 records carry the cost your provider billed, $2,900.75 in all"), "{answer}");
    assert!(answer.contains("list price for the same tokens ($1.13)"), "{answer}");
    // Every dollar figure in the answer was computed by a tool of this run.
    let computed = tool_figures(&events);
    let figures = dollar_figures(&answer);
    assert!(figures.len() >= 8, "the answer is substantive: {figures:?}");
    for figure in figures {
        assert!(computed.contains(&figure), "{figure} is not in any tool result of the run");
    }

    // Another user sees none of it.
    let other = app.token("someone-else");
    let (_, theirs) = app.get("/api/usage/summary", &other).await;
    assert_eq!(theirs["records"], 0);
    let mut o = connect(&app, By::Header(other)).await;
    o.ask("Analyze my AI costs", None).await;
    let theirs = assert_golden_run(&o.events_until_terminal().await);
    assert!(theirs.starts_with("## No usage data yet"), "without an import there is nothing to analyze: {theirs}");

    // Deleting removes the user's data.
    let r = http_client().delete(app.http("/api/usage")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 4);
    assert_eq!(app.get("/api/usage/summary", &token).await.1["records"], 0);
}

#[tokio::test]
async fn openai_usage_json_is_detected_even_gzipped() {
    let app = spawn_app().await;
    let token = app.token("ops");
    let page = json!({"object": "page", "has_more": false, "data": [
        {"object": "bucket", "start_time": 1793491200, "end_time": 1793577600, "results": [
            {"object": "organization.usage.completions.result", "input_tokens": 4_000_000, "output_tokens": 1_000_000,
             "input_cached_tokens": 0, "num_model_requests": 1000, "project_id": "proj_1", "api_key_id": "key_a",
             "user_id": null, "model": "gpt-4o-2024-08-06", "batch": false}]}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(page.to_string().as_bytes()).unwrap();
    let (status, report) = import(&app, &token, gz.finish().unwrap(), "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["format"].as_str(), report["imported"].as_u64()), (Some("openai_usage_json"), Some(1)));
    // 4M input × $2.50/M + 1M output × $10.00/M = $20.00.
    let (_, summary) = app.get("/api/usage/summary?group_by=model", &token).await;
    assert_eq!(summary["total_display"], "$20.00");
    assert_eq!(summary["groups"][0]["key"], "gpt-4o");
}

#[tokio::test]
async fn litellm_spend_logs_are_detected_and_request_ids_dedupe() {
    let app = spawn_app().await;
    let token = app.token("platform");
    let logs =
        "request_id,call_type,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,custom_llm_provider\n\
                r-1,acompletion,0.25,0,1000,100,2026-11-05 10:00:00.000,2026-11-05 10:00:01.000,gpt-4o,openai\n\
                r-2,acompletion,0.50,0,2000,200,2026-11-05 11:00:00.000,2026-11-05 11:00:01.000,gpt-4o,openai\n";
    let (_, first) = import(&app, &token, logs.as_bytes().to_vec(), "").await;
    assert_eq!((first["format"].as_str(), first["imported"].as_u64()), (Some("litellm_spend_logs"), Some(2)));
    // An overlapping later export: r-2 again, plus r-3.
    let later = "request_id,spend,prompt_tokens,completion_tokens,startTime,model\n\
                 r-2,0.50,2000,200,2026-11-05 11:00:00.000,gpt-4o\n\
                 r-3,0.05,100,10,2026-11-06 08:00:00.000,gpt-4o\n";
    let (_, second) = import(&app, &token, later.as_bytes().to_vec(), "?format=litellm_spend_logs").await;
    assert_eq!((second["imported"].as_u64(), second["duplicates"].as_u64()), (Some(1), Some(1)));
    let (_, summary) = app.get("/api/usage/summary", &token).await;
    assert_eq!(summary["total_display"], "$0.80", "LiteLLM's billed spend, each request once");
}

#[tokio::test]
async fn summaries_group_by_end_user_api_key_and_environment() {
    let app = spawn_app().await;
    let token = app.token("tags");
    // Billed costs, so the groups are plain sums: alice 1.00 + 2.00, bob 0.50, untagged 4.00.
    let csv = "date,model,input_tokens,output_tokens,cost_usd,user,api_key,environment\n\
               2026-11-01,gpt-4o,10,1,1.00,alice,key_web,production\n\
               2026-11-01,gpt-4o,10,1,2.00,alice,key_batch,production\n\
               2026-11-02,gpt-4o,10,1,0.50,bob,key_web,staging\n\
               2026-11-02,gpt-4o,10,1,4.00,,,\n";
    let (status, report) = import(&app, &token, csv.as_bytes().to_vec(), "").await;
    assert_eq!((status, report["imported"].as_u64()), (200, Some(4)), "{report}");
    let groups = |by: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let (status, summary) = app.get(&format!("/api/usage/summary?group_by={by}"), token).await;
            assert_eq!(status, 200, "{summary}");
            summary["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| (g["key"].as_str().unwrap().to_owned(), g["cost"].as_i64().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let s = |k: &str, micros: i64| (k.to_owned(), micros);
    assert_eq!(groups("user").await, [s("unattributed", 4_000_000), s("alice", 3_000_000), s("bob", 500_000)]);
    assert_eq!(groups("api_key").await, [s("unattributed", 4_000_000), s("key_batch", 2_000_000), s("key_web", 1_500_000)]);
    assert_eq!(groups("environment").await, [s("unattributed", 4_000_000), s("production", 3_000_000), s("staging", 500_000)]);
    // The same rows again add nothing, tags included in their identity.
    let (_, again) = import(&app, &token, csv.as_bytes().to_vec(), "").await;
    assert_eq!((again["imported"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(4)));
}

#[tokio::test]
async fn helicone_and_openai_dashboard_exports_import_over_rest() {
    let app = spawn_app().await;
    let token = app.token("gateway");
    let fixture = |name: &str| std::fs::read(format!("{}/../costs/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (status, csv) = import(&app, &token, fixture("helicone.csv"), "").await;
    assert_eq!((status, csv["format"].as_str(), csv["imported"].as_u64()), (200, Some("helicone_requests"), Some(40)), "{csv}");
    // The JSONL export overlaps the CSV on ten requests.
    let (_, jsonl) = import(&app, &token, fixture("helicone.jsonl"), "").await;
    assert_eq!((jsonl["imported"].as_u64(), jsonl["duplicates"].as_u64()), (Some(20), Some(10)), "{jsonl}");
    let (_, by_user) = app.get("/api/usage/summary?group_by=user", &token).await;
    assert_eq!(by_user["requests"], 60);
    assert!(by_user["groups"].as_array().unwrap().iter().any(|g| g["key"] == "cust_1042"), "{by_user}");

    let other = app.token("finance");
    let (_, usage) = import(&app, &other, fixture("openai_usage.csv"), "").await;
    assert_eq!((usage["format"].as_str(), usage["rejected_count"].as_u64()), (Some("openai_usage_csv"), Some(0)));
    let (_, costs) = import(&app, &app.token("billing"), fixture("openai_costs.csv"), "").await;
    assert_eq!((costs["format"].as_str(), costs["rejected_count"].as_u64()), (Some("openai_cost_csv"), Some(0)));
    let (_, again) = import(&app, &other, fixture("openai_usage.csv"), "?format=openai_usage_csv").await;
    assert_eq!(again["imported"], 0, "{again}");
}

#[tokio::test]
async fn unusable_uploads_and_queries_get_clear_errors() {
    let app = spawn_app().await;
    let token = app.token("ops");
    let (status, body) = import(&app, &token, b"hello world".to_vec(), "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_format")));
    let (status, body) = import(&app, &token, b"when,what\n1,2\n".to_vec(), "?format=generic_csv").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unreadable_file")));
    assert_eq!(app.get("/api/usage/summary?group_by=colour", &token).await.0, 400);
    assert_eq!(app.get("/api/usage/summary?from=yesterday", &token).await.0, 400);
    let r = http_client().post(app.http("/api/usage/import")).body(CSV).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn repeated_requests_and_long_answers_become_grounded_savings() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = app.token("support-lead");
    // faq-bot: 40 requests a day over 7 days, every fourth one identical to an earlier one
    // (the same request hash). essay-writer: 1,000-token answers on gpt-4.1.
    let mut csv = String::from("date,model,input_tokens,output_tokens,request_id,request_hash,feature\n");
    for day in 1..=7 {
        for i in 0..40 {
            let hash = if i % 4 == 3 { format!("q-{}", i - 1) } else { format!("q-{day}-{i}") };
            csv.push_str(&format!("2026-11-{day:02},gpt-4o-mini,900,300,faq-{day}-{i},{hash},faq-bot\n"));
        }
        csv.push_str(&format!("2026-11-{day:02},gpt-4.1,50000,100000,essay-{day},,essay-writer\n"));
    }
    let (status, report) = import(&app, &token, csv.into_bytes(), "").await;
    assert_eq!((status, report["imported"].as_u64()), (200, Some(287)), "{report}");

    let mut c = connect(&app, By::Header(token)).await;
    c.ask("How do I reduce spend?", None).await;
    let events = c.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    assert!(answer.contains("**Answer repeated requests of faq-bot from a cache**"), "{answer}");
    assert!(answer.contains("**Cap answer length for essay-writer**"), "{answer}");
    assert!(answer.contains("How: Put an exact-match response cache"), "{answer}");
    let savings = events
        .iter()
        .find(|e| e["type"] == "tool_completed" && e["tool"] == "find_savings")
        .map(|e| e["result"].clone())
        .expect("find_savings ran");
    let kinds: Vec<&str> = savings["recommendations"].as_array().unwrap().iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(kinds.contains(&"deduplicate_requests") && kinds.contains(&"output_cap"), "{kinds:?}");
    let computed = tool_figures(&events);
    for figure in dollar_figures(&answer) {
        assert!(computed.contains(&figure), "{figure} is not in any tool result of the run");
    }
}

#[tokio::test]
async fn a_spike_in_imported_usage_is_reported_with_its_day_and_size() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = app.token("sre");
    app.import_fixture(&token).await; // support-chat ran five times its usual traffic on 2026-11-15
    let mut c = connect(&app, By::Header(token)).await;
    c.ask("Analyze my AI costs", None).await;
    let events = c.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    assert!(answer.contains("### Unusual days"), "{answer}");
    assert!(answer.contains("- **2026-11-15**: feature `support-chat` cost $"), "{answer}");
    assert!(answer.contains("The biggest drivers: `support-chat` on gpt-4o"), "{answer}");
    assert!(answer.contains("The last 7 days cost $"), "week over week: {answer}");
    let computed = tool_figures(&events);
    for figure in dollar_figures(&answer) {
        assert!(computed.contains(&figure), "{figure} is not in any tool result of the run");
    }
    let call = events.iter().find(|e| e["type"] == "tool_completed" && e["tool"] == "detect_anomalies").unwrap();
    assert_eq!(call["result"]["anomalies"][0]["day"], "2026-11-15");
}

async fn answer_to(app: &TestApp, token: &str, question: &str) -> (String, Vec<Value>) {
    let mut c = connect(app, By::Header(token.to_owned())).await;
    c.ask(question, None).await;
    let events = c.events_until_terminal().await;
    (assert_golden_run(&events), events)
}

#[tokio::test]
async fn what_if_questions_are_priced_from_the_users_tokens() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = app.token("cfo");
    app.import_fixture(&token).await;
    let (answer, events) = answer_to(&app, &token, "What if we move ticket-triage from gpt-4o to gpt-4o-mini?").await;
    assert!(answer.starts_with("On gpt-4o-mini, `ticket-triage` would cost **$"), "{answer}");
    assert!(answer.lines().next().unwrap().contains(" a month less** ("), "{answer}");
    let call = events.iter().find(|e| e["type"] == "tool_completed" && e["tool"] == "what_if").expect("the what_if tool ran");
    assert_eq!(call["result"]["feature"], "ticket-triage");
    assert!(call["result"]["monthly_change"].as_i64().unwrap() < 0);
    let computed = tool_figures(&events);
    for figure in dollar_figures(&answer) {
        assert!(computed.contains(&figure), "{figure} is not in any tool result of the run");
    }
    let (answer, _) = answer_to(&app, &token, "what if everything ran on no-such-model-x?").await;
    assert!(!answer.contains("would cost **$"), "an unknown model is not a what-if: {answer}");
}

#[tokio::test]
async fn import_help_and_off_topic_questions_get_fitting_answers() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = app.token("newbie");
    app.import_fixture(&token).await;
    let (help, _) = answer_to(&app, &token, "How do I import my LiteLLM export?").await;
    assert!(help.starts_with("### How to import your usage"), "{help}");
    assert!(help.contains("You already have 112 usage records"), "{help}");
    let (other, events) = answer_to(&app, &token, "Tell me a joke about cats").await;
    assert!(other.starts_with("I am Apex's cost analyst"), "{other}");
    assert!(other.contains("What if support-chat ran on gpt-4o-mini?"), "{other}");
    let computed = tool_figures(&events);
    for figure in dollar_figures(&other) {
        assert!(computed.contains(&figure), "{figure} is not in any tool result of the run");
    }
}

#[tokio::test]
async fn recommendations_are_cached_per_dataset_version_and_an_import_invalidates_them() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let token = app.token("cache-user");
    app.import_fixture(&token).await;
    let savings = |events: &[Value]| {
        events.iter().find(|e| e["type"] == "tool_completed" && e["tool"] == "find_savings").unwrap()["result"].clone()
    };
    let (_, first) = answer_to(&app, &token, "How do I reduce spend?").await;
    let (_, second) = answer_to(&app, &token, "How do I reduce spend?").await;
    assert_eq!(savings(&first)["cached"], false);
    assert_eq!(savings(&second)["cached"], true, "same data, same recommendations, from the cache");
    assert_eq!(savings(&first)["recommendations"], savings(&second)["recommendations"]);

    // Re-importing the same file adds nothing: still cached.
    app.import_fixture_again(&token).await;
    let (_, third) = answer_to(&app, &token, "How do I reduce spend?").await;
    assert_eq!(savings(&third)["cached"], true);

    // New usage moves the dataset on.
    let more = "date,model,input_tokens,output_tokens,requests,feature\n2026-11-24,gpt-4o,90000000,100000,90000,ticket-triage\n";
    let (status, _) = import(&app, &token, more.as_bytes().to_vec(), "").await;
    assert_eq!(status, 200);
    let (_, fourth) = answer_to(&app, &token, "How do I reduce spend?").await;
    assert_eq!(savings(&fourth)["cached"], false);
    assert_ne!(savings(&fourth)["total_monthly_savings"], savings(&first)["total_monthly_savings"]);
}

#[tokio::test]
async fn two_users_asking_for_savings_get_their_own_figures() {
    // Another user's data: every ticket-triage request on gpt-4o, ten times the fixture's.
    const OTHER: &str = "date,model,input_tokens,output_tokens,requests,feature\n\
        2026-11-20,gpt-4o,90000000,100000,90000,ticket-triage\n\
        2026-11-21,gpt-4o,80000000,90000,80000,ticket-triage\n";
    let layer = || {
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        }
    };
    let savings = |events: &[Value]| {
        events.iter().find(|e| e["type"] == "tool_completed" && e["tool"] == "find_savings").unwrap()["result"].clone()
    };
    // What the second user's savings are on a server that has seen nobody else.
    let alone = spawn_with(layer(), |s| s).await;
    let token = alone.token("second");
    assert_eq!(import(&alone, &token, OTHER.as_bytes().to_vec(), "").await.0, 200);
    let (_, events) = answer_to(&alone, &token, "How do I reduce spend?").await;
    let second_alone = savings(&events);

    // Both users on one server, each with one import (so both datasets are at version 1),
    // asking in turn: each gets their own figures, the second time from the cache.
    let app = spawn_with(layer(), |s| s).await;
    let (first, second) = (app.token("first"), app.token("second"));
    app.import_fixture(&first).await;
    assert_eq!(import(&app, &second, OTHER.as_bytes().to_vec(), "").await.0, 200);
    let mut seen = Vec::new();
    for (round, token) in [(0, &first), (0, &second), (1, &first), (1, &second)] {
        let (_, events) = answer_to(&app, token, "How do I reduce spend?").await;
        let result = savings(&events);
        assert_eq!(result["cached"], round == 1, "{result}");
        seen.push(result);
    }
    let figures = |r: &Value| (r["total_monthly_savings"].clone(), r["recommendations"].clone());
    assert_ne!(figures(&seen[0]), figures(&seen[1]), "the two users' data differ, and so must their savings");
    assert_eq!(figures(&seen[1]), figures(&second_alone), "the second user got figures that are not theirs");
    assert_eq!(figures(&seen[2]), figures(&seen[0]));
    assert_eq!(figures(&seen[3]), figures(&seen[1]));
}

#[tokio::test]
async fn two_servers_in_one_process_price_usage_with_their_own_price_files() {
    // The same usage, 1M input and 1M output tokens of gpt-4o, on three servers of this
    // process: at list price ($2.50 + $10.00), and at two negotiated rates.
    let csv = "date,model,feature,input_tokens,output_tokens\n2026-11-01,gpt-4o,chat,1000000,1000000\n";
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, input: &str, output: &str| {
        let path = dir.path().join(name);
        let toml = format!("[[price]]\nmodel = \"gpt-4o\"\ninput_per_mtok = \"{input}\"\noutput_per_mtok = \"{output}\"\n");
        std::fs::write(&path, toml).unwrap();
        path
    };
    let priced = |path: std::path::PathBuf| {
        move |s: &mut apex_server::Settings| {
            s.demo_mode = false;
            s.prices_file = Some(path);
        }
    };
    let a = spawn_with(priced(file("a.toml", "2.00", "8.00")), |s| s).await;
    let b = spawn_with(priced(file("b.toml", "1.00", "4.00")), |s| s).await;
    let list = spawn_with(|s: &mut apex_server::Settings| s.demo_mode = false, |s| s).await;
    for (app, total) in [(&a, "$10.00"), (&b, "$5.00"), (&list, "$12.50")] {
        let token = app.token("buyer");
        let (status, report) = import(app, &token, csv.as_bytes().to_vec(), "").await;
        assert_eq!(status, 200, "{report}");
        let (_, summary) = app.get("/api/usage/summary?group_by=model", &token).await;
        assert_eq!(summary["total_display"], total, "{summary}");
        // The agents' tools price with the same book as the server's REST answers.
        let mut c = connect(app, By::Header(token)).await;
        c.ask("Analyze my AI costs", None).await;
        let answer = assert_golden_run(&c.events_until_terminal().await);
        assert!(answer.contains(&format!("Your AI spend: {total}")), "{total}: {answer}");
    }
}

//! The agents and tools run on their own: no store, no socket, no server. Each test runs
//! an agent (or the whole pipeline) against a data source and a [`MemorySink`], and reads
//! what it emitted and what it left in the findings.
use std::sync::Arc;

use apex_costs::{aggregate, summarize, Money, UsageQuery, UsageRecord};
use apex_engine::agents::{DataAgent, OptimizationAgent, ReportAgent, TriageAgent};
use apex_engine::supervisor::Supervisor;
use apex_engine::tools::{self, Intent, NoArgs, UsageOverview, WhatIfResult};
use apex_engine::{
    Agent, AgentError, DemoUsage, Findings, MemorySink, Origin, RunContext, RunData, Step, UsageData, UsageSource,
};
use apex_protocol::{AgentName, EventKind, MessageId, OrgId, RunId, ThreadId, UserId};
use serde_json::json;

/// A data source holding fixed records, as if the user had imported them (and summing
/// them as the store does).
struct Imported(Vec<UsageRecord>);

#[async_trait::async_trait]
impl UsageSource for Imported {
    async fn usage(&self, _org: &OrgId, _demo: bool) -> Result<UsageData, String> {
        let origin = if self.0.is_empty() { Origin::Empty } else { Origin::Imported };
        Ok(UsageData::new(Arc::new(aggregate(&self.0, &UsageQuery::rollup())), origin, 1))
    }

    async fn totals(&self, _org: &OrgId, _version: u64, q: &UsageQuery) -> Result<Arc<Vec<UsageRecord>>, String> {
        Ok(Arc::new(aggregate(&self.0, q)))
    }
}

fn run_of(source: Arc<dyn UsageSource>, question: &str) -> RunContext {
    let user = UserId::from("demo-agents-test");
    RunContext {
        data: RunData::new(source, OrgId::personal(&user), true),
        user_id: user,
        demo: true,
        thread_id: ThreadId::new(),
        run_id: RunId::new(),
        message_id: MessageId::new(),
        text: Arc::from(question),
        memory: None,
    }
}

fn demo(question: &str) -> RunContext {
    run_of(Arc::new(DemoUsage::default()), question)
}

/// The findings of the agents before `upto`, as the supervisor would have left them.
async fn findings_before(upto: AgentName, ctx: &RunContext, sink: &MemorySink) -> Findings {
    let tools = tools::builtin();
    let mut findings = Findings::default();
    let step = Step { agent: AgentName::Supervisor, ctx, tools: &tools, sink };
    findings.overview = Some(step.call::<UsageOverview>(NoArgs {}).await.unwrap());
    let agents: [(AgentName, &dyn Agent); 3] =
        [(AgentName::Triage, &TriageAgent), (AgentName::Data, &DataAgent), (AgentName::Optimization, &OptimizationAgent)];
    for (name, agent) in agents {
        if name == upto {
            break;
        }
        agent.run(&Step { agent: name, ..step }, &mut findings).await.unwrap();
    }
    findings
}

#[tokio::test]
async fn the_pipeline_streams_every_step_and_answers_with_the_computed_total() {
    let ctx = demo("Analyze my AI costs");
    let sink = MemorySink::default();
    let answer = Supervisor::default().run(&ctx, &tools::builtin(), &sink).await.unwrap().text;

    let calls = sink.tool_calls();
    let expected = [
        (AgentName::Supervisor, "load_usage_overview"),
        (AgentName::Triage, "classify_request"),
        (AgentName::Data, "query_usage"),
        (AgentName::Data, "detect_anomalies"),
        (AgentName::Optimization, "find_savings"),
        (AgentName::Report, "forecast_spend"),
    ];
    let calls: Vec<(AgentName, &str)> = calls.iter().map(|(a, t)| (*a, t.as_str())).collect();
    assert_eq!(calls, expected);

    let started: Vec<AgentName> = sink
        .events()
        .iter()
        .filter_map(|e| match e {
            EventKind::AgentStarted { agent } => Some(*agent),
            _ => None,
        })
        .collect();
    assert_eq!(started, [AgentName::Supervisor, AgentName::Triage, AgentName::Data, AgentName::Optimization, AgentName::Report]);
    let completed = sink.events().iter().filter(|e| matches!(e, EventKind::AgentCompleted { .. })).count();
    assert_eq!(completed, 5, "every agent that starts completes");
    assert!(
        sink.events().iter().all(|e| !matches!(e, EventKind::ToolCompleted { ok: false, .. })),
        "no tool call fails on demo data"
    );

    assert_eq!(sink.text(), answer, "the streamed pieces are the answer");
    let records = DemoUsage::default().usage(&"demo-agents-test".into(), true).await.unwrap().records;
    let total = summarize(apex_costs::PriceBook::catalog(), &records).total;
    let first_line = answer.lines().next().unwrap();
    assert!(first_line.contains(&total.to_string()), "the headline carries the computed total {total}: {first_line}");
    assert!(answer.contains("built-in demo dataset"), "demo figures are labelled as such");
    let persisted: Vec<AgentName> = sink.results().iter().map(|(a, _)| *a).collect();
    assert_eq!(persisted.last(), Some(&AgentName::Supervisor), "the supervisor's plan is kept last");
}

#[tokio::test]
async fn triage_reads_a_what_if_and_optimization_prices_it() {
    let ctx = demo("What if support-chat ran on gpt-4o-mini?");
    let sink = MemorySink::default();
    let mut findings = findings_before(AgentName::Optimization, &ctx, &sink).await;
    let triage = findings.triage.as_ref().unwrap();
    assert_eq!(triage.intent, Intent::WhatIf);
    assert_eq!(triage.feature.as_deref(), Some("support-chat"));
    assert_eq!(triage.target_model.as_deref(), Some("gpt-4o-mini"));

    let tools = tools::builtin();
    let step = Step { agent: AgentName::Optimization, ctx: &ctx, tools: &tools, sink: &sink };
    let out = OptimizationAgent.run(&step, &mut findings).await.unwrap();
    let Some(WhatIfResult::Priced(w)) = &findings.what_if else { panic!("the what-if is priced: {:?}", findings.what_if) };
    assert_eq!(w.to_model, "gpt-4o-mini");
    assert_eq!(w.feature.as_deref(), Some("support-chat"));
    assert_eq!(w.monthly_change, w.projected_monthly - w.current_monthly);
    assert!(w.monthly_change < Money::ZERO, "a smaller model costs less: {w:?}");
    assert_eq!(out.result["what_if"]["monthly_change"], json!(w.monthly_change));
    let executing = sink.events().into_iter().find_map(|e| match e {
        EventKind::ToolExecuting { tool, args, .. } if tool == "what_if" => Some(args),
        _ => None,
    });
    assert_eq!(executing, Some(json!({ "to_model": "gpt-4o-mini", "feature": "support-chat" })), "the call is streamed");
}

#[tokio::test]
async fn optimization_does_not_price_a_what_if_nobody_asked_for() {
    let ctx = demo("How do I reduce spend?");
    let sink = MemorySink::default();
    let mut findings = findings_before(AgentName::Optimization, &ctx, &sink).await;
    assert_eq!(findings.triage.as_ref().unwrap().intent, Intent::Optimization);
    let tools = tools::builtin();
    OptimizationAgent
        .run(&Step { agent: AgentName::Optimization, ctx: &ctx, tools: &tools, sink: &sink }, &mut findings)
        .await
        .unwrap();
    assert!(findings.what_if.is_none());
    let savings = findings.savings.as_ref().unwrap();
    assert!(!savings.recommendations.is_empty(), "the demo data has savings");
    assert!(!sink.tool_calls().iter().any(|(_, t)| t == "what_if"));
}

#[tokio::test]
async fn an_agent_missing_what_runs_before_it_fails_clearly() {
    let ctx = demo("Analyze my AI costs");
    let sink = MemorySink::default();
    let tools = tools::builtin();
    let mut findings = Findings::default();
    let err = DataAgent.run(&Step { agent: AgentName::Data, ctx: &ctx, tools: &tools, sink: &sink }, &mut findings).await;
    let Err(AgentError::Internal(message)) = err else { panic!("an internal error: {err:?}") };
    assert!(message.contains("overview"), "{message}");
    assert!(sink.tool_calls().is_empty(), "nothing ran");
}

#[tokio::test]
async fn the_report_without_data_says_how_to_import_and_invents_nothing() {
    let ctx = run_of(Arc::new(Imported(Vec::new())), "Analyze my AI costs");
    let sink = MemorySink::default();
    let mut findings = findings_before(AgentName::Report, &ctx, &sink).await;
    let tools = tools::builtin();
    ReportAgent::default()
        .run(&Step { agent: AgentName::Report, ctx: &ctx, tools: &tools, sink: &sink }, &mut findings)
        .await
        .unwrap();
    let answer = findings.answer.unwrap();
    assert!(answer.starts_with("## No usage data yet"), "{answer}");
    let dollar_figure = answer.as_bytes().windows(2).any(|w| w[0] == b'$' && w[1].is_ascii_digit());
    assert!(!dollar_figure, "no figure without data: {answer}");
    for importer in apex_costs::import::importers() {
        assert!(answer.contains(&format!("**{}**", importer.name)), "the answer names {}: {answer}", importer.name);
    }
    assert_eq!(sink.text(), answer);
}

#[tokio::test]
async fn a_model_calling_a_tool_gets_its_arguments_checked_against_the_type() {
    let ctx = demo("What if support-chat ran on gpt-4o-mini?");
    let sink = MemorySink::default();
    let tools = tools::builtin();
    let step = Step { agent: AgentName::Report, ctx: &ctx, tools: &tools, sink: &sink };

    let err = step.call_json("what_if", json!({ "feature": "support-chat" })).await.unwrap_err();
    assert!(err.to_string().contains("invalid arguments") && err.to_string().contains("to_model"), "{err}");
    let failed = sink.events().into_iter().find_map(|e| match e {
        EventKind::ToolCompleted { ok: false, error, .. } => error,
        _ => None,
    });
    assert!(failed.is_some_and(|e| e.contains("to_model")), "the failed call is streamed with its reason");

    let ok = step.call_json("what_if", json!({ "to_model": "gpt-4o-mini" })).await.unwrap();
    assert_eq!(ok["to_model"], "gpt-4o-mini");
    assert!(ok["feature"].is_null(), "all usage when no feature is named");

    let unknown = step.call_json("delete_everything", json!({})).await.unwrap_err();
    assert!(matches!(unknown, AgentError::UnknownTool(_)), "{unknown}");
}

#[test]
fn tool_specs_come_from_the_argument_types() {
    let tools = tools::builtin();
    let specs = tools.specs(&["what_if", "forecast_spend", "not_a_tool"]);
    assert_eq!(specs.len(), 2, "unknown names are skipped");
    let what_if = &specs[0];
    assert_eq!(what_if.name, "what_if");
    assert!(!what_if.description.is_empty());
    let p = &what_if.parameters;
    assert_eq!(p["type"], "object", "{p}");
    assert_eq!(p["required"], json!(["to_model"]), "{p}");
    assert!(p["properties"]["to_model"]["description"].as_str().is_some_and(|d| d.contains("model")), "{p}");
    assert!(p["properties"]["feature"].is_object(), "{p}");
    assert!(p.get("$schema").is_none() && p.get("title").is_none(), "only what a model needs: {p}");
    assert_eq!(specs[1].parameters["type"], "object");
    assert_eq!(
        tools.names(),
        [
            "classify_request",
            "detect_anomalies",
            "explain_change",
            "find_savings",
            "forecast_spend",
            "load_usage_overview",
            "query_slice",
            "query_usage",
            "what_if"
        ]
    );
}

#[tokio::test]
async fn a_narrow_question_is_answered_first_with_its_figure() {
    // The demo data's last day is 2026-11-24: "yesterday" is that day, and said so.
    let ctx = demo("How much did we spend on gpt-4o yesterday?");
    let sink = MemorySink::default();
    let answer = Supervisor::default().run(&ctx, &tools::builtin(), &sink).await.unwrap().text;
    let calls: Vec<String> = sink.tool_calls().into_iter().map(|(_, t)| t).collect();
    assert!(calls.contains(&"query_slice".to_owned()), "{calls:?}");

    // The figure, computed here from the rows themselves.
    let records = DemoUsage::default().usage(&"demo-agents-test".into(), true).await.unwrap().records;
    let book = apex_costs::PriceBook::catalog();
    let day: Vec<UsageRecord> = records.iter().filter(|r| r.day == "2026-11-24").cloned().collect();
    let on_model: Vec<UsageRecord> = day.iter().filter(|r| r.model == "gpt-4o").cloned().collect();
    let cost = summarize(book, &on_model).total;
    let first = answer.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("You spent **{cost}** on model `gpt-4o` yesterday (2026-11-24, the last day in your data)")),
        "{first}"
    );
    let share = i64::try_from(i128::from(cost.0) * 10_000 / i128::from(summarize(book, &day).total.0)).unwrap();
    let tenths = (share + 5) / 10;
    assert!(first.contains(&format!("{}.{}%", tenths / 10, tenths % 10)), "its share of the day: {first}");
}

#[tokio::test]
async fn a_ranking_question_names_the_top_one_first() {
    let ctx = demo("Which feature costs the most?");
    let sink = MemorySink::default();
    let answer = Supervisor::default().run(&ctx, &tools::builtin(), &sink).await.unwrap().text;
    let records = DemoUsage::default().usage(&"demo-agents-test".into(), true).await.unwrap().records;
    let top = &summarize(apex_costs::PriceBook::catalog(), &records).by_feature[0];
    let first = answer.lines().next().unwrap();
    assert!(first.starts_with("The feature that cost the most from "), "{first}");
    assert!(first.contains(&format!("is **{}**: {}", top.key, top.cost)), "{first}");
}

#[tokio::test]
async fn a_name_not_in_the_data_is_said_with_the_closest_ones() {
    let ctx = demo("How much did the suport-chat feature cost?");
    let sink = MemorySink::default();
    let answer = Supervisor::default().run(&ctx, &tools::builtin(), &sink).await.unwrap().text;
    let first = answer.lines().next().unwrap();
    assert!(first.starts_with("I found **no** feature `suport-chat` in your data (closest: support-chat"), "{first}");
}

#[tokio::test]
async fn a_what_if_about_a_feature_not_in_the_data_prices_nothing_in_its_place() {
    let ctx = demo("What would support-bot cost on gpt-4o-mini instead?");
    let sink = MemorySink::default();
    let answer = Supervisor::default().run(&ctx, &tools::builtin(), &sink).await.unwrap().text;
    assert!(answer.starts_with("I found **no** feature `support-bot` in your data (closest: support-chat"), "{answer}");
    assert!(!sink.tool_calls().iter().any(|(_, t)| t == "what_if"), "all usage is not priced instead");
}

#[tokio::test]
async fn a_comparison_gives_both_periods_and_the_change() {
    let ctx = demo("How much did we spend last week compared to the week before?");
    let sink = MemorySink::default();
    let answer = Supervisor::default().run(&ctx, &tools::builtin(), &sink).await.unwrap().text;
    let records = DemoUsage::default().usage(&"demo-agents-test".into(), true).await.unwrap().records;
    let book = apex_costs::PriceBook::catalog();
    let cost = |from: &str, to: &str| {
        let days: Vec<UsageRecord> = records.iter().filter(|r| r.day.as_str() >= from && r.day.as_str() <= to).cloned().collect();
        summarize(book, &days).total
    };
    // The demo data ends on Tuesday 2026-11-24: last week is Monday 16th to Sunday 22nd.
    let (now, then) = (cost("2026-11-16", "2026-11-22"), cost("2026-11-09", "2026-11-15"));
    let first = answer.lines().next().unwrap();
    assert!(first.starts_with(&format!("You spent **{now}** last week (2026-11-16 … 2026-11-22")), "{first}");
    let direction = if now > then { "up" } else { "down" };
    assert!(first.contains(&format!("**{direction} ")), "{first}");
    assert!(first.contains(&format!("from {then} in the week before (2026-11-09 … 2026-11-15)")), "{first}");
}

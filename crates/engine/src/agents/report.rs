//! The report agent and the built-in writer: a Markdown report assembled from the tool
//! results of this run, streamed as `response_delta` chunks. Every figure in it was
//! computed by a tool; the writer only arranges them. With a language model configured
//! ([`ModelWriter`]), the model phrases the report from this one, held to its figures.
use std::fmt::Write as _;

use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::{json, Value};

use apex_costs::group_thousands;

use super::narrate::ModelWriter;
use super::{money, pct, str_of};
use crate::agent::{Agent, AgentError, AgentOutput, Scratchpad};
use crate::context::RunContext;
use crate::sink::EventSink;

/// The answer for a user who has imported nothing: no figures to invent, so how to start.
const NO_DATA: &str = "## No usage data yet\n\n\
There is nothing to analyze: no LLM usage has been imported for your account, and I do not make figures up.\n\n\
### How to import your usage\n\n\
Send an export to `POST /api/usage/import` with your token; the format is detected:\n\n\
- an **OpenAI Usage API** page (`/v1/organization/usage/completions`, grouped by model),\n\
- **LiteLLM** spend logs (CSV export or the `/spend/logs` JSON),\n\
- **OpenTelemetry** GenAI spans (OTLP JSON), **Langfuse** observations,\n\
- or a **CSV** with `date`, `model`, token columns and optionally `cost_usd`, `feature`, `project`.\n\n\
For example: `curl -H \"Authorization: Bearer $TOKEN\" --data-binary @usage.csv http://HOST/api/usage/import`\n\n\
Then ask again, for instance \"Analyze my AI costs\" or \"How do I reduce spend?\", and I will break down your spend by model and feature and work out concrete savings.\n";

/// Longest `response_delta` text, in bytes (chunks end at line boundaries when possible).
pub(crate) const CHUNK: usize = 240;

/// Writes the answer: with the built-in writer by default, or with a language model.
#[derive(Default)]
pub struct ReportAgent {
    pub model: Option<ModelWriter>,
}

#[async_trait]
impl Agent for ReportAgent {
    fn name(&self) -> AgentName {
        AgentName::Report
    }

    async fn run(&self, ctx: &RunContext, sink: &EventSink, pad: &Scratchpad) -> Result<AgentOutput, AgentError> {
        sink.thinking(AgentName::Report, "Projecting this month's spend and writing the report.").await;
        let forecast = sink.call_tool(ctx, AgentName::Report, "forecast_spend", json!({})).await?;
        let overview = pad.get(AgentName::Supervisor).unwrap_or_default();
        let source = &overview["source"];
        let inputs = ReportInputs {
            records: overview["records"].as_u64().unwrap_or(0),
            demo: source == "demo",
            empty: source == "empty",
            triage: pad.get(AgentName::Triage).unwrap_or_default(),
            usage: pad.get(AgentName::Data).unwrap_or_default(),
            savings: pad.get(AgentName::Optimization).unwrap_or_default(),
            forecast,
        };
        let computed = write_report(&inputs);
        let (text, model) = match &self.model {
            // Nothing to phrase without data: the computed answer says how to import.
            Some(writer) if !inputs.empty => {
                let results = [&overview, &inputs.triage, &inputs.usage, &inputs.savings, &inputs.forecast];
                let written = writer.write(ctx, sink, &computed, &results).await;
                if written.usage.input_tokens + written.usage.output_tokens > 0 {
                    sink.model_usage(written.otel_span(writer, ctx));
                }
                let model = written.to_json(writer);
                (written.text, Some(model))
            }
            _ => {
                for chunk in chunks(&computed, CHUNK) {
                    sink.delta(ctx.message_id, chunk.to_owned()).await;
                }
                (computed, None)
            }
        };
        let words = text.split_whitespace().count();
        let summary = format!("Report written ({words} words).");
        // The text itself is persisted once, as the assistant message.
        let mut result = json!({ "words": words, "forecast": inputs.forecast });
        if let Some(model) = model {
            result["model"] = model;
        }
        Ok(AgentOutput { summary, result, output: json!({ "text": text }) })
    }
}

struct ReportInputs {
    /// Usage records analyzed (as stored: summed per day, model, feature and project).
    records: u64,
    /// The figures are the built-in demo dataset, not the user's own.
    demo: bool,
    /// The user has no usage data at all.
    empty: bool,
    triage: Value,
    usage: Value,
    savings: Value,
    forecast: Value,
}

fn write_report(r: &ReportInputs) -> String {
    if r.empty {
        return NO_DATA.to_owned();
    }
    match str_of(&r.triage, "intent") {
        "import_help" => return import_help(r),
        "off_topic" => return off_topic(r),
        _ => {}
    }
    let mut out = String::with_capacity(2048);
    let u = &r.usage;
    let _ = writeln!(
        out,
        "## Your AI spend: {} over {} days ({} to {})\n",
        money(&u["total"]),
        u["days"],
        str_of(u, "from"),
        str_of(u, "to")
    );
    if r.demo {
        out.push_str("_These figures come from the built-in demo dataset, not from your usage. Import yours (an OpenAI usage export or a CSV, `POST /api/usage/import`) and ask again._\n\n");
    }
    let _ = writeln!(
        out,
        "{} requests used {} input and {} output tokens.\n",
        group_thousands(u["requests"].as_u64().unwrap_or(0)),
        group_thousands(u["input_tokens"].as_u64().unwrap_or(0)),
        group_thousands(u["output_tokens"].as_u64().unwrap_or(0)),
    );
    pricing_notes(u, &mut out);
    let sections: &[fn(&ReportInputs, &mut String)] = match str_of(&r.triage, "intent") {
        "what_if" => &[what_if_section, spend_section, savings_section, forecast_section],
        "optimization" => &[savings_section, spend_section, forecast_section],
        "forecast" => &[forecast_section, spend_section, savings_section],
        _ => &[spend_section, savings_section, forecast_section],
    };
    for section in sections {
        section(r, &mut out);
    }
    next_steps(r, &mut out);
    out
}

/// Where the figures rest on billed costs rather than list prices, and what could not be
/// priced at all.
fn pricing_notes(u: &Value, out: &mut String) {
    let b = &u["billed"];
    if let (Some(records), Some(bp)) = (b["records"].as_u64().filter(|n| *n > 0), b["difference_bp"].as_i64()) {
        let relation = match bp {
            bp if bp < 0 => format!("{} below", pct(&json!(-bp))),
            bp if bp > 0 => format!("{} above", pct(&json!(bp))),
            _ => "exactly".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} records carry the cost your provider billed, {} in all: {relation} list price for the same tokens ({}). Totals use the billed cost; savings are worked out at list price on both sides.\n",
            group_thousands(records),
            money(&b["billed"]),
            money(&b["at_list_price"]),
        );
    }
    if let Some(n) = u["unpriced_records"].as_u64().filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "{} records name models the price catalog does not know and carry no cost; they are left out of the totals here (`apex prices MODEL` shows what is known).\n",
            group_thousands(n),
        );
    }
}

fn what_if_section(r: &ReportInputs, out: &mut String) {
    let w = &r.savings["what_if"];
    if let Some(why) = w["unavailable"].as_str() {
        let _ = writeln!(out, "### What if\n\nI cannot price that change: {why}.\n");
        return;
    }
    let scope = w["feature"].as_str().map_or_else(|| "all your usage".to_owned(), |f| format!("`{f}`"));
    let change = w["monthly_change"].as_i64().unwrap_or(0);
    let verdict = if change < 0 { "would save" } else { "would cost" };
    let _ = writeln!(
        out,
        "### What if {scope} ran on {}\n\n**{} a month instead of {}**: it {verdict} **{}/month**. {}\n",
        str_of(w, "to_model"),
        money(&w["projected_monthly"]),
        money(&w["current_monthly"]),
        money(&json!(change.abs())),
        str_of(w, "rationale"),
    );
}

/// For "how do I import…": the instructions, and what is already there.
fn import_help(r: &ReportInputs) -> String {
    let mut out = String::from(&NO_DATA[NO_DATA.find("### How to import").unwrap_or(0)..]);
    let u = &r.usage;
    let _ = writeln!(
        out,
        "\nYou already have {} usage records from {} to {} ({} in total); importing the same rows again never counts them twice.",
        r.records,
        str_of(u, "from"),
        str_of(u, "to"),
        money(&u["total"]),
    );
    out
}

/// For questions outside AI spend: what this assistant does, with the headline figures.
fn off_topic(r: &ReportInputs) -> String {
    let u = &r.usage;
    let top = &u["signals"]["top_drivers"][0];
    let mut out = String::from("I am Apex's cost analyst: I answer questions about your AI spend, from your usage data.\n\n");
    let _ = writeln!(
        out,
        "Right now: {} over {} days ({} to {}); the biggest driver is `{}` on {} at {}, and I found savings worth {} a month.\n",
        money(&u["total"]),
        u["days"],
        str_of(u, "from"),
        str_of(u, "to"),
        str_of(top, "feature"),
        str_of(top, "model"),
        money(&top["cost"]),
        money(&r.savings["total_monthly_savings"]),
    );
    let _ = writeln!(
        out,
        "Try: \"Analyze my AI costs\", \"How do I reduce spend?\", \"Forecast next month\", or \"What if {} ran on gpt-4o-mini?\"",
        str_of(top, "feature"),
    );
    out
}

fn spend_section(r: &ReportInputs, out: &mut String) {
    let by_feature_first = str_of(&r.triage, "focus") == "feature";
    let (first, second) = if by_feature_first { ("by_feature", "by_model") } else { ("by_model", "by_feature") };
    out.push_str("### Where the money goes\n\n");
    group_table(&r.usage[first], if by_feature_first { "Feature" } else { "Model" }, out);
    let others: Vec<String> = r.usage[second]
        .as_array()
        .into_iter()
        .flatten()
        .take(3)
        .map(|g| format!("**{}** {} ({})", str_of(g, "key"), money(&g["cost"]), pct(&g["share_bp"])))
        .collect();
    let label = if by_feature_first { "models" } else { "features" };
    let _ = writeln!(out, "Top {label}: {}.\n", others.join(", "));
    drivers(&r.usage["signals"], out);
    anomalies(&r.usage["signals"], out);
}

fn drivers(signals: &Value, out: &mut String) {
    let drivers: Vec<String> = signals["top_drivers"]
        .as_array()
        .into_iter()
        .flatten()
        .take(3)
        .map(|d| format!("`{}` on {} ({}, {})", str_of(d, "feature"), str_of(d, "model"), money(&d["cost"]), pct(&d["share_bp"])))
        .collect();
    if !drivers.is_empty() {
        let _ = writeln!(out, "The biggest drivers: {}.\n", drivers.join("; "));
    }
}

fn anomalies(signals: &Value, out: &mut String) {
    let Some(found) = signals["anomalies"].as_array().filter(|a| !a.is_empty()) else { return };
    out.push_str("### Unusual days\n\n");
    for a in found {
        let _ = writeln!(
            out,
            "- **{}**: {} `{}` cost {} against a typical {} per day ({} more).",
            str_of(a, "day"),
            str_of(a, "dimension"),
            str_of(a, "key"),
            money(&a["cost"]),
            money(&a["median"]),
            money(&a["excess"]),
        );
    }
    out.push_str("\nA spike like this is worth checking first: a retry loop, a runaway job or a prompt that grew.\n\n");
}

fn group_table(groups: &Value, label: &str, out: &mut String) {
    let _ = writeln!(out, "| {label} | Spend | Share | Requests |\n|---|---:|---:|---:|");
    for g in groups.as_array().into_iter().flatten().take(6) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            str_of(g, "key"),
            money(&g["cost"]),
            pct(&g["share_bp"]),
            group_thousands(g["requests"].as_u64().unwrap_or(0))
        );
    }
    out.push('\n');
}

fn savings_section(r: &ReportInputs, out: &mut String) {
    let recs = r.savings["recommendations"].as_array().cloned().unwrap_or_default();
    if recs.is_empty() {
        out.push_str("### Savings\n\nNo change would lower this bill without changing what it buys: every feature already runs on a fitting model, caches its prompts and uses batch pricing where it can.\n\n");
        return;
    }
    let _ = writeln!(out, "### Savings you can make: {} per month\n", money(&r.savings["total_monthly_savings"]));
    for (i, rec) in recs.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. **{}**: save **{}/month** ({} → {}). {} _Confidence: {}._ How: {}",
            i + 1,
            str_of(rec, "title"),
            money(&rec["monthly_savings"]),
            money(&rec["current_monthly"]),
            money(&rec["projected_monthly"]),
            str_of(rec, "rationale"),
            str_of(rec, "confidence"),
            str_of(rec, "how_to_apply"),
        );
    }
    if recs.len() > 1 {
        out.push_str("\nWhere two changes touch the same feature, the total counts their combined effect once.\n");
    }
    out.push('\n');
}

fn forecast_section(r: &ReportInputs, out: &mut String) {
    let f = &r.forecast;
    let wow = &r.usage["signals"]["week_over_week"];
    let trend = f["trend_bp"].as_i64().unwrap_or(0);
    let direction = match trend {
        t if t > 0 => "up",
        t if t < 0 => "down",
        _ => "flat",
    };
    let _ = writeln!(
        out,
        "### Where the month is heading\n\nAt the last 7 days' pace you will spend **{} per month**, {} {} from {} in the first week of the period.\n",
        money(&f["monthly_run_rate"]),
        direction,
        pct(&json!(trend.abs())),
        money(&f["previous_run_rate"]),
    );
    if let Some(change) = wow["change_bp"].as_i64() {
        let _ = writeln!(
            out,
            "The last 7 days cost {}, {} {} on the 7 days before ({}).\n",
            money(&wow["last_week"]),
            if change >= 0 { "up" } else { "down" },
            pct(&json!(change.abs())),
            money(&wow["previous_week"]),
        );
    }
}

fn next_steps(r: &ReportInputs, out: &mut String) {
    out.push_str("### Next steps\n\n");
    match r.savings["recommendations"].get(0) {
        Some(first) => {
            let _ = writeln!(
                out,
                "- Start with **{}** on `{}`: it is the largest single saving ({}/month).",
                str_of(first, "title"),
                str_of(first, "feature"),
                money(&first["monthly_savings"])
            );
        }
        None => out.push_str("- Keep watching the run rate: nothing needs to change today.\n"),
    }
    out.push_str("- Ask \"which feature costs most?\" or \"how do I reduce spend?\" to dig deeper.\n");
}

/// Splits text into pieces of at most `max` bytes, preferring line ends; concatenating the
/// pieces gives back the text exactly.
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut limit = max;
        while !rest.is_char_boundary(limit) {
            limit -= 1;
        }
        let cut = rest[..limit].rfind('\n').map_or(limit, |i| i + 1);
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_exactly_and_respect_the_bound() {
        let text = "héllo wörld\n".repeat(50) + &"x".repeat(1000) + "ünïcode";
        let pieces = chunks(&text, 64);
        assert!(pieces.iter().all(|p| p.len() <= 64 && !p.is_empty()));
        assert_eq!(pieces.concat(), text);
    }
}

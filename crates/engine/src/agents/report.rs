//! The report agent and the built-in writer: a Markdown report assembled from the
//! findings of this run, streamed as `response_delta` chunks. Every figure in it was
//! computed by a tool; the writer only arranges them. With a language model configured
//! ([`ModelWriter`]), the model phrases the report from this one, held to its figures.
use std::fmt::Write as _;

use apex_costs::{group_thousands, GroupTotal, Money, Summary};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::json;

use super::guards::{Guards, Lead};
use super::narrate::ModelWriter;
use super::pct;
use crate::agent::{Agent, AgentOutput, Findings, Step};
use crate::error::AgentError;
use crate::question::Operation;
use crate::tools::{
    Explained, Focus, ForecastArgs, ForecastSpend, Intent, Projection, Savings, Signals, Slice, Triage, WhatIfResult,
};
use crate::usage::Origin;

/// The answer for a user who has imported nothing: no figures to invent, so how to start.
/// The formats come from the importer registry, so every one that can be imported is named.
fn no_data() -> String {
    format!(
        "## No usage data yet\n\n\
There is nothing to analyze: no LLM usage has been imported for your account, and I do not make figures up.\n\n\
{}\n\
Then ask again, for instance \"Analyze my AI costs\" or \"How do I reduce spend?\", and I will break down your spend by model and feature and work out concrete savings.\n",
        how_to_import()
    )
}

/// How to import usage: where to send it, and every format the server reads.
fn how_to_import() -> String {
    format!(
        "### How to import your usage\n\n\
Send an export to `POST /api/usage/import` with your token (or run `apex ingest FILE --user YOU`); the format is detected, gzip is accepted. The formats, with the name `?format=` takes when detection needs help:\n\n\
{}\n\
For example: `curl -H \"Authorization: Bearer $TOKEN\" --data-binary @usage.csv http://HOST/api/usage/import`\n",
        apex_costs::import::formats_markdown()
    )
}

/// Said in every answer computed from the demo dataset, whoever writes it.
pub(crate) const DEMO_NOTICE: &str = "_These figures come from the built-in demo dataset, not from your usage. Import yours (an OpenAI usage export or a CSV, `POST /api/usage/import`) and ask again._";

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

    async fn run(&self, step: &Step<'_>, findings: &mut Findings) -> Result<AgentOutput, AgentError> {
        let question = findings.question();
        if question.is_none_or(|q| matches!(q.operation, Operation::Overview | Operation::Forecast)) {
            step.think("Projecting this month's spend and writing the answer.").await;
            let budget = question.and_then(|q| q.budget.clone());
            findings.forecast = Some(step.call::<ForecastSpend>(ForecastArgs { budget }).await?);
        } else {
            step.think("Writing the answer from what the agents found.").await;
        }
        let conversation = findings.conversation.take();
        let report = Report::of(findings)?;
        let computed = report.write();
        let (text, model) = match &self.model {
            // Nothing to phrase without data: the computed answer says how to import.
            Some(writer) if !report.empty => {
                let facts = serde_json::to_value(&*findings).map_err(|e| AgentError::Internal(e.to_string()))?;
                let guards = report.guards(step, &computed, &facts, writer).await?;
                let written = writer.write(step, &computed, guards, conversation).await;
                if written.usage.input_tokens + written.usage.output_tokens > 0 {
                    step.sink.model_usage(written.otel_span(writer, step.ctx));
                }
                let model = written.to_json(writer);
                (written.text, Some(model))
            }
            _ => {
                for chunk in chunks(&computed, CHUNK) {
                    step.delta(chunk.to_owned()).await;
                }
                (computed, None)
            }
        };
        let words = text.split_whitespace().count();
        let summary = format!("Report written ({words} words).");
        // The text itself is persisted once, as the assistant message.
        let report_suggestions = report.suggestions();
        let mut result = json!({ "words": words, "forecast": findings.forecast, "suggestions": report_suggestions });
        if let Some(model) = model {
            result["model"] = model;
        }
        findings.suggestions = report_suggestions;
        findings.answer = Some(text);
        Ok(AgentOutput { summary, result })
    }
}

/// What the report is written from: the findings it needs, all present.
struct Report<'a> {
    /// Usage records analyzed (as stored: summed per day, model, feature and project).
    records: usize,
    /// The figures are the built-in demo dataset, not the user's own.
    demo: bool,
    /// The user has no usage data at all.
    empty: bool,
    triage: &'a Triage,
    usage: &'a Summary,
    signals: &'a Signals,
    savings: Option<&'a Savings>,
    what_if: Option<&'a WhatIfResult>,
    forecast: Option<&'a Projection>,
    slice: Option<&'a Slice>,
    change: Option<&'a Explained>,
}

impl<'a> Report<'a> {
    fn of(f: &'a Findings) -> Result<Self, AgentError> {
        let overview = Findings::need(&f.overview, "the overview of the data")?;
        Ok(Self {
            records: overview.records,
            demo: overview.source == Origin::Demo,
            empty: overview.source == Origin::Empty,
            triage: Findings::need(&f.triage, "what the question asks for")?,
            usage: &Findings::need(&f.usage, "the usage summary")?.summary,
            signals: Findings::need(&f.signals, "what stands out in the usage")?,
            savings: f.savings.as_ref(),
            what_if: f.what_if.as_ref(),
            forecast: f.forecast.as_ref(),
            slice: f.slice.as_ref(),
            change: f.change.as_ref(),
        })
    }

    fn write(&self) -> String {
        if self.empty {
            return no_data();
        }
        match self.triage.intent {
            Intent::ImportHelp => return self.import_help(),
            Intent::OffTopic => return self.off_topic(),
            _ => {}
        }
        // The answer to the question asked, short; the full report for the whole picture.
        if let Some(short) = self.short() {
            return short;
        }
        let mut out = String::with_capacity(2048);
        let u = self.usage;
        let _ = writeln!(out, "## Your AI spend: {} over {} days ({} to {})\n", u.total, u.days, u.from, u.to);
        if self.demo {
            out.push_str(DEMO_NOTICE);
            out.push_str("\n\n");
        }
        let _ = writeln!(
            out,
            "{} requests used {} input and {} output tokens.\n",
            group_thousands(u.requests),
            group_thousands(u.input_tokens),
            group_thousands(u.output_tokens),
        );
        pricing_notes(u, &mut out);
        let sections: &[fn(&Self, &mut String)] = match self.triage.intent {
            Intent::WhatIf => &[Self::what_if_section, Self::spend_section, Self::savings_section, Self::forecast_section],
            Intent::Optimization => &[Self::savings_section, Self::spend_section, Self::forecast_section],
            Intent::Forecast => &[Self::forecast_section, Self::spend_section, Self::savings_section],
            _ => &[Self::spend_section, Self::savings_section, Self::forecast_section],
        };
        for section in sections {
            section(self, &mut out);
        }
        self.next_steps(&mut out);
        out
    }

    /// The guards a model's answer passes: the run's figures and names, the catalog, the
    /// data's days, and the computed lead to put first if the model leaves it out.
    async fn guards(
        &self,
        step: &Step<'_>,
        computed: &str,
        facts: &serde_json::Value,
        w: &ModelWriter,
    ) -> Result<Guards, AgentError> {
        let vocabulary = step.ctx.data.vocabulary().await.map_err(|e| AgentError::Internal(e.0))?;
        let names = vocabulary.names().map(str::to_owned).collect::<Vec<_>>();
        let mut guards = Guards::new(computed, &[facts], names, &w.instructions_said())
            .with_prices(step.ctx.data.prices().clone())
            .with_range(self.usage.from.to_string(), self.usage.to.to_string())
            .with_lead(self.lead().map(|l| Lead::new(l, &step.ctx.text)));
        guards.know(&step.ctx.text);
        Ok(guards)
    }

    /// The computed answer's first paragraph, when the question asks for a figure.
    fn lead(&self) -> Option<String> {
        let text = if self.triage.question.operation == Operation::Overview {
            format!(
                "Your AI spend was **{}** over {} days ({} to {}).",
                self.usage.total, self.usage.days, self.usage.from, self.usage.to
            )
        } else {
            super::answer::direct(&self.facts())?
        };
        let first = text.split("\n\n").next().unwrap_or_default().trim();
        (!first.is_empty()).then(|| first.to_owned())
    }

    fn facts(&self) -> super::answer::Facts<'_> {
        super::answer::Facts {
            q: &self.triage.question,
            usage: self.usage,
            signals: self.signals,
            slice: self.slice,
            change: self.change,
            savings: self.savings,
            what_if: self.what_if,
            forecast: self.forecast,
        }
    }

    /// The short answer: the direct answer and what supports it, at most two lines also
    /// worth knowing, and two questions to ask next. `None` when the question asks for the
    /// whole picture (or no direct answer fits it).
    fn short(&self) -> Option<String> {
        if self.triage.question.operation == Operation::Overview {
            return None;
        }
        let facts = self.facts();
        let mut out = super::answer::direct(&facts)?;
        if self.demo {
            out.push_str(DEMO_NOTICE);
            out.push_str("\n\n");
        }
        let also = super::answer::also(&facts);
        if !also.is_empty() {
            out.push_str("**Also worth knowing**\n\n");
            for line in also {
                let _ = writeln!(out, "- {line}");
            }
            out.push('\n');
        }
        out.push_str("**Ask next**\n\n");
        for question in self.suggestions() {
            let _ = writeln!(out, "- {question}");
        }
        Some(out)
    }

    /// The questions the answer suggests asking next.
    fn suggestions(&self) -> Vec<String> {
        if self.empty {
            return Vec::new();
        }
        super::answer::suggestions(&self.triage.question, &self.facts())
    }

    fn what_if_section(&self, out: &mut String) {
        let w = match self.what_if {
            Some(WhatIfResult::Priced(w)) => w,
            Some(WhatIfResult::Unavailable { unavailable }) => {
                let _ = writeln!(out, "### What if\n\nI cannot price that change: {unavailable}.\n");
                return;
            }
            None => return,
        };
        let scope = w.feature.as_deref().map_or_else(|| "all your usage".to_owned(), |f| format!("`{f}`"));
        let verdict = if w.monthly_change.0 < 0 { "would save" } else { "would cost" };
        let _ = writeln!(
            out,
            "### What if {scope} ran on {}\n\n**{} a month instead of {}**: it {verdict} **{}/month**. {}\n",
            w.to_model,
            w.projected_monthly,
            w.current_monthly,
            Money(w.monthly_change.0.saturating_abs()),
            w.rationale,
        );
    }

    /// For "how do I import…": the instructions, and what is already there.
    fn import_help(&self) -> String {
        let mut out = how_to_import();
        let u = self.usage;
        let _ = writeln!(
            out,
            "\nYou already have {} usage records from {} to {} ({} in total); importing the same rows again never counts them twice.",
            self.records, u.from, u.to, u.total,
        );
        out
    }

    /// For questions outside AI spend: what this assistant does, with the headline figures.
    fn off_topic(&self) -> String {
        let u = self.usage;
        let top = self.signals.top_drivers.first();
        let (feature, model, cost) = top.map_or(("", "", Money::ZERO), |d| (d.feature.as_str(), d.model.as_str(), d.cost));
        let mut out = String::from("I am Apex's cost analyst: I answer questions about your AI spend, from your usage data.\n\n");
        let _ = writeln!(
            out,
            "Right now: {} over {} days ({} to {}); the biggest driver is `{feature}` on {model} at {cost}.\n",
            u.total, u.days, u.from, u.to,
        );
        let _ = writeln!(
            out,
            "Try: \"Analyze my AI costs\", \"How do I reduce spend?\", \"Forecast next month\", or \"What if {feature} ran on gpt-4o-mini?\"",
        );
        out
    }

    fn spend_section(&self, out: &mut String) {
        let by_feature_first = self.triage.focus == Focus::Feature;
        let u = self.usage;
        let (first, second) = if by_feature_first { (&u.by_feature, &u.by_model) } else { (&u.by_model, &u.by_feature) };
        out.push_str("### Where the money goes\n\n");
        group_table(first, if by_feature_first { "Feature" } else { "Model" }, out);
        let others: Vec<String> =
            second.iter().take(3).map(|g| format!("**{}** {} ({})", g.key, g.cost, pct(i64::from(g.share_bp)))).collect();
        let label = if by_feature_first { "models" } else { "features" };
        let _ = writeln!(out, "Top {label}: {}.\n", others.join(", "));
        drivers(self.signals, out);
        anomalies(self.signals, out);
    }

    fn savings_section(&self, out: &mut String) {
        let Some(savings) = self.savings else { return };
        let recs = &savings.recommendations;
        if recs.is_empty() {
            let no_tokens = self.usage.input_tokens == 0 && self.usage.output_tokens == 0;
            if no_tokens {
                out.push_str("### Savings\n\nYour usage carries costs but no token counts, so I cannot check model fit, prompt caching, batch pricing or answer lengths. Import an export with token counts (the OpenAI usage export, LiteLLM or Langfuse logs, or a CSV with `input_tokens` and `output_tokens`) to find savings.\n\n");
            } else {
                out.push_str("### Savings\n\nI found no change that lowers this bill without changing what it buys: the checks for right-sized models, prompt caching, batch pricing, answer-length caps and repeated requests found nothing worth changing.\n\n");
            }
            return;
        }
        let _ = writeln!(out, "### Savings you can make: {} per month\n", savings.total_monthly_savings);
        super::answer::recommendations(recs, out);
        out.push('\n');
    }

    fn forecast_section(&self, out: &mut String) {
        let Some(Projection { forecast: f, .. }) = self.forecast else { return };
        let direction = match f.trend_bp {
            t if t > 0 => "up",
            t if t < 0 => "down",
            _ => "flat",
        };
        let _ = writeln!(
            out,
            "### Where the month is heading\n\nAt the last 7 days' pace you will spend **{} per month**, {} {} from {} in the first week of the period.\n",
            f.monthly_run_rate,
            direction,
            pct(f.trend_bp.saturating_abs()),
            f.previous_run_rate,
        );
        if let Some(wow) = &self.signals.week_over_week {
            if let Some(change) = wow.change_bp {
                let _ = writeln!(
                    out,
                    "The last 7 days cost {}, {} {} on the 7 days before ({}).\n",
                    wow.last_week,
                    if change >= 0 { "up" } else { "down" },
                    pct(change.saturating_abs()),
                    wow.previous_week,
                );
            }
        }
    }

    fn next_steps(&self, out: &mut String) {
        out.push_str("### Next steps\n\n");
        match self.savings.and_then(|s| s.recommendations.first()) {
            Some(first) => {
                let _ = writeln!(
                    out,
                    "- Start with **{}** on `{}`: it is the largest single saving ({}/month).",
                    first.title, first.feature, first.monthly_savings
                );
            }
            None => out.push_str("- Keep watching the run rate: nothing needs to change today.\n"),
        }
        out.push_str("- Ask \"which feature costs most?\" or \"how do I reduce spend?\" to dig deeper.\n");
    }
}

/// Where the figures rest on billed costs rather than list prices, and what could not be
/// priced at all.
fn pricing_notes(u: &Summary, out: &mut String) {
    let b = &u.billed;
    if let (records @ 1.., Some(bp)) = (b.records, b.difference_bp) {
        let relation = match bp {
            bp if bp < 0 => format!("{} below", pct(-bp)),
            bp if bp > 0 => format!("{} above", pct(bp)),
            _ => "exactly".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} records carry the cost your provider billed, {} in all: {relation} list price for the same tokens ({}). Totals use the billed cost; savings are worked out at list price on both sides.\n",
            group_thousands(records),
            b.billed,
            b.at_list_price,
        );
    }
    if u.unpriced_records > 0 {
        let _ = writeln!(
            out,
            "{} records name models the price catalog does not know and carry no cost; they are left out of the totals here (`apex prices MODEL` shows what is known).\n",
            group_thousands(u.unpriced_records),
        );
    }
}

fn drivers(signals: &Signals, out: &mut String) {
    let drivers: Vec<String> = signals
        .top_drivers
        .iter()
        .take(3)
        .map(|d| format!("`{}` on {} ({}, {})", d.feature, d.model, d.cost, pct(i64::from(d.share_bp))))
        .collect();
    if !drivers.is_empty() {
        let _ = writeln!(out, "The biggest drivers: {}.\n", drivers.join("; "));
    }
}

fn anomalies(signals: &Signals, out: &mut String) {
    if signals.anomalies.is_empty() {
        return;
    }
    out.push_str("### Unusual days\n\n");
    for a in &signals.anomalies {
        let _ = writeln!(
            out,
            "- **{}**: {} `{}` cost {} against a typical {} per day ({} more).",
            a.day, a.dimension, a.key, a.cost, a.median, a.excess,
        );
    }
    out.push_str("\nA spike like this is worth checking first: a retry loop, a runaway job or a prompt that grew.\n\n");
}

fn group_table(groups: &[GroupTotal], label: &str, out: &mut String) {
    let _ = writeln!(out, "| {label} | Spend | Share | Requests |\n|---|---:|---:|---:|");
    for g in groups.iter().take(6) {
        let _ = writeln!(out, "| {} | {} | {} | {} |", g.key, g.cost, pct(i64::from(g.share_bp)), group_thousands(g.requests));
    }
    out.push('\n');
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

//! The supervisor: plans the run, then runs triage → data → optimization → report.
use std::sync::Arc;
use std::time::Instant;

use apex_protocol::AgentName;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::agent::{Agent, AgentError, Scratchpad};
use crate::agents::{money, DataAgent, ModelWriter, OptimizationAgent, ReportAgent, TriageAgent};
use crate::context::RunContext;
use crate::sink::EventSink;

pub struct Supervisor {
    agents: Vec<Arc<dyn Agent>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Supervisor {
    /// The pipeline, with the report written by `model` when one is configured.
    pub fn new(model: Option<ModelWriter>) -> Self {
        let report = ReportAgent { model };
        Self { agents: vec![Arc::new(TriageAgent), Arc::new(DataAgent), Arc::new(OptimizationAgent), Arc::new(report)] }
    }

    /// Runs the whole pipeline and returns the answer text (the report as streamed).
    pub async fn run(&self, ctx: &RunContext, sink: &EventSink) -> Result<String, AgentError> {
        let started = Instant::now();
        let pad = Scratchpad::default();
        sink.started(AgentName::Supervisor).await;
        sink.thinking(AgentName::Supervisor, format!("Planning an answer to \"{}\".", excerpt(&ctx.text, 120))).await;
        let overview = sink.call_tool(ctx, AgentName::Supervisor, "load_usage_overview", json!({})).await?;
        let plan: Vec<&str> = self.agents.iter().map(|a| a.name().as_str()).collect();
        sink.thinking(
            AgentName::Supervisor,
            format!(
                "{} usage records ({} in total) cover {} to {}. Running {}.",
                overview["records"],
                money(&overview["total"]),
                overview["from"].as_str().unwrap_or("?"),
                overview["to"].as_str().unwrap_or("?"),
                plan.join(" → ")
            ),
        )
        .await;
        pad.put(AgentName::Supervisor, overview.clone());

        for agent in &self.agents {
            let agent_started = Instant::now();
            sink.started(agent.name()).await;
            let span = tracing::info_span!("agent", agent = agent.name().as_str());
            let out = agent.run(ctx, sink, &pad).instrument(span).await?;
            let duration_ms = agent_started.elapsed().as_millis() as u64;
            sink.agent_result(agent.name(), &out.result, duration_ms).await;
            sink.completed(agent.name(), out.summary, agent_started).await;
            pad.put(agent.name(), out.output);
        }

        let answer = pad
            .get(AgentName::Report)
            .and_then(|r| r.get("text").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| AgentError::Internal("the report agent produced no text".into()))?;
        let summary = format!("{} agents completed; the answer is ready.", self.agents.len());
        let plan_output = json!({ "plan": plan, "overview": overview });
        sink.agent_result(AgentName::Supervisor, &plan_output, started.elapsed().as_millis() as u64).await;
        sink.completed(AgentName::Supervisor, summary, started).await;
        Ok(answer)
    }
}

fn excerpt(text: &str, max_chars: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max_chars {
        line
    } else {
        format!("{}…", line.chars().take(max_chars).collect::<String>())
    }
}

//! The supervisor: plans the run, then runs triage → data → optimization → report.
use std::sync::Arc;
use std::time::Instant;

use apex_protocol::AgentName;
use serde_json::json;
use tracing::Instrument;

use crate::agent::{Agent, Findings, Step};
use crate::agents::ModelWriter;
use crate::context::RunContext;
use crate::error::AgentError;
use crate::sink::Sink;
use crate::tools::{NoArgs, Tools, UsageOverview};

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
        Self { agents: crate::agents::pipeline(model) }
    }

    /// Runs the whole pipeline and returns the answer text (the report as streamed).
    pub async fn run(&self, ctx: &RunContext, tools: &Tools, sink: &dyn Sink) -> Result<String, AgentError> {
        let started = Instant::now();
        let mut findings = Findings::default();
        let step = Step { agent: AgentName::Supervisor, ctx, tools, sink };
        sink.started(AgentName::Supervisor).await;
        step.think(format!("Planning an answer to \"{}\".", excerpt(&ctx.text, 120))).await;
        let overview = step.call::<UsageOverview>(NoArgs {}).await?;
        let plan: Vec<&str> = self.agents.iter().map(|a| a.name().as_str()).collect();
        step.think(format!(
            "{} usage records ({} in total) cover {} to {}. Running {}.",
            overview.records,
            overview.total,
            overview.from,
            overview.to,
            plan.join(" → ")
        ))
        .await;
        let plan_output = json!({ "plan": plan, "overview": overview });
        findings.overview = Some(overview);

        for agent in &self.agents {
            let agent_started = Instant::now();
            sink.started(agent.name()).await;
            let span = tracing::info_span!("agent", agent = agent.name().as_str());
            let step = Step { agent: agent.name(), ..step };
            let out = agent.run(&step, &mut findings).instrument(span).await?;
            let duration_ms = agent_started.elapsed().as_millis() as u64;
            sink.agent_result(agent.name(), &out.result, duration_ms).await;
            sink.completed(agent.name(), out.summary, agent_started).await;
        }

        let answer = findings.answer.take().ok_or_else(|| AgentError::Internal("the report agent produced no text".into()))?;
        let summary = format!("{} agents completed; the answer is ready.", self.agents.len());
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

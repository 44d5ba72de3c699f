//! The supervisor: runs triage, then the agents the question needs (data → optimization →
//! report; optimization only for savings, targets and what-ifs).
use std::sync::Arc;
use std::time::Instant;

use apex_protocol::AgentName;
use serde_json::json;
use tracing::Instrument;

use crate::agent::{Agent, Findings, Step};
use crate::agents::{consulted, Conversation, ModelWriter};
use crate::context::RunContext;
use crate::error::AgentError;
use crate::question::Operation;
use crate::sink::Sink;
use crate::tools::{NoArgs, Tools, UsageOverview};
use crate::usage::Origin;

/// A finished run's answer: the text as streamed and the questions it suggests next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub suggestions: Vec<String>,
}

pub struct Supervisor {
    agents: Vec<Arc<dyn Agent>>,
    /// The configured model, when it plans with the agents.
    planner: Option<ModelWriter>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Supervisor {
    /// The pipeline, with the report written by `model` when one is configured.
    pub fn new(model: Option<ModelWriter>) -> Self {
        let planner = model.clone().filter(|m| m.plans);
        Self { agents: crate::agents::pipeline(model), planner }
    }

    /// Runs the agents the question needs and returns the answer (the report as streamed).
    pub async fn run(&self, ctx: &RunContext, tools: &Tools, sink: &dyn Sink) -> Result<Answer, AgentError> {
        let started = Instant::now();
        let mut findings = Findings::default();
        let step = Step { agent: AgentName::Supervisor, ctx, tools, sink };
        sink.started(AgentName::Supervisor).await;
        step.think(format!("Planning an answer to \"{}\".", excerpt(&ctx.text, 120))).await;
        let overview = step.call::<UsageOverview>(NoArgs {}).await?;
        step.think(format!(
            "{} usage records ({} in total) cover {} to {}. Triage reads the question first; the agents it needs run after it.",
            overview.records, overview.total, overview.from, overview.to,
        ))
        .await;
        findings.overview = Some(overview);

        let mut plan: Vec<&str> = Vec::with_capacity(self.agents.len());
        for (i, agent) in self.agents.iter().enumerate() {
            if !agent.needed(&findings) {
                continue;
            }
            plan.push(agent.name().as_str());
            let agent_started = Instant::now();
            sink.started(agent.name()).await;
            let span = tracing::info_span!("agent", agent = agent.name().as_str());
            let agent_step = Step { agent: agent.name(), ..step };
            let out = agent.run(&agent_step, &mut findings).instrument(span.clone()).await?;
            if let (Some(model), Some(conv)) = (&self.planner, findings.conversation.as_mut()) {
                if consulted(agent.name()) {
                    model.consult(&agent_step, conv, &out).instrument(span).await;
                }
            }
            let duration_ms = agent_started.elapsed().as_millis() as u64;
            sink.agent_result(agent.name(), &out.result, duration_ms).await;
            sink.completed(agent.name(), out.summary, agent_started).await;
            // Once triage has read the question, say which agents it needs.
            if i == 0 {
                if let Some(q) = findings.question() {
                    let next: Vec<&str> =
                        self.agents[1..].iter().filter(|a| a.needed(&findings)).map(|a| a.name().as_str()).collect();
                    step.think(format!("A {} question: running {}.", q.operation.label(), next.join(" → "))).await;
                }
                if let Some(model) = &self.planner {
                    findings.conversation = self.plan(model, &step, &findings).await;
                }
            }
        }
        let plan_output = json!({ "plan": plan, "overview": findings.overview });

        let text = findings.answer.take().ok_or_else(|| AgentError::Internal("the report agent produced no text".into()))?;
        let answer = Answer { text, suggestions: std::mem::take(&mut findings.suggestions) };
        let summary = format!("{} agents completed; the answer is ready.", plan.len());
        sink.agent_result(AgentName::Supervisor, &plan_output, started.elapsed().as_millis() as u64).await;
        sink.completed(AgentName::Supervisor, summary, started).await;
        Ok(answer)
    }
}

impl Supervisor {
    /// Starts the model's planning for a question it can help with (not without data, not
    /// for how-to-import or off-topic messages: those have one right answer).
    async fn plan(&self, model: &ModelWriter, step: &Step<'_>, findings: &Findings) -> Option<Conversation> {
        let (overview, question) = (findings.overview.as_ref()?, findings.question()?);
        let plannable = overview.source != Origin::Empty
            && !matches!(question.operation, Operation::ImportHelp | Operation::Greeting | Operation::OffTopic);
        if !plannable {
            return None;
        }
        let ctx = step.ctx;
        let history = match &ctx.memory {
            Some(memory) => memory.history(&ctx.user_id, ctx.thread_id, ctx.run_id).await,
            None => Vec::new(),
        };
        let turns = history.len();
        let data = format!("The data: {} usage records from {} to {}.", overview.records, overview.from, overview.to);
        let conversation = model.start(&ctx.text, question, history, &data);
        step.think(format!(
            "The {} model {} plans with the agents: it reads what each finds{} and may call their tools ({} calls at most).",
            model.provider.system(),
            model.provider.model(),
            if turns > 0 { format!(", with the thread's last {turns} messages") } else { String::new() },
            model.max_steps,
        ))
        .await;
        Some(conversation)
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

//! The seams of the pipeline: agents, the step they run in, and what they leave for each
//! other.
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::context::RunContext;
use crate::error::AgentError;
use crate::sink::Sink;
use crate::tools::{Explained, Overview, Projection, Savings, Signals, Slice, Tool, Tools, Triage, UsageQuery, WhatIfResult};

/// One step of the pipeline. An agent thinks out loud and calls tools through its
/// [`Step`]; what it finds goes into the [`Findings`] the agents after it read, and its
/// conclusion ([`AgentOutput::result`]) is persisted.
#[async_trait]
pub trait Agent: Send + Sync {
    fn name(&self) -> AgentName;
    /// Whether the question needs this agent, given what the agents before it found (the
    /// supervisor skips it otherwise).
    fn needed(&self, _findings: &Findings) -> bool {
        true
    }
    async fn run(&self, step: &Step<'_>, findings: &mut Findings) -> Result<AgentOutput, AgentError>;
}

/// What an agent hands back: a one-line summary (sent in `agent_completed`) and the
/// result that is persisted.
///
/// The persisted result is the agent's conclusion, not a second copy of its tool results:
/// those are already stored in the run's `tool_completed` events, and duplicating them
/// was a quarter of the bytes written per run.
#[derive(Clone, Debug)]
pub struct AgentOutput {
    pub summary: String,
    pub result: Value,
}

/// What the agents of a run found, in the order they run: each fills its part, the ones
/// after it (and the report) read it.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    /// The supervisor's look at the data.
    pub overview: Option<Overview>,
    /// Triage: what the question asks for.
    pub triage: Option<Triage>,
    /// Data: the summary and what stands out in it.
    pub usage: Option<UsageQuery>,
    /// The usage the question narrows to (its period, its names), when it narrows; for a
    /// comparison, with the period compared with.
    pub slice: Option<Slice>,
    pub signals: Option<Signals>,
    /// For "why did costs jump…": the period against the one before it.
    pub change: Option<Explained>,
    /// Optimization: savings, and the what-if the question asked for.
    pub savings: Option<Savings>,
    pub what_if: Option<WhatIfResult>,
    /// Report: the projection, and the answer as streamed.
    pub forecast: Option<Projection>,
    pub answer: Option<String>,
    /// Report: questions that go on from the answer.
    pub suggestions: Vec<String>,
    /// The configured model's side of the run, when it plans (read by the report agent).
    #[serde(skip)]
    pub conversation: Option<crate::agents::Conversation>,
}

impl Findings {
    /// A finding an agent needs from one that ran before it.
    /// What the question was read as (`None` before triage).
    pub fn question(&self) -> Option<&crate::question::Question> {
        self.triage.as_ref().map(|t| &t.question)
    }

    pub fn need<'a, T>(found: &'a Option<T>, what: &str) -> Result<&'a T, AgentError> {
        found.as_ref().ok_or_else(|| AgentError::Internal(format!("{what} was not found before it was needed")))
    }
}

/// An agent at work: its name, the run, the tools it may call and where its events go.
#[derive(Clone, Copy)]
pub struct Step<'a> {
    pub agent: AgentName,
    pub ctx: &'a RunContext,
    pub tools: &'a Tools,
    pub sink: &'a dyn Sink,
}

impl Step<'_> {
    /// Says what the agent is doing (`agent_thinking`).
    pub async fn think(&self, text: impl Into<String>) {
        self.sink.thinking(self.agent, text.into()).await;
    }

    /// Calls the tool `T`; the call is streamed as `tool_executing`/`tool_completed`.
    pub async fn call<T: Tool>(&self, args: T::Args) -> Result<T::Output, AgentError> {
        self.tools.call::<T>(self.ctx, self.sink, self.agent, args).await
    }

    /// Calls a tool by name with JSON arguments (a model's call).
    pub async fn call_json(&self, name: &str, args: Value) -> Result<Value, AgentError> {
        self.tools.call_json(self.ctx, self.sink, self.agent, name, args).await
    }

    /// Streams a piece of the answer.
    pub async fn delta(&self, text: String) {
        self.sink.delta(self.ctx.message_id, text).await;
    }
}

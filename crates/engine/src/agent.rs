//! The seams of the pipeline: agents, tools, and what agents leave for each other.
use std::collections::HashMap;
use std::sync::Arc;

use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::Value;

use crate::context::RunContext;
use crate::sink::EventSink;

/// One step of the pipeline. An agent thinks out loud and calls tools through the sink
/// (which emits the events); its output is persisted and visible to later agents.
#[async_trait]
pub trait Agent: Send + Sync {
    fn name(&self) -> AgentName;
    async fn run(&self, ctx: &RunContext, sink: &EventSink, pad: &Scratchpad) -> Result<AgentOutput, AgentError>;
}

/// What an agent hands back: a one-line summary (sent in `agent_completed`), its
/// structured output for the agents after it, and the result that is persisted.
///
/// The persisted result is the agent's conclusion, not a second copy of its tool results:
/// those are already stored in the run's `tool_completed` events, and duplicating them
/// was a quarter of the bytes written per run.
#[derive(Clone, Debug)]
pub struct AgentOutput {
    pub summary: String,
    pub output: Value,
    pub result: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("tool `{tool}` failed: {message}")]
    Tool { tool: String, message: String },
    #[error("no tool named `{0}` is registered")]
    UnknownTool(String),
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    /// The stable `code` of the `run_failed` event this error ends a run with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Tool { .. } => "tool_failed",
            Self::UnknownTool(_) => "unknown_tool",
            Self::Internal(_) => "agent_failed",
        }
    }
}

/// A capability agents call. Tools see only the run's [`ToolContext`](crate::tools::ToolContext)
/// and JSON arguments, so real data sources plug in without touching the runtime.
#[async_trait]
pub trait Tool: Send + Sync {
    fn name(&self) -> &str;
    async fn call(&self, ctx: &RunContext, args: Value) -> Result<Value, ToolError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// The tools available to a run, by name. Replacing one by name is how a deployment (or a
/// test) swaps an implementation.
#[derive(Clone, Default)]
pub struct Tools(HashMap<String, Arc<dyn Tool>>);

impl Tools {
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        self.0.insert(tool.name().to_owned(), tool);
        self
    }

    /// Wraps every tool, e.g. to add a fault-injection delay.
    pub fn map(self, wrap: impl Fn(Arc<dyn Tool>) -> Arc<dyn Tool>) -> Self {
        Self(self.0.into_iter().map(|(name, tool)| (name, wrap(tool))).collect())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.0.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The outputs of the agents that ran before, by agent.
#[derive(Default)]
pub struct Scratchpad(std::sync::Mutex<HashMap<AgentName, Value>>);

impl Scratchpad {
    pub fn put(&self, agent: AgentName, value: Value) {
        self.0.lock().expect("scratchpad lock").insert(agent, value);
    }

    pub fn get(&self, agent: AgentName) -> Option<Value> {
        self.0.lock().expect("scratchpad lock").get(&agent).cloned()
    }
}

//! How an agent's step fails, and the `code` of the `run_failed` event it ends the run with.

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

use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::json;

use crate::agent::{Agent, AgentError, AgentOutput, Scratchpad};
use crate::context::RunContext;
use crate::sink::EventSink;

/// Decides what the user is asking for and which view of the data leads the answer.
pub struct TriageAgent;

#[async_trait]
impl Agent for TriageAgent {
    fn name(&self) -> AgentName {
        AgentName::Triage
    }

    async fn run(&self, ctx: &RunContext, sink: &EventSink, _pad: &Scratchpad) -> Result<AgentOutput, AgentError> {
        sink.thinking(AgentName::Triage, "Reading the request to decide which analysis should lead the answer.").await;
        let triage = sink.call_tool(ctx, AgentName::Triage, "classify_request", json!({ "text": &*ctx.text })).await?;
        let intent = super::str_of(&triage, "intent").replace('_', " ");
        let focus = super::str_of(&triage, "focus");
        let summary = format!("Intent: {intent}; the report leads with spend by {focus}.");
        Ok(AgentOutput { summary, result: triage.clone(), output: triage })
    }
}

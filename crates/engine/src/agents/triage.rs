use apex_protocol::AgentName;
use async_trait::async_trait;

use crate::agent::{Agent, AgentOutput, Findings, Step};
use crate::error::AgentError;
use crate::tools::{ClassifyArgs, ClassifyRequest, Focus};

/// Decides what the user is asking for and which view of the data leads the answer.
pub struct TriageAgent;

#[async_trait]
impl Agent for TriageAgent {
    fn name(&self) -> AgentName {
        AgentName::Triage
    }

    async fn run(&self, step: &Step<'_>, findings: &mut Findings) -> Result<AgentOutput, AgentError> {
        step.think("Reading the request to decide which analysis should lead the answer.").await;
        let triage = step.call::<ClassifyRequest>(ClassifyArgs { text: Some(step.ctx.text.to_string()) }).await?;
        let focus = match triage.focus {
            Focus::Model => "model",
            Focus::Feature => "feature",
        };
        let summary = format!(
            "Intent: {}; the report leads with spend by {focus}. Read as: {}.",
            triage.intent.label(),
            triage.question.describe()
        );
        let result = serde_json::to_value(&triage).map_err(|e| AgentError::Internal(e.to_string()))?;
        findings.triage = Some(triage);
        Ok(AgentOutput { summary, result })
    }
}

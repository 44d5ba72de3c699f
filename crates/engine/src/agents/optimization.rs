use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::json;

use crate::agent::{Agent, AgentOutput, Findings, Step};
use crate::error::AgentError;
use crate::question::Operation;
use crate::tools::{FindSavings, Intent, SavingsArgs, WhatIfArgs, WhatIfResult, WhatIfTool};

/// Finds concrete savings: right-sized models where outputs are short, prompt caching where
/// inputs repeat, batch pricing for offline work, caps on long answers and a response
/// cache for repeated requests; and prices the what-if a question asks for.
pub struct OptimizationAgent;

#[async_trait]
impl Agent for OptimizationAgent {
    fn name(&self) -> AgentName {
        AgentName::Optimization
    }

    /// Savings are looked for when the question is about them, a target or a what-if, or
    /// asks for the whole picture.
    fn needed(&self, findings: &Findings) -> bool {
        findings.question().is_none_or(|q| matches!(q.operation, Operation::Overview | Operation::Savings | Operation::WhatIf))
    }

    async fn run(&self, step: &Step<'_>, findings: &mut Findings) -> Result<AgentOutput, AgentError> {
        let features = findings.usage.as_ref().map_or(0, |u| u.summary.by_feature.len());
        step.think(format!(
            "Checking {features} features for right-sized models, prompt caching, batch pricing, answer-length caps \
             and repeated requests."
        ))
        .await;
        let triage = Findings::need(&findings.triage, "what the question asks for")?;
        let what_if = match &triage.target_model {
            // A what-if about a name the data does not hold is not priced over all usage in
            // its place: the answer says the name is not there.
            Some(to_model) if triage.intent == Intent::WhatIf && findings.question().is_none_or(|q| q.not_found.is_empty()) => {
                let args = WhatIfArgs { to_model: to_model.clone(), feature: triage.feature.clone() };
                Some(step.call::<WhatIfTool>(args).await?)
            }
            _ => None,
        };
        // "Cut 30%", "three ways": how far the largest changes go toward it.
        let args = findings.question().map_or_else(SavingsArgs::default, |q| SavingsArgs {
            target_percent: q.target_percent,
            changes: q.rank.map(|r| r.count).filter(|&n| n > 1),
        });
        let savings = step.call::<FindSavings>(args).await?;
        let mut result = json!({
            "total_monthly_savings": savings.total_monthly_savings,
            "recommendations": savings.recommendations.iter().map(|r| json!({
                "kind": r.kind, "feature": r.feature, "monthly_savings": r.monthly_savings, "confidence": r.confidence,
            })).collect::<Vec<_>>(),
        });
        match &what_if {
            Some(WhatIfResult::Priced(w)) => {
                result["what_if"] = json!({ "to_model": w.to_model, "feature": w.feature, "monthly_change": w.monthly_change })
            }
            Some(WhatIfResult::Unavailable { unavailable }) => result["what_if"] = json!({ "unavailable": unavailable }),
            None => {}
        }
        let summary =
            format!("{} opportunities worth {} per month.", savings.recommendations.len(), savings.total_monthly_savings);
        findings.savings = Some(savings);
        findings.what_if = what_if;
        Ok(AgentOutput { summary, result })
    }
}

use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::{json, Value};

use super::money;
use crate::agent::{Agent, AgentError, AgentOutput, Scratchpad};
use crate::context::RunContext;
use crate::sink::EventSink;

/// Finds concrete savings: right-sized models where outputs are short, prompt caching where
/// inputs repeat, batch pricing for offline work, caps on long answers and a response
/// cache for repeated requests.
pub struct OptimizationAgent;

#[async_trait]
impl Agent for OptimizationAgent {
    fn name(&self) -> AgentName {
        AgentName::Optimization
    }

    async fn run(&self, ctx: &RunContext, sink: &EventSink, pad: &Scratchpad) -> Result<AgentOutput, AgentError> {
        let features =
            pad.get(AgentName::Data).and_then(|d| d.get("by_feature").and_then(Value::as_array).map(Vec::len)).unwrap_or(0);
        sink.thinking(
            AgentName::Optimization,
            format!(
                "Checking {features} features for right-sized models, prompt caching, batch pricing, answer-length caps \
                 and repeated requests."
            ),
        )
        .await;
        let triage = pad.get(AgentName::Triage).unwrap_or_default();
        let what_if = match triage["target_model"].as_str() {
            Some(to_model) if triage["intent"] == "what_if" => {
                let args = json!({ "feature": triage["feature"], "to_model": to_model });
                Some(sink.call_tool(ctx, AgentName::Optimization, "what_if", args).await?)
            }
            _ => None,
        };
        let mut savings = sink.call_tool(ctx, AgentName::Optimization, "find_savings", json!({})).await?;
        let recommendations = savings["recommendations"].as_array().cloned().unwrap_or_default();
        let count = recommendations.len();
        let mut result = json!({
            "total_monthly_savings": savings["total_monthly_savings"],
            "recommendations": recommendations
                .iter()
                .map(|r| {
                    json!({ "kind": r["kind"], "feature": r["feature"], "monthly_savings": r["monthly_savings"],
                            "confidence": r["confidence"] })
                })
                .collect::<Vec<Value>>(),
        });
        if let Some(w) = what_if {
            result["what_if"] =
                json!({ "to_model": w["to_model"], "feature": w["feature"], "monthly_change": w["monthly_change"] });
            savings["what_if"] = w;
        }
        Ok(AgentOutput {
            result,
            summary: format!("{count} opportunities worth {} per month.", money(&savings["total_monthly_savings"])),
            output: savings,
        })
    }
}

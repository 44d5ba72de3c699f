use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::json;

use super::{money, str_of};
use crate::agent::{Agent, AgentError, AgentOutput, Scratchpad};
use crate::context::RunContext;
use crate::sink::EventSink;

/// Aggregates the user's usage: totals by model, feature and day.
pub struct DataAgent;

#[async_trait]
impl Agent for DataAgent {
    fn name(&self) -> AgentName {
        AgentName::Data
    }

    async fn run(&self, ctx: &RunContext, sink: &EventSink, pad: &Scratchpad) -> Result<AgentOutput, AgentError> {
        let overview = pad.get(AgentName::Supervisor).unwrap_or_default();
        sink.thinking(
            AgentName::Data,
            format!(
                "Aggregating {} usage records from {} to {} by model, feature and day.",
                overview.get("records").and_then(|v| v.as_u64()).unwrap_or(0),
                str_of(&overview, "from"),
                str_of(&overview, "to"),
            ),
        )
        .await;
        let summary =
            sink.call_tool(ctx, AgentName::Data, "query_usage", json!({ "group_by": ["model", "feature", "day"] })).await?;
        let signals = sink.call_tool(ctx, AgentName::Data, "detect_anomalies", json!({ "method": "median_mad" })).await?;
        let spikes = signals["anomalies"].as_array().map_or(0, Vec::len);
        let top = summary.get("by_model").and_then(|m| m.get(0)).cloned().unwrap_or_default();
        let count = |key: &str| summary.get(key).and_then(|v| v.as_array()).map_or(0, Vec::len);
        let result = json!({
            "from": summary["from"], "to": summary["to"], "days": summary["days"],
            "total": summary["total"], "requests": summary["requests"],
            "models": count("by_model"), "features": count("by_feature"),
            "top_model": { "model": top["key"], "cost": top["cost"] },
            "anomalies": spikes,
        });
        let summary_line = format!(
            "{} spent over {} days; the largest model is {} at {}; {} unusual day(s).",
            money(&summary["total"]),
            summary["days"],
            str_of(&top, "key"),
            money(&top["cost"]),
            spikes,
        );
        let mut output = summary;
        output["signals"] = signals;
        Ok(AgentOutput { result, summary: summary_line, output })
    }
}

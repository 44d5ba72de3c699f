//! Data: what stands out: unusual days, the biggest drivers, the week-over-week change.
use apex_costs::{detect_anomalies, top_drivers, week_over_week, Anomaly, Driver, WeekOverWeek};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;

pub struct DetectAnomalies;

#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnomalyArgs {
    /// How unusual days are found: `median_mad` (the only method: a day more than 3.5
    /// modified z-scores above the median of its model or feature).
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Signals {
    pub anomalies: Vec<Anomaly>,
    pub top_drivers: Vec<Driver>,
    pub week_over_week: Option<WeekOverWeek>,
}

/// The drivers listed.
const TOP_DRIVERS: usize = 5;

#[async_trait]
impl Tool for DetectAnomalies {
    const NAME: &'static str = "detect_anomalies";
    const AGENT: AgentName = AgentName::Data;
    const DESCRIPTION: &'static str =
        "Unusual days by model and feature, the biggest feature × model drivers, and the last 7 days against the 7 before.";
    type Args = AnomalyArgs;
    type Output = Signals;

    async fn run(&self, ctx: &RunContext, args: AnomalyArgs) -> Result<Signals, ToolError> {
        if let Some(method) = args.method.as_deref().filter(|m| *m != "median_mad") {
            return Err(ToolError(format!("unknown method `{method}`: the method is `median_mad`")));
        }
        let records = ctx.data.records().await?;
        Ok(Signals {
            anomalies: detect_anomalies(ctx.data.prices(), &records),
            top_drivers: top_drivers(ctx.data.prices(), &records, TOP_DRIVERS),
            week_over_week: week_over_week(ctx.data.prices(), &records),
        })
    }
}

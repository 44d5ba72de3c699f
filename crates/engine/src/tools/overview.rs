//! Supervisor: what data the user has (coverage, size), to plan the run.
use apex_costs::Money;
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::Serialize;

use super::{Tool, ToolError};
use crate::context::RunContext;
use crate::usage::Origin;

pub struct UsageOverview;

/// The user's data at a glance.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub source: Origin,
    /// Usage records (as stored: summed per day, model, feature and project).
    pub records: usize,
    /// First and last day covered ("YYYY-MM-DD"); empty without records.
    pub from: String,
    pub to: String,
    pub days: u32,
    pub total: Money,
    pub models: usize,
    pub features: usize,
    pub unpriced_records: u64,
}

#[async_trait]
impl Tool for UsageOverview {
    const NAME: &'static str = "load_usage_overview";
    const AGENT: AgentName = AgentName::Supervisor;
    const DESCRIPTION: &'static str = "What usage data the user has: its source, size, the days it covers and its total.";
    type Args = super::NoArgs;
    type Output = Overview;

    async fn run(&self, ctx: &RunContext, _args: super::NoArgs) -> Result<Overview, ToolError> {
        let data = ctx.data.data().await?;
        let s = ctx.data.summary().await?;
        Ok(Overview {
            source: data.origin,
            records: data.records.len(),
            from: s.from.clone(),
            to: s.to.clone(),
            days: s.days,
            total: s.total,
            models: s.by_model.len(),
            features: s.by_feature.len(),
            unpriced_records: s.unpriced_records,
        })
    }
}

//! Data: spend aggregated by model, feature and day.
use apex_costs::{top_groups, Summary};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;

pub struct QueryUsage;

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueryArgs {
    /// The breakdowns to return besides the totals; all three when omitted.
    #[serde(default = "all_breakdowns")]
    pub group_by: Vec<Breakdown>,
}

impl Default for QueryArgs {
    fn default() -> Self {
        Self { group_by: all_breakdowns() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Breakdown {
    Model,
    Feature,
    Day,
}

fn all_breakdowns() -> Vec<Breakdown> {
    vec![Breakdown::Model, Breakdown::Feature, Breakdown::Day]
}

/// The summary of the user's usage. A breakdown has one entry per name in the data: the
/// largest are listed and the rest counted (`by_model_more`, `by_feature_more`), so the
/// result stays small whatever the data holds.
#[derive(Clone, Debug, Serialize)]
pub struct UsageQuery {
    #[serde(flatten)]
    pub summary: Summary,
    pub by_model_more: usize,
    pub by_feature_more: usize,
}

#[async_trait]
impl Tool for QueryUsage {
    const NAME: &'static str = "query_usage";
    const AGENT: AgentName = AgentName::Data;
    const DESCRIPTION: &'static str =
        "Total spend, requests and tokens of the user's usage, with spend by model, by feature and by day.";
    type Args = QueryArgs;
    type Output = UsageQuery;

    async fn run(&self, ctx: &RunContext, args: QueryArgs) -> Result<UsageQuery, ToolError> {
        let s = ctx.data.summary().await?;
        let wants = |b: Breakdown| args.group_by.contains(&b);
        let (by_model, by_model_more) = if wants(Breakdown::Model) { top_groups(&s.by_model) } else { (&[][..], 0) };
        let (by_feature, by_feature_more) = if wants(Breakdown::Feature) { top_groups(&s.by_feature) } else { (&[][..], 0) };
        let summary = Summary {
            by_model: by_model.to_vec(),
            by_feature: by_feature.to_vec(),
            daily: if wants(Breakdown::Day) { s.daily.clone() } else { Vec::new() },
            billed: s.billed.clone(),
            from: s.from.clone(),
            to: s.to.clone(),
            weekly: s.weekly.clone(),
            ..*s
        };
        Ok(UsageQuery { summary, by_model_more, by_feature_more })
    }
}

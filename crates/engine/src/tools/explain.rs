//! Data: why spend moved — a period against the one before it, by feature × model, split
//! into volume, price and mix.
use apex_costs::{explain_change, spike_day, Change};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;

pub struct ExplainChange;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExplainArgs {
    /// First day of the period to explain ("YYYY-MM-DD"); without it, the day that stands
    /// out most against the days before it.
    #[serde(default)]
    pub from: Option<String>,
    /// Last day of the period (`from` when omitted).
    #[serde(default)]
    pub to: Option<String>,
    /// The period to compare with ("YYYY-MM-DD" both); the 7 days before `from` when omitted.
    #[serde(default)]
    pub compare_from: Option<String>,
    #[serde(default)]
    pub compare_to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explained {
    /// The period was picked as the day that stands out most (the question named none).
    pub picked: bool,
    /// `None` without usage data.
    pub change: Option<Change>,
}

#[async_trait]
impl Tool for ExplainChange {
    const NAME: &'static str = "explain_change";
    const AGENT: AgentName = AgentName::Data;
    const DESCRIPTION: &'static str = "Why spend moved in a period against the one before it: the feature × model pairs \
         that changed most, and how much of the change is more requests (volume), dearer requests (price) or a shift \
         between them (mix).";
    type Args = ExplainArgs;
    type Output = Explained;

    async fn run(&self, ctx: &RunContext, args: ExplainArgs) -> Result<Explained, ToolError> {
        let records = ctx.data.records().await?;
        let prices = ctx.data.prices();
        let (from, picked) = match args.from {
            Some(from) => (Some(from), false),
            None => (spike_day(&ctx.data.summary().await?.daily), true),
        };
        let Some(from) = from else { return Ok(Explained { picked, change: None }) };
        let to = args.to.unwrap_or_else(|| from.clone());
        let baseline = match (&args.compare_from, &args.compare_to) {
            (Some(a), Some(b)) => Some((a.as_str(), b.as_str())),
            (None, None) => None,
            _ => return Err(ToolError("give both compare_from and compare_to, or neither".into())),
        };
        let change = explain_change(prices, &records, &from, &to, baseline).ok_or_else(|| {
            ToolError(format!("not a period: {from} to {to} (days are YYYY-MM-DD, the first not after the last)"))
        })?;
        Ok(Explained { picked, change: Some(change) })
    }
}

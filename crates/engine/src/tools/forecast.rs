//! Report: where the month is heading, and when a budget runs out.
use apex_costs::import::parse_usd;
use apex_costs::{budget_run_out, forecast, BudgetRunOut, Forecast, Money, MICROS_PER_USD};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;

pub struct ForecastSpend;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ForecastArgs {
    /// A monthly budget in dollars ("5000", "12500.50"): when given, the day it runs out.
    #[serde(default)]
    pub budget: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Projection {
    #[serde(flatten)]
    pub forecast: Forecast,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRunOut>,
}

/// "5000", "$12,500.50" as money, exactly (the importers' dollar parser); `None` for
/// anything else or a budget that is not positive or not under a trillion dollars.
pub fn dollars(text: &str) -> Option<Money> {
    let clean: String = text.chars().filter(|c| !matches!(c, ',' | ' ')).collect();
    parse_usd(&clean).filter(|m| m.0 > 0 && m.0 < 1_000_000_000_000 * MICROS_PER_USD)
}

#[async_trait]
impl Tool for ForecastSpend {
    const NAME: &'static str = "forecast_spend";
    const AGENT: AgentName = AgentName::Report;
    const DESCRIPTION: &'static str = "This month's projected spend at the recent pace, and with a budget, the day it runs out.";
    type Args = ForecastArgs;
    type Output = Projection;

    async fn run(&self, ctx: &RunContext, args: ForecastArgs) -> Result<Projection, ToolError> {
        let summary = ctx.data.summary().await?;
        let budget = match args.budget.as_deref() {
            Some(text) => {
                let amount = dollars(text).ok_or_else(|| ToolError(format!("not a budget in dollars: `{text}`")))?;
                budget_run_out(&summary, amount)
            }
            None => None,
        };
        Ok(Projection { forecast: forecast(&summary), budget })
    }
}

//! Report: where the month is heading.
use apex_costs::{forecast, Forecast};
use async_trait::async_trait;

use super::{NoArgs, Tool, ToolError};
use crate::context::RunContext;

pub struct ForecastSpend;

#[async_trait]
impl Tool for ForecastSpend {
    const NAME: &'static str = "forecast_spend";
    const DESCRIPTION: &'static str = "This month's projected spend at the recent pace.";
    type Args = NoArgs;
    type Output = Forecast;

    async fn run(&self, ctx: &RunContext, _args: NoArgs) -> Result<Forecast, ToolError> {
        Ok(forecast(&*ctx.data.summary().await?))
    }
}

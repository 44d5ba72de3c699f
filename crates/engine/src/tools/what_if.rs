//! Optimization: the user's usage priced on another model ("what if").
use apex_costs::WhatIf;
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;

pub struct WhatIfTool;

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhatIfArgs {
    /// The model to price the usage on, e.g. `gpt-4o-mini`.
    pub to_model: String,
    /// A feature name; all usage when omitted.
    #[serde(default)]
    pub feature: Option<String>,
}

/// The priced change, or why it cannot be priced (not a failure of the run: the answer
/// explains it).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum WhatIfResult {
    Priced(WhatIf),
    Unavailable { unavailable: String },
}

#[async_trait]
impl Tool for WhatIfTool {
    const NAME: &'static str = "what_if";
    const AGENT: AgentName = AgentName::Optimization;
    const DESCRIPTION: &'static str = "Monthly cost if a feature (or all usage) ran on another model.";
    type Args = WhatIfArgs;
    type Output = WhatIfResult;

    async fn run(&self, ctx: &RunContext, args: WhatIfArgs) -> Result<WhatIfResult, ToolError> {
        let records = ctx.data.records().await?;
        Ok(match apex_costs::what_if(ctx.data.prices(), &records, args.feature.as_deref(), &args.to_model) {
            Ok(w) => WhatIfResult::Priced(w),
            Err(e) => WhatIfResult::Unavailable { unavailable: e.to_string() },
        })
    }
}

//! The four sub-agents, in the order the supervisor runs them.
mod data;
mod grounding;
mod narrate;
mod optimization;
mod report;
mod triage;

pub use data::DataAgent;
pub use grounding::{sentences, Grounding};
pub use narrate::{ModelWriter, Written};
pub use optimization::OptimizationAgent;
pub use report::{chunks, ReportAgent};
pub use triage::TriageAgent;

use apex_costs::Money;
use serde_json::Value;

/// Formats a money value as the tools return it (integer micro-dollars).
pub fn money(v: &Value) -> String {
    Money(v.as_i64().unwrap_or(0)).to_string()
}

/// Formats basis points as a percentage with one decimal.
pub(crate) fn pct(bp: &Value) -> String {
    let bp = bp.as_i64().unwrap_or(0);
    format!("{}{}.{}%", if bp < 0 { "-" } else { "" }, bp.abs() / 100, (bp.abs() % 100) / 10)
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

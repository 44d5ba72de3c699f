//! The four sub-agents, in the order the supervisor runs them.
//!
//! Adding an agent: a file here with `impl Agent`, and its place in [`pipeline`] below
//! (plus a field in `Findings` for what it finds).
mod answer;
mod data;
mod grounding;
mod guards;
mod narrate;
mod optimization;
mod plan;
mod report;
mod triage;

pub use data::DataAgent;
pub use grounding::{sentences, Grounding};
pub use guards::{GuardCounts, Guards, Lead, Verdict};
pub use narrate::{ModelWriter, Written};
pub use optimization::OptimizationAgent;
pub use plan::{consulted, Conversation};
pub use report::{chunks, ReportAgent};
pub use triage::TriageAgent;

/// The sub-agents the supervisor runs, in order; the report is written by `model` when
/// one is configured.
pub fn pipeline(model: Option<ModelWriter>) -> Vec<std::sync::Arc<dyn crate::Agent>> {
    vec![
        std::sync::Arc::new(TriageAgent),
        std::sync::Arc::new(DataAgent),
        std::sync::Arc::new(OptimizationAgent),
        std::sync::Arc::new(ReportAgent { model }),
    ]
}

/// Formats basis points as a percentage with one decimal, rounded half up (31.65 % is
/// "31.7%"), the same everywhere an answer gives a share.
pub(crate) fn pct(bp: i64) -> String {
    let tenths = (bp.unsigned_abs() + 5) / 10;
    let sign = if bp < 0 && tenths > 0 { "-" } else { "" };
    format!("{sign}{}.{}%", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentages_are_rounded_not_truncated() {
        assert_eq!(super::pct(3_165), "31.7%");
        assert_eq!(super::pct(3_164), "31.6%");
        assert_eq!(super::pct(9_999), "100.0%");
        assert_eq!(super::pct(-250), "-2.5%");
        assert_eq!(super::pct(-4), "0.0%");
        assert_eq!(super::pct(0), "0.0%");
    }
}

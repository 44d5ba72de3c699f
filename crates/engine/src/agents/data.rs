use apex_protocol::AgentName;
use async_trait::async_trait;
use serde_json::json;

use crate::agent::{Agent, AgentOutput, Findings, Step};
use crate::error::AgentError;
use crate::question::Operation;
use crate::tools::{
    AnomalyArgs, DetectAnomalies, ExplainArgs, ExplainChange, QueryArgs, QuerySlice, QueryUsage, SliceArgs, SliceFilter,
};

/// Aggregates the user's usage: totals by model, feature and day, and what stands out.
pub struct DataAgent;

#[async_trait]
impl Agent for DataAgent {
    fn name(&self) -> AgentName {
        AgentName::Data
    }

    async fn run(&self, step: &Step<'_>, findings: &mut Findings) -> Result<AgentOutput, AgentError> {
        let overview = Findings::need(&findings.overview, "the overview of the data")?;
        step.think(format!(
            "Aggregating {} usage records from {} to {} by model, feature and day.",
            overview.records, overview.from, overview.to,
        ))
        .await;
        let usage = step.call::<QueryUsage>(QueryArgs::default()).await?;
        let signals = step.call::<DetectAnomalies>(AnomalyArgs { method: Some("median_mad".into()) }).await?;
        if let Some(q) = findings.triage.as_ref().map(|t| &t.question) {
            match q.operation {
                // The usage the question narrows to, for its direct answer.
                Operation::Total | Operation::Top | Operation::Breakdown | Operation::Compare => {
                    // With the period it is compared with, the same way.
                    let compare = q.compare.as_ref().filter(|_| q.operation == Operation::Compare);
                    let args = SliceArgs {
                        from: q.period.as_ref().map(|p| p.first.to_string()),
                        to: q.period.as_ref().map(|p| p.last.to_string()),
                        filters: q
                            .filters
                            .iter()
                            .map(|f| SliceFilter { dimension: f.dimension, values: f.values.clone() })
                            .collect(),
                        group_by: q.group_by.filter(|_| !matches!(q.operation, Operation::Total | Operation::Compare)),
                        end_users: q.measure == crate::question::Measure::CostPerUser,
                        compare_from: compare.map(|p| p.first.to_string()),
                        compare_to: compare.map(|p| p.last.to_string()),
                    };
                    findings.slice = Some(step.call::<QuerySlice>(args).await?);
                }
                Operation::ExplainChange => {
                    let args = ExplainArgs {
                        from: q.period.as_ref().map(|p| p.first.to_string()),
                        to: q.period.as_ref().map(|p| p.last.to_string()),
                        compare_from: q.compare.as_ref().map(|p| p.first.to_string()),
                        compare_to: q.compare.as_ref().map(|p| p.last.to_string()),
                    };
                    findings.change = Some(step.call::<ExplainChange>(args).await?);
                }
                _ => {}
            }
        }
        let s = &usage.summary;
        let top = s.by_model.first();
        // What a follow-up's "the second one" refers to: the answer's ranking, or the
        // features by spend.
        let ranking: Vec<&str> = match (&findings.slice, findings.triage.as_ref()) {
            (Some(slice), Some(t)) if t.question.group_by.is_some() => {
                super::answer::ranked(&t.question, slice).into_iter().map(|g| g.key.as_str()).collect()
            }
            _ => s.by_feature.iter().map(|g| g.key.as_str()).collect(),
        };
        let result = json!({
            "from": s.from, "to": s.to, "days": s.days,
            "total": s.total, "requests": s.requests,
            "models": s.by_model.len(), "features": s.by_feature.len(),
            "top_model": { "model": top.map(|g| &g.key), "cost": top.map(|g| g.cost) },
            "anomalies": signals.anomalies.len(),
            "ranking": ranking,
        });
        let summary = format!(
            "{} spent over {} days; the largest model is {} at {}; {} unusual day(s).",
            s.total,
            s.days,
            top.map_or("", |g| g.key.as_str()),
            top.map(|g| g.cost).unwrap_or_default(),
            signals.anomalies.len(),
        );
        findings.usage = Some(usage);
        findings.signals = Some(signals);
        Ok(AgentOutput { summary, result })
    }
}

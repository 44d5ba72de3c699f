//! Optimization: concrete savings, each with its reasoning.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use apex_costs::{recommend, total_savings, Money, Recommendation};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;
use crate::usage::{evict_one, Origin};

/// Cached per user and dataset version, in this process and, on a cluster, in the shared
/// cache, so that another instance answering the same user does not compute them again:
/// the same data always gives the same recommendations, and an import or a delete moves
/// the version on.
#[derive(Default)]
pub struct FindSavings {
    cache: Mutex<HashMap<(String, Origin, u64), Savings>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Savings {
    /// What the listed recommendations save together, counting changes to the same
    /// feature once.
    pub total_monthly_savings: Money,
    /// The largest, one per feature and model at most.
    pub recommendations: Vec<Recommendation>,
    /// Recommendations found beyond those listed.
    pub recommendations_more: usize,
    /// Whether this came from a cache.
    pub cached: bool,
    /// An average month of the usage the savings are measured against.
    #[serde(default)]
    pub monthly_spend: Money,
    /// How far the changes go toward what the question asked for, when it asked for a
    /// share to save or a number of changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
}

/// What was asked of the savings: a share of spend to save ("cut 30%"), a number of
/// changes ("three ways"), or both.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SavingsArgs {
    /// The share of monthly spend to save, in percent.
    #[serde(default)]
    pub target_percent: Option<u32>,
    /// How many changes to give.
    #[serde(default)]
    pub changes: Option<usize>,
}

/// How far the largest changes go toward the goal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Goal {
    pub target_percent: Option<u32>,
    /// The monthly saving the share asks for.
    pub target: Option<Money>,
    /// The changes counted (the largest first).
    pub changes: usize,
    /// What they save together, a change to the same feature counted once.
    pub saved: Money,
    /// What is left to find when they do not reach the target.
    pub short_by: Option<Money>,
    /// What is left to find with every change found, when more were found than counted.
    pub short_by_all: Option<Money>,
}

/// Users whose recommendations are kept in process; a new one past that evicts one.
const SAVINGS_CACHE: usize = 2_048;
/// How long recommendations stay in the shared cache.
const SHARED_SAVINGS_TTL: Duration = Duration::from_secs(24 * 3600);

impl FindSavings {
    fn remember(&self, key: (String, Origin, u64), value: &Savings) {
        let mut cache = self.cache.lock().expect("savings cache lock");
        // One entry per user: an older version is never asked for again.
        cache.retain(|(user, _, _), _| *user != key.0);
        if cache.len() >= SAVINGS_CACHE {
            evict_one(&mut cache);
        }
        cache.insert(key, value.clone());
    }
}

#[async_trait]
impl Tool for FindSavings {
    const NAME: &'static str = "find_savings";
    const AGENT: AgentName = AgentName::Optimization;
    const DESCRIPTION: &'static str = "Concrete savings (right-sized models, prompt caching, batch pricing, answer-length caps, \
        response caching), each with its monthly figure, reasoning and confidence.";
    type Args = SavingsArgs;
    type Output = Savings;

    async fn run(&self, ctx: &RunContext, args: SavingsArgs) -> Result<Savings, ToolError> {
        let mut savings = self.recommendations(ctx).await?;
        savings.monthly_spend = ctx.data.summary().await?.monthly;
        if args.target_percent.is_some() || args.changes.is_some() {
            let recs = &savings.recommendations;
            let saved_by = |n: usize| if n == recs.len() { savings.total_monthly_savings } else { total_savings(&recs[..n]) };
            let target = args.target_percent.map(|t| savings.monthly_spend.mul_div(i64::from(t.min(100)), 100));
            // As many changes as asked for; for a target alone, the fewest of the largest
            // that reach it (all of them when none do).
            let n = match (args.changes, target) {
                (Some(n), _) => n.min(recs.len()),
                (None, Some(t)) => (1..=recs.len()).find(|&n| saved_by(n) >= t).unwrap_or(recs.len()),
                (None, None) => recs.len(),
            };
            let saved = saved_by(n);
            let short = |saved: Money| target.filter(|t| *t > saved).map(|t| t - saved);
            savings.goal = Some(Goal {
                target_percent: args.target_percent,
                target,
                changes: n,
                saved,
                short_by: short(saved),
                short_by_all: if n < recs.len() { short(savings.total_monthly_savings) } else { None },
            });
        }
        Ok(savings)
    }
}

impl FindSavings {
    /// The recommendations for the user's data, from a cache when they were worked out.
    async fn recommendations(&self, ctx: &RunContext) -> Result<Savings, ToolError> {
        let data = ctx.data.data().await?;
        let key = (ctx.data.org().to_string(), data.origin, data.version);
        let cached = |hit: Savings| Savings { cached: true, ..hit };
        if let Some(hit) = self.cache.lock().expect("savings cache lock").get(&key) {
            metrics::counter!(apex_telemetry::CACHE_HITS, "cache" => "local").increment(1);
            return Ok(cached(hit.clone()));
        }
        let shared_key = format!("apex:savings:{}:{:?}:{}", key.0, key.1, key.2);
        if let Some(cluster) = ctx.data.cluster() {
            if let Some(hit) = cluster.cache_get(&shared_key).await.and_then(|s| serde_json::from_str::<Savings>(&s).ok()) {
                metrics::counter!(apex_telemetry::CACHE_HITS, "cache" => "shared").increment(1);
                self.remember(key, &hit);
                return Ok(cached(hit));
            }
        }
        metrics::counter!(apex_telemetry::CACHE_MISSES).increment(1);
        let mut recommendations = recommend(ctx.data.prices(), &data.records);
        let listed = recommendations.len().min(apex_costs::limits::MAX_LISTED_GROUPS);
        let value = Savings {
            total_monthly_savings: total_savings(&recommendations),
            recommendations_more: recommendations.len() - listed,
            recommendations: {
                recommendations.truncate(listed);
                recommendations
            },
            cached: false,
            monthly_spend: Money::ZERO,
            goal: None,
        };
        self.remember(key, &value);
        if let Some(cluster) = ctx.data.cluster() {
            let json = serde_json::to_string(&value).map_err(ToolError::encoding)?;
            cluster.cache_put(&shared_key, &json, SHARED_SAVINGS_TTL).await;
        }
        Ok(value)
    }
}

//! Optimization: concrete savings, each with its reasoning.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use apex_costs::{recommend, total_savings, Money, Recommendation};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{NoArgs, Tool, ToolError};
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
    const DESCRIPTION: &'static str = "Concrete savings (right-sized models, prompt caching, batch pricing, answer-length caps, \
        response caching), each with its monthly figure, reasoning and confidence.";
    type Args = NoArgs;
    type Output = Savings;

    async fn run(&self, ctx: &RunContext, _args: NoArgs) -> Result<Savings, ToolError> {
        let data = ctx.data.data().await?;
        let key = (ctx.user_id.to_string(), data.origin, data.version);
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
        };
        self.remember(key, &value);
        if let Some(cluster) = ctx.data.cluster() {
            let json = serde_json::to_string(&value).map_err(ToolError::encoding)?;
            cluster.cache_put(&shared_key, &json, SHARED_SAVINGS_TTL).await;
        }
        Ok(value)
    }
}

//! The built-in tools: the cost engine over the user's usage data.
//!
//! Data comes from a [`UsageSource`]. Until usage import lands, the source is the built-in
//! demo dataset ([`DemoUsage`]), seeded per user so that each user has their own stable
//! figures. Every number a tool returns is computed by `apex-costs`; the agents only
//! format them.
use std::fmt;
use std::sync::Arc;

use apex_costs::{
    detect_anomalies, forecast, recommend, summarize, top_drivers, total_savings, week_over_week, Summary, UsageRecord,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use apex_store::Store;

use crate::agent::{Tool, ToolError, Tools};
use crate::context::RunContext;

mod classify;

pub use classify::classify;

/// Where a user's LLM usage records come from.
#[async_trait]
pub trait UsageSource: Send + Sync {
    async fn usage(&self, user_id: &str) -> Result<UsageData, String>;
}

/// A user's usage records and where they came from.
#[derive(Clone, Debug)]
pub struct UsageData {
    pub records: Arc<Vec<UsageRecord>>,
    pub origin: Origin,
    /// Changes whenever the data does (imports, deletes); keys cached analyses.
    pub version: u64,
}

/// Whether the figures are the user's own: the answer says so when they are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Imported by the user.
    Imported,
    /// The built-in demo dataset, for demo users who have imported nothing yet.
    Demo,
    /// Nothing imported yet (and not a demo user): there is nothing to analyze.
    Empty,
}

/// The user's imported usage from the store. Until they import, demo users (demo mode's
/// anonymous identities) get the demo dataset and everyone else an empty one: a real
/// account is never shown made-up figures.
pub struct StoredUsage {
    store: Arc<dyn Store>,
    demo: DemoUsage,
}

impl StoredUsage {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, demo: DemoUsage::default() }
    }
}

#[async_trait]
impl UsageSource for StoredUsage {
    async fn usage(&self, user_id: &str) -> Result<UsageData, String> {
        let unavailable = |e: apex_store::StoreError| format!("usage data unavailable: {e}");
        let version = self.store.usage_version(user_id).await.map_err(unavailable)?;
        // Version 0: nothing was ever imported, so there is nothing to read.
        let records = if version == 0 { Vec::new() } else { self.store.usage(user_id, None, None).await.map_err(unavailable)? };
        if records.is_empty() {
            if user_id.starts_with(apex_protocol::DEMO_USER_PREFIX) {
                return self.demo.usage(user_id).await;
            }
            return Ok(UsageData { records: Arc::default(), origin: Origin::Empty, version });
        }
        Ok(UsageData { records: Arc::new(records), origin: Origin::Imported, version })
    }
}

/// The built-in demo dataset: 30 days of realistic usage, different for each user.
/// Generated for a user when first needed and kept (it never changes) for up to
/// `DEMO_CACHE` users; a new user past that evicts one (regenerating a dataset takes about
/// a millisecond; keeping every demo user's, ~64 KiB each, grew a soak by 600 MiB).
#[derive(Default)]
pub struct DemoUsage {
    cache: std::sync::Mutex<std::collections::HashMap<u64, Arc<Vec<UsageRecord>>>>,
}

const DEMO_CACHE: usize = 512;

#[async_trait]
impl UsageSource for DemoUsage {
    async fn usage(&self, user_id: &str) -> Result<UsageData, String> {
        let seed = seed_for(user_id);
        let mut cache = self.cache.lock().expect("demo cache lock");
        if cache.len() >= DEMO_CACHE && !cache.contains_key(&seed) {
            evict_one(&mut cache);
        }
        let records = cache.entry(seed).or_insert_with(|| Arc::new(apex_costs::demo_dataset(seed))).clone();
        Ok(UsageData { records, origin: Origin::Demo, version: 0 })
    }
}

/// Makes room in a bounded cache: drops whichever entry the map yields first, which,
/// with a randomly seeded hash, is a random one.
fn evict_one<K: Clone + Eq + std::hash::Hash, V>(cache: &mut std::collections::HashMap<K, V>) {
    if let Some(key) = cache.keys().next().cloned() {
        cache.remove(&key);
    }
}

/// FNV-1a: a stable seed per user id, so a user's demo figures never change.
fn seed_for(user_id: &str) -> u64 {
    user_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The per-run view of the data: loaded once, shared by every tool call of the run.
#[derive(Clone)]
pub struct ToolContext {
    source: Arc<dyn UsageSource>,
    /// The other instances, whose cache tools may share (`None` on a single instance).
    cluster: Option<Arc<dyn crate::Cluster>>,
    data: Arc<OnceCell<UsageData>>,
    summary: Arc<OnceCell<Arc<Summary>>>,
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext").field("loaded", &self.data.initialized()).finish()
    }
}

impl ToolContext {
    pub fn new(source: Arc<dyn UsageSource>) -> Self {
        Self { source, cluster: None, data: Arc::default(), summary: Arc::default() }
    }

    /// The same, for an instance of a cluster.
    pub fn with_cluster(mut self, cluster: Option<Arc<dyn crate::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The user's usage, loaded once per run.
    pub async fn data(&self, user_id: &str) -> Result<&UsageData, ToolError> {
        self.data.get_or_try_init(|| async { self.source.usage(user_id).await.map_err(ToolError) }).await
    }

    pub async fn records(&self, user_id: &str) -> Result<Arc<Vec<UsageRecord>>, ToolError> {
        Ok(self.data(user_id).await?.records.clone())
    }

    /// The records summarized, computed once per run for every tool that needs it.
    pub async fn summary(&self, user_id: &str) -> Result<Arc<Summary>, ToolError> {
        let records = self.records(user_id).await?;
        Ok(self.summary.get_or_init(|| async { Arc::new(summarize(&records)) }).await.clone())
    }
}

/// The tools every run has, one or more per agent.
pub fn builtin() -> Tools {
    Tools::default()
        .with(Arc::new(UsageOverview))
        .with(Arc::new(ClassifyRequest))
        .with(Arc::new(QueryUsage))
        .with(Arc::new(DetectAnomalies))
        .with(Arc::new(FindSavings::default()))
        .with(Arc::new(WhatIfTool))
        .with(Arc::new(ForecastSpend))
}

/// Delays a tool before it runs: a fault-injection knob (`APEX_TOOL_DELAY_MS`) for testing
/// how clients live through slow runs, disconnects and restarts. Off by default.
pub struct Delayed {
    pub inner: Arc<dyn Tool>,
    pub delay: std::time::Duration,
}

#[async_trait]
impl Tool for Delayed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn call(&self, ctx: &RunContext, args: Value) -> Result<Value, ToolError> {
        tokio::time::sleep(self.delay).await;
        self.inner.call(ctx, args).await
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ToolError> {
    serde_json::to_value(v).map_err(|e| ToolError(format!("result could not be encoded: {e}")))
}

/// Supervisor: what data the user has (coverage, size), to plan the run.
pub struct UsageOverview;

#[async_trait]
impl Tool for UsageOverview {
    fn name(&self) -> &str {
        "load_usage_overview"
    }
    async fn call(&self, ctx: &RunContext, _args: Value) -> Result<Value, ToolError> {
        let data = ctx.tools.data(&ctx.user_id).await?;
        let s = ctx.tools.summary(&ctx.user_id).await?;
        Ok(json!({
            "source": data.origin,
            "records": data.records.len(),
            "from": &s.from, "to": &s.to, "days": s.days,
            "total": s.total,
            "models": s.by_model.len(),
            "features": s.by_feature.len(),
            "unpriced_records": s.unpriced_records,
        }))
    }
}

/// Triage: what the user is asking for.
pub struct ClassifyRequest;

#[async_trait]
impl Tool for ClassifyRequest {
    fn name(&self) -> &str {
        "classify_request"
    }
    async fn call(&self, ctx: &RunContext, args: Value) -> Result<Value, ToolError> {
        let text = args.get("text").and_then(Value::as_str).unwrap_or(&ctx.text);
        let summary = ctx.tools.summary(&ctx.user_id).await?;
        let features: Vec<String> = summary.by_feature.iter().map(|g| g.key.clone()).collect();
        to_value(&classify(text, &features, |w| apex_costs::price_for(w).is_some()))
    }
}

/// Data: spend aggregated by model, feature and day.
pub struct QueryUsage;

#[async_trait]
impl Tool for QueryUsage {
    fn name(&self) -> &str {
        "query_usage"
    }
    async fn call(&self, ctx: &RunContext, _args: Value) -> Result<Value, ToolError> {
        let s = ctx.tools.summary(&ctx.user_id).await?;
        let mut value = to_value(&*s)?;
        // A breakdown has one entry per name in the data: the largest are listed, the
        // rest counted, so the result stays small whatever the data holds.
        for (key, groups) in [("by_model", &s.by_model), ("by_feature", &s.by_feature)] {
            let (listed, more) = apex_costs::top_groups(groups);
            value[key] = to_value(&listed)?;
            value[format!("{key}_more")] = json!(more);
        }
        Ok(value)
    }
}

/// Data: what stands out: unusual days, the biggest drivers, the week-over-week change.
pub struct DetectAnomalies;

#[async_trait]
impl Tool for DetectAnomalies {
    fn name(&self) -> &str {
        "detect_anomalies"
    }
    async fn call(&self, ctx: &RunContext, _args: Value) -> Result<Value, ToolError> {
        let records = ctx.tools.records(&ctx.user_id).await?;
        Ok(json!({
            "anomalies": to_value(&detect_anomalies(&records))?,
            "top_drivers": to_value(&top_drivers(&records, 5))?,
            "week_over_week": to_value(&week_over_week(&records))?,
        }))
    }
}

/// Optimization: the user's usage priced on another model ("what if").
pub struct WhatIfTool;

#[async_trait]
impl Tool for WhatIfTool {
    fn name(&self) -> &str {
        "what_if"
    }
    async fn call(&self, ctx: &RunContext, args: Value) -> Result<Value, ToolError> {
        let to_model = args["to_model"].as_str().ok_or_else(|| ToolError("`to_model` is required".into()))?;
        let feature = args["feature"].as_str();
        let records = ctx.tools.records(&ctx.user_id).await?;
        match apex_costs::what_if(&records, feature, to_model) {
            Ok(w) => to_value(&w),
            // Not a failure of the run: the answer explains it.
            Err(e) => Ok(json!({ "unavailable": e.to_string() })),
        }
    }
}

/// Optimization: concrete savings, each with its reasoning. Cached per user and dataset
/// version, in this process and, on a cluster, in the shared cache, so that another
/// instance answering the same user does not compute them again: the same data always
/// gives the same recommendations, and an import or a delete moves the version on.
#[derive(Default)]
pub struct FindSavings {
    cache: std::sync::Mutex<std::collections::HashMap<(String, Origin, u64), Value>>,
}

/// Users whose recommendations are kept in process; a new one past that evicts one.
const SAVINGS_CACHE: usize = 2_048;
/// How long recommendations stay in the shared cache.
const SHARED_SAVINGS_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl FindSavings {
    fn remember(&self, key: (String, Origin, u64), value: &Value) {
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
    fn name(&self) -> &str {
        "find_savings"
    }
    async fn call(&self, ctx: &RunContext, _args: Value) -> Result<Value, ToolError> {
        let data = ctx.tools.data(&ctx.user_id).await?;
        let key = (ctx.user_id.to_string(), data.origin, data.version);
        let cached = |mut hit: Value| {
            hit["cached"] = json!(true);
            hit
        };
        if let Some(hit) = self.cache.lock().expect("savings cache lock").get(&key) {
            metrics::counter!(apex_telemetry::CACHE_HITS, "cache" => "local").increment(1);
            return Ok(cached(hit.clone()));
        }
        let shared_key = format!("apex:savings:{}:{:?}:{}", key.0, key.1, key.2);
        if let Some(cluster) = &ctx.tools.cluster {
            if let Some(hit) = cluster.cache_get(&shared_key).await.and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
                metrics::counter!(apex_telemetry::CACHE_HITS, "cache" => "shared").increment(1);
                self.remember(key, &hit);
                return Ok(cached(hit));
            }
        }
        metrics::counter!(apex_telemetry::CACHE_MISSES).increment(1);
        let recs = recommend(&data.records);
        // One recommendation per feature and model at most: the largest are listed.
        let listed = &recs[..recs.len().min(apex_costs::limits::MAX_LISTED_GROUPS)];
        let value = json!({
            "total_monthly_savings": total_savings(&recs),
            "recommendations": to_value(&listed)?,
            "recommendations_more": recs.len() - listed.len(),
            "cached": false,
        });
        self.remember(key, &value);
        if let Some(cluster) = &ctx.tools.cluster {
            cluster.cache_put(&shared_key, &value.to_string(), SHARED_SAVINGS_TTL).await;
        }
        Ok(value)
    }
}

/// Report: where the month is heading.
pub struct ForecastSpend;

#[async_trait]
impl Tool for ForecastSpend {
    fn name(&self) -> &str {
        "forecast_spend"
    }
    async fn call(&self, ctx: &RunContext, _args: Value) -> Result<Value, ToolError> {
        to_value(&forecast(&*ctx.tools.summary(&ctx.user_id).await?))
    }
}

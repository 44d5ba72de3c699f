//! The user's usage data: where it comes from ([`UsageSource`]) and the per-run view every
//! tool of a run shares ([`RunData`]: loaded once, summarized once).
//!
//! Until a user imports, demo users get the built-in demo dataset, seeded per user so that
//! each has their own stable figures; everyone else gets none. Every number a tool returns
//! is computed by `apex-costs` from these records.
use std::fmt;
use std::sync::Arc;

use apex_costs::{summarize, PriceBook, Summary, UsageRecord};
use apex_protocol::UserId;
use async_trait::async_trait;
use tokio::sync::OnceCell;

use apex_store::Store;

use crate::tools::ToolError;

/// Where a user's LLM usage records come from.
#[async_trait]
pub trait UsageSource: Send + Sync {
    /// `demo`: the user is a demo identity (a property of how they signed in).
    async fn usage(&self, user_id: &UserId, demo: bool) -> Result<UsageData, String>;
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
    async fn usage(&self, user_id: &UserId, demo: bool) -> Result<UsageData, String> {
        let unavailable = |e: apex_store::StoreError| format!("usage data unavailable: {e}");
        let version = self.store.usage_version(user_id).await.map_err(unavailable)?;
        // Version 0: nothing was ever imported, so there is nothing to read.
        let records = if version == 0 { Vec::new() } else { self.store.usage(user_id, None, None).await.map_err(unavailable)? };
        if records.is_empty() {
            if demo {
                return self.demo.usage(user_id, demo).await;
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
    async fn usage(&self, user_id: &UserId, _demo: bool) -> Result<UsageData, String> {
        let seed = seed_for(user_id.as_str());
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
pub(crate) fn evict_one<K: Clone + Eq + std::hash::Hash, V>(cache: &mut std::collections::HashMap<K, V>) {
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
pub struct RunData {
    user_id: UserId,
    demo: bool,
    source: Arc<dyn UsageSource>,
    /// The other instances, whose cache tools may share (`None` on a single instance).
    cluster: Option<Arc<dyn crate::Cluster>>,
    /// What the usage costs: every tool of the run prices with it.
    prices: PriceBook,
    data: Arc<OnceCell<UsageData>>,
    summary: Arc<OnceCell<Arc<Summary>>>,
}

impl fmt::Debug for RunData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunData").field("loaded", &self.data.initialized()).finish()
    }
}

impl RunData {
    /// The data of `user_id` (a demo identity when `demo`), from `source`.
    pub fn new(source: Arc<dyn UsageSource>, user_id: UserId, demo: bool) -> Self {
        Self { user_id, demo, source, cluster: None, prices: PriceBook::default(), data: Arc::default(), summary: Arc::default() }
    }

    /// The same, for an instance of a cluster.
    pub fn with_cluster(mut self, cluster: Option<Arc<dyn crate::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The same, priced with `prices` rather than the catalog alone.
    pub fn with_prices(mut self, prices: PriceBook) -> Self {
        self.prices = prices;
        self
    }

    /// What the usage costs: the deployment's negotiated rates and the catalog.
    pub fn prices(&self) -> &PriceBook {
        &self.prices
    }

    /// The other instances of the cluster, if any (for caches shared between them).
    pub fn cluster(&self) -> Option<&Arc<dyn crate::Cluster>> {
        self.cluster.as_ref()
    }

    /// The user's usage, loaded once per run.
    pub async fn data(&self) -> Result<&UsageData, ToolError> {
        self.data.get_or_try_init(|| async { self.source.usage(&self.user_id, self.demo).await.map_err(ToolError) }).await
    }

    pub async fn records(&self) -> Result<Arc<Vec<UsageRecord>>, ToolError> {
        Ok(self.data().await?.records.clone())
    }

    /// The records summarized, computed once per run for every tool that needs it.
    pub async fn summary(&self) -> Result<Arc<Summary>, ToolError> {
        let records = self.records().await?;
        Ok(self.summary.get_or_init(|| async { Arc::new(summarize(&self.prices, &records)) }).await.clone())
    }
}

//! The user's usage data: where it comes from ([`UsageSource`]) and the per-run view every
//! tool of a run shares ([`RunData`]: loaded once, summarized once).
//!
//! Until a user imports, demo users get the built-in demo dataset, seeded per user so that
//! each has their own stable figures; everyone else gets none. Every number a tool returns
//! is computed by `apex-costs` from these records.
use std::fmt;
use std::sync::Arc;

use apex_costs::{aggregate, summarize, GroupBy, PriceBook, Summary, UsageQuery, UsageRecord, ROLLUP};
use apex_protocol::OrgId;
use async_trait::async_trait;
use tokio::sync::OnceCell;

use apex_store::Store;

use crate::question::{Dimension, Vocabulary};
use crate::tools::ToolError;

/// Where a user's LLM usage records come from.
#[async_trait]
pub trait UsageSource: Send + Sync {
    /// The user's usage as [`UsageQuery::rollup`] sums it. `demo`: the user is a demo
    /// identity (a property of how they signed in).
    async fn usage(&self, org: &OrgId, demo: bool) -> Result<UsageData, String>;
    /// The user's imported usage at `version` (as [`UsageSource::usage`] gave it) summed as
    /// `q` asks: for what the rollup sums over (end users, API keys). Only asked when
    /// [`UsageSource::usage`] said `Imported`.
    async fn totals(&self, org: &OrgId, version: u64, q: &UsageQuery) -> Result<Arc<Vec<UsageRecord>>, String>;
    /// The distinct names of `dim` in the user's imported usage at `version` (end users and
    /// API keys, which the rollup sums over). Only asked when [`UsageSource::usage`] said
    /// `Imported`.
    async fn names(&self, org: &OrgId, version: u64, dim: GroupBy) -> Result<Vec<String>, String> {
        let q = UsageQuery { keep: vec![dim], ..UsageQuery::default() };
        let records = self.totals(org, version, &q).await?;
        let mut names: Vec<String> =
            records.iter().map(|r| apex_costs::field(r, dim).to_owned()).filter(|n| !n.is_empty()).collect();
        names.dedup();
        Ok(names)
    }
}

/// A user's usage records and where they came from.
#[derive(Clone, Debug)]
pub struct UsageData {
    /// Imported usage as [`UsageQuery::rollup`] sums it; the demo dataset as it is.
    pub records: Arc<Vec<UsageRecord>>,
    pub origin: Origin,
    /// Changes whenever the data does (imports, deletes); keys cached analyses.
    pub version: u64,
    /// What is computed from `records` once for every run that reads them (they are kept,
    /// with this, per user and version).
    pub derived: Arc<Derived>,
}

/// Analyses of one user's records at one version, computed by the first run that needs
/// them. A source serves one deployment, so one price book.
#[derive(Debug, Default)]
pub struct Derived {
    summary: OnceCell<Arc<Summary>>,
    vocabulary: OnceCell<Arc<Vocabulary>>,
}

impl UsageData {
    /// `records` as `origin` at `version`, nothing derived yet.
    pub fn new(records: Arc<Vec<UsageRecord>>, origin: Origin, version: u64) -> Self {
        Self { records, origin, version, derived: Arc::default() }
    }
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

/// The user's imported usage from the store, summed there. Until they import, demo users
/// (demo mode's anonymous identities) get the demo dataset and everyone else an empty one:
/// a real account is never shown made-up figures.
///
/// What the store summed is kept per user and data version (an import or a delete moves
/// the version, on whichever instance), up to [`CACHED_ROWS`] records in all: a question
/// after the first reads one version number from the store.
pub struct StoredUsage {
    store: Arc<dyn Store>,
    demo: DemoUsage,
    cache: std::sync::Mutex<Sums>,
}

/// Summed records kept by [`StoredUsage`], by user and query, with the version they are of.
#[derive(Default)]
struct Sums {
    entries: std::collections::HashMap<(OrgId, UsageQuery), (u64, Summed)>,
    rows: usize,
}

/// Records [`StoredUsage`] keeps at most (about 200 bytes each).
pub const CACHED_ROWS: usize = 500_000;

/// One query's records, with what runs derive from them.
#[derive(Clone, Default)]
struct Summed {
    records: Arc<Vec<UsageRecord>>,
    derived: Arc<Derived>,
}

impl Sums {
    fn get(&self, key: &(OrgId, UsageQuery), version: u64) -> Option<Summed> {
        self.entries.get(key).filter(|(v, _)| *v == version).map(|(_, summed)| summed.clone())
    }

    fn put(&mut self, key: (OrgId, UsageQuery), version: u64, summed: Summed) {
        let rows = summed.records.len();
        if rows > CACHED_ROWS {
            return;
        }
        if let Some((_, old)) = self.entries.remove(&key) {
            self.rows -= old.records.len();
        }
        while self.rows + rows > CACHED_ROWS {
            let Some(k) = self.entries.keys().next().cloned() else { break };
            if let Some((_, old)) = self.entries.remove(&k) {
                self.rows -= old.records.len();
            }
        }
        self.rows += rows;
        self.entries.insert(key, (version, summed));
    }
}

impl StoredUsage {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, demo: DemoUsage::default(), cache: std::sync::Mutex::default() }
    }

    /// `q` over the user's stored usage at `version`, from the cache or summed by the store.
    async fn summed(&self, org: &OrgId, version: u64, q: &UsageQuery) -> Result<Summed, String> {
        let key = (org.clone(), q.clone());
        if let Some(summed) = self.cache.lock().expect("usage cache lock").get(&key, version) {
            return Ok(summed);
        }
        let records = Arc::new(self.store.usage_totals(org, q).await.map_err(unavailable)?);
        let summed = Summed { records, derived: Arc::default() };
        self.cache.lock().expect("usage cache lock").put(key, version, summed.clone());
        Ok(summed)
    }
}

fn unavailable(e: apex_store::StoreError) -> String {
    format!("usage data unavailable: {e}")
}

#[async_trait]
impl UsageSource for StoredUsage {
    async fn usage(&self, org: &OrgId, demo: bool) -> Result<UsageData, String> {
        let version = self.store.usage_version(org).await.map_err(unavailable)?;
        // Version 0: nothing was ever imported, so there is nothing to read.
        let summed = if version == 0 { Summed::default() } else { self.summed(org, version, &UsageQuery::rollup()).await? };
        if summed.records.is_empty() {
            if demo {
                return self.demo.usage(org, demo).await;
            }
            return Ok(UsageData::new(summed.records, Origin::Empty, version));
        }
        Ok(UsageData { records: summed.records, origin: Origin::Imported, version, derived: summed.derived })
    }

    async fn totals(&self, org: &OrgId, version: u64, q: &UsageQuery) -> Result<Arc<Vec<UsageRecord>>, String> {
        Ok(self.summed(org, version, q).await?.records)
    }

    async fn names(&self, org: &OrgId, _version: u64, dim: GroupBy) -> Result<Vec<String>, String> {
        self.store.usage_names(org, dim).await.map_err(unavailable)
    }
}

/// The built-in demo dataset: 30 days of realistic usage, different for each user.
/// Generated for a user when first needed and kept (it never changes) for up to
/// `DEMO_CACHE` users; a new user past that evicts one (regenerating a dataset takes about
/// a millisecond; keeping every demo user's, ~64 KiB each, grew a soak by 600 MiB).
#[derive(Default)]
pub struct DemoUsage {
    cache: std::sync::Mutex<std::collections::HashMap<u64, Summed>>,
}

const DEMO_CACHE: usize = 512;

#[async_trait]
impl UsageSource for DemoUsage {
    async fn usage(&self, org: &OrgId, _demo: bool) -> Result<UsageData, String> {
        let seed = seed_for(org.as_str());
        let mut cache = self.cache.lock().expect("demo cache lock");
        if cache.len() >= DEMO_CACHE && !cache.contains_key(&seed) {
            evict_one(&mut cache);
        }
        let summed = cache
            .entry(seed)
            .or_insert_with(|| Summed { records: Arc::new(apex_costs::demo_dataset(seed)), derived: Arc::default() })
            .clone();
        Ok(UsageData { records: summed.records, origin: Origin::Demo, version: 0, derived: summed.derived })
    }

    async fn totals(&self, org: &OrgId, _version: u64, q: &UsageQuery) -> Result<Arc<Vec<UsageRecord>>, String> {
        let data = self.usage(org, true).await?;
        Ok(Arc::new(aggregate(&data.records, q)))
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
    org: OrgId,
    demo: bool,
    source: Arc<dyn UsageSource>,
    /// The other instances, whose cache tools may share (`None` on a single instance).
    cluster: Option<Arc<dyn crate::Cluster>>,
    /// What the usage costs: every tool of the run prices with it.
    prices: PriceBook,
    data: Arc<OnceCell<UsageData>>,
}

impl fmt::Debug for RunData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunData").field("loaded", &self.data.initialized()).finish()
    }
}

impl RunData {
    /// The data of `org` (a demo identity's own when `demo`), from `source`.
    pub fn new(source: Arc<dyn UsageSource>, org: OrgId, demo: bool) -> Self {
        Self { org, demo, source, cluster: None, prices: PriceBook::default(), data: Arc::default() }
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

    /// Whose usage the run reads.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The other instances of the cluster, if any (for caches shared between them).
    pub fn cluster(&self) -> Option<&Arc<dyn crate::Cluster>> {
        self.cluster.as_ref()
    }

    /// The user's usage, loaded once per run.
    pub async fn data(&self) -> Result<&UsageData, ToolError> {
        self.data.get_or_try_init(|| async { self.source.usage(&self.org, self.demo).await.map_err(ToolError) }).await
    }

    /// The user's usage per day, model, provider, feature, project and environment (end
    /// users and API keys summed over): what most analyses need, loaded once per run.
    pub async fn records(&self) -> Result<Arc<Vec<UsageRecord>>, ToolError> {
        Ok(self.data().await?.records.clone())
    }

    /// The user's usage summed as `q` asks: from the run's records when they hold what `q`
    /// needs, else from the source (the store sums it).
    pub async fn totals(&self, q: &UsageQuery) -> Result<Arc<Vec<UsageRecord>>, ToolError> {
        let data = self.data().await?;
        if q.needs_tags() && data.origin == Origin::Imported {
            return self.source.totals(&self.org, data.version, q).await.map_err(ToolError);
        }
        // Imported records are the rollup (the demo dataset is raw rows).
        if ROLLUP.iter().all(|d| q.keeps(*d)) && data.origin == Origin::Imported {
            // The rollup's own records, narrowed: nothing to sum again.
            if q.from.is_none() && q.to.is_none() && q.filters.is_empty() {
                return Ok(data.records.clone());
            }
            return Ok(Arc::new(data.records.iter().filter(|r| apex_costs::matches(r, q)).cloned().collect()));
        }
        Ok(Arc::new(aggregate(&data.records, q)))
    }

    /// The records summarized, computed once per run for every tool that needs it.
    pub async fn summary(&self) -> Result<Arc<Summary>, ToolError> {
        let data = self.data().await?;
        Ok(data.derived.summary.get_or_init(|| async { Arc::new(summarize(&self.prices, &data.records)) }).await.clone())
    }

    /// The names a question can refer to: every dimension of the records, and the end users
    /// and API keys they sum over.
    pub async fn vocabulary(&self) -> Result<Arc<Vocabulary>, ToolError> {
        let data = self.data().await?;
        let built = data.derived.vocabulary.get_or_try_init(|| async {
            let mut tags = Vec::new();
            if data.origin == Origin::Imported {
                for (dim, dimension) in [(GroupBy::User, Dimension::User), (GroupBy::ApiKey, Dimension::ApiKey)] {
                    let names = self.source.names(&self.org, data.version, dim).await.map_err(ToolError)?;
                    tags.extend(names.into_iter().map(|name| (dimension, name)));
                }
            }
            let more = tags.iter().map(|(d, name)| (*d, name.as_str()));
            Ok::<_, ToolError>(Arc::new(crate::tools::vocabulary(data.records.iter(), more)))
        });
        Ok(built.await?.clone())
    }
}

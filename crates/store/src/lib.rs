//! Persistence for Apex: the [`Store`] trait and its backends.
//!
//! Every read takes the user id and filters by it: isolation is enforced where data is
//! loaded, so a query for another user's thread or run simply finds nothing. Writes of a
//! running run arrive in batches ([`Write`]) from the engine's writer task, so that the
//! database never sits on the event delivery path.
//!
//! Two backends implement the same trait and pass the same contract tests
//! (`tests/store.rs`): SQLite (`sqlite/`, the embedded default) and PostgreSQL
//! (`postgres/`); each has its own migrations folder.
#![forbid(unsafe_code)]

mod accounts;
pub mod decorate;
pub mod metered;
mod model;
mod orgs;
pub mod postgres;
mod recovery;
pub mod retry;
mod rows;
pub mod sqlite;
pub mod testing;
mod totals;

pub use accounts::{
    Account, AccountChange, AccountKey, ApiKey, AuthSession, Invitation, NewAccount, NewApiKey, NewSession, Rotation,
    ROTATION_RACE_MS,
};
pub use model::*;
pub use orgs::{Member, Membership, NewOrg, OrgInvitation, OrgRole, Organization, Shareable, SharedThread, ThreadShare};

/// The aggregation [`Store::usage_totals`] answers, over the stored daily rows (`?`
/// parameters, the user id first and not among the returned values; the store itself reads
/// the rollup it keeps when the query allows): for benchmarks that run it elsewhere.
pub fn usage_totals_sql(q: &UsageQuery) -> (String, Vec<String>) {
    totals::sql(q, totals::Source::Daily, |_| "?".to_owned())
}

use apex_costs::import::ImportRow;
use apex_costs::{GroupBy, UsageQuery, UsageRecord};
use apex_protocol::{OrgId, RunId, ThreadId, UserId};
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique name is taken (an account's), or the change would leave an organization
    /// without an admin.
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Accounts + Organizations + Send + Sync + 'static {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Applies a batch in one transaction: first the accepted user messages (`begins`: the
    /// user and thread, created on first use and titled from the text, the message, and its
    /// run in state `queued`), then `writes`. Returns one outcome per begin, in order. A
    /// `client_message_id` seen before for this user gives the original run; a `thread_id`
    /// that is not this user's gives `ThreadNotFound`. Either way the rest of the batch is
    /// written.
    async fn apply(&self, begins: &[NewRun], writes: &[Write]) -> StoreResult<Vec<BeginOutcome>>;

    /// One accepted message, in a transaction of its own.
    async fn begin_run(&self, new: NewRun) -> StoreResult<BeginOutcome> {
        let mut outcomes = self.apply(std::slice::from_ref(&new), &[]).await?;
        Ok(outcomes.pop().expect("one outcome per begin"))
    }

    /// Renews the lease of `instance` on the runs it executes.
    async fn heartbeat(&self, instance: &str, at_ms: u64) -> StoreResult<()>;

    /// Ends as `interrupted` every unfinished run whose instance is gone, appending its
    /// terminal `run_interrupted` event and keeping its partial answer; returns those runs.
    /// Who is gone depends on the backend: SQLite serves one instance per file, so any
    /// instance other than `instance` is; PostgreSQL takes the runs of instances whose
    /// last heartbeat is older than `lease`. Runs without an owner count as gone. Safe to
    /// call from several instances at once: each run is ended once.
    async fn interrupt_orphaned(&self, instance: &str, lease: std::time::Duration) -> StoreResult<Vec<RunId>>;

    /// The run (and its message) this user started earlier with this `client_message_id`.
    async fn find_client_message(&self, user_id: &UserId, client_message_id: &str) -> StoreResult<Option<BegunRun>>;

    async fn list_threads(&self, user_id: &UserId) -> StoreResult<Vec<ThreadRow>>;
    /// Every message of the thread, every branch, oldest first.
    async fn thread_messages(&self, user_id: &UserId, thread_id: ThreadId) -> StoreResult<Vec<MessageRow>>;
    /// The thread's runs, oldest first: a user message answered again has several.
    async fn thread_runs(&self, user_id: &UserId, thread_id: ThreadId) -> StoreResult<Vec<ThreadRunRow>>;
    async fn get_run(&self, user_id: &UserId, run_id: RunId) -> StoreResult<RunRow>;
    /// Events of a run with `seq > after_seq`, in order, as their wire JSON.
    async fn run_events(&self, user_id: &UserId, run_id: RunId, after_seq: u64) -> StoreResult<Vec<String>>;
    async fn agent_results(&self, user_id: &UserId, run_id: RunId) -> StoreResult<Vec<AgentResultRow>>;

    /// Usage belongs to an organization ([`OrgId`]: a shared one, or a user's personal
    /// space), never to a thread or a run; every method below is scoped to one.
    ///
    /// Adds imported usage rows to this organization's; rows whose key is already stored are
    /// skipped. Returns how many were new. A new row whose `request_hash` (when not empty)
    /// the organization already has, stored or earlier in `rows`, counts its requests as
    /// `repeat_requests` (migration 0005).
    async fn import_usage(&self, org: &OrgId, rows: &[ImportRow], at_ms: u64) -> StoreResult<u64>;
    /// This organization's usage, optionally limited to days `from..=to` (`YYYY-MM-DD`), summed
    /// per day, provider, model, feature, project, end user, API key and environment (rows
    /// with a billed cost apart from rows without). Every field of `UsageRecord` round-trips
    /// (migration 0005 added the tags and the cache-write and reasoning tokens; the
    /// signature is unchanged).
    async fn usage(&self, org: &OrgId, from: Option<&str>, to: Option<&str>) -> StoreResult<Vec<UsageRecord>>;
    /// This organization's usage as `q` asks for it, summed by the database (never read row by row
    /// into the process): what `apex_costs::aggregate` gives over the same rows, in the
    /// same order.
    async fn usage_totals(&self, org: &OrgId, q: &UsageQuery) -> StoreResult<Vec<UsageRecord>>;
    /// The distinct names of `dim` in this organization's usage (empty names left out), sorted
    /// bytewise: read from the sums the import keeps, not from every stored row.
    async fn usage_names(&self, org: &OrgId, dim: GroupBy) -> StoreResult<Vec<String>>;
    /// Removes all of this organization's usage rows; returns how many.
    async fn delete_usage(&self, org: &OrgId) -> StoreResult<u64>;
    /// The version of this organization's usage data: it changes whenever an import adds rows or
    /// the data is deleted (0 before any import).
    async fn usage_version(&self, org: &OrgId) -> StoreResult<u64>;
}

/// Local accounts, their sign-in sessions and invitations, and API keys (`accounts.rs`: one set of
/// statements for both backends). Part of every [`Store`].
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Creates an account (`Conflict` when the name is taken); without a role, the first
    /// account of the install becomes `admin`.
    async fn create_account(&self, new: &NewAccount) -> StoreResult<Account>;
    async fn account(&self, key: AccountKey<'_>) -> StoreResult<Option<Account>>;
    /// Every account, oldest first.
    async fn accounts(&self) -> StoreResult<Vec<Account>>;
    /// `NotFound` when there is no such account.
    async fn update_account(&self, id: &str, change: &AccountChange) -> StoreResult<()>;
    async fn create_session(&self, new: &NewSession) -> StoreResult<()>;
    /// Presents a refresh token (its hash): a current one is replaced by `replacement` and
    /// the session extended to `expires_at`; see [`Rotation`] for the rest.
    async fn rotate_session(&self, presented: &str, replacement: &str, at: u64, expires_at: u64) -> StoreResult<Rotation>;
    async fn session(&self, id: &str) -> StoreResult<Option<AuthSession>>;
    /// The account's sessions still active at `at`, most recently used first.
    async fn sessions(&self, account_id: &str, at: u64) -> StoreResult<Vec<AuthSession>>;
    /// Revokes one of the account's sessions, or all of them; returns the ids revoked.
    async fn revoke_sessions(&self, account_id: &str, session_id: Option<&str>, at: u64) -> StoreResult<Vec<String>>;
    /// The ids of the sessions and API keys revoked at or after `since` (by any instance
    /// or `apex users`).
    async fn revoked_since(&self, since: u64) -> StoreResult<Vec<String>>;
    async fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()>;
    /// Claims an unused, unexpired invitation at `at` and gives its role; `at = None`
    /// releases a claimed one again (the account it was for could not be created).
    async fn claim_invitation(&self, code_hash: &str, at: Option<u64>) -> StoreResult<Option<String>>;
    /// Removes everything of this user but its usage (`Store::delete_usage`): threads,
    /// messages, runs and their events, the account; its sessions and API keys stay as
    /// emptied, revoked rows, which tell every instance to close their sockets. `false`
    /// (and nothing removed) while one of its runs is in flight.
    async fn delete_user(&self, user_id: &str, at: u64) -> StoreResult<bool>;
    async fn create_api_key(&self, new: &NewApiKey) -> StoreResult<()>;
    /// The key with this hash, revoked or not.
    async fn api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
    /// A user's keys that are not revoked, oldest first.
    async fn api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKey>>;
    /// Revokes one of the user's keys; false when it has no such key (or it was revoked).
    async fn revoke_api_key(&self, account_id: &str, id: &str, at: u64) -> StoreResult<bool>;
    /// Records that the key was used at `at`.
    async fn touch_api_key(&self, id: &str, at: u64) -> StoreResult<()>;
}

/// Organizations, their members and invitation links (`orgs.rs`: one set of statements
/// for both backends). Part of every [`Store`]. A user's personal space ([`OrgId::personal`])
/// has no row: its only member is the user, as admin.
#[async_trait]
pub trait Organizations: Send + Sync + 'static {
    /// Creates a shared organization with its creator as admin.
    async fn create_org(&self, new: &NewOrg) -> StoreResult<Organization>;
    /// The shared organizations the user belongs to, and the role in each, oldest first.
    async fn orgs_of(&self, user_id: &UserId) -> StoreResult<Vec<Membership>>;
    /// The user's role in a shared organization; `None` when not a member (or there is no
    /// such organization).
    async fn role_in(&self, org: &OrgId, user_id: &UserId) -> StoreResult<Option<OrgRole>>;
    /// The organization's members, oldest first.
    async fn members(&self, org: &OrgId) -> StoreResult<Vec<Member>>;
    /// Gives a member another role, or removes them (`None`). `NotFound` for someone not a
    /// member; `Conflict` when it would leave the organization without an admin.
    async fn set_member(&self, org: &OrgId, user_id: &UserId, role: Option<OrgRole>) -> StoreResult<()>;
    async fn create_org_invitation(&self, invitation: &OrgInvitation) -> StoreResult<()>;
    /// Uses an unused, unexpired invitation: the user joins with its role (a member keeps
    /// the role they have). `None` when the code is unknown, used or expired.
    async fn join_org(&self, code_hash: &str, user_id: &UserId, at: u64) -> StoreResult<Option<Membership>>;
    /// Takes the user out of every organization (their account is going): one left without
    /// an admin gets its longest-standing member as admin, one left without members is
    /// removed. Returns the removed ones, whose usage the caller deletes.
    async fn leave_all(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>>;
    /// Shares the owner's thread with an organization the owner belongs to, or makes it
    /// personal again (`None`). `NotFound` when the owner has no such thread or is not a
    /// member of `org`. A member's shares end when they leave or are removed.
    async fn share_thread(&self, owner: &UserId, thread: ThreadId, org: Option<&OrgId>, at: u64) -> StoreResult<()>;
    /// The owner of a shared thread (or of a run's thread) and the organization it is shared
    /// with; `None` when it is personal or does not exist.
    async fn share_of(&self, item: Shareable) -> StoreResult<Option<ThreadShare>>;
    /// The threads shared with an organization, most recently updated first (at most
    /// [`orgs::SHARED_THREADS_LISTED`]).
    async fn shared_threads(&self, org: &OrgId) -> StoreResult<Vec<SharedThread>>;
}

/// How the store talks to a database server (PostgreSQL; SQLite ignores these).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Connections in the pool: the writer takes one per batch, readers the rest.
    pub max_connections: u32,
    /// Every statement is cancelled by the server after this long.
    pub statement_timeout: std::time::Duration,
    /// How long to wait for a connection (at startup and from the pool) before failing.
    pub connect_timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Opens the backend named by the URL scheme (`sqlite://…` or `postgres://…`).
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    connect_with(url, &StoreOptions::default()).await
}

/// [`connect`] with explicit pool settings.
pub async fn connect_with(url: &str, options: &StoreOptions) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(sqlite::SqliteStore::open(url).await?);
        Ok(std::sync::Arc::new(metered::Metered::new(metered::Meter, store)))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(postgres::PgStore::open(url, options).await?);
        let metered = std::sync::Arc::new(metered::Metered::new(metered::Meter, store));
        Ok(std::sync::Arc::new(retry::Retrying::new(retry::Retry, metered)))
    } else {
        Err(StoreError::Config(format!(
            "unsupported DATABASE_URL scheme in `{}`: use sqlite:// or postgres://",
            url.split(':').next().unwrap_or("")
        )))
    }
}

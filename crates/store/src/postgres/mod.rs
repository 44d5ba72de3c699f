//! The PostgreSQL backend: a connection pool shared by the writer and the readers, a
//! statement timeout on every connection, and rows of one kind written in one statement
//! per batch (arrays bound as parameters and expanded with `UNNEST`).
use std::time::Duration;

use apex_protocol::{OrgId, RunId, ThreadId, UserId};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres, Row, Transaction};

use apex_costs::import::ImportRow;
use apex_costs::{GroupBy, UsageQuery, UsageRecord};

use crate::model::*;
use crate::rows::{self, parse_id, USAGE_DAILY_COLUMNS};
use crate::{Account, AccountChange, AccountKey, ApiKey, AuthSession, Invitation, NewAccount, NewApiKey, NewSession, Rotation};
use crate::{Store, StoreError, StoreOptions, StoreResult};

mod batch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    /// True once the migrations have run: until then every operation fails as the
    /// database being unavailable (a transient error, retried by the callers).
    ready: tokio::sync::watch::Receiver<bool>,
}

impl PgStore {
    /// Connects and applies the migrations. When the server cannot be reached within
    /// `options.connect_timeout`, the store starts degraded instead of failing (or hanging):
    /// it keeps trying in the background, and its operations fail as transient errors until
    /// the database is there.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
        let connect = url
            .parse::<PgConnectOptions>()?
            .options([("statement_timeout", statement_timeout.as_str())])
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(1)
            .acquire_timeout(options.connect_timeout)
            // A connection the server dropped (restart, failover) is replaced, not reused.
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        // Several instances may start at once: the migrator takes an advisory lock.
        match tokio::time::timeout(options.connect_timeout, MIGRATOR.run(&pool)).await {
            Ok(Ok(())) => {
                ready_tx.send_replace(true);
            }
            Ok(Err(e)) if !unreachable(&e) => return Err(e.into()),
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connecting timed out".to_owned(),
                };
                tracing::error!(%error, "PostgreSQL is unreachable: starting degraded, retrying in the background");
                tokio::spawn(migrate_when_reachable(pool.clone(), ready_tx));
            }
        }
        Ok(Self { pool, ready })
    }

    /// The pool, once the database has been reached and migrated.
    fn pool(&self) -> StoreResult<&PgPool> {
        if *self.ready.borrow() {
            Ok(&self.pool)
        } else {
            Err(StoreError::Database(sqlx::Error::PoolTimedOut))
        }
    }

    /// Where account writes run (`accounts.rs`).
    fn account_pool(&self) -> StoreResult<&PgPool> {
        self.pool()
    }

    /// Where account reads run.
    fn account_reads(&self) -> StoreResult<&PgPool> {
        self.pool()
    }

    async fn ensure_owned(&self, query: &'static str, id: String, user_id: &UserId) -> StoreResult<()> {
        let owned = sqlx::query(query).bind(id).bind(user_id.as_str()).fetch_optional(self.pool()?).await?;
        owned.map(|_| ()).ok_or(StoreError::NotFound)
    }
}

/// Whether a migration failed because the server could not be reached (as opposed to a
/// migration that does not apply, which must stop the server).
fn unreachable(e: &sqlx::migrate::MigrateError) -> bool {
    matches!(e, sqlx::migrate::MigrateError::Execute(e) if crate::retry::is_transient_sqlx(e))
}

/// Retries the migrations with backoff until the database answers, then opens the store.
async fn migrate_when_reachable(pool: PgPool, ready: tokio::sync::watch::Sender<bool>) {
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::time::sleep(delay).await;
        match MIGRATOR.run(&pool).await {
            Ok(()) => {
                tracing::info!("PostgreSQL is reachable: the store is ready");
                ready.send_replace(true);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "PostgreSQL is still unreachable; retrying"),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()?).await?;
        Ok(())
    }

    async fn apply(&self, begins: &[NewRun], writes: &[Write]) -> StoreResult<Vec<BeginOutcome>> {
        let mut tx = self.pool()?.begin().await?;
        let outcomes = batch::begin(&mut tx, begins).await?;
        batch::apply(&mut tx, writes).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn heartbeat(&self, instance: &str, at_ms: u64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(instance)
        .bind(at_ms as i64)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    async fn interrupt_orphaned(&self, instance: &str, lease: Duration) -> StoreResult<Vec<RunId>> {
        let now = apex_protocol::now_ms();
        let expired_before = now.saturating_sub(lease.as_millis() as u64) as i64;
        let mut tx = self.pool()?.begin().await?;
        // SKIP LOCKED: instances sweeping at the same moment split the runs between them.
        let rows: Vec<rows::Orphan> = sqlx::query_as(
            "SELECT id, user_id, thread_id FROM runs r WHERE status IN ('queued', 'running') \
             AND (owner IS NULL OR (owner <> $1 AND NOT EXISTS \
               (SELECT 1 FROM instances i WHERE i.id = r.owner AND i.heartbeat_at >= $2))) \
             ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(instance)
        .bind(expired_before)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let events: Vec<rows::OrphanEvent> = sqlx::query_as("SELECT run_id, seq, payload FROM run_events WHERE run_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        let (interrupted, writes) = crate::recovery::interrupt_orphans(rows, events, now)?;
        batch::apply(&mut tx, &writes).await?;
        // Instances gone for a day are forgotten.
        sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1")
            .bind(expired_before.saturating_sub(86_400_000))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(interrupted)
    }

    async fn import_usage(&self, org: &OrgId, rows: &[ImportRow], at_ms: u64) -> StoreResult<u64> {
        let mut tx = self.pool()?.begin().await?;
        let inserted = batch::insert_usage(&mut tx, org.as_str(), rows, at_ms).await?;
        if inserted > 0 {
            bump_version(&mut tx, org.as_str()).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn usage(&self, org: &OrgId, from: Option<&str>, to: Option<&str>) -> StoreResult<Vec<UsageRecord>> {
        let sql = format!(
            "SELECT {USAGE_DAILY_COLUMNS} FROM usage_daily \
             WHERE user_id = $1 AND day >= COALESCE($2, '') AND day <= COALESCE($3, '9999') ORDER BY day"
        );
        let rows: Vec<rows::UsageDaily> =
            sqlx::query_as(&sql).bind(org.as_str()).bind(from).bind(to).fetch_all(self.pool()?).await?;
        Ok(rows.into_iter().map(UsageRecord::from).collect())
    }

    async fn usage_names(&self, org: &OrgId, dim: GroupBy) -> StoreResult<Vec<String>> {
        let sql = crate::totals::names_sql(dim, "$1", "$2");
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(org.as_str());
        if let Some(tag) = crate::totals::tag_name(dim) {
            query = query.bind(tag);
        }
        let mut names = query.fetch_all(self.pool()?).await?;
        names.sort_unstable();
        Ok(names)
    }

    async fn usage_totals(&self, org: &OrgId, q: &UsageQuery) -> StoreResult<Vec<UsageRecord>> {
        let (sql, binds) = crate::totals::sql(q, crate::totals::source(q), |n| format!("${n}"));
        let mut query = sqlx::query_as::<_, rows::UsageDaily>(&sql).bind(org.as_str());
        for value in &binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(self.pool()?).await?;
        Ok(crate::totals::sorted(rows.into_iter().map(UsageRecord::from).collect()))
    }

    async fn delete_usage(&self, org: &OrgId) -> StoreResult<u64> {
        let mut tx = self.pool()?.begin().await?;
        for table in crate::totals::KEPT_SUMS {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(org.as_str()).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM usage_records WHERE user_id = $1").bind(org.as_str()).execute(&mut *tx).await?;
        bump_version(&mut tx, org.as_str()).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn usage_version(&self, org: &OrgId) -> StoreResult<u64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM usage_versions WHERE user_id = $1")
            .bind(org.as_str())
            .fetch_optional(self.pool()?)
            .await?;
        Ok(v.unwrap_or(0) as u64)
    }

    async fn find_client_message(&self, user_id: &UserId, client_message_id: &str) -> StoreResult<Option<BegunRun>> {
        let row: Option<rows::Begun> = sqlx::query_as(
            "SELECT user_message_id AS id, thread_id, id AS run_id FROM runs WHERE user_id = $1 AND client_message_id = $2",
        )
        .bind(user_id.as_str())
        .bind(client_message_id)
        .fetch_optional(self.pool()?)
        .await?;
        row.map(BegunRun::try_from).transpose()
    }

    async fn list_threads(&self, user_id: &UserId) -> StoreResult<Vec<ThreadRow>> {
        let rows: Vec<rows::Thread> = sqlx::query_as(
            "SELECT id, title, created_at, updated_at, shared_org FROM threads WHERE user_id = $1 ORDER BY updated_at DESC, id DESC",
        )
        .bind(user_id.as_str())
        .fetch_all(self.pool()?)
        .await?;
        rows.into_iter().map(ThreadRow::try_from).collect()
    }

    async fn thread_messages(&self, user_id: &UserId, thread_id: ThreadId) -> StoreResult<Vec<MessageRow>> {
        self.ensure_owned("SELECT 1 FROM threads WHERE id = $1 AND user_id = $2", thread_id.to_string(), user_id).await?;
        let rows: Vec<rows::Message> = sqlx::query_as(
            "SELECT id, parent_id, run_id, role, content, client_message_id, created_at FROM messages \
             WHERE thread_id = $1 AND user_id = $2 ORDER BY created_at, id",
        )
        .bind(thread_id.to_string())
        .bind(user_id.as_str())
        .fetch_all(self.pool()?)
        .await?;
        rows.into_iter().map(|r| r.into_row(thread_id)).collect()
    }

    async fn thread_runs(&self, user_id: &UserId, thread_id: ThreadId) -> StoreResult<Vec<ThreadRunRow>> {
        self.ensure_owned("SELECT 1 FROM threads WHERE id = $1 AND user_id = $2", thread_id.to_string(), user_id).await?;
        let rows: Vec<rows::ThreadRun> = sqlx::query_as(
            "SELECT id, user_message_id, status, created_at FROM runs WHERE thread_id = $1 AND user_id = $2 \
             ORDER BY created_at, id",
        )
        .bind(thread_id.to_string())
        .bind(user_id.as_str())
        .fetch_all(self.pool()?)
        .await?;
        rows.into_iter().map(ThreadRunRow::try_from).collect()
    }

    async fn get_run(&self, user_id: &UserId, run_id: RunId) -> StoreResult<RunRow> {
        let run: rows::Run = sqlx::query_as(
            "SELECT thread_id, user_message_id, status, created_at, started_at, finished_at, error_code, error_message, \
             (SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = runs.id) AS last_seq \
             FROM runs WHERE id = $1 AND user_id = $2",
        )
        .bind(run_id.to_string())
        .bind(user_id.as_str())
        .fetch_optional(self.pool()?)
        .await?
        .ok_or(StoreError::NotFound)?;
        run.into_row(run_id)
    }

    async fn run_events(&self, user_id: &UserId, run_id: RunId, after_seq: u64) -> StoreResult<Vec<String>> {
        self.ensure_owned("SELECT 1 FROM runs WHERE id = $1 AND user_id = $2", run_id.to_string(), user_id).await?;
        let rows = sqlx::query("SELECT payload FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq")
            .bind(run_id.to_string())
            .bind(after_seq.min(i64::MAX as u64) as i64)
            .fetch_all(self.pool()?)
            .await?;
        Ok(rows.into_iter().map(|r| r.get::<String, _>(0)).collect())
    }

    async fn agent_results(&self, user_id: &UserId, run_id: RunId) -> StoreResult<Vec<AgentResultRow>> {
        let rows: Vec<rows::AgentResult> = sqlx::query_as(
            "SELECT a.agent, a.output, a.duration_ms FROM agent_results a JOIN runs r ON r.id = a.run_id \
             WHERE a.run_id = $1 AND r.user_id = $2 ORDER BY a.ord",
        )
        .bind(run_id.to_string())
        .bind(user_id.as_str())
        .fetch_all(self.pool()?)
        .await?;
        Ok(rows.into_iter().map(AgentResultRow::from).collect())
    }
}

async fn bump_version(tx: &mut Transaction<'_, Postgres>, user_id: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO usage_versions (user_id, version) VALUES ($1, 1) \
         ON CONFLICT (user_id) DO UPDATE SET version = usage_versions.version + 1",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

crate::accounts::account_methods!(PgStore);
crate::orgs::org_methods!(PgStore);

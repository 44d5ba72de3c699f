//! The SQLite backend: one file in the data dir, WAL mode, a single writer connection fed
//! in batches and a small pool of readers.
use std::str::FromStr;
use std::time::Duration;

use apex_protocol::{OrgId, RunId, ThreadId, UserId};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, Sqlite, Transaction};

use apex_costs::import::ImportRow;
use apex_costs::{GroupBy, UsageQuery, UsageRecord};

use crate::model::*;
use crate::rows::{self, parse_id, USAGE_DAILY_COLUMNS};
use crate::{Account, AccountChange, AccountKey, ApiKey, AuthSession, Invitation, NewAccount, NewApiKey, NewSession, Rotation};
use crate::{Store, StoreError, StoreResult};

mod batch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// Exactly one connection: SQLite has one writer at a time, and queuing in our own
    /// batches beats contending on the file lock.
    writer: SqlitePool,
    readers: SqlitePool,
    /// The checkpoint task runs while this is alive.
    _alive: std::sync::Arc<()>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL is durable across process crashes; only an OS crash can
            // lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // Checkpoints are mostly taken by a background connection (below), not by whichever
        // commit crosses the threshold: that put milliseconds of page copying on the event
        // delivery path. The writer's own threshold stays as a backstop: a passive
        // checkpoint cannot reset the log while writes keep coming, and only a checkpoint
        // on the writer connection lets the log start over instead of growing.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // 8 MiB of page cache (SQLite's default is 2): an import's transaction changes a
            // few MiB of pages, which would otherwise be written to the log mid-transaction
            // and read back. Temporary files in memory: the journal of the savepoint an
            // import's inserts run in (a few MiB per chunk, gone at its end) was otherwise
            // written to a file, half of all the writes of an import.
            .connect_with(
                options.clone().pragma("wal_autocheckpoint", "4000").pragma("cache_size", "-8192").pragma("temp_store", "MEMORY"),
            )
            .await?;
        MIGRATOR.run(&writer).await?;
        let readers = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone().read_only(true)).await?;
        let checkpointer = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let alive = std::sync::Arc::new(());
        tokio::spawn(checkpoint_periodically(checkpointer, std::sync::Arc::downgrade(&alive)));
        Ok(Self { writer, readers, _alive: alive })
    }

    /// `NotFound` unless `query` (`… WHERE id = ? AND user_id = ?`) finds a row: another
    /// user's thread or run does not exist for this one.
    /// Where account writes run (`accounts.rs`).
    fn account_pool(&self) -> StoreResult<&SqlitePool> {
        Ok(&self.writer)
    }

    /// Where account reads run.
    fn account_reads(&self) -> StoreResult<&SqlitePool> {
        Ok(&self.readers)
    }

    async fn ensure_owned(&self, query: &'static str, id: String, user_id: &UserId) -> StoreResult<()> {
        let owned = sqlx::query(query).bind(id).bind(user_id.as_str()).fetch_optional(&self.readers).await?;
        owned.map(|_| ()).ok_or(StoreError::NotFound)
    }
}

/// Copies the write-ahead log into the database file four times a second. PASSIVE never
/// blocks the writer; it stops when the store is closed.
async fn checkpoint_periodically(checkpointer: SqlitePool, store: std::sync::Weak<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.strong_count() == 0 {
            checkpointer.close().await;
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&checkpointer).await {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// After a failed write, the writer connection is closed instead of going back to the
/// pool. SQLite rolls a transaction back by itself on some errors (`SQLITE_FULL`,
/// `SQLITE_IOERR`); sqlx's ROLLBACK then fails and its count of open transactions stays
/// one too high, so its next `begin` would be a SAVEPOINT and its next `commit` a RELEASE
/// inside a transaction that never commits: writes acknowledged and never durable (seen
/// on a full disk). A new connection starts with no such state.
fn discard_on_error<T>(conn: &mut sqlx::pool::PoolConnection<Sqlite>, result: &StoreResult<T>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "a write failed; the writer connection is replaced");
        conn.close_on_drop();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn apply(&self, begins: &[NewRun], writes: &[Write]) -> StoreResult<Vec<BeginOutcome>> {
        let mut conn = self.writer.acquire().await?;
        let result = async {
            let mut tx = conn.begin().await?;
            let outcomes = batch::begin(&mut tx, begins).await?;
            batch::apply(&mut tx, writes).await?;
            tx.commit().await?;
            Ok(outcomes)
        }
        .await;
        discard_on_error(&mut conn, &result);
        result
    }

    async fn heartbeat(&self, instance: &str, at_ms: u64) -> StoreResult<()> {
        // One instance per file: nobody reads this, but a write that succeeds tells that
        // the storage takes writes (again).
        sqlx::query(
            "INSERT INTO instances (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(instance)
        .bind(at_ms as i64)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn interrupt_orphaned(&self, instance: &str, _lease: Duration) -> StoreResult<Vec<RunId>> {
        let mut conn = self.writer.acquire().await?;
        let result = async {
            let mut tx = conn.begin().await?;
            let rows: Vec<rows::Orphan> = sqlx::query_as(
                "SELECT id, user_id, thread_id FROM runs WHERE status IN ('queued', 'running') \
                 AND (owner IS NULL OR owner <> ?)",
            )
            .bind(instance)
            .fetch_all(&mut *tx)
            .await?;
            let events: Vec<rows::OrphanEvent> = sqlx::query_as(
                "SELECT e.run_id, e.seq, e.payload FROM run_events e JOIN runs r ON r.id = e.run_id \
                 WHERE r.status IN ('queued', 'running') AND (r.owner IS NULL OR r.owner <> ?)",
            )
            .bind(instance)
            .fetch_all(&mut *tx)
            .await?;
            let (interrupted, writes) = crate::recovery::interrupt_orphans(rows, events, apex_protocol::now_ms())?;
            batch::apply(&mut tx, &writes).await?;
            tx.commit().await?;
            Ok(interrupted)
        }
        .await;
        discard_on_error(&mut conn, &result);
        result
    }

    async fn import_usage(&self, org: &OrgId, rows: &[ImportRow], at_ms: u64) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await?;
        let result = async {
            let mut tx = conn.begin().await?;
            let inserted = batch::insert_usage(&mut tx, org.as_str(), rows, at_ms).await?;
            if inserted > 0 {
                bump_version(&mut tx, org.as_str()).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        }
        .await;
        discard_on_error(&mut conn, &result);
        result
    }

    async fn usage(&self, org: &OrgId, from: Option<&str>, to: Option<&str>) -> StoreResult<Vec<UsageRecord>> {
        let sql = format!(
            "SELECT {USAGE_DAILY_COLUMNS} FROM usage_daily \
             WHERE user_id = ? AND day >= COALESCE(?, '') AND day <= COALESCE(?, '9999') ORDER BY day"
        );
        let rows: Vec<rows::UsageDaily> =
            sqlx::query_as(&sql).bind(org.as_str()).bind(from).bind(to).fetch_all(&self.readers).await?;
        Ok(rows.into_iter().map(UsageRecord::from).collect())
    }

    async fn usage_names(&self, org: &OrgId, dim: GroupBy) -> StoreResult<Vec<String>> {
        let sql = crate::totals::names_sql(dim, "?", "?");
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(org.as_str());
        if let Some(tag) = crate::totals::tag_name(dim) {
            query = query.bind(tag);
        }
        let mut names = query.fetch_all(&self.readers).await?;
        names.sort_unstable();
        Ok(names)
    }

    async fn usage_totals(&self, org: &OrgId, q: &UsageQuery) -> StoreResult<Vec<UsageRecord>> {
        let (sql, binds) = crate::totals::sql(q, crate::totals::source(q), |_| "?".to_owned());
        let mut query = sqlx::query_as::<_, rows::UsageDaily>(&sql).bind(org.as_str());
        for value in &binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.readers).await?;
        Ok(crate::totals::sorted(rows.into_iter().map(UsageRecord::from).collect()))
    }

    async fn delete_usage(&self, org: &OrgId) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await?;
        let result = async {
            let mut tx = conn.begin().await?;
            for table in crate::totals::KEPT_SUMS {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = ?")).bind(org.as_str()).execute(&mut *tx).await?;
            }
            let done = sqlx::query("DELETE FROM usage_records WHERE user_id = ?").bind(org.as_str()).execute(&mut *tx).await?;
            bump_version(&mut tx, org.as_str()).await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        }
        .await;
        discard_on_error(&mut conn, &result);
        result
    }

    async fn usage_version(&self, org: &OrgId) -> StoreResult<u64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM usage_versions WHERE user_id = ?")
            .bind(org.as_str())
            .fetch_optional(&self.readers)
            .await?;
        Ok(v.unwrap_or(0) as u64)
    }

    async fn find_client_message(&self, user_id: &UserId, client_message_id: &str) -> StoreResult<Option<BegunRun>> {
        let row: Option<rows::Begun> = sqlx::query_as(
            "SELECT user_message_id AS id, thread_id, id AS run_id FROM runs WHERE user_id = ? AND client_message_id = ?",
        )
        .bind(user_id.as_str())
        .bind(client_message_id)
        .fetch_optional(&self.readers)
        .await?;
        row.map(BegunRun::try_from).transpose()
    }

    async fn list_threads(&self, user_id: &UserId) -> StoreResult<Vec<ThreadRow>> {
        let rows: Vec<rows::Thread> = sqlx::query_as(
            "SELECT id, title, created_at, updated_at, shared_org FROM threads WHERE user_id = ? ORDER BY updated_at DESC, id DESC",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(ThreadRow::try_from).collect()
    }

    async fn thread_messages(&self, user_id: &UserId, thread_id: ThreadId) -> StoreResult<Vec<MessageRow>> {
        self.ensure_owned("SELECT 1 FROM threads WHERE id = ? AND user_id = ?", thread_id.to_string(), user_id).await?;
        let rows: Vec<rows::Message> = sqlx::query_as(
            "SELECT id, parent_id, run_id, role, content, client_message_id, created_at FROM messages \
             WHERE thread_id = ? AND user_id = ? ORDER BY created_at, id",
        )
        .bind(thread_id.to_string())
        .bind(user_id.as_str())
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(|r| r.into_row(thread_id)).collect()
    }

    async fn thread_runs(&self, user_id: &UserId, thread_id: ThreadId) -> StoreResult<Vec<ThreadRunRow>> {
        self.ensure_owned("SELECT 1 FROM threads WHERE id = ? AND user_id = ?", thread_id.to_string(), user_id).await?;
        let rows: Vec<rows::ThreadRun> = sqlx::query_as(
            "SELECT id, user_message_id, status, created_at FROM runs WHERE thread_id = ? AND user_id = ? \
             ORDER BY created_at, id",
        )
        .bind(thread_id.to_string())
        .bind(user_id.as_str())
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(ThreadRunRow::try_from).collect()
    }

    async fn get_run(&self, user_id: &UserId, run_id: RunId) -> StoreResult<RunRow> {
        let run: rows::Run = sqlx::query_as(
            "SELECT thread_id, user_message_id, status, created_at, started_at, finished_at, error_code, error_message, \
             (SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = runs.id) AS last_seq \
             FROM runs WHERE id = ? AND user_id = ?",
        )
        .bind(run_id.to_string())
        .bind(user_id.as_str())
        .fetch_optional(&self.readers)
        .await?
        .ok_or(StoreError::NotFound)?;
        run.into_row(run_id)
    }

    async fn run_events(&self, user_id: &UserId, run_id: RunId, after_seq: u64) -> StoreResult<Vec<String>> {
        self.ensure_owned("SELECT 1 FROM runs WHERE id = ? AND user_id = ?", run_id.to_string(), user_id).await?;
        let rows = sqlx::query("SELECT payload FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq")
            .bind(run_id.to_string())
            .bind(after_seq.min(i64::MAX as u64) as i64)
            .fetch_all(&self.readers)
            .await?;
        Ok(rows.into_iter().map(|r| r.get::<String, _>(0)).collect())
    }

    async fn agent_results(&self, user_id: &UserId, run_id: RunId) -> StoreResult<Vec<AgentResultRow>> {
        let rows: Vec<rows::AgentResult> = sqlx::query_as(
            "SELECT a.agent, a.output, a.duration_ms FROM agent_results a JOIN runs r ON r.id = a.run_id \
             WHERE a.run_id = ? AND r.user_id = ? ORDER BY a.rowid",
        )
        .bind(run_id.to_string())
        .bind(user_id.as_str())
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(AgentResultRow::from).collect())
    }
}

async fn bump_version(tx: &mut Transaction<'_, Sqlite>, user_id: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO usage_versions (user_id, version) VALUES (?, 1) \
         ON CONFLICT (user_id) DO UPDATE SET version = version + 1",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

crate::accounts::account_methods!(SqliteStore);
crate::orgs::org_methods!(SqliteStore);

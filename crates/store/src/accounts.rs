//! Local accounts, sign-in sessions and invitations (migrations sqlite 0012, postgres 0008),
//! and API keys (sqlite 0013, postgres 0009).
//!
//! The tables and statements are the same in both backends (`$n` parameters, which SQLite
//! takes too), so the statements are written once, here, and [`account_methods!`] expands
//! them into each backend's `impl Store`. Times are ms since the
//! epoch. Secrets never reach the store: passwords arrive hashed (argon2id) and refresh
//! tokens and invitation codes as their SHA-256.
use serde::Serialize;

/// A local account. Its `id` is the user id its threads, runs and usage are stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    /// The sign-in name, unique (compared as stored: callers normalise it first).
    pub name: String,
    pub password_hash: String,
    /// `admin` or `member`.
    pub role: String,
    pub created_at: u64,
    pub disabled_at: Option<u64>,
    /// Wrong passwords since the last sign-in or lockout.
    pub failed_logins: u32,
    /// Sign-in refused until then after too many wrong passwords.
    pub locked_until: Option<u64>,
}

/// An account to create. Without a `role`, the first account of the install is `admin`
/// and every later one `member`.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub id: String,
    pub name: String,
    pub password_hash: String,
    pub role: Option<String>,
    pub at: u64,
}

/// Which account.
#[derive(Clone, Copy, Debug)]
pub enum AccountKey<'a> {
    Id(&'a str),
    Name(&'a str),
}

/// A change to an account.
#[derive(Clone, Debug)]
pub enum AccountChange {
    Password(String),
    /// Disabled since then, or enabled again (`None`).
    Disabled(Option<u64>),
    Role(String),
    /// A wrong password at `at`: the `max_failures`-th in a row locks the account until
    /// `at + lockout_ms` (and starts the count again).
    LoginFailed {
        at: u64,
        max_failures: u32,
        lockout_ms: u64,
    },
    /// A successful sign-in: the count of wrong passwords starts again.
    LoginSucceeded,
}

/// A signed-in client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthSession {
    pub id: String,
    pub account_id: String,
    pub created_at: u64,
    pub last_used_at: u64,
    pub expires_at: u64,
    pub revoked_at: Option<u64>,
    pub user_agent: String,
}

impl AuthSession {
    pub fn is_active(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub account_id: String,
    pub refresh_hash: String,
    pub at: u64,
    pub expires_at: u64,
    pub user_agent: String,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is replaced by the new one.
    Rotated(AuthSession),
    /// The token was replaced moments ago (two tabs refreshing at once): the session is
    /// valid, and the new token already went to the same client.
    Raced(AuthSession),
    /// The token was replaced longer ago: someone kept a copy. The session is revoked.
    Reused(String),
    /// No session has this token (or it ended).
    Unknown,
}

/// How long after a rotation the replaced token still counts as a race, not a theft.
pub const ROTATION_RACE_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub struct Invitation {
    pub code_hash: String,
    pub role: String,
    pub created_by: String,
    pub at: u64,
    pub expires_at: u64,
}

/// An API key, as listed (the key itself is shown once, when made, and never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    /// The user the key acts as.
    pub account_id: String,
    pub name: String,
    /// The key's first characters, to recognise it by.
    pub prefix: String,
    /// What it may do: `ingest`, `read`, `chat`.
    pub scopes: Vec<String>,
    /// An organization's key: it reaches that organization's usage only (as its user, while
    /// they are a member). `None`: the user's own key, for any of their organizations.
    pub org_id: Option<String>,
    pub created_at: u64,
    pub last_used_at: Option<u64>,
    pub revoked_at: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub org_id: Option<String>,
    pub at: u64,
}

/// A row of either backend, read by column name: text, and ms stored as integers.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> String;
    fn maybe_text(&self, column: &str) -> Option<String>;
    fn maybe_ms(&self, column: &str) -> Option<u64>;
    fn ms(&self, column: &str) -> u64 {
        self.maybe_ms(column).unwrap_or_default()
    }
}

impl<R> Columns for R
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, column: &str) -> String {
        self.get(column)
    }

    fn maybe_text(&self, column: &str) -> Option<String> {
        self.get(column)
    }

    fn maybe_ms(&self, column: &str) -> Option<u64> {
        self.get::<Option<i64>, _>(column).map(|v| v as u64)
    }
}

pub(crate) const API_KEY_COLUMNS: &str = "id, account_id, name, prefix, scopes, org_id, created_at, last_used_at, revoked_at";

pub(crate) fn api_key_from(row: &impl Columns) -> ApiKey {
    ApiKey {
        id: row.text("id"),
        account_id: row.text("account_id"),
        name: row.text("name"),
        prefix: row.text("prefix"),
        scopes: row.text("scopes").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        org_id: row.maybe_text("org_id"),
        created_at: row.ms("created_at"),
        last_used_at: row.maybe_ms("last_used_at"),
        revoked_at: row.maybe_ms("revoked_at"),
    }
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, name, password_hash, role, created_at, disabled_at, failed_logins, locked_until";
pub(crate) const SESSION_COLUMNS: &str = "id, account_id, created_at, last_used_at, expires_at, revoked_at, user_agent";

pub(crate) fn account_from(row: &impl Columns) -> Account {
    Account {
        id: row.text("id"),
        name: row.text("name"),
        password_hash: row.text("password_hash"),
        role: row.text("role"),
        created_at: row.ms("created_at"),
        disabled_at: row.maybe_ms("disabled_at"),
        failed_logins: row.ms("failed_logins") as u32,
        locked_until: row.maybe_ms("locked_until"),
    }
}

pub(crate) fn session_from(row: &impl Columns) -> AuthSession {
    AuthSession {
        id: row.text("id"),
        account_id: row.text("account_id"),
        created_at: row.ms("created_at"),
        last_used_at: row.ms("last_used_at"),
        expires_at: row.ms("expires_at"),
        revoked_at: row.maybe_ms("revoked_at"),
        user_agent: row.text("user_agent"),
    }
}

/// A unique constraint refused the write: the name is taken.
pub(crate) fn conflict(e: sqlx::Error) -> crate::StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => crate::StoreError::Conflict,
        _ => crate::StoreError::Database(e),
    }
}

/// [`crate::Accounts`] for a backend whose
/// `account_pool()` gives the pool writes run on and `account_reads()` the one reads do.
macro_rules! account_methods {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::Accounts for $store {
        async fn create_account(&self, new: &NewAccount) -> StoreResult<Account> {
            use crate::accounts::*;
            let sql = format!(
                "INSERT INTO accounts (id, name, password_hash, role, created_at) \
                 SELECT $1, $2, $3, COALESCE($4, CASE WHEN EXISTS (SELECT 1 FROM accounts) THEN 'member' ELSE 'admin' END), $5 \
                 RETURNING {ACCOUNT_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(&new.id)
                .bind(&new.name)
                .bind(&new.password_hash)
                .bind(new.role.as_deref())
                .bind(new.at as i64)
                .fetch_one(self.account_pool()?)
                .await
                .map_err(conflict)?;
            Ok(account_from(&row))
        }

        async fn account(&self, key: AccountKey<'_>) -> StoreResult<Option<Account>> {
            use crate::accounts::*;
            let (column, value) = match key {
                AccountKey::Id(id) => ("id", id),
                AccountKey::Name(name) => ("name", name),
            };
            let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = $1");
            let row = sqlx::query(&sql).bind(value).fetch_optional(self.account_reads()?).await?;
            Ok(row.as_ref().map(account_from))
        }

        async fn accounts(&self) -> StoreResult<Vec<Account>> {
            use crate::accounts::*;
            let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, name");
            let rows = sqlx::query(&sql).fetch_all(self.account_reads()?).await?;
            Ok(rows.iter().map(account_from).collect())
        }

        async fn update_account(&self, id: &str, change: &AccountChange) -> StoreResult<()> {
            let pool = self.account_pool()?;
            let done = match change {
                AccountChange::Password(hash) => {
                    sqlx::query("UPDATE accounts SET password_hash = $2, failed_logins = 0, locked_until = NULL WHERE id = $1")
                        .bind(id)
                        .bind(hash)
                        .execute(pool)
                        .await?
                }
                AccountChange::Disabled(at) => {
                    sqlx::query("UPDATE accounts SET disabled_at = $2 WHERE id = $1").bind(id).bind(at.map(|v| v as i64)).execute(pool).await?
                }
                AccountChange::Role(role) => sqlx::query("UPDATE accounts SET role = $2 WHERE id = $1").bind(id).bind(role).execute(pool).await?,
                AccountChange::LoginFailed { at, max_failures, lockout_ms } => {
                    sqlx::query(
                        "UPDATE accounts SET \
                           locked_until = CASE WHEN failed_logins + 1 >= $3 THEN $2 + $4 ELSE locked_until END, \
                           failed_logins = CASE WHEN failed_logins + 1 >= $3 THEN 0 ELSE failed_logins + 1 END \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(*at as i64)
                    .bind(i64::from(*max_failures))
                    .bind(*lockout_ms as i64)
                    .execute(pool)
                    .await?
                }
                AccountChange::LoginSucceeded => {
                    sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1").bind(id).execute(pool).await?
                }
            };
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        }

        async fn create_session(&self, new: &NewSession) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO auth_sessions (id, account_id, refresh_hash, created_at, last_used_at, expires_at, user_agent) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6)",
            )
            .bind(&new.id)
            .bind(&new.account_id)
            .bind(&new.refresh_hash)
            .bind(new.at as i64)
            .bind(new.expires_at as i64)
            .bind(&new.user_agent)
            .execute(self.account_pool()?)
            .await?;
            Ok(())
        }

        async fn rotate_session(&self, presented: &str, replacement: &str, at: u64, expires_at: u64) -> StoreResult<Rotation> {
            use crate::accounts::*;
            let pool = self.account_pool()?;
            let sql = format!(
                "UPDATE auth_sessions SET previous_hash = refresh_hash, refresh_hash = $2, last_used_at = $3, expires_at = $4 \
                 WHERE refresh_hash = $1 AND revoked_at IS NULL AND expires_at > $3 RETURNING {SESSION_COLUMNS}"
            );
            let row = sqlx::query(&sql).bind(presented).bind(replacement).bind(at as i64).bind(expires_at as i64).fetch_optional(pool).await?;
            if let Some(row) = row {
                return Ok(Rotation::Rotated(session_from(&row)));
            }
            let sql = format!("SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE previous_hash = $1");
            let Some(row) = sqlx::query(&sql).bind(presented).fetch_optional(pool).await? else { return Ok(Rotation::Unknown) };
            let session = session_from(&row);
            if !session.is_active(at) {
                return Ok(Rotation::Unknown);
            }
            if at.saturating_sub(session.last_used_at) <= ROTATION_RACE_MS {
                return Ok(Rotation::Raced(session));
            }
            sqlx::query("UPDATE auth_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(&session.id)
                .bind(at as i64)
                .execute(pool)
                .await?;
            Ok(Rotation::Reused(session.id))
        }

        async fn session(&self, id: &str) -> StoreResult<Option<AuthSession>> {
            use crate::accounts::*;
            let sql = format!("SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(self.account_reads()?).await?;
            Ok(row.as_ref().map(session_from))
        }

        async fn sessions(&self, account_id: &str, at: u64) -> StoreResult<Vec<AuthSession>> {
            use crate::accounts::*;
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                 ORDER BY last_used_at DESC, id"
            );
            let rows = sqlx::query(&sql).bind(account_id).bind(at as i64).fetch_all(self.account_reads()?).await?;
            Ok(rows.iter().map(session_from).collect())
        }

        async fn revoke_sessions(&self, account_id: &str, session_id: Option<&str>, at: u64) -> StoreResult<Vec<String>> {
            let rows = sqlx::query(
                "UPDATE auth_sessions SET revoked_at = $3 \
                 WHERE account_id = $1 AND ($2 IS NULL OR id = $2) AND revoked_at IS NULL RETURNING id",
            )
            .bind(account_id)
            .bind(session_id)
            .bind(at as i64)
            .fetch_all(self.account_pool()?)
            .await?;
            Ok(rows.iter().map(|r| r.get::<String, _>("id")).collect())
        }

        async fn revoked_since(&self, since: u64) -> StoreResult<Vec<String>> {
            let rows = sqlx::query("SELECT id FROM auth_sessions WHERE revoked_at >= $1 UNION ALL SELECT id FROM api_keys WHERE revoked_at >= $1")
                .bind(since as i64)
                .fetch_all(self.account_reads()?)
                .await?;
            Ok(rows.iter().map(|r| r.get::<String, _>("id")).collect())
        }

        async fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
            sqlx::query("INSERT INTO invitations (code_hash, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&invitation.code_hash)
                .bind(&invitation.role)
                .bind(&invitation.created_by)
                .bind(invitation.at as i64)
                .bind(invitation.expires_at as i64)
                .execute(self.account_pool()?)
                .await?;
            Ok(())
        }

        async fn claim_invitation(&self, code_hash: &str, at: Option<u64>) -> StoreResult<Option<String>> {
            let pool = self.account_pool()?;
            let Some(at) = at else {
                sqlx::query("UPDATE invitations SET used_at = NULL WHERE code_hash = $1").bind(code_hash).execute(pool).await?;
                return Ok(None);
            };
            let row = sqlx::query(
                "UPDATE invitations SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING role",
            )
            .bind(code_hash)
            .bind(at as i64)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|r| r.get::<String, _>("role")))
        }

        async fn delete_user(&self, user_id: &str, at: u64) -> StoreResult<bool> {
            let mut tx = self.account_pool()?.begin().await?;
            let busy = sqlx::query("SELECT 1 FROM runs WHERE user_id = $1 AND status IN ('queued', 'running') LIMIT 1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            if busy.is_some() {
                return Ok(false);
            }
            for statement in [
                "DELETE FROM run_events WHERE run_id IN (SELECT id FROM runs WHERE user_id = $1)",
                "DELETE FROM agent_results WHERE run_id IN (SELECT id FROM runs WHERE user_id = $1)",
                "DELETE FROM messages WHERE user_id = $1",
                "DELETE FROM runs WHERE user_id = $1",
                "DELETE FROM threads WHERE user_id = $1",
                "DELETE FROM users WHERE id = $1",
                "DELETE FROM accounts WHERE id = $1",
                "UPDATE auth_sessions SET user_agent = '', refresh_hash = id, previous_hash = NULL, revoked_at = COALESCE(revoked_at, $2) WHERE account_id = $1",
                "UPDATE api_keys SET name = '', key_hash = id, revoked_at = COALESCE(revoked_at, $2) WHERE account_id = $1",
            ] {
                let query = sqlx::query(statement).bind(user_id);
                // PostgreSQL takes exactly the parameters a statement names.
                let query = if statement.contains("$2") { query.bind(at as i64) } else { query };
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        }

        async fn create_api_key(&self, new: &NewApiKey) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO api_keys (id, account_id, name, prefix, key_hash, scopes, org_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&new.id)
            .bind(&new.account_id)
            .bind(&new.name)
            .bind(&new.prefix)
            .bind(&new.key_hash)
            .bind(new.scopes.join(","))
            .bind(new.org_id.as_deref())
            .bind(new.at as i64)
            .execute(self.account_pool()?)
            .await?;
            Ok(())
        }

        async fn api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
            use crate::accounts::*;
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
            let row = sqlx::query(&sql).bind(key_hash).fetch_optional(self.account_reads()?).await?;
            Ok(row.as_ref().map(api_key_from))
        }

        async fn api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKey>> {
            use crate::accounts::*;
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL ORDER BY created_at, id");
            let rows = sqlx::query(&sql).bind(account_id).fetch_all(self.account_reads()?).await?;
            Ok(rows.iter().map(api_key_from).collect())
        }

        async fn revoke_api_key(&self, account_id: &str, id: &str, at: u64) -> StoreResult<bool> {
            let done = sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE account_id = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(account_id)
                .bind(id)
                .bind(at as i64)
                .execute(self.account_pool()?)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn touch_api_key(&self, id: &str, at: u64) -> StoreResult<()> {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1").bind(id).bind(at as i64).execute(self.account_pool()?).await?;
            Ok(())
        }
        }
    };
}
pub(crate) use account_methods;

//! Organizations, their members and invitation links (migrations sqlite 0015, postgres
//! 0011): usage data shared by a team. Usage rows name their organization ([`OrgId`]); a
//! user's personal space is an organization of one that has no row here.
//!
//! As in `accounts.rs`, the statements are the same in both backends and [`org_methods!`]
//! expands them into each backend's impl. Times are ms since the epoch; invitation codes
//! arrive as their SHA-256. A thread stays its owner's; shared with one of the owner's
//! organizations (migrations sqlite 0016, postgres 0012), its members may read it.
use apex_protocol::{OrgId, RunId, ThreadId, UserId};
use serde::Serialize;

use crate::ThreadRow;

/// What a member may do with the organization's usage data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    /// Reads the usage and asks about it.
    Viewer,
    /// And imports usage.
    Analyst,
    /// And deletes usage, invites, changes roles and removes members.
    Admin,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => Self::Viewer,
            "analyst" => Self::Analyst,
            "admin" => Self::Admin,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_by: String,
    pub created_at: u64,
}

/// An organization a user belongs to, and as what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Membership {
    #[serde(flatten)]
    pub org: Organization,
    pub role: OrgRole,
    pub joined_at: u64,
}

/// A member of an organization, as its members see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user_id: UserId,
    /// The local account's sign-in name; empty for an identity provider's user.
    pub name: String,
    pub role: OrgRole,
    pub joined_at: u64,
}

#[derive(Clone, Debug)]
pub struct NewOrg {
    pub id: OrgId,
    pub name: String,
    pub created_by: UserId,
    pub at: u64,
}

#[derive(Clone, Debug)]
pub struct OrgInvitation {
    pub code_hash: String,
    pub org: OrgId,
    pub role: OrgRole,
    pub created_by: UserId,
    pub at: u64,
    pub expires_at: u64,
}

/// What a reader asks for: a thread, or a run of one.
#[derive(Clone, Copy, Debug)]
pub enum Shareable {
    Thread(ThreadId),
    Run(RunId),
}

/// Whose a shared thread is, and with which organization it is shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadShare {
    pub owner: UserId,
    pub org: OrgId,
}

/// A thread shared with an organization, as its members list it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedThread {
    #[serde(flatten)]
    pub thread: ThreadRow,
    pub owner: UserId,
    /// The owner's local sign-in name; empty for an identity provider's user.
    pub owner_name: String,
}

/// At most this many shared threads are listed (the most recently updated).
pub const SHARED_THREADS_LISTED: i64 = 500;

pub(crate) const ORG_COLUMNS: &str = "o.id, o.name, o.created_by, o.created_at";

pub(crate) fn org_from(row: &impl crate::accounts::Columns) -> Organization {
    Organization {
        id: OrgId::new(row.text("id")),
        name: row.text("name"),
        created_by: row.text("created_by"),
        created_at: row.ms("created_at"),
    }
}

pub(crate) fn membership_from(row: &impl crate::accounts::Columns) -> Membership {
    Membership {
        org: org_from(row),
        role: OrgRole::parse(&row.text("role")).unwrap_or(OrgRole::Viewer),
        joined_at: row.ms("joined_at"),
    }
}

/// [`crate::Organizations`] for a backend with `account_pool()` (writes) and
/// `account_reads()` (reads), as for accounts.
macro_rules! org_methods {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::Organizations for $store {
            async fn create_org(&self, new: &crate::NewOrg) -> StoreResult<crate::Organization> {
                let mut tx = self.account_pool()?.begin().await?;
                sqlx::query("INSERT INTO organizations (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(new.id.as_str())
                    .bind(&new.name)
                    .bind(new.created_by.as_str())
                    .bind(new.at as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::accounts::conflict)?;
                sqlx::query("INSERT INTO memberships (org_id, user_id, role, joined_at) VALUES ($1, $2, 'admin', $3)")
                    .bind(new.id.as_str())
                    .bind(new.created_by.as_str())
                    .bind(new.at as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(crate::Organization {
                    id: new.id.clone(),
                    name: new.name.clone(),
                    created_by: new.created_by.to_string(),
                    created_at: new.at,
                })
            }

            async fn orgs_of(&self, user_id: &UserId) -> StoreResult<Vec<crate::Membership>> {
                let sql = format!(
                    "SELECT {}, m.role, m.joined_at FROM memberships m JOIN organizations o ON o.id = m.org_id \
                     WHERE m.user_id = $1 ORDER BY m.joined_at, o.id",
                    crate::orgs::ORG_COLUMNS
                );
                let rows = sqlx::query(&sql).bind(user_id.as_str()).fetch_all(self.account_reads()?).await?;
                Ok(rows.iter().map(crate::orgs::membership_from).collect())
            }

            async fn role_in(&self, org: &OrgId, user_id: &UserId) -> StoreResult<Option<crate::OrgRole>> {
                let role: Option<String> = sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                    .bind(org.as_str())
                    .bind(user_id.as_str())
                    .fetch_optional(self.account_reads()?)
                    .await?;
                Ok(role.as_deref().and_then(crate::OrgRole::parse))
            }

            async fn members(&self, org: &OrgId) -> StoreResult<Vec<crate::Member>> {
                use crate::accounts::Columns;
                let rows = sqlx::query(
                    "SELECT m.user_id, COALESCE(a.name, '') AS name, m.role, m.joined_at FROM memberships m \
                     LEFT JOIN accounts a ON a.id = m.user_id WHERE m.org_id = $1 ORDER BY m.joined_at, m.user_id",
                )
                .bind(org.as_str())
                .fetch_all(self.account_reads()?)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| crate::Member {
                        user_id: UserId::from(r.text("user_id")),
                        name: r.text("name"),
                        role: crate::OrgRole::parse(&r.text("role")).unwrap_or(crate::OrgRole::Viewer),
                        joined_at: r.ms("joined_at"),
                    })
                    .collect())
            }

            async fn set_member(&self, org: &OrgId, user_id: &UserId, role: Option<crate::OrgRole>) -> StoreResult<()> {
                let mut tx = self.account_pool()?.begin().await?;
                // Takes the organization's row lock (a write lock in SQLite): two admins
                // demoting each other at once are decided one after the other.
                sqlx::query("UPDATE organizations SET name = name WHERE id = $1").bind(org.as_str()).execute(&mut *tx).await?;
                let current: Option<String> = sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                    .bind(org.as_str())
                    .bind(user_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(current) = current else { return Err(StoreError::NotFound) };
                if current == "admin" && role != Some(crate::OrgRole::Admin) {
                    let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'admin'")
                        .bind(org.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                    if admins <= 1 {
                        return Err(StoreError::Conflict);
                    }
                }
                let query = match role {
                    Some(role) => sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2").bind(org.as_str()).bind(user_id.as_str()).bind(role.as_str()),
                    None => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2").bind(org.as_str()).bind(user_id.as_str()),
                };
                query.execute(&mut *tx).await?;
                if role.is_none() {
                    // What a member shared is theirs: it stops being readable with them gone.
                    sqlx::query("UPDATE threads SET shared_org = NULL, shared_at = NULL WHERE user_id = $1 AND shared_org = $2")
                        .bind(user_id.as_str())
                        .bind(org.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_org_invitation(&self, invitation: &crate::OrgInvitation) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO org_invitations (code_hash, org_id, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&invitation.code_hash)
                .bind(invitation.org.as_str())
                .bind(invitation.role.as_str())
                .bind(invitation.created_by.as_str())
                .bind(invitation.at as i64)
                .bind(invitation.expires_at as i64)
                .execute(self.account_pool()?)
                .await?;
                Ok(())
            }

            async fn join_org(&self, code_hash: &str, user_id: &UserId, at: u64) -> StoreResult<Option<crate::Membership>> {
                let mut tx = self.account_pool()?.begin().await?;
                let claimed = sqlx::query(
                    "UPDATE org_invitations SET used_at = $2, used_by = $3 \
                     WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING org_id, role",
                )
                .bind(code_hash)
                .bind(at as i64)
                .bind(user_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(claimed) = claimed else { return Ok(None) };
                let (org, role): (String, String) = (claimed.get("org_id"), claimed.get("role"));
                // A member already keeps the role they have.
                sqlx::query(
                    "INSERT INTO memberships (org_id, user_id, role, joined_at) SELECT $1, $2, $3, $4 \
                     WHERE EXISTS (SELECT 1 FROM organizations WHERE id = $1) ON CONFLICT (org_id, user_id) DO NOTHING",
                )
                .bind(&org)
                .bind(user_id.as_str())
                .bind(&role)
                .bind(at as i64)
                .execute(&mut *tx)
                .await?;
                let sql = format!(
                    "SELECT {}, m.role, m.joined_at FROM memberships m JOIN organizations o ON o.id = m.org_id \
                     WHERE m.org_id = $1 AND m.user_id = $2",
                    crate::orgs::ORG_COLUMNS
                );
                let row = sqlx::query(&sql).bind(&org).bind(user_id.as_str()).fetch_optional(&mut *tx).await?;
                tx.commit().await?;
                Ok(row.as_ref().map(crate::orgs::membership_from))
            }

            async fn leave_all(&self, user_id: &UserId) -> StoreResult<Vec<OrgId>> {
                let mut tx = self.account_pool()?.begin().await?;
                let orgs: Vec<String> = sqlx::query_scalar("SELECT org_id FROM memberships WHERE user_id = $1 ORDER BY org_id")
                    .bind(user_id.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query("UPDATE threads SET shared_org = NULL, shared_at = NULL WHERE user_id = $1 AND shared_org IS NOT NULL")
                    .bind(user_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let mut emptied = Vec::new();
                for org in orgs {
                    sqlx::query("UPDATE organizations SET name = name WHERE id = $1").bind(&org).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2").bind(&org).bind(user_id.as_str()).execute(&mut *tx).await?;
                    let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'admin'")
                        .bind(&org)
                        .fetch_one(&mut *tx)
                        .await?;
                    if admins == 0 {
                        // The longest-standing member takes over; none left: the
                        // organization goes.
                        let promoted = sqlx::query(
                            "UPDATE memberships SET role = 'admin' WHERE org_id = $1 AND user_id = \
                             (SELECT user_id FROM memberships WHERE org_id = $1 ORDER BY joined_at, user_id LIMIT 1)",
                        )
                        .bind(&org)
                        .execute(&mut *tx)
                        .await?;
                        if promoted.rows_affected() == 0 {
                            sqlx::query("DELETE FROM org_invitations WHERE org_id = $1").bind(&org).execute(&mut *tx).await?;
                            sqlx::query("DELETE FROM organizations WHERE id = $1").bind(&org).execute(&mut *tx).await?;
                            emptied.push(OrgId::new(org));
                        }
                    }
                }
                tx.commit().await?;
                Ok(emptied)
            }

            async fn share_thread(&self, owner: &UserId, thread: ThreadId, org: Option<&OrgId>, at: u64) -> StoreResult<()> {
                // Shared only with an organization the owner belongs to, checked in the same
                // statement as the write (a removal in between cannot slip past it).
                let done = sqlx::query(
                    "UPDATE threads SET shared_org = $3, shared_at = $4 WHERE id = $1 AND user_id = $2 \
                     AND ($3 IS NULL OR EXISTS (SELECT 1 FROM memberships WHERE org_id = $3 AND user_id = $2))",
                )
                .bind(thread.to_string())
                .bind(owner.as_str())
                .bind(org.map(OrgId::as_str))
                .bind(org.map(|_| at as i64))
                .execute(self.account_pool()?)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn share_of(&self, item: crate::Shareable) -> StoreResult<Option<crate::ThreadShare>> {
                let (sql, id) = match item {
                    crate::Shareable::Thread(id) => ("SELECT user_id, shared_org FROM threads WHERE id = $1 AND shared_org IS NOT NULL", id.to_string()),
                    crate::Shareable::Run(id) => (
                        "SELECT t.user_id, t.shared_org FROM runs r JOIN threads t ON t.id = r.thread_id \
                         WHERE r.id = $1 AND t.shared_org IS NOT NULL",
                        id.to_string(),
                    ),
                };
                let row = sqlx::query(sql).bind(id).fetch_optional(self.account_reads()?).await?;
                Ok(row.map(|r| crate::ThreadShare {
                    owner: UserId::from(r.get::<String, _>("user_id")),
                    org: OrgId::new(r.get::<String, _>("shared_org")),
                }))
            }

            async fn shared_threads(&self, org: &OrgId) -> StoreResult<Vec<crate::SharedThread>> {
                use crate::accounts::Columns;
                let rows = sqlx::query(
                    "SELECT t.id, t.title, t.created_at, t.updated_at, t.user_id, COALESCE(a.name, '') AS name FROM threads t \
                     LEFT JOIN accounts a ON a.id = t.user_id WHERE t.shared_org = $1 \
                     ORDER BY t.updated_at DESC, t.id DESC LIMIT $2",
                )
                .bind(org.as_str())
                .bind(crate::orgs::SHARED_THREADS_LISTED)
                .fetch_all(self.account_reads()?)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(crate::SharedThread {
                            thread: crate::ThreadRow {
                                id: crate::rows::parse_id(&r.text("id"))?,
                                title: r.text("title"),
                                created_at: r.ms("created_at"),
                                updated_at: r.ms("updated_at"),
                                shared_with: Some(org.clone()),
                            },
                            owner: UserId::from(r.text("user_id")),
                            owner_name: r.text("name"),
                        })
                    })
                    .collect()
            }
        }
    };
}
pub(crate) use org_methods;

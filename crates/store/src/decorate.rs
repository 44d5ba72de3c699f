//! Decorators of a store: something done around every operation (timing it, retrying it)
//! without listing the operations again. [`Decorated`] implements [`Store`] once, from the
//! list below, by handing each call to an [`Around`]; `Metered` and `Retrying` are the two
//! `Around`s. A new store method is one line here.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apex_costs::import::ImportRow;
use apex_costs::{GroupBy, UsageQuery, UsageRecord};
use apex_protocol::{OrgId, RunId, ThreadId, UserId};
use async_trait::async_trait;

use crate::model::*;
use crate::{
    Account, AccountChange, AccountKey, Accounts, ApiKey, AuthSession, Invitation, Member, Membership, NewAccount, NewApiKey,
    NewOrg, NewSession, OrgInvitation, OrgRole, Organization, Organizations, Rotation, Shareable, SharedThread, ThreadShare,
};
use crate::{Store, StoreResult};

/// A store operation, as a decorator sees it.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    /// The method's name (the `op` label of the database metrics).
    pub name: &'static str,
    /// Whether the operation may be repeated after a transient failure: reads, and writes
    /// that are idempotent (usage imports are keyed, deletes repeatable). Health checks,
    /// the writer's batches (retried by the writer itself) and recovery are not.
    pub repeatable: bool,
}

/// What a decorator does around each operation: `call` runs it (and may be called again).
#[async_trait]
pub trait Around: Send + Sync + 'static {
    async fn around<T, F, Fut>(&self, op: Op, call: F) -> StoreResult<T>
    where
        T: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = StoreResult<T>> + Send;
}

/// `inner`, with `around` done around each of its operations.
pub struct Decorated<A> {
    pub around: A,
    pub inner: Arc<dyn Store>,
}

impl<A: Around> Decorated<A> {
    pub fn new(around: A, inner: Arc<dyn Store>) -> Self {
        Self { around, inner }
    }
}

macro_rules! decorated {
    ($trait:ident { $( $repeatable:literal fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )* }) => {
        #[async_trait]
        impl<A: Around> $trait for Decorated<A> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> StoreResult<$ret> {
                    let op = Op { name: stringify!($name), repeatable: $repeatable };
                    self.around.around(op, || self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

decorated! { Store {
    false fn ping(&self) -> ();
    false fn apply(&self, begins: &[NewRun], writes: &[Write]) -> Vec<BeginOutcome>;
    false fn heartbeat(&self, instance: &str, at_ms: u64) -> ();
    false fn interrupt_orphaned(&self, instance: &str, lease: Duration) -> Vec<RunId>;
    true fn find_client_message(&self, user_id: &UserId, client_message_id: &str) -> Option<BegunRun>;
    true fn list_threads(&self, user_id: &UserId) -> Vec<ThreadRow>;
    true fn thread_messages(&self, user_id: &UserId, thread_id: ThreadId) -> Vec<MessageRow>;
    true fn thread_runs(&self, user_id: &UserId, thread_id: ThreadId) -> Vec<ThreadRunRow>;
    true fn get_run(&self, user_id: &UserId, run_id: RunId) -> RunRow;
    true fn run_events(&self, user_id: &UserId, run_id: RunId, after_seq: u64) -> Vec<String>;
    true fn agent_results(&self, user_id: &UserId, run_id: RunId) -> Vec<AgentResultRow>;
    true fn import_usage(&self, org: &OrgId, rows: &[ImportRow], at_ms: u64) -> u64;
    true fn usage(&self, org: &OrgId, from: Option<&str>, to: Option<&str>) -> Vec<UsageRecord>;
    true fn usage_totals(&self, org: &OrgId, q: &UsageQuery) -> Vec<UsageRecord>;
    true fn usage_names(&self, org: &OrgId, dim: GroupBy) -> Vec<String>;
    true fn delete_usage(&self, org: &OrgId) -> u64;
    true fn usage_version(&self, org: &OrgId) -> u64;
}}

decorated! { Accounts {
    false fn create_account(&self, new: &NewAccount) -> Account;
    true fn account(&self, key: AccountKey<'_>) -> Option<Account>;
    true fn accounts(&self) -> Vec<Account>;
    false fn update_account(&self, id: &str, change: &AccountChange) -> ();
    false fn create_session(&self, new: &NewSession) -> ();
    false fn rotate_session(&self, presented: &str, replacement: &str, at: u64, expires_at: u64) -> Rotation;
    true fn session(&self, id: &str) -> Option<AuthSession>;
    true fn sessions(&self, account_id: &str, at: u64) -> Vec<AuthSession>;
    true fn revoke_sessions(&self, account_id: &str, session_id: Option<&str>, at: u64) -> Vec<String>;
    true fn revoked_since(&self, since: u64) -> Vec<String>;
    false fn create_invitation(&self, invitation: &Invitation) -> ();
    false fn claim_invitation(&self, code_hash: &str, at: Option<u64>) -> Option<String>;
    false fn delete_user(&self, user_id: &str, at: u64) -> bool;
    false fn create_api_key(&self, new: &NewApiKey) -> ();
    true fn api_key(&self, key_hash: &str) -> Option<ApiKey>;
    true fn api_keys(&self, account_id: &str) -> Vec<ApiKey>;
    true fn revoke_api_key(&self, account_id: &str, id: &str, at: u64) -> bool;
    false fn touch_api_key(&self, id: &str, at: u64) -> ();
}}

decorated! { Organizations {
    false fn create_org(&self, new: &NewOrg) -> Organization;
    true fn orgs_of(&self, user_id: &UserId) -> Vec<Membership>;
    true fn role_in(&self, org: &OrgId, user_id: &UserId) -> Option<OrgRole>;
    true fn members(&self, org: &OrgId) -> Vec<Member>;
    false fn set_member(&self, org: &OrgId, user_id: &UserId, role: Option<OrgRole>) -> ();
    false fn create_org_invitation(&self, invitation: &OrgInvitation) -> ();
    false fn join_org(&self, code_hash: &str, user_id: &UserId, at: u64) -> Option<Membership>;
    false fn leave_all(&self, user_id: &UserId) -> Vec<OrgId>;
    false fn share_thread(&self, owner: &UserId, thread: ThreadId, org: Option<&OrgId>, at: u64) -> ();
    true fn share_of(&self, item: Shareable) -> Option<ThreadShare>;
    true fn shared_threads(&self, org: &OrgId) -> Vec<SharedThread>;
}}

//! Rows as both backends read them. Each type here is what one query selects, by column
//! name (the SQL aliases its columns to these names); `sqlx::FromRow` decodes it from a
//! SQLite or a PostgreSQL row alike, and the conversions below turn it into the store's
//! records. The backends keep only their SQL.
use std::str::FromStr;

use apex_costs::{Money, UsageRecord};
use apex_protocol::{OrgId, RunId, ThreadId};

use crate::model::{AgentResultRow, BegunRun, MessageRow, RunRow, RunStatus, ThreadRow, ThreadRunRow};
use crate::{StoreError, StoreResult};

/// An id as stored (its text form), parsed back.
pub(crate) fn parse_id<T: FromStr>(s: &str) -> StoreResult<T> {
    s.parse().map_err(|_| StoreError::Database(sqlx::Error::Decode(format!("bad id `{s}`").into())))
}

/// A count or a time in ms as stored (a signed 64-bit integer).
fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

/// `usage_daily`: the daily sums kept by each import, one row per day, provider, model,
/// feature, project and tags (end user, API key, environment): all the analysis needs.
/// `cost` is the billed cost where every summed row carried one.
#[derive(sqlx::FromRow)]
pub(crate) struct UsageDaily {
    day: String,
    provider: String,
    model: String,
    feature: String,
    project: String,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cost: Option<i64>,
    end_user: String,
    api_key: String,
    environment: String,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    repeat_requests: i64,
}

impl From<UsageDaily> for UsageRecord {
    fn from(r: UsageDaily) -> Self {
        UsageRecord {
            day: r.day,
            provider: r.provider,
            model: r.model,
            feature: r.feature,
            project: r.project,
            requests: unsigned(r.requests),
            input_tokens: unsigned(r.input_tokens),
            output_tokens: unsigned(r.output_tokens),
            cached_input_tokens: unsigned(r.cached_input_tokens),
            cost: r.cost.map(Money),
            user: r.end_user,
            api_key: r.api_key,
            environment: r.environment,
            cache_write_tokens: unsigned(r.cache_write_tokens),
            reasoning_tokens: unsigned(r.reasoning_tokens),
            repeat_requests: unsigned(r.repeat_requests),
        }
    }
}

/// The columns of `usage_daily` that [`UsageDaily`] reads, in one place for both backends.
pub(crate) const USAGE_DAILY_COLUMNS: &str = "day, provider, model, feature, project, requests, input_tokens, \
    output_tokens, cached_input_tokens, CASE WHEN billed THEN cost_micros END AS cost, end_user, api_key, environment, \
    cache_write_tokens, reasoning_tokens, repeat_requests";

/// A message found by its `client_message_id`.
#[derive(sqlx::FromRow)]
pub(crate) struct Begun {
    id: String,
    thread_id: String,
    run_id: Option<String>,
}

impl TryFrom<Begun> for BegunRun {
    type Error = StoreError;
    fn try_from(r: Begun) -> StoreResult<Self> {
        Ok(BegunRun {
            message_id: parse_id(&r.id)?,
            thread_id: parse_id(&r.thread_id)?,
            run_id: parse_id(r.run_id.as_deref().unwrap_or_default())?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct Thread {
    id: String,
    title: String,
    created_at: i64,
    updated_at: i64,
    shared_org: Option<String>,
}

impl TryFrom<Thread> for ThreadRow {
    type Error = StoreError;
    fn try_from(r: Thread) -> StoreResult<Self> {
        Ok(ThreadRow {
            id: parse_id(&r.id)?,
            title: r.title,
            created_at: unsigned(r.created_at),
            updated_at: unsigned(r.updated_at),
            shared_with: r.shared_org.map(OrgId::new),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct Message {
    id: String,
    parent_id: Option<String>,
    run_id: Option<String>,
    role: String,
    content: String,
    client_message_id: Option<String>,
    created_at: i64,
}

impl Message {
    pub(crate) fn into_row(self, thread_id: ThreadId) -> StoreResult<MessageRow> {
        Ok(MessageRow {
            id: parse_id(&self.id)?,
            thread_id,
            parent_id: self.parent_id.as_deref().map(parse_id).transpose()?,
            run_id: self.run_id.as_deref().map(parse_id).transpose()?,
            role: self.role,
            content: self.content,
            client_message_id: self.client_message_id,
            created_at: unsigned(self.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ThreadRun {
    id: String,
    user_message_id: String,
    status: String,
    created_at: i64,
}

impl TryFrom<ThreadRun> for ThreadRunRow {
    type Error = StoreError;
    fn try_from(r: ThreadRun) -> StoreResult<Self> {
        Ok(ThreadRunRow {
            id: parse_id(&r.id)?,
            user_message_id: parse_id(&r.user_message_id)?,
            status: RunStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Database(sqlx::Error::Decode(format!("bad run status `{}`", r.status).into())))?,
            created_at: unsigned(r.created_at),
        })
    }
}

/// A run, with `last_seq`: the seq of its last stored event (0 without events).
#[derive(sqlx::FromRow)]
pub(crate) struct Run {
    thread_id: String,
    user_message_id: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    last_seq: i64,
}

impl Run {
    pub(crate) fn into_row(self, id: RunId) -> StoreResult<RunRow> {
        let status =
            RunStatus::parse(&self.status).ok_or_else(|| StoreError::Config(format!("unknown run status {}", self.status)))?;
        Ok(RunRow {
            id,
            thread_id: parse_id(&self.thread_id)?,
            user_message_id: parse_id(&self.user_message_id)?,
            status,
            created_at: unsigned(self.created_at),
            started_at: self.started_at.map(unsigned),
            finished_at: self.finished_at.map(unsigned),
            error_code: self.error_code,
            error_message: self.error_message,
            last_seq: unsigned(self.last_seq),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AgentResult {
    agent: String,
    output: String,
    duration_ms: i64,
}

impl From<AgentResult> for AgentResultRow {
    fn from(r: AgentResult) -> Self {
        AgentResultRow {
            agent: r.agent,
            output: serde_json::from_str(&r.output).unwrap_or(serde_json::Value::Null),
            duration_ms: unsigned(r.duration_ms),
        }
    }
}

/// A run left unfinished by an instance that is gone.
#[derive(sqlx::FromRow)]
pub(crate) struct Orphan {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) thread_id: String,
}

/// One stored event of an orphaned run.
#[derive(sqlx::FromRow)]
pub(crate) struct OrphanEvent {
    pub(crate) run_id: String,
    seq: i64,
    payload: String,
}

impl OrphanEvent {
    pub(crate) fn seq(&self) -> u64 {
        unsigned(self.seq)
    }

    pub(crate) fn into_payload(self) -> String {
        self.payload
    }
}

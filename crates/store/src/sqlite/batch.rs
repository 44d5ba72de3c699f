//! Applying a batch of writes with as few statements as possible. Every statement is a
//! round trip to SQLite's worker thread, so rows of one kind go into one multi-row
//! statement per batch; only the end of a run needs a statement of its own.
use std::collections::{HashMap, HashSet};

use apex_costs::import::ImportRow;
use apex_protocol::{MessageId, RunId, ThreadId};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use crate::model::{decide_begins, title_from, BeginOutcome, BegunRun, NewRun, RunFinish, Write};
use super::parse_id;
use crate::StoreResult;

/// Usage rows staged per statement: 17 parameters each (30,600), within SQLite's 32,766.
const USAGE_ROWS_PER_STATEMENT: usize = 1_800;

/// Rows per multi-row statement (at most 4 parameters each: far below SQLite's limit).
const ROWS_PER_STATEMENT: usize = 512;

/// Writes accepted messages and their runs: two lookups (earlier `client_message_id`s and
/// thread owners), then one multi-row statement per table.
pub(super) async fn begin(tx: &mut Transaction<'_, Sqlite>, begins: &[NewRun]) -> StoreResult<Vec<BeginOutcome>> {
    if begins.is_empty() {
        return Ok(Vec::new());
    }
    let seen = earlier_messages(tx, begins).await?;
    let owners = thread_owners(tx, begins).await?;
    let (outcomes, accepted) = decide_begins(begins, seen, &owners);
    for chunk in accepted.chunks(ROWS_PER_STATEMENT / 2) {
        insert_accepted(tx, chunk).await?;
    }
    Ok(outcomes)
}

async fn earlier_messages(
    tx: &mut Transaction<'_, Sqlite>,
    begins: &[NewRun],
) -> StoreResult<HashMap<(String, String), BegunRun>> {
    let ids: Vec<&str> = begins.iter().filter_map(|b| b.client_message_id.as_deref()).collect();
    let mut found = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT user_id, client_message_id, id, thread_id, run_id FROM messages WHERE client_message_id IN (",
        );
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        for row in q.build().fetch_all(&mut **tx).await? {
            let run: Option<String> = row.get(4);
            let begun = BegunRun {
                message_id: parse_id::<MessageId>(row.get(2))?,
                thread_id: parse_id::<ThreadId>(row.get(3))?,
                run_id: parse_id::<RunId>(run.as_deref().unwrap_or_default())?,
            };
            found.insert((row.get(0), row.get(1)), begun);
        }
    }
    Ok(found)
}

async fn thread_owners(tx: &mut Transaction<'_, Sqlite>, begins: &[NewRun]) -> StoreResult<HashMap<ThreadId, String>> {
    let ids: Vec<String> = begins.iter().filter_map(|b| b.thread_id).map(|t| t.to_string()).collect();
    let mut owners = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, user_id FROM threads WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        q.push(")");
        for row in q.build().fetch_all(&mut **tx).await? {
            owners.insert(parse_id::<ThreadId>(row.get(0))?, row.get(1));
        }
    }
    Ok(owners)
}

async fn insert_accepted(tx: &mut Transaction<'_, Sqlite>, accepted: &[&NewRun]) -> StoreResult<()> {
    let users: HashSet<&str> = accepted.iter().map(|b| b.user_id.as_str()).collect();
    let mut q = QueryBuilder::<Sqlite>::new("INSERT OR IGNORE INTO users (id, created_at) ");
    q.push_values(&users, |mut row, user| {
        row.push_bind(*user).push_bind(accepted[0].at_ms as i64);
    });
    q.build().execute(&mut **tx).await?;

    let (fresh, existing): (Vec<&&NewRun>, Vec<&&NewRun>) = accepted.iter().partition(|b| b.thread_id.is_none());
    if !fresh.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO threads (id, user_id, title, created_at, updated_at) ");
        q.push_values(&fresh, |mut row, b| {
            row.push_bind(b.new_thread_id.to_string())
                .push_bind(b.user_id.as_str())
                .push_bind(title_from(&b.text))
                .push_bind(b.at_ms as i64)
                .push_bind(b.at_ms as i64);
        });
        q.build().execute(&mut **tx).await?;
    }
    if !existing.is_empty() {
        let latest = existing.iter().map(|b| b.at_ms).max().unwrap_or(0);
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE threads SET updated_at = MAX(updated_at, ");
        q.push_bind(latest as i64).push(") WHERE id IN (");
        let mut list = q.separated(", ");
        for b in &existing {
            list.push_bind(b.thread().to_string());
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }

    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO messages (id, thread_id, user_id, run_id, role, content, client_message_id, created_at) ",
    );
    q.push_values(accepted, |mut row, b| {
        row.push_bind(b.message_id.to_string())
            .push_bind(b.thread().to_string())
            .push_bind(b.user_id.as_str())
            .push_bind(b.run_id.to_string())
            .push_bind("user")
            .push_bind(b.text.as_str())
            .push_bind(b.client_message_id.as_deref())
            .push_bind(b.at_ms as i64);
    });
    q.build().execute(&mut **tx).await?;

    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO runs (id, user_id, thread_id, user_message_id, status, created_at, owner) ",
    );
    q.push_values(accepted, |mut row, b| {
        row.push_bind(b.run_id.to_string())
            .push_bind(b.user_id.as_str())
            .push_bind(b.thread().to_string())
            .push_bind(b.message_id.to_string())
            .push_bind("queued")
            .push_bind(b.at_ms as i64)
            .push_bind(b.owner.as_deref());
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}


/// Adds usage rows, skipping keys already stored, and adds the new ones to the daily
/// sums; returns how many were new. Each chunk goes through a staging table so that the
/// deduplication and the summing happen inside SQLite, not row by row out here.
pub(super) async fn insert_usage(
    tx: &mut Transaction<'_, Sqlite>,
    user_id: &str,
    rows: &[ImportRow],
    at_ms: u64,
) -> StoreResult<u64> {
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS usage_staging (key TEXT PRIMARY KEY, day TEXT, provider TEXT, model TEXT, \
         feature TEXT, project TEXT, end_user TEXT, api_key TEXT, environment TEXT, requests INTEGER, \
         input_tokens INTEGER, output_tokens INTEGER, cached_input_tokens INTEGER, cache_write_tokens INTEGER, \
         reasoning_tokens INTEGER, cost_micros INTEGER, request_hash TEXT, repeat_requests INTEGER DEFAULT 0)",
    )
    .execute(&mut **tx)
    .await?;
    let mut inserted = 0;
    for chunk in rows.chunks(USAGE_ROWS_PER_STATEMENT) {
        // A key repeated inside the chunk is staged once.
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO temp.usage_staging (key, day, provider, model, feature, project, end_user, \
             api_key, environment, requests, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, \
             reasoning_tokens, cost_micros, request_hash) ",
        );
        q.push_values(chunk, |mut row, r| {
            let u = &r.record;
            row.push_bind(r.key.as_str())
                .push_bind(u.day.as_str())
                .push_bind(u.provider.as_str())
                .push_bind(u.model.as_str())
                .push_bind(u.feature.as_str())
                .push_bind(u.project.as_str())
                .push_bind(u.user.as_str())
                .push_bind(u.api_key.as_str())
                .push_bind(u.environment.as_str())
                .push_bind(u.requests as i64)
                .push_bind(u.input_tokens as i64)
                .push_bind(u.output_tokens as i64)
                .push_bind(u.cached_input_tokens as i64)
                .push_bind(u.cache_write_tokens as i64)
                .push_bind(u.reasoning_tokens as i64)
                .push_bind(u.cost.map(|c| c.0))
                .push_bind(r.request_hash.as_str());
        });
        q.build().execute(&mut **tx).await?;
        // Keys this user already has are not new: they never reach the sums.
        sqlx::query(
            "DELETE FROM temp.usage_staging WHERE EXISTS \
             (SELECT 1 FROM usage_records r WHERE r.user_id = ? AND r.key = usage_staging.key)",
        )
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        // A request whose hash this user sent before (in an earlier import, or earlier in
        // this chunk) is a repeat.
        sqlx::query(
            "UPDATE temp.usage_staging SET repeat_requests = requests WHERE request_hash <> '' AND ( \
             EXISTS (SELECT 1 FROM usage_records r WHERE r.user_id = ? AND r.request_hash = usage_staging.request_hash) \
             OR EXISTS (SELECT 1 FROM temp.usage_staging s WHERE s.request_hash = usage_staging.request_hash \
             AND s.rowid < usage_staging.rowid))",
        )
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        inserted += sqlx::query(
            "INSERT INTO usage_records (user_id, key, day, provider, model, feature, project, end_user, api_key, \
             environment, requests, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, \
             reasoning_tokens, cost_micros, request_hash, repeat_requests, imported_at) \
             SELECT ?, key, day, provider, model, feature, project, end_user, api_key, environment, requests, \
             input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_micros, \
             request_hash, repeat_requests, ? FROM temp.usage_staging",
        )
        .bind(user_id)
        .bind(at_ms as i64)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO usage_daily (user_id, day, provider, model, feature, project, end_user, api_key, environment, \
             billed, requests, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, \
             repeat_requests, cost_micros) \
             SELECT ?, day, provider, model, feature, project, end_user, api_key, environment, cost_micros IS NOT NULL, \
             SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), \
             SUM(reasoning_tokens), SUM(repeat_requests), COALESCE(SUM(cost_micros), 0) FROM temp.usage_staging \
             GROUP BY day, provider, model, feature, project, end_user, api_key, environment, cost_micros IS NOT NULL \
             ON CONFLICT (user_id, day, provider, model, feature, project, end_user, api_key, environment, billed) \
             DO UPDATE SET \
             requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, \
             output_tokens = output_tokens + excluded.output_tokens, \
             cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, \
             cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
             reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
             repeat_requests = repeat_requests + excluded.repeat_requests, \
             cost_micros = cost_micros + excluded.cost_micros",
        )
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM temp.usage_staging").execute(&mut **tx).await?;
    }
    Ok(inserted)
}

pub(super) async fn apply(tx: &mut Transaction<'_, Sqlite>, batch: &[Write]) -> StoreResult<()> {
    let mut events = Vec::new();
    let mut results = Vec::new();
    let mut started = Vec::new();
    let mut finished = Vec::new();
    for write in batch {
        match write {
            Write::Event { .. } => events.push(write),
            Write::AgentResult { .. } => results.push(write),
            Write::RunStarted { .. } => started.push(write),
            Write::Finish(f) => finished.push(f),
        }
    }
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        // Replays of the same event (a retried batch) are harmless.
        let mut q = QueryBuilder::<Sqlite>::new("INSERT OR IGNORE INTO run_events (run_id, seq, type, payload) ");
        q.push_values(chunk, |mut row, w| {
            if let Write::Event { run_id, seq, kind, json } = w {
                row.push_bind(run_id.to_string()).push_bind(*seq as i64).push_bind(*kind).push_bind(&**json);
            }
        });
        q.build().execute(&mut **tx).await?;
    }
    for chunk in results.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT OR REPLACE INTO agent_results (run_id, agent, output, duration_ms) ");
        q.push_values(chunk, |mut row, w| {
            if let Write::AgentResult { run_id, agent, output, duration_ms } = w {
                row.push_bind(run_id.to_string()).push_bind(*agent).push_bind(output.as_str()).push_bind(*duration_ms as i64);
            }
        });
        q.build().execute(&mut **tx).await?;
    }
    for chunk in started.chunks(ROWS_PER_STATEMENT) {
        // A run that already finished (its Finish came first) stays finished.
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE runs SET status = 'running', started_at = CASE id ");
        for w in chunk {
            if let Write::RunStarted { run_id, at_ms } = w {
                q.push(" WHEN ").push_bind(run_id.to_string()).push(" THEN ").push_bind(*at_ms as i64);
            }
        }
        q.push(" END WHERE status = 'queued' AND id IN (");
        let mut ids = q.separated(", ");
        for w in chunk {
            if let Write::RunStarted { run_id, .. } = w {
                ids.push_bind(run_id.to_string());
            }
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    if !finished.is_empty() {
        finish_runs(tx, &finished).await?;
    }
    Ok(())
}

async fn finish_runs(tx: &mut Transaction<'_, Sqlite>, finished: &[&RunFinish]) -> StoreResult<()> {
    for chunk in finished.chunks(ROWS_PER_STATEMENT / 2) {
        // One statement for all the runs that end in this batch.
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE runs SET status = v.column2, finished_at = v.column3, \
             started_at = COALESCE(runs.started_at, v.column3), error_code = v.column4, error_message = v.column5 \
             FROM (",
        );
        q.push_values(chunk, |mut row, f| {
            let (code, message) = f.error.clone().unzip();
            row.push_bind(f.run_id.to_string())
                .push_bind(f.status.as_str())
                .push_bind(f.at_ms as i64)
                .push_bind(code)
                .push_bind(message);
        });
        q.push(") AS v WHERE runs.id = v.column1");
        q.build().execute(&mut **tx).await?;
    }
    let answers: Vec<&&RunFinish> = finished.iter().filter(|f| !f.text.is_empty()).collect();
    for chunk in answers.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO messages (id, thread_id, user_id, run_id, role, content, created_at) ",
        );
        q.push_values(chunk, |mut row, f| {
            row.push_bind(f.message_id.to_string())
                .push_bind(f.thread_id.to_string())
                .push_bind(f.user_id.as_str())
                .push_bind(f.run_id.to_string())
                .push_bind("assistant")
                .push_bind(f.text.as_str())
                .push_bind(f.at_ms as i64);
        });
        q.build().execute(&mut **tx).await?;
    }
    for chunk in finished.chunks(ROWS_PER_STATEMENT) {
        let latest = chunk.iter().map(|f| f.at_ms).max().unwrap_or(0);
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE threads SET updated_at = MAX(updated_at, ");
        q.push_bind(latest as i64).push(") WHERE id IN (");
        let mut ids = q.separated(", ");
        for f in chunk {
            ids.push_bind(f.thread_id.to_string());
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

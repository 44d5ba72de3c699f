//! Applying a batch of writes in a handful of statements: the rows of one kind are bound
//! as one array per column and expanded with `UNNEST`, so a batch costs a statement per
//! table whatever its size, and the parameter count stays fixed.
use std::collections::{HashMap, HashSet};

use apex_costs::import::ImportRow;
use apex_protocol::{MessageId, RunId, ThreadId};
use sqlx::{Postgres, Row, Transaction};

use super::parse_id;
use crate::model::{decide_begins, title_from, BeginOutcome, BegunRun, NewRun, Place, RunFinish, Write};
use crate::StoreResult;

/// Writes accepted messages and their runs: two lookups (earlier `client_message_id`s and
/// thread owners), then one statement per table. The outcomes follow the same rules as
/// the SQLite backend's.
pub(super) async fn begin(tx: &mut Transaction<'_, Postgres>, begins: &[NewRun]) -> StoreResult<Vec<BeginOutcome>> {
    if begins.is_empty() {
        return Ok(Vec::new());
    }
    let seen = earlier_runs(tx, begins).await?;
    let owners = thread_owners(tx, begins).await?;
    let (outcomes, accepted) = decide_begins(begins, seen, &owners);
    if !accepted.is_empty() {
        insert_accepted(tx, &accepted).await?;
    }
    Ok(outcomes)
}

/// The runs started earlier with the `client_message_id`s of `begins`, by (user, id): one
/// index lookup per pair (`runs_client_id`), whatever the number of runs stored.
async fn earlier_runs(tx: &mut Transaction<'_, Postgres>, begins: &[NewRun]) -> StoreResult<HashMap<(String, String), BegunRun>> {
    let (users, ids): (Vec<&str>, Vec<&str>) =
        begins.iter().filter_map(|b| Some((b.user_id.as_str(), b.client_message_id.as_deref()?))).unzip();
    let mut found = HashMap::new();
    if ids.is_empty() {
        return Ok(found);
    }
    let rows = sqlx::query(
        "SELECT r.user_id, r.client_message_id, r.user_message_id, r.thread_id, r.id \
         FROM UNNEST($1::text[], $2::text[]) AS k(u, c) JOIN runs AS r ON r.user_id = k.u AND r.client_message_id = k.c",
    )
    .bind(&users)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let begun = BegunRun {
            message_id: parse_id::<MessageId>(row.get(2))?,
            thread_id: parse_id::<ThreadId>(row.get(3))?,
            run_id: parse_id::<RunId>(row.get(4))?,
        };
        found.insert((row.get(0), row.get(1)), begun);
    }
    Ok(found)
}

async fn thread_owners(tx: &mut Transaction<'_, Postgres>, begins: &[NewRun]) -> StoreResult<HashMap<ThreadId, String>> {
    let ids: Vec<String> = begins.iter().filter_map(|b| b.thread_id).map(|t| t.to_string()).collect();
    let mut owners = HashMap::new();
    if ids.is_empty() {
        return Ok(owners);
    }
    for row in sqlx::query("SELECT id, user_id FROM threads WHERE id = ANY($1)").bind(&ids).fetch_all(&mut **tx).await? {
        owners.insert(parse_id::<ThreadId>(row.get(0))?, row.get(1));
    }
    Ok(owners)
}

async fn insert_accepted(tx: &mut Transaction<'_, Postgres>, accepted: &[&NewRun]) -> StoreResult<()> {
    let users: Vec<&str> = accepted.iter().map(|b| b.user_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    sqlx::query("INSERT INTO users (id, created_at) SELECT u, $2 FROM UNNEST($1::text[]) AS u ON CONFLICT DO NOTHING")
        .bind(&users)
        .bind(accepted[0].at_ms as i64)
        .execute(&mut **tx)
        .await?;

    let (fresh, existing): (Vec<&&NewRun>, Vec<&&NewRun>) = accepted.iter().partition(|b| b.thread_id.is_none());
    if !fresh.is_empty() {
        sqlx::query(
            "INSERT INTO threads (id, user_id, title, created_at, updated_at) \
             SELECT id, u, t, at, at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v(id, u, t, at)",
        )
        .bind(fresh.iter().map(|b| b.new_thread_id.to_string()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|b| b.user_id.as_str()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|b| title_from(&b.text)).collect::<Vec<_>>())
        .bind(fresh.iter().map(|b| b.at_ms as i64).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !existing.is_empty() {
        let latest = existing.iter().map(|b| b.at_ms).max().unwrap_or(0);
        sqlx::query("UPDATE threads SET updated_at = GREATEST(updated_at, $1) WHERE id = ANY($2)")
            .bind(latest as i64)
            .bind(existing.iter().map(|b| b.thread().to_string()).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
    }

    // A message goes after the one it names, or after its thread's latest (read in this
    // transaction, so nothing can come between); a run answering a message again writes none.
    let messages: Vec<&&NewRun> = accepted.iter().filter(|b| b.place != Place::Again).collect();
    if !messages.is_empty() {
        sqlx::query(
            "INSERT INTO messages (id, thread_id, user_id, run_id, role, content, client_message_id, created_at, parent_id) \
             SELECT id, t, u, r, 'user', c, cid, at, \
             CASE WHEN latest THEN (SELECT p.id FROM messages AS p WHERE p.thread_id = v.t \
             ORDER BY p.created_at DESC, p.id DESC LIMIT 1) ELSE parent END \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], \
             $8::bool[], $9::text[]) AS v(id, t, u, r, c, cid, at, latest, parent)",
        )
        .bind(messages.iter().map(|b| b.message_id.to_string()).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.thread().to_string()).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.user_id.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.run_id.to_string()).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.text.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.client_message_id.as_deref()).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.at_ms as i64).collect::<Vec<_>>())
        .bind(messages.iter().map(|b| b.place == Place::Latest).collect::<Vec<_>>())
        .bind(
            messages
                .iter()
                .map(|b| match b.place {
                    Place::After(parent) => parent.map(|p| p.to_string()),
                    Place::Latest | Place::Again => None,
                })
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }

    sqlx::query(
        "INSERT INTO runs (id, user_id, thread_id, user_message_id, status, created_at, owner, client_message_id) \
         SELECT id, u, t, m, 'queued', at, o, cid \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) \
         AS v(id, u, t, m, at, o, cid)",
    )
    .bind(accepted.iter().map(|b| b.run_id.to_string()).collect::<Vec<_>>())
    .bind(accepted.iter().map(|b| b.user_id.as_str()).collect::<Vec<_>>())
    .bind(accepted.iter().map(|b| b.thread().to_string()).collect::<Vec<_>>())
    .bind(accepted.iter().map(|b| b.message_id.to_string()).collect::<Vec<_>>())
    .bind(accepted.iter().map(|b| b.at_ms as i64).collect::<Vec<_>>())
    .bind(accepted.iter().map(|b| b.owner.as_deref()).collect::<Vec<_>>())
    .bind(accepted.iter().map(|b| b.client_message_id.as_deref()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The import statement: the new rows into `usage_records`, and their sums added to
/// `usage_daily`, `usage_rollup` and `usage_tag_rollup`.
static IMPORT_STATEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH new AS ( \
               INSERT INTO usage_records (user_id, key, day, provider, model, feature, project, end_user, api_key, \
                 environment, requests, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, \
                 reasoning_tokens, cost_micros, request_hash, repeat_requests, imported_at) \
               SELECT $1, *, $20 FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], \
                 $15::bigint[], $16::bigint[], $17::bigint[], $18::text[], $19::bigint[]) \
               ON CONFLICT (user_id, key) DO NOTHING \
               RETURNING day, provider, model, feature, project, end_user, api_key, environment, requests, \
                 input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, \
                 repeat_requests, cost_micros \
             ), daily AS ( \
               INSERT INTO usage_daily (user_id, day, provider, model, feature, project, end_user, api_key, \
                 environment, billed, requests, input_tokens, output_tokens, cached_input_tokens, \
                 cache_write_tokens, reasoning_tokens, repeat_requests, cost_micros) \
               SELECT $1, day, provider, model, feature, project, end_user, api_key, environment, \
                 cost_micros IS NOT NULL, SUM(requests), SUM(input_tokens), SUM(output_tokens), \
                 SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), \
                 COALESCE(SUM(cost_micros), 0) \
               FROM new GROUP BY day, provider, model, feature, project, end_user, api_key, environment, \
                 cost_micros IS NOT NULL \
               ON CONFLICT (user_id, day, provider, model, feature, project, end_user, api_key, environment, billed) \
               DO UPDATE SET \
                 {daily} \
             ), rollup AS ( \
               INSERT INTO usage_rollup (user_id, day, provider, model, feature, project, environment, billed, \
                 requests, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, \
                 repeat_requests, cost_micros) \
               SELECT $1, day, provider, model, feature, project, environment, cost_micros IS NOT NULL, \
                 SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), \
                 SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), COALESCE(SUM(cost_micros), 0) \
               FROM new GROUP BY day, provider, model, feature, project, environment, cost_micros IS NOT NULL \
               ON CONFLICT (user_id, day, provider, model, feature, project, environment, billed) \
               DO UPDATE SET \
                 {rollup} \
             ), tags AS ( \
               INSERT INTO usage_tag_rollup (user_id, dimension, name, day, provider, model, billed, \
                 requests, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, \
                 repeat_requests, cost_micros) \
               SELECT $1, dimension, name, day, provider, model, cost_micros IS NOT NULL, \
                 SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), \
                 SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(repeat_requests), COALESCE(SUM(cost_micros), 0) \
               FROM new CROSS JOIN LATERAL (VALUES ('user', end_user), ('api_key', api_key)) AS tag (dimension, name) \
               GROUP BY dimension, name, day, provider, model, cost_micros IS NOT NULL \
               ON CONFLICT (user_id, dimension, name, day, provider, model, billed) \
               DO UPDATE SET \
                 {tag_rollup} \
             ) SELECT COUNT(*) FROM new",
        daily = added("usage_daily"),
        rollup = added("usage_rollup"),
        tag_rollup = added("usage_tag_rollup"),
    )
});

/// `usage.sum = usage.sum + excluded.sum` for every sum of a usage table.
fn added(table: &str) -> String {
    [
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "repeat_requests",
        "cost_micros",
    ]
    .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
    .join(", ")
}

/// Usage rows per statement.
const USAGE_ROWS_PER_STATEMENT: usize = 5_000;

/// Adds usage rows, skipping keys already stored, and adds the new ones to the daily sums,
/// in one statement per chunk: the rows that were really inserted (`RETURNING`) are the
/// ones summed. A row whose request hash this user sent before (stored, or earlier in
/// `rows`) counts its requests as repeats. Returns how many were new.
pub(super) async fn insert_usage(
    tx: &mut Transaction<'_, Postgres>,
    user_id: &str,
    rows: &[ImportRow],
    at_ms: u64,
) -> StoreResult<u64> {
    let mut inserted = 0u64;
    let mut seen = known_hashes(tx, user_id, rows).await?;
    for chunk in rows.chunks(USAGE_ROWS_PER_STATEMENT) {
        let col = |f: fn(&ImportRow) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
        let num = |f: fn(&ImportRow) -> u64| chunk.iter().map(|r| f(r) as i64).collect::<Vec<i64>>();
        let repeats: Vec<i64> = chunk
            .iter()
            .map(|r| {
                let hash = r.request_hash.as_str();
                let repeat = !hash.is_empty() && !seen.insert(hash.to_owned());
                if repeat {
                    r.record.requests as i64
                } else {
                    0
                }
            })
            .collect();
        let new: i64 = sqlx::query_scalar(IMPORT_STATEMENT.as_str())
            .bind(user_id)
            .bind(col(|r| r.key.as_str()))
            .bind(col(|r| r.record.day.as_str()))
            .bind(col(|r| r.record.provider.as_str()))
            .bind(col(|r| r.record.model.as_str()))
            .bind(col(|r| r.record.feature.as_str()))
            .bind(col(|r| r.record.project.as_str()))
            .bind(col(|r| r.record.user.as_str()))
            .bind(col(|r| r.record.api_key.as_str()))
            .bind(col(|r| r.record.environment.as_str()))
            .bind(num(|r| r.record.requests))
            .bind(num(|r| r.record.input_tokens))
            .bind(num(|r| r.record.output_tokens))
            .bind(num(|r| r.record.cached_input_tokens))
            .bind(num(|r| r.record.cache_write_tokens))
            .bind(num(|r| r.record.reasoning_tokens))
            .bind(chunk.iter().map(|r| r.record.cost.map(|c| c.0)).collect::<Vec<Option<i64>>>())
            .bind(col(|r| r.request_hash.as_str()))
            .bind(repeats)
            .bind(at_ms as i64)
            .fetch_one(&mut **tx)
            .await?;
        inserted += new as u64;
    }
    Ok(inserted)
}

/// The request hashes among `rows` that this user has already stored.
async fn known_hashes(tx: &mut Transaction<'_, Postgres>, user_id: &str, rows: &[ImportRow]) -> StoreResult<HashSet<String>> {
    let hashes: Vec<&str> =
        rows.iter().map(|r| r.request_hash.as_str()).filter(|h| !h.is_empty()).collect::<HashSet<_>>().into_iter().collect();
    if hashes.is_empty() {
        return Ok(HashSet::new());
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT request_hash FROM usage_records WHERE user_id = $1 AND request_hash = ANY($2)")
            .bind(user_id)
            .bind(&hashes)
            .fetch_all(&mut **tx)
            .await?;
    Ok(known.into_iter().collect())
}

pub(super) async fn apply(tx: &mut Transaction<'_, Postgres>, batch: &[Write]) -> StoreResult<()> {
    let mut events = Vec::new();
    // By (run, agent), the last one wins, as a replace would (one row per key per statement).
    let mut results = HashMap::new();
    let mut started = Vec::new();
    let mut finished = Vec::new();
    for write in batch {
        match write {
            Write::Event { run_id, seq, kind, json } => events.push((run_id, *seq, *kind, json)),
            Write::AgentResult { run_id, agent, output, duration_ms } => {
                results.insert((run_id, *agent), (output, *duration_ms));
            }
            Write::RunStarted { run_id, at_ms } => started.push((run_id, *at_ms)),
            Write::Finish(f) => finished.push(f),
        }
    }
    if !events.is_empty() {
        // Replays of the same event (a retried batch) are harmless.
        sqlx::query(
            "INSERT INTO run_events (run_id, seq, type, payload) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(events.iter().map(|e| e.0.to_string()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.1 as i64).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.2).collect::<Vec<_>>())
        .bind(events.iter().map(|e| &**e.3).collect::<Vec<&str>>())
        .execute(&mut **tx)
        .await?;
    }
    if !results.is_empty() {
        // Sorted, so that concurrent batches take row locks in the same order.
        let mut results: Vec<_> = results.into_iter().collect();
        results.sort_by_key(|((run, agent), _)| (run.to_string(), *agent));
        sqlx::query(
            "INSERT INTO agent_results (run_id, agent, output, duration_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
             ON CONFLICT (run_id, agent) DO UPDATE SET output = excluded.output, duration_ms = excluded.duration_ms",
        )
        .bind(results.iter().map(|((run, _), _)| run.to_string()).collect::<Vec<_>>())
        .bind(results.iter().map(|((_, agent), _)| *agent).collect::<Vec<_>>())
        .bind(results.iter().map(|(_, (output, _))| output.as_str()).collect::<Vec<_>>())
        .bind(results.iter().map(|(_, (_, ms))| *ms as i64).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !started.is_empty() {
        // A run that already finished (its Finish came first) stays finished.
        sqlx::query(
            "UPDATE runs SET status = 'running', started_at = v.at \
             FROM UNNEST($1::text[], $2::bigint[]) AS v(id, at) WHERE runs.id = v.id AND runs.status = 'queued'",
        )
        .bind(started.iter().map(|s| s.0.to_string()).collect::<Vec<_>>())
        .bind(started.iter().map(|s| s.1 as i64).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !finished.is_empty() {
        finish_runs(tx, &finished).await?;
    }
    Ok(())
}

async fn finish_runs(tx: &mut Transaction<'_, Postgres>, finished: &[&RunFinish]) -> StoreResult<()> {
    sqlx::query(
        "UPDATE runs SET status = v.status, finished_at = v.at, started_at = COALESCE(runs.started_at, v.at), \
         error_code = v.code, error_message = v.message \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS v(id, status, at, code, message) \
         WHERE runs.id = v.id",
    )
    .bind(finished.iter().map(|f| f.run_id.to_string()).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.status.as_str()).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.at_ms as i64).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.error.as_ref().map(|e| e.0.as_str())).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.error.as_ref().map(|e| e.1.as_str())).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    let answers: Vec<&&RunFinish> = finished.iter().filter(|f| !f.text.is_empty()).collect();
    if !answers.is_empty() {
        sqlx::query(
            "INSERT INTO messages (id, thread_id, user_id, run_id, role, content, created_at, parent_id) \
             SELECT id, t, u, r, 'assistant', c, at, (SELECT runs.user_message_id FROM runs WHERE runs.id = v.r) \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS v(id, t, u, r, c, at) \
             ON CONFLICT DO NOTHING",
        )
        .bind(answers.iter().map(|f| f.message_id.to_string()).collect::<Vec<_>>())
        .bind(answers.iter().map(|f| f.thread_id.to_string()).collect::<Vec<_>>())
        .bind(answers.iter().map(|f| f.user_id.as_str()).collect::<Vec<_>>())
        .bind(answers.iter().map(|f| f.run_id.to_string()).collect::<Vec<_>>())
        .bind(answers.iter().map(|f| f.text.as_str()).collect::<Vec<_>>())
        .bind(answers.iter().map(|f| f.at_ms as i64).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    let latest = finished.iter().map(|f| f.at_ms).max().unwrap_or(0);
    let mut threads: Vec<String> = finished.iter().map(|f| f.thread_id.to_string()).collect();
    threads.sort_unstable();
    threads.dedup();
    sqlx::query("UPDATE threads SET updated_at = GREATEST(updated_at, $1) WHERE id = ANY($2)")
        .bind(latest as i64)
        .bind(threads)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

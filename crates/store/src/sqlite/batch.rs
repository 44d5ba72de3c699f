//! Applying a batch of writes with as few statements as possible. Every statement is a
//! round trip to SQLite's worker thread, so rows of one kind go into one multi-row
//! statement per batch; only the end of a run needs a statement of its own.
use std::collections::{HashMap, HashSet};

use apex_costs::import::ImportRow;
use apex_protocol::{MessageId, RunId, ThreadId};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::parse_id;
use crate::model::{decide_begins, title_from, BeginOutcome, BegunRun, NewRun, Place, RunFinish, Write};
use crate::StoreResult;

/// Rows per multi-row statement (a begin statement takes half as many, of at most 9
/// parameters each: all far below SQLite's limit of 32,766 parameters).
const ROWS_PER_STATEMENT: usize = 512;

/// Writes accepted messages and their runs: two lookups (earlier `client_message_id`s and
/// thread owners), then one multi-row statement per table.
pub(super) async fn begin(tx: &mut Transaction<'_, Sqlite>, begins: &[NewRun]) -> StoreResult<Vec<BeginOutcome>> {
    if begins.is_empty() {
        return Ok(Vec::new());
    }
    let seen = earlier_runs(tx, begins).await?;
    let owners = thread_owners(tx, begins).await?;
    let (outcomes, accepted) = decide_begins(begins, seen, &owners);
    for chunk in accepted.chunks(ROWS_PER_STATEMENT / 2) {
        insert_accepted(tx, chunk).await?;
    }
    Ok(outcomes)
}

/// The runs started earlier with the `client_message_id`s of `begins`, by (user, id): one
/// index lookup per pair (`runs_client_id`), whatever the number of runs stored.
async fn earlier_runs(tx: &mut Transaction<'_, Sqlite>, begins: &[NewRun]) -> StoreResult<HashMap<(String, String), BegunRun>> {
    let keys: Vec<(&str, &str)> =
        begins.iter().filter_map(|b| Some((b.user_id.as_str(), b.client_message_id.as_deref()?))).collect();
    let mut found = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT r.user_id, r.client_message_id, r.user_message_id, r.thread_id, r.id FROM (");
        q.push_values(chunk, |mut row, (user, id)| {
            row.push_bind(*user).push_bind(*id);
        });
        q.push(") AS k JOIN runs AS r ON r.user_id = k.column1 AND r.client_message_id = k.column2");
        for row in q.build().fetch_all(&mut **tx).await? {
            let begun = BegunRun {
                message_id: parse_id::<MessageId>(row.get(2))?,
                thread_id: parse_id::<ThreadId>(row.get(3))?,
                run_id: parse_id::<RunId>(row.get(4))?,
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

    // A message goes after the one it names, or after its thread's latest (read in this
    // transaction, so nothing can come between); a run answering a message again writes none.
    let messages: Vec<&&NewRun> = accepted.iter().filter(|b| b.place != Place::Again).collect();
    if !messages.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (id, thread_id, user_id, run_id, role, content, client_message_id, created_at, parent_id) \
             SELECT v.column1, v.column2, v.column3, v.column4, 'user', v.column5, v.column6, v.column7, \
             CASE WHEN v.column8 THEN (SELECT p.id FROM messages AS p WHERE p.thread_id = v.column2 \
             ORDER BY p.created_at DESC, p.id DESC LIMIT 1) ELSE v.column9 END FROM (",
        );
        q.push_values(&messages, |mut row, b| {
            let parent = match b.place {
                Place::After(parent) => parent.map(|p| p.to_string()),
                Place::Latest | Place::Again => None,
            };
            row.push_bind(b.message_id.to_string())
                .push_bind(b.thread().to_string())
                .push_bind(b.user_id.as_str())
                .push_bind(b.run_id.to_string())
                .push_bind(b.text.as_str())
                .push_bind(b.client_message_id.as_deref())
                .push_bind(b.at_ms as i64)
                .push_bind(b.place == Place::Latest)
                .push_bind(parent);
        });
        q.push(") AS v");
        q.build().execute(&mut **tx).await?;
    }

    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO runs (id, user_id, thread_id, user_message_id, status, created_at, owner, client_message_id) ",
    );
    q.push_values(accepted, |mut row, b| {
        row.push_bind(b.run_id.to_string())
            .push_bind(b.user_id.as_str())
            .push_bind(b.thread().to_string())
            .push_bind(b.message_id.to_string())
            .push_bind("queued")
            .push_bind(b.at_ms as i64)
            .push_bind(b.owner.as_deref())
            .push_bind(b.client_message_id.as_deref());
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Adds usage rows, skipping keys already stored, and adds the new ones to the daily
/// sums; returns how many were new.
///
/// The work is split by what each side does cheaply. Here, by sorting: deduplicating the
/// chunk's keys, finding repeats, summing per day. In SQLite: inserting the new rows and
/// adding to the sums, in a few large statements, each built while the one before runs.
/// (Staging the rows in a temporary table and summing them there with a `GROUP BY` over
/// nine text columns was most of an import's time.)
///
/// Which rows are new is found out with as few lookups as possible. When no row carries a
/// request hash, nothing but the sums depends on it: the rows are inserted as if all were
/// new, which a fresh import's are (or none, as when a file is imported again), and only
/// when some turn out to be there already is that undone, to a savepoint, and redone
/// knowing which.
pub(super) async fn insert_usage(
    tx: &mut Transaction<'_, Sqlite>,
    user_id: &str,
    rows: &[ImportRow],
    at_ms: u64,
) -> StoreResult<u64> {
    let chunk = Chunk { user_id, at: at_ms as i64, rows };
    // In key order, the inserts walk the table's B-tree from one end to the other. Of a
    // key repeated inside the chunk, the first row counts (a stable sort keeps file order).
    let mut distinct: Vec<usize> = (0..rows.len()).collect();
    distinct.sort_by(|&a, &b| rows[a].key.cmp(&rows[b].key));
    distinct.dedup_by(|later, first| rows[*later].key == rows[*first].key);
    let no_repeats = vec![false; rows.len()];
    if distinct.iter().all(|&i| rows[i].request_hash.is_empty()) {
        // Only the inserts are inside the savepoint: the pages of the daily sums, which
        // every chunk changes, would otherwise be copied to its journal each time.
        sqlx::query("SAVEPOINT usage_chunk").execute(&mut **tx).await?;
        let (inserted, sums) = chunk.insert(tx, &distinct, &no_repeats).await?;
        let settled = inserted == distinct.len() as u64 || inserted == 0;
        if !settled {
            sqlx::query("ROLLBACK TO usage_chunk").execute(&mut **tx).await?;
        }
        sqlx::query("RELEASE usage_chunk").execute(&mut **tx).await?;
        if settled {
            if inserted > 0 {
                chunk.add_daily_sums(tx, &sums).await?;
            }
            return Ok(inserted);
        }
    }
    let new = chunk.not_stored(tx, distinct).await?;
    let repeats = if new.iter().any(|&i| !rows[i].request_hash.is_empty()) { chunk.repeats(tx, &new).await? } else { no_repeats };
    let (inserted, sums) = chunk.insert(tx, &new, &repeats).await?;
    chunk.add_daily_sums(tx, &sums).await?;
    Ok(inserted)
}

/// One call's rows, for the user, imported at `at`.
struct Chunk<'a> {
    user_id: &'a str,
    at: i64,
    rows: &'a [ImportRow],
}

impl<'a> Chunk<'a> {
    /// Inserts `rows[i]` for each `i` of `new` (in key order), with `repeats[i]` saying
    /// whether it repeats a request, unless its key is there already. Returns how many
    /// were inserted, and the daily sums of `new`, summed while the last insert runs.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        new: &[usize],
        repeats: &[bool],
    ) -> StoreResult<(u64, Vec<(DailyKey<'a>, DailySums)>)> {
        let mut sums = Vec::new();
        let inserts = pieces(new).map(|piece| self.insert_records(piece, repeats)).chain(std::iter::from_fn(|| {
            sums = self.daily_sums(new, repeats);
            None
        }));
        let inserted = execute_pipelined(tx, inserts).await?;
        Ok((inserted, sums))
    }

    async fn add_daily_sums(&self, tx: &mut Transaction<'_, Sqlite>, sums: &[(DailyKey<'a>, DailySums)]) -> StoreResult<()> {
        execute_pipelined(tx, pieces(sums).map(|piece| self.upsert_daily(piece))).await?;
        Ok(())
    }

    fn insert_records(&self, piece: &[usize], repeats: &[bool]) -> Query<'a> {
        let narrow = piece.iter().all(|&i| {
            let (r, u) = (&self.rows[i], &self.rows[i].record);
            r.request_hash.is_empty()
                && u.user.is_empty()
                && u.api_key.is_empty()
                && u.environment.is_empty()
                && u.cache_write_tokens == 0
                && u.reasoning_tokens == 0
        });
        let sql = if narrow { &INSERT_RECORDS_NARROW } else { &INSERT_RECORDS };
        let mut q = sqlx::query(statement(sql, piece.len())).bind(self.user_id).bind(self.at);
        for &i in piece {
            let (r, u) = (&self.rows[i], &self.rows[i].record);
            q = q
                .bind(r.key.as_str())
                .bind(u.day.as_str())
                .bind(u.provider.as_str())
                .bind(u.model.as_str())
                .bind(u.feature.as_str())
                .bind(u.project.as_str())
                .bind(u.requests as i64)
                .bind(u.input_tokens as i64)
                .bind(u.output_tokens as i64)
                .bind(u.cached_input_tokens as i64)
                .bind(u.cost.map(|c| c.0));
            if !narrow {
                q = q
                    .bind(or_null(&u.user))
                    .bind(or_null(&u.api_key))
                    .bind(or_null(&u.environment))
                    .bind(u.cache_write_tokens as i64)
                    .bind(u.reasoning_tokens as i64)
                    .bind(or_null(&r.request_hash))
                    .bind(if repeats[i] { u.requests as i64 } else { 0 });
            }
        }
        q
    }

    /// The sums of `new` per group, in key order (the order of the table's index).
    fn daily_sums(&self, new: &[usize], repeats: &[bool]) -> Vec<(DailyKey<'a>, DailySums)> {
        let mut by_key: Vec<(DailyKey<'a>, usize)> = new.iter().map(|&i| (daily_key(&self.rows[i]), i)).collect();
        by_key.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<(DailyKey<'a>, DailySums)> = Vec::new();
        for (key, i) in by_key {
            let u = &self.rows[i].record;
            let add = [
                u.requests as i64,
                u.input_tokens as i64,
                u.output_tokens as i64,
                u.cached_input_tokens as i64,
                u.cache_write_tokens as i64,
                u.reasoning_tokens as i64,
                if repeats[i] { u.requests as i64 } else { 0 },
                u.cost.map_or(0, |c| c.0),
            ];
            match groups.last_mut() {
                // Sums past 2^63 tokens mean nothing; they stop there rather than wrap.
                Some((last, sums)) if *last == key => sums.iter_mut().zip(add).for_each(|(sum, n)| *sum = sum.saturating_add(n)),
                _ => groups.push((key, add)),
            }
        }
        groups
    }

    fn upsert_daily(&self, piece: &[(DailyKey<'a>, DailySums)]) -> Query<'a> {
        let narrow = piece.iter().all(|((.., end_user, api_key, environment, _), sums)| {
            end_user.is_empty() && api_key.is_empty() && environment.is_empty() && sums[4..7] == [0, 0, 0]
        });
        let sql = if narrow { &UPSERT_DAILY_NARROW } else { &UPSERT_DAILY };
        let mut q = sqlx::query(statement(sql, piece.len())).bind(self.user_id);
        for ((day, provider, model, feature, project, end_user, api_key, environment, billed), sums) in piece {
            q = q.bind(*day).bind(*provider).bind(*model).bind(*feature).bind(*project).bind(*billed);
            for n in [sums[0], sums[1], sums[2], sums[3], sums[7]] {
                q = q.bind(n);
            }
            if !narrow {
                q = q.bind(or_null(end_user)).bind(or_null(api_key)).bind(or_null(environment));
                for n in &sums[4..7] {
                    q = q.bind(*n);
                }
            }
        }
        q
    }

    /// Those of `rows` (indexes) whose key this user does not have yet, in the same order.
    async fn not_stored(&self, tx: &mut Transaction<'_, Sqlite>, rows: Vec<usize>) -> StoreResult<Vec<usize>> {
        let mut stored: HashSet<String> = HashSet::new();
        for piece in pieces(&rows) {
            let mut q = sqlx::query_scalar(statement(&SELECT_KEYS, piece.len())).bind(self.user_id);
            for &i in piece {
                q = q.bind(self.rows[i].key.as_str());
            }
            stored.extend(q.fetch_all(&mut **tx).await?);
        }
        Ok(rows.into_iter().filter(|&i| !stored.contains(self.rows[i].key.as_str())).collect())
    }

    /// For every row of the chunk, whether it repeats a request: a new row whose hash this
    /// user sent before, in an earlier import or in a new row earlier in the file.
    async fn repeats(&self, tx: &mut Transaction<'_, Sqlite>, new: &[usize]) -> StoreResult<Vec<bool>> {
        let mut in_file_order = new.to_vec();
        in_file_order.sort_unstable();
        let hashes: Vec<&str> =
            in_file_order.iter().map(|&i| self.rows[i].request_hash.as_str()).filter(|h| !h.is_empty()).collect();
        let mut sent: HashSet<String> = HashSet::new();
        for piece in pieces(&hashes) {
            let mut q = sqlx::query_scalar(statement(&SELECT_HASHES, piece.len())).bind(self.user_id);
            for h in piece {
                q = q.bind(*h);
            }
            sent.extend(q.fetch_all(&mut **tx).await?);
        }
        let mut repeats = vec![false; self.rows.len()];
        for i in in_file_order {
            let hash = self.rows[i].request_hash.as_str();
            repeats[i] = !hash.is_empty() && (sent.contains(hash) || !sent.insert(hash.to_owned()));
        }
        Ok(repeats)
    }
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Runs `statements` in order, each built while SQLite's worker thread runs the one
/// before it (binding a large statement's values costs about as much as running it);
/// returns the number of rows they changed.
async fn execute_pipelined<'q>(
    conn: &mut sqlx::SqliteConnection,
    mut statements: impl Iterator<Item = Query<'q>>,
) -> StoreResult<u64> {
    use std::future::Future as _;
    use std::task::Poll;
    let mut changed = 0;
    let mut next = statements.next();
    while let Some(q) = next {
        let mut running = std::pin::pin!(q.execute(&mut *conn));
        // Polled once, the statement is handed over to the worker thread.
        let mut done = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = running.as_mut().poll(cx) {
                done = Some(result);
            }
            Poll::Ready(())
        })
        .await;
        next = statements.next();
        let result = match done {
            Some(result) => result,
            None => running.await,
        };
        changed += result?.rows_affected();
    }
    Ok(changed)
}

/// `None` for an empty text: binding NULL (made `''` again by the statement) costs no
/// copy, and most tags are empty in most exports.
fn or_null(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// What a group of the daily sums is keyed by (besides the user): day, provider, model,
/// feature, project, end user, API key, environment, and whether the rows were billed.
type DailyKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, bool);

fn daily_key(r: &ImportRow) -> DailyKey<'_> {
    let u = &r.record;
    (
        u.day.as_str(),
        u.provider.as_str(),
        u.model.as_str(),
        u.feature.as_str(),
        u.project.as_str(),
        u.user.as_str(),
        u.api_key.as_str(),
        u.environment.as_str(),
        u.cost.is_some(),
    )
}

/// Requests, input, output, cached input, cache-write, reasoning tokens, repeated
/// requests and micro-dollars, in the columns' order.
type DailySums = [i64; 8];

/// The sizes of the usage statements, in rows: every statement has one of these, so that
/// each is prepared once per connection and then found in its statement cache, whatever
/// the number of rows. 256 rows of at most 18 values: large enough that a statement's
/// round trip to the worker thread is nothing next to its work, small enough that the
/// prepared statements stay small (larger ones were no faster).
const SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` cut into pieces of the sizes above, largest first.
fn pieces<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = SIZES.into_iter().find(|&s| s <= items.len())?;
        let (piece, rest) = items.split_at(size);
        items = rest;
        Some(piece)
    })
}

/// A statement of one of the sizes: `prefix`, then the rows' parameters (`width` each;
/// parenthesized when `tuples`), then `suffix`. Parameters are plain `?`s (bound in
/// order): with numbered ones, binding costs a search through all the names for each.
struct Sized {
    prefix: &'static str,
    width: usize,
    tuples: bool,
    suffix: &'static str,
    text: std::sync::OnceLock<Vec<String>>,
}

fn statement(s: &'static Sized, rows: usize) -> &'static str {
    let texts = s.text.get_or_init(|| {
        let row = vec!["?"; s.width].join(", ");
        let row = if s.tuples { format!("({row})") } else { row };
        SIZES.iter().map(|&n| [s.prefix, &vec![row.as_str(); n].join(", "), s.suffix].concat()).collect()
    });
    &texts[SIZES.iter().position(|&n| n == rows).expect("a piece has one of the sizes")]
}

/// The user and the import's time are bound once per statement; the `VALUES` columns
/// are the rest, in order (`column1` …). Pieces whose rows carry no tags, request hash or
/// cache-write and reasoning tokens use the narrow form, leaving those columns to their
/// defaults: fewer values to bind, which is much of an insert's cost.
static INSERT_RECORDS: Sized = Sized {
    prefix: "INSERT INTO usage_records (user_id, imported_at, key, day, provider, model, feature, project, requests, \
             input_tokens, output_tokens, cached_input_tokens, cost_micros, end_user, api_key, environment, \
             cache_write_tokens, reasoning_tokens, request_hash, repeat_requests) \
             SELECT ?, ?, column1, column2, column3, column4, column5, column6, column7, column8, column9, column10, \
             column11, coalesce(column12, ''), coalesce(column13, ''), coalesce(column14, ''), column15, column16, \
             coalesce(column17, ''), column18 FROM (VALUES ",
    width: 18,
    tuples: true,
    suffix: ") WHERE true ON CONFLICT DO NOTHING",
    text: std::sync::OnceLock::new(),
};

static INSERT_RECORDS_NARROW: Sized = Sized {
    prefix: "INSERT INTO usage_records (user_id, imported_at, key, day, provider, model, feature, project, requests, \
             input_tokens, output_tokens, cached_input_tokens, cost_micros) \
             SELECT ?, ?, column1, column2, column3, column4, column5, column6, column7, column8, column9, column10, \
             column11 FROM (VALUES ",
    width: 11,
    tuples: true,
    suffix: ") WHERE true ON CONFLICT DO NOTHING",
    text: std::sync::OnceLock::new(),
};

static SELECT_KEYS: Sized = Sized {
    prefix: "SELECT key FROM usage_records WHERE user_id = ? AND key IN (",
    width: 1,
    tuples: false,
    suffix: ")",
    text: std::sync::OnceLock::new(),
};

static SELECT_HASHES: Sized = Sized {
    prefix: "SELECT DISTINCT request_hash FROM usage_records \
             WHERE user_id = ? AND request_hash <> '' AND request_hash IN (",
    width: 1,
    tuples: false,
    suffix: ")",
    text: std::sync::OnceLock::new(),
};

/// An upsert into the daily sums: the first eleven value columns are always bound; `$rest`
/// gives the last six (bound columns, or constants in the narrow form).
macro_rules! upsert_daily {
    ($rest:literal, $width:expr) => {
        Sized {
            prefix: concat!(
                "INSERT INTO usage_daily (user_id, day, provider, model, feature, project, billed, requests, \
                 input_tokens, output_tokens, cached_input_tokens, cost_micros, end_user, api_key, environment, \
                 cache_write_tokens, reasoning_tokens, repeat_requests) \
                 SELECT ?, column1, column2, column3, column4, column5, column6, column7, column8, column9, \
                 column10, column11, ",
                $rest,
                " FROM (VALUES "
            ),
            width: $width,
            tuples: true,
            suffix: DAILY_CONFLICT,
            text: std::sync::OnceLock::new(),
        }
    };
}

/// Adding to the daily sums.
static UPSERT_DAILY: Sized =
    upsert_daily!("coalesce(column12, ''), coalesce(column13, ''), coalesce(column14, ''), column15, column16, column17", 17);

/// The narrow form, for groups without tags, cache-write and reasoning tokens or repeats.
static UPSERT_DAILY_NARROW: Sized = upsert_daily!("'', '', '', 0, 0, 0", 11);

const DAILY_CONFLICT: &str = ") WHERE true \
    ON CONFLICT (user_id, day, provider, model, feature, project, end_user, api_key, environment, billed) \
    DO UPDATE SET \
    requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, \
    output_tokens = output_tokens + excluded.output_tokens, \
    cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, \
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
    repeat_requests = repeat_requests + excluded.repeat_requests, \
    cost_micros = cost_micros + excluded.cost_micros";

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
        // An answer follows the message its run answers.
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO messages (id, thread_id, user_id, run_id, role, content, created_at, parent_id) \
             SELECT v.column1, v.column2, v.column3, v.column4, 'assistant', v.column5, v.column6, \
             (SELECT r.user_message_id FROM runs AS r WHERE r.id = v.column4) FROM (",
        );
        q.push_values(chunk, |mut row, f| {
            row.push_bind(f.message_id.to_string())
                .push_bind(f.thread_id.to_string())
                .push_bind(f.user_id.as_str())
                .push_bind(f.run_id.to_string())
                .push_bind(f.text.as_str())
                .push_bind(f.at_ms as i64);
        });
        q.push(") AS v");
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

//! The store contract: every case runs against a real SQLite file and a real PostgreSQL
//! (a schema of its own in the test database), through `dyn Store`.
use std::sync::Arc;

use apex_costs::import::ImportRow;
use apex_costs::{Money, UsageRecord};
use apex_protocol::{AgentName, EventKind, MessageId, RunEvent, RunId, ThreadId};
use apex_store::{branch_to, BeginOutcome, NewRun, Place, RunFinish, RunStatus, Store, StoreError, Write};

/// A database that outlives the stores opened on it (a restart opens a second one).
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(apex_store::testing::TempSchema),
}

impl Db {
    async fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Self {
        Self::Postgres(apex_store::testing::TempSchema::create().await)
    }

    async fn open(&self) -> Arc<dyn Store> {
        let url = match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("apex.db").display()),
            Self::Postgres(schema) => schema.url.clone(),
        };
        apex_store::connect(&url).await.unwrap()
    }
}

/// Each case once per backend: `sqlite::case` and `postgres::case`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $case() { super::$case(super::Db::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $case() { super::$case(super::Db::postgres().await).await } )*
        }
    };
}

on_every_backend!(
    a_batch_of_begins_creates_threads_messages_and_runs,
    client_message_ids_dedupe_per_user_even_within_one_batch,
    another_users_thread_is_not_found_and_the_rest_of_the_batch_lands,
    events_results_and_the_end_of_a_run_read_back,
    unfinished_runs_are_interrupted_with_open_calls_closed_and_partial_text_kept,
    usage_imports_dedupe_by_key_sum_per_day_and_stay_with_their_user,
    usage_totals_are_summed_by_the_database_as_the_reference_sums_the_rows,
    runs_of_live_instances_are_left_alone_and_those_of_lost_ones_are_taken_over,
    accounts_the_first_is_admin_names_are_unique_and_wrong_passwords_lock,
    sessions_rotate_their_refresh_token_and_a_replayed_one_ends_the_session,
    invitations_are_used_once_before_they_expire,
    deleting_a_user_removes_its_threads_runs_and_account_and_keeps_its_revocations,
    a_thread_branches_on_an_edit_and_a_regenerate_and_keeps_every_branch,
    organizations_share_usage_among_members_keep_an_admin_and_outlive_a_leaver,
    a_thread_is_shared_with_one_organization_of_its_owner_until_she_leaves,
);

const LEASE: std::time::Duration = std::time::Duration::from_secs(10);

fn new_run(user: &str, thread: Option<ThreadId>, text: &str, cid: Option<&str>) -> NewRun {
    NewRun::new(&user.into(), thread, text.into(), cid.map(Into::into), 1_000)
}

fn begun(outcome: &BeginOutcome) -> &apex_store::BegunRun {
    match outcome {
        BeginOutcome::Begun(b) => b,
        other => panic!("expected Begun, got {other:?}"),
    }
}

fn event(run_id: RunId, thread_id: ThreadId, seq: u64, kind: EventKind) -> Write {
    let e = RunEvent { kind, run_id, thread_id, seq, ts: 5 };
    Write::Event { run_id, seq, kind: e.kind.type_name(), json: serde_json::to_string(&e).unwrap().into() }
}

async fn a_batch_of_begins_creates_threads_messages_and_runs(db: Db) {
    let store = db.open().await;
    let first = new_run("ann", None, "  Analyze my\n AI costs  ", Some("c1"));
    let second = new_run("bob", None, &"long title ".repeat(20), None);
    let outcomes = store.apply(&[first.clone(), second.clone()], &[]).await.unwrap();
    let a = begun(&outcomes[0]).clone();
    assert_eq!(a.thread_id, first.new_thread_id);
    begun(&outcomes[1]);

    let threads = store.list_threads(&"ann".into()).await.unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].title, "Analyze my");
    let long = &store.list_threads(&"bob".into()).await.unwrap()[0].title;
    assert!(long.chars().count() <= apex_store::TITLE_CHARS && long.ends_with('…'), "{long}");

    let messages = store.thread_messages(&"ann".into(), a.thread_id).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "  Analyze my\n AI costs  ", "stored verbatim");
    assert_eq!(messages[0].run_id, Some(a.run_id));
    let run = store.get_run(&"ann".into(), a.run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.user_message_id, a.message_id);
}

async fn client_message_ids_dedupe_per_user_even_within_one_batch(db: Db) {
    let store = db.open().await;
    let original = new_run("ann", None, "hi", Some("same"));
    let resent_same_batch = new_run("ann", None, "hi", Some("same"));
    let other_user = new_run("bob", None, "hi", Some("same"));
    let out = store.apply(&[original, resent_same_batch, other_user], &[]).await.unwrap();
    let first = begun(&out[0]).clone();
    assert_eq!(out[1], BeginOutcome::Duplicate(first.clone()));
    begun(&out[2]); // another user's id space

    let later = store.begin_run(new_run("ann", None, "hi again", Some("same"))).await.unwrap();
    assert_eq!(later, BeginOutcome::Duplicate(first.clone()));
    assert_eq!(store.find_client_message(&"ann".into(), "same").await.unwrap(), Some(first));
    assert_eq!(store.find_client_message(&"carl".into(), "same").await.unwrap(), None);
    assert_eq!(store.list_threads(&"ann".into()).await.unwrap().len(), 1, "nothing new was written");
}

async fn another_users_thread_is_not_found_and_the_rest_of_the_batch_lands(db: Db) {
    let store = db.open().await;
    let ann = begun(&store.begin_run(new_run("ann", None, "mine", None)).await.unwrap()).clone();
    let out = store
        .apply(
            &[new_run("eve", Some(ann.thread_id), "let me in", None), new_run("ann", Some(ann.thread_id), "follow-up", None)],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(out[0], BeginOutcome::ThreadNotFound);
    assert_eq!(begun(&out[1]).thread_id, ann.thread_id);
    assert_eq!(store.thread_messages(&"ann".into(), ann.thread_id).await.unwrap().len(), 2);
    assert!(matches!(store.thread_messages(&"eve".into(), ann.thread_id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.get_run(&"eve".into(), ann.run_id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.run_events(&"eve".into(), ann.run_id, 0).await, Err(StoreError::NotFound)));
    assert!(store.agent_results(&"eve".into(), ann.run_id).await.unwrap().is_empty());
    assert!(store.list_threads(&"eve".into()).await.unwrap().is_empty());
}

/// Ends a run with an answer, as the engine's writer does.
async fn answer(store: &Arc<dyn Store>, begun: &apex_store::BegunRun, text: &str, at_ms: u64) -> MessageId {
    let message_id = MessageId::new();
    let finish = RunFinish {
        run_id: begun.run_id,
        user_id: "ann".into(),
        thread_id: begun.thread_id,
        status: RunStatus::Completed,
        at_ms,
        error: None,
        message_id,
        text: text.into(),
    };
    store.apply(&[], &[Write::Finish(finish)]).await.unwrap();
    message_id
}

async fn a_thread_branches_on_an_edit_and_a_regenerate_and_keeps_every_branch(db: Db) {
    let store = db.open().await;
    let ann = "ann".into();
    let at = |ms: u64, mut run: NewRun| {
        run.at_ms = ms;
        run
    };
    let q1 = begun(&store.begin_run(at(1_000, new_run("ann", None, "Q1", None))).await.unwrap()).clone();
    let thread = q1.thread_id;
    let a1 = answer(&store, &q1, "A1", 1_100).await;
    let q2 = begun(&store.begin_run(at(1_200, new_run("ann", Some(thread), "Q2", None))).await.unwrap()).clone();
    let a2 = answer(&store, &q2, "A2", 1_300).await;
    // An edit of Q2: a new message after Q2's parent; Q2 and its answer stay.
    let edit = at(1_400, new_run("ann", Some(thread), "Q2 edited", Some("e1"))).placed(Place::After(Some(a1)));
    let q2b = begun(&store.begin_run(edit.clone()).await.unwrap()).clone();
    let a2b = answer(&store, &q2b, "A2b", 1_500).await;
    // An edit of the first message: first in the thread again.
    let q1b = begun(
        &store.begin_run(at(1_600, new_run("ann", Some(thread), "Q1 edited", None)).placed(Place::After(None))).await.unwrap(),
    )
    .clone();
    // A regenerate of Q2b: a run and no message, its answer beside A2b.
    let mut again = at(1_700, new_run("ann", Some(thread), "Q2 edited", Some("r1"))).placed(Place::Again);
    again.message_id = q2b.message_id;
    let r = begun(&store.begin_run(again.clone()).await.unwrap()).clone();
    assert_eq!((r.message_id, r.thread_id), (q2b.message_id, thread));
    assert_eq!(store.begin_run(again).await.unwrap(), BeginOutcome::Duplicate(r.clone()), "a resent regenerate is the same run");
    assert_eq!(store.begin_run(edit).await.unwrap(), BeginOutcome::Duplicate(q2b.clone()), "a resent edit is the same run");
    assert_eq!(store.find_client_message(&ann, "r1").await.unwrap(), Some(r.clone()));
    let a2c = answer(&store, &r, "A2c", 1_800).await;
    // Without a place: after the thread's latest message.
    let q3 = begun(&store.begin_run(at(1_900, new_run("ann", Some(thread), "Q3", None))).await.unwrap()).clone();

    let messages = store.thread_messages(&ann, thread).await.unwrap();
    let parent = |id: MessageId| messages.iter().find(|m| m.id == id).unwrap().parent_id;
    assert_eq!(messages.len(), 9, "every branch kept: {messages:?}");
    assert_eq!(parent(q1.message_id), None);
    assert_eq!(parent(a1), Some(q1.message_id));
    assert_eq!(parent(q2.message_id), Some(a1));
    assert_eq!(parent(a2), Some(q2.message_id));
    assert_eq!(parent(q2b.message_id), Some(a1));
    assert_eq!(parent(a2b), Some(q2b.message_id));
    assert_eq!(parent(q1b.message_id), None);
    assert_eq!(parent(a2c), Some(q2b.message_id), "a regenerated answer follows the same question");
    assert_eq!(parent(q3.message_id), Some(a2c));
    let path: Vec<&str> = branch_to(&messages, q3.message_id).iter().map(|m| m.content.as_str()).collect();
    assert_eq!(path, ["Q1", "A1", "Q2 edited", "A2c", "Q3"]);

    let runs = store.thread_runs(&ann, thread).await.unwrap();
    let answering: Vec<_> = runs.iter().filter(|x| x.user_message_id == q2b.message_id).map(|x| x.id).collect();
    assert_eq!(answering, [q2b.run_id, r.run_id], "both runs of the regenerated question, oldest first");
    assert_eq!(runs.len(), 6);
    assert_eq!(store.get_run(&ann, r.run_id).await.unwrap().user_message_id, q2b.message_id);
    assert!(matches!(store.thread_runs(&"eve".into(), thread).await, Err(StoreError::NotFound)));
}

async fn events_results_and_the_end_of_a_run_read_back(db: Db) {
    let store = db.open().await;
    let b = begun(&store.begin_run(new_run("ann", None, "q", None)).await.unwrap()).clone();
    let (run, thread) = (b.run_id, b.thread_id);
    let answer = MessageId::new();
    let writes = vec![
        Write::RunStarted { run_id: run, at_ms: 2_000 },
        event(run, thread, 1, EventKind::AgentStarted { agent: AgentName::Supervisor }),
        event(run, thread, 2, EventKind::ResponseDelta { message_id: answer, text: "Hello".into() }),
        Write::AgentResult { run_id: run, agent: "report", output: r#"{"text":"Hello"}"#.into(), duration_ms: 3 },
    ];
    store.apply(&[], &writes).await.unwrap();
    assert_eq!(store.get_run(&"ann".into(), run).await.unwrap().status, RunStatus::Running);
    // A retried batch is harmless.
    store.apply(&[], &writes).await.unwrap();
    let finish = RunFinish {
        run_id: run,
        user_id: "ann".into(),
        thread_id: thread,
        status: RunStatus::Completed,
        at_ms: 3_000,
        error: None,
        message_id: answer,
        text: "Hello".into(),
    };
    let terminal =
        event(run, thread, 3, EventKind::FinalResponse { message_id: answer, text: "Hello".into(), suggestions: Vec::new() });
    store.apply(&[], &[Write::Finish(finish), terminal]).await.unwrap();

    let row = store.get_run(&"ann".into(), run).await.unwrap();
    assert_eq!((row.status, row.started_at, row.finished_at, row.last_seq), (RunStatus::Completed, Some(2_000), Some(3_000), 3));
    let events = store.run_events(&"ann".into(), run, 1).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[1].contains(r#""type":"final_response""#));
    let results = store.agent_results(&"ann".into(), run).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].output["text"], "Hello");
    let messages = store.thread_messages(&"ann".into(), thread).await.unwrap();
    assert_eq!(messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["user", "assistant"]);
    assert_eq!(messages[1].id, answer);
}

async fn unfinished_runs_are_interrupted_with_open_calls_closed_and_partial_text_kept(db: Db) {
    let store = db.open().await;
    let b = begun(&store.begin_run(new_run("ann", None, "q", None)).await.unwrap()).clone();
    let done = begun(&store.begin_run(new_run("ann", None, "finished", None)).await.unwrap()).clone();
    let (run, thread) = (b.run_id, b.thread_id);
    let answer = MessageId::new();
    store
        .apply(
            &[],
            &[
                Write::RunStarted { run_id: run, at_ms: 2 },
                event(run, thread, 1, EventKind::AgentStarted { agent: AgentName::Supervisor }),
                event(run, thread, 2, EventKind::ResponseDelta { message_id: answer, text: "Partial ".into() }),
                event(run, thread, 3, EventKind::ResponseDelta { message_id: answer, text: "answer".into() }),
                event(
                    run,
                    thread,
                    4,
                    EventKind::ToolExecuting {
                        agent: AgentName::Report,
                        tool: "forecast_spend".into(),
                        tool_call_id: "call_9".into(),
                        args: serde_json::json!({}),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    let finish_done = RunFinish {
        run_id: done.run_id,
        user_id: "ann".into(),
        thread_id: done.thread_id,
        status: RunStatus::Completed,
        at_ms: 9,
        error: None,
        message_id: MessageId::new(),
        text: "ok".into(),
    };
    store.apply(&[], &[Write::Finish(finish_done)]).await.unwrap();
    drop(store);

    // A new process opens the same database.
    let store = db.open().await;
    let interrupted = store.interrupt_orphaned("next-process", LEASE).await.unwrap();
    assert_eq!(interrupted, vec![run], "only the unfinished run");
    let row = store.get_run(&"ann".into(), run).await.unwrap();
    assert_eq!(row.status, RunStatus::Interrupted);
    assert_eq!(row.error_code.as_deref(), Some("interrupted"));
    let events: Vec<RunEvent> =
        store.run_events(&"ann".into(), run, 0).await.unwrap().iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert!(matches!(&events[4].kind, EventKind::ToolCompleted { tool_call_id, ok: false, .. } if tool_call_id == "call_9"));
    assert_eq!(events[5].kind, EventKind::RunInterrupted { partial_text: "Partial answer".into() });
    let messages = store.thread_messages(&"ann".into(), thread).await.unwrap();
    assert_eq!(messages[1].content, "Partial answer");
    assert_eq!(messages[1].id, answer, "the partial answer keeps the id its deltas used");
    assert!(store.interrupt_orphaned("next-process", LEASE).await.unwrap().is_empty(), "recovery runs once");
}

fn usage_row(key: &str, day: &str, model: &str, input: u64, cost: Option<i64>) -> ImportRow {
    let record = UsageRecord {
        day: day.into(),
        provider: "openai".into(),
        model: model.into(),
        feature: "chat".into(),
        project: "p".into(),
        requests: 1,
        input_tokens: input,
        output_tokens: input / 10,
        cached_input_tokens: 0,
        cost: cost.map(Money),
        ..Default::default()
    };
    ImportRow { record, key: key.into(), request_hash: String::new() }
}

async fn usage_imports_dedupe_by_key_sum_per_day_and_stay_with_their_user(db: Db) {
    let store = db.open().await;
    assert_eq!(store.usage_version(&"ann".into()).await.unwrap(), 0, "never imported");
    let first = [
        usage_row("a", "2026-11-01", "gpt-4o", 1_000, Some(5_000)),
        usage_row("b", "2026-11-01", "gpt-4o", 2_000, Some(7_000)),
        usage_row("b", "2026-11-01", "gpt-4o", 2_000, Some(7_000)), // the same key twice in one chunk
        usage_row("c", "2026-11-02", "gpt-4o", 500, None),
    ];
    assert_eq!(store.import_usage(&"ann".into(), &first, 10).await.unwrap(), 3);
    let v1 = store.usage_version(&"ann".into()).await.unwrap();
    assert!(v1 > 0);
    // Overlapping import: one old key, one new.
    let second = [usage_row("c", "2026-11-02", "gpt-4o", 500, None), usage_row("d", "2026-11-02", "gpt-4o", 100, None)];
    assert_eq!(store.import_usage(&"ann".into(), &second, 11).await.unwrap(), 1);
    let v2 = store.usage_version(&"ann".into()).await.unwrap();
    assert!(v2 > v1, "an import that adds rows moves the version on");
    assert_eq!(store.import_usage(&"ann".into(), &second, 12).await.unwrap(), 0);
    assert_eq!(store.usage_version(&"ann".into()).await.unwrap(), v2, "nothing new, same version");

    let usage = store.usage(&"ann".into(), None, None).await.unwrap();
    let day1: Vec<&UsageRecord> = usage.iter().filter(|r| r.day == "2026-11-01").collect();
    assert_eq!(day1.len(), 1, "{usage:?}");
    assert_eq!((day1[0].requests, day1[0].input_tokens, day1[0].cost), (2, 3_000, Some(Money(12_000))));
    let day2: Vec<&UsageRecord> = usage.iter().filter(|r| r.day == "2026-11-02").collect();
    assert_eq!((day2.len(), day2[0].requests, day2[0].input_tokens, day2[0].cost), (1, 2, 600, None));
    let only_day2 = store.usage(&"ann".into(), Some("2026-11-02"), Some("2026-11-30")).await.unwrap();
    assert_eq!(only_day2.len(), 1);

    // Another user: the same keys are theirs to import, and they see only their own rows.
    assert!(store.usage(&"bob".into(), None, None).await.unwrap().is_empty());
    assert_eq!(store.import_usage(&"bob".into(), &first[..1], 13).await.unwrap(), 1);
    assert_eq!(store.usage(&"bob".into(), None, None).await.unwrap().len(), 1);

    assert_eq!(store.delete_usage(&"ann".into()).await.unwrap(), 4);
    assert!(store.usage(&"ann".into(), None, None).await.unwrap().is_empty());
    assert!(store.usage_version(&"ann".into()).await.unwrap() > v2, "a delete moves the version on");
    assert_eq!(store.usage(&"bob".into(), None, None).await.unwrap().len(), 1, "bob's rows stay");
}

async fn usage_totals_are_summed_by_the_database_as_the_reference_sums_the_rows(db: Db) {
    use apex_costs::{aggregate, GroupBy, UsageQuery};
    let store = db.open().await;
    // Rows over every dimension, some billed; a name with a quote travels as a parameter.
    let users = ["a", "b", "o'brien", ""];
    let rows: Vec<ImportRow> = (0..240u64)
        .map(|i| {
            let mut row = usage_row(
                &format!("k{i}"),
                &format!("2026-11-0{}", 1 + i % 5),
                ["gpt-4o", "gpt-4o-mini", "o3"][(i % 3) as usize],
                100 + i,
                (i % 4 == 0).then_some(i as i64 * 7),
            );
            let r = &mut row.record;
            r.feature = ["chat", "search"][(i / 3 % 2) as usize].into();
            r.project = ["p", "q"][(i / 7 % 2) as usize].into();
            r.user = users[(i / 5 % 4) as usize].into();
            r.api_key = format!("key-{}", i % 3);
            r.environment = ["prod", ""][(i / 11 % 2) as usize].into();
            r.cached_input_tokens = i % 50;
            r.cache_write_tokens = i % 7;
            r.reasoning_tokens = i % 3;
            row
        })
        .collect();
    store.import_usage(&"ann".into(), &rows, 10).await.unwrap();
    // A later import adding to daily sums already stored (new keys, the same names).
    let again: Vec<ImportRow> = rows[..50].iter().map(|r| ImportRow { key: format!("again-{}", r.key), ..r.clone() }).collect();
    assert_eq!(store.import_usage(&"ann".into(), &again, 11).await.unwrap(), 50);
    store.import_usage(&"bob".into(), &rows[..10], 10).await.unwrap();
    let stored = store.usage(&"ann".into(), None, None).await.unwrap();
    let day = |d: &str| Some(d.to_owned());
    let queries = [
        UsageQuery::rollup(),
        UsageQuery::default(),
        UsageQuery { keep: vec![GroupBy::User], ..UsageQuery::default() },
        UsageQuery { keep: vec![GroupBy::Day, GroupBy::Model, GroupBy::User], ..UsageQuery::default() },
        UsageQuery {
            filters: vec![(GroupBy::User, vec!["a".into(), "o'brien".into()])],
            keep: vec![GroupBy::User, GroupBy::ApiKey],
            ..UsageQuery::default()
        },
        UsageQuery {
            from: day("2026-11-02"),
            to: day("2026-11-04"),
            filters: vec![(GroupBy::Feature, vec!["search".into()]), (GroupBy::Model, vec!["o3".into()])],
            ..UsageQuery::rollup()
        },
        UsageQuery {
            filters: vec![(GroupBy::Environment, vec![String::new()])],
            keep: vec![GroupBy::Environment],
            ..UsageQuery::default()
        },
        UsageQuery { filters: vec![(GroupBy::Project, Vec::new())], ..UsageQuery::default() },
        UsageQuery { from: day("2026-12-01"), ..UsageQuery::rollup() },
        // Read from the sums per end user or API key (day, provider, model and that name).
        UsageQuery {
            from: day("2026-11-02"),
            to: day("2026-11-04"),
            keep: vec![GroupBy::Day, GroupBy::Provider, GroupBy::Model, GroupBy::ApiKey],
            ..UsageQuery::default()
        },
        UsageQuery {
            filters: vec![(GroupBy::User, vec![String::new(), "o'brien".into()]), (GroupBy::Model, vec!["o3".into()])],
            keep: vec![GroupBy::Day, GroupBy::User],
            ..UsageQuery::default()
        },
        UsageQuery { filters: vec![(GroupBy::ApiKey, vec!["key-1".into()])], ..UsageQuery::default() },
        // An end user and a feature: only usage_daily has both.
        UsageQuery {
            filters: vec![(GroupBy::User, vec!["b".into()]), (GroupBy::Feature, vec!["chat".into()])],
            keep: vec![GroupBy::Day, GroupBy::Model, GroupBy::User],
            ..UsageQuery::default()
        },
    ];
    for q in &queries {
        let summed = store.usage_totals(&"ann".into(), q).await.unwrap();
        assert_eq!(summed, aggregate(&stored, q), "{q:?}");
    }
    assert!(store.usage_totals(&"ann".into(), &queries[0]).await.unwrap().len() < stored.len(), "fewer rows than stored");
    for dim in [GroupBy::User, GroupBy::ApiKey, GroupBy::Feature, GroupBy::Model, GroupBy::Environment] {
        let mut names: Vec<String> =
            stored.iter().map(|r| apex_costs::field(r, dim).to_owned()).filter(|n| !n.is_empty()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(store.usage_names(&"ann".into(), dim).await.unwrap(), names, "{dim:?}");
    }
    let bob = store.usage_totals(&"bob".into(), &UsageQuery::default()).await.unwrap();
    assert_eq!(bob.iter().map(|r| r.requests).sum::<u64>(), 10, "only bob's rows");
    store.delete_usage(&"ann".into()).await.unwrap();
    for q in &queries {
        assert!(store.usage_totals(&"ann".into(), q).await.unwrap().is_empty(), "deleted: {q:?}");
    }
    assert_eq!(store.usage_totals(&"bob".into(), &UsageQuery::rollup()).await.unwrap().len(), 10, "bob's stay");
    assert!(store.usage_names(&"ann".into(), GroupBy::User).await.unwrap().is_empty());
    assert_eq!(store.usage_names(&"bob".into(), GroupBy::ApiKey).await.unwrap(), ["key-0", "key-1", "key-2"]);
}

async fn runs_of_live_instances_are_left_alone_and_those_of_lost_ones_are_taken_over(db: Db) {
    let store = db.open().await;
    let now = apex_protocol::now_ms();
    let mine = begun(&store.begin_run(new_run("ann", None, "mine", None).owned_by("a")).await.unwrap()).clone();
    let theirs = begun(&store.begin_run(new_run("bob", None, "theirs", None).owned_by("b")).await.unwrap()).clone();
    store.heartbeat("a", now).await.unwrap();
    store.heartbeat("b", now).await.unwrap();
    let swept = store.interrupt_orphaned("a", LEASE).await.unwrap();
    match db {
        // One instance per file: "b" can only be an earlier process, gone.
        Db::Sqlite(_) => assert_eq!(swept, vec![theirs.run_id]),
        Db::Postgres(_) => {
            assert!(swept.is_empty(), "b holds a live lease: {swept:?}");
            // b stops renewing: once its lease is over, a takes its run over.
            store.heartbeat("b", now - 2 * LEASE.as_millis() as u64).await.unwrap();
            assert_eq!(store.interrupt_orphaned("a", LEASE).await.unwrap(), vec![theirs.run_id]);
        }
    }
    assert_eq!(store.get_run(&"bob".into(), theirs.run_id).await.unwrap().status, RunStatus::Interrupted);
    assert_eq!(store.get_run(&"ann".into(), mine.run_id).await.unwrap().status, RunStatus::Queued, "a's own run goes on");
    assert!(store.interrupt_orphaned("a", LEASE).await.unwrap().is_empty());
}

fn new_account(name: &str, role: Option<&str>) -> apex_store::NewAccount {
    apex_store::NewAccount {
        id: format!("u_{name}"),
        name: name.into(),
        password_hash: format!("hash-of-{name}"),
        role: role.map(Into::into),
        at: 1_000,
    }
}

async fn accounts_the_first_is_admin_names_are_unique_and_wrong_passwords_lock(db: Db) {
    use apex_store::{AccountChange, AccountKey};
    let store = db.open().await;
    let ann = store.create_account(&new_account("ann", None)).await.unwrap();
    assert_eq!((ann.role.as_str(), ann.failed_logins, ann.disabled_at), ("admin", 0, None), "the first account is the admin");
    let bob = store.create_account(&new_account("bob", None)).await.unwrap();
    assert_eq!(bob.role, "member");
    let cy = store.create_account(&new_account("cy", Some("admin"))).await.unwrap();
    assert_eq!(cy.role, "admin", "a role given is kept");
    let mut again = new_account("ann", None);
    again.id = "u_other".into();
    assert!(matches!(store.create_account(&again).await, Err(StoreError::Conflict)), "names are unique");
    assert_eq!(store.account(AccountKey::Name("bob")).await.unwrap().as_ref(), Some(&bob));
    assert_eq!(store.account(AccountKey::Id("u_bob")).await.unwrap().as_ref(), Some(&bob));
    assert_eq!(store.account(AccountKey::Name("nobody")).await.unwrap(), None);
    let names: Vec<_> = store.accounts().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["ann", "bob", "cy"]);

    // Three wrong passwords in a row lock the account for a minute and start the count again.
    let failed = |at| AccountChange::LoginFailed { at, max_failures: 3, lockout_ms: 60_000 };
    for at in [10_000, 11_000] {
        store.update_account("u_bob", &failed(at)).await.unwrap();
    }
    let bob = store.account(AccountKey::Id("u_bob")).await.unwrap().unwrap();
    assert_eq!((bob.failed_logins, bob.locked_until), (2, None));
    store.update_account("u_bob", &failed(12_000)).await.unwrap();
    let bob = store.account(AccountKey::Id("u_bob")).await.unwrap().unwrap();
    assert_eq!((bob.failed_logins, bob.locked_until), (0, Some(72_000)));
    store.update_account("u_bob", &AccountChange::LoginSucceeded).await.unwrap();
    store.update_account("u_bob", &AccountChange::Password("new-hash".into())).await.unwrap();
    store.update_account("u_bob", &AccountChange::Disabled(Some(13_000))).await.unwrap();
    let bob = store.account(AccountKey::Id("u_bob")).await.unwrap().unwrap();
    assert_eq!(
        (bob.failed_logins, bob.locked_until, bob.password_hash.as_str(), bob.disabled_at),
        (0, None, "new-hash", Some(13_000))
    );
    store.update_account("u_bob", &AccountChange::Disabled(None)).await.unwrap();
    store.update_account("u_bob", &AccountChange::Role("admin".into())).await.unwrap();
    let bob = store.account(AccountKey::Id("u_bob")).await.unwrap().unwrap();
    assert_eq!((bob.disabled_at, bob.role.as_str()), (None, "admin"));
    assert!(matches!(store.update_account("u_nobody", &AccountChange::LoginSucceeded).await, Err(StoreError::NotFound)));
}

async fn sessions_rotate_their_refresh_token_and_a_replayed_one_ends_the_session(db: Db) {
    use apex_store::{NewSession, Rotation, ROTATION_RACE_MS};
    let store = db.open().await;
    store.create_account(&new_account("ann", None)).await.unwrap();
    store.create_account(&new_account("bob", None)).await.unwrap();
    let session = |id: &str, account: &str, hash: &str| NewSession {
        id: id.into(),
        account_id: account.into(),
        refresh_hash: hash.into(),
        at: 1_000,
        expires_at: 1_000_000,
        user_agent: "test".into(),
    };
    store.create_session(&session("s1", "u_ann", "h1")).await.unwrap();
    store.create_session(&session("s2", "u_ann", "h2")).await.unwrap();
    store.create_session(&session("s3", "u_bob", "h3")).await.unwrap();
    let listed: Vec<_> = store.sessions("u_ann", 2_000).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed.len(), 2);

    // The current token is replaced, and the session extended.
    let Rotation::Rotated(s1) = store.rotate_session("h1", "h1b", 5_000, 2_000_000).await.unwrap() else { panic!("rotated") };
    assert_eq!((s1.id.as_str(), s1.last_used_at, s1.expires_at), ("s1", 5_000, 2_000_000));
    // The replaced one, moments later (another tab): the session holds, nothing changes.
    let raced = store.rotate_session("h1", "h1c", 5_000 + ROTATION_RACE_MS, 3_000_000).await.unwrap();
    assert!(matches!(raced, Rotation::Raced(ref s) if s.id == "s1"), "{raced:?}");
    // The replaced one, later: someone kept a copy; the session ends for both.
    let later = 5_001 + ROTATION_RACE_MS;
    assert_eq!(store.rotate_session("h1", "h1d", later, 3_000_000).await.unwrap(), Rotation::Reused("s1".into()));
    assert_eq!(store.rotate_session("h1b", "h1e", later, 3_000_000).await.unwrap(), Rotation::Unknown, "the session is over");
    assert!(store.session("s1").await.unwrap().unwrap().revoked_at.is_some());
    assert_eq!(store.rotate_session("nope", "x", later, 3_000_000).await.unwrap(), Rotation::Unknown);
    // An expired session's token does nothing.
    assert_eq!(store.rotate_session("h2", "h2b", 1_000_001, 3_000_000).await.unwrap(), Rotation::Unknown);

    // Revoking: one session, or all of an account's, and only that account's.
    assert_eq!(store.revoke_sessions("u_bob", Some("s2"), 6_000).await.unwrap(), Vec::<String>::new(), "not bob's");
    assert_eq!(store.revoke_sessions("u_ann", Some("s2"), 6_000).await.unwrap(), ["s2"]);
    assert_eq!(store.revoke_sessions("u_ann", None, 7_000).await.unwrap(), Vec::<String>::new(), "none left");
    assert_eq!(store.sessions("u_ann", 8_000).await.unwrap(), Vec::new());
    assert_eq!(store.revoke_sessions("u_bob", None, 9_000).await.unwrap(), ["s3"]);
    let mut since = store.revoked_since(6_000).await.unwrap();
    since.sort();
    assert_eq!(since, ["s1", "s2", "s3"]);
    assert_eq!(store.revoked_since(9_001).await.unwrap(), ["s1"], "revoked as a replay, at {later}");
    assert_eq!(store.revoked_since(later + 1).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.session("nope").await.unwrap(), None);
}

async fn invitations_are_used_once_before_they_expire(db: Db) {
    let store = db.open().await;
    let invitation = |hash: &str, expires_at| apex_store::Invitation {
        code_hash: hash.into(),
        role: "member".into(),
        created_by: "u_ann".into(),
        at: 1_000,
        expires_at,
    };
    store.create_invitation(&invitation("i1", 10_000)).await.unwrap();
    store.create_invitation(&invitation("i2", 10_000)).await.unwrap();
    assert_eq!(store.claim_invitation("i1", Some(2_000)).await.unwrap().as_deref(), Some("member"));
    assert_eq!(store.claim_invitation("i1", Some(3_000)).await.unwrap(), None, "used");
    store.claim_invitation("i1", None).await.unwrap();
    assert_eq!(store.claim_invitation("i1", Some(4_000)).await.unwrap().as_deref(), Some("member"), "released, usable again");
    assert_eq!(store.claim_invitation("i2", Some(10_000)).await.unwrap(), None, "expired");
    assert_eq!(store.claim_invitation("i3", Some(1_000)).await.unwrap(), None, "unknown");
}

async fn deleting_a_user_removes_its_threads_runs_and_account_and_keeps_its_revocations(db: Db) {
    use apex_store::{AccountKey, NewApiKey, NewSession};
    let store = db.open().await;
    store.create_account(&new_account("ann", None)).await.unwrap();
    let session = NewSession {
        id: "s1".into(),
        account_id: "u_ann".into(),
        refresh_hash: "h1".into(),
        at: 1_000,
        expires_at: 1_000_000,
        user_agent: "Firefox".into(),
    };
    store.create_session(&session).await.unwrap();
    let key = NewApiKey {
        id: "k1".into(),
        account_id: "u_ann".into(),
        name: "nightly".into(),
        prefix: "apx_ab".into(),
        key_hash: "kh".into(),
        scopes: vec!["read".into()],
        org_id: None,
        at: 1_000,
    };
    store.create_api_key(&key).await.unwrap();
    let ann = new_run("u_ann", None, "hello", None);
    let bob = new_run("u_bob", None, "hello", None);
    let outcomes = store.apply(&[ann.clone(), bob.clone()], &[]).await.unwrap();
    let (a, b) = (begun(&outcomes[0]).clone(), begun(&outcomes[1]).clone());
    let writes = [
        event(a.run_id, a.thread_id, 1, EventKind::AgentStarted { agent: AgentName::Supervisor }),
        event(b.run_id, b.thread_id, 1, EventKind::AgentStarted { agent: AgentName::Supervisor }),
    ];
    store.apply(&[], &writes).await.unwrap();
    assert!(!store.delete_user("u_ann", 5_000).await.unwrap(), "a run in flight: nothing removed");
    assert_eq!(store.list_threads(&"u_ann".into()).await.unwrap().len(), 1);

    let finish = |user: &str, run_id, thread_id| {
        Write::Finish(RunFinish {
            run_id,
            user_id: user.into(),
            thread_id,
            status: RunStatus::Completed,
            at_ms: 2_000,
            error: None,
            message_id: MessageId::new(),
            text: "done".into(),
        })
    };
    store.apply(&[], &[finish("u_ann", a.run_id, a.thread_id), finish("u_bob", b.run_id, b.thread_id)]).await.unwrap();
    assert!(store.delete_user("u_ann", 6_000).await.unwrap());
    assert!(store.list_threads(&"u_ann".into()).await.unwrap().is_empty());
    assert!(matches!(store.get_run(&"u_ann".into(), a.run_id).await, Err(StoreError::NotFound)));
    assert_eq!(store.account(AccountKey::Id("u_ann")).await.unwrap(), None);
    let left = store.session("s1").await.unwrap().unwrap();
    assert_eq!((left.user_agent.as_str(), left.revoked_at), ("", Some(6_000)), "emptied, revoked, kept for the instances");
    assert_eq!(store.api_key("kh").await.unwrap(), None, "the key no longer matches");
    let mut revoked = store.revoked_since(6_000).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, ["k1", "s1"]);
    // Bob is untouched.
    assert_eq!(store.list_threads(&"u_bob".into()).await.unwrap().len(), 1);
    assert_eq!(store.run_events(&"u_bob".into(), b.run_id, 0).await.unwrap().len(), 1);
    // The name is free again.
    store.create_account(&new_account("ann", None)).await.unwrap();
}

async fn organizations_share_usage_among_members_keep_an_admin_and_outlive_a_leaver(db: Db) {
    use apex_protocol::{OrgId, UserId};
    use apex_store::{NewApiKey, NewOrg, OrgInvitation, OrgRole};
    let store = db.open().await;
    let (ann, bob, cy) = (UserId::from("u_ann"), UserId::from("u_bob"), UserId::from("u_cy"));
    let acme = OrgId::new_shared();
    let org =
        store.create_org(&NewOrg { id: acme.clone(), name: "Acme".into(), created_by: ann.clone(), at: 1_000 }).await.unwrap();
    assert_eq!(org.name, "Acme");
    assert_eq!(store.role_in(&acme, &ann).await.unwrap(), Some(OrgRole::Admin), "the creator is its admin");
    assert_eq!(store.role_in(&acme, &bob).await.unwrap(), None);
    assert_eq!(store.role_in(&OrgId::new_shared(), &ann).await.unwrap(), None, "no such organization");

    // An invitation is used once, before it expires; a member keeps the role they have.
    let invitation = |code: &str, role, expires_at| OrgInvitation {
        code_hash: code.into(),
        org: acme.clone(),
        role,
        created_by: ann.clone(),
        at: 1_000,
        expires_at,
    };
    store.create_org_invitation(&invitation("c1", OrgRole::Analyst, 10_000)).await.unwrap();
    store.create_org_invitation(&invitation("c2", OrgRole::Viewer, 10_000)).await.unwrap();
    store.create_org_invitation(&invitation("c3", OrgRole::Viewer, 10_000)).await.unwrap();
    let joined = store.join_org("c1", &bob, 2_000).await.unwrap().unwrap();
    assert_eq!((joined.org.id.clone(), joined.role), (acme.clone(), OrgRole::Analyst));
    assert_eq!(store.join_org("c1", &cy, 2_500).await.unwrap(), None, "used");
    assert_eq!(store.join_org("c2", &cy, 10_000).await.unwrap(), None, "expired");
    assert_eq!(store.join_org("nope", &cy, 2_000).await.unwrap(), None, "unknown");
    assert_eq!(store.join_org("c3", &bob, 3_000).await.unwrap().unwrap().role, OrgRole::Analyst, "kept");
    let orgs = store.orgs_of(&bob).await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!((orgs[0].org.name.as_str(), orgs[0].role, orgs[0].joined_at), ("Acme", OrgRole::Analyst, 2_000));
    let members: Vec<_> = store.members(&acme).await.unwrap().into_iter().map(|m| (m.user_id, m.role)).collect();
    assert_eq!(members, [(ann.clone(), OrgRole::Admin), (bob.clone(), OrgRole::Analyst)]);

    // Usage lives in the organization, apart from each member's own.
    store.import_usage(&acme, &[usage_row("a1", "2025-01-01", "gpt-4o", 10, Some(1_000_000))], 1).await.unwrap();
    store.import_usage(&OrgId::personal(&bob), &[usage_row("b1", "2025-01-01", "gpt-4o", 99, None)], 1).await.unwrap();
    assert_eq!(store.usage(&acme, None, None).await.unwrap()[0].input_tokens, 10);
    assert_eq!(store.usage(&OrgId::personal(&bob), None, None).await.unwrap()[0].input_tokens, 99);
    assert!(store.usage(&OrgId::personal(&ann), None, None).await.unwrap().is_empty());
    assert_eq!(store.usage_version(&acme).await.unwrap(), 1);

    // The last admin can be neither demoted nor removed; another admin first.
    assert!(matches!(store.set_member(&acme, &ann, Some(OrgRole::Viewer)).await, Err(StoreError::Conflict)));
    assert!(matches!(store.set_member(&acme, &ann, None).await, Err(StoreError::Conflict)));
    assert!(matches!(store.set_member(&acme, &cy, Some(OrgRole::Viewer)).await, Err(StoreError::NotFound)));
    store.set_member(&acme, &bob, Some(OrgRole::Admin)).await.unwrap();
    store.set_member(&acme, &ann, Some(OrgRole::Viewer)).await.unwrap();
    assert_eq!(store.role_in(&acme, &ann).await.unwrap(), Some(OrgRole::Viewer));

    // An organization's API key reads back bound to it.
    let key = NewApiKey {
        id: "k_org".into(),
        account_id: "u_bob".into(),
        name: "etl".into(),
        prefix: "apx_cd".into(),
        key_hash: "okh".into(),
        scopes: vec!["ingest".into()],
        org_id: Some(acme.to_string()),
        at: 1_000,
    };
    store.create_api_key(&key).await.unwrap();
    assert_eq!(store.api_key("okh").await.unwrap().unwrap().org_id.as_deref(), Some(acme.as_str()));

    // The sole admin leaving hands the organization to the longest-standing member; the
    // last member leaving removes it (its usage is then the caller's to delete).
    assert!(store.leave_all(&bob).await.unwrap().is_empty());
    assert_eq!(store.role_in(&acme, &ann).await.unwrap(), Some(OrgRole::Admin), "promoted");
    assert_eq!(store.leave_all(&ann).await.unwrap(), vec![acme.clone()]);
    assert!(store.orgs_of(&ann).await.unwrap().is_empty());
    assert!(store.members(&acme).await.unwrap().is_empty());
    assert_eq!(store.join_org("c3", &cy, 3_000).await.unwrap(), None, "its invitations went with it");
}

async fn a_thread_is_shared_with_one_organization_of_its_owner_until_she_leaves(db: Db) {
    use apex_protocol::{OrgId, UserId};
    use apex_store::{NewOrg, OrgInvitation, OrgRole, Shareable, ThreadShare};
    let store = db.open().await;
    let (ann, bob) = (UserId::from("u_ann"), UserId::from("u_bob"));
    let (acme, beta) = (OrgId::new_shared(), OrgId::new_shared());
    store.create_org(&NewOrg { id: acme.clone(), name: "Acme".into(), created_by: ann.clone(), at: 1_000 }).await.unwrap();
    store.create_org(&NewOrg { id: beta.clone(), name: "Beta".into(), created_by: bob.clone(), at: 1_000 }).await.unwrap();
    let outcomes = store.apply(&[new_run("u_ann", None, "hello", None), new_run("u_bob", None, "hi", None)], &[]).await.unwrap();
    let (a, b) = (begun(&outcomes[0]).clone(), begun(&outcomes[1]).clone());
    assert_eq!(store.share_of(Shareable::Thread(a.thread_id)).await.unwrap(), None, "personal");

    // Only the owner's thread, only with her organization.
    assert!(matches!(store.share_thread(&bob, a.thread_id, Some(&beta), 2_000).await, Err(StoreError::NotFound)));
    assert!(matches!(store.share_thread(&ann, a.thread_id, Some(&beta), 2_000).await, Err(StoreError::NotFound)));
    store.share_thread(&ann, a.thread_id, Some(&acme), 2_000).await.unwrap();
    let share = ThreadShare { owner: ann.clone(), org: acme.clone() };
    assert_eq!(store.share_of(Shareable::Thread(a.thread_id)).await.unwrap(), Some(share.clone()));
    assert_eq!(store.share_of(Shareable::Run(a.run_id)).await.unwrap(), Some(share), "a run of a shared thread");
    assert_eq!(store.share_of(Shareable::Run(b.run_id)).await.unwrap(), None);
    assert_eq!(store.list_threads(&ann).await.unwrap()[0].shared_with, Some(acme.clone()));
    let listed = store.shared_threads(&acme).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].thread.id, &listed[0].owner, listed[0].thread.title.as_str()), (a.thread_id, &ann, "hello"));
    assert!(store.shared_threads(&beta).await.unwrap().is_empty());

    // Personal again, shared again, then ann leaves: the share ends with her membership.
    store.share_thread(&ann, a.thread_id, None, 3_000).await.unwrap();
    assert!(store.shared_threads(&acme).await.unwrap().is_empty());
    assert_eq!(store.list_threads(&ann).await.unwrap()[0].shared_with, None);
    store.share_thread(&ann, a.thread_id, Some(&acme), 4_000).await.unwrap();
    store.leave_all(&ann).await.unwrap();
    assert_eq!(store.share_of(Shareable::Thread(a.thread_id)).await.unwrap(), None);
    assert!(matches!(store.share_thread(&ann, a.thread_id, Some(&acme), 5_000).await, Err(StoreError::NotFound)));
    // Removed by an admin: the same, for her shares only.
    let invitation = OrgInvitation {
        code_hash: "cb".into(),
        org: beta.clone(),
        role: OrgRole::Viewer,
        created_by: bob.clone(),
        at: 1_000,
        expires_at: 10_000,
    };
    store.create_org_invitation(&invitation).await.unwrap();
    store.join_org("cb", &ann, 5_000).await.unwrap().unwrap();
    store.share_thread(&ann, a.thread_id, Some(&beta), 5_000).await.unwrap();
    store.share_thread(&bob, b.thread_id, Some(&beta), 5_000).await.unwrap();
    assert_eq!(store.shared_threads(&beta).await.unwrap().len(), 2);
    store.set_member(&beta, &ann, None).await.unwrap();
    let left: Vec<_> = store.shared_threads(&beta).await.unwrap().into_iter().map(|t| t.owner).collect();
    assert_eq!(left, [bob], "ann's share went with her; bob's stays");
}

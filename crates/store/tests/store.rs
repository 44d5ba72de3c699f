//! The store contract, against a real SQLite file. Written against `dyn Store` so that
//! every backend can run the same suite.
use std::sync::Arc;

use apex_protocol::{AgentName, EventKind, MessageId, RunEvent, RunId, ThreadId};
use apex_store::{BeginOutcome, NewRun, RunFinish, RunStatus, Store, StoreError, Write};

async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apex.db").display());
    (dir, apex_store::connect(&url).await.unwrap())
}

fn new_run(user: &str, thread: Option<ThreadId>, text: &str, cid: Option<&str>) -> NewRun {
    NewRun::new(user, thread, text.into(), cid.map(Into::into), 1_000)
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

#[tokio::test]
async fn a_batch_of_begins_creates_threads_messages_and_runs() {
    let (_dir, store) = sqlite().await;
    let first = new_run("ann", None, "  Analyze my\n AI costs  ", Some("c1"));
    let second = new_run("bob", None, &"long title ".repeat(20), None);
    let outcomes = store.apply(&[first.clone(), second.clone()], &[]).await.unwrap();
    let a = begun(&outcomes[0]).clone();
    assert_eq!(a.thread_id, first.new_thread_id);
    begun(&outcomes[1]);

    let threads = store.list_threads("ann").await.unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].title, "Analyze my");
    let long = &store.list_threads("bob").await.unwrap()[0].title;
    assert!(long.chars().count() <= apex_store::TITLE_CHARS && long.ends_with('…'), "{long}");

    let messages = store.thread_messages("ann", a.thread_id).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "  Analyze my\n AI costs  ", "stored verbatim");
    assert_eq!(messages[0].run_id, Some(a.run_id));
    let run = store.get_run("ann", a.run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.user_message_id, a.message_id);
}

#[tokio::test]
async fn client_message_ids_dedupe_per_user_even_within_one_batch() {
    let (_dir, store) = sqlite().await;
    let original = new_run("ann", None, "hi", Some("same"));
    let resent_same_batch = new_run("ann", None, "hi", Some("same"));
    let other_user = new_run("bob", None, "hi", Some("same"));
    let out = store.apply(&[original, resent_same_batch, other_user], &[]).await.unwrap();
    let first = begun(&out[0]).clone();
    assert_eq!(out[1], BeginOutcome::Duplicate(first.clone()));
    begun(&out[2]); // another user's id space

    let later = store.begin_run(new_run("ann", None, "hi again", Some("same"))).await.unwrap();
    assert_eq!(later, BeginOutcome::Duplicate(first.clone()));
    assert_eq!(store.find_client_message("ann", "same").await.unwrap(), Some(first));
    assert_eq!(store.find_client_message("carl", "same").await.unwrap(), None);
    assert_eq!(store.list_threads("ann").await.unwrap().len(), 1, "nothing new was written");
}

#[tokio::test]
async fn another_users_thread_is_not_found_and_the_rest_of_the_batch_lands() {
    let (_dir, store) = sqlite().await;
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
    assert_eq!(store.thread_messages("ann", ann.thread_id).await.unwrap().len(), 2);
    assert!(matches!(store.thread_messages("eve", ann.thread_id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.get_run("eve", ann.run_id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.run_events("eve", ann.run_id, 0).await, Err(StoreError::NotFound)));
    assert!(store.agent_results("eve", ann.run_id).await.unwrap().is_empty());
    assert!(store.list_threads("eve").await.unwrap().is_empty());
}

#[tokio::test]
async fn events_results_and_the_end_of_a_run_read_back() {
    let (_dir, store) = sqlite().await;
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
    assert_eq!(store.get_run("ann", run).await.unwrap().status, RunStatus::Running);
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
    let terminal = event(run, thread, 3, EventKind::FinalResponse { message_id: answer, text: "Hello".into() });
    store.apply(&[], &[Write::Finish(finish), terminal]).await.unwrap();

    let row = store.get_run("ann", run).await.unwrap();
    assert_eq!((row.status, row.started_at, row.finished_at, row.last_seq), (RunStatus::Completed, Some(2_000), Some(3_000), 3));
    let events = store.run_events("ann", run, 1).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[1].contains(r#""type":"final_response""#));
    let results = store.agent_results("ann", run).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].output["text"], "Hello");
    let messages = store.thread_messages("ann", thread).await.unwrap();
    assert_eq!(messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["user", "assistant"]);
    assert_eq!(messages[1].id, answer);
}

#[tokio::test]
async fn unfinished_runs_are_interrupted_with_open_calls_closed_and_partial_text_kept() {
    let (dir, store) = sqlite().await;
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

    // A new process opens the same file.
    let url = format!("sqlite://{}", dir.path().join("apex.db").display());
    let store = apex_store::connect(&url).await.unwrap();
    let interrupted = store.interrupt_unfinished().await.unwrap();
    assert_eq!(interrupted, vec![run], "only the unfinished run");
    let row = store.get_run("ann", run).await.unwrap();
    assert_eq!(row.status, RunStatus::Interrupted);
    assert_eq!(row.error_code.as_deref(), Some("interrupted"));
    let events: Vec<RunEvent> =
        store.run_events("ann", run, 0).await.unwrap().iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert!(matches!(&events[4].kind, EventKind::ToolCompleted { tool_call_id, ok: false, .. } if tool_call_id == "call_9"));
    assert_eq!(events[5].kind, EventKind::RunInterrupted { partial_text: "Partial answer".into() });
    let messages = store.thread_messages("ann", thread).await.unwrap();
    assert_eq!(messages[1].content, "Partial answer");
    assert_eq!(messages[1].id, answer, "the partial answer keeps the id its deltas used");
    assert!(store.interrupt_unfinished().await.unwrap().is_empty(), "recovery runs once");
}

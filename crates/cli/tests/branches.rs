//! Branches over real sockets: `user_message` with `edit_of`, `regenerate` or `parent_id`
//! (docs/protocol.md §5.11). An edit or a regenerate keeps every earlier message; a run
//! reads the thread's memory from its own branch only — on SQLite and on PostgreSQL.
mod common;

use common::*;
use serde_json::{json, Value};

/// The ranking of the run's `query_slice` call.
fn ranking(events: &[Value]) -> Vec<String> {
    slice_of(events)["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap().to_owned()).collect()
}

/// Sends `frame` and reads its `message_accepted`.
async fn send(client: &mut Client, frame: Value) -> Value {
    client.send(frame).await;
    let accepted = client.next_json().await;
    assert_eq!(accepted["type"], "message_accepted", "{accepted}");
    accepted
}

/// The first line of the answer to a follow-up about "the second one".
async fn second_one(client: &mut Client, mut frame: Value) -> String {
    frame["text"] = json!("and what about the second one?");
    send(client, frame).await;
    assert_golden_run(&client.events_until_terminal().await).lines().next().unwrap().to_owned()
}

/// Sends `frame` and reads the `error` that refuses it: its code and message.
async fn refused(client: &mut Client, frame: Value) -> (String, String) {
    client.send(frame).await;
    let error = client.next_json().await;
    assert_eq!(error["type"], "error", "{error}");
    (error["code"].as_str().unwrap().to_owned(), error["message"].as_str().unwrap().to_owned())
}

async fn thread(app: &TestApp, token: &str, thread: &str) -> (Vec<Value>, Vec<Value>) {
    let (status, body) = app.get(&format!("/api/threads/{thread}/messages"), token).await;
    assert_eq!(status, 200, "{body}");
    (body["messages"].as_array().unwrap().clone(), body["runs"].as_array().unwrap().clone())
}

async fn edits_and_regenerates_branch_the_thread_and_each_run_reads_its_own_branch(app: TestApp) {
    let token = app.token("bea");
    app.import_fixture(&token).await;
    let mut client = connect(&app, By::Header(token.clone())).await;

    let q1 = client.ask("What are our top 3 features by spend?", None).await;
    let t = q1["thread_id"].as_str().unwrap().to_owned();
    let features = ranking(&client.events_until_terminal().await);
    let q2 = client.ask("What are our top 3 models by spend?", Some(&t)).await;
    let models = ranking(&client.events_until_terminal().await);
    assert!(features.len() >= 2 && models.len() >= 2, "{features:?} {models:?}");

    // An edit of the second question: asked after the first answer, so "the second one"
    // is the second feature — not the second model of the branch it replaces.
    let edit = json!({"type": "user_message", "thread_id": t, "edit_of": q2["message_id"], "client_message_id": "edit-1"});
    let first = second_one(&mut client, edit.clone()).await;
    assert!(first.contains(&format!("on feature `{}`", features[1])), "{first}");
    let (messages, _) = thread(&app, &token, &t).await;
    let by_text = |text: &str| messages.iter().find(|m| m["content"] == text).cloned().unwrap();
    let a1 = messages.iter().find(|m| m["role"] == "assistant" && m["run_id"] == q1["run_id"]).unwrap();
    assert_eq!(by_text("and what about the second one?")["parent_id"], a1["id"], "the edit sits beside the second question");
    assert_eq!(by_text("What are our top 3 models by spend?")["parent_id"], a1["id"], "the original is kept");
    assert_eq!(messages.len(), 6);

    // A regenerate of the first question: a new run, no new message, its answer beside the first.
    let again = json!({"type": "user_message", "thread_id": t, "regenerate": q1["message_id"], "client_message_id": "again-1"});
    let accepted = send(&mut client, again.clone()).await;
    assert_eq!(accepted["message_id"], q1["message_id"]);
    assert_ne!(accepted["run_id"], q1["run_id"]);
    let answer = assert_golden_run(&client.events_until_terminal().await);
    assert!(answer.starts_with("The 3 features that cost the most"), "{answer}");
    // Sent again (a lost acknowledgement): the same run, replayed; nothing new.
    let resent = send(&mut client, again).await;
    assert_eq!((&resent["run_id"], &resent["message_id"]), (&accepted["run_id"], &accepted["message_id"]));
    client.events_until_terminal().await;
    let (messages, runs) = thread(&app, &token, &t).await;
    assert_eq!(messages.len(), 7);
    let answers_to_q1: Vec<&Value> = messages.iter().filter(|m| m["parent_id"] == q1["message_id"]).collect();
    assert_eq!(answers_to_q1.len(), 2, "{messages:?}");
    let runs_of_q1: Vec<&Value> = runs.iter().filter(|r| r["user_message_id"] == q1["message_id"]).map(|r| &r["id"]).collect();
    assert_eq!(runs_of_q1, [&q1["run_id"], &accepted["run_id"]]);

    // A plain message goes after the thread's latest message: the regenerated answer.
    let plain = json!({"type": "user_message", "thread_id": t});
    let first = second_one(&mut client, plain).await;
    assert!(first.contains(&format!("on feature `{}`", features[1])), "{first}");
    // `parent_id` continues an older branch: after the models answer, "the second one" is a model.
    let a2 = messages.iter().find(|m| m["role"] == "assistant" && m["run_id"] == q2["run_id"]).unwrap();
    let first = second_one(&mut client, json!({"type": "user_message", "thread_id": t, "parent_id": a2["id"]})).await;
    assert!(first.contains(&format!("on model `{}`", models[1])), "{first}");
    let (messages, _) = thread(&app, &token, &t).await;
    assert_eq!(messages.last().unwrap()["role"], "assistant");
    assert_eq!(messages[messages.len() - 2]["parent_id"], a2["id"]);
    assert_eq!(messages.len(), 11, "nothing was ever replaced");
}

#[tokio::test]
async fn on_sqlite_edits_and_regenerates_branch_the_thread() {
    edits_and_regenerates_branch_the_thread_and_each_run_reads_its_own_branch(spawn_with(|s| s.demo_mode = false, |s| s).await)
        .await;
}

#[tokio::test]
async fn on_postgresql_edits_and_regenerates_branch_the_thread() {
    let schema = apex_store::testing::TempSchema::create().await;
    let app = spawn_with(
        |s| {
            s.demo_mode = false;
            s.database_url = schema.url.clone().into();
        },
        |s| s,
    )
    .await;
    edits_and_regenerates_branch_the_thread_and_each_run_reads_its_own_branch(app).await;
}

#[tokio::test]
async fn a_branch_names_a_message_of_the_thread_and_an_edit_or_regenerate_a_question() {
    let app = spawn_with(|s| s.demo_mode = false, |s| s).await;
    let token = app.token("cy");
    app.import_fixture(&token).await;
    let mut client = connect(&app, By::Header(token.clone())).await;
    let q = client.ask("Analyze my AI costs", None).await;
    client.events_until_terminal().await;
    let other = client.ask("Forecast next month", None).await;
    client.events_until_terminal().await;
    let t = q["thread_id"].as_str().unwrap();
    let (messages, _) = thread(&app, &token, t).await;
    let answer = messages.iter().find(|m| m["role"] == "assistant").unwrap()["id"].clone();

    // A message of another thread of the same user is not in this thread.
    let (code, message) =
        refused(&mut client, json!({"type": "user_message", "thread_id": t, "text": "x", "edit_of": other["message_id"]})).await;
    assert_eq!(code, "not_found");
    assert!(message.contains("edit_of"), "{message}");
    // An answer is not a question to edit or ask again; it can be continued from.
    let (code, message) = refused(&mut client, json!({"type": "user_message", "thread_id": t, "regenerate": answer})).await;
    assert_eq!(code, "invalid_field");
    assert!(message.contains("is an answer"), "{message}");
    let (code, _) = refused(&mut client, json!({"type": "user_message", "thread_id": t, "text": "x", "edit_of": answer})).await;
    assert_eq!(code, "invalid_field");
    let (code, _) = refused(&mut client, json!({"type": "user_message", "text": "x", "edit_of": q["message_id"]})).await;
    assert_eq!(code, "missing_field");
    let (code, _) =
        refused(&mut client, json!({"type": "user_message", "thread_id": t, "text": "x", "regenerate": q["message_id"]})).await;
    assert_eq!(code, "invalid_field");
    // Nothing of the refused frames was written.
    assert_eq!(thread(&app, &token, t).await.0.len(), 2);

    // Another user cannot branch this thread, even naming its messages.
    let mut eve = connect(&app, By::Header(app.token("eve"))).await;
    eve.send(json!({"type": "user_message", "thread_id": t, "regenerate": q["message_id"]})).await;
    let error = eve.next_json().await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("not_found")), "{error}");

    // And the thread is still free: an edit is accepted.
    send(
        &mut client,
        json!({"type": "user_message", "thread_id": t, "text": "Analyze my AI costs in October", "edit_of": q["message_id"]}),
    )
    .await;
    assert_golden_run(&client.events_until_terminal().await);
}

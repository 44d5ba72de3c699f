//! The golden path over real sockets: connect, ask, watch every agent work, read the
//! persisted answer back over REST.
mod common;

use common::*;
use serde_json::Value;

async fn golden_path(app: &TestApp, mut client: Client) {
    let accepted = client.ask("Analyze my AI costs", None).await;
    let events = client.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    assert_eq!(events[0]["run_id"], accepted["run_id"]);
    assert_eq!(events[0]["thread_id"], accepted["thread_id"]);

    // The answer is substantive: dollar figures and concrete savings from this user's data
    // (the demo dataset for demo users, the imported fixture for the others).
    assert!(answer.contains("## Your AI spend: $"), "{answer}");
    assert!(answer.contains("Savings you can make: $"), "{answer}");
    assert!(answer.contains("gpt-4o-mini"), "a concrete downgrade is recommended: {answer}");

    let token = client.token.clone().expect("a token for this identity");
    let run_id = accepted["run_id"].as_str().unwrap();
    let thread_id = accepted["thread_id"].as_str().unwrap();

    let (status, messages) = app.get(&format!("/api/threads/{thread_id}/messages"), &token).await;
    assert_eq!(status, 200);
    let messages = messages["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], "Analyze my AI costs");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"].as_str().unwrap(), answer, "the persisted answer is verbatim");
    assert_eq!(messages[1]["run_id"], accepted["run_id"]);

    let (status, run) = app.get(&format!("/api/runs/{run_id}"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(run["run"]["status"], "completed");
    let agents: Vec<&str> = run["agent_results"].as_array().unwrap().iter().map(|a| a["agent"].as_str().unwrap()).collect();
    assert_eq!(agents.len(), 5, "one result per agent: {agents:?}");
    for agent in ["supervisor", "triage", "data", "optimization", "report"] {
        assert!(agents.contains(&agent), "{agent} result persisted");
    }

    // The events endpoint returns the very events that were streamed.
    let (status, stored) = app.get(&format!("/api/runs/{run_id}/events?after_seq=0"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(stored["events"].as_array().unwrap(), &events);
    let (_, tail) = app.get(&format!("/api/runs/{run_id}/events?after_seq=10"), &token).await;
    assert_eq!(tail["events"].as_array().unwrap()[..], events[10..]);

    let (status, threads) = app.get("/api/threads", &token).await;
    assert_eq!(status, 200);
    assert_eq!(threads["threads"][0]["id"], accepted["thread_id"]);
    assert_eq!(threads["threads"][0]["title"], "Analyze my AI costs");
}

#[tokio::test]
async fn demo_mode_golden_path() {
    let app = spawn_app().await;
    let client = connect(&app, By::Demo).await;
    assert_eq!(client.ready["demo"], true);
    assert!(client.user_id.starts_with("demo-user-"), "{}", client.user_id);
    golden_path(&app, client).await;
}

#[tokio::test]
async fn jwt_in_header_golden_path() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    app.import_fixture(&app.token("alice")).await;
    let client = connect(&app, By::Header(app.token("alice"))).await;
    assert_eq!(client.user_id, "alice");
    assert_eq!(client.ready["demo"], false);
    assert!(client.ready.get("token").is_none());
    golden_path(&app, client).await;
}

#[tokio::test]
async fn jwt_in_subprotocol_golden_path() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    app.import_fixture(&app.token("bob")).await;
    let client = connect(&app, By::Subprotocol(app.token("bob"))).await;
    assert_eq!(client.subprotocol.as_deref(), Some("apex.v1"), "the server answers with apex.v1");
    assert_eq!(client.user_id, "bob");
    golden_path(&app, client).await;
}

#[tokio::test]
async fn jwt_in_query_is_accepted() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let client = connect(&app, By::Query(app.token("carol"))).await;
    assert_eq!(client.user_id, "carol");
}

#[tokio::test]
async fn demo_token_keeps_identity_and_threads_on_reconnect() {
    let app = spawn_app().await;
    let mut first = connect(&app, By::Demo).await;
    let accepted = first.ask("What did I spend on embeddings?", None).await;
    first.events_until_terminal().await;
    let token = first.token.clone().unwrap();
    let user = first.user_id.clone();
    first.close().await;

    let mut again = connect(&app, By::Header(token.clone())).await;
    assert_eq!(again.user_id, user);
    // A follow-up in the same thread works and the thread keeps both exchanges.
    let thread_id = accepted["thread_id"].as_str().unwrap();
    let second = again.ask("And how do I reduce spend?", Some(thread_id)).await;
    assert_eq!(second["thread_id"], accepted["thread_id"]);
    let events = again.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    // Read as a savings question: the saving first, then the changes that make it.
    assert!(answer.starts_with("You can save **$"), "{answer}");
    assert!(answer.contains("\n1. **"), "{answer}");
    let (_, messages) = app.get(&format!("/api/threads/{thread_id}/messages"), &token).await;
    assert_eq!(messages["messages"].as_array().unwrap().len(), 4);

    // A fresh anonymous client is somebody else.
    let other = connect(&app, By::Demo).await;
    assert_ne!(other.user_id, user);
}

#[tokio::test]
async fn different_demo_users_get_their_own_demo_figures() {
    let app = spawn_app().await;
    let mut totals = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&app, By::Demo).await;
        c.ask("Analyze my AI costs", None).await;
        let events = c.events_until_terminal().await;
        let answer = assert_golden_run(&events);
        totals.push(answer.lines().next().unwrap().to_owned());
    }
    assert_ne!(totals[0], totals[1], "each user's demo data differs: {totals:?}");
}

#[tokio::test]
async fn an_account_without_data_is_told_how_to_import_never_shown_made_up_figures() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
        },
        |s| s,
    )
    .await;
    let mut c = connect(&app, By::Header(app.token("new-customer"))).await;
    c.ask("Analyze my AI costs", None).await;
    let answer = assert_golden_run(&c.events_until_terminal().await);
    assert!(answer.starts_with("## No usage data yet"), "{answer}");
    assert!(answer.contains("POST /api/usage/import"));
    assert!(!answer.contains("$0") && !answer.contains("demo dataset"), "{answer}");
}

#[tokio::test]
async fn health_endpoints_report_components() {
    let app = spawn_app().await;
    let live: Value = http_client().get(app.http("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["status"], "ok");
    let ready: Value = http_client().get(app.http("/api/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["components"]["store"]["status"], "ok");
    assert_eq!(ready["components"]["engine"]["status"], "ok");
}

#[tokio::test]
async fn postgres_golden_path_and_its_history_survive_a_restart() {
    let schema = apex_store::testing::TempSchema::create().await;
    let on_postgres = || {
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
            s.database_url = schema.url.clone().into();
        }
    };
    let mut app = spawn_with(on_postgres(), |s| s).await;
    let token = app.token("dana");
    app.import_fixture(&token).await;
    app.import_fixture_again(&token).await;
    let ready: Value = http_client().get(app.http("/api/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["components"]["store"]["backend"], "postgres", "{ready}");
    let client = connect(&app, By::Header(token.clone())).await;
    golden_path(&app, client).await;
    let (_, before) = app.get("/api/threads", &token).await;
    app.stop().await;

    // Another process on the same database sees the same threads, answers and events.
    let again = spawn_with(on_postgres(), |s| s).await;
    let (status, after) = again.get("/api/threads", &token).await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    let thread_id = after["threads"][0]["id"].as_str().unwrap();
    let (_, messages) = again.get(&format!("/api/threads/{thread_id}/messages"), &token).await;
    assert_eq!(messages["messages"].as_array().unwrap().len(), 2);
    let (_, other) = again.get("/api/threads", &again.token("eve")).await;
    assert_eq!(other["threads"].as_array().unwrap().len(), 0, "isolation holds on PostgreSQL");
}

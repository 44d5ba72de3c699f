//! Runs are not owned by sockets: resume, disconnects, stop, timeout, failure, busy threads.
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A server whose data agent takes a while, so that things can happen mid-run.
async fn slow_app(ms: u64) -> TestApp {
    spawn_with(|_| (), |s| s.with_tool(slow("query_usage", ms))).await
}

#[tokio::test]
async fn resume_after_reconnect_gets_exactly_the_missing_events() {
    let app = slow_app(300).await;
    let mut first = connect(&app, By::Demo).await;
    let token = first.token.clone().unwrap();
    let accepted = first.ask("Analyze my AI costs", None).await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    while seen.len() < 8 {
        seen.push(first.next_json().await);
    }
    drop(first); // the socket just goes away, mid-run

    let mut second = connect(&app, By::Header(token)).await;
    second.send(json!({"type": "resume", "run_id": run_id, "after_seq": 8})).await;
    let rest = second.events_until_terminal().await;
    assert_eq!(rest[0]["seq"], 9, "no gap and no duplicate");
    let all: Vec<Value> = seen.into_iter().chain(rest).collect();
    assert_golden_run(&all);
}

#[tokio::test]
async fn resume_is_exact_at_every_point_of_a_run() {
    let app = slow_app(50).await;
    let mut owner = connect(&app, By::Demo).await;
    let token = owner.token.clone().unwrap();
    let accepted = owner.ask("Analyze my AI costs", None).await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let full = owner.events_until_terminal().await;
    assert_golden_run(&full);
    // A finished run resumes from any seq, from another connection, identically.
    for after in [0, 1, 5, full.len() as u64 - 1, full.len() as u64] {
        let mut c = connect(&app, By::Header(token.clone())).await;
        c.send(json!({"type": "resume", "run_id": run_id, "after_seq": after})).await;
        if after == full.len() as u64 {
            c.send(json!({"type": "ping"})).await;
            assert_eq!(c.next_json().await["type"], "pong", "nothing after the terminal event");
            continue;
        }
        let rest = c.events_until_terminal().await;
        assert_eq!(rest[..], full[after as usize..]);
    }
}

#[tokio::test]
async fn a_run_completes_and_persists_when_its_client_never_comes_back() {
    let app = slow_app(200).await;
    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    let accepted = client.ask("Analyze my AI costs", None).await;
    client.next_json().await;
    drop(client);
    let run_id = accepted["run_id"].as_str().unwrap();
    let mut status = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = app.get(&format!("/api/runs/{run_id}"), &token).await.1["run"]["status"].clone();
        if status == "completed" {
            break;
        }
    }
    assert_eq!(status, "completed");
    let (_, events) = app.get(&format!("/api/runs/{run_id}/events"), &token).await;
    assert_golden_run(events["events"].as_array().unwrap());
    let thread = accepted["thread_id"].as_str().unwrap();
    let (_, messages) = app.get(&format!("/api/threads/{thread}/messages"), &token).await;
    assert_eq!(messages["messages"][1]["role"], "assistant");
}

#[tokio::test]
async fn several_tabs_of_one_user_follow_the_same_run() {
    let app = slow_app(100).await;
    let mut tab1 = connect(&app, By::Demo).await;
    let mut tab2 = connect(&app, By::Header(tab1.token.clone().unwrap())).await;
    let accepted = tab1.ask("Analyze my AI costs", None).await;
    tab2.send(json!({"type": "resume", "run_id": accepted["run_id"], "after_seq": 0})).await;
    let a = tab1.events_until_terminal().await;
    let b = tab2.events_until_terminal().await;
    assert_golden_run(&a);
    assert_eq!(a, b);
}

#[tokio::test]
async fn stop_agent_cancels_the_run() {
    let app = slow_app(2_000).await;
    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    let accepted = client.ask("Analyze my AI costs", None).await;
    // Wait until the data agent's (slow) tool is executing, then stop.
    loop {
        let e = client.next_json().await;
        if e["type"] == "tool_executing" && e["agent"] == "data" {
            break;
        }
    }
    client.send(json!({"type": "stop_agent", "run_id": accepted["run_id"]})).await;
    let rest = client.events_until_terminal().await;
    let last = rest.last().unwrap();
    assert_eq!(last["type"], "run_cancelled");
    let closed = rest.iter().find(|e| e["type"] == "tool_completed").expect("the open tool call is closed");
    assert_eq!(closed["ok"], false);
    let (_, run) = app.get(&format!("/api/runs/{}", accepted["run_id"].as_str().unwrap()), &token).await;
    assert_eq!(run["run"]["status"], "cancelled");
    // The connection is unharmed and the thread is free again.
    let next = client.ask("Analyze my AI costs", accepted["thread_id"].as_str()).await;
    assert_eq!(next["thread_id"], accepted["thread_id"]);
}

#[tokio::test]
async fn a_run_past_its_timeout_ends_with_its_partial_text_persisted() {
    let app = spawn_with(
        |s: &mut apex_server::Settings| {
            s.run_timeout = std::time::Duration::from_secs_f64(0.4);
        },
        |s| s.with_tool(slow("forecast_spend", 5_000)),
    )
    .await;
    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    let accepted = client.ask("Analyze my AI costs", None).await;
    let events = client.events_until_terminal().await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "run_timed_out", "{last}");
    let streamed: String = events.iter().filter(|e| e["type"] == "response_delta").map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(last["partial_text"].as_str().unwrap(), streamed, "the partial text is what was streamed");
    let run_id = accepted["run_id"].as_str().unwrap();
    let (_, run) = app.get(&format!("/api/runs/{run_id}"), &token).await;
    assert_eq!(run["run"]["status"], "timed_out");
    let (_, stored) = app.get(&format!("/api/runs/{run_id}/events"), &token).await;
    assert_eq!(stored["events"].as_array().unwrap(), &events);
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next_json().await["type"], "pong");
}

#[tokio::test]
async fn a_failing_tool_ends_the_run_with_run_failed() {
    let app = spawn_with(|_| (), |s| s.with_tool(std::sync::Arc::new(FailingTool("find_savings")))).await;
    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    let accepted = client.ask("Analyze my AI costs", None).await;
    let events = client.events_until_terminal().await;
    let failed_call = events.iter().find(|e| e["type"] == "tool_completed" && e["tool"] == "find_savings").unwrap();
    assert_eq!(failed_call["ok"], false);
    assert!(failed_call["error"].as_str().unwrap().contains("refused"));
    let last = events.last().unwrap();
    assert_eq!(last["type"], "run_failed");
    assert_eq!(last["code"], "tool_failed");
    let (_, run) = app.get(&format!("/api/runs/{}", accepted["run_id"].as_str().unwrap()), &token).await;
    assert_eq!(run["run"]["status"], "failed");
    assert_eq!(run["run"]["error_code"], "tool_failed");
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next_json().await["type"], "pong", "the connection is unharmed");
}

#[tokio::test]
async fn a_second_message_to_a_busy_thread_is_refused_with_thread_busy() {
    let app = slow_app(500).await;
    let mut client = connect(&app, By::Demo).await;
    let accepted = client.ask("Analyze my AI costs", None).await;
    client
        .send(json!({"type": "user_message", "text": "again", "thread_id": accepted["thread_id"], "client_message_id": "m2"}))
        .await;
    let reply = loop {
        let v = client.next_json().await;
        if v["type"] == "error" {
            break v;
        }
    };
    assert_eq!(reply["code"], "thread_busy");
    assert_eq!(reply["run_id"], accepted["run_id"]);
    assert_eq!(reply["client_message_id"], "m2");
    let events = client.events_until_terminal().await;
    assert_eq!(events.last().unwrap()["type"], "final_response");
    // Once the run is over the thread takes messages again.
    client.ask("again", accepted["thread_id"].as_str()).await;
}

#[tokio::test]
async fn a_resend_into_its_own_busy_thread_returns_the_original_run() {
    // The follow-up must still be running when the client has reconnected and resent:
    // long enough for a reconnect on a loaded machine.
    let app = slow_app(2_000).await;
    let mut first = connect(&app, By::Demo).await;
    first.ask("Analyze my AI costs", None).await;
    let done = first.events_until_terminal().await;
    let thread = done[0]["thread_id"].clone();
    // The follow-up is accepted, then the connection drops before the client saw it.
    first.send(json!({"type": "user_message", "text": "And savings?", "thread_id": thread, "client_message_id": "f1"})).await;
    let accepted = first.next_json().await;
    assert_eq!(accepted["type"], "message_accepted");
    let token = first.token.clone().unwrap();
    drop(first);
    let mut again = connect(&app, By::Header(token)).await;
    again.send(json!({"type": "user_message", "text": "And savings?", "thread_id": thread, "client_message_id": "f1"})).await;
    let resent = again.next_json().await;
    assert_eq!(resent["type"], "message_accepted", "{resent}");
    assert_eq!(resent["run_id"], accepted["run_id"]);
    // A different message into the still-busy thread is refused, naming the active run.
    again.send(json!({"type": "user_message", "text": "Other", "thread_id": thread, "client_message_id": "f2"})).await;
    let mut events = Vec::new();
    let mut refusal = None;
    while events.last().is_none_or(|e: &Value| !is_terminal(e)) {
        let v = again.next_json().await;
        if v["type"] == "error" {
            refusal = Some(v);
        } else {
            events.push(v);
        }
    }
    assert_golden_run(&events);
    let refusal = refusal.expect("the second message was refused");
    assert_eq!(refusal["code"], "thread_busy");
    assert_eq!(refusal["run_id"], accepted["run_id"]);
    assert_eq!(refusal["client_message_id"], "f2");
}

#[tokio::test]
async fn a_resent_client_message_id_returns_the_original_run() {
    let app = spawn_app().await;
    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    client.send(json!({"type": "user_message", "text": "Analyze my AI costs", "client_message_id": "once"})).await;
    let first = client.next_json().await;
    client.events_until_terminal().await;
    client.send(json!({"type": "user_message", "text": "Analyze my AI costs", "client_message_id": "once"})).await;
    let again = client.next_json().await;
    assert_eq!(again["type"], "message_accepted");
    assert_eq!(again["run_id"], first["run_id"]);
    let replay = client.events_until_terminal().await;
    assert_golden_run(&replay);
    let (_, threads) = app.get("/api/threads", &token).await;
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1, "no second thread or run");
}

#[tokio::test]
async fn a_follow_up_sent_the_moment_the_answer_arrives_is_accepted() {
    let app = spawn_app().await;
    let mut c = connect(&app, By::Demo).await;
    let first = c.ask("Analyze my AI costs", None).await;
    c.events_until_terminal().await;
    let thread = first["thread_id"].as_str().unwrap().to_owned();
    // The terminal event is the signal that the thread is free; a client that asks again
    // at once must never be told the thread is busy.
    for _ in 0..40 {
        c.ask("And how do I reduce spend?", Some(&thread)).await;
        c.events_until_terminal().await;
    }
}

/// A tool that panics the first time it is called, then behaves as the built-in one.
struct PanicsOnce {
    inner: std::sync::Arc<dyn apex_engine::DynTool>,
    panicked: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl apex_engine::DynTool for PanicsOnce {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn agent(&self) -> apex_protocol::AgentName {
        self.inner.agent()
    }
    fn description(&self) -> &str {
        self.inner.description()
    }
    fn parameters(&self) -> Value {
        self.inner.parameters()
    }
    async fn call(&self, ctx: &apex_engine::RunContext, args: Value) -> Result<apex_engine::ToolValue, apex_engine::ToolError> {
        if !self.panicked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("a bug in an agent's tool");
        }
        self.inner.call(ctx, args).await
    }
}

#[tokio::test]
async fn an_agent_that_panics_fails_its_run_and_the_connection_goes_on() {
    let tool =
        PanicsOnce { inner: apex_engine::tools::builtin().get("query_usage").cloned().unwrap(), panicked: Default::default() };
    let app = spawn_with(|_| (), |s| s.with_tool(std::sync::Arc::new(tool))).await;
    let mut c = connect(&app, By::Demo).await;
    c.ask("Analyze my AI costs", None).await;
    let events = c.events_until_terminal().await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "run_failed", "{last}");
    assert_eq!(last["code"], "internal", "{last}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "no gap before the failure");
    // The same socket goes on: the next question is answered in full.
    c.ask("Analyze my AI costs", None).await;
    assert_golden_run(&c.events_until_terminal().await);
    // And the failed run is stored as failed, with the same events.
    let token = c.token.clone().unwrap();
    let (status, run) = app.get(&format!("/api/runs/{}", last["run_id"].as_str().unwrap()), &token).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run"]["status"], "failed", "{run}");
}

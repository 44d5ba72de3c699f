//! A configured model plans with the agents, end to end over real sockets, against a
//! **scripted** OpenAI-compatible server: a stand-in for a frontier model (none can run on
//! this machine), so that the paths a 135M model cannot produce on demand are tested — a
//! plan of several tool calls, invalid arguments, a loop, a stall, a made-up name, a
//! repeated sentence, an answer that leaves its figure out. The real model through a real
//! server (llama-cpp-python) is in `models.rs`.
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use common::*;
use serde_json::{json, Value};

/// What the scripted model answers to one request.
enum Reply {
    /// Text, streamed in these pieces.
    Text(Vec<String>),
    /// Tool calls: name and the arguments as written.
    Calls(Vec<(&'static str, String)>),
    /// Headers and one piece, then nothing: a model that stalls mid-answer.
    Stall,
}

/// A request as the script reads it.
struct Request<'a>(&'a Value);

impl<'a> Request<'a> {
    fn messages(&self) -> &'a Vec<Value> {
        self.0["messages"].as_array().unwrap()
    }

    /// Whose turn it is: `data`, `optimization` or `answer`.
    fn stage(&self) -> &'static str {
        let last_user = self.messages().iter().rev().find(|m| m["role"] == "user").unwrap();
        let text = last_user["content"].as_str().unwrap();
        if text.starts_with("[data agent]") {
            "data"
        } else if text.starts_with("[optimization agent]") {
            "optimization"
        } else if text.starts_with("Now answer my question") {
            "answer"
        } else {
            "other"
        }
    }

    /// The results of the tools the model called since the agent's turn began.
    fn results(&self) -> Vec<Value> {
        let messages = self.messages();
        let start = messages.iter().rposition(|m| m["role"] == "user").unwrap();
        messages[start..]
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap_or(Value::Null))
            .collect()
    }

    fn tools(&self) -> Vec<&str> {
        self.0["tools"].as_array().map_or(Vec::new(), |t| t.iter().map(|t| t["function"]["name"].as_str().unwrap()).collect())
    }
}

type Script = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Scripted {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Scripted {
    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn scripted(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Scripted {
    let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
    let state: (Script, Arc<Mutex<Vec<Value>>>) = (Arc::new(script), requests.clone());
    let app = axum::Router::new().route("/v1/chat/completions", post(answer)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Scripted { url, requests }
}

async fn answer(State((script, requests)): State<(Script, Arc<Mutex<Vec<Value>>>)>, body: String) -> axum::response::Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    requests.lock().unwrap().push(request.clone());
    let reply = script(&Request(&request));
    let chunk =
        |delta: Value| format!("data: {}\n\n", json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] }));
    let end = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":500,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n";
    let sse = |body: Body| axum::response::Response::builder().header("content-type", "text/event-stream").body(body).unwrap();
    match reply {
        Reply::Text(pieces) => {
            let mut out: String = pieces.into_iter().map(|p| chunk(json!({ "content": p }))).collect();
            out.push_str(end);
            sse(Body::from(out))
        }
        Reply::Calls(calls) => {
            let mut out = String::new();
            for (i, (name, args)) in calls.into_iter().enumerate() {
                let call = json!({ "index": i, "id": format!("call_{i}"), "type": "function", "function": { "name": name, "arguments": args } });
                out.push_str(&chunk(json!({ "tool_calls": [call] })));
            }
            out.push_str(end);
            sse(Body::from(out))
        }
        Reply::Stall => {
            let first = chunk(json!({ "content": "Looking" }));
            let stream =
                futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(futures_util::stream::pending());
            sse(Body::from_stream(stream))
        }
    }
}

use futures_util::StreamExt;

fn with_model(url: &str) -> impl FnOnce(&mut apex_server::Settings) {
    let url = url.to_owned();
    move |s: &mut apex_server::Settings| {
        s.llm = "openai".into();
        s.openai_base_url = url;
        s.llm_model = Some("scripted".into());
        s.llm_timeout = Duration::from_secs(1);
    }
}

/// Micro-dollars as the model would write them: `$1,234.57`.
fn dollars(micros: i64) -> String {
    let cents = (micros + 5_000) / 10_000;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{:02}", cents % 100)
}

/// Asks `question` as `user`, whose usage is the month in `tests/fixtures/usage.csv`.
async fn run(app: &TestApp, user: &str, question: &str, thread: Option<&str>) -> (Client, Value, Vec<Value>) {
    let token = app.token(user);
    let (_, summary) = app.get("/api/usage/summary", &token).await;
    if summary["requests"].as_u64().unwrap_or(0) == 0 {
        app.import_fixture(&token).await;
    }
    let mut client = connect(app, By::Subprotocol(token)).await;
    let accepted = client.ask(question, thread).await;
    let events = client.events_until_terminal().await;
    (client, accepted, events)
}

async fn report_model(app: &TestApp, client: &Client, accepted: &Value) -> Value {
    let token = client.token.clone().unwrap();
    let (status, run) = app.get(&format!("/api/runs/{}", accepted["run_id"].as_str().unwrap()), &token).await;
    assert_eq!(status, 200);
    let report = run["agent_results"].as_array().unwrap().iter().find(|a| a["agent"] == "report").cloned().unwrap();
    report["output"]["model"].clone()
}

fn thoughts<'a>(events: &'a [Value], agent: &str) -> Vec<&'a str> {
    events.iter().filter(|e| e["type"] == "agent_thinking" && e["agent"] == agent).map(|e| e["text"].as_str().unwrap()).collect()
}

/// The built-in answer to `question` (no model), for comparison.
async fn built_in(question: &str) -> String {
    let app = spawn_with(|_| {}, |s| s).await;
    let (_, _, events) = run(&app, "analyst", question, None).await;
    assert_golden_run(&events)
}

const QUESTION: &str = "Which feature costs the most?";

#[tokio::test]
async fn the_model_plans_tool_calls_under_their_agents_and_its_answer_is_held_to_the_facts() {
    let model = scripted(|r| match (r.stage(), r.results().len()) {
        // Two calls at once, of the data agent's tools, with arguments of its choosing.
        ("data", 0) => Reply::Calls(vec![("query_slice", r#"{"group_by":"model"}"#.into()), ("explain_change", "{}".into())]),
        ("data", _) => Reply::Text(vec!["Spend is concentrated in ".into(), "one model.".into()]),
        ("optimization", _) => Reply::Text(vec!["Nothing more to price.".into()]),
        ("answer", _) => {
            // The figure the model read in its own tool call, then what the guards catch.
            let slice = r.messages().iter().find_map(|m| {
                let v: Value = serde_json::from_str(m["content"].as_str()?).ok()?;
                v["groups"][0]["cost"].as_i64().map(|c| (v["groups"][0]["key"].as_str().unwrap().to_owned(), c))
            });
            let (top_model, cost) = slice.expect("the model's query_slice result is in the conversation");
            Reply::Text(vec![
                "Your features differ a lot. ".into(),
                format!("The model {top_model} took {} of it. ", dollars(cost)),
                "Caching long prompts pays off. ".into(),
                "Caching long prompts pays off.\n".into(),
                "The feature `chat-summarizer-v2` grows fastest. ".into(),
                "I state only figures that appear in the FACTS. ".into(),
                "Ask me what a cheaper model would save.".into(),
            ])
        }
        _ => Reply::Text(vec!["?".into()]),
    })
    .await;
    let app = spawn_with(with_model(&model.url), |s| s).await;
    let (client, accepted, events) = run(&app, "analyst", QUESTION, None).await;
    let answer = assert_golden_run_streamed_in(&events, 1);

    // The model's calls are the data agent's, after its own, before it completes.
    let data_done = events.iter().position(|e| e["type"] == "agent_completed" && e["agent"] == "data").unwrap();
    let calls: Vec<(&str, &str, Value, usize)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["type"] == "tool_executing")
        .map(|(i, e)| (e["agent"].as_str().unwrap(), e["tool"].as_str().unwrap(), e["args"].clone(), i))
        .collect();
    let by_model =
        calls.iter().find(|c| c.1 == "query_slice" && c.2 == json!({ "group_by": "model" })).expect("the model's call");
    assert_eq!(by_model.0, "data");
    assert!(by_model.3 < data_done);
    let explained = calls.iter().find(|c| c.1 == "explain_change").unwrap();
    assert_eq!(explained.0, "data");
    for e in events.iter().filter(|e| e["type"] == "tool_completed") {
        assert_eq!(e["ok"], true, "{e}");
    }
    assert!(thoughts(&events, "data").contains(&"The model: Spend is concentrated in one model."), "{events:?}");
    assert!(thoughts(&events, "supervisor").iter().any(|t| t.contains("plans with the agents")), "{events:?}");
    // Every agent started, thought and completed once, in order.
    let started: Vec<&str> =
        events.iter().filter(|e| e["type"] == "agent_started").map(|e| e["agent"].as_str().unwrap()).collect();
    assert_eq!(started, ["supervisor", "triage", "data", "report"]);

    // Held to the facts: the computed answer first (the model's first sentence had no
    // figure), the model's own figure kept, the repeat, the made-up name and the quoted
    // instructions gone.
    let reference = built_in(QUESTION).await;
    let lead = reference.split("\n\n").next().unwrap();
    assert!(answer.starts_with(lead), "the computed lead goes first:\n{answer}\n---\n{reference}");
    assert!(answer.contains("Your features differ a lot."), "{answer}");
    assert!(answer.contains(" took $"), "{answer}");
    assert_eq!(answer.matches("Caching long prompts pays off.").count(), 1, "{answer}");
    assert!(!answer.contains("chat-summarizer-v2"), "{answer}");
    assert!(!answer.contains("FACTS"), "{answer}");
    let held = thoughts(&events, "report").into_iter().find(|t| t.starts_with("Held to the facts")).expect("said");
    assert!(held.contains("repeated") && held.contains("not in your data") && held.contains("instructions"), "{held}");

    let model_result = report_model(&app, &client, &accepted).await;
    assert_eq!(
        model_result["guards"],
        json!({ "figure": 0, "name": 1, "repeat": 1, "prompt": 1, "direct_first": 1 }),
        "{model_result}"
    );
    assert_eq!(model_result["tool_calls"], 2);
    assert_eq!(model_result["planned"], true);
    assert!(model_result["fallback"].is_null());
    // Every request's tokens: data (2 requests), optimization, answer.
    let requests = model.requests();
    assert_eq!(model_result["gen_ai.usage.input_tokens"], json!(500 * requests.len()), "{model_result}");
    let metrics = apex_telemetry::parse(&http_client().get(app.http("/metrics")).send().await.unwrap().text().await.unwrap());
    let guard = |g: &str| {
        metrics
            .iter()
            .filter(|m| m.name == "apex_answer_guards_total" && m.label("guard") == Some(g))
            .map(|m| m.value)
            .sum::<f64>()
    };
    assert_eq!((guard("name"), guard("repeat"), guard("prompt"), guard("direct_first")), (1.0, 1.0, 1.0, 1.0));

    // What the model was given: the parsed question, the data agent's tools only on its turn.
    let first = &requests[0];
    let question = Request(first)
        .messages()
        .iter()
        .rev()
        .find(|m| m["role"] == "user" && m["content"].as_str().unwrap().starts_with(QUESTION));
    assert!(question.unwrap()["content"].as_str().unwrap().contains("Read as:"), "{first}");
    assert_eq!(Request(first).tools(), ["detect_anomalies", "explain_change", "query_slice", "query_usage"]);
    assert_eq!(first["temperature"], 0.0);
}

#[tokio::test]
async fn the_model_reads_the_threads_history() {
    let model = scripted(|r| match r.stage() {
        "answer" => Reply::Text(vec!["Here is what I found.".into()]),
        _ => Reply::Text(vec!["Enough.".into()]),
    })
    .await;
    let app = spawn_with(with_model(&model.url), |s| s).await;
    let (mut client, accepted, events) = run(&app, "analyst", "Analyze my AI costs", None).await;
    let first_answer = assert_golden_run_streamed_in(&events, 1);
    let thread = accepted["thread_id"].as_str().unwrap().to_owned();
    let before = model.requests().len();
    client.ask("And which model costs the most?", Some(&thread)).await;
    let events = client.events_until_terminal().await;
    assert_golden_run_streamed_in(&events, 1);
    let request = &model.requests()[before];
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[1]["content"], "Analyze my AI costs", "{request}");
    assert_eq!(messages[2]["role"], "assistant");
    let earlier = messages[2]["content"].as_str().unwrap();
    assert!(first_answer.starts_with(earlier.trim_end_matches('…')), "the earlier answer, cut short: {earlier}");
    assert!(thoughts(&events, "supervisor").iter().any(|t| t.contains("last 2 messages")), "{events:?}");
}

#[tokio::test]
async fn the_model_reads_only_the_branch_of_the_message_it_answers() {
    let model = scripted(|r| match r.stage() {
        "answer" => Reply::Text(vec!["Here is what I found.".into()]),
        _ => Reply::Text(vec!["Enough.".into()]),
    })
    .await;
    let app = spawn_with(with_model(&model.url), |s| s).await;
    let (mut client, accepted, _) = run(&app, "analyst", "Analyze my AI costs", None).await;
    let thread = accepted["thread_id"].as_str().unwrap().to_owned();
    let replaced = client.ask("Which model costs the most?", Some(&thread)).await;
    client.events_until_terminal().await;
    let before = model.requests().len();
    let edit = json!({"type": "user_message", "thread_id": thread, "edit_of": replaced["message_id"], "text": "Which project costs the most?"});
    client.send(edit).await;
    assert_eq!(client.next_json().await["type"], "message_accepted");
    assert_golden_run_streamed_in(&client.events_until_terminal().await, 1);
    let request = &model.requests()[before];
    let said: Vec<&str> = request["messages"].as_array().unwrap()[1..].iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(said[0], "Analyze my AI costs", "{request}");
    assert!(!said.iter().any(|m| m.contains("Which model costs the most?")), "the replaced branch is not history: {said:?}");
    assert!(said.iter().any(|m| m.starts_with("Which project costs the most?")), "{said:?}");
}

/// The run ends with the built-in answer, and the data agent says why the model was dropped.
async fn assert_dropped(model: &Scripted, because: &str, question: &str) -> Vec<Value> {
    let app = spawn_with(with_model(&model.url), |s| s).await;
    let started = Instant::now();
    let (_, _, events) = run(&app, "analyst", question, None).await;
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let answer = assert_golden_run_with(&events, 2, true);
    let said = thoughts(&events, "data").into_iter().find(|t| t.contains("built-in planner")).expect("the fallback is said");
    assert!(said.contains(because), "{said}");
    assert_eq!(answer, built_in(question).await, "the built-in planner and writer answered");
    assert!(model.requests().iter().all(|r| Request(r).stage() != "answer"), "the model is not asked again");
    events
}

#[tokio::test]
async fn invalid_arguments_go_back_to_the_model_once_then_the_built_in_planner_answers() {
    let model = scripted(|_| Reply::Calls(vec![("query_slice", r#"{"group_by":"planet"}"#.into())])).await;
    let events = assert_dropped(&model, "invalid arguments twice", QUESTION).await;
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "one more chance after the first error");
    let told = Request(&requests[1]).results();
    assert!(told[0]["error"].as_str().unwrap().contains("invalid arguments"), "{told:?}");
    let failed = events.iter().filter(|e| e["type"] == "tool_completed" && e["ok"] == false).count();
    assert_eq!(failed, 2, "both calls are streamed, failed");
}

#[tokio::test]
async fn a_model_repeating_a_call_is_a_loop_and_is_dropped() {
    let model = scripted(|_| Reply::Calls(vec![("query_usage", "{}".into())])).await;
    assert_dropped(&model, "a loop", QUESTION).await;
    assert_eq!(model.requests().len(), 2);
}

#[tokio::test]
async fn a_model_that_stalls_while_planning_is_dropped_within_its_timeout() {
    let model = scripted(|_| Reply::Stall).await;
    assert_dropped(&model, "did not answer within", QUESTION).await;
}

#[tokio::test]
async fn a_tool_of_another_agent_is_refused_and_the_model_goes_on() {
    let model = scripted(|r| match (r.stage(), r.results().len()) {
        ("data", 0) => Reply::Calls(vec![("what_if", r#"{"to_model":"gpt-4o-mini"}"#.into())]),
        ("answer", _) => Reply::Text(vec!["Done.".into()]),
        _ => Reply::Text(vec!["Enough.".into()]),
    })
    .await;
    let app = spawn_with(with_model(&model.url), |s| s).await;
    let (_, _, events) = run(&app, "analyst", QUESTION, None).await;
    assert_golden_run_streamed_in(&events, 1);
    assert!(events.iter().all(|e| e["tool"] != "what_if"), "not run by the data agent");
    let told = model.requests().iter().find_map(|r| Request(r).results().first().cloned()).unwrap();
    assert!(told["error"].as_str().unwrap().contains("not a tool of the data agent"), "{told}");
}

#[tokio::test]
async fn a_demo_answer_written_by_a_model_always_says_it_is_demo_data() {
    let model = scripted(|r| match r.stage() {
        "answer" => Reply::Text(vec!["Most of your spend is on one feature.".into()]),
        _ => Reply::Text(vec!["Enough.".into()]),
    })
    .await;
    let app = spawn_with(with_model(&model.url), |s| s).await;
    let mut client = connect(&app, By::Demo).await;
    client.ask(QUESTION, None).await;
    let answer = assert_golden_run_streamed_in(&client.events_until_terminal().await, 1);
    assert!(answer.contains("Most of your spend is on one feature."), "{answer}");
    assert!(answer.contains("built-in demo dataset, not from your usage"), "{answer}");
}

/// `apex eval` through a configured model: the whole bank asked of a server whose model
/// plans (one tool call per question) and then invents — a name not in the data, a figure
/// no tool computed, a repeated sentence, no direct answer. The table is the built-in
/// writer's, with what the guards changed; the share answered holds, because what the
/// model invents never reaches the user and the computed answer is put first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_eval_runs_the_bank_through_a_configured_model_and_counts_what_the_guards_changed() {
    let model = scripted(|r| match (r.stage(), r.results().len()) {
        ("data", 0) => Reply::Calls(vec![("query_slice", r#"{"group_by":"feature"}"#.into())]),
        ("answer", _) => Reply::Text(vec![
            "Most of it goes to `turbo-widget-9`. ".into(),
            "The total was $987,654.32 this period. ".into(),
            "Spend follows the weekdays. ".into(),
            "Spend follows the weekdays.\n".into(),
        ]),
        _ => Reply::Text(vec!["Noted.".into()]),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("apex.toml");
    std::fs::write(&config, format!("openai_base_url = \"{}\"\nllm_model = \"scripted\"\n", model.url)).unwrap();
    let writer = apex_eval::Writer { llm: Some("openai".into()), llm_mode: None };
    let report = apex_eval::evaluate(Some(&config), &writer).await.expect("the bank runs");
    println!("{}{}", report.failures(), report.table());

    assert!(report.writer.contains("scripted") && report.writer.contains("(plan)"), "{}", report.writer);
    assert!(report.table().contains("guards (sentences changed)"), "{}", report.table());
    assert!(report.outcomes.iter().all(|o| o.error.is_none()), "every question gets an answer:\n{}", report.failures());
    let written = report.outcomes.iter().filter(|o| o.model.is_some()).count();
    assert!(written * 10 >= report.questions * 9, "{written} of {} answers written by the model", report.questions);
    for o in &report.outcomes {
        assert!(!o.answer.contains("turbo-widget-9") && !o.answer.contains("987,654.32"), "{}: {}", o.question.text, o.answer);
        assert_eq!(
            o.answer.matches("Spend follows the weekdays.").count().min(1),
            o.answer.matches("Spend follows the weekdays.").count()
        );
    }
    for guard in ["name", "figure", "repeat"] {
        assert!(report.guards.get(guard).copied().unwrap_or(0) >= written as u64, "{guard}: {:?} over {written}", report.guards);
    }
    // Where the figure guard's replacement is not already the computed answer.
    assert!(report.guards.get("direct_first").copied().unwrap_or(0) > 0, "{:?}", report.guards);
    assert!(report.tool_calls >= written as u64, "{} tool calls", report.tool_calls);
    assert_eq!(report.fallbacks, 0);
    // The model wrote nothing the eval counts; the computed answer, put first, did.
    assert!(report.share >= 95.0, "{:.1}% answered:\n{}", report.share, report.failures());
}

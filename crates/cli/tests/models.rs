//! Language models writing the answer, end to end over real sockets: a real
//! OpenAI-compatible server (llama-cpp-python serving SmolLM2), a server that states a
//! figure the tools never computed, and model servers that are dead or stall.
mod common;

use std::time::{Duration, Instant};

use apex_engine::agents::{sentences, Grounding};
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// The tests that run a model on this machine's CPU take turns: the `model-cpu` test group
// in .config/nextest.toml (on two cores, running two at once would only measure how slow a
// shared CPU is).

fn openai(url: &str, timeout_secs: f64) -> impl FnOnce(&mut apex_server::Settings) {
    let url = url.to_owned();
    move |s: &mut apex_server::Settings| {
        s.llm = "openai".into();
        s.openai_base_url = url;
        s.llm_model = Some("smollm2".into());
        s.llm_timeout = std::time::Duration::from_secs_f64(timeout_secs);
        s.run_timeout = std::time::Duration::from_secs_f64(120.0);
    }
}

/// The results of every tool call of the run, from its events.
fn tool_results(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| e["type"] == "tool_completed").map(|e| e["result"].clone()).collect()
}

/// Every sentence of `text` states only figures found in the run's tool results.
fn assert_grounded(text: &str, events: &[Value]) {
    let results = tool_results(events);
    let refs: Vec<&Value> = results.iter().collect();
    let g = Grounding::new("", &refs);
    for s in sentences(text) {
        let unsupported = g.unsupported(&s);
        assert!(unsupported.is_empty(), "figures the tools did not compute: {unsupported:?} in {s:?}\nin {text}");
    }
}

async fn report_result(app: &TestApp, token: &str, run_id: &str) -> Value {
    let (status, run) = app.get(&format!("/api/runs/{run_id}"), token).await;
    assert_eq!(status, 200);
    let report = run["agent_results"].as_array().unwrap().iter().find(|a| a["agent"] == "report").cloned().unwrap();
    report["output"].clone()
}

#[tokio::test]
async fn a_real_model_writes_a_grounded_answer_that_streams_from_its_first_sentence() {
    let llama = llama_server().await;
    // A short answer keeps the test quick on a busy machine; it is still many sentences.
    let openai = openai(&llama.url, 60.0);
    let layer = |s: &mut apex_server::Settings| {
        openai(s);
        s.llm_max_tokens = 80;
        s.run_timeout = Duration::from_secs(240);
    };
    let app = spawn_with(layer, |s| s).await;
    let mut client = connect(&app, By::Demo).await;
    let accepted = client.ask("Analyze my AI costs", None).await;
    let started = Instant::now();
    let mut first_delta = None;
    let mut events = Vec::new();
    // The model runs on this machine's CPU: allow it far more than the usual frame wait.
    let deadline = Instant::now() + Duration::from_secs(200);
    loop {
        let Frame::Json(v) = client.next_frame_within(deadline - Instant::now()).await else { panic!("closed") };
        if v["type"] == "response_delta" && first_delta.is_none() {
            first_delta = Some(started.elapsed());
        }
        let terminal = is_terminal(&v);
        events.push(v);
        if terminal {
            break;
        }
    }
    let total = started.elapsed();
    // The model planned: it was consulted by the agents (the reference model does not call
    // tools unless made to: what it says is shown only where it holds to the facts).
    let thoughts: Vec<&str> =
        events.iter().filter(|e| e["type"] == "agent_thinking").map(|e| e["text"].as_str().unwrap()).collect();
    assert!(thoughts.iter().any(|t| t.contains("plans with the agents")), "{thoughts:?}");
    for t in thoughts.iter().filter(|t| t.starts_with("The model:")) {
        assert!(!t.contains("{\"") && !t.contains("Its result"), "an echo of its prompt is not a thought: {t}");
    }
    let answer = assert_golden_run_with(&events, 2, true);
    assert_grounded(&answer, &events);
    let first_delta = first_delta.expect("deltas");
    assert!(first_delta < total, "the first sentence arrives before the model has finished ({first_delta:?} of {total:?})");
    let fallback =
        events.iter().any(|e| e["type"] == "agent_thinking" && e["text"].as_str().unwrap().contains("built-in writer"));
    assert!(!fallback, "the model wrote the answer: {events:?}");

    let token = client.token.clone().unwrap();
    let model = report_result(&app, &token, accepted["run_id"].as_str().unwrap()).await["model"].clone();
    assert_eq!(model["gen_ai.system"], "openai");
    assert_eq!(model["gen_ai.request.model"], "smollm2");
    assert!(model["gen_ai.usage.input_tokens"].as_u64().unwrap() > 100, "{model}");
    assert!(model["gen_ai.usage.output_tokens"].as_u64().unwrap() > 0, "{model}");
    assert!(model["fallback"].is_null(), "{model}");
}

/// An OpenAI-compatible server that streams a fixed answer: one sentence that quotes the
/// first dollar figure of the facts it was sent, and one that states a made-up figure.
async fn inventive_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let request = read_http_request(&mut socket).await;
                let body: Value = serde_json::from_slice(&request).unwrap();
                let facts = body["messages"][0]["content"].as_str().unwrap();
                let at = facts.find('$').unwrap();
                let end = facts[at..].find(|c: char| c.is_whitespace()).map_or(facts.len(), |e| at + e);
                let quoted = facts[at..end].trim_end_matches(['.', ',', ')']);
                let pieces = [
                    format!("Your AI spend came to {quoted} this period. "),
                    "Switching models would save $987,654.32 per month.\n".to_owned(),
                    "Ask me which feature costs most.".to_owned(),
                ];
                let mut sse = String::new();
                for p in pieces {
                    let chunk = serde_json::json!({"choices":[{"index":0,"delta":{"content":p},"finish_reason":null}]});
                    sse.push_str(&format!("data: {chunk}\n\n"));
                }
                sse.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":900,\"completion_tokens\":40}}\n\ndata: [DONE]\n\n");
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(format!("{head}{sse}").as_bytes()).await;
            });
        }
    });
    url
}

async fn read_http_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).unwrap().trim().parse().unwrap();
            while buf.len() < end + 4 + length {
                let n = socket.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            return buf[end + 4..end + 4 + length].to_vec();
        }
    }
}

#[tokio::test]
async fn a_figure_the_tools_did_not_compute_is_replaced_and_counted() {
    let url = inventive_server().await;
    // The model phrases the computed answer (its FACTS are the first message it gets).
    let phrase = |s: &mut apex_server::Settings| {
        openai(&url, 5.0)(s);
        s.llm_mode = Some("phrase".into());
    };
    let app = spawn_with(phrase, |s| s).await;
    let mut client = connect(&app, By::Demo).await;
    let accepted = client.ask("Analyze my AI costs", None).await;
    let events = client.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    assert!(!answer.contains("987,654"), "{answer}");
    assert!(answer.starts_with("Your AI spend came to $"), "a grounded sentence is kept as the model wrote it: {answer}");
    assert!(answer.contains("Ask me which feature costs most."), "{answer}");
    assert!(answer.trim_end().ends_with("and ask again._"), "the demo notice, which the model left out: {answer}");
    assert_grounded(&answer, &events);
    let token = client.token.clone().unwrap();
    let model = report_result(&app, &token, accepted["run_id"].as_str().unwrap()).await["model"].clone();
    assert_eq!(model["grounding_replacements"], 1, "{model}");
    assert_eq!(
        (model["gen_ai.usage.input_tokens"].as_u64(), model["gen_ai.usage.output_tokens"].as_u64()),
        (Some(900), Some(40))
    );

    // Tokens and replacements are in the metrics (this test is a process of its own).
    let metrics = apex_telemetry::parse(&http_client().get(app.http("/metrics")).send().await.unwrap().text().await.unwrap());
    let tokens = |kind: &str| {
        metrics
            .iter()
            .filter(|m| m.name == "apex_llm_tokens_total" && m.label("kind") == Some(kind))
            .map(|m| m.value)
            .sum::<f64>()
    };
    assert_eq!((tokens("input"), tokens("output")), (900.0, 40.0));
    assert_eq!(apex_telemetry::total(&metrics, "apex_grounding_replacements_total"), 1.0);

    // Apex's own model usage is usage data of the `apex` account, the asker as its user tag.
    let own = app.token(apex_engine::OWN_USAGE_ACCOUNT);
    let (status, by_user) = app.get("/api/usage/summary?group_by=user", &own).await;
    assert_eq!(status, 200);
    assert_eq!((by_user["input_tokens"].as_u64(), by_user["output_tokens"].as_u64()), (Some(900), Some(40)), "{by_user}");
    assert_eq!(by_user["groups"][0]["key"], client.user_id.as_str(), "{by_user}");
    let (_, by_feature) = app.get("/api/usage/summary?group_by=feature", &own).await;
    assert_eq!(by_feature["groups"][0]["key"], "apex-report", "{by_feature}");
    // The asker's own data is untouched: still the demo dataset, without Apex's row.
    let (_, theirs) = app.get("/api/usage/summary?group_by=feature", &token).await;
    assert!(theirs["groups"].as_array().unwrap().iter().all(|g| g["key"] != "apex-report"), "{theirs}");
    // The next answer is another span of the same account: summed, never replaced.
    client.ask("Analyze my AI costs", Some(accepted["thread_id"].as_str().unwrap())).await;
    assert_golden_run(&client.events_until_terminal().await);
    let (_, again) = app.get("/api/usage/summary", &own).await;
    assert_eq!((again["requests"].as_u64(), again["input_tokens"].as_u64()), (Some(2), Some(1800)), "{again}");
}

/// The run ends in the built-in answer; in `phrase` mode the report agent says why, in
/// `plan` mode the agent the model was working for when it failed (data).
async fn assert_falls_back(layer: impl FnOnce(&mut apex_server::Settings), within: Duration, mode: &'static str) {
    let layer = move |s: &mut apex_server::Settings| {
        layer(s);
        s.llm_mode = Some(mode.into());
    };
    let (agent, says) =
        if mode == "plan" { ("data", "the built-in planner and writer") } else { ("report", "the built-in writer") };
    let app = spawn_with(layer, |s| s).await;
    let mut client = connect(&app, By::Demo).await;
    let started = Instant::now();
    client.ask("Analyze my AI costs", None).await;
    let events = client.events_until_terminal().await;
    assert!(started.elapsed() < within, "{:?}", started.elapsed());
    let answer = assert_golden_run(&events);
    assert!(answer.starts_with("## Your AI spend: $"), "the built-in writer answered: {answer}");
    let said = events
        .iter()
        .find(|e| e["type"] == "agent_thinking" && e["text"].as_str().unwrap().contains(says))
        .expect("the fallback is announced");
    assert_eq!(said["agent"], agent, "{said}");
    assert!(said["text"].as_str().unwrap().contains("smollm2"), "{said}");
}

#[tokio::test]
async fn a_dead_model_server_ends_in_the_built_in_writer_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_falls_back(openai(&format!("http://127.0.0.1:{port}/v1"), 2.0), Duration::from_secs(10), "plan").await;
    assert_falls_back(openai(&format!("http://127.0.0.1:{port}/v1"), 2.0), Duration::from_secs(10), "phrase").await;
}

#[tokio::test]
async fn a_model_server_that_stalls_ends_in_the_built_in_writer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    // Three attempts of one second each, plus backoff: well within the run.
    assert_falls_back(openai(&url, 1.0), Duration::from_secs(10), "phrase").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_local_model_writes_a_grounded_answer() {
    let layer = |s: &mut apex_server::Settings| {
        s.llm = "local".into();
        s.llm_model_path = Some(test_gguf());
        s.llm_max_tokens = 48;
        s.run_timeout = std::time::Duration::from_secs_f64(240.0);
    };
    let app = spawn_with(layer, |s| s).await;
    let mut client = connect(&app, By::Demo).await;
    // An off-topic question has a short computed answer: a short prompt for a CPU model.
    let accepted = client.ask("tell me a joke", None).await;
    let deadline = Instant::now() + Duration::from_secs(200);
    let mut events = Vec::new();
    loop {
        let Frame::Json(v) = client.next_frame_within(deadline - Instant::now()).await else { panic!("closed") };
        let terminal = is_terminal(&v);
        events.push(v);
        if terminal {
            break;
        }
    }
    // 48 tokens may be a single sentence: one delta (streaming itself is tested in
    // crates/llm/tests/local.rs and, end to end, with the llama.cpp server above).
    let answer = assert_golden_run_streamed_in(&events, 1);
    assert_grounded(&answer, &events);
    let token = client.token.clone().unwrap();
    let model = report_result(&app, &token, accepted["run_id"].as_str().unwrap()).await["model"].clone();
    assert_eq!(model["gen_ai.system"], "local", "{model}");
    assert!(model["fallback"].is_null(), "the embedded model wrote the answer: {model}");
    assert!(model["gen_ai.usage.output_tokens"].as_u64().unwrap() > 0, "{model}");
}

/// `apex serve` with the local model and `APEX_LLM_THREADS=n`, after one answer: how many
/// threads the process has (the model's thread pools are sized when it first computes).
async fn threads_after_a_local_answer(n: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn_serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("APEX_DATA_DIR", dir.path())
            .env("DEMO_MODE", "1")
            .env("APEX_LLM", "local")
            .env("APEX_LLM_MODEL_PATH", test_gguf())
            .env("APEX_LLM_MAX_TOKENS", "4")
            .env("APEX_LLM_THREADS", n.to_string())
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL"),
    )
    .await;
    let mut client = try_connect(&format!("ws://{addr}/ws"), By::Demo).await.unwrap();
    client.ask("tell me a joke", None).await;
    let events = tokio::time::timeout(Duration::from_secs(200), client.events_until_terminal()).await.unwrap();
    let model_wrote = events.iter().any(|e| e["type"] == "response_delta");
    let fallback = events.iter().find(|e| e["type"] == "agent_thinking" && e["text"].as_str().unwrap_or("").contains("failed"));
    let threads = std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap().count();
    drop(child);
    assert!(model_wrote && fallback.is_none(), "the local model answered: {events:?}");
    threads
}

fn test_gguf() -> std::path::PathBuf {
    std::env::var_os("APEX_TEST_GGUF").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/apex-test/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_llm_threads_sizes_the_local_models_thread_pool() {
    let one = threads_after_a_local_answer(1).await;
    let four = threads_after_a_local_answer(4).await;
    // Everything else in the process is the same; the model's pools differ by 3 threads each.
    assert!(four >= one + 3, "APEX_LLM_THREADS=4 gave {four} threads, =1 gave {one}");
}

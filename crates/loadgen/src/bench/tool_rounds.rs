//! `apex bench --tool-rounds RUNS`: what the planning loop adds per tool round-trip, beyond
//! the tool's own time.
//!
//! The bench starts a stand-in provider (an HTTP server in this process answering Chat
//! Completions; no model behind it) and `apex serve` with `APEX_LLM=openai` pointed at it,
//! then runs golden-path runs one after the other over a WebSocket. When the data agent
//! hands its result to the model, the stand-in calls one of the agent's tools per reply
//! (`query_slice`, a different breakdown each round, so that no call repeats), `--tool-calls`
//! rounds, then answers in a sentence; the other turns get a sentence at once.
//!
//! A round-trip is the stand-in's view of one round: from the moment its reply with the
//! tool call is handed to the HTTP server to the moment the next request (carrying the
//! tool's result) arrives. It holds everything the loop does: reading the reply, checking
//! the arguments, running the tool (its `tool_executing` and `tool_completed` events
//! committed to the store and fanned out), guarding what the model said, and the next
//! request. The tool's own time (`duration_us` of its `tool_completed`, as the client
//! receives it) is subtracted. The floor, measured alongside in the same run, is the same
//! gap for a bare client that sends the next request as soon as it has read a reply: the
//! loopback HTTP round-trip that no loop can avoid.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde::Serialize;
use serde_json::{json, Value};

use super::deployments::{fmt_load, load_average};
use super::{golden_run, stand_in_listener, Backend, BenchArgs, Latencies, Percentiles, ServerProcess};

/// The breakdowns the stand-in asks for, one per round (distinct calls: no loop).
const BREAKDOWNS: [&str; 8] = ["model", "feature", "project", "provider", "environment", "day", "user", "api_key"];
/// Bare round-trips measured per run for the floor.
const BARE_ROUNDS: usize = 8;

#[derive(Serialize)]
struct Report {
    runs: usize,
    tool_calls_per_run: usize,
    /// Round-trip minus the tool's own time: what the loop adds per tool call.
    loop_overhead_ms: Percentiles,
    /// The tool's own time (`duration_us` of its `tool_completed`).
    tool_ms: Percentiles,
    /// The whole round-trip as the provider sees it.
    round_trip_ms: Percentiles,
    /// The same gap for a bare HTTP client (the loopback floor).
    bare_round_trip_ms: Percentiles,
    /// Rounds whose next request or `tool_completed` never came.
    rounds_missing: usize,
    runs_failed: usize,
    first_failure: Option<String>,
    load_average_before: Option<[f64; 3]>,
    load_average_after: Option<[f64; 3]>,
}

pub async fn run(args: &BenchArgs, runs: usize) -> anyhow::Result<i32> {
    ensure!(runs > 0, "--tool-rounds needs at least one run");
    let calls = args.tool_calls;
    ensure!((1..=BREAKDOWNS.len()).contains(&calls), "--tool-calls must be 1 to {}", BREAKDOWNS.len());
    let epoch = Instant::now();
    let provider = StandIn::start(epoch, calls).await?;
    let env = [
        ("APEX_LLM", "openai".to_owned()),
        ("OPENAI_BASE_URL", provider.base_url.clone()),
        ("OPENAI_API_KEY", "stand-in".to_owned()),
        ("APEX_LLM_MODEL", "stand-in".to_owned()),
        ("APEX_LLM_MODE", "plan".to_owned()),
        ("APEX_LLM_MAX_STEPS", calls.to_string()),
    ];
    let server = ServerProcess::start_with(&Backend::Sqlite, &env).await?;
    let load_average_before = load_average();
    let http = reqwest::Client::new();
    // One warm-up of each, not counted.
    let _ = one_run(&server.url, &provider, calls).await;
    let _ = bare(&http, &provider, BARE_ROUNDS).await;
    let (mut overhead, mut tool, mut round_trip, mut floor) =
        (Latencies::default(), Latencies::default(), Latencies::default(), Latencies::default());
    let (mut missing, mut failed, mut first_failure) = (0, 0, None);
    for _ in 0..runs {
        match one_run(&server.url, &provider, calls).await {
            Ok(rounds) => {
                missing += calls.saturating_sub(rounds.len());
                for r in rounds {
                    round_trip.record(r.gap);
                    tool.record(r.tool);
                    overhead.record(r.gap.saturating_sub(r.tool));
                }
            }
            Err(e) => {
                failed += 1;
                missing += calls;
                first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        bare(&http, &provider, BARE_ROUNDS).await?.into_iter().for_each(|g| floor.record(g));
    }
    drop(server);
    let report = Report {
        runs,
        tool_calls_per_run: calls,
        loop_overhead_ms: overhead.summary(),
        tool_ms: tool.summary(),
        round_trip_ms: round_trip.summary(),
        bare_round_trip_ms: floor.summary(),
        rounds_missing: missing,
        runs_failed: failed,
        first_failure,
        load_average_before,
        load_average_after: load_average(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(if report.rounds_missing == 0 && report.runs_failed == 0 { 0 } else { 1 })
}

impl Report {
    fn print_table(&self) {
        println!(
            "Tool rounds: {} runs × {} tool calls planned by a stand-in provider on loopback; load average {} → {}",
            self.runs,
            self.tool_calls_per_run,
            fmt_load(self.load_average_before),
            fmt_load(self.load_average_after)
        );
        println!();
        println!("| per tool round-trip | rounds | p50 | p99 | max |");
        println!("|---|---:|---:|---:|---:|");
        for (name, p) in [
            ("loop overhead (round-trip − the tool's own time)", &self.loop_overhead_ms),
            ("the tool's own time", &self.tool_ms),
            ("round-trip: reply with the call → next request (through Apex)", &self.round_trip_ms),
            ("round-trip of a bare HTTP client (floor)", &self.bare_round_trip_ms),
        ] {
            println!("| {name} | {} | {:.3} ms | {:.3} ms | {:.3} ms |", p.count, p.p50, p.p99, p.max);
        }
        println!();
        let verdict = if self.loop_overhead_ms.p99 <= 2.0 { "met" } else { "NOT met" };
        println!("loop overhead p99 {:.3} ms: target ≤ 2 ms {verdict}", self.loop_overhead_ms.p99);
        println!("rounds missing: {}, runs failed: {}", self.rounds_missing, self.runs_failed);
        if let Some(why) = &self.first_failure {
            println!("first failure: {why}");
        }
    }
}

/// One tool round of a run, as measured.
struct Round {
    gap: Duration,
    tool: Duration,
}

/// One golden-path run: the provider's gaps after each of its tool calls, paired in order
/// with the `tool_completed` of the calls (the last `calls` of the data agent's
/// `query_slice`: the agent's own calls come first).
async fn one_run(url: &str, provider: &StandIn, calls: usize) -> anyhow::Result<Vec<Round>> {
    provider.reset();
    let mut tools = Vec::new();
    golden_run(url, |frame, _| {
        match frame.kind.as_str() {
            "tool_completed" if frame.agent.as_deref() == Some("data") && frame.tool.as_deref() == Some("query_slice") => {
                tools.push(Duration::from_micros(frame.duration_us))
            }
            "agent_thinking" if frame.text.as_deref().is_some_and(|t| t.contains("built-in planner")) => {
                bail!("the model was dropped: {}", frame.text.as_deref().unwrap_or_default())
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    let gaps = provider.gaps();
    let own = tools.len().saturating_sub(calls);
    Ok(gaps.into_iter().zip(tools.into_iter().skip(own)).map(|(gap, tool)| Round { gap, tool }).collect())
}

/// The floor: a bare client that asks for tool calls back to back; the provider's gaps.
async fn bare(http: &reqwest::Client, provider: &StandIn, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    provider.reset();
    let body = json!({ "model": "stand-in", "messages": [{ "role": "user", "content": "[bare] call" }] });
    for _ in 0..=rounds {
        http.post(format!("{}/chat/completions", provider.base_url)).json(&body).send().await?.bytes().await?;
    }
    Ok(provider.gaps())
}

/// When the stand-in handed a tool-call reply over, and when the next request came.
#[derive(Default)]
struct Timeline {
    /// The last tool-call reply not yet followed by a request.
    replied: Option<Duration>,
    gaps: Vec<Duration>,
}

/// The stand-in provider. A request whose last user message is the data agent's hand-over
/// (or the bare client's) is answered with the next tool call while fewer than `calls`
/// tool results follow that message; everything else with one sentence.
struct StandIn {
    base_url: String,
    timeline: Arc<Mutex<Timeline>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start(epoch: Instant, calls: usize) -> anyhow::Result<Self> {
        let (listener, addr) = stand_in_listener().await?;
        let timeline: Arc<Mutex<Timeline>> = Arc::default();
        let state = (epoch, calls, timeline.clone());
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(reply)).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url: format!("http://{addr}/v1"), timeline, task })
    }

    fn reset(&self) {
        *self.timeline.lock().expect("the timeline") = Timeline::default();
    }

    fn gaps(&self) -> Vec<Duration> {
        std::mem::take(&mut self.timeline.lock().expect("the timeline").gaps)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type State = (Instant, usize, Arc<Mutex<Timeline>>);

async fn reply(
    axum::extract::State((epoch, calls, timeline)): axum::extract::State<State>,
    body: String,
) -> axum::response::Response {
    let arrived = epoch.elapsed();
    {
        let mut t = timeline.lock().expect("the timeline");
        if let Some(replied) = t.replied.take() {
            t.gaps.push(arrived.saturating_sub(replied));
        }
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let turn = messages.iter().rposition(|m| m["role"] == "user").unwrap_or(0);
    let asked = messages.get(turn).and_then(|m| m["content"].as_str()).unwrap_or("");
    let done = messages[turn.min(messages.len())..].iter().filter(|m| m["role"] == "tool").count();
    let planning = asked.starts_with("[data agent]") || asked.starts_with("[bare]");
    let chunk =
        |delta: Value| format!("data: {}\n\n", json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] }));
    let mut out = if planning && done < calls {
        let call = json!({
            "index": 0,
            "id": format!("call_{done}"),
            "type": "function",
            "function": { "name": "query_slice", "arguments": json!({ "group_by": BREAKDOWNS[done] }).to_string() },
        });
        chunk(json!({ "tool_calls": [call] }))
    } else {
        chunk(json!({ "content": "Noted." }))
    };
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n");
    if planning && done < calls {
        timeline.lock().expect("the timeline").replied = Some(epoch.elapsed());
    }
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(out))
        .expect("a valid response")
}

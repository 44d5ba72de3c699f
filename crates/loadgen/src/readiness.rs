//! `apex readiness`: assesses a live deployment from the outside, the way the service Apex
//! replaces was assessed, and prints a scorecard. Every figure is measured here, over the
//! deployment's own WebSocket, REST and `/metrics`; the formulas are in docs/readiness.md.
//!
//! Two phases. **Golden path**: `--users` users at once, each asking "Analyze my AI costs"
//! `--runs` times on a fresh connection; every second run drops its connection after a few
//! events and resumes on a new one. Each run is checked event by event and read back over
//! REST. **Sweep**: 1, √N and N users run back to back (closed loop), `--sweep-secs` each;
//! how throughput and latency hold as users grow gives the scalability score.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apex_telemetry::{parse, total, STAGES};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::Latencies;
use apex_client::{connect, error_chain, WsStream};

/// The seeds' service-level objectives.
const SLA_CONNECT: Duration = Duration::from_secs(2);
const SLA_FIRST_EVENT: Duration = Duration::from_secs(5);
const SLA_RUN: Duration = Duration::from_secs(60);
/// Rounds of the sweep: each level runs this many times, in turn with the others.
const SWEEP_ROUNDS: usize = 3;
/// A run reconnects at most this many times after unexpected closes.
const MAX_RECONNECTS: usize = 5;
/// Events read before the forced reconnect of every second run.
const EVENTS_BEFORE_DROP: usize = 4;
/// The thresholds the seeds' assessment used.
const RELIABLE: f64 = 95.0;
const SCALABLE: f64 = 80.0;
const MONITORED: f64 = 90.0;
const AGENTS: [&str; 5] = ["supervisor", "triage", "data", "optimization", "report"];
const KINDS: [&str; 5] = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"];

#[derive(clap::Args, Debug)]
pub struct ReadinessArgs {
    /// The deployment's WebSocket endpoint, e.g. ws://HOST/ws
    #[arg(long)]
    pub url: String,
    /// A user's token (every virtual user is that user, each in threads of its own)
    #[arg(long, conflicts_with = "demo")]
    pub token: Option<String>,
    /// Sign in as demo users (the default without --token): one identity per virtual user
    #[arg(long)]
    pub demo: bool,
    /// Concurrent users (the top of the sweep)
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Runs per user in each phase
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A run not over after this many seconds is abandoned as failed
    #[arg(long, default_value_t = 60.0)]
    pub run_timeout: f64,
    /// How long each level of the sweep runs, in seconds
    #[arg(long, default_value_t = 5.0)]
    pub sweep_secs: f64,
    /// HTTP base for REST and /metrics [default: from --url]
    #[arg(long)]
    pub http: Option<String>,
    /// Print the scorecard as JSON
    #[arg(long)]
    pub json: bool,
}

/// The outcome of one run, as the assessment saw it.
#[derive(Debug, Default)]
struct RunCheck {
    connects: usize,
    connects_in_time: usize,
    /// Final response, five kinds in order, tool calls paired, seqs whole, no error close.
    executed: bool,
    /// Messages, events and agent results read back identical over REST.
    persisted: bool,
    within_sla: bool,
    substantive: bool,
    first_event: Option<Duration>,
    full_run: Option<Duration>,
    problems: Vec<String>,
}

impl RunCheck {
    fn golden(&self) -> bool {
        self.executed && self.persisted && self.within_sla && self.substantive
    }
}

#[derive(Debug, Serialize)]
pub struct Level {
    pub users: usize,
    pub runs: usize,
    pub ok: usize,
    pub runs_per_s: f64,
    pub first_event_p99_ms: f64,
    pub full_run_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Score {
    pub name: &'static str,
    pub value: f64,
    pub threshold: Option<f64>,
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Scorecard {
    pub url: String,
    pub users: usize,
    pub runs: usize,
    pub scores: Vec<Score>,
    pub sweep: Vec<Level>,
    pub stages_not_moved: Vec<&'static str>,
    pub problems: Vec<String>,
    pub ready: bool,
    pub not_ready_because: Vec<&'static str>,
}

pub async fn run(args: ReadinessArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.users > 0 && args.runs > 0, "--users and --runs must be at least 1");
    let http = match &args.http {
        Some(h) => h.trim_end_matches('/').to_owned(),
        None => http_base(&args.url)?,
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let before = scrape(&client, &http).await;
    let give_up = Duration::try_from_secs_f64(args.run_timeout).context("--run-timeout must be a positive number of seconds")?;
    let target = Target { url: args.url.clone(), http: http.clone(), token: args.token.clone(), client: client.clone(), give_up };

    // Phase 1: the golden path, with persistence read back.
    let mut users = JoinSet::new();
    for user in 0..args.users {
        let target = target.clone();
        let runs = args.runs;
        users.spawn(async move { target.golden_user(user, runs).await });
    }
    let mut checks = Vec::new();
    while let Some(done) = users.join_next().await {
        checks.extend(done.context("a virtual user panicked")?);
    }

    // Phase 2: the concurrency sweep.
    let mut levels: Vec<usize> = vec![1, (args.users as f64).sqrt().ceil() as usize, args.users];
    levels.dedup();
    // The levels take turns, round after round, so that a burst of other work on the
    // machine lands on every level alike; each level's throughput is its best round.
    let sweep_for = Duration::try_from_secs_f64(args.sweep_secs).context("--sweep-secs must be a positive number of seconds")?;
    let mut rounds: Vec<Vec<Round>> = levels.iter().map(|_| Vec::new()).collect();
    for _ in 0..SWEEP_ROUNDS {
        for (i, users) in levels.iter().enumerate() {
            rounds[i].push(target.level(*users, sweep_for / SWEEP_ROUNDS as u32).await);
        }
    }
    let sweep: Vec<Level> = levels.iter().zip(rounds).map(|(users, rounds)| Level::of(*users, rounds)).collect();
    let after = scrape(&client, &http).await;

    let card = score(&args, checks, sweep, before, after);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&card)?);
    } else {
        print_card(&card);
    }
    Ok(if card.ready { 0 } else { 1 })
}

#[derive(Clone)]
struct Target {
    url: String,
    http: String,
    token: Option<String>,
    client: reqwest::Client,
    /// How long a run may take before it is abandoned as failed.
    give_up: Duration,
}

/// A connection that reached `connection_ready`, and how long that took.
struct Opened {
    ws: WsStream,
    took: Duration,
    /// The token the server issued (demo sign-in), to come back as the same user.
    token: Option<String>,
}

impl Target {
    async fn open(&self, token: Option<&str>) -> anyhow::Result<Opened> {
        let started = Instant::now();
        let mut ws = tokio::time::timeout(SLA_CONNECT * 5, connect(&self.url, token)).await.context("connect timed out")??;
        let ready = tokio::time::timeout(SLA_CONNECT * 5, next_json(&mut ws))
            .await
            .context("no connection_ready")?
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(ready["type"] == "connection_ready", "first frame was {}", ready["type"]);
        Ok(Opened { ws, took: started.elapsed(), token: ready["token"].as_str().map(str::to_owned) })
    }

    async fn golden_user(&self, user: usize, runs: usize) -> Vec<RunCheck> {
        let mut token = self.token.clone();
        let mut checks = Vec::new();
        for run in 0..runs {
            let check =
                self.golden_run(&mut token, run % 2 == 1, &format!("readiness-{user}-{run}-{}", uuid::Uuid::new_v4())).await;
            checks.push(check);
        }
        checks
    }

    /// One golden-path run on a fresh connection; `drop_midway` closes it after a few
    /// events and resumes on a new one.
    async fn golden_run(&self, token: &mut Option<String>, drop_midway: bool, client_message_id: &str) -> RunCheck {
        let mut check = RunCheck::default();
        let mut opened = match self.open(token.as_deref()).await {
            Ok(o) => o,
            Err(e) => {
                check.connects += 1;
                check.problems.push(format!("connect: {}", error_chain(&e)));
                return check;
            }
        };
        check.connects += 1;
        check.connects_in_time += usize::from(opened.took <= SLA_CONNECT);
        if token.is_none() {
            token.clone_from(&opened.token);
        }
        let asked = Instant::now();
        let message = json!({"type": "user_message", "text": "Analyze my AI costs", "client_message_id": client_message_id});
        if let Err(e) = opened.ws.send(Message::Text(message.to_string().into())).await {
            check.problems.push(format!("send: {e}"));
            return check;
        }
        let mut events: Vec<Value> = Vec::new();
        let mut accepted: Option<Value> = None;
        let mut ws = opened.ws;
        let mut reconnects = 0;
        let mut forced = !drop_midway;
        let mut error_close = None;
        let deadline = asked + self.give_up;
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), next_json(&mut ws)).await;
            let frame = match frame {
                Err(_) => {
                    check.problems.push(format!("no terminal event within {:.0} s", self.give_up.as_secs_f64()));
                    break;
                }
                Ok(Ok(v)) => Some(v),
                Ok(Err(close)) => {
                    error_close.get_or_insert_with(|| close.to_string());
                    None
                }
            };
            match frame {
                Some(v) if v["type"] == "message_accepted" => accepted = Some(v),
                Some(v) if v["type"] == "error" => {
                    check.problems.push(format!("error frame: {}", v["code"]));
                    break;
                }
                Some(v) if v.get("seq").is_some() => {
                    if events.is_empty() {
                        check.first_event = Some(asked.elapsed());
                    }
                    let terminal = is_terminal(&v);
                    events.push(v);
                    if terminal {
                        check.full_run = Some(asked.elapsed());
                        break;
                    }
                    if !forced && events.len() == EVENTS_BEFORE_DROP {
                        forced = true;
                        let _ = ws.close(None).await;
                        match self.resume(token.as_deref(), &accepted, &events, &mut check).await {
                            Some(fresh) => ws = fresh,
                            None => break,
                        }
                    }
                }
                Some(_) => {}
                None => {
                    // Closed by the server mid-run: resume like a real client would, but the
                    // run no longer counts as delivered cleanly.
                    reconnects += 1;
                    if reconnects > MAX_RECONNECTS || accepted.is_none() {
                        check.problems.push(format!("closed mid-run ({})", error_close.clone().unwrap_or_default()));
                        break;
                    }
                    match self.resume(token.as_deref(), &accepted, &events, &mut check).await {
                        Some(fresh) => ws = fresh,
                        None => break,
                    }
                }
            }
        }
        let _ = ws.close(None).await;
        if let Some(close) = &error_close {
            check.problems.push(format!("the server closed the connection during a run: {close}"));
        }
        let order = check_events(&events);
        if let Err(why) = &order {
            check.problems.push(why.clone());
        }
        check.executed = order.is_ok() && error_close.is_none();
        let answer = events.last().filter(|e| e["type"] == "final_response").and_then(|e| e["text"].as_str()).unwrap_or("");
        check.substantive = answer.contains('$');
        check.within_sla = check.connects_in_time == check.connects
            && check.first_event.is_some_and(|d| d <= SLA_FIRST_EVENT)
            && check.full_run.is_some_and(|d| d <= SLA_RUN);
        if let (Some(accepted), Some(token)) = (&accepted, token.as_deref()) {
            match self.read_back(token, accepted, &events, answer).await {
                Ok(()) => check.persisted = check.executed,
                Err(e) => check.problems.push(format!("read back: {}", error_chain(&e))),
            }
        } else if accepted.is_some() {
            check.problems.push("read back: no token to read with (the server issued none)".into());
        }
        check
    }

    /// A new connection that resumes the run after the last event seen.
    async fn resume(
        &self,
        token: Option<&str>,
        accepted: &Option<Value>,
        events: &[Value],
        check: &mut RunCheck,
    ) -> Option<WsStream> {
        let run_id = accepted.as_ref()?["run_id"].clone();
        check.connects += 1;
        let mut opened = match self.open(token).await {
            Ok(o) => o,
            Err(e) => {
                check.problems.push(format!("reconnect: {}", error_chain(&e)));
                return None;
            }
        };
        check.connects_in_time += usize::from(opened.took <= SLA_CONNECT);
        let after_seq = events.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);
        let resume = json!({"type": "resume", "run_id": run_id, "after_seq": after_seq});
        opened.ws.send(Message::Text(resume.to_string().into())).await.ok()?;
        Some(opened.ws)
    }

    /// The run as REST tells it must be the run as it streamed.
    async fn read_back(&self, token: &str, accepted: &Value, events: &[Value], answer: &str) -> anyhow::Result<()> {
        let (run_id, thread_id) = (accepted["run_id"].as_str().unwrap_or(""), accepted["thread_id"].as_str().unwrap_or(""));
        let stored = self.get(token, &format!("/api/runs/{run_id}/events?after_seq=0")).await?;
        anyhow::ensure!(stored["events"].as_array().is_some_and(|s| s == events), "stored events differ from the streamed ones");
        let run = self.get(token, &format!("/api/runs/{run_id}")).await?;
        anyhow::ensure!(run["run"]["status"] == "completed", "run status is {}", run["run"]["status"]);
        let agents: HashSet<&str> =
            run["agent_results"].as_array().into_iter().flatten().filter_map(|a| a["agent"].as_str()).collect();
        anyhow::ensure!(AGENTS.iter().all(|a| agents.contains(a)), "agent results stored: {agents:?}");
        let messages = self.get(token, &format!("/api/threads/{thread_id}/messages")).await?;
        let messages = messages["messages"].as_array().cloned().unwrap_or_default();
        let n = messages.len();
        anyhow::ensure!(n >= 2, "{n} messages stored in the thread");
        anyhow::ensure!(messages[n - 2]["content"] == "Analyze my AI costs", "the user's message is not stored as sent");
        anyhow::ensure!(messages[n - 1]["content"] == answer, "the stored answer differs from the streamed one");
        Ok(())
    }

    async fn get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        let r = self.client.get(format!("{}{path}", self.http)).bearer_auth(token).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    /// `users` users run back to back on one connection each for `duration` (each at least
    /// one run; a run under way at the end is finished and counted).
    async fn level(&self, users: usize, duration: Duration) -> Round {
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..users {
            let target = self.clone();
            tasks.spawn(async move {
                let mut out = Vec::new();
                let mut ws: Option<WsStream> = None;
                let mut token = target.token.clone();
                let deadline = Instant::now() + duration;
                while out.is_empty() || Instant::now() < deadline {
                    // A failed run leaves its connection in an unknown state: a new one.
                    if ws.is_none() {
                        match target.open(token.as_deref()).await {
                            Ok(opened) => {
                                token = token.or(opened.token);
                                ws = Some(opened.ws);
                            }
                            Err(_) => {
                                out.push((false, None, None));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        }
                    }
                    let conn = ws.as_mut().expect("opened above");
                    let result = closed_loop_run(conn, target.give_up).await;
                    if !result.0 {
                        let _ = conn.close(None).await;
                        ws = None;
                    }
                    out.push(result);
                }
                if let Some(mut ws) = ws {
                    let _ = ws.close(None).await;
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done.unwrap_or_default());
        }
        Round { runs: all, elapsed: started.elapsed() }
    }
}

/// One round of one level of the sweep: each run as (correct, first event, full run).
struct Round {
    runs: Vec<(bool, Option<Duration>, Option<Duration>)>,
    elapsed: Duration,
}

impl Round {
    /// Runs that were correct and within the SLA.
    fn ok(&self) -> usize {
        let in_sla = |first: &Option<Duration>, full: &Option<Duration>| {
            first.is_some_and(|d| d <= SLA_FIRST_EVENT) && full.is_some_and(|d| d <= SLA_RUN)
        };
        self.runs.iter().filter(|(ok, first, full)| *ok && in_sla(first, full)).count()
    }
}

impl Level {
    /// A level's rounds: its best throughput, and latency and correctness over them all.
    fn of(users: usize, rounds: Vec<Round>) -> Self {
        let runs_per_s = rounds.iter().map(|r| r.ok() as f64 / r.elapsed.as_secs_f64().max(1e-9)).fold(0.0, f64::max);
        let all = || rounds.iter().flat_map(|r| r.runs.iter());
        Level {
            users,
            runs: all().count(),
            ok: rounds.iter().map(Round::ok).sum(),
            runs_per_s,
            first_event_p99_ms: all().filter_map(|r| r.1).collect::<Latencies>().summary().p99,
            full_run_p99_ms: all().filter_map(|r| r.2).collect::<Latencies>().summary().p99,
        }
    }
}

/// One run on an open connection: (correct, first event, full run).
/// A client that runs back to back may outpace the server's per-connection frame limit;
/// like a polite client it backs off and sends again (the wait counts in its latency).
async fn closed_loop_run(ws: &mut WsStream, give_up: Duration) -> (bool, Option<Duration>, Option<Duration>) {
    let asked = Instant::now();
    let message = Message::Text(json!({"type": "user_message", "text": "Analyze my AI costs"}).to_string().into());
    if ws.send(message.clone()).await.is_err() {
        return (false, None, None);
    }
    let mut events = Vec::new();
    let mut first = None;
    let deadline = asked + give_up;
    loop {
        match tokio::time::timeout_at(deadline.into(), next_json(ws)).await {
            Ok(Ok(v)) if v.get("seq").is_some() => {
                first.get_or_insert_with(|| asked.elapsed());
                let terminal = is_terminal(&v);
                events.push(v);
                if terminal {
                    return (check_events(&events).is_ok(), first, Some(asked.elapsed()));
                }
            }
            Ok(Ok(v)) if v["type"] == "error" && v["code"] == "rate_limited" && first.is_none() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if ws.send(message.clone()).await.is_err() {
                    return (false, None, None);
                }
            }
            Ok(Ok(v)) if v["type"] == "error" => return (false, first, None),
            Ok(Ok(_)) => {}
            _ => return (false, first, None),
        }
    }
}

/// The next JSON text frame; `Err` with the close code when the connection ends.
async fn next_json(ws: &mut WsStream) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).map_err(|e| format!("undecodable frame: {e}")),
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or_else(|| "close without a code".into(), |f| format!("close {}", u16::from(f.code))))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("socket error: {e}")),
            None => return Err("socket dropped".into()),
        }
    }
}

fn is_terminal(v: &Value) -> bool {
    matches!(v["type"].as_str(), Some("final_response" | "run_failed" | "run_cancelled" | "run_timed_out" | "run_interrupted"))
}

/// Seqs 1..n with no gap or duplicate, one run, exactly one terminal event which is
/// `final_response`; every agent started before anything else it did and completed after;
/// all five kinds present; each tool call executing once, then completed once.
fn check_events(events: &[Value]) -> Result<(), String> {
    if events.is_empty() {
        return Err("no events".into());
    }
    for (i, e) in events.iter().enumerate() {
        if e["seq"].as_u64() != Some(i as u64 + 1) {
            return Err(format!("seq {} where {} was due (lost, duplicated or reordered)", e["seq"], i + 1));
        }
        if e["run_id"] != events[0]["run_id"] {
            return Err("an event of another run".into());
        }
    }
    let last = events.last().expect("not empty");
    if last["type"] != "final_response" {
        return Err(format!("the run ended with {}", last["type"]));
    }
    if events.iter().filter(|e| is_terminal(e)).count() != 1 {
        return Err("more than one terminal event".into());
    }
    let kinds: HashSet<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    if let Some(missing) = KINDS.iter().find(|k| !kinds.contains(*k)) {
        return Err(format!("no {missing} event"));
    }
    let mut started = HashSet::new();
    let mut completed = HashSet::new();
    let mut calls: HashMap<String, u8> = HashMap::new();
    for e in events {
        let agent = e["agent"].as_str().unwrap_or("");
        match e["type"].as_str().unwrap_or("") {
            "agent_started" => {
                started.insert(agent.to_owned());
            }
            "agent_thinking" | "tool_executing" | "tool_completed" | "agent_completed" if !started.contains(agent) => {
                return Err(format!("{} of {agent} before its agent_started", e["type"]));
            }
            _ => {}
        }
        match e["type"].as_str().unwrap_or("") {
            "agent_completed" => {
                completed.insert(agent.to_owned());
            }
            "tool_executing" => {
                let id = e["tool_call_id"].as_str().unwrap_or("").to_owned();
                if calls.insert(id.clone(), 1).is_some() {
                    return Err(format!("tool call {id} executed twice"));
                }
            }
            "tool_completed" => {
                let id = e["tool_call_id"].as_str().unwrap_or("");
                match calls.get_mut(id) {
                    Some(state @ 1) => *state = 2,
                    _ => return Err(format!("tool_completed {id} without its tool_executing")),
                }
            }
            _ => {}
        }
    }
    if let Some(open) = calls.iter().find(|(_, s)| **s != 2) {
        return Err(format!("tool call {} never completed", open.0));
    }
    if let Some(a) = AGENTS.iter().find(|a| !completed.contains(**a)) {
        return Err(format!("agent {a} never completed"));
    }
    Ok(())
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// `/metrics`, parsed; `None` when the deployment does not serve it.
async fn scrape(client: &reqwest::Client, http: &str) -> Option<Vec<apex_telemetry::Sample>> {
    let r = client.get(format!("{http}/metrics")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    Some(parse(&r.text().await.ok()?))
}

fn http_base(ws_url: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(ws_url).with_context(|| format!("invalid URL {ws_url}"))?;
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        other => anyhow::bail!("--url must be ws:// or wss://, not {other}://"),
    };
    let host = url.host_str().context("--url has no host")?;
    Ok(match url.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

fn score(
    args: &ReadinessArgs,
    checks: Vec<RunCheck>,
    sweep: Vec<Level>,
    before: Option<Vec<apex_telemetry::Sample>>,
    after: Option<Vec<apex_telemetry::Sample>>,
) -> Scorecard {
    let runs = checks.len();
    let connects: usize = checks.iter().map(|c| c.connects).sum();
    let in_time: usize = checks.iter().map(|c| c.connects_in_time).sum();
    let count = |f: fn(&RunCheck) -> bool| checks.iter().filter(|c| f(c)).count();
    let executed = count(|c| c.executed);
    let persisted = count(|c| c.persisted);
    let sla = count(|c| c.within_sla);
    let golden = count(RunCheck::golden);

    // Scalability: throughput at the top of the sweep against the best level (does it
    // hold, or collapse?), times the share of the top level's runs that were correct and
    // within the SLA.
    let best = sweep.iter().map(|l| l.runs_per_s).fold(0.0, f64::max);
    let top = sweep.last();
    let hold = match top {
        Some(t) if best > 0.0 => (t.runs_per_s / best).min(1.0),
        _ => 0.0,
    };
    let quality = top.map_or(0.0, |t| t.ok as f64 / t.runs.max(1) as f64);
    let scalability = 100.0 * hold * quality;

    let (coverage, not_moved, coverage_detail) = match (&before, &after) {
        (Some(b), Some(a)) => {
            let not_moved: Vec<&'static str> =
                STAGES.iter().filter(|s| total(a, s.series) <= total(b, s.series)).map(|s| s.stage).collect();
            let moved = STAGES.len() - not_moved.len();
            (percent(moved, STAGES.len()), not_moved, format!("{moved}/{} golden-path stages moved in /metrics", STAGES.len()))
        }
        _ => (0.0, STAGES.iter().map(|s| s.stage).collect(), "no /metrics to read".to_owned()),
    };

    let s = |name, value: f64, threshold: Option<f64>, detail: String| Score {
        name,
        value: (value * 10.0).round() / 10.0,
        threshold,
        pass: threshold.is_none_or(|t| value > t),
        detail,
    };
    let scores = vec![
        s(
            "connection reliability",
            percent(in_time, connects),
            Some(RELIABLE),
            format!("{in_time}/{connects} connects ready within 2 s"),
        ),
        s(
            "agent execution reliability",
            percent(executed, runs),
            Some(RELIABLE),
            format!("{executed}/{runs} runs complete, in order, paired"),
        ),
        s(
            "state persistence reliability",
            percent(persisted, runs),
            Some(RELIABLE),
            format!("{persisted}/{runs} runs read back identical"),
        ),
        s("SLA compliance", percent(sla, runs), None, format!("{sla}/{runs} runs: connect ≤ 2 s, first event ≤ 5 s, run ≤ 60 s")),
        s(
            "scalability score",
            scalability,
            Some(SCALABLE),
            format!("throughput held {:.0} %, top level {:.0} % correct in SLA", hold * 100.0, quality * 100.0),
        ),
        s("monitoring coverage", coverage, Some(MONITORED), coverage_detail),
        s("golden-path pass rate", percent(golden, runs), Some(RELIABLE), format!("{golden}/{runs} runs passed every check")),
    ];
    let not_ready_because: Vec<&'static str> = scores.iter().filter(|s| !s.pass).map(|s| s.name).collect();
    let mut problems: Vec<String> = checks.iter().flat_map(|c| c.problems.iter().cloned()).collect();
    problems.sort();
    problems.dedup();
    Scorecard {
        url: args.url.clone(),
        users: args.users,
        runs: args.runs,
        ready: not_ready_because.is_empty(),
        not_ready_because,
        scores,
        sweep,
        stages_not_moved: not_moved,
        problems,
    }
}

fn print_card(card: &Scorecard) {
    println!("readiness of {} ({} users × {} runs)\n", card.url, card.users, card.runs);
    println!("{:<32} {:>8} {:>10}  {:<4}  detail", "measure", "value", "threshold", "");
    for s in &card.scores {
        let threshold = s.threshold.map_or("—".to_owned(), |t| format!("> {t}"));
        println!("{:<32} {:>8.1} {:>10}  {:<4}  {}", s.name, s.value, threshold, if s.pass { "ok" } else { "FAIL" }, s.detail);
    }
    println!("\nsweep: users, runs/s, first event p99, full run p99, correct");
    for l in &card.sweep {
        println!(
            "  {:>5} {:>9.1} {:>10.1} ms {:>10.1} ms {:>6}/{}",
            l.users, l.runs_per_s, l.first_event_p99_ms, l.full_run_p99_ms, l.ok, l.runs
        );
    }
    if !card.stages_not_moved.is_empty() {
        println!("\nstages whose metric did not move: {}", card.stages_not_moved.join(", "));
    }
    if !card.problems.is_empty() {
        println!("\nproblems seen ({} distinct):", card.problems.len());
        for p in card.problems.iter().take(20) {
            println!("  - {p}");
        }
    }
    if card.ready {
        println!("\nreadiness: READY");
    } else {
        println!("\nreadiness: NOT READY ({})", card.not_ready_because.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_events() -> Vec<Value> {
        let mut events = Vec::new();
        let mut push = |kind: &str, extra: Value| {
            let mut e = json!({"type": kind, "run_id": "r", "seq": events.len() + 1});
            e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            events.push(e);
        };
        for (i, agent) in AGENTS.iter().enumerate() {
            push("agent_started", json!({"agent": agent}));
            push("agent_thinking", json!({"agent": agent}));
            push("tool_executing", json!({"agent": agent, "tool_call_id": format!("call_{i}")}));
            push("tool_completed", json!({"agent": agent, "tool_call_id": format!("call_{i}")}));
            push("agent_completed", json!({"agent": agent}));
        }
        push("final_response", json!({"text": "$1"}));
        events
    }

    #[test]
    fn a_whole_run_passes_and_each_defect_is_named() {
        assert_eq!(check_events(&run_events()), Ok(()));
        let mut lost = run_events();
        lost.remove(7);
        assert!(check_events(&lost).unwrap_err().contains("seq"));
        let mut unpaired = run_events();
        unpaired[3]["tool_call_id"] = json!("other");
        assert!(check_events(&unpaired).unwrap_err().contains("without its tool_executing"));
        let mut failed = run_events();
        let n = failed.len();
        failed[n - 1]["type"] = json!("run_failed");
        assert!(check_events(&failed).unwrap_err().contains("ended with"));
        let mut early = run_events();
        early.swap(0, 1);
        early[0]["seq"] = json!(1);
        early[1]["seq"] = json!(2);
        assert!(check_events(&early).unwrap_err().contains("before its agent_started"));
    }

    #[test]
    fn http_base_follows_the_websocket_url() {
        assert_eq!(http_base("ws://127.0.0.1:8080/ws").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(http_base("wss://apex.example.com/ws").unwrap(), "https://apex.example.com");
        assert!(http_base("http://x/ws").is_err());
    }
}

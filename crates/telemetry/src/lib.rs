//! What Apex measures about itself.
//!
//! Every crate records its metrics through the `metrics` facade under the names listed in
//! [`CATALOGUE`]; the server installs the Prometheus recorder once per process
//! ([`install`]) and serves [`render`] at `GET /metrics`. [`STAGES`] names, for each stage
//! of the golden path, the series that moves when that stage runs: `apex readiness`
//! measures monitoring coverage with it, and a test checks that one run moves all of them.
//! docs/operations.md lists the same metrics with what they mean and alerts worth setting.
//! [`error_chain`] is how an error is written into a log line or a message: with its causes.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Kinds of series, as Prometheus shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Rendered as `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// One metric: its name, kind, labels and meaning.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! catalogue {
    ($( $konst:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal; )*) => {
        $( #[doc = $help] pub const $konst: &str = $name; )*
        /// Every metric Apex exports (besides the `process_*` series).
        pub const CATALOGUE: &[Metric] = &[
            $( Metric { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help }, )*
        ];
    };
}

catalogue! {
    // Connections.
    TCP_CONNECTIONS_OPEN = "apex_tcp_connections_open", Gauge, [],
        "TCP connections open now (HTTP, idle, and WebSocket), counted against APEX_MAX_CONNECTIONS and APEX_MAX_CONNECTIONS_PER_IP.";
    TCP_CONNECTIONS_REFUSED = "apex_tcp_connections_refused_total", Counter, ["cap"],
        "TCP connections closed on accept because a cap was reached (total, per_ip).";
    WS_CONNECTIONS_OPEN = "apex_ws_connections_open", Gauge, [],
        "WebSocket connections open now.";
    WS_CONNECTIONS_OPENED = "apex_ws_connections_opened_total", Counter, [],
        "WebSocket connections accepted (upgrade done).";
    WS_CONNECTIONS_CLOSED = "apex_ws_connections_closed_total", Counter, ["code"],
        "WebSocket connections ended, by close code: the code the server sent, the client's, or 1006 when the socket dropped without a close frame.";
    SIGN_INS = "apex_sign_ins_total", Counter, ["outcome"],
        "Sign-in attempts of local accounts by outcome (ok, wrong_password, unknown_name, locked, disabled, rate_limited).";
    SESSIONS_ENDED = "apex_sessions_ended_total", Counter, ["reason"],
        "Sign-in sessions ended through this instance, by reason (signed_out, revoked, reused: a replaced refresh token presented again); `apex users` disable and reset are not counted here.";
    WS_UPGRADES_REJECTED = "apex_ws_upgrades_rejected_total", Counter, ["reason"],
        "WebSocket upgrades refused before a connection existed (unauthorized, origin, scope, user_connections, shutting_down, not_websocket, storage).";
    WS_FRAMES_RECEIVED = "apex_ws_frames_received_total", Counter, ["type"],
        "Client frames received, by type (user_message, resume, stop_agent, ping, invalid, binary, rate_limited, control_flood).";
    WS_CLIENT_ERRORS = "apex_ws_client_errors_total", Counter, ["code"],
        "`error` frames sent to clients, by error code.";
    WS_FRAMES_QUEUED = "apex_ws_frames_queued_total", Counter, [],
        "Frames queued for delivery to connections (events, replies, pings).";
    WS_FRAMES_DROPPED = "apex_ws_frames_dropped_total", Counter, [],
        "Frames still queued when their connection ended (the client reconnects and resumes them).";
    WS_SLOW_CONSUMERS = "apex_ws_slow_consumers_total", Counter, [],
        "Connections shed with close 1013 because their socket took nothing for the write timeout.";
    // Runs.
    RUNS_STARTED = "apex_runs_started_total", Counter, [],
        "Runs started (a user message accepted and persisted).";
    RUNS_ACTIVE = "apex_runs_active", Gauge, [],
        "Runs executing on this instance now.";
    RUNS_FINISHED = "apex_runs_finished_total", Counter, ["status"],
        "Runs ended, by terminal state (completed, failed, cancelled, timed_out, interrupted).";
    RUN_DURATION = "apex_run_duration_seconds", Histogram, ["status"],
        "Message received to terminal event persisted, by terminal state.";
    RUN_FIRST_EVENT = "apex_run_first_event_seconds", Histogram, [],
        "Message received to the run's first event (agent_started) durable and delivered to followers.";
    AGENT_DURATION = "apex_agent_duration_seconds", Histogram, ["agent"],
        "Time each agent took, by agent.";
    TOOL_CALLS = "apex_tool_calls_total", Counter, ["tool", "outcome"],
        "Tool calls, by tool and outcome (ok, error).";
    TOOL_DURATION = "apex_tool_duration_seconds", Histogram, ["tool"],
        "Tool call duration, by tool.";
    // Persistence and delivery.
    EVENTS_PERSISTED = "apex_events_persisted_total", Counter, [],
        "Run events committed to the store.";
    PERSIST_LAG = "apex_persist_lag_seconds", Histogram, [],
        "Oldest write of a batch: queued to committed (how long delivery waits for durability).";
    PERSIST_RETRIES = "apex_persist_retries_total", Counter, [],
        "Batches retried after a failed commit (a database restart or failover, a full disk).";
    PERSIST_FAILURES = "apex_persist_failures_total", Counter, [],
        "Batches given up after the retry budget: nothing in them was acknowledged; their runs ended as run_failed (storage_unavailable).";
    STORAGE_FAILING = "apex_storage_failing", Gauge, [],
        "1 while the last batch could not be committed (new messages are refused with storage_unavailable), else 0.";
    RESUMES = "apex_resumes_total", Counter, ["source"],
        "Follow requests after a seq (resume), by where the events came from (live, remote, stored).";
    EVENTS_REPLAYED = "apex_events_replayed_total", Counter, [],
        "Events delivered again from history to a follower that resumed.";
    // The database and caches.
    DB_QUERY = "apex_db_query_seconds", Histogram, ["op"],
        "Store operations (one or more queries), by operation.";
    DB_ERRORS = "apex_db_errors_total", Counter, ["op"],
        "Store operations that failed, by operation (each attempt of a retried one).";
    CACHE_HITS = "apex_cache_hits_total", Counter, ["cache"],
        "Recommendation cache hits, by cache (local, shared).";
    CACHE_MISSES = "apex_cache_misses_total", Counter, [],
        "Recommendations computed because no cache had them.";
    // Language models.
    LLM_TOKENS = "apex_llm_tokens_total", Counter, ["provider", "model", "kind"],
        "Tokens used by the model that writes reports, by provider, model and kind (input, output).";
    LLM_REQUESTS = "apex_llm_requests_total", Counter, ["provider", "model", "outcome"],
        "Reports written by a model, by outcome (ok, fallback).";
    GROUNDING_REPLACEMENTS = "apex_grounding_replacements_total", Counter, [],
        "Sentences of a model's report replaced because they stated a figure the tools did not compute.";
    ANSWER_GUARDS = "apex_answer_guards_total", Counter, ["guard"],
        "What the guards changed in a model's answer, by guard (figure, name, repeat, prompt, direct_first).";
    MODEL_TOOL_CALLS = "apex_model_tool_calls_total", Counter, ["outcome"],
        "Tool calls a model made while planning, by outcome (ok, error, invalid, loop).";
    // The process.
    RUNTIME_TASKS_ALIVE = "apex_runtime_tasks_alive", Gauge, [],
        "Tasks alive on the async runtime (sessions, writers, followers, runs), read at each scrape: back to its idle level once the load stops.";
}

/// A stage of the golden path and the series that moves when it runs.
#[derive(Debug)]
pub struct Stage {
    pub stage: &'static str,
    /// A series name as rendered (histograms by their `_count`).
    pub series: &'static str,
}

/// The golden path, stage by stage: connect, ask, run the agents and tools, persist,
/// deliver, resume, end. One golden-path run with a resume moves every one of them.
pub const STAGES: &[Stage] = &[
    Stage { stage: "connection opened", series: "apex_ws_connections_opened_total" },
    Stage { stage: "frame received", series: "apex_ws_frames_received_total" },
    Stage { stage: "run started", series: "apex_runs_started_total" },
    Stage { stage: "first event", series: "apex_run_first_event_seconds_count" },
    Stage { stage: "agent executed", series: "apex_agent_duration_seconds_count" },
    Stage { stage: "tool called", series: "apex_tool_calls_total" },
    Stage { stage: "events persisted", series: "apex_events_persisted_total" },
    Stage { stage: "frames delivered", series: "apex_ws_frames_queued_total" },
    Stage { stage: "database queried", series: "apex_db_query_seconds_count" },
    Stage { stage: "run resumed", series: "apex_resumes_total" },
    Stage { stage: "run finished", series: "apex_runs_finished_total" },
    Stage { stage: "connection closed", series: "apex_ws_connections_closed_total" },
];

/// Bucket bounds in seconds: from a fraction of a millisecond (event delivery on one
/// machine) to a minute (the default run timeout).
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls return the same
/// handle). `None` when another recorder was installed first (an embedder's own).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .expect("bucket bounds are not empty")
                .install_recorder()
                .ok()?;
            describe();
            metrics_process::Collector::default().describe();
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric, process figures included.
pub fn render() -> String {
    let Some(handle) = install() else {
        return "# another metrics recorder is installed in this process\n".into();
    };
    metrics_process::Collector::default().collect();
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, metrics::Unit::Seconds, m.help),
        }
    }
}

/// One line of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses a Prometheus text exposition — enough to read Apex's own `/metrics` (no escapes
/// inside label values other than `\"` and `\\`).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            Some(Sample { name: name.to_owned(), labels, value })
        })
        .collect()
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    out
}

/// The sum of every series of `name` (all label sets).
pub fn total(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|s| s.name == name).map(|s| s.value).sum()
}

/// An error and each of its causes, `: `-separated (an HTTP client's "error sending
/// request" alone never says that the connection was refused).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_name_series_of_the_catalogue() {
        for s in STAGES {
            let base = s.series.trim_end_matches("_count");
            let m = CATALOGUE.iter().find(|m| m.name == base).unwrap_or_else(|| panic!("{} is not in the catalogue", s.series));
            assert_eq!(m.kind == Kind::Histogram, s.series.ends_with("_count"), "{}", s.series);
        }
    }

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for m in CATALOGUE {
            assert!(m.name.starts_with("apex_"), "{}", m.name);
            assert_eq!(m.kind == Kind::Counter, m.name.ends_with("_total"), "{}", m.name);
            assert_eq!(m.kind == Kind::Histogram, m.name.ends_with("_seconds"), "{}", m.name);
        }
    }

    /// The operations guide and the dashboard stay true to the catalogue.
    #[test]
    fn the_docs_and_the_dashboard_use_the_catalogue() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
        let guide = std::fs::read_to_string(format!("{root}/operations.md")).unwrap();
        let dashboard = std::fs::read_to_string(format!("{root}/grafana/apex-dashboard.json")).unwrap();
        for m in CATALOGUE {
            assert!(guide.contains(&format!("| `{}` |", m.name)), "docs/operations.md does not list {}", m.name);
        }
        for s in STAGES {
            assert!(guide.contains(&format!("| {} | `{}` |", s.stage, s.series)), "docs/operations.md lacks stage {}", s.stage);
        }
        let mut rest = dashboard.as_str();
        while let Some(at) = rest.find("apex_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_count", "_sum"].iter().fold(name.as_str(), |n, s| n.trim_end_matches(s));
            assert!(CATALOGUE.iter().any(|m| m.name == base), "the dashboard queries {name}, which is not exported");
            rest = &rest[at + name.len()..];
        }
    }

    #[test]
    fn parses_the_exposition_format() {
        let text = "# HELP x y\n# TYPE a counter\na_total{tool=\"find\",outcome=\"ok\"} 3\na_total{tool=\"q\\\"x\",outcome=\"error\"} 1\nb 2.5\n";
        let rows = parse(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].labels, vec![("tool".into(), "find".into()), ("outcome".into(), "ok".into())]);
        assert_eq!(rows[1].label("tool"), Some("q\"x"));
        assert_eq!(total(&rows, "a_total"), 4.0);
        assert_eq!(total(&rows, "b"), 2.5);
    }
}

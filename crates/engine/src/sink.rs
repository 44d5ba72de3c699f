//! Sinks: how agents and tools report what they do.
//!
//! [`Sink`] is the one seam: emit an event. The [`EventSink`] of a live run numbers each
//! event, serializes it once, and hands it to the persistence writer, which publishes it
//! to the run's log (live delivery) right after the group commit that makes it durable;
//! the run itself never waits for the disk. The [`MemorySink`] keeps the events in memory,
//! so an agent can be run and checked without a store or a socket.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use apex_protocol::{now_ms, AgentName, EventKind, MessageId, RunEvent};
use apex_store::{RunFinish, RunStatus, Write};
use apex_telemetry as m;
use async_trait::async_trait;
use serde_json::Value;

use crate::context::RunContext;
use crate::log::RunLog;
use crate::writer::{Publish, WriterHandle};

/// Where a run's events go.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Emits a non-terminal event and returns its seq.
    async fn emit(&self, kind: EventKind) -> u64;

    /// Keeps an agent's conclusion (persisted with the run; not an event).
    async fn agent_result(&self, agent: AgentName, output: &Value, duration_ms: u64);

    /// Notes a model call of this run (an OTLP GenAI span), recorded as Apex's own usage
    /// once the run has ended.
    fn model_usage(&self, span: Value);

    /// A new id for a tool call of this run (`call_1`, `call_2`, …).
    fn next_tool_call_id(&self) -> String;

    async fn started(&self, agent: AgentName) {
        self.emit(EventKind::AgentStarted { agent }).await;
    }

    async fn thinking(&self, agent: AgentName, text: String) {
        self.emit(EventKind::AgentThinking { agent, text }).await;
    }

    async fn completed(&self, agent: AgentName, summary: String, started: Instant) {
        let elapsed = started.elapsed();
        metrics::histogram!(m::AGENT_DURATION, "agent" => agent.as_str()).record(elapsed.as_secs_f64());
        let (duration_ms, duration_us) = (elapsed.as_millis() as u64, elapsed.as_micros() as u64);
        self.emit(EventKind::AgentCompleted { agent, summary, duration_ms, duration_us }).await;
    }

    /// Streams a piece of the answer.
    async fn delta(&self, message_id: MessageId, text: String) {
        self.emit(EventKind::ResponseDelta { message_id, text }).await;
    }
}

/// The sink of a live run: numbered, persisted, published.
pub struct EventSink {
    log: Arc<RunLog>,
    writer: WriterHandle,
    state: Mutex<SinkState>,
    /// When the message that started the run was received (first-event latency).
    received: Instant,
    /// The next seq. Held while an event is handed to the writer, so that seq order and
    /// queue order are the same even if agents ever emit concurrently.
    next_seq: tokio::sync::Mutex<u64>,
}

#[derive(Default)]
struct SinkState {
    /// The answer streamed so far (what a timeout or cancel keeps).
    partial: String,
    tool_calls: u64,
    /// Tool calls started and not completed, closed with an error if the run ends first.
    open_calls: Vec<(AgentName, String, String, Instant)>,
    /// The run's own model calls, as OTLP GenAI spans: recorded as usage once it ends.
    model_usage: Vec<Value>,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    Completed { text: String, suggestions: Vec<String> },
    Failed { code: String, message: String },
    Cancelled,
    TimedOut,
    Interrupted,
}

impl EventSink {
    /// A sink for the run whose message was received at `received`.
    pub fn new(log: Arc<RunLog>, writer: WriterHandle, received: Instant) -> Self {
        Self { log, writer, state: Mutex::default(), received, next_seq: tokio::sync::Mutex::new(1) }
    }

    /// Keeps what a timeout, a stop or the end of the run needs: the answer so far and
    /// the tool calls still open.
    fn track(&self, kind: &EventKind) {
        let mut state = self.state.lock().expect("sink lock");
        match kind {
            EventKind::ResponseDelta { text, .. } => state.partial.push_str(text),
            EventKind::ToolExecuting { agent, tool, tool_call_id, .. } => {
                state.open_calls.push((*agent, tool.clone(), tool_call_id.clone(), Instant::now()))
            }
            EventKind::ToolCompleted { tool_call_id, .. } => state.open_calls.retain(|c| c.2 != *tool_call_id),
            _ => {}
        }
    }

    fn event(&self, seq: u64, kind: EventKind, terminal: bool) -> (Write, Publish) {
        let kind_name = kind.type_name();
        let json = self.serialize(seq, kind);
        let write = Write::Event { run_id: self.log.run_id, seq, kind: kind_name, json: json.clone() };
        // The first event's delivery is the latency users feel first.
        let received = (seq == 1).then_some(self.received);
        (write, Publish { log: self.log.clone(), seq, json, terminal, received })
    }

    fn serialize(&self, seq: u64, kind: EventKind) -> Arc<str> {
        let event = RunEvent { kind, run_id: self.log.run_id, thread_id: self.log.thread_id, seq, ts: now_ms() };
        Arc::from(serde_json::to_string(&event).expect("run events always serialize"))
    }

    pub fn take_model_usage(&self) -> Vec<Value> {
        std::mem::take(&mut self.state.lock().expect("sink lock").model_usage)
    }

    pub fn partial_text(&self) -> String {
        self.state.lock().expect("sink lock").partial.clone()
    }

    /// Ends the run: closes dangling tool calls, persists the outcome together with the
    /// terminal event, and only then publishes that event.
    pub async fn finish(&self, ctx: &RunContext, outcome: Outcome) -> RunStatus {
        let mut open = std::mem::take(&mut self.state.lock().expect("sink lock").open_calls);
        if self.log.lost_from().is_some() {
            // Nothing after the lost event is delivered: only the terminal event, below.
            open.clear();
        }
        let reason = match &outcome {
            Outcome::TimedOut => "the run timed out",
            Outcome::Cancelled => "the run was stopped",
            _ => "the run ended",
        };
        for (agent, tool, tool_call_id, started) in open {
            let elapsed = started.elapsed();
            let (duration_ms, duration_us) = (elapsed.as_millis() as u64, elapsed.as_micros() as u64);
            let error = Some(format!("{reason} before the tool finished"));
            self.emit(EventKind::ToolCompleted {
                agent,
                tool,
                tool_call_id,
                ok: false,
                result: None,
                error,
                duration_ms,
                duration_us,
            })
            .await;
        }
        let partial = self.partial_text();
        let (status, kind, text, error) = match outcome {
            Outcome::Completed { text, suggestions } => (
                RunStatus::Completed,
                EventKind::FinalResponse { message_id: ctx.message_id, text: text.clone(), suggestions },
                text,
                None,
            ),
            Outcome::Failed { code, message } => {
                let error = Some((code.clone(), message.clone()));
                (RunStatus::Failed, EventKind::RunFailed { code, message }, partial, error)
            }
            Outcome::Cancelled => (RunStatus::Cancelled, EventKind::RunCancelled {}, partial, None),
            Outcome::TimedOut => (RunStatus::TimedOut, EventKind::RunTimedOut { partial_text: partial.clone() }, partial, None),
            Outcome::Interrupted => (
                RunStatus::Interrupted,
                EventKind::RunInterrupted { partial_text: partial.clone() },
                partial,
                Some(apex_store::INTERRUPTED.clone()),
            ),
        };
        let finish = RunFinish {
            run_id: ctx.run_id,
            user_id: ctx.user_id.clone(),
            thread_id: ctx.thread_id,
            status,
            at_ms: now_ms(),
            error,
            message_id: ctx.message_id,
            text,
        };
        let mut next = self.next_seq.lock().await;
        // After a lost event, the terminal event takes its seq: no gap for followers, and
        // the store holds exactly what they were shown.
        let seq = self.log.lost_from().unwrap_or(*next);
        let (event, publish) = self.event(seq, kind, true);
        *next = seq + 1;
        // The run's state, its answer and its terminal event commit together.
        if !self.writer.publish_acked(vec![Write::Finish(finish), event], publish).await {
            tracing::error!(run_id = %ctx.run_id, "the end of a run could not be persisted");
        }
        metrics::counter!(m::RUNS_FINISHED, "status" => status.as_str()).increment(1);
        metrics::histogram!(m::RUN_DURATION, "status" => status.as_str()).record(self.received.elapsed().as_secs_f64());
        status
    }
}

#[async_trait]
impl Sink for EventSink {
    /// The event reaches followers once durable.
    async fn emit(&self, kind: EventKind) -> u64 {
        debug_assert!(!kind.is_terminal(), "terminal events go through finish()");
        let mut next = self.next_seq.lock().await;
        let seq = *next;
        self.track(&kind);
        let (write, publish) = self.event(seq, kind, false);
        self.writer.publish(vec![write], publish).await;
        // Advanced only once handed over: a run cancelled while waiting for queue space
        // leaves no gap in its seqs.
        *next = seq + 1;
        seq
    }

    async fn agent_result(&self, agent: AgentName, output: &Value, duration_ms: u64) {
        let output = serde_json::to_string(output).unwrap_or_else(|_| "null".into());
        self.writer.send(Write::AgentResult { run_id: self.log.run_id, agent: agent.as_str(), output, duration_ms }).await;
    }

    fn model_usage(&self, span: Value) {
        self.state.lock().expect("sink lock").model_usage.push(span);
    }

    fn next_tool_call_id(&self) -> String {
        let mut state = self.state.lock().expect("sink lock");
        state.tool_calls += 1;
        format!("call_{}", state.tool_calls)
    }
}

/// A sink that keeps every event in memory: for running agents without a store or a
/// socket (their unit tests, evaluations).
#[derive(Default)]
pub struct MemorySink {
    events: Mutex<Vec<EventKind>>,
    results: Mutex<Vec<(AgentName, Value)>>,
    model_usage: Mutex<Vec<Value>>,
    tool_calls: AtomicU64,
}

impl MemorySink {
    /// The events emitted so far, in order.
    pub fn events(&self) -> Vec<EventKind> {
        self.events.lock().expect("memory sink lock").clone()
    }

    /// The answer streamed so far (every `response_delta`, concatenated).
    pub fn text(&self) -> String {
        let events = self.events.lock().expect("memory sink lock");
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::ResponseDelta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tools called, by whom, in order.
    pub fn tool_calls(&self) -> Vec<(AgentName, String)> {
        let events = self.events.lock().expect("memory sink lock");
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::ToolExecuting { agent, tool, .. } => Some((*agent, tool.clone())),
                _ => None,
            })
            .collect()
    }

    /// The agents' conclusions, as they would be persisted.
    pub fn results(&self) -> Vec<(AgentName, Value)> {
        self.results.lock().expect("memory sink lock").clone()
    }

    /// The model calls noted, as OTLP spans.
    pub fn model_spans(&self) -> Vec<Value> {
        self.model_usage.lock().expect("memory sink lock").clone()
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn emit(&self, kind: EventKind) -> u64 {
        let mut events = self.events.lock().expect("memory sink lock");
        events.push(kind);
        events.len() as u64
    }

    async fn agent_result(&self, agent: AgentName, output: &Value, _duration_ms: u64) {
        self.results.lock().expect("memory sink lock").push((agent, output.clone()));
    }

    fn model_usage(&self, span: Value) {
        self.model_usage.lock().expect("memory sink lock").push(span);
    }

    fn next_tool_call_id(&self) -> String {
        format!("call_{}", self.tool_calls.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

//! The EventSink: how agents report what they do. It numbers each event, serializes it
//! once, and hands it to the persistence writer, which publishes it to the run's log
//! (live delivery) right after the group commit that makes it durable. The run itself
//! never waits for the disk.
use std::sync::{Arc, Mutex};
use std::time::Instant;

use apex_protocol::{now_ms, AgentName, EventKind, MessageId, RunEvent};
use apex_store::{RunFinish, RunStatus, Write};
use apex_telemetry as m;
use serde_json::Value;
use tracing::Instrument;

use crate::agent::{AgentError, Tools};
use crate::context::RunContext;
use crate::log::RunLog;
use crate::writer::{Publish, WriterHandle};

pub struct EventSink {
    log: Arc<RunLog>,
    writer: WriterHandle,
    tools: Tools,
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
    Completed { text: String },
    Failed { code: String, message: String },
    Cancelled,
    TimedOut,
    Interrupted,
}

impl EventSink {
    /// A sink for the run whose message was received at `received`.
    pub fn new(log: Arc<RunLog>, writer: WriterHandle, tools: Tools, received: Instant) -> Self {
        Self { log, writer, tools, state: Mutex::default(), received, next_seq: tokio::sync::Mutex::new(1) }
    }

    /// Emits a non-terminal event and returns its seq. It reaches followers once durable.
    pub async fn emit(&self, kind: EventKind) -> u64 {
        debug_assert!(!kind.is_terminal(), "terminal events go through finish()");
        let mut next = self.next_seq.lock().await;
        let seq = *next;
        let (write, publish) = self.event(seq, kind, false);
        self.writer.publish(vec![write], publish).await;
        // Advanced only once handed over: a run cancelled while waiting for queue space
        // leaves no gap in its seqs.
        *next = seq + 1;
        seq
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

    pub async fn started(&self, agent: AgentName) {
        self.emit(EventKind::AgentStarted { agent }).await;
    }

    pub async fn thinking(&self, agent: AgentName, text: impl Into<String>) {
        self.emit(EventKind::AgentThinking { agent, text: text.into() }).await;
    }

    pub async fn completed(&self, agent: AgentName, summary: String, started: Instant) {
        let elapsed = started.elapsed();
        metrics::histogram!(m::AGENT_DURATION, "agent" => agent.as_str()).record(elapsed.as_secs_f64());
        let duration_ms = elapsed.as_millis() as u64;
        self.emit(EventKind::AgentCompleted { agent, summary, duration_ms }).await;
    }

    /// Streams a piece of the answer.
    pub async fn delta(&self, message_id: MessageId, text: String) {
        self.state.lock().expect("sink lock").partial.push_str(&text);
        self.emit(EventKind::ResponseDelta { message_id, text }).await;
    }

    /// Calls a tool, emitting `tool_executing` and `tool_completed` around it.
    pub async fn call_tool(&self, ctx: &RunContext, agent: AgentName, tool: &str, args: Value) -> Result<Value, AgentError> {
        let Some(implementation) = self.tools.get(tool).cloned() else {
            return Err(AgentError::UnknownTool(tool.to_owned()));
        };
        let tool_call_id = {
            let mut state = self.state.lock().expect("sink lock");
            state.tool_calls += 1;
            let id = format!("call_{}", state.tool_calls);
            state.open_calls.push((agent, tool.to_owned(), id.clone(), Instant::now()));
            id
        };
        let started = Instant::now();
        self.emit(EventKind::ToolExecuting {
            agent,
            tool: tool.to_owned(),
            tool_call_id: tool_call_id.clone(),
            args: args.clone(),
        })
        .await;
        let result = implementation.call(ctx, args).instrument(tracing::info_span!("tool", tool)).await;
        self.state.lock().expect("sink lock").open_calls.retain(|c| c.2 != tool_call_id);
        let elapsed = started.elapsed();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::TOOL_CALLS, "tool" => tool.to_owned(), "outcome" => outcome).increment(1);
        metrics::histogram!(m::TOOL_DURATION, "tool" => tool.to_owned()).record(elapsed.as_secs_f64());
        let duration_ms = elapsed.as_millis() as u64;
        let (ok, result, error) = match result {
            Ok(v) => (true, Some(v), None),
            Err(e) => (false, None, Some(e.0)),
        };
        self.emit(EventKind::ToolCompleted {
            agent,
            tool: tool.to_owned(),
            tool_call_id,
            ok,
            result: result.clone(),
            error: error.clone(),
            duration_ms,
        })
        .await;
        match (result, error) {
            (Some(v), _) => Ok(v),
            (None, e) => Err(AgentError::Tool { tool: tool.to_owned(), message: e.unwrap_or_default() }),
        }
    }

    /// Queues an agent's structured output for persistence.
    pub async fn agent_result(&self, agent: AgentName, output: &Value, duration_ms: u64) {
        let output = serde_json::to_string(output).unwrap_or_else(|_| "null".into());
        self.writer.send(Write::AgentResult { run_id: self.log.run_id, agent: agent.as_str(), output, duration_ms }).await;
    }

    /// Notes a model call of this run (an OTLP GenAI span), recorded as Apex's own usage
    /// once the run has ended.
    pub fn model_usage(&self, span: Value) {
        self.state.lock().expect("sink lock").model_usage.push(span);
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
            let duration_ms = started.elapsed().as_millis() as u64;
            let error = Some(format!("{reason} before the tool finished"));
            self.emit(EventKind::ToolCompleted { agent, tool, tool_call_id, ok: false, result: None, error, duration_ms }).await;
        }
        let partial = self.partial_text();
        let (status, kind, text, error) = match outcome {
            Outcome::Completed { text } => {
                (RunStatus::Completed, EventKind::FinalResponse { message_id: ctx.message_id, text: text.clone() }, text, None)
            }
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
            user_id: ctx.user_id.to_string(),
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

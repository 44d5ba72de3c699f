//! The answer written by a language model, held to the facts.
//!
//! The model gets the computed answer as its FACTS, with the question (and, when it
//! planned the run, everything the agents and its own tool calls found), and may call the
//! run's tools. Its text is streamed sentence by sentence as `response_delta`: each
//! sentence passes the guards first (see [`Guards`]), so a figure the tools did not
//! compute, a name that is not in the data, a repetition or a quotation of the
//! instructions never reaches the user, and the computed direct answer goes first when the
//! model leaves its figure out. If the model fails, stalls or runs past its budget, the
//! built-in writer takes over and an `agent_thinking` event says so: the run never hangs
//! on a model.
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_llm::{ChatMessage, LlmError, LlmProvider, StreamEvent, Usage};
use apex_telemetry as m;
use serde_json::{json, Value};

use super::grounding::sentence_end;
use super::guards::{GuardCounts, Guards, Verdict};
use super::plan::Conversation;
use super::report::{chunks, CHUNK};
use crate::agent::Step;
use crate::context::RunContext;
use crate::tools::{ForecastSpend, Tool, WhatIfTool};

/// Tool-call rounds the model may make while writing.
const MAX_TOOL_ROUNDS: usize = 2;
/// The tools a model may call while writing: the ones that compute a figure on request.
const MODEL_TOOLS: [&str; 2] = [WhatIfTool::NAME, ForecastSpend::NAME];

/// A language model configured for a deployment (`APEX_LLM` and the `llm_*` settings).
#[derive(Clone)]
pub struct ModelWriter {
    pub provider: Arc<dyn LlmProvider>,
    /// The longest the model may take over a run (planning and writing); past it the
    /// built-in planner and writer answer.
    pub budget: Duration,
    /// Tokens one request may generate.
    pub max_tokens: u32,
    pub temperature: f32,
    /// Whether the model plans (calls the agents' tools, reads the thread's history) or
    /// only phrases the computed answer (the small local model's role).
    pub plans: bool,
    /// Tool calls a run's planning may make.
    pub max_steps: u32,
    /// Tokens (prompt and answer, all requests) a run may use; past it the model is dropped.
    pub max_run_tokens: u64,
    /// Added to the model's instructions (`APEX_LLM_PROMPT_ADDENDUM`).
    pub addendum: Option<String>,
}

impl ModelWriter {
    /// A model with the default bounds.
    pub fn new(provider: Arc<dyn LlmProvider>, budget: Duration, max_tokens: u32) -> Self {
        Self { provider, budget, max_tokens, temperature: 0.0, plans: true, max_steps: 6, max_run_tokens: 60_000, addendum: None }
    }
}

impl std::fmt::Debug for ModelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWriter")
            .field("system", &self.provider.system())
            .field("model", &self.provider.model())
            .field("budget", &self.budget)
            .field("plans", &self.plans)
            .finish()
    }
}

/// What the model wrote and what it cost.
#[derive(Debug, Default)]
pub struct Written {
    /// The text as streamed to the user (grounded, possibly completed by the built-in writer).
    pub text: String,
    pub usage: Usage,
    /// What the guards changed.
    pub guards: GuardCounts,
    /// Tool calls the model made while planning.
    pub tool_calls: u32,
    /// Why the built-in writer had to take over, if it did.
    pub fallback: Option<String>,
    pub duration_ms: u64,
    /// When the model was first asked (ms since the epoch).
    pub started_ms: u64,
}

impl Written {
    /// This call as an OpenTelemetry GenAI span (OTLP JSON, `ExportTraceServiceRequest`):
    /// Apex's own model usage, in the form its usage import reads (`otel_spans_json`).
    /// The trace is the run, the span the answer; the resource names Apex as the feature.
    pub fn otel_span(&self, w: &ModelWriter, ctx: &RunContext) -> Value {
        let attr = |key: &str, value: Value| json!({ "key": key, "value": value });
        let nanos = |ms: u64| (ms as u128 * 1_000_000).to_string();
        let span_id: String = ctx.message_id.0.simple().to_string().chars().take(16).collect();
        json!({ "resourceSpans": [{
            "resource": { "attributes": [
                attr("service.name", json!({ "stringValue": OWN_USAGE_FEATURE })),
                attr("deployment.environment", json!({ "stringValue": "apex" })),
            ]},
            "scopeSpans": [{
                "scope": { "name": "apex" },
                "spans": [{
                    "traceId": ctx.run_id.0.simple().to_string(),
                    "spanId": span_id,
                    "name": format!("chat {}", w.provider.model()),
                    "kind": 3,
                    "startTimeUnixNano": nanos(self.started_ms),
                    "endTimeUnixNano": nanos(self.started_ms + self.duration_ms),
                    "attributes": [
                        attr("gen_ai.operation.name", json!({ "stringValue": "chat" })),
                        attr("gen_ai.system", json!({ "stringValue": w.provider.system() })),
                        attr("gen_ai.request.model", json!({ "stringValue": w.provider.model() })),
                        attr("gen_ai.usage.input_tokens", json!({ "intValue": self.usage.input_tokens.to_string() })),
                        attr("gen_ai.usage.output_tokens", json!({ "intValue": self.usage.output_tokens.to_string() })),
                        attr("user.id", json!({ "stringValue": ctx.user_id.as_str() })),
                    ],
                }],
            }],
        }]})
    }

    pub fn to_json(&self, w: &ModelWriter) -> Value {
        json!({
            "gen_ai.system": w.provider.system(),
            "gen_ai.request.model": w.provider.model(),
            "gen_ai.usage.input_tokens": self.usage.input_tokens,
            "gen_ai.usage.output_tokens": self.usage.output_tokens,
            "grounding_replacements": self.guards.figure,
            "guards": self.guards,
            "planned": w.plans,
            "tool_calls": self.tool_calls,
            "fallback": self.fallback,
            "duration_ms": self.duration_ms,
        })
    }
}

/// The feature Apex's own model usage is recorded under (see `OWN_USAGE_ACCOUNT`).
pub const OWN_USAGE_FEATURE: &str = "apex-report";

const SYSTEM_PROMPT: &str = "You are Apex, an analyst of AI spend. Answer the user's question in a short Markdown report \
(at most 200 words) written from the FACTS below. State only figures that appear in the FACTS, copied exactly; \
never estimate, add up or invent a number. You may call a tool to compute a figure that is not in the FACTS.";

impl ModelWriter {
    /// Writes the answer with the model, streaming it as the report agent's `step`.
    /// `computed` is the built-in answer of this run, `guards` hold the model to the
    /// run's facts, and `conv` is the planning conversation when the model planned.
    pub async fn write(&self, step: &Step<'_>, computed: &str, mut guards: Guards, conv: Option<Conversation>) -> Written {
        let mut out = Written { started_ms: apex_protocol::now_ms(), ..Written::default() };
        let started = conv.as_ref().map_or_else(Instant::now, |c| c.started);
        if let Some(c) = &conv {
            out.started_ms = c.started_ms;
            out.usage = c.usage;
            out.tool_calls = c.steps;
            let refs: Vec<&Value> = c.results.iter().collect();
            guards.extend(&refs);
        }
        let failure = match conv.as_ref().and_then(|c| c.failed.clone()) {
            // Announced where it happened: the built-in writer answers.
            Some(why) => Some(why),
            None => {
                let remaining = self.budget.saturating_sub(started.elapsed());
                let work = self.converse(step, computed, &mut guards, conv, &mut out);
                match tokio::time::timeout(remaining, work).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(self.say_failed(step, &out, &e.to_string()).await),
                    Err(_) => {
                        let why = format!("no complete answer within {} s", self.budget.as_secs_f32());
                        Some(self.say_failed(step, &out, &why).await)
                    }
                }
            }
        };
        if let Some(why) = failure {
            let rest = if out.text.is_empty() { computed.to_owned() } else { format!("\n\n{computed}") };
            for piece in chunks(&rest, CHUNK) {
                step.delta(piece.to_owned()).await;
            }
            out.text.push_str(&rest);
            out.fallback = Some(why);
        } else {
            if let Some(lead) = guards.unsent_lead() {
                self.send(step, &mut out, lead).await;
            }
            if step.ctx.demo && !out.text.contains(super::report::DEMO_NOTICE) {
                self.send(step, &mut out, format!("\n\n{}", super::report::DEMO_NOTICE)).await;
            }
        }
        out.guards = guards.counts;
        if out.guards.total() > 0 {
            step.think(format!("Held to the facts: {}.", out.guards.describe())).await;
        }
        out.duration_ms = started.elapsed().as_millis() as u64;
        let (provider, model) = (self.provider.system().to_owned(), self.provider.model().to_owned());
        let outcome = if out.fallback.is_some() { "fallback" } else { "ok" };
        metrics::counter!(m::LLM_REQUESTS, "provider" => provider.clone(), "model" => model.clone(), "outcome" => outcome)
            .increment(1);
        metrics::counter!(m::LLM_TOKENS, "provider" => provider.clone(), "model" => model.clone(), "kind" => "input")
            .increment(out.usage.input_tokens);
        metrics::counter!(m::LLM_TOKENS, "provider" => provider, "model" => model, "kind" => "output")
            .increment(out.usage.output_tokens);
        metrics::counter!(m::GROUNDING_REPLACEMENTS).increment(out.guards.figure);
        for (guard, n) in out.guards.by_guard() {
            if n > 0 {
                metrics::counter!(m::ANSWER_GUARDS, "guard" => guard).increment(n);
            }
        }
        tracing::info!(
            gen_ai.system = self.provider.system(),
            gen_ai.request.model = self.provider.model(),
            gen_ai.usage.input_tokens = out.usage.input_tokens,
            gen_ai.usage.output_tokens = out.usage.output_tokens,
            guards = out.guards.total(),
            tool_calls = out.tool_calls,
            fallback = out.fallback.is_some(),
            "model wrote the answer"
        );
        out
    }

    /// Everything the model is told besides the facts (what it must not quote back).
    pub(super) fn instructions_said(&self) -> String {
        format!("{}\n{}", self.instructions(SYSTEM_PROMPT), super::plan::PLANNING_PROMPT)
    }

    /// Announces the fallback; returns why.
    async fn say_failed(&self, step: &Step<'_>, out: &Written, why: &str) -> String {
        let who = format!("{} model {}", self.provider.system(), self.provider.model());
        let what = if out.text.is_empty() { "writes the report" } else { "completes the report" };
        step.think(format!("The {who} failed ({why}); the built-in writer {what}.")).await;
        why.to_owned()
    }

    async fn converse(
        &self,
        step: &Step<'_>,
        computed: &str,
        guards: &mut Guards,
        conv: Option<Conversation>,
        out: &mut Written,
    ) -> Result<(), LlmError> {
        let ctx = step.ctx;
        let instructions = format!("{}\n\nFACTS:\n{}", self.instructions(SYSTEM_PROMPT), facts(computed));
        let mut messages = match conv {
            Some(c) => {
                let mut m = c.messages;
                m.push(ChatMessage::user(format!("Now answer my question: {}", ctx.text)));
                m
            }
            None => vec![ChatMessage::user(ctx.text.to_string())],
        };
        for round in 0..=MAX_TOOL_ROUNDS {
            let mut request = self.request(&instructions, &messages);
            if round < MAX_TOOL_ROUNDS {
                request.tools = step.tools.specs(&MODEL_TOOLS);
            }
            let mut stream = self.provider.chat(request).await?;
            let mut pending = String::new();
            let mut calls = Vec::new();
            while let Some(event) = stream.next().await {
                match event? {
                    StreamEvent::Text(t) => {
                        pending.push_str(&t);
                        while let Some(end) = sentence_end(&pending) {
                            let sentence: String = pending.drain(..end).collect();
                            self.emit(step, guards, &sentence, out).await;
                        }
                    }
                    StreamEvent::ToolCall(call) => calls.push(call),
                    StreamEvent::Queued { ahead } => {
                        let text = format!(
                            "The {} model is busy with {ahead} other request(s); waiting for it.",
                            self.provider.system()
                        );
                        step.think(text).await;
                    }
                    StreamEvent::Done { usage, .. } => {
                        out.usage.input_tokens += usage.input_tokens;
                        out.usage.output_tokens += usage.output_tokens;
                    }
                }
            }
            if !pending.is_empty() {
                self.emit(step, guards, &pending, out).await;
            }
            if calls.is_empty() {
                return Ok(());
            }
            messages.push(ChatMessage::assistant(String::new(), calls.clone()));
            let mut tool_results: Vec<Value> = Vec::new();
            for call in calls {
                let args: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                let result = if !MODEL_TOOLS.contains(&call.name.as_str()) {
                    json!({ "error": format!("`{}` is not one of the tools offered: {}", call.name, MODEL_TOOLS.join(", ")) })
                } else {
                    match step.call_json(&call.name, args).await {
                        Ok(v) => v,
                        Err(e) => json!({ "error": e.to_string() }),
                    }
                };
                messages.push(ChatMessage::tool_result(call.id, result.to_string()));
                tool_results.push(result);
            }
            // Figures and names the model asked the tools for are facts too.
            let refs: Vec<&Value> = tool_results.iter().collect();
            guards.extend(&refs);
        }
        Ok(())
    }

    async fn emit(&self, step: &Step<'_>, guards: &mut Guards, sentence: &str, out: &mut Written) {
        match guards.pass(sentence) {
            Verdict::Send(pieces) => {
                for piece in pieces {
                    self.send(step, out, piece).await;
                }
            }
            Verdict::Drop(layout) => {
                tracing::info!(run_id = %step.ctx.run_id, "a sentence of the model's answer was dropped by a guard");
                // Keep the paragraph break, unless the answer has none yet to keep.
                if !layout.is_empty() && !out.text.is_empty() && !out.text.ends_with("\n\n") {
                    self.send(step, out, layout).await;
                }
            }
        }
    }

    async fn send(&self, step: &Step<'_>, out: &mut Written, text: String) {
        out.text.push_str(&text);
        step.delta(text).await;
    }
}

/// The computed report, shortened for a prompt: long lines (the rationales of
/// recommendations) keep their first sentence. Small local models read prompts slowly.
fn facts(computed: &str) -> String {
    let mut out = String::with_capacity(computed.len());
    for line in computed.lines() {
        let first_sentence = line.match_indices(". ").find(|(i, _)| *i >= 40).map(|(i, _)| i + 1);
        let cut = if line.len() > 200 { first_sentence.unwrap_or(line.len()) } else { line.len() };
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

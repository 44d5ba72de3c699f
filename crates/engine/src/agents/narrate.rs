//! The report written by a language model, held to the figures the tools computed.
//!
//! The model gets the user's question and the computed report as its facts, and may call
//! the run's tools. Its text is streamed sentence by sentence as `response_delta`: each
//! sentence is grounded first (see [`Grounding`]), so a figure the tools did not compute
//! never reaches the user. If the model fails, stalls or runs past its budget, the
//! built-in writer takes over and an `agent_thinking` event says so: the run never hangs
//! on a model.
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_llm::{ChatMessage, ChatRequest, LlmError, LlmProvider, StreamEvent, Usage};
use apex_telemetry as m;
use serde_json::{json, Value};

use super::grounding::{sentence_end, Grounding};
use super::report::{chunks, CHUNK};
use crate::agent::Step;
use crate::context::RunContext;
use crate::tools::{ForecastSpend, Tool, WhatIfTool};

/// Tool-call rounds the model may make before it must write.
const MAX_TOOL_ROUNDS: usize = 2;
/// The tools a model may call while writing: the ones that compute a figure on request.
const MODEL_TOOLS: [&str; 2] = [WhatIfTool::NAME, ForecastSpend::NAME];

/// A language model configured to write reports.
#[derive(Clone)]
pub struct ModelWriter {
    pub provider: Arc<dyn LlmProvider>,
    /// The longest a report may take from the model; past it the built-in writer answers.
    pub budget: Duration,
    pub max_tokens: u32,
}

impl std::fmt::Debug for ModelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWriter")
            .field("system", &self.provider.system())
            .field("model", &self.provider.model())
            .field("budget", &self.budget)
            .finish()
    }
}

/// What the model wrote and what it cost.
#[derive(Debug, Default)]
pub struct Written {
    /// The text as streamed to the user (grounded, possibly completed by the built-in writer).
    pub text: String,
    pub usage: Usage,
    /// Sentences replaced because they stated a figure the tools did not compute.
    pub replaced: u64,
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
            "grounding_replacements": self.replaced,
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
    /// Writes the report with the model, streaming it as the report agent's `step`.
    /// `computed` is the built-in report of this run and `results` the findings it rests on.
    pub async fn write(&self, step: &Step<'_>, computed: &str, results: &[&Value]) -> Written {
        let started = Instant::now();
        let mut out = Written { started_ms: apex_protocol::now_ms(), ..Written::default() };
        let mut grounding = Grounding::new(computed, results);
        let work = self.converse(step, computed, &mut grounding, &mut out);
        let failure = match tokio::time::timeout(self.budget, work).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no complete answer within {} s", self.budget.as_secs_f32())),
        };
        if let Some(why) = failure {
            let who = format!("{} model {}", self.provider.system(), self.provider.model());
            let rest = if out.text.is_empty() {
                step.think(format!("The {who} failed ({why}); the built-in writer writes the report.")).await;
                computed.to_owned()
            } else {
                step.think(format!("The {who} failed ({why}); the built-in writer completes the report.")).await;
                format!("\n\n{computed}")
            };
            for piece in chunks(&rest, CHUNK) {
                step.delta(piece.to_owned()).await;
            }
            out.text.push_str(&rest);
            out.fallback = Some(why);
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
        metrics::counter!(m::GROUNDING_REPLACEMENTS).increment(out.replaced);
        tracing::info!(
            gen_ai.system = self.provider.system(),
            gen_ai.request.model = self.provider.model(),
            gen_ai.usage.input_tokens = out.usage.input_tokens,
            gen_ai.usage.output_tokens = out.usage.output_tokens,
            grounding_replacements = out.replaced,
            fallback = out.fallback.is_some(),
            "model wrote the report"
        );
        out
    }

    async fn converse(
        &self,
        step: &Step<'_>,
        computed: &str,
        grounding: &mut Grounding,
        out: &mut Written,
    ) -> Result<(), LlmError> {
        let ctx = step.ctx;
        let mut messages = vec![
            ChatMessage::system(format!("{SYSTEM_PROMPT}\n\nFACTS:\n{}", facts(computed))),
            ChatMessage::user(ctx.text.to_string()),
        ];
        let mut tool_results: Vec<Value> = Vec::new();
        for round in 0..=MAX_TOOL_ROUNDS {
            let mut request = ChatRequest::new(messages.clone());
            request.max_tokens = self.max_tokens;
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
                            self.emit(step, grounding, &sentence, out).await;
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
                self.emit(step, grounding, &pending, out).await;
            }
            if calls.is_empty() {
                return Ok(());
            }
            messages.push(ChatMessage::assistant(String::new(), calls.clone()));
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
            // Figures the model asked the tools for are computed figures too.
            let refs: Vec<&Value> = tool_results.iter().collect();
            grounding.extend(&refs);
        }
        Ok(())
    }

    async fn emit(&self, step: &Step<'_>, grounding: &Grounding, sentence: &str, out: &mut Written) {
        let text = match grounding.check(sentence) {
            None => sentence.to_owned(),
            Some(replacement) => {
                out.replaced += 1;
                tracing::info!(run_id = %step.ctx.run_id, "a sentence with an unsupported figure was replaced");
                replacement
            }
        };
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

//! A configured model plans with the agents.
//!
//! Each sub-agent first computes what the question's direct answer needs (the built-in
//! planner: the parsed question decides the calls). The model then reads what the agent
//! found, with the question, its parsed form and the thread's history, and may call that
//! agent's tools for anything more the question needs; every call is streamed as
//! `tool_executing`/`tool_completed` of that agent, and what the model says between calls
//! is the agent's `agent_thinking`. The report agent then has the model write the answer
//! from all of it ([`super::narrate`]), held to the facts ([`super::guards`]).
//!
//! Bounds: tool calls per run (`max_steps`), tokens per run (`max_run_tokens`) and time
//! (`budget`). A model that fails, stalls, repeats a call (a loop) or sends invalid
//! arguments twice (the first error goes back to it) is dropped for the rest of the run:
//! the built-in planner and writer finish it, and an `agent_thinking` event says why.
use std::collections::HashSet;
use std::time::Instant;

use apex_llm::{ChatMessage, ChatRequest, LlmError, StreamEvent, Usage};
use apex_protocol::AgentName;
use apex_telemetry as m;
use serde_json::Value;

use super::grounding::sentences;
use super::guards::{Guards, Verdict};
use super::narrate::ModelWriter;
use crate::agent::{AgentOutput, Step};
use crate::error::AgentError;
use crate::question::{Question, Said};

/// Characters of a tool or agent result a model is given; longer ones are cut.
const RESULT_CHARS: usize = 3_000;

/// The model's side of a run: the conversation so far and what it has used.
#[derive(Debug)]
pub struct Conversation {
    /// History, the question, and each agent's exchange (no system message: each request
    /// composes its own).
    pub messages: Vec<ChatMessage>,
    /// The results of the tools the model called (their figures and names are facts).
    pub results: Vec<Value>,
    pub usage: Usage,
    /// Tool calls made (the `max_steps` bound).
    pub steps: u32,
    invalid: u32,
    seen: HashSet<String>,
    /// Why the model was dropped, if it was.
    pub failed: Option<String>,
    pub started: Instant,
    pub started_ms: u64,
    /// What the model was told (for the guard against quoting it).
    pub instructions: String,
}

impl Conversation {
    pub fn active(&self) -> bool {
        self.failed.is_none()
    }
}

pub(super) const PLANNING_PROMPT: &str =
    "You are Apex, an analyst of AI spend, working with four agents: triage reads the question, \
data queries the usage, optimization prices savings and what-ifs, report writes the answer. Each agent computes its part \
and reports it to you. You may call that agent's tools for anything more the question needs; call only what the answer \
needs. When the agent has what the answer needs, reply with one short sentence on what matters for the answer, without \
calling a tool. Never invent a figure or a name.";

impl ModelWriter {
    /// The conversation of a run the model plans: history, then the question with its
    /// parsed form and what the data holds.
    pub fn start(&self, question_text: &str, question: &Question, history: Vec<Said>, data: &str) -> Conversation {
        let mut messages: Vec<ChatMessage> = history
            .into_iter()
            .map(|s| if s.by_user { ChatMessage::user(s.text) } else { ChatMessage::assistant(s.text, Vec::new()) })
            .collect();
        let parsed = serde_json::to_string(question).unwrap_or_default();
        messages
            .push(ChatMessage::user(format!("{question_text}\n\n(Read as: {}. Parsed: {parsed}. {data})", question.describe())));
        let instructions = self.instructions(PLANNING_PROMPT);
        Conversation {
            messages,
            results: Vec::new(),
            usage: Usage::default(),
            steps: 0,
            invalid: 0,
            seen: HashSet::new(),
            failed: None,
            started: Instant::now(),
            started_ms: apex_protocol::now_ms(),
            instructions,
        }
    }

    /// The agent of `step` has run: the model reads what it found and may call its tools.
    /// On failure the conversation is marked failed and the fallback is announced.
    pub async fn consult(&self, step: &Step<'_>, conv: &mut Conversation, out: &AgentOutput) {
        if !conv.active() {
            return;
        }
        let agent = step.agent;
        let asked = format!(
            "[{} agent] {}\nIts result: {}\nCall a tool of the {} agent if the question needs more from it; otherwise reply in one sentence.",
            agent.as_str(),
            out.summary,
            cut(&out.result.to_string()),
            agent.as_str(),
        );
        // What the model says is shown as the agent's thought only where it holds to the
        // facts: the same guards as the answer, with the agent's result as the facts.
        let names = match step.ctx.data.vocabulary().await {
            Ok(v) => v.names().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        let said = format!("{}\n{asked}", conv.instructions);
        let mut guards = Guards::new(&out.summary, &[&out.result], names, &said).with_prices(step.ctx.data.prices().clone());
        let refs: Vec<&Value> = conv.results.iter().collect();
        guards.extend(&refs);
        guards.know(&step.ctx.text);
        conv.messages.push(ChatMessage::user(asked));
        let remaining = self.budget.saturating_sub(conv.started.elapsed());
        let work = self.rounds(step, conv, &mut guards);
        let failure = match tokio::time::timeout(remaining, work).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some(format!("did not finish planning within {} s", self.budget.as_secs_f32())),
        };
        if let Some(why) = failure {
            step.think(format!(
                "The {} model {} {why}; the built-in planner and writer finish the answer.",
                self.provider.system(),
                self.provider.model()
            ))
            .await;
            conv.failed = Some(why);
        }
    }

    async fn rounds(&self, step: &Step<'_>, conv: &mut Conversation, guards: &mut Guards) -> Result<(), String> {
        let agent = step.agent;
        let offered = step.tools.owned_by(agent);
        loop {
            let mut request = self.request(&conv.instructions, &conv.messages);
            if conv.steps < self.max_steps {
                request.tools = step.tools.specs(&offered);
            }
            let mut stream = self.provider.chat(request).await.map_err(|e| failed(&e))?;
            let (mut text, mut calls) = (String::new(), Vec::new());
            while let Some(event) = stream.next().await {
                match event.map_err(|e| failed(&e))? {
                    StreamEvent::Text(t) => text.push_str(&t),
                    StreamEvent::ToolCall(c) => calls.push(c),
                    StreamEvent::Queued { ahead } => {
                        step.think(format!("The model is busy with {ahead} other request(s); waiting for it.")).await
                    }
                    StreamEvent::Done { usage, .. } => {
                        conv.usage.input_tokens += usage.input_tokens;
                        conv.usage.output_tokens += usage.output_tokens;
                    }
                }
            }
            let tokens = conv.usage.input_tokens + conv.usage.output_tokens;
            if tokens > self.max_run_tokens {
                return Err(format!("used {tokens} tokens, more than the {} a run allows", self.max_run_tokens));
            }
            let text = text.trim().to_owned();
            if let Some(thought) = thought(&text, guards) {
                step.think(thought).await;
            }
            if calls.is_empty() {
                conv.messages.push(ChatMessage::assistant(text, Vec::new()));
                return Ok(());
            }
            conv.messages.push(ChatMessage::assistant(text, calls.clone()));
            for call in calls {
                if conv.steps >= self.max_steps {
                    conv.messages.push(ChatMessage::tool_result(&call.id, "{\"error\":\"no more tool calls in this run\"}"));
                    continue;
                }
                conv.steps += 1;
                let result = self.call(step, conv, &offered, &call.name, &call.arguments).await?;
                guards.extend(&[&result]);
                conv.messages.push(ChatMessage::tool_result(call.id, cut(&result.to_string())));
            }
            if conv.steps >= self.max_steps {
                step.think(format!("The model made the {} tool calls a run allows; moving on.", self.max_steps)).await;
            }
        }
    }

    /// One tool call of the model: its result, or the error it is told about. A repeated
    /// call and a second invalid one end the planning.
    async fn call(
        &self,
        step: &Step<'_>,
        conv: &mut Conversation,
        offered: &[&str],
        name: &str,
        arguments: &str,
    ) -> Result<Value, String> {
        let count = |outcome: &'static str| metrics::counter!(m::MODEL_TOOL_CALLS, "outcome" => outcome).increment(1);
        let args: Result<Value, String> = if !offered.contains(&name) {
            Err(format!("`{name}` is not a tool of the {} agent: use one of {}", step.agent.as_str(), offered.join(", ")))
        } else {
            serde_json::from_str::<Value>(if arguments.trim().is_empty() { "{}" } else { arguments })
                .map_err(|e| format!("the arguments of `{name}` are not JSON: {e}"))
        };
        let invalid = |conv: &mut Conversation, message: String| {
            count("invalid");
            conv.invalid += 1;
            if conv.invalid >= 2 {
                return Err(format!("called a tool with invalid arguments twice ({message})"));
            }
            Ok(serde_json::json!({ "error": message }))
        };
        let args = match args {
            Ok(a) => a,
            Err(message) => return invalid(conv, message),
        };
        let key = format!("{name} {}", canonical(&args));
        if conv.seen.contains(&key) {
            count("loop");
            return Err(format!("called `{name}` again with the same arguments (a loop)"));
        }
        match step.call_json(name, args).await {
            Ok(v) => {
                count("ok");
                conv.seen.insert(key);
                conv.results.push(v.clone());
                Ok(v)
            }
            Err(AgentError::Tool { message, .. }) if message.starts_with("invalid arguments") => invalid(conv, message),
            Err(e) => {
                count("error");
                Ok(serde_json::json!({ "error": e.to_string() }))
            }
        }
    }

    pub(super) fn request(&self, instructions: &str, messages: &[ChatMessage]) -> ChatRequest {
        let mut all = Vec::with_capacity(messages.len() + 1);
        all.push(ChatMessage::system(instructions.to_owned()));
        all.extend_from_slice(messages);
        let mut request = ChatRequest::new(all);
        request.max_tokens = self.max_tokens;
        request.temperature = self.temperature;
        request
    }

    /// A prompt with the deployment's addendum.
    pub(super) fn instructions(&self, prompt: &str) -> String {
        match self.addendum.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => format!("{prompt}\n\n{a}"),
            None => prompt.to_owned(),
        }
    }
}

fn failed(e: &LlmError) -> String {
    format!("failed ({e})")
}

/// What the model said between calls, as the agent's thought: its sentences that pass
/// the guards, on one line, not too long; `None` when nothing passes.
fn thought(text: &str, guards: &mut Guards) -> Option<String> {
    let mut kept = String::new();
    for sentence in sentences(text) {
        if let Verdict::Send(pieces) = guards.pass(&sentence) {
            if guards.counts.figure == 0 {
                kept.push_str(&pieces.concat());
            }
        }
        // A replaced figure is not the model's thought: say nothing of it.
        guards.counts.figure = 0;
    }
    let line = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.chars().any(char::is_alphanumeric) {
        return None;
    }
    let cut: String = line.chars().take(300).collect();
    Some(format!("The model: {cut}{}", if line.chars().count() > 300 { "…" } else { "" }))
}

fn cut(text: &str) -> String {
    if text.chars().count() <= RESULT_CHARS {
        return text.to_owned();
    }
    format!("{}… (cut)", text.chars().take(RESULT_CHARS).collect::<String>())
}

/// JSON with sorted keys: the same arguments written in another order are the same call.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys.iter().map(|k| format!("{k:?}:{}", canonical(&o[*k]))).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The agents whose tools a model may call while planning (the triage agent reads the
/// question, the report agent writes).
pub fn consulted(agent: AgentName) -> bool {
    matches!(agent, AgentName::Data | AgentName::Optimization)
}

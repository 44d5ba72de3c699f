//! Language models behind one seam.
//!
//! An [`LlmProvider`] takes chat messages (and the tools the model may call) and answers
//! with a [`ChatStream`]: text deltas and tool calls as the model produces them, then one
//! [`Usage`] record. Dropping the stream cancels the request: the provider stops reading
//! (or generating) at the next token. Errors are typed ([`LlmError`]) so that callers can
//! tell a refused connection from a rate limit or a stall.
//!
//! Providers: [`openai::OpenAi`] (any OpenAI-compatible Chat Completions endpoint) and
//! [`local::LocalModel`] (a GGUF model run in-process with candle).
//! The built-in writer is not a provider: it is the engine's deterministic templates,
//! used when no model is configured and whenever a model fails.
#![forbid(unsafe_code)]

pub mod breaker;
mod llama;
pub mod local;
pub mod openai;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message of a conversation. An assistant message may carry the tool calls it made;
/// a tool message answers one of them (`tool_call_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self { role: Role::Assistant, content: content.into(), tool_calls, tool_call_id: None }
    }

    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: Role::Tool, content: content.into(), tool_calls: Vec::new(), tool_call_id: Some(tool_call_id.into()) }
    }
}

/// A function the model may call: a name, what it does, and a JSON Schema of its arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A call the model made. `arguments` is the JSON text as the model wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Which tool the model must call, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must call this function.
    Function(String),
}

#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    pub max_tokens: u32,
    /// 0 = greedy (deterministic where the provider allows it).
    pub temperature: f32,
}

impl ChatRequest {
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self { messages, tools: Vec::new(), tool_choice: ToolChoice::Auto, max_tokens: 512, temperature: 0.0 }
    }
}

/// Tokens a request used, as the provider counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What a model produces, in order: deltas and tool calls, then exactly one `Done`.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Text(String),
    ToolCall(ToolCall),
    /// The last event of a successful stream.
    Done {
        usage: Usage,
        finish_reason: String,
    },
    /// The model is busy: this many requests are ahead of this one (sent before any text).
    Queued {
        ahead: usize,
    },
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// The server could not be reached (refused, DNS, TLS).
    #[error("the model server is unreachable: {0}")]
    Unreachable(String),
    /// No response, or no next token, within the timeout.
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    /// 429 after the retries; `retry_after` as the server asked.
    #[error("the model server is rate limiting (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx after the retries, or a 4xx (not retried).
    #[error("the model server answered {status}: {message}")]
    Status { status: u16, message: String },
    /// Too many recent failures: calls fail fast until the breaker's cool-down is over.
    #[error("the model server failed repeatedly; not calling it for a while")]
    CircuitOpen,
    /// The answer could not be understood.
    #[error("the model server sent an invalid response: {0}")]
    Protocol(String),
    /// The local model could not be loaded or run.
    #[error("the local model failed: {0}")]
    Model(String),
    /// The model is busy with other requests and this one could not be queued.
    #[error("the model is busy")]
    Busy,
}

impl LlmError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout(_) | Self::RateLimited { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The answer of a model, as it is produced. Dropping it cancels the request.
pub struct ChatStream {
    rx: mpsc::Receiver<Result<StreamEvent, LlmError>>,
    _cancel: DropGuard,
}

/// The producing side of a [`ChatStream`], held by a provider's task or thread.
#[derive(Clone)]
pub struct StreamSender {
    tx: mpsc::Sender<Result<StreamEvent, LlmError>>,
    cancel: CancellationToken,
}

/// A connected stream and its sender. `buffer` bounds how far the producer may run ahead.
pub fn channel(buffer: usize) -> (StreamSender, ChatStream) {
    let (tx, rx) = mpsc::channel(buffer);
    let cancel = CancellationToken::new();
    (StreamSender { tx, cancel: cancel.clone() }, ChatStream { rx, _cancel: cancel.drop_guard() })
}

impl ChatStream {
    /// The next event; `None` once the stream is over (after `Done` or an error).
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        self.rx.recv().await
    }

    /// Reads the whole stream: the text, the tool calls and the usage.
    pub async fn collect(mut self) -> Result<Collected, LlmError> {
        let mut out = Collected::default();
        while let Some(event) = self.next().await {
            match event? {
                StreamEvent::Text(t) => out.text.push_str(&t),
                StreamEvent::ToolCall(c) => out.tool_calls.push(c),
                StreamEvent::Queued { .. } => {}
                StreamEvent::Done { usage, finish_reason } => {
                    out.usage = usage;
                    out.finish_reason = finish_reason;
                    return Ok(out);
                }
            }
        }
        Err(LlmError::Protocol("the stream ended without a final usage record".into()))
    }
}

/// A whole answer (see [`ChatStream::collect`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collected {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: String,
}

impl StreamSender {
    /// Hands an event to the reader, waiting while it is behind. False once the reader is
    /// gone: the producer should stop.
    pub async fn send(&self, event: Result<StreamEvent, LlmError>) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.tx.send(event) => sent.is_ok(),
        }
    }

    /// The same from a thread outside the async runtime (local inference).
    pub fn blocking_send(&self, event: Result<StreamEvent, LlmError>) -> bool {
        !self.cancel.is_cancelled() && self.tx.blocking_send(event).is_ok()
    }

    /// True once the reader dropped the stream.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the reader drops the stream.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// A language model. Implementations must stop producing soon after the stream is dropped.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    /// The provider kind, e.g. `openai` or `local` (the OpenTelemetry `gen_ai.system`).
    fn system(&self) -> &str;
    /// The model that answers (`gen_ai.request.model`).
    fn model(&self) -> &str;
    /// Starts a request. Errors that happen before the first event (connection refused,
    /// 429, 5xx after retries, circuit open) are returned here; later ones arrive in the stream.
    async fn chat(&self, request: ChatRequest) -> Result<ChatStream, LlmError>;
}

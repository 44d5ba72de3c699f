//! Any OpenAI-compatible Chat Completions endpoint (OpenAI, LiteLLM proxy, vLLM, llama.cpp
//! server, Ollama): streamed over server-sent events, with tool calling, timeouts, retries
//! with backoff on 429/5xx that honour `Retry-After`, and a circuit breaker.
use std::collections::BTreeMap;
use std::time::Duration;

use apex_telemetry::error_chain;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::breaker::Breaker;
use crate::{
    channel, ChatMessage, ChatRequest, ChatStream, LlmError, LlmProvider, StreamEvent, StreamSender, ToolCall, ToolChoice, Usage,
};

#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// Up to and including the API version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as the bearer token; never printed (`Debug` shows it redacted).
    pub api_key: Option<secrecy::SecretString>,
    pub model: String,
    pub connect_timeout: Duration,
    /// How long to wait for the response headers, and then for each next piece of the stream.
    pub read_timeout: Duration,
    /// Attempts after the first one, for 429, 5xx, refused connections and timeouts.
    pub retries: u32,
    /// First backoff; doubled on each retry.
    pub backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails at once.
    pub max_retry_wait: Duration,
    /// Failures in a row that open the circuit, and how long it stays open.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
}

impl OpenAiConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(20),
            retries: 2,
            backoff: Duration::from_millis(250),
            max_retry_wait: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
        }
    }
}

pub struct OpenAi {
    config: OpenAiConfig,
    url: String,
    http: reqwest::Client,
    breaker: std::sync::Arc<Breaker>,
}

impl OpenAi {
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| LlmError::Unreachable(e.to_string()))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let breaker = std::sync::Arc::new(Breaker::new(config.breaker_threshold, config.breaker_cool_down));
        Ok(Self { config, url, http, breaker })
    }

    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// One attempt: the response once its headers say 200.
    async fn send(&self, body: &Value) -> Result<reqwest::Response, LlmError> {
        let mut request = self.http.post(&self.url).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(secrecy::ExposeSecret::expose_secret(key));
        }
        let timeout = self.config.read_timeout;
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => return Err(LlmError::Timeout(timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(LlmError::Timeout(timeout)),
            Ok(Err(e)) => return Err(LlmError::Unreachable(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
        let text = tokio::time::timeout(timeout, response.text()).await.ok().and_then(Result::ok).unwrap_or_default();
        if status == 429 {
            return Err(LlmError::RateLimited { retry_after });
        }
        Err(LlmError::Status { status, message: error_message(&text) })
    }
}

#[async_trait::async_trait]
impl LlmProvider for OpenAi {
    fn system(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        if !self.breaker.allow() {
            return Err(LlmError::CircuitOpen);
        }
        let body = request_body(&self.config.model, &request);
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.chars().count()).sum();
        let mut attempt = 0;
        let response = loop {
            match self.send(&body).await {
                Ok(r) => break r,
                Err(e) => {
                    let wait = match &e {
                        LlmError::RateLimited { retry_after: Some(after) } => *after,
                        _ => self.config.backoff * 2u32.saturating_pow(attempt),
                    };
                    if !e.is_retryable() || attempt >= self.config.retries || wait > self.config.max_retry_wait {
                        // A 4xx is the request's fault, not the server's health.
                        if e.is_retryable() {
                            self.breaker.failure();
                        }
                        return Err(e);
                    }
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying the model request");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        };
        let (tx, stream) = channel(64);
        let breaker = self.breaker.clone();
        let timeout = self.config.read_timeout;
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = read_stream(response, &tx, timeout, prompt_chars) => outcome,
                _ = tx.cancelled() => return,
            };
            match outcome {
                Ok(()) => breaker.success(),
                Err(e) => {
                    if e.is_retryable() {
                        breaker.failure();
                    }
                    tx.send(Err(e)).await;
                }
            }
        });
        Ok(stream)
    }
}

fn request_body(model: &str, r: &ChatRequest) -> Value {
    let messages: Vec<Value> = r.messages.iter().map(message_json).collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": r.max_tokens,
        "temperature": r.temperature,
    });
    if !r.tools.is_empty() {
        body["tools"] = r
            .tools
            .iter()
            .map(|t| json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": t.parameters } }))
            .collect();
        body["tool_choice"] = match &r.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Function(name) => json!({ "type": "function", "function": { "name": name } }),
        };
    }
    body
}

fn message_json(m: &ChatMessage) -> Value {
    let mut v = json!({ "role": m.role, "content": m.content });
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// Tool calls arrive in pieces keyed by index: the id and name first, the arguments in parts.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Reads the SSE body to its end, forwarding text as it arrives. Each next piece must come
/// within `timeout`: a server that stalls mid-answer ends the stream with `Timeout`.
async fn read_stream(
    response: reqwest::Response,
    tx: &StreamSender,
    timeout: Duration,
    prompt_chars: usize,
) -> Result<(), LlmError> {
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut calls: BTreeMap<u64, PartialCall> = BTreeMap::new();
    let mut usage: Option<Usage> = None;
    let mut finish_reason = String::new();
    let mut deltas = 0u64;
    loop {
        let piece = match tokio::time::timeout(timeout, body.next()).await {
            Err(_) => return Err(LlmError::Timeout(timeout)),
            Ok(None) => return Err(LlmError::Protocol("the stream ended before [DONE]".into())),
            Ok(Some(Err(e))) => return Err(LlmError::Unreachable(error_chain(&e))),
            Ok(Some(Ok(bytes))) => bytes,
        };
        buffer.extend_from_slice(&piece);
        while let Some((end, sep)) = event_end(&buffer) {
            let event: Vec<u8> = buffer.drain(..end + sep).take(end).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
                if data == "[DONE]" {
                    for (_, c) in std::mem::take(&mut calls) {
                        let call = ToolCall { id: c.id, name: c.name, arguments: c.arguments };
                        if !tx.send(Ok(StreamEvent::ToolCall(call))).await {
                            return Ok(());
                        }
                    }
                    // Servers that do not report usage in streams (llama.cpp's): estimate it, the
                    // prompt at four characters a token, the answer at a token a streamed piece.
                    let estimate = Usage { input_tokens: prompt_chars.div_ceil(4) as u64, output_tokens: deltas };
                    let usage = usage.unwrap_or(estimate);
                    tx.send(Ok(StreamEvent::Done { usage, finish_reason })).await;
                    return Ok(());
                }
                let chunk: Value = serde_json::from_str(data).map_err(|e| LlmError::Protocol(format!("{e}: {data}")))?;
                if let Some(error) = chunk.get("error") {
                    return Err(LlmError::Status { status: 500, message: error_message(&error.to_string()) });
                }
                if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                    usage = Some(Usage {
                        input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                        output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
                    });
                }
                let Some(choice) = chunk["choices"].get(0) else { continue };
                if let Some(reason) = choice["finish_reason"].as_str() {
                    finish_reason = reason.to_owned();
                }
                let delta = &choice["delta"];
                if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                    deltas += 1;
                    if !tx.send(Ok(StreamEvent::Text(text.to_owned()))).await {
                        return Ok(());
                    }
                }
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let index = call["index"].as_u64().unwrap_or(0);
                    let partial = calls.entry(index).or_default();
                    if let Some(id) = call["id"].as_str() {
                        partial.id = id.to_owned();
                    }
                    let function = &call["function"];
                    // Some servers (llama.cpp's) repeat the name in every piece.
                    if let Some(name) = function["name"].as_str().filter(|_| partial.name.is_empty()) {
                        partial.name = name.to_owned();
                    }
                    if let Some(args) = function["arguments"].as_str() {
                        partial.arguments.push_str(args);
                    }
                    deltas += 1;
                }
            }
        }
    }
}

/// Where the first complete SSE event in `buf` ends, and the separator's length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `error.message` of an OpenAI-style error body, or the body's start.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().or_else(|| v["message"].as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sse_event_boundaries_of_both_line_endings() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some((7, 2)));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some((7, 4)));
        assert_eq!(event_end(b"data: 1\n"), None);
    }

    #[test]
    fn the_request_names_the_forced_function() {
        let mut r = ChatRequest::new(vec![ChatMessage::user("hi")]);
        r.tools.push(crate::ToolSpec { name: "f".into(), description: "d".into(), parameters: json!({"type":"object"}) });
        r.tool_choice = ToolChoice::Function("f".into());
        let body = request_body("m", &r);
        assert_eq!(body["tool_choice"]["function"]["name"], "f");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["stream"], true);
    }
}

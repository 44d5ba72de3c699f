//! The OpenAI-compatible client against a real server on loopback (llama-cpp-python
//! serving SmolLM2): token streaming, cancellation, and a tool-call round trip. One server
//! for all of it: it takes seconds to start.
mod common;

use std::time::{Duration, Instant};

use apex_llm::openai::{OpenAi, OpenAiConfig};
use apex_llm::{ChatMessage, ChatRequest, LlmProvider, StreamEvent, ToolChoice, ToolSpec};
use serde_json::{json, Value};

fn client(url: &str) -> OpenAi {
    let mut c = OpenAiConfig::new(url, "smollm2");
    c.read_timeout = Duration::from_secs(30);
    OpenAi::new(c).unwrap()
}

#[tokio::test]
async fn streaming_cancellation_and_a_tool_call_round_trip() {
    let server = common::llama_server().await;
    let llm = client(&server.url);
    streams_tokens_as_they_are_generated_and_stops_when_dropped(&llm).await;
    a_tool_call_round_trip(&llm).await;
}

async fn streams_tokens_as_they_are_generated_and_stops_when_dropped(llm: &OpenAi) {
    let mut request = ChatRequest::new(vec![ChatMessage::user("Name three colours.")]);
    request.max_tokens = 24;

    let mut stream = llm.chat(request.clone()).await.unwrap();
    let mut texts = Vec::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Text(t) => texts.push(t),
            StreamEvent::Done { usage, finish_reason } => done = Some((usage, finish_reason)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (usage, finish) = done.expect("a final usage record");
    assert!(texts.len() > 5, "the answer arrives in many pieces, not at once: {texts:?}");
    assert!(usage.output_tokens > 5 && usage.input_tokens > 0, "{usage:?}");
    assert!(finish == "length" || finish == "stop", "{finish}");

    // Dropping the stream after the first token ends the request; the server is free at once.
    let mut long = request.clone();
    long.max_tokens = 400;
    let mut stream = llm.chat(long).await.unwrap();
    assert!(matches!(stream.next().await, Some(Ok(StreamEvent::Text(_)))));
    drop(stream);
    let started = Instant::now();
    request.max_tokens = 4;
    let next = llm.chat(request).await.unwrap().collect().await.unwrap();
    assert!(!next.text.is_empty());
    // Had the 400 tokens gone on, this would wait for them (about 10 tokens/s in debug CI).
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

async fn a_tool_call_round_trip(llm: &OpenAi) {
    let tool = ToolSpec {
        name: "get_spend".into(),
        description: "Monthly AI spend of a feature, in dollars.".into(),
        parameters: json!({
            "type": "object",
            "properties": { "feature": { "type": "string", "enum": ["chatbot", "search", "summarize"] } },
            "required": ["feature"]
        }),
    };
    let mut messages = vec![
        ChatMessage::system("Answer with the tool result."),
        ChatMessage::user("Get the spend of the feature named chatbot."),
    ];
    let mut request = ChatRequest::new(messages.clone());
    request.tools = vec![tool];
    request.tool_choice = ToolChoice::Function("get_spend".into());
    request.max_tokens = 40;
    let first = llm.chat(request).await.unwrap().collect().await.unwrap();
    assert_eq!(first.tool_calls.len(), 1, "{first:?}");
    let call = &first.tool_calls[0];
    assert_eq!(call.name, "get_spend");
    let args: Value = serde_json::from_str(&call.arguments).expect("the arguments are JSON");
    assert_eq!(args["feature"], "chatbot", "{args}");

    messages.push(ChatMessage::assistant("", first.tool_calls.clone()));
    messages.push(ChatMessage::tool_result(&call.id, "The chatbot feature costs $412.50 per month."));
    let mut follow_up = ChatRequest::new(messages);
    follow_up.max_tokens = 40;
    let answer = llm.chat(follow_up).await.unwrap().collect().await.unwrap();
    assert!(answer.tool_calls.is_empty());
    assert!(!answer.text.trim().is_empty(), "the model answers after the tool result");
}

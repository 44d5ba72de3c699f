//! The embedded model for real: SmolLM2-135M-Instruct Q4_1 (the reference GGUF, fetched by
//! scripts/llm-test-deps) generating a few tokens with candle.
mod common;

use std::time::Duration;

use apex_llm::local::{tokenizer_from_gguf, LocalModel};
use apex_llm::{ChatMessage, ChatRequest, LlmProvider, StreamEvent};

#[test]
fn the_tokenizer_from_the_gguf_metadata_round_trips_and_matches_the_model_vocabulary() {
    let path = common::model_path();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let (tokenizer, stops) = tokenizer_from_gguf(&content).unwrap();
    let text = "<|im_start|>system\nYou spent $1,234.56 on gpt-4o in 2026 — ünïcödé too.<|im_end|>\n";
    let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(ids[0], 1, "<|im_start|> is one special token, and no BOS is added");
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), text, "encoding then decoding gives the text back");
    let system = tokenizer.encode("system", false).unwrap().get_ids().to_vec();
    assert_eq!(system.len(), 1);
    assert_eq!(tokenizer.decode(&system, false).unwrap(), "system", "no prefix space");
    let digits = tokenizer.encode("2026", false).unwrap().get_ids().len();
    assert_eq!(digits, 4, "digits are split one by one");
    assert!(stops.contains(&2) && stops.len() == 2, "<|im_end|> and eos end an answer: {stops:?}");
}

fn request(max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::new(vec![ChatMessage::user("Name three colours.")]);
    r.max_tokens = max_tokens;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_deterministically_streams_queues_and_stops_within_a_token() {
    let path = common::model_path();
    let model = tokio::task::spawn_blocking(move || LocalModel::load(&path)).await.unwrap().expect("the model loads");

    let first = model.chat(request(8)).await.unwrap().collect().await.unwrap();
    let second = model.chat(request(8)).await.unwrap().collect().await.unwrap();
    assert!(!first.text.trim().is_empty());
    assert_eq!(first.text, second.text, "temperature 0 gives the same text twice");
    assert_eq!(first.usage.output_tokens, 8, "{first:?}");
    assert!(first.usage.input_tokens > 5, "{first:?}");

    // A long answer streams: the first piece arrives while the model goes on.
    let mut stream = model.chat(request(200)).await.unwrap();
    let Some(Ok(StreamEvent::Text(_))) = stream.next().await else { panic!("text first") };
    // A second request waits behind it and is told so.
    let mut queued = model.chat(request(2)).await.unwrap();
    assert_eq!(queued.next().await, Some(Ok(StreamEvent::Queued { ahead: 1 })));
    // Dropping the long one stops its generation within a token; the queued one then runs.
    let at_drop = model.tokens_generated();
    drop(stream);
    let rest = queued.collect().await.unwrap();
    assert_eq!(rest.usage.output_tokens, 2);
    let after = model.tokens_generated();
    assert!(after - at_drop <= 4, "generation stopped: {} tokens after the drop", after - at_drop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(model.tokens_generated(), after, "nothing runs in the background");
}

/// Sentences of at least 30 characters that the text states three times or more.
fn repeated_sentences(text: &str) -> Vec<String> {
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for sentence in text.split(['.', '!', '?', '\n']).map(str::trim).filter(|s| s.len() >= 30) {
        *counts.entry(sentence).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n >= 3).map(|(s, n)| format!("{n}× {s}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_does_not_loop_on_one_sentence() {
    // Decoding greedily, this model fell into repeating one sentence until its token limit
    // on a report prompt like Apex's; the repetition penalty keeps it moving. Where a
    // greedy answer stops depends on the CPU's floating-point path (one machine ended the
    // first answer at 92 tokens, another at 300), so the property is asserted on every
    // answer of three report prompts, and the length that makes it meaningful on their
    // sum, which no single early stop can take below the bound.
    let path = common::model_path();
    let model = tokio::task::spawn_blocking(move || LocalModel::load(&path)).await.unwrap().expect("the model loads");
    let system = "You are Apex, an analyst of AI spend. Answer the user's question in a short Markdown report \
        written from the FACTS below. State only figures that appear in the FACTS.\n\nFACTS:\n\
        - Total spend in the last 30 days: $18,412.37.\n\
        - gpt-4o: $11,204.90 (60.9%), mostly the support-chat feature.\n\
        - Recommendation: move ticket-triage summaries from gpt-4o to gpt-4o-mini; saves $2,310.40 a month.";
    let mut total = 0;
    for question in
        ["Analyze my AI costs", "Where does the money go, and what should we change?", "Write a cost report for my team"]
    {
        let mut request = ChatRequest::new(vec![ChatMessage::system(system), ChatMessage::user(question)]);
        request.max_tokens = 300;
        let answer = model.chat(request).await.unwrap().collect().await.unwrap();
        let repeated = repeated_sentences(&answer.text);
        assert!(repeated.is_empty(), "{question}: repeated: {repeated:?}\n{}", answer.text);
        eprintln!("{question}: {} tokens", answer.usage.output_tokens);
        total += answer.usage.output_tokens;
    }
    assert!(total >= 150, "three report answers, {total} tokens in all: too short for the check to mean anything");
}

//! `apex bench --model-stream RUNS`: what Apex adds between an OpenAI-compatible provider
//! and the WebSocket client, per streamed piece of the answer.
//!
//! The bench starts a stand-in provider (an HTTP server in this process that streams Chat
//! Completions chunks over SSE, one token per interval; no model behind it) and `apex
//! serve` with `APEX_LLM=openai` pointed at it, then runs golden-path runs one after the
//! other over a WebSocket. The report agent streams the provider's text to the client; it
//! releases it a sentence at a time, because every sentence is grounded (its figures
//! checked against the run's tool results) before the user sees it. So the measure is per
//! sentence: from the provider's write of the token that completes a sentence to the
//! client's receipt of the `response_delta` that carries it. Each sentence's last word is
//! the time of that write (nanoseconds since the bench's epoch, spelled in letters, since
//! a number would be a figure to the grounding check), so no bookkeeping is shared between
//! the provider and the client. The path measured is everything a deployment adds: the
//! provider's socket, Apex's client and grounding, the event's commit to the store, the
//! fan-out, the WebSocket write and the client's socket. A bare reader of the same stream
//! (the provider's socket straight into this process, no Apex) is measured alongside as
//! the floor of one loopback hop.
use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::deployments::{fmt_load, load_average};
use super::{golden_run, stand_in_listener, Backend, BenchArgs, Latencies, Percentiles, ServerProcess};

/// Words per sentence, the last being the stamp.
const WORDS: usize = 8;
const FILLER: [&str; 7] = ["spend", "moves", "with", "the", "model", "each", "feature"];
/// Letters of a stamp: 26^12 ns is three years.
const STAMP_LETTERS: usize = 12;

#[derive(Serialize)]
struct Report {
    runs: usize,
    sentences_per_run: usize,
    token_interval_us: u64,
    /// Provider write → `response_delta` at the WebSocket client, per sentence.
    through_apex_ms: Percentiles,
    /// Provider write → the same bytes at a bare socket reader (one loopback hop).
    bare_reader_ms: Percentiles,
    /// Sentences written by the provider that never reached the client intact.
    sentences_missing: usize,
    runs_failed: usize,
    first_failure: Option<String>,
    /// The 1, 5 and 15 minute load averages before and after.
    load_average_before: Option<[f64; 3]>,
    load_average_after: Option<[f64; 3]>,
}

pub async fn run(args: &BenchArgs, runs: usize) -> anyhow::Result<i32> {
    ensure!(runs > 0, "--model-stream needs at least one run");
    let sentences = args.model_sentences;
    let interval = Duration::from_micros(args.model_token_interval_us);
    // The sentences must fit the report agent's time budget, with room for a loaded machine.
    let budget_s = (sentences * WORDS) as f64 * interval.as_secs_f64() * 4.0 + 30.0;
    let epoch = Instant::now();
    let provider = StandIn::start(epoch, sentences, interval).await?;
    let env = [
        ("APEX_LLM", "openai".to_owned()),
        ("OPENAI_BASE_URL", provider.base_url.clone()),
        ("OPENAI_API_KEY", "stand-in".to_owned()),
        ("APEX_LLM_MODEL", "stand-in".to_owned()),
        ("APEX_LLM_MAX_TOKENS", (sentences * WORDS * 2).to_string()),
        ("APEX_LLM_TIMEOUT_SECS", format!("{budget_s:.0}")),
    ];
    let server = ServerProcess::start_with(&Backend::Sqlite, &env).await?;
    let load_average_before = load_average();
    // One warm-up of each reader, not counted.
    let _ = one_run(&server.url, epoch).await;
    let _ = bare_reader(&provider.addr, epoch).await;
    let (mut through, mut bare) = (Latencies::default(), Latencies::default());
    let (mut missing, mut failed, mut first_failure) = (0, 0, None);
    for _ in 0..runs {
        match one_run(&server.url, epoch).await {
            Ok(samples) => {
                missing += sentences.saturating_sub(samples.len());
                samples.into_iter().for_each(|s| through.record(s));
            }
            Err(e) => {
                failed += 1;
                missing += sentences;
                first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        bare_reader(&provider.addr, epoch).await?.into_iter().for_each(|s| bare.record(s));
    }
    drop(server);
    let report = Report {
        runs,
        sentences_per_run: sentences,
        token_interval_us: args.model_token_interval_us,
        through_apex_ms: through.summary(),
        bare_reader_ms: bare.summary(),
        sentences_missing: missing,
        runs_failed: failed,
        first_failure,
        load_average_before,
        load_average_after: load_average(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(if report.sentences_missing == 0 && report.runs_failed == 0 { 0 } else { 1 })
}

impl Report {
    fn print_table(&self) {
        println!(
            "Model stream: {} runs × {} sentences of {WORDS} tokens, one token every {} µs (stand-in provider on loopback); load average {} → {}",
            self.runs,
            self.sentences_per_run,
            self.token_interval_us,
            fmt_load(self.load_average_before),
            fmt_load(self.load_average_after)
        );
        println!();
        println!("| provider's write of a sentence's last token → | sentences | p50 | p99 | max |");
        println!("|---|---:|---:|---:|---:|");
        for (name, p) in [
            ("`response_delta` at the WebSocket client (through Apex)", &self.through_apex_ms),
            ("the bytes at a bare socket reader (floor)", &self.bare_reader_ms),
        ] {
            println!("| {name} | {} | {:.3} ms | {:.3} ms | {:.3} ms |", p.count, p.p50, p.p99, p.max);
        }
        println!();
        let verdict = if self.through_apex_ms.p99 < 1.0 { "met" } else { "NOT met" };
        println!("p99 through Apex {:.3} ms: target < 1 ms {verdict}", self.through_apex_ms.p99);
        println!("sentences missing: {}, runs failed: {}", self.sentences_missing, self.runs_failed);
        if let Some(why) = &self.first_failure {
            println!("first failure: {why}");
        }
    }
}

/// The fields of a server frame this bench reads.
/// One golden-path run; returns the latency of every stamped sentence that arrived.
async fn one_run(url: &str, epoch: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::new();
    golden_run(url, |frame, received| {
        let now = received.duration_since(epoch);
        match frame.kind.as_str() {
            "response_delta" => samples.extend(frame.text.as_deref().and_then(stamp_of).map(|at| now.saturating_sub(at))),
            "agent_thinking" if frame.text.as_deref().is_some_and(|t| t.contains("failed")) => {
                bail!("the model path failed: {}", frame.text.as_deref().unwrap_or_default())
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    Ok(samples)
}

/// The same stream read straight from the provider's socket: one loopback hop, no Apex.
async fn bare_reader(addr: &str, epoch: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let body = r#"{"model":"stand-in","stream":true,"messages":[]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await?;
    let (mut samples, mut buf, mut chunk) = (Vec::new(), Vec::new(), vec![0u8; 16384]);
    loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(samples);
        }
        let now = epoch.elapsed();
        buf.extend_from_slice(&chunk[..n]);
        // A stamp ends a sentence: `… <letters>.\n` inside the chunk's JSON string.
        while let Some(end) = find(&buf, br".\n") {
            let head: Vec<u8> = buf.drain(..end + 3).collect();
            let word = head[..end].rsplit(|b| *b == b' ' || *b == b'"').next().unwrap_or_default();
            if let Some(at) = std::str::from_utf8(word).ok().and_then(decode_stamp) {
                samples.push(now.saturating_sub(at));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The stamp of a sentence as the client receives it: its last word.
fn stamp_of(sentence: &str) -> Option<Duration> {
    let word = sentence.trim_end().strip_suffix('.')?.rsplit(' ').next()?;
    decode_stamp(word)
}

fn encode_stamp(at: Duration) -> String {
    let mut n = at.as_nanos();
    let mut letters = [b'a'; STAMP_LETTERS];
    for slot in letters.iter_mut().rev() {
        *slot = b'a' + (n % 26) as u8;
        n /= 26;
    }
    String::from_utf8_lossy(&letters).into_owned()
}

fn decode_stamp(word: &str) -> Option<Duration> {
    if word.len() != STAMP_LETTERS || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let nanos = word.bytes().fold(0u64, |n, b| n * 26 + u64::from(b - b'a'));
    Some(Duration::from_nanos(nanos))
}

/// The stand-in provider: every Chat Completions request is answered with `sentences`
/// sentences streamed one token per `interval`, each sentence ending in its stamp.
struct StandIn {
    base_url: String,
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start(epoch: Instant, sentences: usize, interval: Duration) -> anyhow::Result<Self> {
        // Tokens leave as they are made (the answer after a plan's requests comes on a
        // connection reused from the pool).
        let (listener, addr) = stand_in_listener().await?;
        let addr = addr.to_string();
        // The request is read whole before the answer starts, as a provider does (a plan's
        // request carries the conversation so far).
        let handler = move |_request: String| async move {
            let tokens = futures_util::stream::unfold(0usize, move |i| async move {
                let total = sentences * WORDS;
                if i > total {
                    return None;
                }
                let chunk = if i == total {
                    "data: {\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n".to_owned()
                } else {
                    tokio::time::sleep(interval).await;
                    let word = if i % WORDS == WORDS - 1 {
                        format!(" {}.\\n", encode_stamp(epoch.elapsed()))
                    } else {
                        let lead = if i % WORDS == 0 { "" } else { " " };
                        format!("{lead}{}", FILLER[i % WORDS])
                    };
                    format!("data: {{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n")
                };
                Some((Ok::<_, Infallible>(chunk), i + 1))
            });
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(tokens))
                .expect("a valid response")
        };
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(handler));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url: format!("http://{addr}/v1"), addr, task })
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_are_words_the_grounding_check_ignores() {
        let at = Duration::from_nanos(987_654_321_012);
        let word = encode_stamp(at);
        assert!(word.bytes().all(|b| b.is_ascii_lowercase()), "{word}");
        assert_eq!(decode_stamp(&word), Some(at));
        assert_eq!(stamp_of(&format!("spend moves with the model each feature {word}.\n")), Some(at));
        assert_eq!(stamp_of("Total spend: $1,234.56.\n"), None);
    }
}

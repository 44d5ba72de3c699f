//! Language-model benchmarks (`benches/model.sh`, or `cargo bench -p apex-llm --bench model -- ARGS`).
//!
//! `local`: Apex's embedded model (`APEX_LLM=local`: candle, `LocalModel`, the same code and
//! stream as a run) against llama.cpp (llama-cpp-python's Python API) on the same GGUF in
//! the same run: the same prompt tokens (Apex's tokenizer; llama.cpp is given the ids),
//! greedy decoding with the same repetition penalty (1.1 over the last 64 tokens), the same
//! token limit and stop tokens. Sides alternate over the
//! repetitions; the first repetition of each side is a warm-up and is not counted. Time to
//! first token is from the request to the first token (the whole prompt is evaluated; no
//! cache is reused between requests); tokens/s is of the tokens after the first. Reported:
//! median and p90 of each side, the ratios Apex ÷ llama.cpp of the medians, and each
//! process's peak RSS.
//!
//! `sse`: what Apex's OpenAI-compatible client adds per streamed token. A stand-in provider
//! (a loopback HTTP server in this bench, on its own thread; no model behind it) streams N
//! chunks, one per interval, each carrying the time it was written; the overhead of a token
//! is the time from that write to the matching `StreamEvent::Text` coming out of the
//! client's `ChatStream`. It includes the loopback socket and the runtime's wake-ups; a
//! bare socket reader on the same stream is measured alongside as the floor.
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use apex_llm::local::{chatml, tokenizer_from_gguf, LocalModel, Weights};
use apex_llm::openai::{OpenAi, OpenAiConfig};
use apex_llm::{ChatMessage, ChatRequest, LlmProvider, StreamEvent};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LLAMA_SIDE: &str = include_str!("llama_side.py");

const SYSTEM: &str = "You are Apex, an AI cost analyst. Write a short report for the user from the FACTS only. \
Use the figures exactly as given.\n\nFACTS:\n\
- Total spend in the last 30 days: $18,412.37 over 92,114,508 tokens.\n\
- gpt-4o: $11,204.90 (60.9%), mostly the support-chat feature.\n\
- claude-sonnet-4-5: $4,981.22 (27.1%), code-review and agents.\n\
- gpt-4o-mini: $1,377.05 (7.5%), ticket-triage.\n\
- Recommendation: move ticket-triage summaries from gpt-4o to gpt-4o-mini; saves $2,310.40 a month.\n\
- Recommendation: cache the support-chat system prompt; saves $1,120.75 a month.\n\
- Forecast for next month at the current trend: $19,870.00.";
const QUESTION: &str = "Analyze my AI costs and tell me, in detail, what I should do first and why.";

struct Args {
    parts: Vec<String>,
    model: PathBuf,
    reps: usize,
    max_tokens: u32,
    python: String,
    threads: usize,
    weights: Weights,
    sse_tokens: usize,
    sse_interval: Duration,
}

fn usage() -> &'static str {
    "usage: model [local] [sse] [--model GGUF] [--reps N] [--max-tokens N] [--python PYTHON] [--threads N]\n\
     \x20            [--as-stored] [--sse-tokens N] [--sse-interval-us N]\n\
     (default: both parts; the model is $APEX_TEST_GGUF or ~/.cache/apex-test/SmolLM2-135M-Instruct.Q4_1.gguf)"
}

fn parse_args() -> Result<Args, String> {
    let default_model = std::env::var_os("APEX_TEST_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/apex-test/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let mut a = Args {
        parts: Vec::new(),
        model: default_model,
        reps: 7,
        max_tokens: 128,
        python: "python3".into(),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        weights: Weights::Fast,
        sse_tokens: 2000,
        sse_interval: Duration::from_millis(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match arg.as_str() {
            "--bench" => {} // added by `cargo bench`
            "local" | "sse" => a.parts.push(arg),
            "--model" => a.model = value("--model")?.into(),
            "--reps" => a.reps = number(value("--reps")?)? as usize,
            "--max-tokens" => a.max_tokens = number(value("--max-tokens")?)? as u32,
            "--python" => a.python = value("--python")?,
            "--threads" => a.threads = number(value("--threads")?)? as usize,
            "--as-stored" => a.weights = Weights::AsStored,
            "--sse-tokens" => a.sse_tokens = number(value("--sse-tokens")?)? as usize,
            "--sse-interval-us" => a.sse_interval = Duration::from_micros(number(value("--sse-interval-us")?)?),
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    if a.parts.is_empty() {
        a.parts = vec!["local".into(), "sse".into()];
    }
    if a.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Both sides use the same number of threads: candle reads it once, at its first matmul.
    // Set before any other thread exists.
    std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = runtime.block_on(async {
        if args.parts.iter().any(|p| p == "local") {
            local(&args).await?;
        }
        if args.parts.iter().any(|p| p == "sse") {
            sse(&args).await?;
        }
        Ok::<_, String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("model bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// A field of /proc/PID/status in MiB (VmRSS, VmHWM).
fn status_mib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Nearest-rank percentile of unsorted samples.
fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

#[derive(Default)]
struct Side {
    ttft_ms: Vec<f64>,
    tokens_per_s: Vec<f64>,
    tokens: Vec<u64>,
    text: String,
}

impl Side {
    fn record(&mut self, ttft: f64, decode: f64, tokens: u64, text: String) {
        self.ttft_ms.push(ttft * 1e3);
        self.tokens_per_s.push(tokens.saturating_sub(1) as f64 / decode);
        self.tokens.push(tokens);
        self.text = text;
    }
}

struct Llama {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Llama {
    fn start(args: &Args) -> Result<(Self, Value), String> {
        let mut child = Command::new(&args.python)
            .arg("-c")
            .arg(LLAMA_SIDE)
            .arg(&args.model)
            .arg(args.threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e} (llama-cpp-python: scripts/llm-test-deps)", args.python))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut llama = Self { child, stdin, stdout };
        let ready = llama.line()?;
        Ok((llama, ready))
    }

    fn line(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("the llama.cpp side exited (is llama-cpp-python installed? see scripts/llm-test-deps)".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))
    }

    fn generate(&mut self, ids: &[u32], max_tokens: u32, stops: &[u32]) -> Result<Value, String> {
        let request = json!({ "ids": ids, "max_tokens": max_tokens, "stops": stops });
        writeln!(self.stdin, "{request}").and_then(|()| self.stdin.flush()).map_err(|e| e.to_string())?;
        self.line()
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn apex_generate(model: &LocalModel, messages: &[ChatMessage], max_tokens: u32) -> Result<(f64, f64, u64, String), String> {
    let mut request = ChatRequest::new(messages.to_vec());
    request.max_tokens = max_tokens;
    request.temperature = 0.0;
    let started = Instant::now();
    let mut stream = model.chat(request).await.map_err(|e| e.to_string())?;
    let mut first = None;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.map_err(|e| e.to_string())? {
            StreamEvent::Text(t) => {
                first.get_or_insert_with(Instant::now);
                text.push_str(&t);
            }
            StreamEvent::Done { usage, finish_reason } => {
                let first = first.ok_or("no text")?;
                // The stop token was generated too (and is counted on the llama.cpp side).
                let tokens = usage.output_tokens + u64::from(finish_reason == "stop");
                return Ok(((first - started).as_secs_f64(), first.elapsed().as_secs_f64(), tokens, text));
            }
            _ => {}
        }
    }
    Err("the stream ended without Done".into())
}

async fn local(args: &Args) -> Result<(), String> {
    println!("## Local model: Apex (candle) vs llama.cpp (llama-cpp-python), same GGUF, same run");
    println!("model: {}", args.model.display());
    println!("load average at start: {}", loadavg());
    let mut file = std::fs::File::open(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).map_err(|e| e.to_string())?;
    let (tokenizer, stops) = tokenizer_from_gguf(&content).map_err(|e| e.to_string())?;
    drop(content);
    let messages = vec![ChatMessage::system(SYSTEM), ChatMessage::user(QUESTION)];
    let ids = tokenizer.encode(chatml(&messages), false).map_err(|e| e.to_string())?.get_ids().to_vec();
    drop(tokenizer);

    let (mut llama, ready) = tokio::task::block_in_place(|| Llama::start(args))?;
    let llama_pid = llama.child.id().to_string();

    let apex_before = status_mib("self", "VmRSS");
    let started = Instant::now();
    let path = args.model.clone();
    let weights = args.weights;
    let model = tokio::task::spawn_blocking(move || LocalModel::load_with(&path, weights))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let apex_load = started.elapsed();
    println!(
        "prompt {} tokens, at most {} generated, greedy; {} threads each side; {} repetitions per side after a warm-up; weights {:?}",
        ids.len(),
        args.max_tokens,
        args.threads,
        args.reps,
        args.weights
    );
    println!("llama-cpp-python {}", ready["version"].as_str().unwrap_or("?"));

    let (mut apex, mut cpp) = (Side::default(), Side::default());
    for rep in 0..=args.reps {
        let apex_first = rep % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == apex_first {
                let (ttft, decode, tokens, text) = apex_generate(&model, &messages, args.max_tokens).await?;
                if rep > 0 {
                    apex.record(ttft, decode, tokens, text);
                }
            } else {
                let r = tokio::task::block_in_place(|| llama.generate(&ids, args.max_tokens, &stops))?;
                let (ttft, decode) = (r["ttft_s"].as_f64().unwrap_or(f64::NAN), r["decode_s"].as_f64().unwrap_or(f64::NAN));
                if rep > 0 {
                    cpp.record(ttft, decode, r["tokens"].as_u64().unwrap_or(0), r["text"].as_str().unwrap_or("").to_owned());
                }
            }
        }
    }
    let apex_peak = status_mib("self", "VmHWM");
    let cpp_peak = status_mib(&llama_pid, "VmHWM");
    let cpp_before = ready["rss_before_load_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    println!("load average at end: {}", loadavg());
    println!();
    println!("| | Apex (candle) | llama.cpp | Apex ÷ llama.cpp |");
    println!("|---|---|---|---|");
    let (a50, c50) = (percentile(&apex.ttft_ms, 50.0), percentile(&cpp.ttft_ms, 50.0));
    println!("| time to first token, median | {a50:.0} ms | {c50:.0} ms | {:.2} |", a50 / c50);
    let (a90, c90) = (percentile(&apex.ttft_ms, 90.0), percentile(&cpp.ttft_ms, 90.0));
    println!("| time to first token, p90 | {a90:.0} ms | {c90:.0} ms | {:.2} |", a90 / c90);
    let (s50, l50) = (percentile(&apex.tokens_per_s, 50.0), percentile(&cpp.tokens_per_s, 50.0));
    println!("| generation tokens/s, median | {s50:.1} | {l50:.1} | {:.2} |", s50 / l50);
    // The p90 of a rate is its slow end: the 10th percentile.
    let (s10, l10) = (percentile(&apex.tokens_per_s, 10.0), percentile(&cpp.tokens_per_s, 10.0));
    println!("| generation tokens/s, p90 (slowest 10%) | {s10:.1} | {l10:.1} | {:.2} |", s10 / l10);
    println!("| tokens generated per run | {:?} | {:?} | |", apex.tokens, cpp.tokens);
    println!(
        "| load time | {:.0} ms | {:.0} ms | |",
        apex_load.as_secs_f64() * 1e3,
        ready["load_ms"].as_f64().unwrap_or(f64::NAN)
    );
    println!("| peak RSS of the process | {apex_peak:.0} MiB | {cpp_peak:.0} MiB | {:.2} |", apex_peak / cpp_peak);
    println!("| RSS before the model was loaded | {apex_before:.0} MiB | {cpp_before:.0} MiB (Python) | |");
    println!();
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target tokens/s ratio ≥ 0.5: {}; time to first token ≤ 2× llama.cpp's: {}",
        met(s50 / l50 >= 0.5),
        met(a50 / c50 <= 2.0)
    );
    let head = |t: &str| t.chars().take(100).collect::<String>().replace('\n', " ");
    println!("Apex answer:      {}…", head(&apex.text));
    println!("llama.cpp answer: {}…", head(&cpp.text));
    if apex.tokens != cpp.tokens {
        println!("note: the sides generated different numbers of tokens (an early stop token); tokens/s is per side");
    }
    println!();
    Ok(())
}

/// The stand-in provider: answers every POST with `tokens` SSE chunks, one per `interval`,
/// each carrying the nanoseconds since `epoch` at which it was written.
fn stand_in_provider(tokens: usize, interval: Duration, epoch: Instant) -> std::io::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("stand-in-provider".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let _ = socket.set_nodelay(true);
                let n = read_request(&mut socket).await.unwrap_or(tokens);
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                let mut tick = tokio::time::interval(interval);
                for _ in 0..n {
                    tick.tick().await;
                    let ts = epoch.elapsed().as_nanos();
                    let chunk = format!("data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{ts} \"}},\"finish_reason\":null}}]}}\n\n");
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                }
                let end = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
                let _ = socket.write_all(end.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
    })?;
    Ok(url)
}

/// Reads an HTTP request; returns the `max_tokens` of its JSON body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<usize> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok()).unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = socket.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body: Value = serde_json::from_slice(&buf[end + 4..end + 4 + len]).ok()?;
            return body["max_tokens"].as_u64().map(|n| n as usize);
        }
    }
}

fn stamp(text: &str) -> Option<u128> {
    text.trim().strip_prefix('t')?.parse().ok()
}

/// Per-token overhead through Apex's OpenAI-compatible client, in microseconds.
async fn through_client(url: &str, tokens: usize, epoch: Instant) -> Result<Vec<f64>, String> {
    let llm = OpenAi::new(OpenAiConfig::new(url, "stand-in")).map_err(|e| e.to_string())?;
    let mut request = ChatRequest::new(vec![ChatMessage::user("stream")]);
    request.max_tokens = tokens as u32;
    let mut stream = llm.chat(request).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(tokens);
    while let Some(event) = stream.next().await {
        match event.map_err(|e| e.to_string())? {
            StreamEvent::Text(t) => {
                let now = epoch.elapsed().as_nanos();
                let sent = stamp(&t).ok_or_else(|| format!("no stamp in {t:?}"))?;
                out.push((now - sent) as f64 / 1e3);
            }
            StreamEvent::Done { .. } => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The same stream read from a bare socket: the floor (loopback, the runtime's wake-up).
async fn bare_socket(url: &str, tokens: usize, epoch: Instant) -> Result<Vec<f64>, String> {
    let addr = url.trim_start_matches("http://").trim_end_matches("/v1");
    let mut socket = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let body = json!({ "max_tokens": tokens }).to_string();
    let request = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    socket.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(tokens);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        let now = epoch.elapsed().as_nanos();
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            if let Some(i) = text.find("\"content\":\"t") {
                let rest = &text[i + 12..];
                if let Some(sent) = rest.split(' ').next().and_then(|d| d.parse::<u128>().ok()) {
                    out.push((now - sent) as f64 / 1e3);
                }
            }
        }
    }
}

async fn sse(args: &Args) -> Result<(), String> {
    println!("## OpenAI-compatible client: per-token overhead (stand-in provider on loopback, no model)");
    println!("load average at start: {}", loadavg());
    let epoch = Instant::now();
    let url = stand_in_provider(args.sse_tokens, args.sse_interval, epoch).map_err(|e| e.to_string())?;
    println!(
        "{} tokens per run, one every {} µs; 2 runs of each reader, alternating, after a warm-up",
        args.sse_tokens,
        args.sse_interval.as_micros()
    );
    through_client(&url, 100, epoch).await?;
    bare_socket(&url, 100, epoch).await?;
    let (mut client, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        client.extend(through_client(&url, args.sse_tokens, epoch).await?);
        bare.extend(bare_socket(&url, args.sse_tokens, epoch).await?);
    }
    println!("load average at end: {}", loadavg());
    println!();
    println!("| from the provider's write to the event | tokens | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (name, s) in [("Apex OpenAI client → StreamEvent::Text", &client), ("bare socket reader (floor)", &bare)] {
        if s.is_empty() {
            return Err(format!("{name}: no tokens"));
        }
        println!(
            "| {name} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            s.len(),
            percentile(s, 50.0),
            percentile(s, 90.0),
            percentile(s, 99.0),
            percentile(s, 100.0)
        );
    }
    let p99 = percentile(&client, 99.0);
    println!();
    println!(
        "Apex adds over the bare reader: p50 {:.0} µs, p99 {:.0} µs; target p99 < 1 ms (whole path): {}",
        percentile(&client, 50.0) - percentile(&bare, 50.0),
        p99 - percentile(&bare, 99.0),
        if p99 < 1000.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

//! `apex bench --questions ROWS`: one user with ROWS imported usage rows asks every kind of
//! question, each `--repeat` times in a new thread; the bench reports message →
//! `final_response` latency per kind, and times the aggregations the engine sends to the
//! store (which reads the sums it keeps at import where they hold the query's names) beside
//! DuckDB summing the same rows with the same aggregation as SQL over `usage_daily`
//! (`benches/questions/duck_timing.py`, in a virtualenv the bench creates on first use).
//!
//! The data: 90 days of a product with 40 features (10 projects, 3 models each from a pool of
//! 12), 3 environments, 25 API keys and about 2,000 end users; every row is one day × model ×
//! feature × environment × end user, so the stored rows are the rows imported. A quarter of
//! the providers report a cost, the rest are priced from the catalog.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use apex_costs::{GroupBy, UsageQuery};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use super::{is_terminal, Backend, BenchArgs, Latencies, Percentiles, Probe, ServerProcess};

const USER: &str = "bench-analyst";
const SECRET: &str = "bench-questions-signing-secret-0123456789";
const DAYS: u32 = 90;
const FEATURES: usize = 40;
/// (provider, model, reports its cost).
const MODELS: [(&str, &str, bool); 12] = [
    ("openai", "gpt-4o", false),
    ("openai", "gpt-4o-mini", false),
    ("openai", "gpt-4.1", false),
    ("openai", "gpt-4.1-mini", false),
    ("openai", "o3", false),
    ("openai", "o4-mini", false),
    ("anthropic", "claude-sonnet-4-5", true),
    ("anthropic", "claude-haiku-4-5", true),
    ("anthropic", "claude-opus-4-1", true),
    ("google", "gemini-2.5-pro", false),
    ("google", "gemini-2.5-flash", false),
    ("openai", "text-embedding-3-small", false),
];

/// One question of each kind the analyst answers.
const QUESTIONS: [(&str, &str); 14] = [
    ("overview", "Analyze my AI costs"),
    ("total", "How much did we spend last week?"),
    ("top", "Which feature costs the most?"),
    ("breakdown", "Break down October's spend by model"),
    ("compare", "How much did we spend last week compared to the week before?"),
    ("explain", "Why did costs change last week?"),
    ("anomalies", "Which days were unusual?"),
    ("trend", "How is our spend trending?"),
    ("forecast", "Forecast next month's spend"),
    ("what-if", "What would feature-07 cost on gpt-4o-mini?"),
    ("savings", "How can we cut costs by 30%?"),
    ("per-end-user", "What is our cost per end user?"),
    ("one-end-user", "How much did user-1241 cost in October?"),
    ("by-api-key", "Which API key costs the most?"),
];

#[derive(Serialize)]
struct Report {
    rows: u64,
    backend: &'static str,
    import_s: f64,
    import_rows_per_s: f64,
    /// The first question after the import (the store sums the rollup).
    first_question_ms: f64,
    questions: Vec<QuestionLatency>,
    queries: Vec<QueryTiming>,
}

#[derive(Serialize)]
struct QuestionLatency {
    kind: &'static str,
    text: &'static str,
    latency_ms: Percentiles,
}

#[derive(Serialize)]
struct QueryTiming {
    name: &'static str,
    rows_out: usize,
    apex_ms: Percentiles,
    duckdb_ms: Option<f64>,
    ratio_to_duckdb: Option<f64>,
}

pub async fn run(args: &BenchArgs, rows: u64) -> anyhow::Result<i32> {
    // Dropped last: the server and the store are done with it by then.
    let mut schema = None;
    let backend = match args.deployments.as_deref() {
        Some([super::Deployment::Postgres]) => {
            let s = schema.insert(super::deployments::Schema::create(&args.postgres_url)?);
            Backend::Postgres { database_url: s.url.clone(), redis_url: args.redis_url.clone() }
        }
        None | Some([super::Deployment::Sqlite]) => Backend::Sqlite,
        Some(_) => bail!("--questions runs on one deployment: sqlite or postgres"),
    };
    let server = ServerProcess::start_with(&backend, &[("APEX_JWT_SECRET", SECRET.to_owned())]).await?;
    let csv = server.data_dir.join("usage.csv");
    write_usage(&csv, rows).context("writing the usage file")?;
    let token = mint_token(&server.data_dir)?;
    let http = server.url.replace("ws://", "http://").replace("/ws", "");

    eprintln!("importing {rows} rows …");
    let started = Instant::now();
    let body = tokio::fs::read(&csv).await?;
    let response = reqwest::Client::new()
        .post(format!("{http}/api/usage/import?format=generic_csv"))
        .bearer_auth(&token)
        .body(body)
        .timeout(Duration::from_secs(1800))
        .send()
        .await?;
    let status = response.status();
    let report: serde_json::Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "import failed: {status} {report}");
    let import = started.elapsed();
    anyhow::ensure!(report["imported"].as_u64() == Some(rows), "import stored {} of {rows} rows", report["imported"]);

    let mut ws = apex_client::connect(&server.url, Some(&token)).await?;
    super::await_ready(&mut ws).await?;
    let first = ask(&mut ws, QUESTIONS[0].1).await?;
    let mut questions = Vec::new();
    for (kind, text) in QUESTIONS {
        eprintln!("{kind}: {text}");
        let mut latencies = Latencies::default();
        for _ in 0..args.repeat {
            latencies.record(ask(&mut ws, text).await?);
        }
        questions.push(QuestionLatency { kind, text, latency_ms: latencies.summary() });
    }
    drop(ws);

    let database_url = match &backend {
        Backend::Sqlite => format!("sqlite://{}", server.data_dir.join("apex.db").display()),
        Backend::Postgres { database_url, .. } => database_url.clone(),
    };
    let queries = time_queries(&database_url, &csv, args.repeat).await?;
    drop(server);
    drop(schema);

    let report = Report {
        rows,
        backend: if matches!(backend, Backend::Sqlite) { "sqlite" } else { "postgres" },
        import_s: import.as_secs_f64(),
        import_rows_per_s: rows as f64 / import.as_secs_f64(),
        first_question_ms: super::ms(first),
        questions,
        queries,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(0)
}

/// Sends `text` in a new thread; the time until its `final_response`.
async fn ask(ws: &mut apex_client::WsStream, text: &str) -> anyhow::Result<Duration> {
    let frame = serde_json::json!({ "type": "user_message", "text": text }).to_string();
    let sent = Instant::now();
    ws.send(Message::Text(frame.into())).await?;
    loop {
        let Message::Text(frame) = ws.next().await.context("the connection ended mid-run")?? else { continue };
        let probe: Probe<'_> = serde_json::from_str(&frame)?;
        if probe.kind == "error" {
            bail!("refused: {frame}");
        }
        if is_terminal(probe.kind) {
            anyhow::ensure!(probe.kind == "final_response", "{text:?} ended with {}", probe.kind);
            return Ok(sent.elapsed());
        }
    }
}

/// A token for the bench's user, signed with the server's secret by `apex token`.
fn mint_token(data_dir: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["token", "--user", USER, "--ttl", "2h", "--data-dir"])
        .arg(data_dir)
        .env("APEX_JWT_SECRET", SECRET)
        .output()
        .context("running `apex token`")?;
    anyhow::ensure!(out.status.success(), "`apex token` failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A small deterministic generator (64-bit LCG), so every run measures the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// `rows` usage rows in the generic CSV format, unique per day and names.
fn write_usage(path: &Path, rows: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "date,provider,model,feature,project,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd,user,api_key,environment")?;
    let per_day = rows.div_ceil(u64::from(DAYS));
    let mut rng = Lcg(42);
    let mut written = 0;
    for day in 0..DAYS {
        let date = day_name(day);
        for i in 0..per_day {
            if written == rows {
                break;
            }
            // Mixed radix: feature, its model, environment, then the end user, so that
            // every row of a day has its own names.
            let feature = (i % FEATURES as u64) as usize;
            let model = (feature * 5 + (i / FEATURES as u64 % 3) as usize * 4) % MODELS.len();
            let environment = ["production", "staging", "development"][(i / (FEATURES as u64 * 3) % 3) as usize];
            let user = (i / (FEATURES as u64 * 9) + u64::from(day) * 31) % 2_000;
            let (provider, model, billed) = MODELS[model];
            let requests = 1 + rng.next(40);
            let input = requests * (300 + rng.next(3_000));
            let cached = input * rng.next(40) / 100;
            let output = requests * (20 + rng.next(600));
            // Spend grows through the period, with a jump in the last week.
            let growth = 100 + u64::from(day) / 3 + if day >= DAYS - 7 { 30 } else { 0 };
            let (requests, input, cached, output) =
                (requests * growth / 100, input * growth / 100, cached * growth / 100, output * growth / 100);
            let cost = if billed { format!("{:.6}", (input as f64 * 3.0 + output as f64 * 15.0) / 1e6) } else { String::new() };
            writeln!(
                out,
                "{date},{provider},{model},feature-{feature:02},project-{project},{requests},{input},{cached},{output},{cost},user-{user:04},key-{key:02},{environment}",
                project = feature / 4,
                key = feature % 25,
            )?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(())
}

/// Day `n` of the data (from 2026-09-01).
fn day_name(n: u32) -> String {
    let month_days = [(9, 30), (10, 31), (11, 30), (12, 31)];
    let mut left = n;
    for (month, days) in month_days {
        if left < days {
            return format!("2026-{month:02}-{:02}", left + 1);
        }
        left -= days;
    }
    unreachable!("the bench's days fit in four months")
}

/// The aggregations the engine asks the store for, each timed on the store and in DuckDB.
async fn time_queries(database_url: &str, csv: &Path, repeat: usize) -> anyhow::Result<Vec<QueryTiming>> {
    let priced = |keep: &[GroupBy]| [&[GroupBy::Day, GroupBy::Model][..], keep].concat();
    let october = (Some("2026-10-01".to_owned()), Some("2026-10-31".to_owned()));
    let queries: [(&'static str, UsageQuery); 5] = [
        ("rollup (every question's records)", UsageQuery::rollup()),
        ("end users counted (one sum each)", UsageQuery { keep: vec![GroupBy::User], ..UsageQuery::default() }),
        ("spend by end user (per day, model, end user)", UsageQuery { keep: priced(&[GroupBy::User]), ..UsageQuery::default() }),
        (
            "one end user in October",
            UsageQuery {
                from: october.0.clone(),
                to: october.1.clone(),
                filters: vec![(GroupBy::User, vec!["user-1241".into()])],
                keep: priced(&[GroupBy::User]),
            },
        ),
        ("spend by API key", UsageQuery { keep: priced(&[GroupBy::ApiKey]), ..UsageQuery::default() }),
    ];
    let store = apex_store::connect(database_url).await.context("opening the bench's store")?;
    let org = apex_protocol::OrgId::new(USER);
    let mut timings = Vec::new();
    let mut duck_input = Vec::new();
    for (name, q) in &queries {
        let mut latencies = Latencies::default();
        let mut rows_out = 0;
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            rows_out = store.usage_totals(&org, q).await?.len();
            latencies.record(started.elapsed());
        }
        let (sql, params) = apex_store::usage_totals_sql(q);
        let params: Vec<String> = std::iter::once(USER.to_owned()).chain(params).collect();
        duck_input.push(serde_json::json!({ "name": name, "sql": sql, "params": params }));
        timings.push(QueryTiming { name, rows_out, apex_ms: latencies.summary(), duckdb_ms: None, ratio_to_duckdb: None });
    }
    match duckdb(csv, &duck_input, repeat) {
        Ok(duck) => {
            for (t, d) in timings.iter_mut().zip(duck) {
                anyhow::ensure!(d.rows == t.rows_out, "{}: DuckDB returned {} rows, the store {}", t.name, d.rows, t.rows_out);
                t.duckdb_ms = Some(d.p50_ms);
                t.ratio_to_duckdb = Some(t.apex_ms.p50 / d.p50_ms.max(f64::EPSILON));
            }
        }
        Err(e) => eprintln!("DuckDB not measured: {e:#}"),
    }
    Ok(timings)
}

#[derive(serde::Deserialize)]
struct DuckTiming {
    rows: usize,
    p50_ms: f64,
}

/// Runs `benches/questions/duck_timing.py` in its virtualenv (created on first use).
fn duckdb(csv: &Path, queries: &[serde_json::Value], repeat: usize) -> anyhow::Result<Vec<DuckTiming>> {
    let dir = bench_dir()?;
    let venv = dir.join(".venv");
    if !venv.join("bin/python").exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success()
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "-r"])
                .arg(dir.join("requirements.txt"))
                .status()?
                .success();
        anyhow::ensure!(ok, "could not install DuckDB into {}", venv.display());
    }
    let spec = csv.with_extension("queries.json");
    std::fs::write(&spec, serde_json::to_vec(queries)?)?;
    let out = Command::new(venv.join("bin/python"))
        .arg(dir.join("duck_timing.py"))
        .arg(csv)
        .arg(&spec)
        .arg(repeat.to_string())
        .arg(USER)
        .output()?;
    anyhow::ensure!(out.status.success(), "duck_timing.py failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `benches/questions` of this source tree (or `APEX_BENCH_QUESTIONS_DIR`).
fn bench_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("APEX_BENCH_QUESTIONS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/questions");
    anyhow::ensure!(here.exists(), "set APEX_BENCH_QUESTIONS_DIR to the source tree's benches/questions");
    Ok(here)
}

fn print_table(r: &Report) {
    println!(
        "{} usage rows on {}: imported in {:.1} s ({:.0} rows/s); first question after the import {:.0} ms",
        r.rows, r.backend, r.import_s, r.import_rows_per_s, r.first_question_ms
    );
    println!("\n{:<14} {:>9} {:>9}  question", "kind", "p50 ms", "p99 ms");
    for q in &r.questions {
        println!("{:<14} {:>9.1} {:>9.1}  {}", q.kind, q.latency_ms.p50, q.latency_ms.p99, q.text);
    }
    println!("\n{:<36} {:>8} {:>10} {:>10} {:>8}", "aggregation", "rows", "apex p50", "duckdb p50", "ratio");
    for q in &r.queries {
        let duck = q.duckdb_ms.map_or("-".to_owned(), |d| format!("{d:.1}"));
        let ratio = q.ratio_to_duckdb.map_or("-".to_owned(), |x| format!("×{x:.2}"));
        println!("{:<36} {:>8} {:>10.1} {:>10} {:>8}", q.name, q.rows_out, q.apex_ms.p50, duck, ratio);
    }
}

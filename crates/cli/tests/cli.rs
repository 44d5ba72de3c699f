//! The `apex` binary end to end: `serve`, `token` and `chat --once` as separate processes.
mod common;

use std::process::Command;

use common::{http_client, spawn_serve, CuttingProxy, KillOnDrop};

const SECRET: &str = "cli-test-secret-0123456789";

fn apex(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apex"));
    cmd.env("APEX_DATA_DIR", dir).env("RUST_LOG", "warn").env_remove("APEX_TOKEN").env_remove("APEX_URL");
    cmd
}

async fn serve(dir: &std::path::Path, demo: bool) -> (KillOnDrop, String) {
    let (server, addr) = spawn_serve(
        apex(dir)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DEMO_MODE", if demo { "1" } else { "0" })
            .env("APEX_JWT_SECRET", SECRET),
    )
    .await;
    (server, format!("ws://{addr}/ws"))
}

fn chat_once(dir: &std::path::Path, url: &str, token: Option<&str>) -> std::process::Output {
    let mut cmd = apex(dir);
    cmd.args(["chat", "--url", url, "--once", "Analyze my AI costs"]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn token_then_chat_once_streams_a_full_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), false).await;
    let minted = apex(dir.path())
        .args(["token", "--user", "ops@example.com", "--ttl", "10m"])
        .env("APEX_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    let usage = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/usage.csv")).unwrap();
    let http = url.replace("ws://", "http://").replace("/ws", "/api/usage/import");
    let imported = http_client().post(http).bearer_auth(&token).body(usage).send().await.unwrap();
    assert_eq!(imported.status().as_u16(), 200);

    let out = tokio::task::spawn_blocking({
        let (dir, url, token) = (dir.path().to_owned(), url.clone(), token.clone());
        move || chat_once(&dir, &url, Some(&token))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    for agent in ["supervisor", "triage", "data", "optimization", "report"] {
        assert!(stdout.contains(&format!("▶ {agent} started")), "{agent} in {stdout}");
    }
    assert!(stdout.contains("## Your AI spend: $"));
    assert!(stdout.contains("final_response"));
}

#[tokio::test]
async fn chat_once_fails_on_a_refused_token_and_works_in_demo_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), true).await;
    let refused = tokio::task::spawn_blocking({
        let (dir, url) = (dir.path().to_owned(), url.clone());
        move || chat_once(&dir, &url, Some("not.a.token"))
    })
    .await
    .unwrap();
    assert_ne!(refused.status.code(), Some(0));

    let demo = tokio::task::spawn_blocking({
        let (dir, url) = (dir.path().to_owned(), url.clone());
        move || chat_once(&dir, &url, None)
    })
    .await
    .unwrap();
    assert_eq!(demo.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&demo.stderr).contains("demo"));
}

#[tokio::test]
async fn chat_once_reconnects_and_resumes_through_dropped_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, upstream) =
        spawn_serve(apex(dir.path()).args(["serve", "--bind", "127.0.0.1:0"]).env("APEX_TOOL_DELAY_MS", "300")).await;
    let proxy = CuttingProxy::start(upstream).await;

    let url = format!("ws://{}/ws", proxy.addr);
    let chat = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || chat_once(&dir, &url, None)
    });
    // Five tools at 300 ms each: cut the connection twice while the run is going.
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        proxy.cut_all();
    }
    let out = chat.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("reconnect"), "the client noticed the drops: {stderr}");
    // Every step printed exactly once, and the answer exactly once.
    for agent in ["supervisor", "triage", "data", "optimization", "report"] {
        assert_eq!(stdout.matches(&format!("▶ {agent} started")).count(), 1, "{agent}: {stdout}");
    }
    assert_eq!(stdout.matches("## Your AI spend: $").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("### Next steps").count(), 1, "{stdout}");
}

#[test]
fn token_refuses_to_mint_without_a_key_outside_demo_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        apex(dir.path()).args(["token", "--user", "x"]).env("DEMO_MODE", "0").env_remove("APEX_JWT_SECRET").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("APEX_JWT_SECRET"));
}

#[tokio::test]
async fn token_uses_the_servers_demo_secret_and_never_invents_one() {
    // Run outside the server's data dir: no secret to use, and none is created.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = apex(elsewhere.path())
        .args(["token", "--user", "x"])
        .env("DEMO_MODE", "1")
        .env_remove("APEX_JWT_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("jwt-secret") && stderr.contains("--data-dir"), "{stderr}");
    assert!(!elsewhere.path().join("jwt-secret").exists(), "no secret the server would not know");

    // With the server's data dir: the secret the demo-mode server generated, accepted by it.
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = spawn_serve(
        apex(dir.path()).args(["serve", "--bind", "127.0.0.1:0"]).env("DEMO_MODE", "1").env_remove("APEX_JWT_SECRET"),
    )
    .await;
    let out = apex(dir.path()).args(["token", "--user", "ops"]).env_remove("APEX_JWT_SECRET").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = http_client().get(format!("http://{addr}/api/threads")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn prices_shows_what_the_engine_charges() {
    let dir = tempfile::tempdir().unwrap();
    let out = apex(dir.path()).args(["prices", "gpt-4o-2024-08-06", "openai/gpt-4o-mini"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gpt-4o-2024-08-06 → gpt-4o (openai): input $2.50, cached input $1.25, cache write $2.50, output $10.00, reasoning $10.00"),
        "{text}"
    );
    assert!(text.contains("gpt-4o-mini (openai): input $0.15, cached input $0.075, cache write $0.15, output $0.60"), "{text}");
    assert!(
        text.contains("tool calling yes, vision yes, reasoning no, context window 128,000 tokens; source litellm+models.dev"),
        "{text}"
    );
    assert!(text.contains("prices: litellm ") && text.contains("models.dev"), "the sources are named: {text}");
    // Cache-write and reasoning rates, and context tiers, where a model has them.
    let out = apex(dir.path()).args(["prices", "claude-sonnet-4-5", "gemini-2.5-pro"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("claude-sonnet-4-5 (anthropic): input $3.00, cached input $0.30, cache write $3.75, output $15.00"),
        "{text}"
    );
    assert!(text.contains("prompts over 200,000 tokens: input $2.50, cached input $0.25"), "{text}");
    let unknown = apex(dir.path()).args(["prices", "no-such-model"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

#[tokio::test]
async fn ingest_writes_to_the_store_or_uploads_to_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/usage.csv");
    // Straight into the store, before any server runs; twice, to show it is idempotent.
    for expected in ["112 imported, 0 already there", "0 imported, 112 already there"] {
        let out = apex(dir.path()).args(["ingest", fixture, "--user", "ops"]).env("APEX_JWT_SECRET", SECRET).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains(expected), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    let (_server, url) = serve(dir.path(), false).await;
    let http = url.replace("ws://", "http://").replace("/ws", "");
    let auth = |user: &str| {
        let out = apex(dir.path()).args(["token", "--user", user]).env("APEX_JWT_SECRET", SECRET).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let summary = |user: String| {
        let http = http.clone();
        async move {
            let r = http_client().get(format!("{http}/api/usage/summary")).bearer_auth(user).send().await.unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let stored = summary(auth("ops")).await;
    assert_eq!(stored["records"], 112, "the server sees what ingest stored: {stored}");

    // Uploading to the running server, as another user, with a token minted for --user.
    let out = tokio::task::spawn_blocking({
        let (dir, http) = (dir.path().to_owned(), http.clone());
        move || {
            apex(&dir)
                .args(["ingest", fixture, "--user", "ops2", "--url", &http])
                .env("APEX_JWT_SECRET", SECRET)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let uploaded = summary(auth("ops2")).await;
    assert_eq!(uploaded["total"], stored["total"], "the same file gives the same total either way");

    // A file with rejected rows exits 1 and lists them.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "date,model,input_tokens\n2026-11-01,gpt-4o,10\n2026-11-99,gpt-4o,10\n").unwrap();
    let out = apex(dir.path()).args(["ingest", bad.to_str().unwrap(), "--user", "ops3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 3: `date` is not a date"));
}

#[test]
fn ingest_takes_its_formats_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let help = apex(dir.path()).args(["ingest", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for i in apex_costs::import::importers() {
        assert!(help.contains(&format!("- {}:", i.name)) && help.contains(i.describes), "{} in {help}", i.name);
        for alias in i.aliases {
            assert!(help.contains(alias), "{alias} in {help}");
        }
    }
    // An alias is accepted (the file then fails on its own account), an unknown name is not.
    let csv = dir.path().join("usage.csv");
    std::fs::write(&csv, "date,model\n2026-11-01,gpt-4o\n").unwrap();
    let out = apex(dir.path()).args(["ingest", csv.to_str().unwrap(), "--user", "u", "--format", "csv"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(generic_csv)"));
    let out = apex(dir.path()).args(["ingest", csv.to_str().unwrap(), "--user", "u", "--format", "nope"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("generic_csv") && stderr.contains("helicone_requests"), "{stderr}");
}

#[tokio::test]
async fn negotiated_prices_from_a_file_replace_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.toml");
    std::fs::write(&file, "[[price]]\nmodel = \"gpt-4o\"\ninput_per_mtok = \"2.00\"\noutput_per_mtok = 8\n").unwrap();
    let shown = apex(dir.path()).args(["prices", "gpt-4o-2024-08-06"]).env("APEX_PRICES_FILE", &file).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(
            "gpt-4o (openai): input $2.00, cached input $1.25, cache write $2.00, output $8.00, reasoning $8.00 per 1M tokens; \
             batch API -50% (negotiated"
        ),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );

    // The server prices usage with them: 1M input + 1M output = $2 + $8, not the list $12.50.
    let (_server, addr) = spawn_serve(
        apex(dir.path()).args(["serve", "--bind", "127.0.0.1:0"]).env("APEX_JWT_SECRET", SECRET).env("APEX_PRICES_FILE", &file),
    )
    .await;
    let token = String::from_utf8(
        apex(dir.path()).args(["token", "--user", "buyer"]).env("APEX_JWT_SECRET", SECRET).output().unwrap().stdout,
    )
    .unwrap();
    let http = http_client();
    let csv = "date,model,input_tokens,output_tokens\n2026-11-01,gpt-4o,1000000,1000000\n";
    http.post(format!("http://{addr}/api/usage/import")).bearer_auth(token.trim()).body(csv).send().await.unwrap();
    let summary: serde_json::Value = http
        .get(format!("http://{addr}/api/usage/summary"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["total_display"], "$10.00");

    // A broken file stops the server from starting, with the reason.
    std::fs::write(&file, "[[price]]\nmodel = \"gpt-4o\"\ninput_per_mtok = \"two\"\noutput_per_mtok = 8\n").unwrap();
    let out = apex(dir.path()).args(["prices", "gpt-4o"]).env("APEX_PRICES_FILE", &file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gpt-4o: `input_per_mtok` is not an amount of dollars: `two`"));
}

//! Several instances on one PostgreSQL and one Redis: a run started on one instance is
//! followed, resumed and stopped from another, with no gap, no duplicate and no other
//! user's data; a Redis outage degrades the bus without losing anything.
mod common;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apex_store::testing::TempSchema;
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// One instance of the deployment: its own listener and engine, the shared database and Redis.
async fn instance(schema: &TempSchema, redis: &str, tool_delay_ms: u64) -> TestApp {
    let layer = |s: &mut apex_server::Settings| {
        s.demo_mode = false;
        s.database_url = schema.url.clone().into();
        s.redis_url = Some(redis.to_owned().into());
        s.tool_delay = std::time::Duration::from_millis(tool_delay_ms);
    };
    spawn_with(layer, |s| s).await
}

fn shared_redis() -> String {
    std::env::var("APEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn wait_cluster(app: &TestApp, want: &str) {
    for _ in 0..200 {
        let ready: Value = http_client().get(app.http("/api/health")).send().await.unwrap().json().await.unwrap();
        if ready["components"]["cluster"]["status"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cluster never became {want}");
}

/// Reads frames until `n` run events arrived (other frames are skipped).
async fn events(client: &mut Client, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = client.next_json().await;
        if v.get("seq").is_some() {
            let terminal = is_terminal(&v);
            out.push(v);
            if terminal {
                break;
            }
        }
    }
    out
}

#[tokio::test]
async fn a_run_on_one_process_resumes_on_another_at_a_thousand_random_points() {
    let schema = TempSchema::create().await;
    let redis = shared_redis();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut procs = Vec::new();
    for dir in &dirs {
        procs.push(instance_process(&schema, &redis, dir.path(), 15).await);
    }
    let addrs: Vec<std::net::SocketAddr> = procs.iter().map(|(_, addr)| *addr).collect();
    let token = mint("alice");
    let http = http_client();
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/usage.csv")).unwrap();
    let r = http.post(format!("http://{}/api/usage/import", addrs[0])).bearer_auth(&token).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0A9E);
    let mut reconnects = 0;
    let mut runs = 0;
    while reconnects < 1_000 {
        // Start on a random process, read a few events, drop the connection.
        let url = |i: usize| format!("ws://{}/ws", addrs[i]);
        let mut client = try_connect(&url(rng.gen_range(0..2)), By::Header(token.clone())).await.unwrap();
        let accepted = client.ask("Analyze my AI costs", None).await;
        let run_id = accepted["run_id"].as_str().unwrap().to_owned();
        let mut seen: Vec<Value> = events(&mut client, rng.gen_range(0..4)).await;
        client.close().await;
        // Come back again and again, to either process, from the last seq seen.
        while !seen.last().is_some_and(is_terminal) {
            let mut client = try_connect(&url(rng.gen_range(0..2)), By::Header(token.clone())).await.unwrap();
            let last = seen.last().map_or(0, |e| e["seq"].as_u64().unwrap());
            client.send(json!({"type": "resume", "run_id": run_id, "after_seq": last})).await;
            seen.extend(events(&mut client, rng.gen_range(1..6)).await);
            client.close().await;
            reconnects += 1;
        }
        runs += 1;
        let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "run {runs}: no gap, no duplicate, in order");
        assert_golden_run(&seen);
        // What the client put together is exactly what either process has stored.
        let stored: Value = http
            .get(format!("http://{}/api/runs/{run_id}/events?after_seq=0", addrs[rng.gen_range(0..2)]))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stored["events"].as_array().unwrap(), &seen);
    }
    assert!(runs >= 10, "{runs} runs");
}

/// A token the test processes accept (they share the test secret).
fn mint(user: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    apex_server::Auth::from_settings(&test_settings(&dir, |_| ())).unwrap().mint(user, Duration::from_secs(3600), false).unwrap()
}

#[tokio::test]
async fn stop_on_another_instance_cancels_the_run_and_other_users_see_nothing() {
    let schema = TempSchema::create().await;
    let redis = shared_redis();
    let a = instance(&schema, &redis, 400).await;
    let b = instance(&schema, &redis, 400).await;
    wait_cluster(&a, "ok").await;
    wait_cluster(&b, "ok").await;
    let token = a.token("alice");
    a.import_fixture(&token).await;
    let mut on_a = connect(&a, By::Header(token.clone())).await;
    let accepted = on_a.ask("Analyze my AI costs", None).await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    events(&mut on_a, 2).await;

    // Another user on B: the run does not exist for them, and they cannot stop it.
    let mut eve = connect(&b, By::Header(b.token("eve"))).await;
    eve.send(json!({"type": "resume", "run_id": run_id, "after_seq": 0})).await;
    assert_eq!(eve.next_json().await["code"], "not_found");
    eve.send(json!({"type": "stop_agent", "run_id": run_id})).await;
    assert_eq!(eve.next_json().await["code"], "not_found");

    let mut on_b = connect(&b, By::Header(token.clone())).await;
    on_b.send(json!({"type": "resume", "run_id": run_id, "after_seq": 0})).await;
    on_b.send(json!({"type": "stop_agent", "run_id": run_id})).await;
    let from_b = on_b.events_until_terminal().await;
    assert_eq!(from_b.last().unwrap()["type"], "run_cancelled", "{:?}", from_b.last());
    let from_a = on_a.events_until_terminal().await;
    assert_eq!(from_a.last().unwrap(), from_b.last().unwrap(), "both instances' followers see the same end");
    let (_, run) = b.get(&format!("/api/runs/{run_id}"), &token).await;
    assert_eq!(run["run"]["status"], "cancelled");
}

/// A Redis of the test's own, so that it can be stopped and started again.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn without_redis_instances_degrade_lose_nothing_and_recover() {
    let schema = TempSchema::create().await;
    let mut redis = PrivateRedis::start();
    let a = instance(&schema, &redis.url(), 60).await;
    let b = instance(&schema, &redis.url(), 60).await;
    wait_cluster(&a, "ok").await;
    wait_cluster(&b, "ok").await;
    let token = a.token("alice");
    a.import_fixture(&token).await;

    redis.stop();
    wait_cluster(&a, "degraded").await;
    let ready: Value = http_client().get(b.http("/api/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "still serving: {ready}");

    // A run on A, followed from B while the bus is down: B reads the store.
    let mut on_a = connect(&a, By::Header(token.clone())).await;
    let accepted = on_a.ask("Analyze my AI costs", None).await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let first = events(&mut on_a, 3).await;
    on_a.close().await;
    let mut on_b = connect(&b, By::Header(token.clone())).await;
    on_b.send(json!({"type": "resume", "run_id": run_id, "after_seq": 3})).await;
    let rest = on_b.events_until_terminal().await;
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_golden_run(&all);

    // Redis returns: both instances rejoin the bus and live fan-out works again.
    redis.restart();
    wait_cluster(&a, "ok").await;
    wait_cluster(&b, "ok").await;
    let mut on_a = connect(&a, By::Header(token.clone())).await;
    let accepted = on_a.ask("Analyze my AI costs", None).await;
    let mut on_b = connect(&b, By::Header(token.clone())).await;
    on_b.send(json!({"type": "resume", "run_id": accepted["run_id"], "after_seq": 0})).await;
    assert_golden_run(&on_b.events_until_terminal().await);

    // Redis dies in the middle of a run that B follows live from A: B's follower goes on
    // from the store, with no gap and no repeat, and the run ends normally.
    let mut on_a = connect(&a, By::Header(token.clone())).await;
    let accepted = on_a.ask("Analyze my AI costs", None).await;
    let mut on_b = connect(&b, By::Header(token.clone())).await;
    on_b.send(json!({"type": "resume", "run_id": accepted["run_id"], "after_seq": 0})).await;
    let first = events(&mut on_b, 3).await;
    redis.stop();
    let rest = on_b.events_until_terminal().await;
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_golden_run(&all);
    assert_golden_run(&on_a.events_until_terminal().await);
    wait_cluster(&a, "degraded").await;
    redis.restart();
    wait_cluster(&a, "ok").await;
    wait_cluster(&b, "ok").await;
}

/// An `apex serve` process of the cluster, to be killed.
async fn instance_process(
    schema: &TempSchema,
    redis: &str,
    dir: &std::path::Path,
    tool_delay_ms: u64,
) -> (KillOnDrop, std::net::SocketAddr) {
    spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("APEX_DATA_DIR", dir)
            .env("DATABASE_URL", &schema.url)
            .env("REDIS_URL", redis)
            .env("DEMO_MODE", "0")
            .env("APEX_JWT_SECRET", SECRET)
            .env("APEX_TOOL_DELAY_MS", tool_delay_ms.to_string())
            .env("APEX_INSTANCE_LEASE_SECS", "1")
            .env("RUST_LOG", "warn"),
    )
    .await
}

#[tokio::test]
async fn a_killed_instance_loses_its_runs_to_a_live_one_and_a_restart_spares_live_runs() {
    let schema = TempSchema::create().await;
    let redis = shared_redis();
    let layer = |s: &mut apex_server::Settings| {
        s.demo_mode = false;
        s.database_url = schema.url.clone().into();
        s.redis_url = Some(redis.clone().into());
        s.instance_lease = std::time::Duration::from_secs_f64(1.0);
    };
    let survivor = spawn_with(layer, |s| s).await;
    // A user of this run only: the killed process's runs stay counted as in flight in the
    // shared Redis until they expire, and a rerun as the same user would be refused.
    let token = survivor.token(&format!("alice-{}", uuid::Uuid::new_v4()));
    survivor.import_fixture(&token).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut doomed, addr) = instance_process(&schema, &redis, dir.path(), 1_500).await;

    // A run on the process, and another instance starting meanwhile: the live run goes on.
    let mut on_doomed = try_connect(&format!("ws://{addr}/ws"), By::Header(token.clone())).await.unwrap();
    let accepted = on_doomed.ask("Analyze my AI costs", None).await;
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let mut seen = events(&mut on_doomed, 3).await;
    let newcomer = spawn_with(layer, |s| s).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await; // longer than the lease
    seen.extend(events(&mut on_doomed, 2).await);
    assert!(!seen.iter().any(is_terminal), "the run was not taken from a live instance: {seen:?}");

    // The process dies mid-run: a live instance takes the run over within the lease.
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let mut on_newcomer = connect(&newcomer, By::Header(token.clone())).await;
    let last = seen.last().unwrap()["seq"].as_u64().unwrap();
    on_newcomer.send(json!({"type": "resume", "run_id": run_id, "after_seq": last})).await;
    seen.extend(on_newcomer.events_until_terminal().await);
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(seen.last().unwrap()["type"], "run_interrupted");
    assert_eq!(seen.iter().filter(|e| is_terminal(e)).count(), 1);
    let (_, run) = survivor.get(&format!("/api/runs/{run_id}"), &token).await;
    assert_eq!(run["run"]["status"], "interrupted");
    let (_, stored) = survivor.get(&format!("/api/runs/{run_id}/events?after_seq=0"), &token).await;
    assert_eq!(stored["events"].as_array().unwrap(), &seen);
}

/// The `find_savings` result of a finished run, as the client saw it.
fn savings(events: &[Value]) -> Value {
    events
        .iter()
        .find(|e| e["type"] == "tool_completed" && e["tool"] == "find_savings")
        .map(|e| e["result"].clone())
        .expect("the run looked for savings")
}

#[tokio::test]
async fn recommendations_computed_on_one_instance_are_reused_by_another_until_an_import() {
    let schema = TempSchema::create().await;
    let redis = shared_redis();
    let a = instance(&schema, &redis, 0).await;
    let b = instance(&schema, &redis, 0).await;
    wait_cluster(&a, "ok").await;
    wait_cluster(&b, "ok").await;
    let token = a.token(&format!("carol-{}", uuid::Uuid::new_v4()));
    a.import_fixture(&token).await;
    let ask = |app: &TestApp| {
        let (url, token) = (app.ws_url(), token.clone());
        async move {
            let mut c = try_connect(&url, By::Header(token)).await.unwrap();
            c.ask("How do I reduce spend?", None).await;
            savings(&c.events_until_terminal().await)
        }
    };
    let first = ask(&a).await;
    assert_eq!(first["cached"], false);
    let on_b = ask(&b).await;
    assert_eq!(on_b["cached"], true, "B reuses what A computed");
    assert_eq!(on_b["recommendations"], first["recommendations"]);

    // New data on B: the next analysis anywhere is computed afresh.
    let more = "date,model,input_tokens,output_tokens,requests,feature\n2026-11-20,gpt-4o,5000000,100000,1000,extra\n";
    let r = http_client().post(b.http("/api/usage/import")).bearer_auth(&token).body(more).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(ask(&a).await["cached"], false, "an import invalidates the shared entry");
    assert_eq!(ask(&b).await["cached"], true);
}

#[tokio::test]
async fn sigterm_drains_an_instance_while_another_follows_its_run() {
    let schema = TempSchema::create().await;
    let redis = shared_redis();
    let b = instance(&schema, &redis, 0).await;
    let token = b.token("alice");
    b.import_fixture(&token).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, addr) = instance_process(&schema, &redis, dir.path(), 150).await;

    let mut on_a = try_connect(&format!("ws://{addr}/ws"), By::Header(token.clone())).await.unwrap();
    let accepted = on_a.ask("Analyze my AI costs", None).await;
    let mut on_b = connect(&b, By::Header(token.clone())).await;
    on_b.send(json!({"type": "resume", "run_id": accepted["run_id"], "after_seq": 0})).await;
    events(&mut on_b, 2).await;

    // SIGTERM: A stops accepting, lets the run finish within its grace period, then exits.
    let status = Command::new("kill").args(["-TERM", &a.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest = on_b.events_until_terminal().await;
    assert_eq!(rest.last().unwrap()["type"], "final_response", "the run finished during the drain");
    let exit = tokio::task::spawn_blocking(move || a.0.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
    let run_id = accepted["run_id"].as_str().unwrap();
    let (_, run) = b.get(&format!("/api/runs/{run_id}"), &token).await;
    assert_eq!(run["run"]["status"], "completed");
}

#[tokio::test]
async fn a_users_runs_in_flight_are_capped_across_the_deployment() {
    let schema = TempSchema::create().await;
    let redis = shared_redis();
    let (url, redis) = (&schema.url, &redis);
    let capped = |tool_delay_ms: u64| {
        move |s: &mut apex_server::Settings| {
            s.demo_mode = false;
            s.database_url = url.clone().into();
            s.redis_url = Some(redis.clone().into());
            s.tool_delay = std::time::Duration::from_millis(tool_delay_ms);
            s.max_runs_per_user = 2;
        }
    };
    let a = spawn_with(capped(400), |s| s).await;
    let b = spawn_with(capped(400), |s| s).await;
    wait_cluster(&a, "ok").await;
    wait_cluster(&b, "ok").await;
    // A user of this test alone: the count lives in the Redis other tests share.
    let user = format!("capped-{:016x}", rand::random::<u64>());
    let token = a.token(&user);
    a.import_fixture(&token).await;
    let mut on_a = Vec::new();
    for _ in 0..2 {
        let mut client = connect(&a, By::Header(token.clone())).await;
        client.ask("Analyze my AI costs", None).await;
        on_a.push(client);
    }
    // Two runs in flight on A: a third through B is over the deployment's cap.
    let mut on_b = connect(&b, By::Header(token.clone())).await;
    on_b.send(json!({"type": "user_message", "text": "Analyze my AI costs"})).await;
    let refused = on_b.next_json().await;
    assert_eq!(refused["code"], "too_many_runs", "{refused}");
    // Another user is not counted with them.
    let mut other = connect(&b, By::Header(b.token(&format!("{user}-other")))).await;
    other.ask("Analyze my AI costs", None).await;
    // Once A's runs end, their places are free everywhere.
    for client in &mut on_a {
        assert_golden_run(&client.events_until_terminal().await);
    }
    let mut accepted = None;
    for _ in 0..100 {
        on_b.send(json!({"type": "user_message", "text": "Analyze my AI costs"})).await;
        let reply = on_b.next_json().await;
        if reply["type"] == "message_accepted" {
            accepted = Some(reply);
            break;
        }
        assert_eq!(reply["code"], "too_many_runs", "{reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted.is_some(), "the places of finished runs were never given back");
    assert_golden_run(&on_b.events_until_terminal().await);
}

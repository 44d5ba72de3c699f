//! PostgreSQL going away mid-run (a restart, a failover, a network cut): work pauses and
//! retries, clients see a delay, never an error or a 1011, and nothing acknowledged is lost.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use apex_store::testing::TempSchema;
use common::*;
use serde_json::Value;

/// `host:port` of a `postgres://user@host:port/db?…` URL.
fn server_of(url: &str) -> SocketAddr {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap();
    let hostport = if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:5432") };
    hostport.parse().expect("a host:port the proxy can reach")
}

#[tokio::test]
async fn a_database_outage_delays_runs_and_messages_but_loses_nothing() {
    let schema = TempSchema::create().await;
    let upstream = server_of(&schema.url);
    let proxy = CuttingProxy::start(upstream).await;
    let through_proxy = schema.url.replacen(&upstream.to_string(), &proxy.addr.to_string(), 1);
    assert_ne!(through_proxy, schema.url, "the store talks to the proxy");
    let layer = |s: &mut apex_server::Settings| {
        s.demo_mode = false;
        s.database_url = through_proxy.into();
        s.tool_delay = std::time::Duration::from_millis(150);
    };
    let app = spawn_with(layer, |s| s).await;
    let token = app.token("alice");
    app.import_fixture(&token).await;

    let mut client = connect(&app, By::Header(token.clone())).await;
    client.ask("Analyze my AI costs", None).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(client.next_json().await);
    }

    // The database disappears for three seconds; meanwhile another message arrives.
    proxy.down();
    let (opened, mut socket_open) = tokio::sync::oneshot::channel();
    let late = {
        let (url, token) = (app.ws_url(), token.clone());
        tokio::spawn(async move {
            let mut other = try_connect(&url, By::Header(token)).await.unwrap();
            let _ = opened.send(());
            let accepted = other.ask("How do I reduce spend?", None).await;
            let events = other.events_until_terminal().await;
            (accepted, events)
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A token of no session opens its socket while the database is still down (the check
    // that its account is not disabled gives up after a second).
    assert!(socket_open.try_recv().is_ok(), "the socket opened during the outage");
    proxy.up();

    // The run finishes as if nothing happened, only later.
    seen.extend(client.events_until_terminal().await);
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let answer = assert_golden_run(&seen);
    assert!(answer.contains("## Your AI spend: $"), "{answer}");
    let run_id = seen[0]["run_id"].as_str().unwrap();
    let (status, stored) = app.get(&format!("/api/runs/{run_id}/events?after_seq=0"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(stored["events"].as_array().unwrap(), &seen, "every event the client saw is stored");

    // The message sent during the outage was accepted once the database was back, and ran.
    let (accepted, events) = tokio::time::timeout(WAIT, late).await.expect("in time").unwrap();
    assert_golden_run(&events);
    let thread = accepted["thread_id"].as_str().unwrap();
    let (_, messages) = app.get(&format!("/api/threads/{thread}/messages"), &token).await;
    let roles: Vec<&str> = messages["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant"]);
    let ready: Value = http_client().get(app.http("/api/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["components"]["store"]["status"], "ok", "{ready}");
}

#[tokio::test]
async fn an_instance_started_while_the_database_is_down_serves_once_it_is_up() {
    let schema = TempSchema::create().await;
    let upstream = server_of(&schema.url);
    let proxy = CuttingProxy::start(upstream).await;
    proxy.down();
    let layer = |s: &mut apex_server::Settings| {
        s.demo_mode = false;
        s.database_url = schema.url.replacen(&upstream.to_string(), &proxy.addr.to_string(), 1).into();
    };
    // Starts (and is live) without its database: never hangs, never exits.
    let app = tokio::time::timeout(WAIT, spawn_with(layer, |s| s)).await.expect("starts without its database");
    let r = http_client().get(app.http("/api/health")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["components"]["store"]["status"], "unavailable", "{ready}");

    proxy.up();
    let mut ok = false;
    for _ in 0..200 {
        let ready: Value = http_client().get(app.http("/api/health")).send().await.unwrap().json().await.unwrap();
        if ready["status"] == "ok" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the store became ready once PostgreSQL was reachable");
    let token = app.token("alice");
    app.import_fixture(&token).await;
    let mut client = connect(&app, By::Header(token)).await;
    client.ask("Analyze my AI costs", None).await;
    assert_golden_run(&client.events_until_terminal().await);
}

//! Organizations against real servers: members share one organization's usage (REST and
//! the agents over the WebSocket), roles decide who imports, deletes and invites, a caller
//! outside an organization reads nothing of it (whether it exists or not), an
//! organization's API key reaches it only, a removed member's open socket is refused at
//! its next message, and a leaver's account goes while the organization's data stays.
//! Threads stay their owner's until shared with an organization: then its members read
//! them (and only read them), until the owner stops sharing or leaves.
//! Then a randomized check over two instances on PostgreSQL and Redis: many users in
//! several organizations, every read of every organization by every user, on either
//! instance, over REST and the WebSocket.
mod common;

use apex_store::testing::TempSchema;
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    org: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http_client().request(method, app.http(path)).bearer_auth(token);
    if let Some(org) = org {
        request = request.header("X-Apex-Org", org);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    send(app, reqwest::Method::POST, path, token, None, Some(body)).await
}

async fn import_csv(app: &TestApp, token: &str, org: Option<&str>, csv: String) -> (u16, Value) {
    let mut request = http_client().post(app.http("/api/usage/import")).bearer_auth(token).body(csv);
    if let Some(org) = org {
        request = request.header("X-Apex-Org", org);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn summary(app: &TestApp, token: &str, org: Option<&str>) -> (u16, Value) {
    send(app, reqwest::Method::GET, "/api/usage/summary", token, org, None).await
}

/// One day of gpt-4o usage costing exactly `dollars` (as the billed cost).
fn usage_costing(dollars: u64, feature: &str) -> String {
    format!("date,model,feature,input_tokens,output_tokens,cost_usd\n2026-11-02,gpt-4o,{feature},1000,100,{dollars}.00\n")
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Creates an organization as `token`'s user and lets `members` in with their roles.
async fn organization(app: &TestApp, admin: &str, name: &str, members: &[(&str, &str)]) -> String {
    let (status, org) = post(app, "/api/orgs", admin, json!({ "name": name })).await;
    assert_eq!(status, 201, "{org}");
    let id = org["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("org:"), "{id}");
    for (token, role) in members {
        let (status, invitation) = post(app, &format!("/api/orgs/{id}/invitations"), admin, json!({ "role": role })).await;
        assert_eq!(status, 201, "{invitation}");
        let (status, joined) = post(app, "/api/orgs/join", token, json!({ "code": invitation["code"] })).await;
        assert_eq!((status, joined["role"].as_str()), (200, Some(*role)), "{joined}");
    }
    id
}

async fn ask_about(app: &TestApp, token: &str, org: Option<&str>, question: &str) -> String {
    let url = match org {
        Some(org) => format!("{}?org={org}", app.ws_url()),
        None => app.ws_url(),
    };
    let mut c = try_connect(&url, By::Header(token.to_owned())).await.expect("the member's socket opens");
    c.ask(question, None).await;
    let events = c.events_until_terminal().await;
    c.close().await;
    let end = events.last().unwrap();
    assert_eq!(end["type"], "final_response", "{end}");
    end["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn members_share_an_organizations_usage_by_role_and_nobody_else_sees_it() {
    let app = spawn_with(|s| s.demo_mode = false, |s| s).await;
    let (ann, bob, cy, eve) = (app.token("u_ann"), app.token("u_bob"), app.token("u_cy"), app.token("u_eve"));
    let acme = organization(&app, &ann, "Acme", &[(&bob, "analyst"), (&cy, "viewer")]).await;

    // The analyst imports into the organization; the viewer may not; nobody's own space
    // holds it.
    let (status, report) = import_csv(&app, &bob, Some(&acme), usage_costing(1234, "support-bot")).await;
    assert_eq!((status, report["imported"].as_u64()), (200, Some(1)), "{report}");
    let (status, refused) = import_csv(&app, &cy, Some(&acme), usage_costing(5, "x")).await;
    assert_eq!((status, code(&refused)), (403, "insufficient_role"), "{refused}");
    let (status, refused) = send(&app, reqwest::Method::DELETE, "/api/usage", &bob, Some(&acme), None).await;
    assert_eq!((status, code(&refused)), (403, "insufficient_role"), "an analyst does not delete: {refused}");
    for member in [&ann, &bob, &cy] {
        let (status, shared) = summary(&app, member, Some(&acme)).await;
        assert_eq!((status, shared["total_display"].as_str()), (200, Some("$1,234.00")), "{shared}");
        let (_, own) = summary(&app, member, None).await;
        assert_eq!(own["total_display"], "$0.00", "{own}");
    }
    // `?org=` works like the header.
    let (_, by_query) = app.get(&format!("/api/usage/summary?org={acme}"), &cy).await;
    assert_eq!(by_query["total_display"], "$1,234.00");

    // Outsiders: the same refusal for a real organization and one that does not exist, and
    // nothing at the WebSocket either.
    let made_up = "org:0193aaaa-0000-7000-8000-000000000000";
    for org in [acme.as_str(), made_up, "u_ann", "../u_ann"] {
        let (status, refused) = summary(&app, &eve, Some(org)).await;
        assert_eq!((status, code(&refused)), (403, "not_a_member"), "{org}: {refused}");
        let error = try_connect(&format!("{}?org={org}", app.ws_url()), By::Header(eve.clone())).await.err();
        assert!(matches!(&error, Some(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403), "{org}: {error:?}");
    }
    let (status, members) = app.get(&format!("/api/orgs/{acme}/members"), &eve).await;
    assert_eq!((status, code(&members)), (403, "not_a_member"));
    let (_, listed) = app.get("/api/orgs", &eve).await;
    assert_eq!(listed["organizations"].as_array().unwrap().len(), 1, "only eve's personal space: {listed}");

    // The agents answer from the organization's usage for a member, from their own for
    // the same member without it.
    let answer = ask_about(&app, &cy, Some(&acme), "What did we spend in total?").await;
    assert!(answer.contains("$1,234.00"), "{answer}");
    let answer = ask_about(&app, &cy, None, "What did we spend in total?").await;
    assert!(!answer.contains("$1,234.00"), "{answer}");

    // Roles: only an admin invites and changes roles; the last admin stays.
    let (status, refused) = post(&app, &format!("/api/orgs/{acme}/invitations"), &bob, json!({ "role": "admin" })).await;
    assert_eq!((status, code(&refused)), (403, "insufficient_role"), "{refused}");
    let patch = reqwest::Method::PATCH;
    let member = |user: &str| format!("/api/orgs/{acme}/members/{user}");
    let (status, refused) = send(&app, patch.clone(), &member("u_ann"), &ann, None, Some(json!({ "role": "viewer" }))).await;
    assert_eq!((status, code(&refused)), (409, "last_admin"), "{refused}");
    let (status, refused) = send(&app, patch.clone(), &member("u_bob"), &bob, None, Some(json!({ "role": "admin" }))).await;
    assert_eq!((status, code(&refused)), (403, "insufficient_role"), "{refused}");
    let (status, _) = send(&app, patch, &member("u_eve"), &ann, None, Some(json!({ "role": "viewer" }))).await;
    assert_eq!(status, 404, "not a member");

    // A member removed while their socket is open is refused at their next message.
    let mut open = try_connect(&format!("{}?org={acme}", app.ws_url()), By::Header(cy.clone())).await.unwrap();
    let (status, _) = send(&app, reqwest::Method::DELETE, &format!("/api/orgs/{acme}/members/u_cy"), &ann, None, None).await;
    assert_eq!(status, 204);
    open.send(json!({"type": "user_message", "text": "What did we spend in total?", "client_message_id": "c1"})).await;
    let refused = open.next_json().await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("not_a_member")), "{refused}");
    assert_eq!(refused["client_message_id"], "c1");
    let (status, _) = summary(&app, &cy, Some(&acme)).await;
    assert_eq!(status, 403);

    // An organization's API key reaches that organization, and only it.
    let (status, key) = post(&app, "/api/keys", &ann, json!({ "name": "etl", "scopes": ["read", "ingest"], "org": acme })).await;
    assert_eq!((status, key["org_id"].as_str()), (201, Some(acme.as_str())), "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let (_, via_key) = summary(&app, &key, None).await;
    assert_eq!(via_key["total_display"], "$1,234.00", "{via_key}");
    let (status, refused) = summary(&app, &key, Some("u_ann")).await;
    assert_eq!((status, code(&refused)), (403, "not_a_member"), "not ann's own space: {refused}");
    let (_, listed) = app.get("/api/orgs", &key).await;
    let listed: Vec<&str> = listed["organizations"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [acme.as_str()], "the key lists its organization only");
    let (status, refused) = post(&app, "/api/keys", &bob, json!({ "name": "x", "org": acme })).await;
    assert_eq!((status, code(&refused)), (403, "insufficient_role"), "{refused}");

    // A token may not claim an organization's id as its subject.
    let (status, refused) = summary(&app, &app.token(&acme), None).await;
    assert_eq!(status, 401, "{refused}");

    // Bob deletes his data: the organization's usage stays for Ann; when Ann, the last
    // member, goes too, so does the organization.
    let (status, _) = send(&app, reqwest::Method::DELETE, "/api/me", &bob, None, None).await;
    assert_eq!(status, 204);
    let (_, shared) = summary(&app, &ann, Some(&acme)).await;
    assert_eq!(shared["total_display"], "$1,234.00", "{shared}");
    let (_, export) = app.get("/api/me/export", &ann).await;
    assert_eq!(export["organizations"][0]["id"], acme.as_str(), "{export}");
    let (status, _) = send(&app, reqwest::Method::DELETE, "/api/me", &ann, None, None).await;
    assert_eq!(status, 204);
    let store = apex_store::connect(&app.settings.database_url).await.unwrap();
    assert!(store.usage(&apex_protocol::OrgId::new(acme.as_str()), None, None).await.unwrap().is_empty(), "removed with it");
}

#[tokio::test]
async fn a_thread_shared_with_an_organization_is_read_by_its_members_only() {
    let app = spawn_with(|s| s.demo_mode = false, |s| s).await;
    let (ann, bob, dan, eve) = (app.token("u_ann"), app.token("u_bob"), app.token("u_dan"), app.token("u_eve"));
    let acme = organization(&app, &ann, "Acme", &[(&bob, "viewer")]).await;
    let beta = organization(&app, &dan, "Beta", &[]).await;

    // Ann asks in her own space: the thread is hers.
    let mut c = try_connect(&app.ws_url(), By::Header(ann.clone())).await.unwrap();
    let accepted = c.ask("Analyze my AI costs", None).await;
    let events = c.events_until_terminal().await;
    c.close().await;
    let (thread, run) = (accepted["thread_id"].as_str().unwrap().to_owned(), accepted["run_id"].as_str().unwrap().to_owned());
    let reads = [format!("/api/threads/{thread}/messages"), format!("/api/runs/{run}"), format!("/api/runs/{run}/events")];
    let owners_view = {
        let mut v = Vec::new();
        for path in &reads {
            let (status, body) = app.get(path, &ann).await;
            assert_eq!(status, 200, "{path}: {body}");
            v.push(body);
        }
        v
    };
    assert_eq!(owners_view[2]["events"].as_array().unwrap().len(), events.len());
    let unreadable = |who: &'static str| {
        let (app, reads) = (&app, &reads);
        async move {
            for path in reads {
                let (status, body) = app.get(path, &app.token(who)).await;
                assert_eq!((status, code(&body)), (404, "not_found"), "{who} reads {path}: {body}");
            }
        }
    };
    unreadable("u_bob").await;

    // Only the owner shares, only with an organization she belongs to.
    let share = |token: &str, org: &str| {
        let body = json!({ "org": org });
        let token = token.to_owned();
        let path = format!("/api/threads/{thread}/share");
        let app = &app;
        async move { send(app, reqwest::Method::PUT, &path, &token, None, Some(body)).await }
    };
    let (status, refused) = share(&bob, &acme).await;
    assert_eq!((status, code(&refused)), (404, "not_found"), "a member shares only their own threads: {refused}");
    let (status, refused) = share(&eve, &acme).await;
    assert_eq!((status, code(&refused)), (403, "not_a_member"), "{refused}");
    let (status, refused) = share(&ann, &beta).await;
    assert_eq!((status, code(&refused)), (403, "not_a_member"), "not with someone else's organization: {refused}");
    let (status, refused) = share(&ann, "u_ann").await;
    assert_eq!((status, code(&refused)), (400, "invalid_field"), "{refused}");
    let (status, shared) = share(&ann, &acme).await;
    assert_eq!((status, shared["shared_with"].as_str()), (200, Some(acme.as_str())), "{shared}");
    let (_, own) = app.get("/api/threads", &ann).await;
    assert_eq!(own["threads"][0]["shared_with"], acme.as_str(), "{own}");

    // Bob, a member, lists it and reads exactly what ann reads; outsiders still read nothing.
    let (status, listed) = app.get(&format!("/api/orgs/{acme}/threads"), &bob).await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["threads"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0]["id"].as_str(), listed[0]["owner"].as_str()), (Some(thread.as_str()), Some("u_ann")));
    for (path, expected) in reads.iter().zip(&owners_view) {
        let (status, body) = app.get(path, &bob).await;
        assert_eq!((status, &body), (200, expected), "bob reads {path}");
    }
    unreadable("u_dan").await;
    unreadable("u_eve").await;
    for outsider in [&dan, &eve] {
        let (status, refused) = app.get(&format!("/api/orgs/{acme}/threads"), outsider).await;
        assert_eq!((status, code(&refused)), (403, "not_a_member"), "{refused}");
    }
    let (_, beta_threads) = app.get(&format!("/api/orgs/{beta}/threads"), &dan).await;
    assert_eq!(beta_threads["threads"], json!([]));

    // Read only: bob's message into ann's thread is refused, and nothing is added to it.
    let mut c = try_connect(&format!("{}?org={acme}", app.ws_url()), By::Header(bob.clone())).await.unwrap();
    c.send(json!({ "type": "user_message", "text": "Let me add to this", "thread_id": thread })).await;
    let refused = c.next_json().await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("not_found")), "{refused}");
    c.close().await;
    let (_, after) = app.get(&reads[0], &ann).await;
    assert_eq!(after, owners_view[0], "the thread is unchanged");
    let (status, refused) = send(&app, reqwest::Method::DELETE, &format!("/api/threads/{thread}/share"), &bob, None, None).await;
    assert_eq!(status, 404, "only the owner stops sharing: {refused}");

    // Personal again: bob reads nothing; shared again, then ann leaves Acme: the share ends.
    let (status, _) = send(&app, reqwest::Method::DELETE, &format!("/api/threads/{thread}/share"), &ann, None, None).await;
    assert_eq!(status, 200);
    unreadable("u_bob").await;
    let (status, _) = share(&ann, &acme).await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/orgs/{acme}/members/u_bob"),
        &ann,
        None,
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(&app, reqwest::Method::DELETE, &format!("/api/orgs/{acme}/members/u_ann"), &ann, None, None).await;
    assert_eq!(status, 204);
    unreadable("u_bob").await;
    let (_, listed) = app.get(&format!("/api/orgs/{acme}/threads"), &bob).await;
    assert_eq!(listed["threads"], json!([]), "{listed}");
    let (_, own) = app.get("/api/threads", &ann).await;
    assert_eq!(own["threads"][0]["shared_with"], Value::Null, "{own}");
    let (status, refused) = share(&ann, &acme).await;
    assert_eq!((status, code(&refused)), (403, "not_a_member"), "{refused}");
}

#[tokio::test]
async fn demo_identities_keep_to_their_own_space() {
    let app = spawn_app().await;
    let c = connect(&app, By::Demo).await;
    let token = c.token.clone().unwrap();
    let (status, refused) = post(&app, "/api/orgs", &token, json!({ "name": "Demo Inc" })).await;
    assert_eq!((status, code(&refused)), (403, "demo_identity"), "{refused}");
    let (status, refused) = post(&app, "/api/orgs/join", &token, json!({ "code": "x" })).await;
    assert_eq!((status, code(&refused)), (403, "demo_identity"), "{refused}");
}

/// Many users, several organizations with different totals, two instances: every user asks
/// for every organization's usage (and their own) on a random instance, over REST or the
/// WebSocket; members get exactly their organization's figure, everyone else a refusal.
#[tokio::test]
async fn randomized_members_of_many_organizations_across_two_instances_never_read_another() {
    let schema = TempSchema::create().await;
    let redis = std::env::var("APEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let instance = || {
        let (url, redis) = (schema.url.clone(), redis.clone());
        spawn_with(
            move |s| {
                s.demo_mode = false;
                s.database_url = url.into();
                s.redis_url = Some(redis.into());
            },
            |s| s,
        )
    };
    let instances = [instance().await, instance().await];
    let seed: u64 = std::env::var("APEX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("seed {seed} (APEX_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let users: Vec<String> = (0..10).map(|i| format!("u_{i:02}_{}", rng.gen::<u32>())).collect();
    let tokens: Vec<String> = users.iter().map(|u| instances[0].token(u)).collect();

    // Four organizations, each with a random admin and 1–5 other members, each of which
    // holds one figure (a different number of dollars).
    let mut orgs = Vec::new();
    for o in 0..4u64 {
        let app = &instances[rng.gen_range(0..2)];
        let admin = rng.gen_range(0..users.len());
        let mut members = vec![admin];
        let others: Vec<usize> = (0..users.len()).filter(|u| *u != admin && rng.gen_bool(0.4)).collect();
        members.extend(others.iter().take(5));
        let invited: Vec<(&str, &str)> = members[1..].iter().map(|m| (tokens[*m].as_str(), "analyst")).collect();
        let id = organization(app, &tokens[admin], &format!("team {o}"), &invited).await;
        let dollars = 1000 * (o + 1) + rng.gen_range(1..999);
        let importer = members[rng.gen_range(0..members.len())];
        let (status, report) =
            import_csv(app, &tokens[importer], Some(&id), usage_costing(dollars, &format!("feature-{o}"))).await;
        assert_eq!(status, 200, "{report}");
        orgs.push((id, members, format!("${},{:03}.00", dollars / 1000, dollars % 1000)));
    }
    // Each user's own space holds a figure of its own.
    for (u, token) in tokens.iter().enumerate() {
        let app = &instances[rng.gen_range(0..2)];
        let (status, _) = import_csv(app, token, None, usage_costing(10 + u as u64, "own")).await;
        assert_eq!(status, 200);
    }
    let figures: Vec<&str> = orgs.iter().map(|(_, _, figure)| figure.as_str()).collect();

    let mut checks = (0, 0);
    for (u, token) in tokens.iter().enumerate() {
        for (id, members, figure) in &orgs {
            let app = &instances[rng.gen_range(0..2)];
            let member = members.contains(&u);
            if rng.gen_bool(0.3) {
                // Over the WebSocket: a member's answer names their organization's figure
                // and no other's; anyone else is refused at the upgrade.
                let url = format!("{}?org={id}", app.ws_url());
                if member {
                    let answer = ask_about(app, token, Some(id), "What did we spend in total?").await;
                    assert!(answer.contains(figure.as_str()), "seed {seed}: {answer}");
                    for other in figures.iter().filter(|f| **f != figure.as_str()) {
                        assert!(!answer.contains(other), "seed {seed}: another organization's figure {other}: {answer}");
                    }
                } else {
                    let refused = try_connect(&url, By::Header(token.clone())).await.err();
                    assert!(
                        matches!(&refused, Some(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
                        "seed {seed}: {refused:?}"
                    );
                }
                checks.1 += 1;
            } else {
                let (status, body) = summary(app, token, Some(id)).await;
                if member {
                    assert_eq!((status, body["total_display"].as_str()), (200, Some(figure.as_str())), "seed {seed}: {body}");
                } else {
                    assert_eq!((status, code(&body)), (403, "not_a_member"), "seed {seed}: {body}");
                }
                checks.0 += 1;
            }
        }
        // Their own space: their own figure, never an organization's.
        let app = &instances[rng.gen_range(0..2)];
        let (_, own) = summary(app, token, None).await;
        assert_eq!(own["total_display"], format!("${}.00", 10 + u), "seed {seed}: {own}");
        let (_, listed) = app.get("/api/orgs", token).await;
        let mut listed: Vec<String> =
            listed["organizations"].as_array().unwrap().iter().skip(1).map(|o| o["id"].as_str().unwrap().to_owned()).collect();
        let mut expected: Vec<String> = orgs.iter().filter(|(_, m, _)| m.contains(&u)).map(|(id, _, _)| id.clone()).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "seed {seed}");
    }
    eprintln!("{} REST and {} WebSocket reads checked", checks.0, checks.1);
    assert!(checks.0 + checks.1 == users.len() * orgs.len());
}

//! The analyst over real sockets: a narrow question is answered in the first sentence with
//! the figure of the run's own `query_slice` result, and a follow-up in the same thread is
//! read against the previous turn — also after the server restarts, and on PostgreSQL from
//! another instance.
mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn a_narrow_question_gets_its_figure_first() {
    let app = spawn_app().await;
    let mut client = connect(&app, By::Demo).await;
    client.ask("How much did we spend on gpt-4o yesterday?", None).await;
    let events = client.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    let slice = slice_of(&events);
    // The demo data ends on 2026-11-24: "yesterday" is that day, and the answer says so.
    assert_eq!((slice["from"].as_str(), slice["to"].as_str()), (Some("2026-11-24"), Some("2026-11-24")));
    let first = answer.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "You spent **{}** on model `gpt-4o` yesterday (2026-11-24, the last day in your data)",
            money(&slice["cost"])
        )),
        "{first}"
    );
    let triage = events.iter().find(|e| e["type"] == "agent_completed" && e["agent"] == "triage").unwrap();
    assert!(triage["summary"].as_str().unwrap().contains("Read as: total of cost; model gpt-4o"), "{triage}");
}

#[tokio::test]
async fn a_follow_up_is_read_against_the_previous_turn_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&dir, |_| ());
    let mut app = spawn_in(dir, settings.clone(), |s| s).await;
    let mut client = connect(&app, By::Demo).await;
    let token = client.token.clone().unwrap();
    let accepted = client.ask("What are our top 3 features by spend?", None).await;
    let thread = accepted["thread_id"].as_str().unwrap().to_owned();
    let events = client.events_until_terminal().await;
    let ranking: Vec<String> =
        slice_of(&events)["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap().to_owned()).collect();
    assert!(ranking.len() >= 3, "{ranking:?}");
    let first = assert_golden_run(&events).lines().next().unwrap().to_owned();
    assert!(first.starts_with("The 3 features that cost the most from "), "{first}");
    assert!(first.contains(&format!("**{}**", ranking[1])), "{first}");
    drop(client);

    // A restart in between: the memory is what the store kept.
    app.stop().await;
    let app = spawn_in(app.dir, settings, |s| s).await;
    let mut client = connect(&app, By::Header(token)).await;
    client.ask("and what about the second one?", Some(&thread)).await;
    let events = client.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    let slice = slice_of(&events);
    let first = answer.lines().next().unwrap();
    assert!(first.starts_with(&format!("You spent **{}** on feature `{}` from ", money(&slice["cost"]), ranking[1])), "{first}");
    let triage = events.iter().find(|e| e["type"] == "agent_completed" && e["agent"] == "triage").unwrap();
    assert!(triage["summary"].as_str().unwrap().contains("read with the previous question"), "{triage}");

    // A question that stands alone in the same thread is not bent by the previous one.
    client.ask("Analyze my AI costs", Some(&thread)).await;
    let events = client.events_until_terminal().await;
    assert!(assert_golden_run(&events).starts_with("## Your AI spend: $"));
}

#[tokio::test]
async fn on_postgresql_a_follow_up_is_read_on_another_instance() {
    let schema = apex_store::testing::TempSchema::create().await;
    let on_postgres = || {
        |s: &mut apex_server::Settings| {
            s.demo_mode = false;
            s.database_url = schema.url.clone().into();
        }
    };
    let first = spawn_with(on_postgres(), |s| s).await;
    let token = first.token("finn");
    first.import_fixture(&token).await;
    let mut client = connect(&first, By::Header(token.clone())).await;
    let accepted = client.ask("What are our top 3 features by spend?", None).await;
    let thread = accepted["thread_id"].as_str().unwrap().to_owned();
    let events = client.events_until_terminal().await;
    let ranking: Vec<String> =
        slice_of(&events)["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap().to_owned()).collect();
    assert!(ranking.len() >= 2, "{ranking:?}");
    assert_golden_run(&events);

    // Another instance on the same database reads the thread's memory from the store.
    let second = spawn_with(on_postgres(), |s| s).await;
    let mut other = connect(&second, By::Header(token)).await;
    other.ask("and what about the second one?", Some(&thread)).await;
    let events = other.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    let slice = slice_of(&events);
    let first_line = answer.lines().next().unwrap();
    assert!(
        first_line.starts_with(&format!("You spent **{}** on feature `{}` from ", money(&slice["cost"]), ranking[1])),
        "{first_line}"
    );
    // And the step back from that: the same feature, the week before the data's last one.
    other.ask("how much did it cost last week?", Some(&thread)).await;
    let events = other.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    let slice = slice_of(&events);
    assert!(
        answer.starts_with(&format!("You spent **{}** on feature `{}` last week (", money(&slice["cost"]), ranking[1])),
        "{answer}"
    );
    other.ask("and the week before?", Some(&thread)).await;
    let events = other.events_until_terminal().await;
    let answer = assert_golden_run(&events);
    let before = slice_of(&events);
    let week = |s: &Value| (s["from"].as_str().unwrap().to_owned(), s["to"].as_str().unwrap().to_owned());
    let (from, to) = week(&before);
    let (last_from, _) = week(&slice);
    let day = |d: &str| apex_engine::question::day(d).unwrap();
    assert_eq!(day(&to).next_day(), Some(day(&last_from)), "the week just before");
    assert!(
        answer.starts_with(&format!("You spent **{}** on feature `{}` from {from} to {to}", money(&before["cost"]), ranking[1])),
        "{answer}"
    );
}

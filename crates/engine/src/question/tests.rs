//! The parser, question type by question type, against a fixed last day (Monday
//! 2026-11-30) and a vocabulary like the demo data's.
use time::macros::date;

use super::*;

fn vocabulary() -> Vocabulary {
    let names = [
        (Dimension::Model, "gpt-4o"),
        (Dimension::Model, "gpt-4o-mini"),
        (Dimension::Model, "gpt-4.1"),
        (Dimension::Model, "gpt-4.1-2025-04-14"),
        (Dimension::Model, "claude-3-5-sonnet-20241022"),
        (Dimension::Model, "text-embedding-3-small"),
        (Dimension::Feature, "support-bot"),
        (Dimension::Feature, "ticket-classification"),
        (Dimension::Feature, "nightly-summaries"),
        (Dimension::Feature, "search-embeddings"),
        (Dimension::Feature, "code-review"),
        (Dimension::Project, "customer-support"),
        (Dimension::Project, "analytics"),
        (Dimension::Provider, "openai"),
        (Dimension::Provider, "anthropic"),
        (Dimension::User, "acme-corp"),
        (Dimension::ApiKey, "key-prod-1"),
        (Dimension::Environment, "production"),
        (Dimension::Environment, "staging"),
    ];
    Vocabulary::new(names.into_iter().map(|(d, n)| (d, n.to_owned())))
}

fn catalog(word: &str) -> Option<String> {
    const PRICED: [&str; 9] = [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "claude-3-5-sonnet",
        "claude-3-5-haiku",
        "o3-mini",
        "text-embedding-3-small",
        "gpt-5",
    ];
    let base = undated(word.trim_start_matches("openai/"));
    PRICED.iter().find(|p| **p == base).map(|p| p.to_string())
}

const LAST: Date = date!(2026 - 11 - 30);

fn ask(text: &str) -> Question {
    ask_after(text, None)
}

fn ask_after(text: &str, previous: Option<&Turn>) -> Question {
    let v = vocabulary();
    parse(text, &Context { vocabulary: &v, last_day: LAST, catalog: &catalog, previous })
}

fn span(p: &Option<Period>) -> String {
    p.as_ref().map(Period::span).unwrap_or_default()
}

fn filter(q: &Question, d: Dimension) -> Vec<String> {
    q.filters.iter().filter(|f| f.dimension == d).flat_map(|f| f.values.clone()).collect()
}

#[test]
fn the_full_report_is_for_analysis_requests() {
    for text in ["Analyze my AI costs", "Give me an overview of our spend", "Where is my money going?"] {
        assert_eq!(ask(text).operation, Operation::Overview, "{text}");
    }
}

#[test]
fn greetings_import_help_and_off_topic() {
    assert_eq!(ask("hi").operation, Operation::Greeting);
    assert_eq!(ask("Thanks!").operation, Operation::Greeting);
    assert_eq!(ask("How do I import my OpenAI usage CSV?").operation, Operation::ImportHelp);
    assert_eq!(ask("Can I upload a Langfuse export?").operation, Operation::ImportHelp);
    assert_eq!(ask("What is the capital of France?").operation, Operation::OffTopic);
    assert_eq!(ask("").operation, Operation::OffTopic);
}

#[test]
fn relative_days_resolve_against_the_last_day_of_the_data_and_say_so() {
    let q = ask("How much did we spend on gpt-4.1 yesterday?");
    assert_eq!(q.operation, Operation::Total);
    assert_eq!(span(&q.period), "2026-11-30");
    assert_eq!(q.period.as_ref().unwrap().label, "yesterday (2026-11-30, the last day in your data)");
    assert_eq!(filter(&q, Dimension::Model), ["gpt-4.1", "gpt-4.1-2025-04-14"], "the dated snapshot is the same model");

    assert_eq!(span(&ask("spend in the last 7 days").period), "2026-11-24 … 2026-11-30");
    assert_eq!(span(&ask("cost over the past two weeks").period), "2026-11-17 … 2026-11-30");
    assert_eq!(span(&ask("what did we spend this month so far").period), "2026-11-01 … 2026-11-30");
    assert_eq!(span(&ask("what did we spend last month").period), "2026-10-01 … 2026-10-31");
    assert_eq!(span(&ask("spend since the 10th").period), "2026-11-10 … 2026-11-30");
    assert_eq!(span(&ask("spend since October").period), "2026-10-01 … 2026-11-30");
    assert!(ask("what did we spend this month so far").period.unwrap().label.contains("2026-11-30 is the last day in your data"));
}

#[test]
fn weeks_are_monday_to_sunday_before_the_week_of_the_last_day() {
    let q = ask("How much did we spend last week compared to the week before?");
    assert_eq!(q.operation, Operation::Compare);
    assert_eq!(span(&q.period), "2026-11-23 … 2026-11-29");
    assert_eq!(span(&q.compare), "2026-11-16 … 2026-11-22");
    assert_eq!(span(&ask("spend this week").period), "2026-11-30");
}

#[test]
fn months_days_and_ranges() {
    assert_eq!(span(&ask("What did we spend in October?").period), "2026-10-01 … 2026-10-31");
    assert_eq!(span(&ask("spend in 2026-10").period), "2026-10-01 … 2026-10-31");
    assert_eq!(span(&ask("spend in December").period), "2025-12-01 … 2025-12-31", "the latest December up to the data");
    assert_eq!(span(&ask("cost on 2026-11-12").period), "2026-11-12");
    assert_eq!(span(&ask("cost on Nov 12").period), "2026-11-12");
    assert_eq!(span(&ask("cost on the 12th").period), "2026-11-12");
    assert_eq!(span(&ask("cost on 12 November 2025").period), "2025-11-12");
    assert_eq!(span(&ask("spend between 2026-11-03 and 2026-11-09").period), "2026-11-03 … 2026-11-09");
    assert_eq!(span(&ask("spend from Nov 3 to Nov 9").period), "2026-11-03 … 2026-11-09");
    assert_eq!(span(&ask("spend from Nov 3 to 9").period), "2026-11-03 … 2026-11-09");
    assert_eq!(span(&ask("spend on the comet project for Oct 5-11").period), "2026-10-05 … 2026-10-11");
    assert_eq!(span(&ask("cost for november 3-9 2025").period), "2025-11-03 … 2025-11-09");
    assert_eq!(ask("what may we spend").period, None, "\"may\" is a verb here");
}

#[test]
fn two_months_compare_the_later_with_the_earlier() {
    let q = ask("October vs November spend");
    assert_eq!(q.operation, Operation::Compare);
    assert_eq!(span(&q.period), "2026-11-01 … 2026-11-30");
    assert_eq!(span(&q.compare), "2026-10-01 … 2026-10-31");
}

#[test]
fn spikes_and_jumps_ask_for_an_explanation() {
    let q = ask("Why did my costs spike?");
    assert_eq!(q.operation, Operation::ExplainChange);
    let q = ask("why did costs jump on the 12th?");
    assert_eq!(q.operation, Operation::ExplainChange);
    assert_eq!(span(&q.period), "2026-11-12");
    assert_eq!(ask("Were there any unusual days?").operation, Operation::Anomalies);
    assert_eq!(ask("Show me the spikes").operation, Operation::Anomalies);
}

#[test]
fn rankings_find_their_dimension_order_and_count() {
    // Written by someone who had not read the parser (crates/eval/questions/outside.json).
    let q = ask("who's the lowest spending user in october");
    assert_eq!((q.operation, q.group_by), (Operation::Top, Some(Dimension::User)));
    assert_eq!(q.rank.map(|r| r.order), Some(Order::Smallest));
    let q = ask("what feature burned the most money in the last 7 days");
    assert_eq!((q.operation, q.group_by, &q.not_found), (Operation::Top, Some(Dimension::Feature), &Vec::new()));
    assert_eq!(ask("who spent the most last week?").group_by, Some(Dimension::User));
    let q = ask("Which model has the worst cost per request?");
    assert_eq!(q.operation, Operation::Top);
    assert_eq!(q.group_by, Some(Dimension::Model));
    assert_eq!(q.measure, Measure::CostPerRequest);
    assert_eq!(q.rank, Some(Rank { order: Order::Largest, count: 1, place: 1 }));

    let q = ask("What are our top 3 features by spend?");
    assert_eq!(q.operation, Operation::Top);
    assert_eq!(q.group_by, Some(Dimension::Feature));
    assert_eq!(q.rank.unwrap().count, 3);

    let q = ask("Which project is cheapest?");
    assert_eq!((q.group_by, q.rank.unwrap().order), (Some(Dimension::Project), Order::Smallest));

    let q = ask("Which feature costs the most and why?");
    assert_eq!(q.operation, Operation::Top);
    assert_eq!(q.group_by, Some(Dimension::Feature));
}

#[test]
fn breakdowns_and_trends() {
    let q = ask("Break down spend by provider");
    assert_eq!((q.operation, q.group_by), (Operation::Breakdown, Some(Dimension::Provider)));
    let q = ask("cost per environment last month");
    assert_eq!((q.operation, q.group_by), (Operation::Breakdown, Some(Dimension::Environment)));
    assert_eq!(ask("How is our spend trending?").operation, Operation::Trend);
}

#[test]
fn measures() {
    assert_eq!(ask("What is our cost per end user?").measure, Measure::CostPerUser);
    assert_eq!(ask("cost per 1,000 requests on gpt-4o").measure, Measure::CostPer1kRequests);
    assert_eq!(ask("How many requests did support-bot make?").measure, Measure::Requests);
    assert_eq!(ask("how many output tokens did we use in October").measure, Measure::OutputTokens);
    assert_eq!(ask("How many cached tokens last week").measure, Measure::CachedTokens);
    assert_eq!(ask("reasoning tokens by model").measure, Measure::ReasoningTokens);
    assert_eq!(ask("What share of spend is gpt-4o?").measure, Measure::Share);
    assert_eq!(ask("average spend per day in November").measure, Measure::AveragePerDay);
    assert_eq!(ask("what is our cache hit rate").measure, Measure::CacheHitShare);
    assert_eq!(ask("How much did we spend?").measure, Measure::Cost);
}

#[test]
fn names_of_every_dimension_are_found_in_the_data() {
    let q = ask("How much did support-bot on gpt-4o-mini cost in production for customer-support?");
    assert_eq!(filter(&q, Dimension::Feature), ["support-bot"]);
    assert_eq!(filter(&q, Dimension::Model), ["gpt-4o-mini"], "not gpt-4o");
    assert_eq!(filter(&q, Dimension::Environment), ["production"]);
    assert_eq!(filter(&q, Dimension::Project), ["customer-support"]);
    assert_eq!(filter(&ask("spend on anthropic"), Dimension::Provider), ["anthropic"]);
    assert_eq!(filter(&ask("spend of acme-corp"), Dimension::User), ["acme-corp"]);
    assert_eq!(filter(&ask("spend on key-prod-1"), Dimension::ApiKey), ["key-prod-1"]);
    assert_eq!(filter(&ask("what does the support bot cost"), Dimension::Feature), ["support-bot"]);
    assert_eq!(filter(&ask("what does claude-3-5-sonnet cost"), Dimension::Model), ["claude-3-5-sonnet-20241022"]);
}

#[test]
fn names_not_in_the_data_come_with_the_closest_ones() {
    let q = ask("How much did the suport-bot feature cost?");
    assert_eq!(q.not_found.len(), 1, "{:?}", q.not_found);
    assert_eq!(q.not_found[0].said, "suport-bot");
    assert_eq!(q.not_found[0].suggestions[0], "support-bot");
    let q = ask("What did gpt-9-turbo cost?");
    assert_eq!(q.not_found[0].said, "gpt-9-turbo");
    assert_eq!(q.not_found[0].dimension, Some(Dimension::Model));
}

#[test]
fn what_ifs_in_every_phrasing() {
    for text in [
        "What would support-bot cost on gpt-4o-mini instead?",
        "What if we switched support-bot to gpt-4o-mini?",
        "move support-bot from gpt-4o to gpt-4o-mini",
        "How much would we save if we used gpt-4o-mini for support-bot?",
        "What would support-bot cost with gpt-4o-mini",
    ] {
        let q = ask(text);
        assert_eq!(q.operation, Operation::WhatIf, "{text}");
        assert_eq!(q.what_if_model.as_deref(), Some("gpt-4o-mini"), "{text}");
        assert_eq!(filter(&q, Dimension::Feature), ["support-bot"], "{text}");
    }
    let q = ask("What would everything cost on gpt-5?");
    assert_eq!((q.operation, q.what_if_model.as_deref()), (Operation::WhatIf, Some("gpt-5")), "a catalog model not in the data");
    let q = ask("What did gpt-4o cost last week?");
    assert_eq!(q.operation, Operation::Total, "naming a model of the data is not a what-if");
}

#[test]
fn savings_toward_a_target_and_forecasts_with_a_budget() {
    let q = ask("Give me three ways to cut 30 %");
    assert_eq!((q.operation, q.target_percent), (Operation::Savings, Some(30)));
    assert_eq!(q.rank.map(|r| r.count), Some(3), "three ways");
    assert_eq!(ask("List 5 changes that save money").rank.map(|r| r.count), Some(5));
    assert_eq!(ask("How can we reduce spend by 25%?").target_percent, Some(25));
    assert_eq!(ask("How do I reduce spend?").operation, Operation::Savings);
    let q = ask("Forecast next month");
    assert_eq!(q.operation, Operation::Forecast);
    let q = ask("When will we run out of our $5,000 budget?");
    assert_eq!((q.operation, q.budget.as_deref()), (Operation::Forecast, Some("5000")));
    assert_eq!(ask("we have a budget of $12.5k this month").budget.as_deref(), Some("12500"));
}

fn turn(text: &str, ranking: &[&str]) -> Turn {
    Turn { question: Some(ask(text)), ranking: ranking.iter().map(|s| s.to_string()).collect() }
}

#[test]
fn follow_ups_read_against_the_previous_turn() {
    let previous = turn("Which feature costs the most and why?", &["support-bot", "code-review", "nightly-summaries"]);
    let q = ask_after("and what about the second biggest one?", Some(&previous));
    assert!(q.follow_up);
    assert_eq!(filter(&q, Dimension::Feature), ["code-review"]);

    let previous = turn("How much did we spend on gpt-4o last week?", &[]);
    let q = ask_after("and in October?", Some(&previous));
    assert!(q.follow_up);
    assert_eq!(q.operation, Operation::Total);
    assert_eq!(span(&q.period), "2026-10-01 … 2026-10-31");
    assert_eq!(filter(&q, Dimension::Model), ["gpt-4o"]);

    let q = ask_after("what about support-bot?", Some(&previous));
    assert_eq!(filter(&q, Dimension::Feature), ["support-bot"]);
    assert_eq!(filter(&q, Dimension::Model), ["gpt-4o"], "the previous names stay");
    assert_eq!(span(&q.period), "2026-11-23 … 2026-11-29", "and its period");

    let previous = turn("How much did we spend in November?", &[]);
    let q = ask_after("how much of that was on gpt-4o?", Some(&previous));
    assert_eq!((q.operation, span(&q.period)), (Operation::Total, "2026-11-01 … 2026-11-30".to_owned()));
    assert_eq!(filter(&q, Dimension::Model), ["gpt-4o"]);

    let q = ask_after("Analyze my AI costs", Some(&previous));
    assert!(!q.follow_up, "a new question stands alone");
    assert_eq!(q.period, None);
}

#[test]
fn the_reading_is_said_in_words() {
    assert_eq!(
        ask("How much did we spend on gpt-4.1 yesterday?").describe(),
        "total of cost; model gpt-4.1 or gpt-4.1-2025-04-14; yesterday (2026-11-30, the last day in your data)"
    );
    assert_eq!(ask("What are our top 3 features by spend?").describe(), "top of cost; by feature, largest 3");
    assert_eq!(
        ask("How much did the suport-bot feature cost?").describe(),
        "total of cost; `suport-bot` is not in your data (closest: support-bot)"
    );
}

#[test]
fn ordinary_words_next_to_a_dimension_are_not_taken_for_names() {
    for text in [
        "How much has the analytics project spent this month so far?",
        "Number of requests for the analytics project last week?",
        "Which project has the most requests?",
        "Which feature made the most requests in September?",
        "Which environment has the fewest requests?",
    ] {
        let q = ask(text);
        assert!(q.not_found.is_empty(), "{text}: {:?}", q.not_found);
    }
    let q = ask("Which environment has the fewest requests?");
    assert_eq!((q.group_by, q.rank.map(|r| r.order)), (Some(Dimension::Environment), Some(Order::Smallest)));
}

#[test]
fn a_misspelt_name_is_said_with_the_name_it_is_closest_to() {
    let q = ask("What did suport-bot cost?");
    assert_eq!(q.not_found.len(), 1, "{q:?}");
    assert_eq!(
        (q.not_found[0].said.as_str(), q.not_found[0].suggestions.as_slice()),
        ("suport-bot", &["support-bot".to_owned()][..])
    );
    let q = ask("What did stagign cost in October?");
    assert_eq!(q.not_found[0].suggestions, ["staging"]);
    // Words of questions are never read as misspelt names.
    for text in ["Summarize my costs", "Analyze my AI costs", "What did production cost?", "How much did the models cost?"] {
        assert!(ask(text).not_found.is_empty(), "{text}");
    }
}

#[test]
fn superlatives_name_the_dimension_they_rank() {
    assert_eq!(ask("Who is our most expensive end user?").group_by, Some(Dimension::User));
    assert_eq!(ask("What's our most expensive model?").group_by, Some(Dimension::Model));
    assert_eq!(ask("What's our most expensive model?").operation, Operation::Top);
}

#[test]
fn averages_trends_and_projections_in_other_words() {
    let q = ask("What was the average daily cost last week?");
    assert_eq!((q.operation, q.measure), (Operation::Total, Measure::AveragePerDay));
    assert_eq!(ask("Is our AI spend going up or down?").operation, Operation::Trend);
    assert_eq!(ask("What's our projected monthly spend?").operation, Operation::Forecast);
    assert_eq!(ask("What if support-bot used gpt-4o-mini?").operation, Operation::WhatIf);
}

#[test]
fn follow_ups_step_back_widen_and_narrow() {
    let previous = turn("What did we spend yesterday?", &[]);
    let q = ask_after("and the day before?", Some(&previous));
    assert_eq!((q.operation, span(&q.period)), (Operation::Total, "2026-11-29".to_owned()));

    let previous = turn("What did the analytics project cost last week?", &[]);
    let q = ask_after("and the week before?", Some(&previous));
    assert_eq!(span(&q.period), "2026-11-16 … 2026-11-22");
    assert_eq!(filter(&q, Dimension::Project), ["analytics"]);
    let q = ask_after("and over all the data?", Some(&previous));
    assert_eq!((q.period.as_ref(), filter(&q, Dimension::Project)), (None, vec!["analytics".to_owned()]));

    // After a comparison, a step back goes from the week it compared with.
    let previous = turn("What did we spend last week versus the week before?", &[]);
    let q = ask_after("and the week before that?", Some(&previous));
    assert_eq!((q.operation, span(&q.period)), (Operation::Total, "2026-11-09 … 2026-11-15".to_owned()));

    // "Which feature drives most of it?": ranked within the name the previous answer put first.
    let previous = turn("Which project costs the most?", &["customer-support", "analytics"]);
    let q = ask_after("which feature drives most of it?", Some(&previous));
    assert_eq!((q.operation, q.group_by), (Operation::Top, Some(Dimension::Feature)));
    assert_eq!(filter(&q, Dimension::Project), ["customer-support"]);
}

#[test]
fn a_name_made_like_the_users_but_not_theirs_is_said() {
    let q = ask("What would support-chat cost on gpt-4o-mini instead?");
    assert_eq!(q.not_found.len(), 1, "{q:?}");
    assert_eq!(q.not_found[0].said, "support-chat");
    assert_eq!(q.not_found[0].suggestions.first().map(String::as_str), Some("support-bot"));
    for text in ["What did we spend month-end?", "Show week-over-week spend", "What is our cost per end-user?"] {
        assert!(ask(text).not_found.is_empty(), "{text}: {:?}", ask(text).not_found);
    }
}

#[test]
fn a_ranked_model_named_back_covers_its_dated_snapshots() {
    let previous = turn("Which models cost the most?", &["gpt-4.1", "claude-3-5-sonnet", "gpt-4o"]);
    let q = ask_after("and the second one?", Some(&previous));
    assert_eq!(filter(&q, Dimension::Model), ["claude-3-5-sonnet", "claude-3-5-sonnet-20241022"]);
}

#[test]
fn it_after_a_ranking_is_the_first_of_the_ranking() {
    let previous = turn("Which API key spent the most?", &["key-prod-1", "key-dev"]);
    let q = ask_after("how much did it spend?", Some(&previous));
    assert_eq!((q.operation, filter(&q, Dimension::ApiKey)), (Operation::Total, vec!["key-prod-1".to_owned()]));
}

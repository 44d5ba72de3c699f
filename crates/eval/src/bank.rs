//! The question bank: what users ask about their spend, each question with the strings
//! its answer's first sentence must hold, computed from the generated rows.
//!
//! Dates, as the bank reads them (the last day in the data, L, is 2026-11-18):
//! "yesterday" is L; "last week" is Monday–Sunday before L's week (2026-11-09..15) and
//! "the week before" 2026-11-02..08; "last month" is October; "this month so far" is
//! 2026-11-01..L; "the last 7 days" are L-6..L.
use serde::Serialize;

use crate::data::{date, Agg, Data, Dim, Period, LAST, SPIKE};
use crate::figures::{budget, count, fine, money, per_day, run_rate, savings_target, share, what_if_mini};

/// One question of the bank.
#[derive(Clone, Debug, Serialize)]
pub struct Question {
    /// Its type: what the bank measures it under.
    pub kind: &'static str,
    pub text: String,
    /// Every one of these must appear in the first sentence of the answer.
    pub expect: Vec<String>,
    /// Asked in the thread of the question before it, right after it.
    pub follow_up: bool,
}

/// The types of question, in the order the report lists them.
pub const KINDS: [&str; 22] = [
    "total",
    "total_filtered",
    "requests",
    "tokens",
    "cost_per_request",
    "cost_per_user",
    "average_per_day",
    "share",
    "top",
    "bottom",
    "breakdown",
    "compare",
    "explain_change",
    "trend",
    "forecast",
    "budget",
    "what_if",
    "savings_target",
    "anomalies",
    "not_found",
    "follow_up",
    "outside_written",
];

struct Bank {
    questions: Vec<Question>,
}

impl Bank {
    fn ask(&mut self, kind: &'static str, text: &str, expect: Vec<String>) -> &mut Self {
        debug_assert!(KINDS.contains(&kind), "{kind}");
        self.questions.push(Question { kind, text: text.into(), expect, follow_up: false });
        self
    }

    /// A follow-up of the question asked just before.
    fn then(&mut self, text: &str, expect: Vec<String>) -> &mut Self {
        self.questions.push(Question { kind: "follow_up", text: text.into(), expect, follow_up: true });
        self
    }
}

/// The name of the `n`-th group (0: the first) of `dim` in `period` by `score`.
fn nth(data: &Data, period: Period, dim: Dim, n: usize, score: impl Fn(&Agg) -> f64) -> String {
    data.ranked_by(period, dim, score)[n].to_owned()
}

fn last(data: &Data, period: Period, dim: Dim, score: impl Fn(&Agg) -> f64) -> String {
    data.ranked_by(period, dim, score).last().expect("groups").to_string()
}

fn by_cost(a: &Agg) -> f64 {
    a.cost as f64
}

fn by_requests(a: &Agg) -> f64 {
    a.requests as f64
}

fn by_cost_per_request(a: &Agg) -> f64 {
    a.cost as f64 / a.requests as f64
}

/// The questions, with what their answers must say about `data`.
pub fn bank(data: &Data) -> Vec<Question> {
    use Dim::*;
    let all = Period::ALL;
    let (sep, oct, nov) = (Period::SEPTEMBER, Period::OCTOBER, Period::NOVEMBER);
    let (yesterday, last_week, week_before) = (Period::YESTERDAY, Period::LAST_WEEK, Period::WEEK_BEFORE);
    // A figure of a name is expected with the name, in the same sentence.
    let total = |p: Period| vec![money(data.cost(p))];
    let of = |p: Period, dim: Dim, value: &str| money(data.cost_of(p, dim, value));
    let filtered = |p: Period, dim: Dim, value: &str| vec![of(p, dim, value), value.to_owned()];
    let agg_of = |p: Period, dim: Dim, value: &str| data.agg(p, |r| dim.of(r) == value);
    let named = |figure: String, dim: Option<(Dim, &str)>| [figure].into_iter().chain(dim.map(|(_, v)| v.to_owned())).collect();
    let requests =
        |p: Period, dim: Option<(Dim, &str)>| named(count(data.agg(p, |r| dim.is_none_or(|(d, v)| d.of(r) == v)).requests), dim);
    let per_request = |p: Period, dim: Option<(Dim, &str)>, per: f64| {
        let a = data.agg(p, |r| dim.is_none_or(|(d, v)| d.of(r) == v));
        named(fine(a.cost as f64 * per / a.requests as f64), dim)
    };
    let per_user = |p: Period| vec![fine(data.cost(p) as f64 / data.users(p) as f64)];
    let share_of = |p: Period, dim: Dim, value: &str| vec![share(data.cost_of(p, dim, value), data.cost(p)), value.to_owned()];
    let largest = |p: Period, dim: Dim| {
        let (name, agg) = data.groups(p, dim)[0];
        vec![name.to_owned(), money(agg.cost)]
    };
    let explain = |day| vec![money(data.cost(Period::day(day))), data.driver_of(day).to_owned()];

    let mut b = Bank { questions: Vec::new() };

    // Totals over a period.
    b.ask("total", "How much did we spend in total?", total(all))
        .ask("total", "What did we spend last month?", total(oct))
        .ask("total", "How much did we spend yesterday?", total(yesterday))
        .ask("total", "What did we spend in September?", total(sep))
        .ask("total", "What was our spend between 2026-10-05 and 2026-10-11?", total(Period(34, 40)))
        .ask("total", "What's our total AI spend so far this month?", total(nov))
        .ask("total", "How much did we spend last week?", total(last_week))
        .ask("total", "How much have we spent over the last 7 days?", total(Period::LAST_7_DAYS))
        .ask("total", "What did we spend on 2026-11-12?", total(Period::day(SPIKE)))
        .ask("total", "Total cost for October 2026?", total(oct));

    // Totals narrowed by a tag or a model.
    b.ask("total_filtered", "How much did gpt-4.1 cost us yesterday?", filtered(yesterday, Model, "gpt-4.1"))
        .ask("total_filtered", "What did support-bot cost in October?", filtered(oct, Feature, "support-bot"))
        .ask("total_filtered", "How much did staging cost last week?", filtered(last_week, Environment, "staging"))
        .ask("total_filtered", "How much have we spent with Anthropic?", filtered(all, Provider, "anthropic"))
        .ask("total_filtered", "What did the atlas project cost last month?", filtered(oct, Project, "atlas"))
        .ask("total_filtered", "How much did end user carol cost us in September?", filtered(sep, User, "carol"))
        .ask("total_filtered", "What was spent through the API key key-prod-batch?", filtered(all, ApiKey, "key-prod-batch"))
        .ask("total_filtered", "How much did production cost yesterday?", filtered(yesterday, Environment, "production"))
        .ask(
            "total_filtered",
            "How much did we spend on claude-3-5-sonnet in November?",
            filtered(nov, Model, "claude-3-5-sonnet"),
        )
        .ask("total_filtered", "What did code-review cost last week?", filtered(last_week, Feature, "code-review"))
        .ask("total_filtered", "How much did OpenAI cost us in October?", filtered(oct, Provider, "openai"))
        .ask("total_filtered", "How much has the beacon project spent this month so far?", filtered(nov, Project, "beacon"))
        .ask(
            "total_filtered",
            "What did gpt-4o-mini cost between 2026-09-14 and 2026-09-20?",
            filtered(Period(13, 19), Model, "gpt-4o-mini"),
        )
        .ask("total_filtered", "How much did user alice cost last week?", filtered(last_week, User, "alice"));

    // Counts.
    b.ask("requests", "How many requests did search make last month?", requests(oct, Some((Feature, "search"))))
        .ask("requests", "How many requests did we make in total?", requests(all, None))
        .ask("requests", "How many requests went to gpt-4o-mini yesterday?", requests(yesterday, Some((Model, "gpt-4o-mini"))))
        .ask("requests", "How many API calls did staging make in September?", requests(sep, Some((Environment, "staging"))))
        .ask("requests", "Number of requests for the comet project last week?", requests(last_week, Some((Project, "comet"))));
    b.ask("tokens", "How many output tokens did we use in October?", vec![count(data.agg(oct, |_| true).output)])
        .ask(
            "tokens",
            "How many input tokens did code-review use?",
            vec![count(agg_of(all, Feature, "code-review").input), "code-review".into()],
        )
        .ask(
            "tokens",
            "How many output tokens did gpt-4.1 produce last week?",
            vec![count(agg_of(last_week, Model, "gpt-4.1").output), "gpt-4.1".into()],
        )
        .ask("tokens", "How many cached input tokens did we have in September?", vec![count(data.agg(sep, |_| true).cached)])
        .ask(
            "tokens",
            "How many input tokens did we send to claude-3-5-haiku yesterday?",
            vec![count(agg_of(yesterday, Model, "claude-3-5-haiku").input), "claude-3-5-haiku".into()],
        );

    // Unit costs.
    b.ask("cost_per_request", "What is our cost per request on gpt-4o?", per_request(all, Some((Model, "gpt-4o")), 1.0))
        .ask(
            "cost_per_request",
            "What's the average cost per request for support-bot last month?",
            per_request(oct, Some((Feature, "support-bot")), 1.0),
        )
        .ask("cost_per_request", "How much does a request cost us on average?", per_request(all, None, 1.0))
        .ask(
            "cost_per_request",
            "What is our cost per 1,000 requests on gpt-4o-mini?",
            per_request(all, Some((Model, "gpt-4o-mini")), 1000.0),
        )
        .ask(
            "cost_per_request",
            "What's the cost per 1,000 requests for code-review in October?",
            per_request(oct, Some((Feature, "code-review")), 1000.0),
        );
    b.ask("cost_per_user", "What is our cost per end user?", per_user(all))
        .ask("cost_per_user", "How much did we spend per user last month?", per_user(oct))
        .ask("cost_per_user", "What's the average cost per end user this month so far?", per_user(nov));
    b.ask("average_per_day", "What is our average spend per day in October?", vec![per_day(data, oct, |_| true)])
        .ask("average_per_day", "How much do we spend per day on average?", vec![per_day(data, all, |_| true)])
        .ask("average_per_day", "What was the average daily cost last week?", vec![per_day(data, last_week, |_| true)])
        .ask(
            "average_per_day",
            "What's the daily average for support-bot in September?",
            vec![per_day(data, sep, |r| r.feature == "support-bot")],
        );
    b.ask("share", "What share of spend went to gpt-4o?", share_of(all, Model, "gpt-4o"))
        .ask("share", "What percentage of our costs is support-bot?", share_of(all, Feature, "support-bot"))
        .ask("share", "How much of last month's spend was staging, in percent?", share_of(oct, Environment, "staging"))
        .ask("share", "What fraction of our spend goes to Anthropic?", share_of(all, Provider, "anthropic"))
        .ask("share", "What share of spend did the comet project have last week?", share_of(last_week, Project, "comet"));

    // Rankings.
    b.ask("top", "Which model costs the most?", largest(all, Model))
        .ask("top", "What are our top 3 features by spend?", (0..3).map(|i| nth(data, all, Feature, i, by_cost)).collect())
        .ask("top", "Which project has the most requests?", vec![nth(data, all, Project, 0, by_requests)])
        .ask("top", "Which model has the worst cost per request?", vec![nth(data, all, Model, 0, by_cost_per_request)])
        .ask("top", "Who is our most expensive end user?", largest(all, User))
        .ask("top", "Which API key spent the most last month?", largest(oct, ApiKey))
        .ask(
            "top",
            "What were the two most expensive models last week?",
            (0..2).map(|i| nth(data, last_week, Model, i, by_cost)).collect(),
        )
        .ask("top", "Which feature made the most requests in September?", vec![nth(data, sep, Feature, 0, by_requests)]);
    b.ask("bottom", "Which feature costs the least?", vec![last(data, all, Feature, by_cost)])
        .ask("bottom", "Which environment has the fewest requests?", vec![last(data, all, Environment, by_requests)])
        .ask("bottom", "Which model was the cheapest last month?", vec![last(data, oct, Model, by_cost)])
        .ask("bottom", "Which project spent the least last week?", vec![last(data, last_week, Project, by_cost)]);
    b.ask("breakdown", "Show spend by provider", largest(all, Provider))
        .ask("breakdown", "Break down last month's cost by project", largest(oct, Project))
        .ask("breakdown", "Give me a breakdown of costs by feature for last week", largest(last_week, Feature))
        .ask("breakdown", "Spend per API key?", largest(all, ApiKey))
        .ask("breakdown", "Split this month's spend by environment", largest(nov, Environment));

    // Over time.
    b.ask(
        "compare",
        "How much did we spend last week compared to the week before?",
        vec![money(data.cost(last_week)), money(data.cost(week_before))],
    )
    .ask("compare", "November vs October", vec![money(data.cost(nov)), money(data.cost(oct))])
    .ask("compare", "How does this month so far compare to last month?", vec![money(data.cost(nov)), money(data.cost(oct))])
    .ask("compare", "Compare September and October spend", vec![money(data.cost(sep)), money(data.cost(oct))])
    .ask(
        "compare",
        "How did gpt-4o spend last week compare with the week before?",
        vec![of(last_week, Model, "gpt-4o"), of(week_before, Model, "gpt-4o")],
    );
    b.ask("explain_change", "Why did costs jump on the 12th?", explain(SPIKE))
        .ask("explain_change", "Why did our costs spike on 2026-11-12?", explain(SPIKE))
        .ask("explain_change", "Why did spend spike?", explain(data.peak_day()))
        .ask("explain_change", "What caused the cost increase on November 12?", explain(SPIKE));
    let last_7 = vec![money(data.cost(Period::LAST_7_DAYS))];
    b.ask("trend", "How is our spend trending?", last_7.clone())
        .ask("trend", "Is our AI spend going up or down?", last_7.clone())
        .ask("trend", "What's the trend in our costs lately?", last_7);
    let rate = vec![money(run_rate(data))];
    b.ask("forecast", "Forecast next month", rate.clone())
        .ask("forecast", "What will we spend per month at this pace?", rate.clone())
        .ask("forecast", "What's our projected monthly spend?", rate);
    for (text, dollars) in BUDGETS {
        b.ask("budget", text, budget(data, dollars * 1_000_000));
    }

    // What to do about it.
    b.ask("what_if", "What would support-bot cost on gpt-4o-mini instead?", vec![money(what_if_mini(data, "support-bot"))])
        .ask("what_if", "What if we moved search to gpt-4o-mini?", vec![money(what_if_mini(data, "search"))])
        .ask(
            "what_if",
            "How much would code-review cost if it ran on gpt-4o-mini?",
            vec![money(what_if_mini(data, "code-review"))],
        )
        .ask("what_if", "What if doc-qa used gpt-4o-mini?", vec![money(what_if_mini(data, "doc-qa"))]);
    b.ask("savings_target", "Give me three ways to cut 30%", vec![money(savings_target(data, 30))])
        .ask("savings_target", "How can we reduce spend by 25%?", vec![money(savings_target(data, 25))])
        .ask("savings_target", "We need to cut our AI bill by 10%; where do we start?", vec![money(savings_target(data, 10))]);
    let spike = vec![date(SPIKE)];
    b.ask("anomalies", "Were there any unusual days?", spike.clone())
        .ask("anomalies", "Did anything look anomalous in our spend?", spike.clone())
        .ask("anomalies", "Any cost spikes I should know about?", spike);
    b.ask("not_found", "How much did we spend on gpt-9-turbo?", vec!["gpt-9-turbo".into()])
        .ask("not_found", "What did suport-bot cost?", vec!["suport-bot".into(), "support-bot".into()])
        .ask("not_found", "How much did the project zephyr cost last month?", vec!["zephyr".into()])
        .ask("not_found", "What did serach cost in October?", vec!["serach".into(), "search".into()]);

    // Follow-ups, each read against the question just before it.
    b.ask("top", "Which feature costs the most?", vec![nth(data, all, Feature, 0, by_cost)])
        .then("and the second one?", vec![nth(data, all, Feature, 1, by_cost)]);
    b.ask("total_filtered", "How much did we spend on gpt-4o in October?", filtered(oct, Model, "gpt-4o"))
        .then("and in September?", filtered(sep, Model, "gpt-4o"));
    b.ask("total_filtered", "How much did support-bot cost last week?", filtered(last_week, Feature, "support-bot"))
        .then("what about search?", filtered(last_week, Feature, "search"));
    b.ask("total", "What was our spend in October?", total(oct))
        .then("how much of that was on gpt-4o?", filtered(oct, Model, "gpt-4o"));
    b.ask("top", "What's our most expensive model?", vec![nth(data, all, Model, 0, by_cost)])
        .then("and the third?", vec![nth(data, all, Model, 2, by_cost)]);
    b.ask(
        "compare",
        "What did we spend last week versus the week before?",
        vec![money(data.cost(last_week)), money(data.cost(week_before))],
    )
    .then("and the week before that?", total(Period::WEEK_BEFORE_THAT));
    b.ask("total_filtered", "What did staging cost in October?", filtered(oct, Environment, "staging"))
        .then("and production?", filtered(oct, Environment, "production"));
    b.ask("requests", "How many requests did search make in October?", requests(oct, Some((Feature, "search"))))
        .then("and code-review?", requests(oct, Some((Feature, "code-review"))));
    b.ask("total_filtered", "What did the atlas project cost last week?", filtered(last_week, Project, "atlas"))
        .then("and the week before?", filtered(week_before, Project, "atlas"));
    b.ask("top", "Which API key spent the most?", vec![nth(data, all, ApiKey, 0, by_cost)])
        .then("how much did it spend?", filtered(all, ApiKey, data.ranked_by(all, ApiKey, by_cost)[0]));
    b.ask("total", "What did we spend yesterday?", total(yesterday)).then("and the day before?", total(Period::day(LAST - 1)));
    b.ask("cost_per_request", "What does a request on gpt-4o cost us?", per_request(all, Some((Model, "gpt-4o")), 1.0))
        .then("and on gpt-4.1?", per_request(all, Some((Model, "gpt-4.1")), 1.0));
    b.ask("share", "What share of spend went to support-bot?", share_of(all, Feature, "support-bot"))
        .then("and search?", share_of(all, Feature, "search"));
    b.ask("top", "Which end user costs the most?", vec![nth(data, all, User, 0, by_cost)])
        .then("and the least?", vec![last(data, all, User, by_cost)]);
    b.ask("total_filtered", "How much did we spend on Anthropic last month?", filtered(oct, Provider, "anthropic"))
        .then("and OpenAI?", filtered(oct, Provider, "openai"));
    b.ask("total_filtered", "What did code-review cost in September?", filtered(sep, Feature, "code-review"))
        .then("and in October?", filtered(oct, Feature, "code-review"));
    b.ask("tokens", "How many output tokens did we use last month?", vec![count(data.agg(oct, |_| true).output)])
        .then("and input tokens?", vec![count(data.agg(oct, |_| true).input)]);
    b.ask("top", "What are our top 3 models by spend?", (0..3).map(|i| nth(data, all, Model, i, by_cost)).collect())
        .then("how much did the first one cost?", filtered(all, Model, data.ranked_by(all, Model, by_cost)[0]));
    b.ask("average_per_day", "What's our average spend per day in October?", vec![per_day(data, oct, |_| true)])
        .then("and in September?", vec![per_day(data, sep, |_| true)]);
    b.ask("total_filtered", "How much did the staging environment cost last week?", filtered(last_week, Environment, "staging"))
        .then("and over all the data?", filtered(all, Environment, "staging"));
    b.ask("what_if", "What would summarizer cost on gpt-4o-mini?", vec![money(what_if_mini(data, "summarizer"))])
        .then("and support-bot?", vec![money(what_if_mini(data, "support-bot"))]);
    let top_project = data.ranked_by(all, Project, by_cost)[0];
    let top_feature_there = data
        .groups(all, Feature)
        .into_iter()
        .max_by_key(|(f, _)| data.agg(all, |r| r.project == top_project && r.feature == *f).cost)
        .map(|(f, _)| f.to_owned())
        .expect("features");
    b.ask("top", "Which project costs the most?", vec![top_project.to_owned()])
        .then("which feature drives most of it?", vec![top_feature_there]);
    b.ask("total_filtered", "How much did gpt-4.1 cost yesterday?", filtered(yesterday, Model, "gpt-4.1"))
        .then("and last week?", filtered(last_week, Model, "gpt-4.1"));

    outside(&mut b, data);
    b.questions
}

/// One question of `questions/outside.json`: written by someone who had not read the parser,
/// with the meaning its author intended.
#[derive(serde::Deserialize)]
struct Outside {
    text: String,
    kind: String,
    from: String,
    to: String,
    filter: Option<OutsideFilter>,
    group_by: Option<String>,
}

#[derive(serde::Deserialize)]
struct OutsideFilter {
    dim: String,
    value: String,
}

fn dim_named(name: &str) -> Dim {
    match name {
        "model" => Dim::Model,
        "provider" => Dim::Provider,
        "feature" => Dim::Feature,
        "project" => Dim::Project,
        "environment" => Dim::Environment,
        "api_key" => Dim::ApiKey,
        "user" => Dim::User,
        other => panic!("outside.json: no dimension {other:?}"),
    }
}

/// The questions written outside the parser, under their own type, each expecting what
/// its intended meaning computes to: the figure, and the name it is about.
fn outside(b: &mut Bank, data: &Data) {
    let questions: Vec<Outside> = serde_json::from_str(include_str!("../questions/outside.json")).expect("outside.json");
    for q in questions {
        let p = Period(crate::data::day(&q.from), crate::data::day(&q.to));
        let filter = q.filter.as_ref().map(|f| (dim_named(&f.dim), f.value.as_str()));
        let within = |r: &crate::data::Row| filter.is_none_or(|(d, v)| d.of(r) == v);
        let a = data.agg(p, within);
        let mut expect = match q.kind.as_str() {
            "total" => vec![money(a.cost)],
            "requests" => vec![count(a.requests)],
            "share" => vec![share(a.cost, data.cost(p))],
            "cost_per_request" => vec![fine(a.cost as f64 / a.requests as f64)],
            "average_per_day" => vec![per_day(data, p, within)],
            "cost_per_user" => vec![fine(data.cost(p) as f64 / data.users(p) as f64)],
            "top" | "bottom" => {
                let dim = dim_named(q.group_by.as_deref().expect("a ranking names its dimension"));
                let mut ranked: Vec<(&str, i64)> = data
                    .groups(p, dim)
                    .into_iter()
                    .map(|(name, _)| (name, data.agg(p, |r| within(r) && dim.of(r) == name).cost))
                    .filter(|(_, cost)| *cost > 0)
                    .collect();
                ranked.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
                let (name, cost) = if q.kind == "top" { ranked[0] } else { ranked[ranked.len() - 1] };
                vec![name.to_owned(), money(cost)]
            }
            other => panic!("outside.json: no kind {other:?}"),
        };
        expect.extend(filter.map(|(_, v)| v.to_owned()));
        b.ask("outside_written", &q.text, expect);
    }
}

/// Budget questions and their budgets in dollars: reached already, reached this month, and
/// not reached this month.
const BUDGETS: [(&str, i64); 6] = [
    ("When will we run out of a $2,000 budget this month?", 2_000),
    ("We have a budget of $3,500 for November; when do we hit it?", 3_500),
    ("When will we run out of a $5,000 budget this month?", 5_000),
    ("We have a budget of $6,000 for November; when do we hit it?", 6_000),
    ("When will we run out of a $9,000 budget this month?", 9_000),
    ("Our November budget is $12,000. When will we hit it?", 12_000),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budgets_cover_each_case() {
        let data = Data::generate();
        let expectations: Vec<Vec<String>> = BUDGETS.iter().map(|(_, n)| budget(&data, n * 1_000_000)).collect();
        let already = expectations.iter().filter(|e| e[0] == "already").count();
        let dated = expectations.iter().filter(|e| e.len() == 1 && e[0].starts_with("2026-")).count();
        let projected = expectations.iter().filter(|e| e[0].starts_with('$')).count();
        assert!(already >= 1 && dated >= 1 && projected >= 1, "{expectations:?}");
    }

    #[test]
    fn the_bank_is_large_and_varied() {
        let data = Data::generate();
        let questions = bank(&data);
        assert!(questions.len() >= 150, "{}", questions.len());
        assert!(questions.iter().filter(|q| q.follow_up).count() >= 20);
        assert!(!questions[0].follow_up, "a follow-up follows a lead");
        for kind in KINDS {
            assert!(questions.iter().any(|q| q.kind == kind), "{kind}");
        }
        for q in &questions {
            assert!(!q.expect.is_empty() && q.expect.iter().all(|e| !e.is_empty()), "{q:?}");
        }
    }
}

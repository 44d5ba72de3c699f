//! The generated usage the bank is asked about: 2026-09-01 through 2026-11-18, one row per
//! stream (a feature on a model, in a project and an environment, through an API key, for
//! an end user) and day, every row with an explicit `cost_usd`. Deterministic: a fixed seed
//! and a small xorshift, no randomness crate.
//!
//! The figures the answers are checked against are plain sums over these rows
//! ([`Data::agg`] and friends): never the engine's analysis.
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Days are numbered from the first day of the data: day 0 is 2026-09-01 (a Tuesday).
pub type Day = u32;

/// The last day in the data: 2026-11-18, a Wednesday.
pub const LAST: Day = 78;
/// The day of the spike: 2026-11-12, when `support-bot` on `gpt-4.1` costs about 5× its usual.
pub const SPIKE: Day = 72;

/// An inclusive range of days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period(pub Day, pub Day);

impl Period {
    pub const ALL: Period = Period(0, LAST);
    pub const SEPTEMBER: Period = Period(0, 29);
    pub const OCTOBER: Period = Period(30, 60);
    /// November so far (2026-11-01 through the last day).
    pub const NOVEMBER: Period = Period(61, LAST);
    pub const YESTERDAY: Period = Period(LAST, LAST);
    /// Monday–Sunday before the week of the last day: 2026-11-09..2026-11-15.
    pub const LAST_WEEK: Period = Period(69, 75);
    /// 2026-11-02..2026-11-08.
    pub const WEEK_BEFORE: Period = Period(62, 68);
    /// 2026-10-26..2026-11-01.
    pub const WEEK_BEFORE_THAT: Period = Period(55, 61);
    /// The last 7 days, L-6..L.
    pub const LAST_7_DAYS: Period = Period(LAST - 6, LAST);

    pub fn day(d: Day) -> Period {
        Period(d, d)
    }

    pub fn contains(self, d: Day) -> bool {
        self.0 <= d && d <= self.1
    }
}

/// `YYYY-MM-DD` of day `d` (2026 only: September to December).
pub fn date(d: Day) -> String {
    let (month, first, len) = month_of(d);
    debug_assert!(d - first < len);
    format!("2026-{month:02}-{:02}", d - first + 1)
}

/// The day of `YYYY-MM-DD` (September to December 2026).
pub fn day(date: &str) -> Day {
    let month: u32 = date[5..7].parse().expect("a month");
    let dom: u32 = date[8..10].parse().expect("a day of the month");
    let first = match month {
        9 => 0,
        10 => 30,
        11 => 61,
        12 => 91,
        _ => panic!("{date}: outside the data's months"),
    };
    first + dom - 1
}

fn month_of(d: Day) -> (u32, Day, Day) {
    match d {
        0..=29 => (9, 0, 30),
        30..=60 => (10, 30, 31),
        61..=90 => (11, 61, 30),
        _ => (12, 91, 31),
    }
}

/// Monday = 0 … Sunday = 6.
pub fn weekday(d: Day) -> u32 {
    (d + 1) % 7
}

/// List prices in micro-dollars per 1M tokens: input, cached input, output.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    pub input: i128,
    pub cached: i128,
    pub output: i128,
}

/// A model as the rows name it, its catalog name and its provider.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// As the CSV writes it (Anthropic's with their dated snapshot).
    pub billed: &'static str,
    /// As the catalog names it: what answers may print, and a part of `billed`.
    pub name: &'static str,
    pub provider: &'static str,
    pub rates: Rates,
}

const fn model(billed: &'static str, name: &'static str, provider: &'static str, i: i128, c: i128, o: i128) -> Model {
    Model { billed, name, provider, rates: Rates { input: i, cached: c, output: o } }
}

pub const GPT_4O: Model = model("gpt-4o", "gpt-4o", "openai", 2_500_000, 1_250_000, 10_000_000);
pub const GPT_4O_MINI: Model = model("gpt-4o-mini", "gpt-4o-mini", "openai", 150_000, 75_000, 600_000);
pub const GPT_41: Model = model("gpt-4.1", "gpt-4.1", "openai", 2_000_000, 500_000, 8_000_000);
pub const SONNET: Model = model("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", "anthropic", 3_000_000, 300_000, 15_000_000);
pub const HAIKU: Model = model("claude-3-5-haiku-20241022", "claude-3-5-haiku", "anthropic", 800_000, 80_000, 4_000_000);

/// One stream of usage: a row a day.
struct Stream {
    feature: &'static str,
    model: Model,
    project: &'static str,
    environment: &'static str,
    api_key: &'static str,
    user: &'static str,
    /// Usual cost of a weekday early in the data, in cents.
    cents_per_day: i64,
    input_per_request: u64,
    output_per_request: u64,
    cached_percent: u64,
}

#[rustfmt::skip]
const STREAMS: [Stream; 14] = [
    s("support-bot", GPT_41, "atlas", "production", "key-prod-main", "alice", 4_000, 1_800, 350, 0),
    s("support-bot", GPT_4O_MINI, "atlas", "production", "key-prod-main", "bob", 600, 1_500, 300, 0),
    s("support-bot", GPT_41, "atlas", "staging", "key-staging", "", 300, 1_800, 350, 0),
    s("search", GPT_4O, "beacon", "production", "key-prod-main", "carol", 3_000, 2_400, 220, 30),
    s("search", GPT_4O_MINI, "beacon", "production", "key-prod-batch", "dave", 700, 4_000, 200, 20),
    s("search", GPT_4O, "beacon", "staging", "key-staging", "", 400, 2_400, 220, 30),
    s("code-review", SONNET, "comet", "production", "key-prod-main", "erin", 2_200, 6_000, 900, 40),
    s("code-review", SONNET, "comet", "staging", "key-staging", "frank", 500, 6_000, 900, 40),
    s("summarizer", GPT_4O, "atlas", "production", "key-prod-batch", "grace", 1_200, 4_000, 500, 10),
    s("summarizer", HAIKU, "atlas", "production", "key-prod-batch", "", 400, 4_000, 500, 10),
    s("doc-qa", GPT_41, "comet", "production", "key-prod-main", "heidi", 900, 3_000, 400, 25),
    s("doc-qa", HAIKU, "beacon", "production", "key-prod-batch", "alice", 300, 2_000, 250, 25),
    s("classifier", GPT_4O_MINI, "beacon", "production", "key-prod-batch", "bob", 200, 300, 10, 0),
    s("classifier", HAIKU, "comet", "staging", "key-staging", "carol", 150, 600, 20, 0),
];

#[allow(clippy::too_many_arguments)]
const fn s(
    feature: &'static str,
    model: Model,
    project: &'static str,
    environment: &'static str,
    api_key: &'static str,
    user: &'static str,
    cents_per_day: i64,
    input_per_request: u64,
    output_per_request: u64,
    cached_percent: u64,
) -> Stream {
    Stream {
        feature,
        model,
        project,
        environment,
        api_key,
        user,
        cents_per_day,
        input_per_request,
        output_per_request,
        cached_percent,
    }
}

/// One usage row.
#[derive(Clone, Debug)]
pub struct Row {
    pub day: Day,
    pub model: Model,
    pub feature: &'static str,
    pub project: &'static str,
    pub user: &'static str,
    pub api_key: &'static str,
    pub environment: &'static str,
    pub requests: u64,
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    /// Micro-dollars.
    pub cost: i64,
}

/// A dimension rows are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Model,
    Provider,
    Feature,
    Project,
    User,
    ApiKey,
    Environment,
}

impl Dim {
    pub const ALL: [Dim; 7] = [Dim::Model, Dim::Provider, Dim::Feature, Dim::Project, Dim::User, Dim::ApiKey, Dim::Environment];

    pub fn of(self, r: &Row) -> &'static str {
        match self {
            Dim::Model => r.model.name,
            Dim::Provider => r.model.provider,
            Dim::Feature => r.feature,
            Dim::Project => r.project,
            Dim::User => r.user,
            Dim::ApiKey => r.api_key,
            Dim::Environment => r.environment,
        }
    }
}

/// Sums over some rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Agg {
    /// Micro-dollars.
    pub cost: i64,
    pub requests: u64,
    pub input: u64,
    pub cached: u64,
    pub output: u64,
}

impl Agg {
    fn add(&mut self, r: &Row) {
        self.cost += r.cost;
        self.requests += r.requests;
        self.input += r.input;
        self.cached += r.cached;
        self.output += r.output;
    }
}

/// The rows, and the sums the expectations are made of.
pub struct Data {
    pub rows: Vec<Row>,
}

/// xorshift64*: enough for noise.
struct Rng(u64);

impl Rng {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Micro-dollars of tokens at `rates`, rounded half up.
pub fn list_cost(rates: Rates, input: u64, cached: u64, output: u64) -> i64 {
    let numerator = (input - cached) as i128 * rates.input + cached as i128 * rates.cached + output as i128 * rates.output;
    ((numerator + 500_000) / 1_000_000) as i64
}

impl Data {
    /// The dataset of the bank.
    pub fn generate() -> Data {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut rows = Vec::new();
        for day in 0..=LAST {
            let weekend = if weekday(day) >= 5 { 0.7 } else { 1.0 };
            let growth = 1.0 + 0.004 * day as f64;
            for s in &STREAMS {
                let noise = 0.88 + 0.24 * rng.unit();
                let target = s.cents_per_day as f64 * 10_000.0 * weekend * growth * noise;
                let rates = s.model.rates;
                let per_request = list_cost(
                    rates,
                    s.input_per_request * 1000,
                    s.input_per_request * s.cached_percent * 10,
                    s.output_per_request * 1000,
                ) as f64
                    / 1000.0;
                let mut requests = ((target / per_request).round() as u64).max(1);
                if day == SPIKE && s.feature == "support-bot" && s.model.name == "gpt-4.1" && s.environment == "production" {
                    requests *= 5;
                }
                let input = (requests as f64 * s.input_per_request as f64 * (0.95 + 0.1 * rng.unit())).round() as u64;
                let cached = input * s.cached_percent / 100;
                let output = (requests as f64 * s.output_per_request as f64 * (0.95 + 0.1 * rng.unit())).round() as u64;
                rows.push(Row {
                    day,
                    model: s.model,
                    feature: s.feature,
                    project: s.project,
                    user: s.user,
                    api_key: s.api_key,
                    environment: s.environment,
                    requests,
                    input,
                    cached,
                    output,
                    cost: list_cost(rates, input, cached, output),
                });
            }
        }
        Data { rows }
    }

    /// The rows as the generic CSV import reads them.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "date,provider,model,feature,project,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd,user,api_key,environment,request_id\n",
        );
        for (i, r) in self.rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}.{:06},{},{},{},eval-{i}",
                date(r.day),
                r.model.provider,
                r.model.billed,
                r.feature,
                r.project,
                r.requests,
                r.input,
                r.cached,
                r.output,
                r.cost / 1_000_000,
                r.cost % 1_000_000,
                r.user,
                r.api_key,
                r.environment,
            );
        }
        out
    }

    /// Sums over the rows of `period` that `keep` keeps.
    pub fn agg(&self, period: Period, keep: impl Fn(&Row) -> bool) -> Agg {
        let mut agg = Agg::default();
        for r in self.rows.iter().filter(|r| period.contains(r.day) && keep(r)) {
            agg.add(r);
        }
        agg
    }

    /// The cost of the rows of `period` whose `dim` is `value`.
    pub fn cost_of(&self, period: Period, dim: Dim, value: &str) -> i64 {
        self.agg(period, |r| dim.of(r) == value).cost
    }

    /// The cost of every row of `period`.
    pub fn cost(&self, period: Period) -> i64 {
        self.agg(period, |_| true).cost
    }

    /// The groups of `dim` in `period` (untagged rows left out), by cost, highest first.
    pub fn groups(&self, period: Period, dim: Dim) -> Vec<(&'static str, Agg)> {
        let mut groups: Vec<(&'static str, Agg)> = Vec::new();
        for r in self.rows.iter().filter(|r| period.contains(r.day)) {
            let key = dim.of(r);
            if key.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, agg)) => agg.add(r),
                None => {
                    let mut agg = Agg::default();
                    agg.add(r);
                    groups.push((key, agg));
                }
            }
        }
        groups.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(b.0)));
        groups
    }

    /// The groups of `dim` in `period` ordered by `score`, highest first.
    pub fn ranked_by(&self, period: Period, dim: Dim, score: impl Fn(&Agg) -> f64) -> Vec<&'static str> {
        let mut groups = self.groups(period, dim);
        groups.sort_by(|a, b| score(&b.1).total_cmp(&score(&a.1)));
        groups.into_iter().map(|(k, _)| k).collect()
    }

    /// Days of `period` with rows that `keep` keeps.
    pub fn days_with_data(&self, period: Period, keep: impl Fn(&Row) -> bool) -> u32 {
        self.rows.iter().filter(|r| period.contains(r.day) && keep(r)).map(|r| r.day).collect::<BTreeSet<_>>().len() as u32
    }

    /// Distinct non-empty end users of `period`.
    pub fn users(&self, period: Period) -> u32 {
        self.rows.iter().filter(|r| period.contains(r.day) && !r.user.is_empty()).map(|r| r.user).collect::<BTreeSet<_>>().len()
            as u32
    }

    /// The day of the highest cost.
    pub fn peak_day(&self) -> Day {
        (0..=LAST).max_by_key(|&d| self.cost(Period::day(d))).expect("days")
    }

    /// The feature whose cost on `day` rose most (in dollars) above its own average over the
    /// 7 days before, taken per feature × model.
    pub fn driver_of(&self, day: Day) -> &'static str {
        let mut best: Option<(&'static str, f64)> = None;
        let pairs: BTreeSet<(&'static str, &'static str)> = self.rows.iter().map(|r| (r.feature, r.model.name)).collect();
        for (feature, model) in pairs {
            let keep = |r: &Row| r.feature == feature && r.model.name == model;
            let on = self.agg(Period::day(day), keep).cost as f64;
            let before = self.agg(Period(day.saturating_sub(7), day - 1), keep).cost as f64 / 7.0;
            let rise = on - before;
            if best.is_none_or(|(_, b)| rise > b) {
                best = Some((feature, rise));
            }
        }
        best.expect("rows").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(date(0), "2026-09-01");
        assert_eq!(date(29), "2026-09-30");
        assert_eq!(date(30), "2026-10-01");
        assert_eq!(date(LAST), "2026-11-18");
        assert_eq!(date(SPIKE), "2026-11-12");
        assert_eq!(weekday(LAST), 2, "a Wednesday");
        assert_eq!(weekday(Period::LAST_WEEK.0), 0, "a Monday");
        assert_eq!(date(Period::LAST_WEEK.1), "2026-11-15");
        assert_eq!(date(Period::WEEK_BEFORE.0), "2026-11-02");
        for d in 0..=LAST {
            assert_eq!(day(&date(d)), d);
        }
    }

    #[test]
    fn the_spike_makes_the_highest_day() {
        let data = Data::generate();
        assert_eq!(data.peak_day(), SPIKE);
        let spike = data.cost(Period::day(SPIKE));
        let next = (0..=LAST).filter(|&d| d != SPIKE).map(|d| data.cost(Period::day(d))).max().unwrap();
        assert!(spike as f64 > next as f64 * 1.4, "{spike} vs {next}");
        assert_eq!(data.driver_of(SPIKE), "support-bot");
        assert!(data.rows.iter().filter(|r| r.feature == "support-bot").all(|r| r.cached == 0));
    }

    /// No near-ties among the first three of any dimension, over the periods the bank ranks.
    #[test]
    fn rankings_are_unambiguous() {
        let data = Data::generate();
        for period in [Period::ALL, Period::OCTOBER, Period::LAST_WEEK, Period::SEPTEMBER] {
            for dim in Dim::ALL {
                for score in [|a: &Agg| a.cost as f64, |a: &Agg| a.requests as f64] {
                    let mut values: Vec<f64> = data.groups(period, dim).iter().map(|(_, a)| score(a)).collect();
                    values.sort_by(|a, b| b.total_cmp(a));
                    for pair in values.windows(2).take(3) {
                        assert!(pair[0] > pair[1] * 1.05, "{period:?} {dim:?}: {values:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_row_has_its_cost_in_the_csv() {
        let data = Data::generate();
        let csv = data.csv();
        assert_eq!(csv.lines().count(), data.rows.len() + 1);
        let total: i64 = csv
            .lines()
            .skip(1)
            .map(|l| {
                let (dollars, micros) = l.split(',').nth(9).unwrap().split_once('.').unwrap();
                dollars.parse::<i64>().unwrap() * 1_000_000 + micros.parse::<i64>().unwrap()
            })
            .sum();
        assert_eq!(total, data.cost(Period::ALL));
    }
}

//! Unusual days and the biggest drivers of spend.
//!
//! Anomalies use the median and the median absolute deviation (MAD) of each model's and
//! each feature's daily spend: robust to the spikes they look for, unlike a mean and a
//! standard deviation, which a single spike drags along. A day is flagged when its
//! modified z-score, 0.6745 × (cost − median) ÷ MAD, exceeds 3.5 (Iglewicz and Hoaglin's
//! threshold) and it is at least $1 above the median. With MAD = 0 (a flat series), a
//! day at least 50 % and $1 above the median is flagged. Only upward spikes count, and at
//! least 7 days of data are needed.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::model_key;
use crate::date;
use crate::money::Money;
use crate::prices::PriceBook;
use crate::records::{cost_of, UsageRecord};

const MIN_DAYS: usize = 7;
/// 3.5 in thousandths, compared with the z-score in thousandths.
const Z_THRESHOLD_MILLI: i128 = 3_500;
const MIN_EXCESS: Money = Money(1_000_000);
const MAX_ANOMALIES: usize = 5;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// `model` or `feature`.
    pub dimension: &'static str,
    pub key: String,
    pub day: String,
    pub cost: Money,
    /// The median daily spend of this model or feature.
    pub median: Money,
    /// `cost − median`.
    pub excess: Money,
    /// The modified z-score in thousandths (None for a flat series).
    pub z_milli: Option<i64>,
}

/// The largest spikes, biggest excess first (at most five), each record priced with `prices`.
pub fn detect_anomalies(prices: &PriceBook, records: &[UsageRecord]) -> Vec<Anomaly> {
    let days = covered_days(records.iter().map(|r| r.day.as_str()));
    if days.len() < MIN_DAYS {
        return Vec::new();
    }
    let mut found = Vec::new();
    let by_model = |r: &UsageRecord| model_key(prices, r);
    for (dimension, key_of) in
        [("model", &by_model as &dyn Fn(&UsageRecord) -> String), ("feature", &|r: &UsageRecord| r.feature.clone())]
    {
        let mut series: BTreeMap<String, BTreeMap<&str, Money>> = BTreeMap::new();
        for r in records {
            *series.entry(key_of(r)).or_default().entry(r.day.as_str()).or_default() += cost_of(prices, r);
        }
        for (key, by_day) in series {
            let daily: Vec<(&str, Money)> =
                days.iter().map(|d| (d.as_str(), by_day.get(d.as_str()).copied().unwrap_or_default())).collect();
            found.extend(spikes(&daily).into_iter().map(|(day, cost, median, z_milli)| Anomaly {
                dimension,
                key: key.clone(),
                day: day.to_owned(),
                cost,
                median,
                excess: cost - median,
                z_milli,
            }));
        }
    }
    found.sort_by(|a, b| b.excess.cmp(&a.excess).then_with(|| a.day.cmp(&b.day)).then_with(|| a.key.cmp(&b.key)));
    found.truncate(MAX_ANOMALIES);
    found
}

/// Every calendar day from the first to the last of `days` when they span at most
/// `limits::MAX_FILLED_DAYS`; else (and for unparseable days) the days as they are.
pub(crate) fn covered_days<'a>(days: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut days: Vec<&str> = days.collect();
    days.sort_unstable();
    days.dedup();
    let parsed: Option<Vec<i64>> = days.iter().map(|d| date::parse_day(d)).collect();
    match parsed.as_deref() {
        Some([first, .., last]) if last - first < crate::limits::MAX_FILLED_DAYS => {
            (*first..=*last).map(date::format_day).collect()
        }
        _ => days.into_iter().map(str::to_owned).collect(),
    }
}

fn median(sorted: &[i64]) -> i64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        ((i128::from(sorted[n / 2 - 1]) + i128::from(sorted[n / 2])) / 2) as i64
    }
}

type Spike<'a> = (&'a str, Money, Money, Option<i64>);

fn spikes<'a>(daily: &[(&'a str, Money)]) -> Vec<Spike<'a>> {
    let mut values: Vec<i64> = daily.iter().map(|(_, c)| c.0).collect();
    values.sort_unstable();
    let m = median(&values);
    let mut deviations: Vec<i64> = values.iter().map(|v| v.saturating_sub(m).saturating_abs()).collect();
    deviations.sort_unstable();
    let mad = median(&deviations);
    daily
        .iter()
        .filter(|(_, cost)| cost.0 - m >= MIN_EXCESS.0)
        .filter_map(|&(day, cost)| {
            let excess = i128::from(cost.0 - m);
            if mad == 0 {
                // Flat series: half again the usual spend is a spike.
                return (2 * i128::from(cost.0) >= 3 * i128::from(m)).then_some((day, cost, Money(m), None));
            }
            let z_milli = 6745 * excess / i128::from(mad) / 10;
            (z_milli > Z_THRESHOLD_MILLI).then_some((day, cost, Money(m), Some(z_milli as i64)))
        })
        .collect()
}

/// Spend of one feature on one model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Driver {
    pub feature: String,
    pub model: String,
    pub cost: Money,
    pub requests: u64,
    /// Share of the total, in basis points.
    pub share_bp: u32,
}

/// The `n` largest feature × model combinations, each record priced with `prices`.
pub fn top_drivers(prices: &PriceBook, records: &[UsageRecord], n: usize) -> Vec<Driver> {
    let mut groups: BTreeMap<(String, String), (Money, u64)> = BTreeMap::new();
    let mut total = Money::ZERO;
    for r in records {
        let cost = cost_of(prices, r);
        total += cost;
        let g = groups.entry((r.feature.clone(), model_key(prices, r))).or_default();
        g.0 += cost;
        g.1 += r.requests;
    }
    let mut drivers: Vec<Driver> = groups
        .into_iter()
        .map(|((feature, model), (cost, requests))| Driver { feature, model, cost, requests, share_bp: cost.share_bp(total) })
        .collect();
    drivers.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.feature.cmp(&b.feature)));
    drivers.truncate(n);
    drivers
}

/// The last 7 days against the 7 before them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeekOverWeek {
    pub last_week: Money,
    pub previous_week: Money,
    /// Change in basis points (None when the previous week cost nothing).
    pub change_bp: Option<i64>,
}

/// Needs 14 covered days; each record priced with `prices`.
pub fn week_over_week(prices: &PriceBook, records: &[UsageRecord]) -> Option<WeekOverWeek> {
    let days = covered_days(records.iter().map(|r| r.day.as_str()));
    if days.len() < 14 {
        return None;
    }
    let mut by_day: BTreeMap<&str, Money> = BTreeMap::new();
    for r in records {
        *by_day.entry(r.day.as_str()).or_default() += cost_of(prices, r);
    }
    let sum = |range: &[String]| range.iter().map(|d| by_day.get(d.as_str()).copied().unwrap_or_default()).sum::<Money>();
    let n = days.len();
    let (last_week, previous_week) = (sum(&days[n - 7..]), sum(&days[n - 14..n - 7]));
    let change_bp = (last_week - previous_week).ratio_bp(previous_week);
    Some(WeekOverWeek { last_week, previous_week, change_bp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prices::PriceBook;

    fn day(d: u32, feature: &str, model: &str, cost_usd: i64) -> UsageRecord {
        UsageRecord {
            day: format!("2026-11-{d:02}"),
            provider: "openai".into(),
            model: model.into(),
            feature: feature.into(),
            project: "p".into(),
            requests: 10,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            cost: Some(Money(cost_usd * 1_000_000)),
            ..Default::default()
        }
    }

    #[test]
    fn a_spike_is_found_with_its_day_and_size() {
        // Chat costs $100 ± 5 a day; on the 10th it costs $400.
        let mut records: Vec<UsageRecord> =
            (1..=20).map(|d| day(d, "chat", "gpt-4o", if d == 10 { 400 } else { 100 + (d as i64 % 3) * 5 - 5 })).collect();
        records.extend((1..=20).map(|d| day(d, "search", "gpt-4o-mini", 20)));
        let found = detect_anomalies(PriceBook::catalog(), &records);
        assert!(!found.is_empty());
        let top = &found[0];
        assert_eq!((top.day.as_str(), top.cost, top.median), ("2026-11-10", Money(400_000_000), Money(100_000_000)));
        assert_eq!(top.excess, Money(300_000_000));
        // Hand check: MAD of the chat series is $5, so z = 0.6745 × 300 / 5 = 40.47.
        assert!(found.iter().any(|a| a.dimension == "feature" && a.key == "chat" && a.z_milli == Some(40_470)));
        assert!(found.iter().all(|a| a.key != "search"), "a flat series without a spike has none");
    }

    #[test]
    fn no_anomaly_in_steady_or_short_series() {
        let steady: Vec<UsageRecord> = (1..=20).map(|d| day(d, "chat", "gpt-4o", 100 + (d as i64 % 4))).collect();
        assert!(detect_anomalies(PriceBook::catalog(), &steady).is_empty());
        let short: Vec<UsageRecord> = (1..=5).map(|d| day(d, "chat", "gpt-4o", if d == 3 { 900 } else { 10 })).collect();
        assert!(detect_anomalies(PriceBook::catalog(), &short).is_empty(), "fewer than 7 days");
    }

    /// One record of `feature` on model `m` per entry of `micros`, from the 1st on.
    fn series(feature: &str, micros: &[i64]) -> Vec<UsageRecord> {
        micros
            .iter()
            .enumerate()
            .map(|(i, &c)| UsageRecord { cost: Some(Money(c)), ..day(i as u32 + 1, feature, "m", 0) })
            .collect()
    }

    fn feature_anomalies(records: &[UsageRecord]) -> Vec<Anomaly> {
        detect_anomalies(PriceBook::catalog(), records).into_iter().filter(|a| a.dimension == "feature").collect()
    }

    #[test]
    fn seven_days_are_enough_to_find_a_spike() {
        let found = feature_anomalies(&series(
            "chat",
            &[10_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000, 40_000_000],
        ));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].day.as_str(), found[0].excess), ("2026-11-07", Money(30_000_000)));
        assert!(feature_anomalies(&series("chat", &[10_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000, 40_000_000]))
            .is_empty());
    }

    #[test]
    fn the_median_of_an_even_number_of_days_is_the_mean_of_the_middle_two() {
        // Sorted: 100, 100, 100, 102, 104, 104, 104, 500 dollars: the median is 103.
        // Deviations 1, 1, 1, 1, 3, 3, 3, 397: the MAD is 2, so z = 0.6745 × 397 ÷ 2.
        let usd = [100, 104, 100, 102, 104, 100, 104, 500];
        let found = feature_anomalies(&series("chat", &usd.map(|d| d * 1_000_000)));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].day.as_str(), found[0].median), ("2026-11-08", Money(103_000_000)));
        assert_eq!(found[0].excess, Money(397_000_000));
        assert_eq!(found[0].z_milli, Some(133_888));
    }

    #[test]
    fn the_median_of_an_odd_number_of_days_is_the_middle_one() {
        // Sorted: 1, 2, 3, 4, 5, 6, 100 dollars: the median is 4, the MAD 2.
        let found = feature_anomalies(&series("chat", &[3, 1, 4, 2, 6, 5, 100].map(|d| d * 1_000_000)));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].median, found[0].excess), (Money(4_000_000), Money(96_000_000)));
    }

    #[test]
    fn a_rise_of_less_than_a_dollar_is_no_spike_however_unusual() {
        // $10 a day give or take a cent, then $10.50: z = 0.6745 × 0.50 ÷ 0.01 = 33.7.
        let (m, d) = (10_000_000, 10_000);
        assert!(feature_anomalies(&series("chat", &[m - d, m, m + d, m - d, m, m + d, m + 500_000])).is_empty());
    }

    #[test]
    fn a_z_score_of_exactly_three_and_a_half_is_not_a_spike() {
        // Median $10 and MAD d; a day e above the median scores 0.6745 × e ÷ d.
        let (m, d) = (10_000_000, 195_605); // d = 6745 × 29 micro-dollars
        let with_spike = |e: i64| series("chat", &[m - d, m, m + d, m - d, m, m + d, m + e]);
        let at_threshold = 1_015_000; // 35_000 × 29: z = 3.500
        assert!(feature_anomalies(&with_spike(at_threshold)).is_empty());
        let found = feature_anomalies(&with_spike(at_threshold + 290)); // z = 3.501
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].median, found[0].z_milli), (Money(m), Some(3_501)));
    }

    #[test]
    fn in_a_flat_series_a_day_half_again_and_a_dollar_above_the_median_is_a_spike() {
        // $2 a day, then $3: exactly $1 and exactly 50 % above.
        let found =
            feature_anomalies(&series("chat", &[2_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 3_000_000]));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].cost, found[0].median, found[0].z_milli), (Money(3_000_000), Money(2_000_000), None));
        // A cent less than a dollar above is not.
        assert!(feature_anomalies(&series(
            "chat",
            &[2_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 2_990_000]
        ))
        .is_empty());
        // A dollar above $10 is only 10 % more: not a spike.
        assert!(feature_anomalies(&series("chat", &[10_000_000; 6].iter().copied().chain([11_000_000]).collect::<Vec<_>>()))
            .is_empty());
    }

    #[test]
    fn days_without_spend_count_as_zero() {
        // Spend on the 1st and the 8th only: six days of nothing between them, so the
        // series is eight days with a median of $0 and both days stand out.
        let records = [day(1, "chat", "m", 5), day(8, "chat", "m", 9)];
        let found = feature_anomalies(&records);
        assert_eq!(
            found.iter().map(|a| (a.day.as_str(), a.median)).collect::<Vec<_>>(),
            [("2026-11-08", Money::ZERO), ("2026-11-01", Money::ZERO)]
        );
    }

    #[test]
    fn gaps_are_filled_only_up_to_the_longest_span() {
        let first = date::parse_day("2000-01-01").unwrap();
        let widest = crate::limits::MAX_FILLED_DAYS;
        let span = |last: i64| {
            let days = ["2000-01-01".to_owned(), date::format_day(first + last)];
            covered_days(days.iter().map(String::as_str))
        };
        assert_eq!(span(widest - 1).len() as i64, widest, "every day of the span");
        assert_eq!(span(widest), ["2000-01-01", "2010-01-08"], "only the days with data");
        assert_eq!(covered_days(["b", "a", "b"].into_iter()), ["a", "b"], "unparseable days are kept as they are");
    }

    #[test]
    fn at_most_five_anomalies_biggest_excess_first_then_by_day_and_key() {
        // Six features each spike once; "f0" and "f1" by the same amount on the same day.
        let mut records = Vec::new();
        for (i, spike) in [50, 50, 40, 30, 20, 10].iter().enumerate() {
            let feature = format!("f{i}");
            records.extend((1..=10).map(|d| day(d, &feature, &format!("m{i}"), if d == 10 - i as u32 { *spike } else { 1 })));
        }
        let found = detect_anomalies(PriceBook::catalog(), &records);
        let summary: Vec<(i64, &str, &str)> =
            found.iter().map(|a| (a.excess.0 / 1_000_000, a.day.as_str(), a.key.as_str())).collect();
        assert_eq!(
            summary,
            [
                (49, "2026-11-09", "f1"),
                (49, "2026-11-09", "m1"),
                (49, "2026-11-10", "f0"),
                (49, "2026-11-10", "m0"),
                (39, "2026-11-08", "f2")
            ]
        );
    }

    #[test]
    fn drivers_are_ranked_by_cost_and_carry_their_share() {
        let records = [
            day(1, "chat", "gpt-4o", 30),
            day(2, "chat", "gpt-4o", 30),
            day(1, "search", "gpt-4o-mini", 30),
            day(1, "summaries", "gpt-4o", 10),
        ];
        let drivers = top_drivers(PriceBook::catalog(), &records, 2);
        let summary: Vec<(&str, &str, i64, u64, u32)> = drivers
            .iter()
            .map(|d| (d.feature.as_str(), d.model.as_str(), d.cost.0 / 1_000_000, d.requests, d.share_bp))
            .collect();
        // $60 of $100 is 60 %; $30 is 30 %. Ties would go by feature name.
        assert_eq!(summary, [("chat", "gpt-4o", 60, 20, 6_000), ("search", "gpt-4o-mini", 30, 10, 3_000)]);
        let tied = top_drivers(PriceBook::catalog(), &[day(1, "b", "m", 5), day(1, "a", "m", 5)], 5);
        assert_eq!(tied.iter().map(|d| d.feature.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn drivers_of_free_usage_have_no_share() {
        let drivers = top_drivers(PriceBook::catalog(), &[day(1, "chat", "gpt-4o", 0)], 5);
        assert_eq!((drivers[0].cost, drivers[0].share_bp), (Money::ZERO, 0));
    }

    #[test]
    fn week_over_week_needs_two_weeks_and_a_paid_previous_week() {
        let thirteen: Vec<UsageRecord> = (1..=13).map(|d| day(d, "chat", "m", 1)).collect();
        assert_eq!(week_over_week(PriceBook::catalog(), &thirteen), None);
        // Nothing spent in the first week: a change from zero has no percentage.
        let mut records: Vec<UsageRecord> = (1..=14).map(|d| day(d, "chat", "m", if d > 7 { 2 } else { 0 })).collect();
        let w = week_over_week(PriceBook::catalog(), &records).unwrap();
        assert_eq!((w.last_week, w.previous_week, w.change_bp), (Money(14_000_000), Money::ZERO, None));
        // Three weeks: only the last two count, and a fall is negative.
        records = (1..=21).map(|d| day(d, "chat", "m", if d > 14 { 1 } else { 4 })).collect();
        let w = week_over_week(PriceBook::catalog(), &records).unwrap();
        assert_eq!((w.last_week, w.previous_week, w.change_bp), (Money(7_000_000), Money(28_000_000), Some(-7_500)));
    }

    #[test]
    fn drivers_and_week_over_week_add_up() {
        let mut records: Vec<UsageRecord> = (1..=14).map(|d| day(d, "chat", "gpt-4o", if d > 7 { 120 } else { 100 })).collect();
        records.extend((1..=14).map(|d| day(d, "search", "gpt-4o-mini", 10)));
        let drivers = top_drivers(PriceBook::catalog(), &records, 5);
        assert_eq!((drivers[0].feature.as_str(), drivers[0].cost), ("chat", Money(1_540_000_000)));
        assert_eq!(drivers.iter().map(|d| d.cost).sum::<Money>(), Money(1_680_000_000));
        let w = week_over_week(PriceBook::catalog(), &records).unwrap();
        assert_eq!((w.last_week, w.previous_week), (Money(910_000_000), Money(770_000_000)));
        assert_eq!(w.change_bp, Some(1_818)); // 140 / 770 = 18.18 %
    }
}

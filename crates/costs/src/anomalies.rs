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

/// The largest spikes, biggest excess first (at most five).
pub fn detect_anomalies(records: &[UsageRecord]) -> Vec<Anomaly> {
    let days = covered_days(records.iter().map(|r| r.day.as_str()));
    if days.len() < MIN_DAYS {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (dimension, key_of) in
        [("model", &model_key as &dyn Fn(&UsageRecord) -> String), ("feature", &|r: &UsageRecord| r.feature.clone())]
    {
        let mut series: BTreeMap<String, BTreeMap<&str, Money>> = BTreeMap::new();
        for r in records {
            *series.entry(key_of(r)).or_default().entry(r.day.as_str()).or_default() += cost_of(r);
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

/// The `n` largest feature × model combinations.
pub fn top_drivers(records: &[UsageRecord], n: usize) -> Vec<Driver> {
    let mut groups: BTreeMap<(String, String), (Money, u64)> = BTreeMap::new();
    let mut total = Money::ZERO;
    for r in records {
        let cost = cost_of(r);
        total += cost;
        let g = groups.entry((r.feature.clone(), model_key(r))).or_default();
        g.0 += cost;
        g.1 += r.requests;
    }
    let mut drivers: Vec<Driver> = groups
        .into_iter()
        .map(|((feature, model), (cost, requests))| Driver {
            feature,
            model,
            cost,
            requests,
            share_bp: if total.0 > 0 { (i128::from(cost.0) * 10_000 / i128::from(total.0)) as u32 } else { 0 },
        })
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

/// Needs 14 covered days.
pub fn week_over_week(records: &[UsageRecord]) -> Option<WeekOverWeek> {
    let days = covered_days(records.iter().map(|r| r.day.as_str()));
    if days.len() < 14 {
        return None;
    }
    let mut by_day: BTreeMap<&str, Money> = BTreeMap::new();
    for r in records {
        *by_day.entry(r.day.as_str()).or_default() += cost_of(r);
    }
    let sum = |range: &[String]| range.iter().map(|d| by_day.get(d.as_str()).copied().unwrap_or_default()).sum::<Money>();
    let n = days.len();
    let (last_week, previous_week) = (sum(&days[n - 7..]), sum(&days[n - 14..n - 7]));
    let change_bp = (previous_week.0 > 0)
        .then(|| Money::clamp((i128::from(last_week.0) - i128::from(previous_week.0)) * 10_000 / i128::from(previous_week.0)).0);
    Some(WeekOverWeek { last_week, previous_week, change_bp })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let found = detect_anomalies(&records);
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
        assert!(detect_anomalies(&steady).is_empty());
        let short: Vec<UsageRecord> = (1..=5).map(|d| day(d, "chat", "gpt-4o", if d == 3 { 900 } else { 10 })).collect();
        assert!(detect_anomalies(&short).is_empty(), "fewer than 7 days");
    }

    #[test]
    fn drivers_and_week_over_week_add_up() {
        let mut records: Vec<UsageRecord> = (1..=14).map(|d| day(d, "chat", "gpt-4o", if d > 7 { 120 } else { 100 })).collect();
        records.extend((1..=14).map(|d| day(d, "search", "gpt-4o-mini", 10)));
        let drivers = top_drivers(&records, 5);
        assert_eq!((drivers[0].feature.as_str(), drivers[0].cost), ("chat", Money(1_540_000_000)));
        assert_eq!(drivers.iter().map(|d| d.cost).sum::<Money>(), Money(1_680_000_000));
        let w = week_over_week(&records).unwrap();
        assert_eq!((w.last_week, w.previous_week), (Money(910_000_000), Money(770_000_000)));
        assert_eq!(w.change_bp, Some(1_818)); // 140 / 770 = 18.18 %
    }
}

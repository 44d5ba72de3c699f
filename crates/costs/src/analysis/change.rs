//! Why spend moved: one period against the one before it, feature × model by feature ×
//! model, and how much of the change is more requests (volume) and how much dearer
//! requests (price).
use std::collections::BTreeMap;

use crate::date::{format_day, parse_day};
use crate::money::{div_round_half_away, Money};
use crate::prices::PriceBook;
use crate::records::{cost_of, UsageRecord};

use super::{model_key, DailyTotal};

/// Days before a period its baseline covers when none is given.
const BASELINE_DAYS: i64 = 7;
/// Movers listed.
const MOVERS: usize = 5;

/// A period against its baseline. Baseline figures are scaled to the period's length (a
/// day against the 7 before is compared with their daily average).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
    pub days: u32,
    pub cost: Money,
    pub requests: u64,
    pub baseline_from: String,
    pub baseline_to: String,
    pub baseline_days: u32,
    /// The baseline's cost scaled to `days`.
    pub baseline_cost: Money,
    pub baseline_requests: u64,
    /// `cost − baseline_cost`.
    pub change: Money,
    /// The part of `change` from the number of requests (at the baseline's cost per request).
    pub volume: Money,
    /// The part from the cost per request of each feature × model (dearer models, longer
    /// prompts or answers).
    pub price: Money,
    /// The rest: spend moving between feature × model pairs of different cost per request,
    /// and new or stopped pairs.
    pub mix: Money,
    /// The feature × model pairs that moved most, by the size of their change.
    pub movers: Vec<Mover>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Mover {
    pub feature: String,
    pub model: String,
    pub cost: Money,
    /// Scaled to the period's length, like [`Change::baseline_cost`].
    pub baseline: Money,
    pub change: Money,
    pub requests: u64,
    pub baseline_requests: u64,
}

#[derive(Default)]
struct Sums {
    cost: i128,
    requests: u64,
}

/// `from..=to` against `baseline` (inclusive days; the `BASELINE_DAYS` before `from` when
/// `None`). Days are "YYYY-MM-DD"; `None` when one does not parse or a range is reversed.
pub fn explain_change(
    prices: &PriceBook,
    records: &[UsageRecord],
    from: &str,
    to: &str,
    baseline: Option<(&str, &str)>,
) -> Option<Change> {
    let (first, last) = (parse_day(from)?, parse_day(to)?);
    let (base_first, base_last) = match baseline {
        Some((a, b)) => (parse_day(a)?, parse_day(b)?),
        None => (first - BASELINE_DAYS, first - 1),
    };
    if last < first || base_last < base_first {
        return None;
    }
    let (days, base_days) = (last - first + 1, base_last - base_first + 1);
    let mut now: BTreeMap<(String, &str), Sums> = BTreeMap::new();
    let mut before: BTreeMap<(String, &str), Sums> = BTreeMap::new();
    for r in records {
        let Some(day) = parse_day(&r.day) else { continue };
        let side = if (first..=last).contains(&day) {
            &mut now
        } else if (base_first..=base_last).contains(&day) {
            &mut before
        } else {
            continue;
        };
        let sums = side.entry((model_key(prices, r), r.feature.as_str())).or_default();
        sums.cost += i128::from(cost_of(prices, r).0);
        sums.requests += r.requests;
    }
    // The baseline, scaled to the period's length.
    let scale = |v: i128| Money::clamp(div_round_half_away(v * i128::from(days), i128::from(base_days)));
    let scale_n = |n: u64| (div_round_half_away(i128::from(n) * i128::from(days), i128::from(base_days))).max(0) as u64;
    let mut keys: Vec<&(String, &str)> = now.keys().chain(before.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let empty = Sums::default();
    let (mut volume, mut price) = (0f64, 0f64);
    let mut movers: Vec<Mover> = keys
        .into_iter()
        .map(|key| {
            let (n, b) = (now.get(key).unwrap_or(&empty), before.get(key).unwrap_or(&empty));
            let (cost, base) = (Money::clamp(n.cost), scale(b.cost));
            let (req, base_req) = (n.requests as f64, b.requests as f64 * days as f64 / base_days as f64);
            // Pairs on both sides split into volume and price; new and stopped pairs are mix.
            if n.requests > 0 && b.requests > 0 {
                let (cpr, base_cpr) = (cost.0 as f64 / req, base.0 as f64 / base_req);
                volume += (req - base_req) * base_cpr;
                price += (cpr - base_cpr) * req;
            }
            Mover {
                feature: key.1.to_owned(),
                model: key.0.clone(),
                cost,
                baseline: base,
                change: cost - base,
                requests: n.requests,
                baseline_requests: scale_n(b.requests),
            }
        })
        .collect();
    movers.sort_by(|a, b| b.change.0.abs().cmp(&a.change.0.abs()).then_with(|| a.feature.cmp(&b.feature)));
    movers.truncate(MOVERS);
    let cost = Money::clamp(now.values().map(|s| s.cost).sum());
    let baseline_cost = scale(before.values().map(|s| s.cost).sum());
    let change = cost - baseline_cost;
    let (volume, price) = (Money(volume.round() as i64), Money(price.round() as i64));
    Some(Change {
        from: format_day(first),
        to: format_day(last),
        days: days as u32,
        cost,
        requests: now.values().map(|s| s.requests).sum(),
        baseline_from: format_day(base_first),
        baseline_to: format_day(base_last),
        baseline_days: base_days as u32,
        baseline_cost,
        baseline_requests: scale_n(before.values().map(|s| s.requests).sum()),
        change,
        volume,
        price,
        mix: change - volume - price,
        movers,
    })
}

/// The day that stands out most in `daily` (a summary's cost per day): the largest excess
/// over the average of the days before it (up to seven, a day without usage counting as
/// nothing spent), among days with at least one day before them. `None` with fewer than
/// two days of data.
pub fn spike_day(daily: &[DailyTotal]) -> Option<String> {
    let daily: BTreeMap<i64, i128> = daily.iter().filter_map(|d| Some((parse_day(&d.day)?, i128::from(d.cost.0)))).collect();
    let (&first, _) = daily.first_key_value()?;
    daily
        .iter()
        .filter(|(&day, _)| day > first)
        .map(|(&day, &cost)| {
            let window = (day - BASELINE_DAYS).max(first)..day;
            let n = (window.end - window.start) as i128;
            let before: i128 = daily.range(window).map(|(_, c)| c).sum();
            (cost * n - before, day)
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, day)| format_day(day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::billed;

    fn on(day: &str, feature: &str, model: &str, usd: i64, requests: u64) -> UsageRecord {
        UsageRecord { model: model.into(), requests, ..billed(day, feature, usd) }
    }

    #[test]
    fn a_day_is_compared_with_the_average_of_the_week_before() {
        let mut records: Vec<UsageRecord> = (1..=7).map(|d| on(&format!("2026-11-0{d}"), "bot", "gpt-4o", 10, 10)).collect();
        records.push(on("2026-11-08", "bot", "gpt-4o", 50, 50));
        records.push(on("2026-11-08", "search", "gpt-4o", 3, 1));
        let c = explain_change(PriceBook::catalog(), &records, "2026-11-08", "2026-11-08", None).unwrap();
        assert_eq!((c.baseline_from.as_str(), c.baseline_to.as_str(), c.baseline_days), ("2026-11-01", "2026-11-07", 7));
        assert_eq!((c.cost, c.baseline_cost, c.change), (Money(53_000_000), Money(10_000_000), Money(43_000_000)));
        assert_eq!((c.movers[0].feature.as_str(), c.movers[0].change), ("bot", Money(40_000_000)));
        // The bot made five times the requests at the same price: all volume; search is new.
        assert_eq!((c.volume, c.price, c.mix), (Money(40_000_000), Money::ZERO, Money(3_000_000)));
        assert_eq!(c.volume + c.price + c.mix, c.change);
    }

    #[test]
    fn dearer_requests_are_price_and_a_given_baseline_is_used_as_is() {
        let records = [on("2026-11-01", "bot", "gpt-4o", 10, 10), on("2026-11-02", "bot", "gpt-4o", 30, 10)];
        let c = explain_change(PriceBook::catalog(), &records, "2026-11-02", "2026-11-02", Some(("2026-11-01", "2026-11-01")))
            .unwrap();
        assert_eq!((c.change, c.volume, c.price), (Money(20_000_000), Money::ZERO, Money(20_000_000)));
        assert!(explain_change(PriceBook::catalog(), &records, "2026-11-02", "2026-11-01", None).is_none());
    }

    #[test]
    fn the_spike_day_stands_out_against_the_days_before_it() {
        let mut records: Vec<UsageRecord> = (1..=9).map(|d| billed(&format!("2026-11-0{d}"), "f", 10)).collect();
        records.push(billed("2026-11-05", "f", 40));
        records.push(billed("2026-11-09", "f", 5));
        let daily = |records: &[UsageRecord]| crate::summarize(PriceBook::catalog(), records).daily;
        assert_eq!(spike_day(&daily(&records)).as_deref(), Some("2026-11-05"));
        assert_eq!(spike_day(&daily(&records[..1])), None);
    }
}

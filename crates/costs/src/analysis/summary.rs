//! Where the money goes: totals, breakdowns by any dimension, the daily series, and
//! billed costs against list price.

use std::collections::BTreeMap;

use crate::date;
use crate::money::Money;
use crate::prices::PriceBook;
use crate::records::{cost_of, list_cost, UsageRecord};

/// Spend of one model or feature.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GroupTotal {
    pub key: String,
    pub cost: Money,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Share of the summary's total cost, in basis points (10_000 = 100%).
    pub share_bp: u32,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DailyTotal {
    pub day: String,
    pub cost: Money,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    /// First and last day covered ("YYYY-MM-DD"); empty without records.
    pub from: String,
    pub to: String,
    /// Calendar days from `from` to `to` inclusive.
    pub days: u32,
    pub total: Money,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Records whose model is not in the price catalog; they count as $0.
    pub unpriced_records: u64,
    /// Where the source billed a cost: how it compares with list price for the same tokens.
    pub billed: BilledVsList,
    /// Sorted by cost descending, then key. Dated snapshots are merged into
    /// their catalog model so "gpt-4o-2024-08-06" and "gpt-4o" are one row.
    pub by_model: Vec<GroupTotal>,
    pub by_feature: Vec<GroupTotal>,
    /// One entry per calendar day, oldest first; days without usage are $0.
    pub daily: Vec<DailyTotal>,
    /// An average month of this usage: `total` over `days`, times 30.
    pub monthly: Money,
    /// Spend of each 7 days ending on the last day, 7 days before it and so on (at most
    /// 8, whole weeks only), oldest first: how spend moves week by week.
    pub weekly: Vec<DailyTotal>,
}

/// Records that carry a billed cost, against their price in the book for the same tokens
/// (only records whose model the book knows are compared).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BilledVsList {
    pub records: u64,
    pub billed: Money,
    pub at_list_price: Money,
    /// `billed − at_list_price`: negative when the billed rate is below list.
    pub difference: Money,
    /// The difference in basis points of the list price (None without comparable records).
    pub difference_bp: Option<i64>,
}

fn billed_vs_list(prices: &PriceBook, records: &[UsageRecord]) -> BilledVsList {
    let mut b = BilledVsList::default();
    for r in records.iter().filter(|r| prices.price_for(&r.model).is_some()) {
        if let Some(cost) = r.cost {
            b.records += 1;
            b.billed += cost;
            b.at_list_price += list_cost(prices, r);
        }
    }
    b.difference = b.billed - b.at_list_price;
    b.difference_bp = b.difference.ratio_bp(b.at_list_price);
    b
}

/// Where the money goes, each record priced with `prices`.
pub fn summarize(prices: &PriceBook, records: &[UsageRecord]) -> Summary {
    // Price each record once; every breakdown below re-uses these exact
    // amounts, which is what makes them add up to `total`.
    let costed: Vec<(&UsageRecord, Money)> = records.iter().map(|r| (r, cost_of(prices, r))).collect();
    let total: Money = costed.iter().map(|(_, cost)| *cost).sum();
    let daily = daily_totals(&costed);
    Summary {
        from: daily.first().map(|d| d.day.clone()).unwrap_or_default(),
        to: daily.last().map(|d| d.day.clone()).unwrap_or_default(),
        days: daily.len() as u32,
        total,
        requests: sum(records.iter().map(|r| r.requests)),
        input_tokens: sum(records.iter().map(|r| r.input_tokens)),
        output_tokens: sum(records.iter().map(|r| r.output_tokens)),
        cached_input_tokens: sum(records.iter().map(|r| r.cached_input_tokens)),
        unpriced_records: records.iter().filter(|r| r.cost.is_none() && prices.price_for(&r.model).is_none()).count() as u64,
        billed: billed_vs_list(prices, records),
        by_model: group_totals(&costed, total, |r| model_key(prices, r)),
        by_feature: group_totals(&costed, total, |r| r.feature.clone()),
        monthly: total.mul_div(30, i64::from((daily.len() as u32).max(1))),
        weekly: weekly_totals(&daily),
        daily,
    }
}

/// The spend of each 7 days ending on the last day, 7 days before it and so on (at most 8
/// weeks); each entry is named by its last day.
fn weekly_totals(daily: &[DailyTotal]) -> Vec<DailyTotal> {
    let mut weeks: Vec<DailyTotal> = daily
        .rchunks_exact(7)
        .take(8)
        .map(|week| DailyTotal { day: week[6].day.clone(), cost: week.iter().map(|d| d.cost).sum() })
        .collect();
    weeks.reverse();
    weeks
}

/// A count summed without overflow (saturating; imports keep totals far below).
fn sum(counts: impl Iterator<Item = u64>) -> u64 {
    counts.fold(0, u64::saturating_add)
}

/// The first `limits::MAX_LISTED_GROUPS` groups (the largest: groups are sorted), and how
/// many more there are: what an answer or a response lists of a breakdown that could
/// otherwise have one entry per name in the data.
pub fn top_groups(groups: &[GroupTotal]) -> (&[GroupTotal], usize) {
    let n = groups.len().min(crate::limits::MAX_LISTED_GROUPS);
    (&groups[..n], groups.len() - n)
}

/// What a breakdown groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Model,
    Provider,
    Feature,
    Project,
    Day,
    /// The end user tag; records without one group as `unattributed`.
    User,
    ApiKey,
    Environment,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "model" => Self::Model,
            "provider" => Self::Provider,
            "feature" => Self::Feature,
            "project" => Self::Project,
            "day" => Self::Day,
            "user" => Self::User,
            "api_key" => Self::ApiKey,
            "environment" => Self::Environment,
            _ => return None,
        })
    }
}

/// Spend grouped by one dimension, largest first; the groups add up to the total exactly.
pub fn breakdown(prices: &PriceBook, records: &[UsageRecord], by: GroupBy) -> Vec<GroupTotal> {
    let costed: Vec<(&UsageRecord, Money)> = records.iter().map(|r| (r, cost_of(prices, r))).collect();
    let total: Money = costed.iter().map(|(_, cost)| *cost).sum();
    match by {
        GroupBy::Model => group_totals(&costed, total, |r| model_key(prices, r)),
        GroupBy::Provider => group_totals(&costed, total, |r| r.provider.clone()),
        GroupBy::Feature => group_totals(&costed, total, |r| r.feature.clone()),
        GroupBy::Project => group_totals(&costed, total, |r| r.project.clone()),
        GroupBy::Day => group_totals(&costed, total, |r| r.day.clone()),
        GroupBy::User => group_totals(&costed, total, |r| tag(&r.user)),
        GroupBy::ApiKey => group_totals(&costed, total, |r| tag(&r.api_key)),
        GroupBy::Environment => group_totals(&costed, total, |r| tag(&r.environment)),
    }
}

/// A tag's group key: its value, or `unattributed` when the source did not set it.
fn tag(value: &str) -> String {
    if value.is_empty() {
        "unattributed".to_owned()
    } else {
        value.to_owned()
    }
}

/// The catalog (or negotiated) name for priced models, the raw name otherwise.
pub(crate) fn model_key(prices: &PriceBook, r: &UsageRecord) -> String {
    prices.price_for(&r.model).map_or_else(|| r.model.clone(), |p| p.model.to_string())
}

fn group_totals(costed: &[(&UsageRecord, Money)], total: Money, key: impl Fn(&UsageRecord) -> String) -> Vec<GroupTotal> {
    let mut groups: BTreeMap<String, GroupTotal> = BTreeMap::new();
    for &(r, cost) in costed {
        let k = key(r);
        let g = groups.entry(k.clone()).or_insert_with(|| GroupTotal {
            key: k,
            cost: Money::ZERO,
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            share_bp: 0,
        });
        g.cost += cost;
        g.requests = g.requests.saturating_add(r.requests);
        g.input_tokens = g.input_tokens.saturating_add(r.input_tokens);
        g.output_tokens = g.output_tokens.saturating_add(r.output_tokens);
    }
    let mut groups: Vec<GroupTotal> = groups.into_values().collect();
    for g in &mut groups {
        g.share_bp = g.cost.share_bp(total);
    }
    // Keys are unique, so this order is total and deterministic.
    groups.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    groups
}

/// Cost per day, oldest first. When the days parse and span at most
/// `limits::MAX_FILLED_DAYS`, gaps are filled with $0 so that "the last 7 entries"
/// really are the last 7 calendar days; a day string that does not parse, or a wider
/// span, keeps only the days that have usage, so the series never has more entries
/// than the data has days.
pub(super) fn daily_totals(costed: &[(&UsageRecord, Money)]) -> Vec<DailyTotal> {
    let mut by_day: BTreeMap<String, Money> = BTreeMap::new();
    for &(r, cost) in costed {
        *by_day.entry(r.day.clone()).or_default() += cost;
    }
    let parsed: Option<Vec<i64>> = by_day.keys().map(|d| date::parse_day(d)).collect();
    let span = parsed.as_ref().and_then(|d| d.first().zip(d.last()));
    if let Some((&first, &last)) = span.filter(|(first, last)| *last - *first < crate::limits::MAX_FILLED_DAYS) {
        for day in first..=last {
            by_day.entry(date::format_day(day)).or_default();
        }
    }
    by_day.into_iter().map(|(day, cost)| DailyTotal { day, cost }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::{billed, record};
    use crate::records::demo_dataset;

    #[test]
    fn billed_costs_are_compared_with_list_price() {
        // gpt-4o: 1M input + 0.1M output at list = $2.50 + $1.00 = $3.50; billed $2.80 (20 % off).
        let mut billed = record("2026-11-01", "chat", "gpt-4o", 1, 1_000_000, 0, 100_000);
        billed.cost = Some(Money(2_800_000));
        let mut unknown = record("2026-11-01", "chat", "in-house-llm", 1, 10, 0, 10);
        unknown.cost = Some(Money(5_000_000));
        let list_only = record("2026-11-01", "chat", "gpt-4o", 1, 1_000_000, 0, 0);
        let s = summarize(PriceBook::catalog(), &[billed, unknown, list_only]);
        assert_eq!(s.billed.records, 1, "only catalog models can be compared");
        assert_eq!((s.billed.billed, s.billed.at_list_price), (Money(2_800_000), Money(3_500_000)));
        assert_eq!((s.billed.difference, s.billed.difference_bp), (Money(-700_000), Some(-2_000)));
        assert_eq!(s.total, Money(2_800_000 + 5_000_000 + 2_500_000), "billed costs count as billed");
        assert_eq!(s.unpriced_records, 0, "a billed cost prices an unknown model");
    }

    fn sum(groups: &[GroupTotal]) -> Money {
        groups.iter().map(|g| g.cost).sum()
    }

    /// gpt-4o at a negotiated $1 in / $4 out per 1M tokens.
    fn negotiated_gpt_4o() -> PriceBook {
        let list = PriceBook::catalog().price_for("gpt-4o").unwrap();
        PriceBook::with_overrides(vec![crate::Price {
            input_per_mtok: Money(1_000_000),
            output_per_mtok: Money(4_000_000),
            source: "negotiated",
            ..list.clone()
        }])
    }

    #[test]
    fn two_price_books_price_the_same_records_differently() {
        // 1M input + 0.1M output of gpt-4o: $2.50 + $1.00 = $3.50 at list price,
        // $1.00 + $0.40 = $1.40 at the negotiated rate.
        let records = [record("2026-11-01", "chat", "gpt-4o-2024-08-06", 1, 1_000_000, 0, 100_000)];
        let negotiated = negotiated_gpt_4o();
        let (list, ours) = (summarize(PriceBook::catalog(), &records), summarize(&negotiated, &records));
        assert_eq!((list.total, ours.total), (Money(3_500_000), Money(1_400_000)));
        assert_eq!(ours.by_model[0].key, "gpt-4o", "snapshots join the negotiated model");
        assert_eq!(breakdown(&negotiated, &records, GroupBy::Feature)[0].cost, Money(1_400_000));
        assert_eq!(breakdown(PriceBook::catalog(), &records, GroupBy::Feature)[0].cost, Money(3_500_000));
        // A bill at the negotiated rate matches the book's price, not the list price.
        let billed = UsageRecord { cost: Some(Money(1_400_000)), ..records[0].clone() };
        assert_eq!(summarize(&negotiated, std::slice::from_ref(&billed)).billed.difference, Money::ZERO);
        assert_eq!(summarize(PriceBook::catalog(), &[billed]).billed.difference, Money(-2_100_000));
    }

    #[test]
    fn totals_reconcile_exactly() {
        for seed in [0, 1, 42] {
            let s = summarize(PriceBook::catalog(), &demo_dataset(seed));
            assert_eq!(s.total, sum(&s.by_model));
            assert_eq!(s.total, sum(&s.by_feature));
            assert_eq!(s.total, s.daily.iter().map(|d| d.cost).sum::<Money>());
            assert_eq!(s.total, demo_dataset(seed).iter().map(|r| cost_of(PriceBook::catalog(), r)).sum::<Money>());
        }
    }

    #[test]
    fn demo_summary_is_realistic() {
        let s = summarize(PriceBook::catalog(), &demo_dataset(0));
        assert_eq!((s.from.as_str(), s.to.as_str(), s.days), ("2026-10-26", "2026-11-24", 30));
        assert!(s.total > Money::from_usd_cents(300_000) && s.total < Money::from_usd_cents(900_000), "{}", s.total);
        assert_eq!(s.unpriced_records, 0);
        // The dated Claude snapshot is reported under its catalog name.
        assert!(s.by_model.iter().any(|g| g.key == "claude-3-5-sonnet"));
        let shares: u32 = s.by_feature.iter().map(|g| g.share_bp).sum();
        assert!((9_995..=10_005).contains(&shares));
    }

    #[test]
    fn groups_sort_by_cost_then_key_and_count_unpriced() {
        let records = [
            record("2026-01-01", "b", "gpt-4o", 1, 1_000_000, 0, 0),
            record("2026-01-01", "a", "gpt-4o-2024-08-06", 1, 1_000_000, 0, 0),
            record("2026-01-01", "c", "mystery", 1, 1_000_000, 0, 0),
        ];
        let s = summarize(PriceBook::catalog(), &records);
        let keys: Vec<&str> = s.by_feature.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(s.by_model[0].key, "gpt-4o");
        assert_eq!(s.by_model[0].share_bp, 10_000);
        assert_eq!(s.by_model[1].key, "mystery");
        assert_eq!(s.unpriced_records, 1);
    }

    #[test]
    fn daily_fills_calendar_gaps() {
        let records =
            [record("2026-02-27", "f", "gpt-4o", 1, 1_000_000, 0, 0), record("2026-03-02", "f", "gpt-4o", 1, 1_000_000, 0, 0)];
        let s = summarize(PriceBook::catalog(), &records);
        let days: Vec<&str> = s.daily.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(days, ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]);
        assert_eq!(s.days, 4);
        assert_eq!(s.daily[1].cost, Money::ZERO);
    }

    #[test]
    fn a_breakdown_lists_up_to_fifty_groups_and_counts_the_rest() {
        let records: Vec<UsageRecord> = (0..52).map(|i| billed("2026-11-01", &format!("f{i:02}"), 1 + i)).collect();
        let groups = breakdown(PriceBook::catalog(), &records, GroupBy::Feature);
        let (listed, more) = top_groups(&groups);
        assert_eq!((listed.len(), more), (50, 2));
        assert_eq!((listed[0].key.as_str(), listed[49].key.as_str()), ("f51", "f02"), "the largest are listed");
        let few = breakdown(PriceBook::catalog(), &records[..3], GroupBy::Feature);
        assert_eq!(top_groups(&few).0.len(), 3);
        assert_eq!(top_groups(&few).1, 0);
    }

    #[test]
    fn group_by_names_parse_and_other_names_do_not() {
        let names = ["model", "provider", "feature", "project", "day", "user", "api_key", "environment"];
        let parsed: Vec<Option<GroupBy>> = names.iter().map(|n| GroupBy::parse(n)).collect();
        assert_eq!(
            parsed,
            [
                Some(GroupBy::Model),
                Some(GroupBy::Provider),
                Some(GroupBy::Feature),
                Some(GroupBy::Project),
                Some(GroupBy::Day),
                Some(GroupBy::User),
                Some(GroupBy::ApiKey),
                Some(GroupBy::Environment)
            ]
        );
        assert_eq!(GroupBy::parse("models"), None);
        assert_eq!(GroupBy::parse(""), None);
    }

    #[test]
    fn breakdowns_group_by_each_dimension_and_untagged_usage_is_unattributed() {
        let tagged = UsageRecord {
            provider: "azure".into(),
            project: "web".into(),
            user: "alice".into(),
            api_key: "k1".into(),
            environment: "prod".into(),
            ..billed("2026-11-01", "chat", 3)
        };
        let untagged =
            UsageRecord { model: "gpt-4o-2024-08-06".into(), project: "batch".into(), ..billed("2026-11-02", "chat", 1) };
        let records = [tagged, untagged];
        let keys = |by| -> Vec<(String, i64, u32)> {
            breakdown(PriceBook::catalog(), &records, by).into_iter().map(|g| (g.key, g.cost.0 / 1_000_000, g.share_bp)).collect()
        };
        let two = |a: &str, b: &str| vec![(a.to_owned(), 3, 7_500), (b.to_owned(), 1, 2_500)];
        assert_eq!(keys(GroupBy::Provider), two("azure", "openai"));
        assert_eq!(keys(GroupBy::Project), two("web", "batch"));
        assert_eq!(keys(GroupBy::Day), two("2026-11-01", "2026-11-02"));
        assert_eq!(keys(GroupBy::User), two("alice", "unattributed"));
        assert_eq!(keys(GroupBy::ApiKey), two("k1", "unattributed"));
        assert_eq!(keys(GroupBy::Environment), two("prod", "unattributed"));
        assert_eq!(keys(GroupBy::Feature), [("chat".to_owned(), 4, 10_000)]);
        assert_eq!(keys(GroupBy::Model), [("gpt-4o".to_owned(), 4, 10_000)], "snapshots join their catalog model");
    }

    #[test]
    fn shares_are_cut_to_whole_basis_points_and_need_a_positive_total() {
        // Cut, not rounded: answers round once more, to a tenth of a percent (66.66… % is
        // 6,666 bp and reads "66.7%"; 35.8465 % is 3,584 bp and reads "35.8%", not "35.9%").
        let thirds: Vec<u32> = breakdown(PriceBook::catalog(), &[billed("d", "a", 2), billed("d", "b", 1)], GroupBy::Feature)
            .iter()
            .map(|g| g.share_bp)
            .collect();
        assert_eq!(thirds, [6_666, 3_333]);
        assert_eq!(Money(358_465).share_bp(Money(1_000_000)), 3_584);
        // A credit larger than the spend: no shares rather than nonsense ones.
        let credits: Vec<u32> = breakdown(PriceBook::catalog(), &[billed("d", "a", 1), billed("d", "b", -2)], GroupBy::Feature)
            .iter()
            .map(|g| g.share_bp)
            .collect();
        assert_eq!(credits, [0, 0]);
        let nothing: Vec<u32> =
            breakdown(PriceBook::catalog(), &[billed("d", "a", 0)], GroupBy::Feature).iter().map(|g| g.share_bp).collect();
        assert_eq!(nothing, [0]);
    }

    #[test]
    fn a_summary_counts_every_record_s_tokens_and_requests() {
        let records =
            [record("2026-11-01", "a", "gpt-4o", 3, 1_000, 100, 50), record("2026-11-01", "b", "gpt-4o", 4, 2_000, 300, 70)];
        let s = summarize(PriceBook::catalog(), &records);
        assert_eq!((s.requests, s.input_tokens, s.cached_input_tokens, s.output_tokens), (7, 3_000, 400, 120));
        let g = &s.by_feature[0];
        assert_eq!((g.key.as_str(), g.requests, g.input_tokens, g.output_tokens), ("b", 4, 2_000, 70));
        let huge = [record("d", "a", "m", u64::MAX, 0, 0, 0), record("d", "a", "m", 1, 0, 0, 0)];
        assert_eq!(summarize(PriceBook::catalog(), &huge).requests, u64::MAX, "counts saturate");
    }

    #[test]
    fn billed_costs_without_a_list_price_to_compare_have_no_percentage() {
        // A billed row of a catalog model with no tokens: its list price is $0.
        let s = summarize(PriceBook::catalog(), &[billed("2026-11-01", "a", 2)]);
        assert_eq!((s.billed.records, s.billed.billed, s.billed.at_list_price), (1, Money(2_000_000), Money::ZERO));
        assert_eq!((s.billed.difference, s.billed.difference_bp), (Money(2_000_000), None));
    }

    #[test]
    fn daily_totals_fill_gaps_only_up_to_the_longest_span() {
        let at = |day: &str| record(day, "f", "gpt-4o", 1, 1_000, 0, 0);
        assert_eq!(summarize(PriceBook::catalog(), &[at("2000-01-01"), at("2010-01-07")]).days, 3_660);
        assert_eq!(
            summarize(PriceBook::catalog(), &[at("2000-01-01"), at("2010-01-08")]).days,
            2,
            "wider spans keep the days with usage"
        );
    }
}

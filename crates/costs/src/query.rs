//! One aggregation over usage, the same whoever computes it: the store runs it in SQL on
//! the rows it holds, [`aggregate`] over records already in memory (the demo dataset, and
//! the reference the stores are tested against).
//!
//! The result is usage records again — summed per day and model (a price applies to a
//! model's tokens, and periods are days), per the names of every dimension in `keep`, and
//! apart for usage whose source reported a cost — so every analysis of this crate runs on
//! it unchanged, on as many records as the question needs rather than one per stored row.
use std::collections::BTreeMap;

use crate::analysis::GroupBy;
use crate::records::UsageRecord;

/// Which usage to sum and which names to keep apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UsageQuery {
    /// First and last day (`YYYY-MM-DD`, inclusive); open when `None`.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Every filter must hold; the names within one are alternatives.
    pub filters: Vec<(GroupBy, Vec<String>)>,
    /// The dimensions kept apart; the others are summed over (their names left empty).
    /// Usage without a reported cost is priced per model from its summed tokens, so a query
    /// whose costs matter keeps `Model` (and `Day`, as the stored rows are daily sums).
    pub keep: Vec<GroupBy>,
}

impl UsageQuery {
    /// Everything, per day, model, provider, feature, project and environment: the view
    /// that totals, breakdowns, trends, anomalies and savings are computed from. End users
    /// and API keys, which can number thousands a day, are summed over.
    pub fn rollup() -> Self {
        Self { keep: ROLLUP.to_vec(), ..Self::default() }
    }

    /// What to keep to sum usage per `names` and still price it: the rollup's dimensions
    /// when they include every one of `names` (the sums are then the rollup's own records,
    /// priced as it is), else day, model and `names`.
    pub fn keep_for(names: &[GroupBy]) -> Vec<GroupBy> {
        if names.iter().all(|d| ROLLUP.contains(d)) {
            return ROLLUP.to_vec();
        }
        let mut keep = vec![GroupBy::Day, GroupBy::Model];
        for &d in names {
            if !keep.contains(&d) {
                keep.push(d);
            }
        }
        keep
    }

    /// Whether `dim` is kept apart.
    pub fn keeps(&self, dim: GroupBy) -> bool {
        self.keep.contains(&dim)
    }

    /// Whether the query needs the end-user or API-key names, which [`UsageQuery::rollup`]
    /// sums over.
    pub fn needs_tags(&self) -> bool {
        let tag = |d: &GroupBy| matches!(d, GroupBy::User | GroupBy::ApiKey);
        self.keep.iter().any(tag) || self.filters.iter().any(|(d, _)| tag(d))
    }
}

/// What [`UsageQuery::rollup`] keeps.
pub const ROLLUP: [GroupBy; 6] =
    [GroupBy::Day, GroupBy::Provider, GroupBy::Model, GroupBy::Feature, GroupBy::Project, GroupBy::Environment];

/// The record's name in `dim`.
pub fn field(r: &UsageRecord, dim: GroupBy) -> &str {
    match dim {
        GroupBy::Model => &r.model,
        GroupBy::Provider => &r.provider,
        GroupBy::Feature => &r.feature,
        GroupBy::Project => &r.project,
        GroupBy::Day => &r.day,
        GroupBy::User => &r.user,
        GroupBy::ApiKey => &r.api_key,
        GroupBy::Environment => &r.environment,
    }
}

/// Whether `day` is within `from..=to` (either end open when absent).
pub fn in_days(day: &str, from: Option<&str>, to: Option<&str>) -> bool {
    from.is_none_or(|f| day >= f) && to.is_none_or(|t| day <= t)
}

/// Whether `r` is in the days and names `q` asks for.
pub fn matches(r: &UsageRecord, q: &UsageQuery) -> bool {
    in_days(&r.day, q.from.as_deref(), q.to.as_deref())
        && q.filters.iter().all(|(dim, names)| names.iter().any(|n| field(r, *dim) == n))
}

/// `q` over `records`: the records it matches, summed per the names it keeps; sorted by
/// day, provider, model, feature, project, end user, API key, environment, unbilled first
/// — the order the stores return.
pub fn aggregate(records: &[UsageRecord], q: &UsageQuery) -> Vec<UsageRecord> {
    type Key = ([String; 8], bool);
    let mut sums: BTreeMap<Key, UsageRecord> = BTreeMap::new();
    for r in records.iter().filter(|r| matches(r, q)) {
        let kept = |dim: GroupBy| if q.keeps(dim) { field(r, dim).to_owned() } else { String::new() };
        let names = [
            kept(GroupBy::Day),
            kept(GroupBy::Provider),
            kept(GroupBy::Model),
            kept(GroupBy::Feature),
            kept(GroupBy::Project),
            kept(GroupBy::User),
            kept(GroupBy::ApiKey),
            kept(GroupBy::Environment),
        ];
        let sum = sums.entry((names.clone(), r.cost.is_some())).or_insert_with(|| {
            let [day, provider, model, feature, project, user, api_key, environment] = names;
            UsageRecord {
                day,
                provider,
                model,
                feature,
                project,
                user,
                api_key,
                environment,
                cost: r.cost.map(|_| crate::Money::ZERO),
                ..UsageRecord::default()
            }
        });
        sum.requests += r.requests;
        sum.input_tokens += r.input_tokens;
        sum.output_tokens += r.output_tokens;
        sum.cached_input_tokens += r.cached_input_tokens;
        sum.cache_write_tokens += r.cache_write_tokens;
        sum.reasoning_tokens += r.reasoning_tokens;
        sum.repeat_requests += r.repeat_requests;
        if let (Some(total), Some(cost)) = (sum.cost.as_mut(), r.cost) {
            *total += cost;
        }
    }
    sums.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Money;

    fn row(day: &str, model: &str, feature: &str, user: &str, requests: u64, cost: Option<i64>) -> UsageRecord {
        UsageRecord {
            day: day.into(),
            provider: "openai".into(),
            model: model.into(),
            feature: feature.into(),
            project: "p".into(),
            user: user.into(),
            requests,
            input_tokens: requests * 10,
            cost: cost.map(Money),
            ..UsageRecord::default()
        }
    }

    #[test]
    fn sums_per_kept_name_and_apart_when_billed() {
        let rows = [
            row("2026-11-01", "gpt-4o", "chat", "a", 1, None),
            row("2026-11-01", "gpt-4o", "chat", "b", 2, None),
            row("2026-11-01", "gpt-4o", "chat", "c", 4, Some(7)),
            row("2026-11-01", "gpt-4o", "search", "a", 8, None),
            row("2026-11-02", "gpt-4o", "chat", "a", 16, Some(5)),
            row("2026-11-02", "gpt-4o", "chat", "b", 32, Some(6)),
        ];
        let rolled = aggregate(&rows, &UsageQuery::rollup());
        let got: Vec<_> =
            rolled.iter().map(|r| (r.day.as_str(), r.feature.as_str(), r.user.as_str(), r.requests, r.cost)).collect();
        assert_eq!(
            got,
            [
                ("2026-11-01", "chat", "", 3, None),
                ("2026-11-01", "chat", "", 4, Some(Money(7))),
                ("2026-11-01", "search", "", 8, None),
                ("2026-11-02", "chat", "", 48, Some(Money(11))),
            ]
        );
        assert_eq!(rolled[0].input_tokens, 30);

        let q = UsageQuery {
            from: Some("2026-11-01".into()),
            to: Some("2026-11-01".into()),
            filters: vec![(GroupBy::User, vec!["a".into(), "c".into()])],
            keep: vec![GroupBy::Day, GroupBy::Model, GroupBy::User],
        };
        let got: Vec<_> = aggregate(&rows, &q).iter().map(|r| (r.user.clone(), r.feature.clone(), r.requests)).collect();
        assert_eq!(got, [("a".to_owned(), String::new(), 9), ("c".to_owned(), String::new(), 4)]);
        assert!(q.needs_tags() && !UsageQuery::rollup().needs_tags());
        assert_eq!(UsageQuery::keep_for(&[GroupBy::Feature, GroupBy::Model]), ROLLUP);
        assert_eq!(UsageQuery::keep_for(&[GroupBy::User, GroupBy::Day]), [GroupBy::Day, GroupBy::Model, GroupBy::User]);

        let names = UsageQuery { keep: vec![GroupBy::Feature], ..UsageQuery::default() };
        let got: Vec<_> = aggregate(&rows, &names).iter().map(|r| (r.feature.clone(), r.day.clone(), r.requests)).collect();
        assert_eq!(
            got,
            [
                ("chat".to_owned(), String::new(), 3),
                ("chat".to_owned(), String::new(), 52),
                ("search".to_owned(), String::new(), 8)
            ]
        );
    }
}

//! Data: the usage a question narrows to — a period, names of any dimension — with its
//! totals, its share of the period's spend, and a breakdown when one is asked for.
use apex_costs::{breakdown, GroupBy, GroupTotal, Money, UsageQuery, UsageRecord};
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;
use crate::question::Dimension;

pub struct QuerySlice;

/// Names of one dimension the usage is narrowed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SliceFilter {
    pub dimension: Dimension,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SliceArgs {
    /// First day ("YYYY-MM-DD"); the first day of the data when omitted.
    #[serde(default)]
    pub from: Option<String>,
    /// Last day ("YYYY-MM-DD"); the last day of the data when omitted.
    #[serde(default)]
    pub to: Option<String>,
    /// Every filter must hold (names within one filter are alternatives).
    #[serde(default)]
    pub filters: Vec<SliceFilter>,
    /// The breakdown to return, largest first.
    #[serde(default)]
    pub group_by: Option<Dimension>,
    /// Count the distinct end users (for cost per end user).
    #[serde(default)]
    pub end_users: bool,
    /// A period to compare with (first and last day, "YYYY-MM-DD"; the data's first or last
    /// day for the one omitted): the result then carries the same names' spend in it and
    /// the change.
    #[serde(default)]
    pub compare_from: Option<String>,
    #[serde(default)]
    pub compare_to: Option<String>,
}

/// Largest groups returned; the rest are counted in `more`.
const MAX_GROUPS: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slice {
    /// The days asked for, as the data covers them (empty when none match).
    pub from: String,
    pub to: String,
    /// Days from `from` to `to`.
    pub days: u32,
    pub cost: Money,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    /// Distinct end users (tagged) in the slice, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_users: Option<u64>,
    /// All spend in the same days, whatever the filters.
    pub period_cost: Money,
    /// `cost` as a share of `period_cost`, in basis points.
    pub share_bp: u32,
    pub groups: Vec<GroupTotal>,
    pub more: usize,
    /// The same names in the period compared with, when one is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<Compared>,
}

/// The period a slice is compared with, and the change from it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compared {
    pub from: String,
    pub to: String,
    pub days: u32,
    pub cost: Money,
    /// The slice's cost less this one's.
    pub difference: Money,
    /// `difference` as a share of `cost`, in basis points; absent when nothing was spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_bp: Option<i64>,
}

impl Compared {
    fn between(now: &Slice, then: Slice) -> Self {
        let difference = now.cost - then.cost;
        Compared {
            from: then.from,
            to: then.to,
            days: then.days,
            cost: then.cost,
            difference,
            change_bp: difference.ratio_bp(then.cost),
        }
    }
}

pub(crate) fn group_by(d: Dimension) -> GroupBy {
    match d {
        Dimension::Model => GroupBy::Model,
        Dimension::Provider => GroupBy::Provider,
        Dimension::Feature => GroupBy::Feature,
        Dimension::Project => GroupBy::Project,
        Dimension::User => GroupBy::User,
        Dimension::ApiKey => GroupBy::ApiKey,
        Dimension::Environment => GroupBy::Environment,
        Dimension::Day => GroupBy::Day,
    }
}

/// What `args` picks, summed: per day, model and the names the slice is filtered or
/// grouped by.
pub fn picked_query(args: &SliceArgs) -> UsageQuery {
    let filters = filters(args);
    let named: Vec<GroupBy> = filters.iter().map(|(d, _)| *d).chain(args.group_by.map(group_by)).collect();
    UsageQuery { from: args.from.clone(), to: args.to.clone(), filters, keep: UsageQuery::keep_for(&named) }
}

/// The end users of what `args` picks, when they are counted: one sum per end user (a few
/// thousand at most), not per day, model and end user as pricing them would need.
pub fn users_query(args: &SliceArgs) -> Option<UsageQuery> {
    args.end_users.then(|| UsageQuery {
        from: args.from.clone(),
        to: args.to.clone(),
        filters: filters(args),
        keep: vec![GroupBy::User],
    })
}

fn filters(args: &SliceArgs) -> Vec<(GroupBy, Vec<String>)> {
    args.filters.iter().map(|f| (group_by(f.dimension), f.values.clone())).collect()
}

/// The distinct end users named in `records` (the untagged usage not counted).
pub fn count_users(records: &[UsageRecord]) -> u64 {
    let mut users: Vec<&str> = records.iter().map(|r| r.user.as_str()).filter(|u| !u.is_empty()).collect();
    users.sort_unstable();
    users.dedup();
    users.len() as u64
}

/// The slice `args` asks for: `picked` is the usage [`picked_query`] sums, `records` all
/// of it as the run's rollup holds it (for the period's spend and the days the data
/// covers), `end_users` the count of [`users_query`]'s.
pub fn slice(
    prices: &apex_costs::PriceBook,
    records: &[UsageRecord],
    picked: &[UsageRecord],
    args: &SliceArgs,
    end_users: Option<u64>,
) -> Slice {
    let all = Sums::of(prices, &days(records, args.from.as_deref(), args.to.as_deref()));
    let s = Sums::of(prices, picked);
    let mut groups = args.group_by.map(|d| breakdown(prices, picked, group_by(d))).unwrap_or_default();
    let more = groups.len().saturating_sub(MAX_GROUPS);
    groups.truncate(MAX_GROUPS);
    let share_bp = s.total.ratio_bp(all.total).map_or(0, |bp| bp.clamp(0, 10_000) as u32);
    // The days asked for, within the days the data covers (an average over November
    // counts the days up to the last one in the data).
    let first = records.iter().map(|r| r.day.as_str()).min().unwrap_or_default();
    let last = records.iter().map(|r| r.day.as_str()).max().unwrap_or_default();
    let from = args.from.as_deref().map_or(first, |f| f.max(first)).to_owned();
    let to = args.to.as_deref().map_or(last, |t| t.min(last)).to_owned();
    let days = match (crate::question::day(&from), crate::question::day(&to)) {
        (Some(a), Some(b)) if b >= a => ((b - a).whole_days() + 1) as u32,
        _ => 0,
    };
    Slice {
        from,
        to,
        days,
        cost: s.total,
        requests: s.requests,
        input_tokens: s.input_tokens,
        output_tokens: s.output_tokens,
        cached_input_tokens: s.cached_input_tokens,
        reasoning_tokens: s.reasoning_tokens,
        end_users,
        period_cost: all.total,
        share_bp,
        groups,
        more,
        compared: None,
    }
}

/// What a slice reports of records: their spend, each priced as a summary prices it
/// ([`apex_costs::cost_of`]), and their counts — without the breakdowns a summary builds,
/// which cost more than the sums on tens of thousands of records.
#[derive(Default)]
struct Sums {
    total: Money,
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    reasoning_tokens: u64,
}

impl Sums {
    fn of(prices: &apex_costs::PriceBook, records: &[UsageRecord]) -> Self {
        records.iter().fold(Sums::default(), |s, r| Sums {
            total: s.total + apex_costs::cost_of(prices, r),
            requests: s.requests.saturating_add(r.requests),
            input_tokens: s.input_tokens.saturating_add(r.input_tokens),
            output_tokens: s.output_tokens.saturating_add(r.output_tokens),
            cached_input_tokens: s.cached_input_tokens.saturating_add(r.cached_input_tokens),
            reasoning_tokens: s.reasoning_tokens.saturating_add(r.reasoning_tokens),
        })
    }
}

/// The records of days `from..=to`: a range of `records` when they are in day order (as
/// the store and the rollup give them), else a copy of those that are.
fn days<'a>(records: &'a [UsageRecord], from: Option<&str>, to: Option<&str>) -> std::borrow::Cow<'a, [UsageRecord]> {
    if records.is_sorted_by(|a, b| a.day <= b.day) {
        let start = from.map_or(0, |f| records.partition_point(|r| r.day.as_str() < f));
        let end = to.map_or(records.len(), |t| records.partition_point(|r| r.day.as_str() <= t));
        return std::borrow::Cow::Borrowed(&records[start..end.max(start)]);
    }
    std::borrow::Cow::Owned(records.iter().filter(|r| apex_costs::in_days(&r.day, from, to)).cloned().collect())
}

#[async_trait]
impl Tool for QuerySlice {
    const NAME: &'static str = "query_slice";
    const AGENT: AgentName = AgentName::Data;
    const DESCRIPTION: &'static str = "Spend, requests and tokens of the usage in a period and for given names (models, \
         providers, features, projects, end users, API keys, environments), its share of the period's spend, and a \
         breakdown by one dimension.";
    type Args = SliceArgs;
    type Output = Slice;

    async fn run(&self, ctx: &RunContext, args: SliceArgs) -> Result<Slice, ToolError> {
        let now = sliced(ctx, &args).await?;
        if args.compare_from.is_none() && args.compare_to.is_none() {
            return Ok(now);
        }
        let then_args = SliceArgs { from: args.compare_from.clone(), to: args.compare_to.clone(), group_by: None, ..args };
        let then = sliced(ctx, &then_args).await?;
        Ok(Slice { compared: Some(Compared::between(&now, then)), ..now })
    }
}

/// One period's slice, from the store's sums.
async fn sliced(ctx: &RunContext, args: &SliceArgs) -> Result<Slice, ToolError> {
    let records = ctx.data.records().await?;
    let picked = ctx.data.totals(&picked_query(args)).await?;
    let end_users = match users_query(args) {
        Some(q) => Some(count_users(&ctx.data.totals(&q).await?)),
        None => None,
    };
    Ok(slice(ctx.data.prices(), &records, &picked, args, end_users))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(day: &str, feature: &str, model: &str, requests: u64, user: &str) -> UsageRecord {
        UsageRecord {
            day: day.into(),
            provider: "openai".into(),
            model: model.into(),
            feature: feature.into(),
            project: "p".into(),
            requests,
            input_tokens: requests * 1_000_000,
            user: user.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_slice_is_its_period_and_names_with_its_share_of_the_period() {
        let book = apex_costs::PriceBook::catalog();
        // gpt-4o: $2.50 per 1M input tokens; gpt-4o-mini: $0.15.
        let records = [
            record("2026-11-01", "chat", "gpt-4o", 1, "a"),
            record("2026-11-02", "chat", "gpt-4o", 2, "b"),
            record("2026-11-02", "search", "gpt-4o-mini", 10, ""),
            record("2026-11-03", "chat", "gpt-4o", 4, "a"),
        ];
        let args = SliceArgs {
            from: Some("2026-11-02".into()),
            to: Some("2026-11-02".into()),
            filters: vec![SliceFilter { dimension: Dimension::Model, values: vec!["gpt-4o".into()] }],
            group_by: None,
            end_users: false,
            compare_from: None,
            compare_to: None,
        };
        let at = |args: &SliceArgs| {
            let users = users_query(args).map(|q| count_users(&apex_costs::aggregate(&records, &q)));
            slice(book, &records, &apex_costs::aggregate(&records, &picked_query(args)), args, users)
        };
        let s = at(&SliceArgs { end_users: true, ..args.clone() });
        assert_eq!((s.cost, s.requests, s.days, s.end_users), (Money(5_000_000), 2, 1, Some(1)));
        assert_eq!(s.period_cost, Money(6_500_000));
        assert_eq!(s.share_bp, 7_692, "$5.00 of $6.50");

        let everything = at(&SliceArgs { group_by: Some(Dimension::Feature), end_users: true, ..Default::default() });
        assert_eq!((everything.from.as_str(), everything.to.as_str(), everything.days), ("2026-11-01", "2026-11-03", 3));
        assert_eq!(everything.groups.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(), ["chat", "search"]);
        assert_eq!(everything.share_bp, 10_000);
        assert_eq!(everything.end_users, Some(2));
        assert_eq!(at(&SliceArgs::default()).end_users, None, "counted when asked for");

        let nothing = at(&SliceArgs { from: Some("2026-12-01".into()), ..Default::default() });
        assert_eq!((nothing.cost, nothing.share_bp, nothing.days), (Money::ZERO, 0, 0));

        let month = SliceArgs { from: Some("2026-11-01".into()), to: Some("2026-11-30".into()), ..Default::default() };
        let covered = at(&month);
        assert_eq!((covered.from.as_str(), covered.to.as_str(), covered.days), ("2026-11-01", "2026-11-03", 3), "days with data");
    }

    #[test]
    fn the_days_of_a_period_are_a_range_when_sorted_and_a_copy_when_not() {
        let mut records: Vec<UsageRecord> =
            ["2026-11-01", "2026-11-02", "2026-11-02", "2026-11-04"].iter().map(|d| record(d, "f", "gpt-4o", 1, "")).collect();
        let picked =
            |records: &[UsageRecord], from, to| days(records, from, to).iter().map(|r| r.day.clone()).collect::<Vec<_>>();
        assert_eq!(picked(&records, Some("2026-11-02"), Some("2026-11-03")), ["2026-11-02", "2026-11-02"]);
        assert!(matches!(days(&records, Some("2026-11-02"), None), std::borrow::Cow::Borrowed(_)));
        assert_eq!(picked(&records, Some("2026-11-05"), Some("2026-11-01")), Vec::<String>::new());
        records.swap(0, 3);
        assert_eq!(picked(&records, Some("2026-11-02"), Some("2026-11-03")), ["2026-11-02", "2026-11-02"]);
        assert_eq!(picked(&records, None, Some("2026-11-01")), ["2026-11-01"]);
    }
}

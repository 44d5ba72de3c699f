//! What the agents' tools ask of a set of usage records: where the money
//! goes (`summarize`), how to spend less (`recommend`, `total_savings`) and
//! where spend is heading (`forecast`).
//!
//! Every figure is derived from the records with integer money, so totals
//! reconcile to the micro-dollar and the same records always give the same
//! answer.

use std::collections::BTreeMap;

use crate::date;
use crate::money::{div_round_half_away, group_thousands, Money};
use crate::prices::{cheaper_sibling, price_for, rate_label, Price, TokenUse};
use crate::records::{cost_of, list_cost, UsageRecord};

// ---------------------------------------------------------------------------
// Summary

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
}

/// Records that carry a billed cost, against the catalog's list price for the same tokens
/// (only records whose model the catalog knows are compared).
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

fn billed_vs_list(records: &[UsageRecord]) -> BilledVsList {
    let mut b = BilledVsList::default();
    for r in records.iter().filter(|r| price_for(&r.model).is_some()) {
        if let Some(cost) = r.cost {
            b.records += 1;
            b.billed += cost;
            b.at_list_price += list_cost(r);
        }
    }
    b.difference = b.billed - b.at_list_price;
    b.difference_bp =
        (b.at_list_price.0 > 0).then(|| Money::clamp(i128::from(b.difference.0) * 10_000 / i128::from(b.at_list_price.0)).0);
    b
}

pub fn summarize(records: &[UsageRecord]) -> Summary {
    // Price each record once; every breakdown below re-uses these exact
    // amounts, which is what makes them add up to `total`.
    let costed: Vec<(&UsageRecord, Money)> = records.iter().map(|r| (r, cost_of(r))).collect();
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
        unpriced_records: records.iter().filter(|r| r.cost.is_none() && price_for(&r.model).is_none()).count() as u64,
        billed: billed_vs_list(records),
        by_model: group_totals(&costed, total, model_key),
        by_feature: group_totals(&costed, total, |r| r.feature.clone()),
        daily,
    }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
pub fn breakdown(records: &[UsageRecord], by: GroupBy) -> Vec<GroupTotal> {
    let costed: Vec<(&UsageRecord, Money)> = records.iter().map(|r| (r, cost_of(r))).collect();
    let total: Money = costed.iter().map(|(_, cost)| *cost).sum();
    match by {
        GroupBy::Model => group_totals(&costed, total, model_key),
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

/// The catalog name for priced models, the raw name otherwise.
pub(crate) fn model_key(r: &UsageRecord) -> String {
    price_for(&r.model).map_or_else(|| r.model.clone(), |p| p.model.to_owned())
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
        g.share_bp = share_bp(g.cost, total);
    }
    // Keys are unique, so this order is total and deterministic.
    groups.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    groups
}

fn share_bp(part: Money, total: Money) -> u32 {
    if total <= Money::ZERO {
        return 0;
    }
    let bp = div_round_half_away(i128::from(part.micros()) * 10_000, i128::from(total.micros()));
    u32::try_from(bp).unwrap_or(0)
}

/// Cost per day, oldest first. When the days parse and span at most
/// `limits::MAX_FILLED_DAYS`, gaps are filled with $0 so that "the last 7 entries"
/// really are the last 7 calendar days; a day string that does not parse, or a wider
/// span, keeps only the days that have usage, so the series never has more entries
/// than the data has days.
fn daily_totals(costed: &[(&UsageRecord, Money)]) -> Vec<DailyTotal> {
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

// ---------------------------------------------------------------------------
// Recommendations

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationKind {
    /// Right-sizing: a cheaper model that can do what the workload needs.
    ModelDowngrade,
    PromptCaching,
    BatchApi,
    /// Long answers: a cap on output length.
    OutputCap,
    /// Identical requests sent again: a response cache.
    DeduplicateRequests,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Recommendation {
    pub kind: RecommendationKind,
    pub title: String,
    pub feature: String,
    /// Catalog name of the model the feature runs on.
    pub model: String,
    pub target_model: Option<String>,
    /// Monthly figures are normalised to a 30-day month from the covered days.
    pub current_monthly: Money,
    pub projected_monthly: Money,
    /// Exactly `current_monthly - projected_monthly`.
    pub monthly_savings: Money,
    /// The reasoning, with the numbers used.
    pub rationale: String,
    /// "high" | "medium" | "low".
    pub confidence: &'static str,
    /// What the projection takes for granted.
    pub assumptions: Vec<String>,
    /// The usage rows it concerns.
    pub rows: RowsConcerned,
    /// How to make the change.
    pub how_to_apply: String,
}

/// The usage rows a recommendation concerns: one feature on one model, over the days seen.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RowsConcerned {
    pub feature: String,
    pub model: String,
    pub from: String,
    pub to: String,
    /// Usage rows (daily sums) and the requests they stand for.
    pub records: u64,
    pub requests: u64,
}

/// Averages at or above this many output tokens per request suggest real
/// generation, where a smaller model is more likely to lose quality.
const SHORT_OUTPUT_TOKENS: u64 = 200;
/// Below this, outputs are labels or ids: the safest downgrade.
const TINY_OUTPUT_TOKENS: u64 = 50;
/// Caching pays off only for long prompts that mostly miss the cache today.
const CACHING_MIN_INPUT_TOKENS: u64 = 1_000;
const CACHING_MAX_CACHED_PCT: u64 = 30;
/// Conservative hit rate once a stable prompt prefix is in place.
const CACHING_ASSUMED_CACHED_PCT: u64 = 60;
/// Feature names that mark work nobody waits on. "summar" is weaker evidence
/// (summaries can be interactive), so it earns less confidence.
const OFFLINE_MARKERS: [(&str, &str); 3] = [("nightly", "high"), ("batch", "high"), ("summar", "medium")];
/// General-purpose chat models right-sizing may move a feature to, beyond the family's
/// smaller model: the catalog's capability flags and context window decide which fit.
const RIGHT_SIZING_CANDIDATES: [&str; 20] = [
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "mistral-large-latest",
    "mistral-medium-latest",
    "mistral-small-latest",
];
/// Another generation is only worth the migration when it cuts the feature's cost by this much.
const RIGHT_SIZING_MIN_CUT_PCT: i64 = 30;
/// The longest prompts are taken to be this many times the average, for the context window.
const PROMPT_HEADROOM: u64 = 2;
/// Every current chat model takes a prompt this long, whatever its catalog entry says.
const ANY_MODEL_CONTEXT: u64 = 8_000;
/// Output-length caps: answers this long on average, where output is most of the cost,
/// are assumed to lose `OUTPUT_CAP_CUT_PCT` of their tokens under a cap.
const OUTPUT_CAP_MIN_TOKENS: u64 = 600;
const OUTPUT_CAP_MIN_SHARE_PCT: i64 = 50;
const OUTPUT_CAP_CUT_PCT: u64 = 20;
/// Repeats below this share of requests are not worth a cache.
const DEDUP_MIN_REPEAT_PCT: u64 = 2;
/// At or above this share, the repeats are a pattern, not an accident.
const DEDUP_HIGH_REPEAT_PCT: u64 = 10;
pub(crate) const DAYS_PER_MONTH: i64 = 30;

/// Savings opportunities found in the records, largest first.
///
/// Each recommendation is priced on its own against today's spend; when a
/// feature gets several, their savings overlap (use `total_savings`).
pub fn recommend(records: &[UsageRecord]) -> Vec<Recommendation> {
    let costed: Vec<(&UsageRecord, Money)> = records.iter().map(|r| (r, cost_of(r))).collect();
    let days = daily_totals(&costed).len() as i64;
    let mut recs: Vec<Recommendation> = feature_usage(records)
        .iter()
        .flat_map(|u| {
            let drafts = [model_downgrade(u), prompt_caching(u), batch_api(u), output_cap(u), deduplicate_requests(u)];
            drafts.into_iter().flatten().map(move |draft| draft.finish(u, days))
        })
        .filter(|r| r.monthly_savings > Money::ZERO)
        .collect();
    note_overlaps(&mut recs);
    recs.sort_by(|a, b| {
        b.monthly_savings.cmp(&a.monthly_savings).then_with(|| a.feature.cmp(&b.feature)).then_with(|| a.kind.cmp(&b.kind))
    });
    recs
}

/// Everything one feature sent to one (priced) model over the covered days.
struct FeatureUsage<'a> {
    feature: &'a str,
    price: &'static Price,
    records: Vec<&'a UsageRecord>,
    requests: u64,
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
    repeats: u64,
    current: Money,
}

impl FeatureUsage<'_> {
    fn per_request(&self, tokens: u64) -> u64 {
        div_round_half_away(i128::from(tokens), i128::from(self.requests.max(1))) as u64
    }

    fn cached_pct(&self) -> u64 {
        div_round_half_away(i128::from(self.cached) * 100, i128::from(self.input.max(1))) as u64
    }

    /// Re-prices every record and sums, so projections round exactly like
    /// the current cost they are compared with.
    fn reprice(&self, cost: impl Fn(&UsageRecord) -> Money) -> Money {
        self.records.iter().map(|r| cost(r)).sum()
    }

    fn tokens_sentence(&self) -> String {
        format!(
            "{} requests averaging {} input ({}% cached) and {} output tokens on {} ({})",
            group_thousands(self.requests),
            group_thousands(self.per_request(self.input)),
            self.cached_pct(),
            group_thousands(self.per_request(self.output)),
            self.price.model,
            self.price.label(),
        )
    }
}

/// Groups priced records by feature and catalog model, in key order.
/// Unpriced records are skipped: without a price there is nothing to save.
fn feature_usage(records: &[UsageRecord]) -> Vec<FeatureUsage<'_>> {
    let mut groups: BTreeMap<(&str, &str), FeatureUsage<'_>> = BTreeMap::new();
    for r in records {
        let Some(price) = price_for(&r.model) else {
            continue;
        };
        let u = groups.entry((&r.feature, price.model)).or_insert_with(|| FeatureUsage {
            feature: &r.feature,
            price,
            records: Vec::new(),
            requests: 0,
            input: 0,
            cached: 0,
            output: 0,
            reasoning: 0,
            repeats: 0,
            current: Money::ZERO,
        });
        u.records.push(r);
        u.requests += r.requests;
        u.input += r.input_tokens;
        u.cached += r.cached_input_tokens.min(r.input_tokens);
        u.output += r.output_tokens;
        u.reasoning += r.reasoning_tokens.min(r.output_tokens);
        u.repeats += r.repeat_requests.min(r.requests);
        // Both sides of a saving at list price: a billed cost (negotiated, or including
        // extras the tokens do not show) compared with a list-price projection would
        // count the difference between the two as a saving.
        u.current += list_cost(r);
    }
    groups.into_values().collect()
}

/// A recommendation before its monthly figures are worked out.
struct Draft {
    kind: RecommendationKind,
    title: String,
    target: Option<&'static Price>,
    /// Cost of the covered days had the change been in place.
    projected: Money,
    why: String,
    confidence: &'static str,
    assumptions: Vec<String>,
    how: String,
}

impl Draft {
    fn finish(self, u: &FeatureUsage, days: i64) -> Recommendation {
        let current_monthly = u.current.mul_div(DAYS_PER_MONTH, days);
        let projected_monthly = self.projected.mul_div(DAYS_PER_MONTH, days);
        let monthly_savings = current_monthly - projected_monthly;
        let rationale = format!(
            "{} Over the {days} days observed that is {} instead of {}; \
             per 30-day month {current_monthly} -> {projected_monthly}, saving {monthly_savings}.",
            self.why, self.projected, u.current,
        );
        let days_seen = |pick: fn(&str, &str) -> bool| {
            u.records.iter().map(|r| r.day.as_str()).reduce(|a, b| if pick(a, b) { a } else { b }).unwrap_or("")
        };
        Recommendation {
            kind: self.kind,
            title: self.title,
            feature: u.feature.to_owned(),
            model: u.price.model.to_owned(),
            target_model: self.target.map(|t| t.model.to_owned()),
            current_monthly,
            projected_monthly,
            monthly_savings,
            rationale,
            confidence: self.confidence,
            assumptions: self.assumptions,
            rows: RowsConcerned {
                feature: u.feature.to_owned(),
                model: u.price.model.to_owned(),
                from: days_seen(|a, b| a <= b).to_owned(),
                to: days_seen(|a, b| a >= b).to_owned(),
                records: u.records.len() as u64,
                requests: u.requests,
            },
            how_to_apply: self.how,
        }
    }
}

/// Right-sizing: short answers on an expensive model, moved to a cheaper model that can do
/// everything the current one can for this workload (capability flags, context window).
/// The family's smaller model is preferred; otherwise another model of the provider that
/// cuts the cost by at least `RIGHT_SIZING_MIN_CUT_PCT` — the cheapest for tiny outputs,
/// the least drastic step down for short ones.
fn model_downgrade(u: &FeatureUsage) -> Option<Draft> {
    let short = u.requests > 0 && u.output < SHORT_OUTPUT_TOKENS * u.requests;
    if !short || u.price.output_per_mtok == Money::ZERO {
        return None; // long generation, or an embedding model
    }
    let avg_output = u.per_request(u.output);
    let avg_prompt = u.per_request(u.input);
    let tiny = avg_output < TINY_OUTPUT_TOKENS;
    let needed_context = avg_prompt * PROMPT_HEADROOM + avg_output;
    let fits = |c: &Price| suitable(u.price, c, needed_context, u.reasoning > 0);
    let reprice = |c: &Price| u.reprice(|r| c.usage_cost(&TokenUse::of(r)));
    let sibling = cheaper_sibling(u.price.model).filter(|s| fits(s)).map(|s| (s, reprice(s))).filter(|(_, p)| *p < u.current);
    let (target, projected, same_family) = match sibling {
        Some((s, p)) => (s, p, true),
        None => {
            let mut options: Vec<(&'static Price, Money)> = RIGHT_SIZING_CANDIDATES
                .iter()
                .filter_map(|name| price_for(name))
                .filter(|c| c.provider == u.price.provider && c.model != u.price.model && fits(c))
                .map(|c| (c, reprice(c)))
                .filter(|(_, p)| {
                    i128::from(p.micros()) * 100 <= i128::from(u.current.micros()) * i128::from(100 - RIGHT_SIZING_MIN_CUT_PCT)
                })
                .collect();
            options.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.model.cmp(b.0.model)));
            let (c, p) = if tiny { options.first() } else { options.last() }.copied()?;
            (c, p, false)
        }
    };
    let caps = |p: &Price| {
        let c = p.capabilities;
        let mut have: Vec<&str> = Vec::new();
        if c.tool_calling {
            have.push("tool calling")
        }
        if c.vision {
            have.push("vision")
        }
        if c.reasoning {
            have.push("reasoning")
        }
        if have.is_empty() {
            "plain text".to_owned()
        } else {
            have.join(", ")
        }
    };
    let window = target.capabilities.context_window.map_or("an unknown".to_owned(), group_thousands);
    let why = format!(
        "{} made {}. Under {SHORT_OUTPUT_TOKENS} output tokens per request is the short, constrained answer a \
         smaller model usually handles; {} ({}, {}) offers what {} does ({}) with a {window}-token context window, \
         and the same tokens were re-priced on it.",
        u.feature,
        u.tokens_sentence(),
        target.model,
        if same_family { "the family's smaller model" } else { "a smaller model of the same provider" },
        target.label(),
        u.price.model,
        caps(u.price),
    );
    let assumptions = vec![
        format!("Answers averaging {} output tokens keep their quality on {}.", group_thousands(avg_output), target.model),
        format!(
            "The requests use no capability beyond {}'s ({}), and the longest prompts are at most {PROMPT_HEADROOM} times the \
             average of {} tokens.",
            u.price.model,
            caps(u.price),
            group_thousands(avg_prompt)
        ),
        "Token counts stay the same on the new model (tokenizers differ a little).".to_owned(),
    ];
    Some(Draft {
        kind: RecommendationKind::ModelDowngrade,
        title: format!("Move {} from {} to {}", u.feature, u.price.model, target.model),
        target: Some(target),
        projected,
        why,
        confidence: match (tiny, same_family) {
            (true, true) => "high",
            (false, false) => "low",
            _ => "medium",
        },
        assumptions,
        how: format!(
            "Run {}'s evaluation set (or a day of its real requests) on {} and compare the answers; if they hold, \
             change the model of {}'s requests from {} to {}.",
            u.feature, target.model, u.feature, u.price.model, target.model
        ),
    })
}

/// Whether `candidate` can take over `current`'s workload: every capability flag the
/// current model has (the usage does not show which ones the requests use), the same
/// reasoning kind (a reasoning model bills hidden reasoning tokens a re-pricing cannot
/// see; a reasoning workload needs one), room for the prompts, and output at all.
fn suitable(current: &Price, candidate: &Price, needed_context: u64, reasoning_tokens_seen: bool) -> bool {
    let (have, can) = (current.capabilities, candidate.capabilities);
    let context_ok = can.context_window.map_or(needed_context <= ANY_MODEL_CONTEXT, |w| w >= needed_context);
    candidate.output_per_mtok > Money::ZERO
        && (!have.tool_calling || can.tool_calling)
        && (!have.vision || can.vision)
        && can.reasoning == (have.reasoning || reasoning_tokens_seen)
        && context_ok
}

/// Long answers where output is most of the cost: a cap on output length.
fn output_cap(u: &FeatureUsage) -> Option<Draft> {
    if u.requests == 0 || u.output < OUTPUT_CAP_MIN_TOKENS * u.requests || u.current <= Money::ZERO {
        return None;
    }
    let price = u.price;
    let without_output = u.reprice(|r| price.usage_cost(&TokenUse { output: 0, reasoning: 0, ..TokenUse::of(r) }));
    let output_cost = u.current - without_output;
    let share_pct = i128::from(output_cost.micros()) * 100 / i128::from(u.current.micros());
    if share_pct < i128::from(OUTPUT_CAP_MIN_SHARE_PCT) {
        return None;
    }
    let avg_output = u.per_request(u.output);
    let cap = avg_output * (100 - OUTPUT_CAP_CUT_PCT) / 100;
    let keep = |n: u64| n * (100 - OUTPUT_CAP_CUT_PCT) / 100;
    let projected = u.reprice(|r| {
        price.usage_cost(&TokenUse { output: keep(r.output_tokens), reasoning: keep(r.reasoning_tokens), ..TokenUse::of(r) })
    });
    let why = format!(
        "{} made {}. Output is {share_pct}% of its cost; with answers capped near {} tokens, {OUTPUT_CAP_CUT_PCT}% of \
         output tokens were taken off and the rest re-priced.",
        u.feature,
        u.tokens_sentence(),
        group_thousands(cap),
    );
    Some(Draft {
        kind: RecommendationKind::OutputCap,
        title: format!("Cap answer length for {}", u.feature),
        target: None,
        projected,
        why,
        confidence: "low",
        assumptions: vec![
            format!(
                "Usage rows give average lengths, not each answer's: a cap near {} tokens with a request to be concise \
                 is assumed to remove {OUTPUT_CAP_CUT_PCT}% of output tokens.",
                group_thousands(cap)
            ),
            "Shorter answers still do the job; truncated ones are rare.".to_owned(),
        ],
        how: format!(
            "Set max_tokens (max_output_tokens) to about {} on {}'s requests and ask for concise answers in its system \
             prompt; then watch how many responses stop for length (finish_reason \"length\") and raise the cap if \
             answers get cut off.",
            group_thousands(cap),
            u.feature
        ),
    })
}

/// Identical requests sent again (same request hash): a response cache answers them.
fn deduplicate_requests(u: &FeatureUsage) -> Option<Draft> {
    if u.repeats == 0 || u.repeats * 100 < u.requests * DEDUP_MIN_REPEAT_PCT {
        return None;
    }
    // Each row's repeats at that row's average cost per request.
    let projected = u.reprice(|r| {
        let repeats = r.repeat_requests.min(r.requests);
        list_cost(r).mul_div((r.requests - repeats) as i64, r.requests.max(1) as i64)
    });
    let pct = div_round_half_away(i128::from(u.repeats) * 100, i128::from(u.requests)) as u64;
    let why = format!(
        "{} made {}. {} of those requests ({pct}%) repeated a request already sent, by request hash; answered from \
         a response cache they would cost nothing.",
        u.feature,
        u.tokens_sentence(),
        group_thousands(u.repeats),
    );
    Some(Draft {
        kind: RecommendationKind::DeduplicateRequests,
        title: format!("Answer repeated requests of {} from a cache", u.feature),
        target: None,
        projected,
        why,
        confidence: if pct >= DEDUP_HIGH_REPEAT_PCT { "high" } else { "medium" },
        assumptions: vec![
            "The request hash covers the whole request (prompt and parameters), so a repeat may get the same answer.".to_owned(),
            "A repeat costs the average request of its day; the cache itself is free.".to_owned(),
        ],
        how: format!(
            "Put an exact-match response cache keyed by the request hash in front of {} for {} (LiteLLM's cache, \
             Helicone's Helicone-Cache-Enabled header, or your own); limit it to requests whose answer may be reused \
             (temperature 0, no per-user context).",
            u.price.model, u.feature
        ),
    })
}

/// Long prompts that mostly miss the cache: assume a stable prefix gets
/// `CACHING_ASSUMED_CACHED_PCT` of input served from cache.
fn prompt_caching(u: &FeatureUsage) -> Option<Draft> {
    let long_prompts = u.requests > 0 && u.input > CACHING_MIN_INPUT_TOKENS * u.requests;
    let mostly_uncached = u.cached * 100 < u.input * CACHING_MAX_CACHED_PCT;
    if !(long_prompts && mostly_uncached) {
        return None;
    }
    // Anthropic bills cache writes above the input rate; list prices here
    // have no such rate, so say so rather than silently overstate.
    let caveat = if u.price.provider == "anthropic" { " Cache-write surcharges are not included." } else { "" };
    let why = format!(
        "{} made {}. With the repeated prompt prefix cached, {CACHING_ASSUMED_CACHED_PCT}% of input \
         was re-priced at the cached rate of {} instead of {} per 1M tokens.{caveat}",
        u.feature,
        u.tokens_sentence(),
        rate_label(u.price.cached_input_per_mtok),
        rate_label(u.price.input_per_mtok),
    );
    let price = u.price;
    Some(Draft {
        kind: RecommendationKind::PromptCaching,
        title: format!("Enable prompt caching for {}", u.feature),
        target: None,
        projected: u.reprice(|r| {
            let cached = (r.input_tokens * CACHING_ASSUMED_CACHED_PCT / 100).max(r.cached_input_tokens);
            price.usage_cost(&TokenUse { cached_input: cached, ..TokenUse::of(r) })
        }),
        why,
        confidence: "medium",
        assumptions: vec![
            format!("A stable prompt prefix lets {CACHING_ASSUMED_CACHED_PCT}% of input be read from the cache."),
            "Requests arrive often enough for the cache to stay warm.".to_owned(),
        ],
        how: format!(
            "Move the parts of {}'s prompt that never change (system prompt, instructions, examples, tool \
             definitions) to the start and the per-request parts to the end{}; then watch the cached-token share rise.",
            u.feature,
            if price.provider == "anthropic" { ", and mark the prefix with a cache_control breakpoint" } else { "" }
        ),
    })
}

/// Work nobody waits on: the provider's batch API bills it at a discount.
fn batch_api(u: &FeatureUsage) -> Option<Draft> {
    let name = u.feature.to_ascii_lowercase();
    let (marker, confidence) = OFFLINE_MARKERS.iter().find(|(m, _)| name.contains(m))?;
    let price = u.price;
    let why = format!(
        "{} made {}. Its name (\"{marker}\") marks it as offline work that can wait for the \
         batch API's asynchronous turnaround, which {} bills {}% below list price.",
        u.feature,
        u.tokens_sentence(),
        price.provider,
        price.batch_discount_pct,
    );
    Some(Draft {
        kind: RecommendationKind::BatchApi,
        title: format!("Run {} through the {} Batch API", u.feature, price.provider),
        target: None,
        projected: u.reprice(|r| price.usage_batch_cost(&TokenUse::of(r))),
        why,
        confidence,
        assumptions: vec![
            "Nobody waits on the answers: results within 24 hours are good enough.".to_owned(),
            format!("{} keeps its {}% batch discount for this model.", price.provider, price.batch_discount_pct),
        ],
        how: format!(
            "Write {}'s requests to a JSONL file and submit it to {}'s Batch API instead of calling the model one \
             request at a time; collect the results when the batch completes.",
            u.feature, price.provider
        ),
    })
}

/// Tells the reader when a feature's recommendations overlap, so nobody adds
/// their savings up by hand.
fn note_overlaps(recs: &mut [Recommendation]) {
    let mut per_feature: BTreeMap<String, usize> = BTreeMap::new();
    for r in recs.iter() {
        *per_feature.entry(r.feature.clone()).or_default() += 1;
    }
    for r in recs.iter_mut() {
        let others = per_feature[&r.feature] - 1;
        if others > 0 {
            let plural = if others == 1 { "" } else { "s" };
            r.rationale.push_str(&format!(
                " Computed independently of the {others} other recommendation{plural} for {}; \
                 the savings overlap, so they do not simply add up.",
                r.feature
            ));
        }
    }
}

/// Combined monthly savings of `recs` without double counting.
///
/// Per feature and model, the recommendations are applied one after another,
/// each cutting the same fraction of the *remaining* cost that it cuts of
/// today's cost (largest first). Savings therefore compound rather than add,
/// and a feature can never save more than it currently costs.
pub fn total_savings(recs: &[Recommendation]) -> Money {
    let mut per_feature: BTreeMap<(&str, &str), Vec<&Recommendation>> = BTreeMap::new();
    for r in recs {
        per_feature.entry((&r.feature, &r.model)).or_default().push(r);
    }
    per_feature.into_values().map(|group| combined_savings(&group)).sum()
}

fn combined_savings(group: &[&Recommendation]) -> Money {
    let current = group.iter().map(|r| r.current_monthly).max().unwrap_or_default();
    if current <= Money::ZERO {
        return Money::ZERO;
    }
    let mut savings: Vec<Money> = group.iter().map(|r| r.monthly_savings.max(Money::ZERO)).collect();
    savings.sort_unstable_by(|a, b| b.cmp(a));
    let remaining = savings.into_iter().fold(current, |remaining, saving| {
        let cut = saving.mul_div(remaining.micros(), current.micros());
        (remaining - cut).max(Money::ZERO)
    });
    current - remaining
}

// ---------------------------------------------------------------------------
// Forecast

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Forecast {
    pub days_observed: u32,
    /// Average of the last 7 days, times 30.
    pub monthly_run_rate: Money,
    /// Average of the first 7 days, times 30.
    pub previous_run_rate: Money,
    /// Change of the last-7 against the first-7 average, in basis points.
    pub trend_bp: i64,
}

/// Days in each run-rate window.
const RUN_RATE_DAYS: usize = 7;

/// Run rates from the first and last week of the summary. With fewer than 14
/// days the windows overlap (and with 7 or fewer they coincide, giving a flat
/// trend): the honest answer for so little data.
pub fn forecast(summary: &Summary) -> Forecast {
    let daily: Vec<Money> = summary.daily.iter().map(|d| d.cost).collect();
    let window = daily.len().min(RUN_RATE_DAYS);
    let run_rate = |days: &[Money]| days.iter().sum::<Money>().mul_div(DAYS_PER_MONTH, window as i64);
    let monthly_run_rate = run_rate(&daily[daily.len() - window..]);
    let previous_run_rate = run_rate(&daily[..window]);
    let trend_bp = if previous_run_rate > Money::ZERO {
        let change = i128::from((monthly_run_rate - previous_run_rate).micros()) * 10_000;
        Money::clamp(div_round_half_away(change, i128::from(previous_run_rate.micros()))).0
    } else {
        0
    };
    Forecast { days_observed: summary.days, monthly_run_rate, previous_run_rate, trend_bp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::demo_dataset;

    fn record(day: &str, feature: &str, model: &str, requests: u64, input: u64, cached: u64, output: u64) -> UsageRecord {
        UsageRecord {
            day: day.into(),
            provider: "openai".into(),
            model: model.into(),
            feature: feature.into(),
            project: "p".into(),
            requests,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cost: None,
            ..Default::default()
        }
    }

    #[test]
    fn billed_costs_are_compared_with_list_price() {
        // gpt-4o: 1M input + 0.1M output at list = $2.50 + $1.00 = $3.50; billed $2.80 (20 % off).
        let mut billed = record("2026-11-01", "chat", "gpt-4o", 1, 1_000_000, 0, 100_000);
        billed.cost = Some(Money(2_800_000));
        let mut unknown = record("2026-11-01", "chat", "in-house-llm", 1, 10, 0, 10);
        unknown.cost = Some(Money(5_000_000));
        let list_only = record("2026-11-01", "chat", "gpt-4o", 1, 1_000_000, 0, 0);
        let s = summarize(&[billed, unknown, list_only]);
        assert_eq!(s.billed.records, 1, "only catalog models can be compared");
        assert_eq!((s.billed.billed, s.billed.at_list_price), (Money(2_800_000), Money(3_500_000)));
        assert_eq!((s.billed.difference, s.billed.difference_bp), (Money(-700_000), Some(-2_000)));
        assert_eq!(s.total, Money(2_800_000 + 5_000_000 + 2_500_000), "billed costs count as billed");
        assert_eq!(s.unpriced_records, 0, "a billed cost prices an unknown model");
    }

    fn sum(groups: &[GroupTotal]) -> Money {
        groups.iter().map(|g| g.cost).sum()
    }

    #[test]
    fn totals_reconcile_exactly() {
        for seed in [0, 1, 42] {
            let s = summarize(&demo_dataset(seed));
            assert_eq!(s.total, sum(&s.by_model));
            assert_eq!(s.total, sum(&s.by_feature));
            assert_eq!(s.total, s.daily.iter().map(|d| d.cost).sum::<Money>());
            assert_eq!(s.total, demo_dataset(seed).iter().map(cost_of).sum::<Money>());
        }
    }

    #[test]
    fn demo_summary_is_realistic() {
        let s = summarize(&demo_dataset(0));
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
        let s = summarize(&records);
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
        let s = summarize(&records);
        let days: Vec<&str> = s.daily.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(days, ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]);
        assert_eq!(s.days, 4);
        assert_eq!(s.daily[1].cost, Money::ZERO);
    }

    #[test]
    fn empty_input_gives_empty_results() {
        let s = summarize(&[]);
        assert_eq!((s.days, s.total, s.from.as_str()), (0, Money::ZERO, ""));
        assert!(recommend(&[]).is_empty());
        assert_eq!(forecast(&s).monthly_run_rate, Money::ZERO);
    }

    #[test]
    fn downgrade_matches_hand_computation() {
        // One day: 1M input at $2.50 + 50k output at $10 = $3.00 on gpt-4o,
        // versus 1M at $0.15 + 50k at $0.60 = $0.18 on gpt-4o-mini.
        // A 30-day month: $90.00 -> $5.40, saving $84.60.
        let records = [record("2026-11-24", "ticket-classification", "gpt-4o", 1_000, 1_000_000, 0, 50_000)];
        let recs = recommend(&records);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        let r = &recs[0];
        assert_eq!(r.kind, RecommendationKind::ModelDowngrade);
        assert_eq!(r.target_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.current_monthly, Money(90_000_000));
        assert_eq!(r.projected_monthly, Money(5_400_000));
        assert_eq!(r.monthly_savings, Money(84_600_000));
        assert!(r.rationale.contains("$84.60"), "{}", r.rationale);
    }

    /// The one recommendation of `kind` in `recs`, if any.
    fn only(recs: &[Recommendation], kind: RecommendationKind) -> Option<&Recommendation> {
        let of_kind: Vec<_> = recs.iter().filter(|r| r.kind == kind).collect();
        assert!(of_kind.len() <= 1, "{of_kind:#?}");
        of_kind.first().copied()
    }

    #[test]
    fn right_sizing_steps_down_within_the_capabilities_and_the_token_shape() {
        // o3 (reasoning, tools, vision) with short answers: 1,000 requests, 2M input
        // (2,000 per request) and 100k output (100 per request): 2M × $2 + 100k × $8 = $4.80.
        // Same provider, reasoning models with the same flags: gpt-5 $3.50 (27 % cheaper: not
        // enough), o4-mini 2M × $1.10 + 100k × $4.40 = $2.64, gpt-5-mini $0.70, gpt-5-nano
        // $0.14. Short, not tiny, answers take the least drastic step: o4-mini.
        let short = [record("2026-11-24", "agent", "o3", 1_000, 2_000_000, 0, 100_000)];
        let r = only(&recommend(&short), RecommendationKind::ModelDowngrade).expect("a right-sizing").clone();
        assert_eq!(r.target_model.as_deref(), Some("o4-mini"));
        assert_eq!((r.current_monthly, r.projected_monthly), (Money(144_000_000), Money(79_200_000)));
        assert_eq!((r.monthly_savings, r.confidence), (Money(64_800_000), "low"));
        assert!(r.assumptions.len() >= 2 && r.how_to_apply.contains("o4-mini"), "{r:#?}");
        assert_eq!((r.rows.records, r.rows.requests, r.rows.from.as_str()), (1, 1_000, "2026-11-24"));

        // Tiny answers (20 tokens) go to the cheapest fitting model: gpt-5-nano,
        // 2M × $0.05 + 20k × $0.40 = $0.108 a day against 2M × $2 + 20k × $8 = $4.16.
        let tiny = [record("2026-11-24", "router", "o3", 1_000, 2_000_000, 0, 20_000)];
        let r = only(&recommend(&tiny), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert_eq!(r.target_model.as_deref(), Some("gpt-5-nano"));
        assert_eq!(r.monthly_savings, Money(124_800_000 - 3_240_000));

        // The context window decides: 70,000-token prompts (140,000 with headroom) do not fit
        // gpt-4o-mini's 128,000, so the classifier moves to gpt-4.1-nano (1M window):
        // 70M × $0.10 + 10k × $0.40 = $7.004 a day against 70M × $2.50 + 10k × $10 = $175.10.
        let long = [record("2026-11-24", "classifier", "gpt-4o", 1_000, 70_000_000, 0, 10_000)];
        let r = only(&recommend(&long), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert_eq!(r.target_model.as_deref(), Some("gpt-4.1-nano"));
        assert_eq!(r.projected_monthly, Money(210_120_000));

        // No recommendation: nothing cheaper fits gpt-4.1-nano (the reasoning gpt-5-nano is
        // not a like-for-like swap); long answers stay where they are.
        let cheapest = [record("2026-11-24", "tagger", "gpt-4.1-nano", 1_000, 1_000_000, 0, 10_000)];
        assert_eq!(only(&recommend(&cheapest), RecommendationKind::ModelDowngrade), None);
        let long_answers = [record("2026-11-24", "writer", "o3", 1_000, 500_000, 0, 400_000)];
        assert_eq!(only(&recommend(&long_answers), RecommendationKind::ModelDowngrade), None);
    }

    #[test]
    fn output_caps_match_hand_computation() {
        // gpt-4.1, 100 answers of 1,000 tokens on 500-token prompts: 50k × $2 + 100k × $8 =
        // $0.90 a day, 89 % of it output. A 20 % cut: 80k × $8 + $0.10 = $0.74.
        // A 30-day month: $27.00 -> $22.20.
        let records = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, 50_000, 0, 100_000)];
        let recs = recommend(&records);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        let r = &recs[0];
        assert_eq!(r.kind, RecommendationKind::OutputCap);
        assert_eq!(
            (r.current_monthly, r.projected_monthly, r.monthly_savings),
            (Money(27_000_000), Money(22_200_000), Money(4_800_000))
        );
        assert!(r.how_to_apply.contains("max_tokens") && r.how_to_apply.contains("800"), "{}", r.how_to_apply);

        // No recommendation: 500-token answers are under the threshold.
        let medium = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, 50_000, 0, 50_000)];
        assert!(recommend(&medium).is_empty());
        // Nor where output is a third of the cost: 20k-token prompts, 80 % of them cached:
        // 400k × $2 + 1.6M × $0.50 + 100k × $8 = $2.40, $0.80 of it output.
        let input_heavy = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, 2_000_000, 1_600_000, 100_000)];
        assert!(recommend(&input_heavy).is_empty(), "{:#?}", recommend(&input_heavy));
    }

    #[test]
    fn duplicate_requests_match_hand_computation() {
        // gpt-4o-mini, 100 requests a day: 100k × $0.15 + 50k × $0.60 = $0.045. On the second
        // day 25 of them repeat an earlier request: that day costs $0.045 × 75/100 = $0.03375.
        // Two days, $0.09 -> $0.07875; a 30-day month $1.35 -> $1.18125 (12.5 % repeats: high).
        let day1 = record("2026-11-23", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000);
        let day2 = UsageRecord { repeat_requests: 25, ..record("2026-11-24", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000) };
        let recs = recommend(&[day1.clone(), day2]);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        let r = &recs[0];
        assert_eq!(r.kind, RecommendationKind::DeduplicateRequests);
        assert_eq!(
            (r.current_monthly, r.projected_monthly, r.monthly_savings),
            (Money(1_350_000), Money(1_181_250), Money(168_750))
        );
        assert_eq!(
            (r.confidence, r.rows.records, r.rows.from.as_str(), r.rows.to.as_str()),
            ("high", 2, "2026-11-23", "2026-11-24")
        );

        // No recommendation: 1 repeat in 200 requests is under 2 %; without hashes, nothing.
        let few = UsageRecord { repeat_requests: 1, ..record("2026-11-24", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000) };
        assert!(recommend(&[day1.clone(), few]).is_empty());
        assert!(recommend(&[day1]).is_empty());
    }

    #[test]
    fn every_recommendation_says_what_it_assumes_which_rows_and_how() {
        for r in recommend(&demo_dataset(0)) {
            assert!(!r.assumptions.is_empty() && !r.how_to_apply.is_empty(), "{r:#?}");
            assert_eq!((r.rows.feature.as_str(), r.rows.model.as_str()), (r.feature.as_str(), r.model.as_str()));
            assert_eq!((r.rows.from.as_str(), r.rows.to.as_str(), r.rows.records), ("2026-10-26", "2026-11-24", 30));
            assert!(!r.how_to_apply.contains('$'), "figures belong to the tool results: {}", r.how_to_apply);
        }
    }

    #[test]
    fn stacked_recommendations_never_count_the_same_dollars_twice() {
        // A nightly batch job with long answers and repeats: batch (50 %), an output cap and a
        // response cache all apply to the same dollars; combined they compound.
        let r = UsageRecord { repeat_requests: 30, ..record("2026-11-24", "nightly-essays", "gpt-4.1", 100, 50_000, 0, 100_000) };
        let recs = recommend(&[r]);
        let kinds: std::collections::BTreeSet<_> = recs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), 3, "{recs:#?}");
        let current = recs[0].current_monthly; // $27.00
                                               // Batch 50 %, repeats 30 %, cap 4.80/27: 27 × 0.5 × 0.7 × (1 − 4.8/27) = $7.77 left.
        let left = Money(27_000_000).mul_div(50, 100).mul_div(70, 100).mul_div(27_000_000 - 4_800_000, 27_000_000);
        assert_eq!(total_savings(&recs), current - left);
        assert!(total_savings(&recs) < recs.iter().map(|r| r.monthly_savings).sum());
    }

    #[test]
    fn caching_and_batch_match_hand_computation() {
        // Two days of a nightly job: 2,000 requests, 4M input (none cached) and
        // 400k output (200 per request, too long for a downgrade): $14.00.
        // Caching: 2.4M at $1.25 + 1.6M at $2.50 + output $4.00 = $11.00.
        // Batch: half of $14.00. Both savings are scaled by 30/2.
        let records = [
            record("2026-11-23", "nightly-report", "gpt-4o", 1_000, 2_000_000, 0, 200_000),
            record("2026-11-24", "nightly-report", "gpt-4o", 1_000, 2_000_000, 0, 200_000),
        ];
        let recs = recommend(&records);
        let kinds: Vec<_> = recs.iter().map(|r| (r.kind, r.monthly_savings)).collect();
        assert_eq!(
            kinds,
            [(RecommendationKind::BatchApi, Money(105_000_000)), (RecommendationKind::PromptCaching, Money(45_000_000)),]
        );
        assert!(recs.iter().all(|r| r.current_monthly == Money(210_000_000)));
        assert!(recs.iter().all(|r| r.rationale.contains("independently")));
        // Sequentially: batch leaves $105, caching then cuts 3/14 of it ($22.50).
        assert_eq!(total_savings(&recs), Money(127_500_000));
    }

    #[test]
    fn savings_equal_current_minus_projected() {
        for seed in [0, 3, 99] {
            for r in recommend(&demo_dataset(seed)) {
                assert_eq!(r.monthly_savings, r.current_monthly - r.projected_monthly);
                assert!(r.monthly_savings > Money::ZERO);
            }
        }
    }

    #[test]
    fn demo_recommendations_tell_the_intended_story() {
        let recs = recommend(&demo_dataset(0));
        let found: Vec<(&str, RecommendationKind)> = recs.iter().map(|r| (r.feature.as_str(), r.kind)).collect();
        for expected in [
            ("ticket-classification", RecommendationKind::ModelDowngrade),
            ("support-chat", RecommendationKind::PromptCaching),
            ("nightly-summaries", RecommendationKind::BatchApi),
        ] {
            assert!(found.contains(&expected), "{expected:?} missing from {found:?}");
        }
        assert!(!found.iter().any(|(f, _)| *f == "code-review" || *f == "search-embeddings"));
        assert!(recs.windows(2).all(|w| w[0].monthly_savings >= w[1].monthly_savings));
    }

    #[test]
    fn total_savings_never_exceeds_cost() {
        for seed in 0..10 {
            let records = demo_dataset(seed);
            let recs = recommend(&records);
            let combined = total_savings(&recs);
            let naive: Money = recs.iter().map(|r| r.monthly_savings).sum();
            let monthly_total = summarize(&records).total; // 30 days: already monthly
            assert!(combined <= naive && combined > Money::ZERO);
            assert!(combined <= monthly_total);
        }
    }

    #[test]
    fn total_savings_caps_each_feature_at_its_cost() {
        let rec = |kind, savings| Recommendation {
            kind,
            title: String::new(),
            feature: "f".into(),
            model: "gpt-4o".into(),
            target_model: None,
            current_monthly: Money(100),
            projected_monthly: Money(100) - savings,
            monthly_savings: savings,
            rationale: String::new(),
            confidence: "low",
            assumptions: Vec::new(),
            rows: RowsConcerned::default(),
            how_to_apply: String::new(),
        };
        let recs = [rec(RecommendationKind::ModelDowngrade, Money(90)), rec(RecommendationKind::BatchApi, Money(90))];
        assert_eq!(total_savings(&recs), Money(99));
        assert_eq!(total_savings(&[]), Money::ZERO);
    }

    #[test]
    fn forecast_follows_the_trend() {
        let rising: Vec<UsageRecord> =
            (1..=14).map(|d| record(&format!("2026-03-{d:02}"), "f", "gpt-4o", 1, 1_000_000 * d, 0, 0)).collect();
        let up = forecast(&summarize(&rising));
        // First week averages $10 a day ($300/month), last week $27.50 ($825).
        assert_eq!(up.previous_run_rate, Money(300_000_000));
        assert_eq!(up.monthly_run_rate, Money(825_000_000));
        assert_eq!(up.trend_bp, 17_500);
        assert_eq!(up.days_observed, 14);

        let falling: Vec<UsageRecord> =
            rising.iter().map(|r| UsageRecord { input_tokens: 15_000_000 - r.input_tokens, ..r.clone() }).collect();
        assert!(forecast(&summarize(&falling)).trend_bp < 0);
        assert!(forecast(&summarize(&demo_dataset(0))).trend_bp > 0);
    }
}

//! How to spend less: each rule looks at one feature's usage on one model and drafts a
//! recommendation; `recommend` prices the drafts per 30-day month, notes where they overlap
//! and sorts them, and `total_savings` combines them without double counting.
//!
//! A rule is one file here and one entry in `RULES`.

mod batch_api;
mod deduplicate_requests;
mod model_downgrade;
mod output_cap;
mod prompt_caching;

use std::collections::BTreeMap;

use super::summary::daily_totals;
use super::DAYS_PER_MONTH;
use crate::money::{div_round_half_away, group_thousands, Money};
use crate::prices::{Price, PriceBook};
use crate::records::{cost_of, list_cost, UsageRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
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

/// How likely a recommendation is to hold without hurting what the usage buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        })
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    pub confidence: Confidence,
    /// What the projection takes for granted.
    pub assumptions: Vec<String>,
    /// The usage rows it concerns.
    pub rows: RowsConcerned,
    /// How to make the change.
    pub how_to_apply: String,
}

/// The usage rows a recommendation concerns: one feature on one model, over the days seen.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowsConcerned {
    pub feature: String,
    pub model: String,
    pub from: String,
    pub to: String,
    /// Usage rows (daily sums) and the requests they stand for.
    pub records: u64,
    pub requests: u64,
}

/// One rule: a draft recommendation for a feature's usage of one model, if it applies.
type Rule = fn(&FeatureUsage) -> Option<Draft>;

/// Every rule, in the order their drafts are made.
const RULES: [Rule; 5] =
    [model_downgrade::draft, prompt_caching::draft, batch_api::draft, output_cap::draft, deduplicate_requests::draft];

/// Savings opportunities found in the records, largest first, priced with `prices` (today's
/// cost and every alternative alike).
///
/// Each recommendation is priced on its own against today's spend; when a
/// feature gets several, their savings overlap (use `total_savings`).
pub fn recommend(prices: &PriceBook, records: &[UsageRecord]) -> Vec<Recommendation> {
    let costed: Vec<(&UsageRecord, Money)> = records.iter().map(|r| (r, cost_of(prices, r))).collect();
    let days = daily_totals(&costed).len() as i64;
    let mut recs: Vec<Recommendation> = feature_usage(prices, records)
        .iter()
        .flat_map(|u| RULES.iter().filter_map(|rule| rule(u)).map(move |draft| draft.finish(u, days)))
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
    /// The book the usage is priced with; alternatives are looked up in it too.
    prices: &'a PriceBook,
    feature: &'a str,
    price: &'a Price,
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
fn feature_usage<'a>(prices: &'a PriceBook, records: &'a [UsageRecord]) -> Vec<FeatureUsage<'a>> {
    let mut groups: BTreeMap<(&str, &str), FeatureUsage<'a>> = BTreeMap::new();
    for r in records {
        let Some(price) = prices.price_for(&r.model) else {
            continue;
        };
        let u = groups.entry((&r.feature, &price.model)).or_insert_with(|| FeatureUsage {
            prices,
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
        u.current += list_cost(prices, r);
    }
    groups.into_values().collect()
}

/// A recommendation before its monthly figures are worked out.
struct Draft {
    kind: RecommendationKind,
    title: String,
    /// Catalog name of the model to move to.
    target: Option<String>,
    /// Cost of the covered days had the change been in place.
    projected: Money,
    why: String,
    confidence: Confidence,
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
             per 30-day month {current_monthly} → {projected_monthly}, saving {monthly_savings}.",
            self.why, self.projected, u.current,
        );
        let days_seen = |pick: fn(&str, &str) -> bool| {
            u.records.iter().map(|r| r.day.as_str()).reduce(|a, b| if pick(a, b) { a } else { b }).unwrap_or("")
        };
        Recommendation {
            kind: self.kind,
            title: self.title,
            feature: u.feature.to_owned(),
            model: u.price.model.to_string(),
            target_model: self.target,
            current_monthly,
            projected_monthly,
            monthly_savings,
            rationale,
            confidence: self.confidence,
            assumptions: self.assumptions,
            rows: RowsConcerned {
                feature: u.feature.to_owned(),
                model: u.price.model.to_string(),
                from: days_seen(|a, b| a <= b).to_owned(),
                to: days_seen(|a, b| a >= b).to_owned(),
                records: u.records.len() as u64,
                requests: u.requests,
            },
            how_to_apply: self.how,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summarize;
    use crate::analysis::testing::record;
    use crate::prices::PriceBook;
    use crate::records::demo_dataset;

    #[test]
    fn every_recommendation_says_what_it_assumes_which_rows_and_how() {
        for r in recommend(PriceBook::catalog(), &demo_dataset(0)) {
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
        let recs = recommend(PriceBook::catalog(), &[r]);
        let kinds: std::collections::BTreeSet<_> = recs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), 3, "{recs:#?}");
        assert!(recs.iter().all(|r| r.rationale.contains("the 2 other recommendations for nightly-essays")), "{recs:#?}");
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
        let recs = recommend(PriceBook::catalog(), &records);
        let kinds: Vec<_> = recs.iter().map(|r| (r.kind, r.monthly_savings)).collect();
        assert_eq!(
            kinds,
            [(RecommendationKind::BatchApi, Money(105_000_000)), (RecommendationKind::PromptCaching, Money(45_000_000)),]
        );
        assert!(recs.iter().all(|r| r.current_monthly == Money(210_000_000)));
        assert!(recs.iter().all(|r| r.rationale.contains("independently of the 1 other recommendation for nightly-report;")));
        // Sequentially: batch leaves $105, caching then cuts 3/14 of it ($22.50).
        assert_eq!(total_savings(&recs), Money(127_500_000));
    }

    #[test]
    fn savings_equal_current_minus_projected() {
        for seed in [0, 3, 99] {
            for r in recommend(PriceBook::catalog(), &demo_dataset(seed)) {
                assert_eq!(r.monthly_savings, r.current_monthly - r.projected_monthly);
                assert!(r.monthly_savings > Money::ZERO);
            }
        }
    }

    #[test]
    fn demo_recommendations_tell_the_intended_story() {
        let recs = recommend(PriceBook::catalog(), &demo_dataset(0));
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
            let recs = recommend(PriceBook::catalog(), &records);
            let combined = total_savings(&recs);
            let naive: Money = recs.iter().map(|r| r.monthly_savings).sum();
            let monthly_total = summarize(PriceBook::catalog(), &records).total; // 30 days: already monthly
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
            confidence: Confidence::Low,
            assumptions: Vec::new(),
            rows: RowsConcerned::default(),
            how_to_apply: String::new(),
        };
        let recs = [rec(RecommendationKind::ModelDowngrade, Money(90)), rec(RecommendationKind::BatchApi, Money(90))];
        assert_eq!(total_savings(&recs), Money(99));
        assert_eq!(total_savings(&[]), Money::ZERO);
    }

    #[test]
    fn confidence_reads_as_a_word() {
        assert_eq!([Confidence::High, Confidence::Medium, Confidence::Low].map(|c| c.to_string()), ["high", "medium", "low"]);
    }

    #[test]
    fn savings_of_a_feature_that_costs_nothing_are_nothing() {
        let free = Recommendation {
            kind: RecommendationKind::BatchApi,
            title: String::new(),
            feature: "f".into(),
            model: "gpt-4o".into(),
            target_model: None,
            current_monthly: Money(-100),
            projected_monthly: Money(-150),
            monthly_savings: Money(50),
            rationale: String::new(),
            confidence: Confidence::Low,
            assumptions: Vec::new(),
            rows: RowsConcerned::default(),
            how_to_apply: String::new(),
        };
        assert_eq!(total_savings(&[free]), Money::ZERO);
    }

    #[test]
    fn equal_savings_are_ordered_by_feature() {
        let records = [
            record("2026-11-24", "b-labels", "gpt-4o", 1_000, 1_000_000, 0, 10_000),
            record("2026-11-24", "a-labels", "gpt-4o", 1_000, 1_000_000, 0, 10_000),
        ];
        let recs = recommend(PriceBook::catalog(), &records);
        let features: Vec<&str> = recs.iter().map(|r| r.feature.as_str()).collect();
        assert_eq!(features, ["a-labels", "b-labels"]);
    }
}

//! What the agents' tools ask of a set of usage records: where the money
//! goes (`summarize`), how to spend less (`recommend`, `total_savings`) and
//! where spend is heading (`forecast`).
//!
//! Every figure is derived from the records with integer money, so totals
//! reconcile to the micro-dollar and the same records always give the same
//! answer.

mod change;
mod forecast;
mod recommend;
mod summary;

pub use change::{explain_change, spike_day, Change, Mover};
pub use forecast::{budget_run_out, forecast, BudgetRunOut, Forecast};
pub use recommend::{recommend, total_savings, Confidence, Recommendation, RecommendationKind};
pub(crate) use summary::model_key;
pub use summary::{breakdown, summarize, top_groups, BilledVsList, DailyTotal, GroupBy, GroupTotal, Summary};

/// Monthly figures are normalised to a 30-day month from the covered days.
pub(crate) const DAYS_PER_MONTH: i64 = 30;

/// Usage records and lookups the tests of every part share.
#[cfg(test)]
mod testing {
    use super::{Recommendation, RecommendationKind};
    use crate::money::Money;
    use crate::records::UsageRecord;

    pub(super) fn record(
        day: &str,
        feature: &str,
        model: &str,
        requests: u64,
        input: u64,
        cached: u64,
        output: u64,
    ) -> UsageRecord {
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

    pub(super) fn billed(day: &str, feature: &str, usd: i64) -> UsageRecord {
        UsageRecord { cost: Some(Money(usd * 1_000_000)), ..record(day, feature, "gpt-4o", 1, 0, 0, 0) }
    }

    /// The one recommendation of `kind` in `recs`, if any.
    pub(super) fn only(recs: &[Recommendation], kind: RecommendationKind) -> Option<&Recommendation> {
        let of_kind: Vec<_> = recs.iter().filter(|r| r.kind == kind).collect();
        assert!(of_kind.len() <= 1, "{of_kind:#?}");
        of_kind.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::prices::PriceBook;

    #[test]
    fn empty_input_gives_empty_results() {
        let s = summarize(PriceBook::catalog(), &[]);
        assert_eq!((s.days, s.total, s.from.as_str()), (0, Money::ZERO, ""));
        assert!(recommend(PriceBook::catalog(), &[]).is_empty());
        assert_eq!(forecast(&s).monthly_run_rate, Money::ZERO);
    }
}

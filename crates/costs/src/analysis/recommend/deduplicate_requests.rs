//! Identical requests sent again: a response cache answers them.

use super::{Confidence, Draft, FeatureUsage, RecommendationKind};
use crate::money::{div_round_half_away, group_thousands};
use crate::records::list_cost;

/// Repeats below this share of requests are not worth a cache.
const DEDUP_MIN_REPEAT_PCT: u64 = 2;
/// At or above this share, the repeats are a pattern, not an accident.
const DEDUP_HIGH_REPEAT_PCT: u64 = 10;

/// Identical requests sent again (same request hash): a response cache answers them.
pub(super) fn draft(u: &FeatureUsage) -> Option<Draft> {
    if u.repeats == 0 || u.repeats * 100 < u.requests * DEDUP_MIN_REPEAT_PCT {
        return None;
    }
    // Each row's repeats at that row's average cost per request.
    let projected = u.reprice(|r| {
        let repeats = r.repeat_requests.min(r.requests);
        list_cost(u.prices, r).mul_div((r.requests - repeats) as i64, r.requests.max(1) as i64)
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
        confidence: if pct >= DEDUP_HIGH_REPEAT_PCT { Confidence::High } else { Confidence::Medium },
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

#[cfg(test)]
mod tests {
    use crate::analysis::recommend::{recommend, Confidence, RecommendationKind};
    use crate::analysis::testing::{only, record};
    use crate::money::Money;
    use crate::prices::PriceBook;
    use crate::records::UsageRecord;

    #[test]
    fn duplicate_requests_match_hand_computation() {
        // gpt-4o-mini, 100 requests a day: 100k × $0.15 + 50k × $0.60 = $0.045. On the second
        // day 25 of them repeat an earlier request: that day costs $0.045 × 75/100 = $0.03375.
        // Two days, $0.09 -> $0.07875; a 30-day month $1.35 -> $1.18125 (12.5 % repeats: high).
        let day1 = record("2026-11-23", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000);
        let day2 = UsageRecord { repeat_requests: 25, ..record("2026-11-24", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000) };
        let recs = recommend(PriceBook::catalog(), &[day1.clone(), day2]);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        let r = &recs[0];
        assert_eq!(r.kind, RecommendationKind::DeduplicateRequests);
        assert_eq!(
            (r.current_monthly, r.projected_monthly, r.monthly_savings),
            (Money(1_350_000), Money(1_181_250), Money(168_750))
        );
        assert_eq!(
            (r.confidence, r.rows.records, r.rows.from.as_str(), r.rows.to.as_str()),
            (Confidence::High, 2, "2026-11-23", "2026-11-24")
        );

        // No recommendation: 1 repeat in 200 requests is under 2 %; without hashes, nothing.
        let few = UsageRecord { repeat_requests: 1, ..record("2026-11-24", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000) };
        assert!(recommend(PriceBook::catalog(), &[day1.clone(), few]).is_empty());
        assert!(recommend(PriceBook::catalog(), &[day1]).is_empty());
    }

    #[test]
    fn repeats_count_from_two_percent_and_are_certain_from_ten() {
        let dedup = |repeats: u64| {
            let day1 = record("2026-11-23", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000);
            let day2 = UsageRecord {
                repeat_requests: repeats,
                ..record("2026-11-24", "faq-bot", "gpt-4o-mini", 100, 100_000, 0, 50_000)
            };
            only(&recommend(PriceBook::catalog(), &[day1, day2]), RecommendationKind::DeduplicateRequests)
                .map(|r| (r.confidence, r.rationale.clone()))
        };
        assert_eq!(dedup(3), None, "1.5 %");
        let (confidence, why) = dedup(4).expect("2 %");
        assert_eq!(confidence, Confidence::Medium);
        assert!(why.contains("4 of those requests (2%)"), "{why}");
        assert_eq!(dedup(18).unwrap().0, Confidence::Medium, "9 %");
        assert_eq!(dedup(20).unwrap().0, Confidence::High);
    }
}

//! Long prompts that mostly miss the provider's prompt cache.

use super::{Confidence, Draft, FeatureUsage, RecommendationKind};
use crate::prices::{rate_label, TokenUse};

/// Caching pays off only for long prompts that mostly miss the cache today.
const CACHING_MIN_INPUT_TOKENS: u64 = 1_000;
const CACHING_MAX_CACHED_PCT: u64 = 30;
/// Conservative hit rate once a stable prompt prefix is in place.
const CACHING_ASSUMED_CACHED_PCT: u64 = 60;

/// Long prompts that mostly miss the cache: assume a stable prefix gets
/// `CACHING_ASSUMED_CACHED_PCT` of input served from cache.
pub(super) fn draft(u: &FeatureUsage) -> Option<Draft> {
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
        confidence: Confidence::Medium,
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

#[cfg(test)]
mod tests {
    use crate::analysis::recommend::{recommend, RecommendationKind};
    use crate::analysis::testing::{only, record};
    use crate::prices::PriceBook;
    use crate::records::UsageRecord;

    #[test]
    fn caching_needs_prompts_over_a_thousand_tokens_that_mostly_miss_the_cache() {
        let caching = |input: u64, cached: u64| {
            let records = [record("2026-11-24", "chat", "gpt-4o", 1_000, input, cached, 300_000)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::PromptCaching).cloned()
        };
        assert_eq!(caching(1_000_000, 0), None, "1,000 tokens per prompt is not long");
        assert!(caching(1_001_000, 0).is_some());
        assert_eq!(caching(2_000_000, 600_000), None, "30 % cached already");
        let r = caching(2_000_000, 599_000).expect("under 30 % cached");
        assert!(!r.rationale.contains("Cache-write") && !r.how_to_apply.contains("cache_control"), "{r:#?}");
        let claude = UsageRecord {
            provider: "anthropic".into(),
            ..record("2026-11-24", "chat", "claude-3-5-sonnet", 1_000, 2_000_000, 0, 300_000)
        };
        let r = only(&recommend(PriceBook::catalog(), &[claude]), RecommendationKind::PromptCaching).unwrap().clone();
        assert!(r.rationale.contains("Cache-write surcharges are not included."), "{}", r.rationale);
        assert!(r.how_to_apply.contains("cache_control"), "{}", r.how_to_apply);
    }

    #[test]
    fn the_rationale_describes_the_traffic_it_was_computed_from() {
        let records = [record("2026-11-24", "chat", "gpt-4o", 1_000, 2_000_000, 500_000, 300_000)];
        let r = only(&recommend(PriceBook::catalog(), &records), RecommendationKind::PromptCaching).unwrap().clone();
        assert!(
            r.rationale.starts_with(
                "chat made 1,000 requests averaging 2,000 input (25% cached) and 300 output tokens on gpt-4o \
                 ($2.50 in / $10.00 out per 1M tokens)."
            ),
            "{}",
            r.rationale
        );
    }

    #[test]
    fn no_caching_advice_where_the_cache_costs_what_input_does() {
        // sonar-deep-research bills cached input at the input rate: caching saves nothing.
        let records = [UsageRecord {
            provider: "perplexity".into(),
            ..record("2026-11-24", "research", "sonar-deep-research", 1_000, 2_000_000, 0, 300_000)
        }];
        assert_eq!(only(&recommend(PriceBook::catalog(), &records), RecommendationKind::PromptCaching), None);
    }

    #[test]
    fn rows_without_requests_get_no_caching_advice() {
        let records = [record("2026-11-24", "chat", "gpt-4o", 0, 2_000_000, 0, 300_000)];
        assert_eq!(only(&recommend(PriceBook::catalog(), &records), RecommendationKind::PromptCaching), None);
    }
}

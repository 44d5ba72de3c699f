//! Long answers where output is most of the cost: a cap on output length.

use super::{Confidence, Draft, FeatureUsage, RecommendationKind};
use crate::money::{group_thousands, Money};
use crate::prices::TokenUse;

/// Output-length caps: answers this long on average, where output is most of the cost,
/// are assumed to lose `OUTPUT_CAP_CUT_PCT` of their tokens under a cap.
const OUTPUT_CAP_MIN_TOKENS: u64 = 600;
const OUTPUT_CAP_MIN_SHARE_PCT: i64 = 50;
const OUTPUT_CAP_CUT_PCT: u64 = 20;

/// Long answers where output is most of the cost: a cap on output length.
pub(super) fn draft(u: &FeatureUsage) -> Option<Draft> {
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
        confidence: Confidence::Low,
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

#[cfg(test)]
mod tests {
    use crate::analysis::recommend::{recommend, RecommendationKind};
    use crate::analysis::testing::{only, record};
    use crate::money::Money;
    use crate::prices::PriceBook;

    #[test]
    fn output_caps_match_hand_computation() {
        // gpt-4.1, 100 answers of 1,000 tokens on 500-token prompts: 50k × $2 + 100k × $8 =
        // $0.90 a day, 89 % of it output. A 20 % cut: 80k × $8 + $0.10 = $0.74.
        // A 30-day month: $27.00 -> $22.20.
        let records = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, 50_000, 0, 100_000)];
        let recs = recommend(PriceBook::catalog(), &records);
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
        assert!(recommend(PriceBook::catalog(), &medium).is_empty());
        // Nor where output is a third of the cost: 20k-token prompts, 80 % of them cached:
        // 400k × $2 + 1.6M × $0.50 + 100k × $8 = $2.40, $0.80 of it output.
        let input_heavy = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, 2_000_000, 1_600_000, 100_000)];
        assert!(recommend(PriceBook::catalog(), &input_heavy).is_empty(), "{:#?}", recommend(PriceBook::catalog(), &input_heavy));
    }

    #[test]
    fn output_caps_start_at_six_hundred_tokens_per_answer() {
        let cap = |output: u64| {
            let records = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, 5_000, 0, output)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::OutputCap).cloned()
        };
        assert_eq!(cap(59_900), None);
        let r = cap(60_000).expect("600 tokens per answer");
        assert!(r.how_to_apply.contains("about 480 on"), "{}", r.how_to_apply);
    }

    #[test]
    fn output_caps_start_where_output_is_half_the_cost() {
        // gpt-4.1 at $2 in and $8 out: 600-token answers on 2,400-token prompts cost as much
        // in output as in input (50 %), on 2,401-token prompts a little less (49 %).
        let cap = |input: u64| {
            let records = [record("2026-11-24", "essay-writer", "gpt-4.1", 100, input, 0, 60_000)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::OutputCap).cloned()
        };
        let r = cap(240_000).expect("output is half the cost");
        assert!(r.rationale.contains("Output is 50% of its cost"), "{}", r.rationale);
        assert_eq!(cap(240_100), None);
    }

    #[test]
    fn a_cap_shortens_the_reasoning_as_well_as_the_answer() {
        // sonar-deep-research bills reasoning apart: $2 in, $8 out, $3 reasoning. 100 answers
        // of 1,000 tokens, half of them reasoning, on 100-token prompts: 10k × $2 + 50k × $8 +
        // 50k × $3 = $0.57 a day. Cut by 20 %: 40k × $8 + 40k × $3 + $0.02 = $0.46.
        let records = [crate::records::UsageRecord {
            provider: "perplexity".into(),
            reasoning_tokens: 50_000,
            ..record("2026-11-24", "research", "sonar-deep-research", 100, 10_000, 0, 100_000)
        }];
        let r = only(&recommend(PriceBook::catalog(), &records), RecommendationKind::OutputCap).expect("a cap").clone();
        assert_eq!((r.current_monthly, r.projected_monthly), (Money(17_100_000), Money(13_800_000)));
    }

    #[test]
    fn rows_without_requests_get_no_cap() {
        let records = [record("2026-11-24", "essay-writer", "gpt-4.1", 0, 50_000, 0, 100_000)];
        assert_eq!(only(&recommend(PriceBook::catalog(), &records), RecommendationKind::OutputCap), None);
    }
}

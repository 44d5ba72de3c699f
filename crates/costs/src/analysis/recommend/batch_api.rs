//! Work nobody waits on: the provider's batch API bills it at a discount.

use super::{Confidence, Draft, FeatureUsage, RecommendationKind};
use crate::prices::TokenUse;

/// Feature names that mark work nobody waits on. "summar" is weaker evidence
/// (summaries can be interactive), so it earns less confidence.
const OFFLINE_MARKERS: [(&str, Confidence); 3] =
    [("nightly", Confidence::High), ("batch", Confidence::High), ("summar", Confidence::Medium)];

/// Work nobody waits on: the provider's batch API bills it at a discount.
pub(super) fn draft(u: &FeatureUsage) -> Option<Draft> {
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
        confidence: *confidence,
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

#[cfg(test)]
mod tests {
    use crate::analysis::recommend::{recommend, Confidence, RecommendationKind};
    use crate::analysis::testing::{only, record};
    use crate::prices::PriceBook;

    #[test]
    fn offline_work_is_named_so_and_summaries_are_less_certain() {
        let batch = |feature: &str| {
            let records = [record("2026-11-24", feature, "gpt-4o", 10, 30_000, 0, 3_000)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::BatchApi)
                .map(|r| (r.confidence, r.title.clone()))
        };
        assert_eq!(batch("Nightly-Digest"), Some((Confidence::High, "Run Nightly-Digest through the openai Batch API".into())));
        assert_eq!(batch("batch-tagging").map(|b| b.0), Some(Confidence::High));
        assert_eq!(batch("summarizer").map(|b| b.0), Some(Confidence::Medium));
        assert_eq!(batch("chat"), None);
    }
}

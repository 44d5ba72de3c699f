//! Right-sizing: a cheaper model that can do what the workload needs.

use super::{Confidence, Draft, FeatureUsage, RecommendationKind};
use crate::money::{group_thousands, Money};
use crate::prices::{Price, TokenUse};

/// Averages at or above this many output tokens per request suggest real
/// generation, where a smaller model is more likely to lose quality.
const SHORT_OUTPUT_TOKENS: u64 = 200;
/// Below this, outputs are labels or ids: the safest downgrade.
const TINY_OUTPUT_TOKENS: u64 = 50;
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

/// Right-sizing: short answers on an expensive model, moved to a cheaper model that can do
/// everything the current one can for this workload (capability flags, context window).
/// The family's smaller model is preferred; otherwise another model of the provider that
/// cuts the cost by at least `RIGHT_SIZING_MIN_CUT_PCT` — the cheapest for tiny outputs,
/// the least drastic step down for short ones.
pub(super) fn draft(u: &FeatureUsage) -> Option<Draft> {
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
    let sibling =
        u.prices.cheaper_sibling(&u.price.model).filter(|s| fits(s)).map(|s| (s, reprice(s))).filter(|(_, p)| *p < u.current);
    let (target, projected, same_family) = match sibling {
        Some((s, p)) => (s, p, true),
        None => {
            let mut options: Vec<(&Price, Money)> = RIGHT_SIZING_CANDIDATES
                .iter()
                .filter_map(|name| u.prices.price_for(name))
                .filter(|c| c.provider == u.price.provider && c.model != u.price.model && fits(c))
                .map(|c| (c, reprice(c)))
                .filter(|(_, p)| {
                    i128::from(p.micros()) * 100 <= i128::from(u.current.micros()) * i128::from(100 - RIGHT_SIZING_MIN_CUT_PCT)
                })
                .collect();
            options.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.model.cmp(&b.0.model)));
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
        target: Some(target.model.to_string()),
        projected,
        why,
        confidence: match (tiny, same_family) {
            (true, true) => Confidence::High,
            (false, false) => Confidence::Low,
            _ => Confidence::Medium,
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

#[cfg(test)]
mod tests {
    use crate::analysis::recommend::{recommend, Confidence, RecommendationKind};
    use crate::analysis::testing::{only, record};
    use crate::money::Money;
    use crate::prices::PriceBook;

    #[test]
    fn right_sizing_starts_from_the_negotiated_rate() {
        // The workload of `downgrade_matches_hand_computation`, with gpt-4o negotiated at
        // gpt-4o-mini's list price: a day is 1M × $0.15 + 50k × $0.60 = $0.18, so the family's
        // smaller model saves nothing and the step is to gpt-4.1-nano, 1M × $0.10 + 50k × $0.40
        // = $0.12 ($5.40 -> $3.60 a month) instead of the catalog's $84.60 to gpt-4o-mini.
        let records = [record("2026-11-24", "ticket-classification", "gpt-4o", 1_000, 1_000_000, 0, 50_000)];
        let catalog = PriceBook::catalog();
        let (gpt_4o, mini) = (catalog.price_for("gpt-4o").unwrap(), catalog.price_for("gpt-4o-mini").unwrap());
        let negotiated = PriceBook::with_overrides(vec![crate::Price {
            input_per_mtok: mini.input_per_mtok,
            output_per_mtok: mini.output_per_mtok,
            cached_input_per_mtok: mini.cached_input_per_mtok,
            cache_write_per_mtok: mini.cache_write_per_mtok,
            reasoning_per_mtok: mini.reasoning_per_mtok,
            ..gpt_4o.clone()
        }]);
        let list = only(&recommend(catalog, &records), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert_eq!((list.target_model.as_deref(), list.monthly_savings), (Some("gpt-4o-mini"), Money(84_600_000)));
        let ours = only(&recommend(&negotiated, &records), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert_eq!(ours.target_model.as_deref(), Some("gpt-4.1-nano"));
        assert_eq!(
            (ours.current_monthly, ours.projected_monthly, ours.monthly_savings),
            (Money(5_400_000), Money(3_600_000), Money(1_800_000))
        );
    }

    #[test]
    fn a_model_without_an_output_price_is_never_the_target() {
        // gpt-4.1-nano "negotiated" at $0.10 in and nothing out: a price that cannot be right
        // for a chat model, so it must not become the cheapest place to move to.
        let records = [record("2026-11-24", "ticket-classification", "gpt-4o", 1_000, 1_000_000, 0, 50_000)];
        let nano = PriceBook::catalog().price_for("gpt-4.1-nano").unwrap();
        let book = PriceBook::with_overrides(vec![crate::Price { output_per_mtok: Money::ZERO, ..nano.clone() }]);
        let target = only(&recommend(&book, &records), RecommendationKind::ModelDowngrade).and_then(|r| r.target_model.clone());
        assert_eq!(target.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn a_model_lacking_a_capability_of_the_current_one_is_never_the_target() {
        // gpt-4o calls tools and reads images: gpt-4o-mini, in a book where it does one but
        // not the other, cannot take over, and the step goes elsewhere.
        let records = [record("2026-11-24", "ticket-classification", "gpt-4o", 1_000, 1_000_000, 0, 50_000)];
        let mini = PriceBook::catalog().price_for("gpt-4o-mini").unwrap();
        for (tool_calling, vision) in [(false, true), (true, false)] {
            let capabilities = crate::Capabilities { tool_calling, vision, ..mini.capabilities };
            let book = PriceBook::with_overrides(vec![crate::Price { capabilities, ..mini.clone() }]);
            let target =
                only(&recommend(&book, &records), RecommendationKind::ModelDowngrade).and_then(|r| r.target_model.clone());
            assert!(target.is_some() && target.as_deref() != Some("gpt-4o-mini"), "{tool_calling} {vision}: {target:?}");
        }
    }

    #[test]
    fn a_model_of_unknown_context_takes_only_prompts_every_model_takes() {
        // claude-3-5-haiku's window is not in the catalog: it takes 3,900-token prompts
        // (7,800 with headroom, 7,900 with the answer: under 8,000), not 4,000-token ones.
        let target = |input_per_request: u64| {
            let records = [record("2026-11-24", "labels", "claude-3-5-sonnet", 1_000, input_per_request * 1_000, 0, 100_000)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::ModelDowngrade)
                .and_then(|r| r.target_model.clone())
        };
        assert_eq!(target(3_900).as_deref(), Some("claude-3-5-haiku"));
        assert_ne!(target(4_000).as_deref(), Some("claude-3-5-haiku"));
    }

    #[test]
    fn a_model_without_an_output_price_is_never_the_cheapest_step() {
        // o3 has no smaller sibling: tiny answers go to the cheapest fitting model, gpt-5-nano,
        // unless the book prices its output at nothing.
        let records = [record("2026-11-24", "router", "o3", 1_000, 2_000_000, 0, 20_000)];
        let nano = PriceBook::catalog().price_for("gpt-5-nano").unwrap();
        let book = PriceBook::with_overrides(vec![crate::Price { output_per_mtok: Money::ZERO, ..nano.clone() }]);
        let target = only(&recommend(&book, &records), RecommendationKind::ModelDowngrade).and_then(|r| r.target_model.clone());
        assert!(target.is_some() && target.as_deref() != Some("gpt-5-nano"), "{target:?}");
    }

    #[test]
    fn a_workload_that_reasons_moves_only_to_a_reasoning_model() {
        // The same short answers on gpt-4o, but some rows report reasoning tokens: the
        // family's smaller model (no reasoning) cannot take them.
        let rows = |reasoning: u64| {
            let plain = record("2026-11-24", "ticket-classification", "gpt-4o", 500, 500_000, 0, 25_000);
            [plain.clone(), crate::records::UsageRecord { reasoning_tokens: reasoning, ..plain }]
        };
        let target = |reasoning: u64| {
            only(&recommend(PriceBook::catalog(), &rows(reasoning)), RecommendationKind::ModelDowngrade)
                .and_then(|r| r.target_model.clone())
        };
        assert_eq!(target(0).as_deref(), Some("gpt-4o-mini"));
        let reasoning = target(5_000).expect("a reasoning model");
        assert!(PriceBook::catalog().price_for(&reasoning).unwrap().capabilities.reasoning, "{reasoning}");
    }

    #[test]
    fn downgrade_matches_hand_computation() {
        // One day: 1M input at $2.50 + 50k output at $10 = $3.00 on gpt-4o,
        // versus 1M at $0.15 + 50k at $0.60 = $0.18 on gpt-4o-mini.
        // A 30-day month: $90.00 -> $5.40, saving $84.60.
        let records = [record("2026-11-24", "ticket-classification", "gpt-4o", 1_000, 1_000_000, 0, 50_000)];
        let recs = recommend(PriceBook::catalog(), &records);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        let r = &recs[0];
        assert_eq!(r.kind, RecommendationKind::ModelDowngrade);
        assert_eq!(r.target_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.current_monthly, Money(90_000_000));
        assert_eq!(r.projected_monthly, Money(5_400_000));
        assert_eq!(r.monthly_savings, Money(84_600_000));
        assert!(r.rationale.contains("$84.60"), "{}", r.rationale);
    }

    #[test]
    fn right_sizing_steps_down_within_the_capabilities_and_the_token_shape() {
        // o3 (reasoning, tools, vision) with short answers: 1,000 requests, 2M input
        // (2,000 per request) and 100k output (100 per request): 2M × $2 + 100k × $8 = $4.80.
        // Same provider, reasoning models with the same flags: gpt-5 $3.50 (27 % cheaper: not
        // enough), o4-mini 2M × $1.10 + 100k × $4.40 = $2.64, gpt-5-mini $0.70, gpt-5-nano
        // $0.14. Short, not tiny, answers take the least drastic step: o4-mini.
        let short = [record("2026-11-24", "agent", "o3", 1_000, 2_000_000, 0, 100_000)];
        let r =
            only(&recommend(PriceBook::catalog(), &short), RecommendationKind::ModelDowngrade).expect("a right-sizing").clone();
        assert_eq!(r.target_model.as_deref(), Some("o4-mini"));
        assert_eq!((r.current_monthly, r.projected_monthly), (Money(144_000_000), Money(79_200_000)));
        assert_eq!((r.monthly_savings, r.confidence), (Money(64_800_000), Confidence::Low));
        assert!(r.assumptions.len() >= 2 && r.how_to_apply.contains("o4-mini"), "{r:#?}");
        assert_eq!((r.rows.records, r.rows.requests, r.rows.from.as_str()), (1, 1_000, "2026-11-24"));

        // Tiny answers (20 tokens) go to the cheapest fitting model: gpt-5-nano,
        // 2M × $0.05 + 20k × $0.40 = $0.108 a day against 2M × $2 + 20k × $8 = $4.16.
        let tiny = [record("2026-11-24", "router", "o3", 1_000, 2_000_000, 0, 20_000)];
        let r = only(&recommend(PriceBook::catalog(), &tiny), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert_eq!(r.target_model.as_deref(), Some("gpt-5-nano"));
        assert_eq!(r.monthly_savings, Money(124_800_000 - 3_240_000));

        // The context window decides: 70,000-token prompts (140,000 with headroom) do not fit
        // gpt-4o-mini's 128,000, so the classifier moves to gpt-4.1-nano (1M window):
        // 70M × $0.10 + 10k × $0.40 = $7.004 a day against 70M × $2.50 + 10k × $10 = $175.10.
        let long = [record("2026-11-24", "classifier", "gpt-4o", 1_000, 70_000_000, 0, 10_000)];
        let r = only(&recommend(PriceBook::catalog(), &long), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert_eq!(r.target_model.as_deref(), Some("gpt-4.1-nano"));
        assert_eq!(r.projected_monthly, Money(210_120_000));

        // No recommendation: nothing cheaper fits gpt-4.1-nano (the reasoning gpt-5-nano is
        // not a like-for-like swap); long answers stay where they are.
        let cheapest = [record("2026-11-24", "tagger", "gpt-4.1-nano", 1_000, 1_000_000, 0, 10_000)];
        assert_eq!(only(&recommend(PriceBook::catalog(), &cheapest), RecommendationKind::ModelDowngrade), None);
        let long_answers = [record("2026-11-24", "writer", "o3", 1_000, 500_000, 0, 400_000)];
        assert_eq!(only(&recommend(PriceBook::catalog(), &long_answers), RecommendationKind::ModelDowngrade), None);
    }

    #[test]
    fn short_answers_are_under_two_hundred_tokens_and_tiny_ones_under_fifty() {
        let downgrade = |output: u64| {
            let records = [record("2026-11-24", "labels", "gpt-4o", 1_000, 1_000_000, 0, output)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::ModelDowngrade).cloned()
        };
        assert_eq!(downgrade(200_000), None, "200 tokens per answer is not short");
        let short = downgrade(199_000).expect("199 tokens per answer is short");
        assert_eq!((short.target_model.as_deref(), short.confidence), (Some("gpt-4o-mini"), Confidence::Medium));
        assert_eq!(downgrade(50_000).unwrap().confidence, Confidence::Medium, "50 tokens is not tiny");
        let tiny = downgrade(49_000).unwrap();
        assert_eq!(tiny.confidence, Confidence::High, "tiny answers on the family's smaller model");
        assert!(
            tiny.rationale.contains("offers what gpt-4o does (tool calling, vision) with a 128,000-token context window"),
            "{}",
            tiny.rationale
        );
        assert!(!tiny.rationale.contains("independently"), "a lone recommendation overlaps nothing");
        let reasoning = [record("2026-11-24", "agent", "o3", 1_000, 2_000_000, 0, 100_000)];
        let r = only(&recommend(PriceBook::catalog(), &reasoning), RecommendationKind::ModelDowngrade).unwrap().clone();
        assert!(r.rationale.contains("offers what o3 does (tool calling, vision, reasoning)"), "{}", r.rationale);
        assert!(r.rationale.contains("a smaller model of the same provider"), "{}", r.rationale);
    }

    #[test]
    fn the_context_needed_is_twice_the_average_prompt_plus_the_answer() {
        // gpt-4o-mini's window is 128,000 tokens: 63,925-token prompts (127,850 with
        // headroom) and 150-token answers fill it exactly; 25 more prompt tokens do not fit.
        let target = |input_per_request: u64| {
            let records = [record("2026-11-24", "classifier", "gpt-4o", 1_000, input_per_request * 1_000, 0, 150_000)];
            only(&recommend(PriceBook::catalog(), &records), RecommendationKind::ModelDowngrade)
                .and_then(|r| r.target_model.clone())
        };
        assert_eq!(target(63_925).as_deref(), Some("gpt-4o-mini"));
        let past = target(63_950);
        assert!(past.is_some() && past.as_deref() != Some("gpt-4o-mini"), "{past:?}");
    }

    #[test]
    fn rows_without_requests_are_not_right_sized() {
        let records = [record("2026-11-24", "labels", "gpt-4o", 0, 1_000_000, 0, 0)];
        assert_eq!(only(&recommend(PriceBook::catalog(), &records), RecommendationKind::ModelDowngrade), None);
    }
}

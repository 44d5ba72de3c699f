//! Usage records (one row per day, model, feature and project, as provider
//! usage exports report them), their cost, and the built-in demo dataset the
//! tools analyse until real importers exist.

use crate::date;
use crate::money::Money;
use crate::prices::{PriceBook, TokenUse};

/// Token usage of one feature on one model for one day.
///
/// `Default` gives an empty record (no tokens, empty names and tags), for building
/// records field by field.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct UsageRecord {
    /// "YYYY-MM-DD".
    pub day: String,
    pub provider: String,
    pub model: String,
    pub feature: String,
    pub project: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The part of `input_tokens` served from the prompt cache.
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to the prompt cache (billed at the cache-write
    /// rate where the provider has one).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// The part of `output_tokens` spent on reasoning (billed at the reasoning rate where
    /// the provider has one).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Tags: the end user the requests were made for, the API key they used and the
    /// deployment environment. Empty when the source does not say.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub environment: String,
    /// Requests of this record identical to one made before (same request hash), which a
    /// response cache could have answered. 0 when the source gives no request hashes.
    #[serde(default)]
    pub repeat_requests: u64,
    /// What the source says this usage cost, when it says; the catalog price otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Money>,
}

/// What the record cost: the cost its source reported, else its price in `prices`.
/// Models `prices` does not know without a reported cost are `Money(0)` here;
/// `summarize` reports them as unpriced instead of guessing.
pub fn cost_of(prices: &PriceBook, r: &UsageRecord) -> Money {
    r.cost.unwrap_or_else(|| list_cost(prices, r))
}

/// The record at its price in `prices`: the negotiated rate where the book has one, else
/// the catalog's list price (zero for models neither knows).
pub fn list_cost(prices: &PriceBook, r: &UsageRecord) -> Money {
    prices.price_for(&r.model).map_or(Money::ZERO, |p| p.usage_cost(&TokenUse::of(r)))
}

/// Last day of the demo month.
const DEMO_LAST_DAY: (i64, u32, u32) = (2026, 11, 24);
const DEMO_DAYS: i64 = 30;

/// Growth per day in basis points: about +12% across the month, the mild
/// upward trend a growing product shows.
const DEMO_TREND_BP_PER_DAY: u64 = 40;

/// Day-to-day volume noise: ±15%, in basis points.
const DEMO_NOISE_BP: u64 = 1_500;

/// One feature's traffic on an average day at the start of the demo month,
/// with per-request token shapes chosen so each feature tells a story.
struct DemoFeature {
    feature: &'static str,
    project: &'static str,
    provider: &'static str,
    model: &'static str,
    requests: u64,
    input_per_request: u64,
    cached_per_request: u64,
    output_per_request: u64,
}

const DEMO_FEATURES: [DemoFeature; 5] = [
    // Long system prompt repeated on every turn, yet only 10% cache hits.
    DemoFeature {
        feature: "support-chat",
        project: "customer-support",
        provider: "openai",
        model: "gpt-4o",
        requests: 9_000,
        input_per_request: 2_400,
        cached_per_request: 240,
        output_per_request: 350,
    },
    // Emits a label: a few output tokens on a frontier model.
    DemoFeature {
        feature: "ticket-classification",
        project: "customer-support",
        provider: "openai",
        model: "gpt-4o",
        requests: 20_000,
        input_per_request: 600,
        cached_per_request: 0,
        output_per_request: 12,
    },
    // Runs overnight, nobody waits on it. Exports name the dated snapshot.
    DemoFeature {
        feature: "nightly-summaries",
        project: "analytics",
        provider: "anthropic",
        model: "claude-3-5-sonnet-20241022",
        requests: 1_500,
        input_per_request: 6_000,
        cached_per_request: 0,
        output_per_request: 500,
    },
    DemoFeature {
        feature: "search-embeddings",
        project: "search",
        provider: "openai",
        model: "text-embedding-3-small",
        requests: 200_000,
        input_per_request: 400,
        cached_per_request: 0,
        output_per_request: 0,
    },
    // Already well cached and needs long answers: nothing to recommend.
    DemoFeature {
        feature: "code-review",
        project: "engineering",
        provider: "openai",
        model: "gpt-4.1",
        requests: 800,
        input_per_request: 8_000,
        cached_per_request: 3_600,
        output_per_request: 900,
    },
];

/// Deterministic demo dataset: 30 consecutive days ending 2026-11-24 for five
/// features (see `DEMO_FEATURES`). `seed` varies each day's volume by up to
/// ±15%, so different users see different but stable numbers.
pub fn demo_dataset(seed: u64) -> Vec<UsageRecord> {
    let (y, m, d) = DEMO_LAST_DAY;
    let first_day = date::days_from_civil(y, m, d) - (DEMO_DAYS - 1);
    let mut rng = SplitMix64(seed);
    let mut records = Vec::with_capacity(DEMO_DAYS as usize * DEMO_FEATURES.len());
    for offset in 0..DEMO_DAYS {
        let day = date::format_day(first_day + offset);
        let trend_bp = 10_000 + DEMO_TREND_BP_PER_DAY * offset as u64;
        for f in &DEMO_FEATURES {
            let noise_bp = 10_000 - DEMO_NOISE_BP + rng.next() % (2 * DEMO_NOISE_BP + 1);
            let requests = f.requests * trend_bp * noise_bp / 100_000_000;
            records.push(demo_record(f, &day, requests));
        }
    }
    records
}

fn demo_record(f: &DemoFeature, day: &str, requests: u64) -> UsageRecord {
    UsageRecord {
        day: day.to_owned(),
        provider: f.provider.to_owned(),
        model: f.model.to_owned(),
        feature: f.feature.to_owned(),
        project: f.project.to_owned(),
        requests,
        input_tokens: requests * f.input_per_request,
        output_tokens: requests * f.output_per_request,
        cached_input_tokens: requests * f.cached_per_request,
        cost: None,
        ..Default::default()
    }
}

/// splitmix64: a tiny, well-mixed generator whose whole state is the seed,
/// which is all the demo needs to be reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, input: u64, cached: u64, output: u64) -> UsageRecord {
        UsageRecord {
            day: "2026-11-24".into(),
            provider: "openai".into(),
            model: model.into(),
            feature: "f".into(),
            project: "p".into(),
            requests: 1,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cost: None,
            ..Default::default()
        }
    }

    #[test]
    fn cost_of_gpt_4o_with_cached_tokens() {
        // 1.8M uncached * $2.50 = $4.50; 0.2M cached * $1.25 = $0.25;
        // 0.3M out * $10 = $3.00.
        let r = record("gpt-4o", 2_000_000, 200_000, 300_000);
        assert_eq!(cost_of(PriceBook::catalog(), &r), Money(7_750_000));
        // A dated snapshot costs the same.
        let dated = UsageRecord { model: "gpt-4o-2024-08-06".into(), ..r };
        assert_eq!(cost_of(PriceBook::catalog(), &dated), Money(7_750_000));
    }

    #[test]
    fn cost_of_unknown_model_is_zero() {
        assert_eq!(cost_of(PriceBook::catalog(), &record("my-finetune", 1_000, 0, 1_000)), Money::ZERO);
    }

    #[test]
    fn a_negotiated_rate_prices_the_records_its_book_is_given_and_a_billed_cost_still_wins() {
        // gpt-4o at $1 in / $4 out (cached input at the input rate): 2M × $1 + 0.3M × $4 = $3.20.
        let gpt_4o = PriceBook::catalog().price_for("gpt-4o").unwrap();
        let negotiated = crate::Price {
            input_per_mtok: Money(1_000_000),
            output_per_mtok: Money(4_000_000),
            cached_input_per_mtok: Money(1_000_000),
            reasoning_per_mtok: Money(4_000_000),
            source: "negotiated",
            ..gpt_4o.clone()
        };
        let book = PriceBook::with_overrides(vec![negotiated]);
        let r = record("gpt-4o-2024-08-06", 2_000_000, 200_000, 300_000);
        assert_eq!(list_cost(&book, &r), Money(3_200_000));
        assert_eq!(list_cost(PriceBook::catalog(), &r), Money(7_750_000));
        let billed = UsageRecord { cost: Some(Money(5)), ..r };
        assert_eq!(cost_of(&book, &billed), Money(5));
    }

    #[test]
    fn splitmix64_matches_reference_output() {
        // First output for seed 0 from the reference implementation.
        assert_eq!(SplitMix64(0).next(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn demo_is_deterministic_per_seed_and_varies_across_seeds() {
        assert_eq!(demo_dataset(7), demo_dataset(7));
        assert_ne!(demo_dataset(0), demo_dataset(1));
        assert_ne!(demo_dataset(1), demo_dataset(2));
    }

    #[test]
    fn demo_covers_thirty_days_ending_2026_11_24() {
        let records = demo_dataset(0);
        assert_eq!(records.len(), 30 * DEMO_FEATURES.len());
        assert_eq!(records.first().unwrap().day, "2026-10-26");
        assert_eq!(records.last().unwrap().day, "2026-11-24");
        assert!(records.iter().all(|r| PriceBook::catalog().price_for(&r.model).is_some()));
        assert!(records.iter().all(|r| r.cached_input_tokens <= r.input_tokens));
    }

    #[test]
    fn demo_records_carry_their_features_names_and_token_shapes() {
        for (i, r) in demo_dataset(3).iter().enumerate() {
            let f = &DEMO_FEATURES[i % DEMO_FEATURES.len()];
            assert_eq!(
                (r.feature.as_str(), r.project.as_str(), r.provider.as_str(), r.model.as_str()),
                (f.feature, f.project, f.provider, f.model)
            );
            assert_eq!(
                (r.input_tokens, r.cached_input_tokens, r.output_tokens, r.cost),
                (r.requests * f.input_per_request, r.requests * f.cached_per_request, r.requests * f.output_per_request, None)
            );
        }
        let demo = demo_dataset(0);
        let projects: std::collections::BTreeSet<&str> = demo.iter().map(|r| r.project.as_str()).collect();
        assert_eq!(projects.into_iter().collect::<Vec<_>>(), ["analytics", "customer-support", "engineering", "search"]);
    }

    #[test]
    fn a_seed_gives_the_same_demo_numbers_from_one_release_to_the_next() {
        // What a user saw yesterday for seed 0 is what they see today. The first day's
        // volumes, computed apart from splitmix64's reference: each feature's requests ×
        // (8,500 + the next output mod 3,001) / 10,000.
        let volumes: Vec<u64> = demo_dataset(0).iter().take(5).map(|r| r.requests).collect();
        assert_eq!(volumes, [9_821, 19_616, 1_593, 196_640, 778]);
    }

    #[test]
    fn demo_volumes_swing_both_ways_around_the_trend() {
        // ±15 % of noise over 30 days: every feature has a day more than 10 % above its
        // trend and one more than 10 % below it.
        let records = demo_dataset(0);
        for (k, f) in DEMO_FEATURES.iter().enumerate() {
            let ratios: Vec<u64> = (0..DEMO_DAYS as usize)
                .map(|day| {
                    let trend = 10_000 + DEMO_TREND_BP_PER_DAY * day as u64;
                    records[day * DEMO_FEATURES.len() + k].requests * 100_000_000 / (f.requests * trend)
                })
                .collect();
            assert!(ratios.iter().any(|&r| r > 11_000) && ratios.iter().any(|&r| r < 9_000), "{}: {ratios:?}", f.feature);
        }
    }

    #[test]
    fn demo_volumes_stay_within_noise_and_trend() {
        for seed in 0..20 {
            for (i, r) in demo_dataset(seed).iter().enumerate() {
                let f = &DEMO_FEATURES[i % DEMO_FEATURES.len()];
                let day = (i / DEMO_FEATURES.len()) as u64;
                let trend = 10_000 + DEMO_TREND_BP_PER_DAY * day;
                let (lo, hi) = (trend * 8_500, trend * 11_500);
                assert!((f.requests * lo / 100_000_000..=f.requests * hi / 100_000_000).contains(&r.requests));
            }
        }
    }
}

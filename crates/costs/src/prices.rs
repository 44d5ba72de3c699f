//! Published list prices, and the arithmetic that turns tokens into money.
//!
//! Rates are per million tokens and held as exact `Money`, so a price such as
//! $0.075 / 1M is stored as 75_000 micro-dollars with nothing lost.
//!
//! The catalog is the snapshot in `data/prices.json` (LiteLLM's published table merged
//! with models.dev by `scripts/update-prices.py`, sources and dates recorded in it),
//! followed by a few built-in entries for models neither lists any more but usage exports
//! still name. It is shipped data, the same for every deployment.
//!
//! What a deployment actually pays is a [`PriceBook`]: the catalog plus its negotiated
//! rates. Everything that prices usage is handed one, so two servers in one process can
//! bill at different rates.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use crate::money::{div_round_half_away, Money, MICROS_PER_USD};

/// One model's list price, and what the model can do.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Price {
    /// Borrowed for the built-in entries, owned for the snapshot's and negotiated ones.
    pub provider: Cow<'static, str>,
    pub model: Cow<'static, str>,
    pub input_per_mtok: Money,
    pub output_per_mtok: Money,
    /// Rate for input tokens served from the provider's prompt cache.
    pub cached_input_per_mtok: Money,
    /// Rate for input tokens written to the prompt cache (the input rate where the
    /// provider charges nothing extra).
    pub cache_write_per_mtok: Money,
    /// Rate for the reasoning part of the output (the output rate where the provider
    /// bills reasoning like any output).
    pub reasoning_per_mtok: Money,
    /// Discount for the provider's asynchronous batch API, in percent.
    pub batch_discount_pct: u8,
    /// Higher rates for requests whose prompt exceeds a size, smallest threshold first.
    pub tiers: &'static [ContextTier],
    pub capabilities: Capabilities,
    /// Where the price comes from (`litellm`, `models.dev`, `litellm+models.dev`,
    /// `built-in`, `negotiated`) and the date of that source.
    pub source: &'static str,
    pub effective: &'static str,
}

/// Rates that replace the base ones for a request whose prompt exceeds `above_tokens`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ContextTier {
    pub above_tokens: u64,
    pub input_per_mtok: Money,
    pub output_per_mtok: Money,
    pub cached_input_per_mtok: Money,
    pub cache_write_per_mtok: Money,
}

/// What a model accepts, from the catalog's flags (false when a source does not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub tool_calling: bool,
    pub vision: bool,
    pub reasoning: bool,
    /// Largest prompt, in tokens; `None` when unknown.
    pub context_window: Option<u64>,
}

/// Tokens in the "per million tokens" unit that list prices are quoted in.
const TOKENS_PER_MTOK: i128 = 1_000_000;

/// The token counts one price applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUse {
    pub requests: u64,
    /// All input tokens, the cached and cache-written parts included.
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    /// All output tokens, the reasoning part included.
    pub output: u64,
    pub reasoning: u64,
}

impl TokenUse {
    pub fn of(r: &crate::records::UsageRecord) -> Self {
        Self {
            requests: r.requests,
            input: r.input_tokens,
            cached_input: r.cached_input_tokens,
            cache_write: r.cache_write_tokens,
            output: r.output_tokens,
            reasoning: r.reasoning_tokens,
        }
    }
}

impl Price {
    /// Cost of input, cached input and output tokens at the base rates (no context tier,
    /// no cache writes, no separate reasoning rate).
    pub fn cost(&self, input_tokens: u64, cached_input_tokens: u64, output_tokens: u64) -> Money {
        self.usage_cost(&TokenUse {
            requests: 0,
            input: input_tokens,
            cached_input: cached_input_tokens,
            output: output_tokens,
            ..TokenUse::default()
        })
    }

    /// Cost of one usage slice at this price.
    ///
    /// The rates are the base ones, or those of the highest context tier whose threshold
    /// the average prompt (`input ÷ requests`) exceeds. Cache reads are clamped to the
    /// input, cache writes to what is left of it, reasoning to the output, so inconsistent
    /// imports never produce a negative count. Each component is rounded half away from
    /// zero to the micro-dollar on its own, so the result does not depend on how the
    /// components are later grouped.
    pub fn usage_cost(&self, t: &TokenUse) -> Money {
        let cached = t.cached_input.min(t.input);
        let written = t.cache_write.min(t.input - cached);
        let reasoning = t.reasoning.min(t.output);
        let (input, output, cached_rate, write_rate) = match self.tier_for(t) {
            Some(tier) => (tier.input_per_mtok, tier.output_per_mtok, tier.cached_input_per_mtok, tier.cache_write_per_mtok),
            None => (self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok, self.cache_write_per_mtok),
        };
        // Reasoning follows the tier's output rate unless the model bills it apart.
        let reasoning_rate = if self.reasoning_per_mtok == self.output_per_mtok { output } else { self.reasoning_per_mtok };
        component(t.input - cached - written, input)
            + component(cached, cached_rate)
            + component(written, write_rate)
            + component(t.output - reasoning, output)
            + component(reasoning, reasoning_rate)
    }

    /// The context tier a slice is billed at: the highest one its average prompt exceeds.
    pub fn tier_for(&self, t: &TokenUse) -> Option<&'static ContextTier> {
        if t.requests == 0 {
            return None;
        }
        let prompt = t.input / t.requests;
        self.tiers.iter().rev().find(|tier| prompt > tier.above_tokens)
    }

    /// `usage_cost` as if sent through the batch API.
    pub fn usage_batch_cost(&self, t: &TokenUse) -> Money {
        self.usage_cost(t).mul_div(100 - i64::from(self.batch_discount_pct.min(100)), 100)
    }

    /// `cost` as if sent through the batch API.
    pub fn batch_cost(&self, input_tokens: u64, cached_input_tokens: u64, output_tokens: u64) -> Money {
        let full = self.cost(input_tokens, cached_input_tokens, output_tokens);
        full.mul_div(100 - i64::from(self.batch_discount_pct.min(100)), 100)
    }

    /// "$2.50 in / $10.00 out per 1M tokens", for rationale texts.
    pub(crate) fn label(&self) -> String {
        format!("{} in / {} out per 1M tokens", rate_label(self.input_per_mtok), rate_label(self.output_per_mtok))
    }
}

/// `tokens * rate / 1M`, rounded half-up; i128 because the product of two
/// large u64-ish values overflows i64.
fn component(tokens: u64, per_mtok: Money) -> Money {
    Money::clamp(div_round_half_away(tokens as i128 * per_mtok.micros() as i128, TOKENS_PER_MTOK))
}

/// Rates need sub-cent precision ($0.075), which `Money`'s cent display would
/// hide: show at least two decimals and as many more as are non-zero.
pub fn rate_label(rate: Money) -> String {
    let micros = rate.micros();
    let whole = micros / MICROS_PER_USD;
    let frac = format!("{:06}", (micros % MICROS_PER_USD).abs());
    let frac = frac.trim_end_matches('0');
    format!("${whole}.{frac:0<2}")
}

/// Shorthand for the catalog: micro-dollars per 1M tokens.
const fn per_mtok(micros: i64) -> Money {
    Money(micros)
}

const fn builtin(provider: &'static str, model: &'static str, input: i64, output: i64, cached: i64) -> Price {
    Price {
        provider: Cow::Borrowed(provider),
        model: Cow::Borrowed(model),
        input_per_mtok: per_mtok(input),
        output_per_mtok: per_mtok(output),
        cached_input_per_mtok: per_mtok(cached),
        cache_write_per_mtok: per_mtok(input),
        reasoning_per_mtok: per_mtok(output),
        batch_discount_pct: 50,
        tiers: &[],
        capabilities: Capabilities { tool_calling: true, vision: true, reasoning: false, context_window: None },
        source: "built-in",
        effective: "",
    }
}

const fn openai(model: &'static str, input: i64, output: i64, cached: i64) -> Price {
    builtin("openai", model, input, output, cached)
}

const fn anthropic(model: &'static str, input: i64, output: i64, cached: i64) -> Price {
    // Anthropic bills cache writes (5-minute cache) at 1.25 times the input rate.
    let mut p = builtin("anthropic", model, input, output, cached);
    p.cache_write_per_mtok = per_mtok(input / 4 * 5);
    p
}

/// Models retired from the published table that older usage still names
/// (USD per 1M tokens: input, output, cached input). Used only where the snapshot has
/// no entry of the same name.
static BUILTIN: [Price; 8] = [
    openai("gpt-4o", 2_500_000, 10_000_000, 1_250_000),
    openai("gpt-4o-mini", 150_000, 600_000, 75_000),
    openai("gpt-4.1", 2_000_000, 8_000_000, 500_000),
    openai("gpt-4.1-mini", 400_000, 1_600_000, 100_000),
    openai("o3-mini", 1_100_000, 4_400_000, 550_000),
    anthropic("claude-3-5-sonnet", 3_000_000, 15_000_000, 300_000),
    anthropic("claude-3-5-haiku", 800_000, 4_000_000, 80_000),
    // Embeddings have no output tokens and no prompt cache.
    openai("text-embedding-3-small", 20_000, 0, 20_000),
];

/// Same-family models that are markedly cheaper, for downgrade advice.
const CHEAPER_SIBLINGS: [(&str, &str); 3] =
    [("gpt-4o", "gpt-4o-mini"), ("gpt-4.1", "gpt-4.1-mini"), ("claude-3-5-sonnet", "claude-3-5-haiku")];

#[derive(serde::Deserialize)]
struct Snapshot {
    source: String,
    generated: String,
    models: Vec<SnapshotModel>,
}

#[derive(serde::Deserialize)]
struct SnapshotModel {
    provider: String,
    model: String,
    input: i64,
    output: i64,
    cached_input: i64,
    cache_write: Option<i64>,
    reasoning: Option<i64>,
    batch_discount_pct: u8,
    #[serde(default)]
    tiers: Vec<SnapshotTier>,
    #[serde(default)]
    tools: bool,
    #[serde(default)]
    vision: bool,
    #[serde(default)]
    reasoning_model: bool,
    context_window: Option<u64>,
    source: String,
    effective: String,
}

#[derive(serde::Deserialize)]
struct SnapshotTier {
    above: u64,
    input: i64,
    output: i64,
    cached_input: i64,
    cache_write: Option<i64>,
}

struct Catalog {
    prices: Vec<Price>,
    by_name: HashMap<String, usize>,
    source: &'static str,
    generated: &'static str,
}

/// Built once, on first use. Sources, dates and tiers live for the whole process (`Price`
/// hands them out as `&'static`), so they are leaked once: a fixed amount, never repeated.
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let snapshot: Snapshot =
        serde_json::from_str(include_str!("../data/prices.json")).expect("the shipped price snapshot parses");
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut prices: Vec<Price> = snapshot
        .models
        .into_iter()
        .map(|m| {
            let cache_write = Money(m.cache_write.unwrap_or(m.input));
            let tiers: Vec<ContextTier> = m
                .tiers
                .iter()
                .map(|t| ContextTier {
                    above_tokens: t.above,
                    input_per_mtok: Money(t.input),
                    output_per_mtok: Money(t.output),
                    cached_input_per_mtok: Money(t.cached_input),
                    // Without a tier rate of its own, a cache write keeps its surcharge
                    // over the tier's input rate.
                    cache_write_per_mtok: Money(t.cache_write.unwrap_or_else(|| {
                        if m.input > 0 {
                            t.input * cache_write.0 / m.input
                        } else {
                            t.input
                        }
                    })),
                })
                .collect();
            Price {
                provider: Cow::Owned(m.provider),
                model: Cow::Owned(m.model),
                input_per_mtok: Money(m.input),
                output_per_mtok: Money(m.output),
                cached_input_per_mtok: Money(m.cached_input),
                cache_write_per_mtok: cache_write,
                reasoning_per_mtok: Money(m.reasoning.unwrap_or(m.output)),
                batch_discount_pct: m.batch_discount_pct,
                tiers: Box::leak(tiers.into_boxed_slice()),
                capabilities: Capabilities {
                    tool_calling: m.tools,
                    vision: m.vision,
                    reasoning: m.reasoning_model,
                    context_window: m.context_window,
                },
                source: leak(m.source),
                effective: leak(m.effective),
            }
        })
        .collect();
    for builtin in &BUILTIN {
        if !prices.iter().any(|p| p.model == builtin.model) {
            prices.push(builtin.clone());
        }
    }
    let by_name = prices.iter().enumerate().map(|(i, p)| (p.model.to_string(), i)).collect();
    Catalog { prices, by_name, source: leak(snapshot.source), generated: leak(snapshot.generated) }
});

pub fn price_catalog() -> &'static [Price] {
    &CATALOG.prices
}

/// Where the catalog's prices come from, and when the snapshot was taken.
pub fn catalog_source() -> (&'static str, &'static str) {
    (CATALOG.source, CATALOG.generated)
}

/// The prices a deployment bills at: its negotiated rates (from the prices file), and the
/// catalog for every other model. `PriceBook::default()` is the catalog alone.
///
/// Cheap to clone (the negotiated rates are shared), so servers, runs and tools each hold
/// one rather than reaching for process state.
#[derive(Clone, Debug, Default)]
pub struct PriceBook {
    overrides: Arc<[Price]>,
}

impl PriceBook {
    /// The catalog, with `overrides` replacing it for their models. Each applies to its
    /// model name, before the catalog; names resolve as usual (dated snapshots, prefixes).
    pub fn with_overrides(overrides: Vec<Price>) -> Self {
        Self { overrides: overrides.into() }
    }

    /// The catalog alone, without any deployment's negotiated rates: for what is a fact of
    /// the catalog (which provider makes a model, what a negotiated rate leaves unsaid),
    /// not a price a deployment bills at.
    pub fn catalog() -> &'static PriceBook {
        static CATALOG_ONLY: LazyLock<PriceBook> = LazyLock::new(PriceBook::default);
        &CATALOG_ONLY
    }

    /// The negotiated rates, as given.
    pub fn overrides(&self) -> &[Price] {
        &self.overrides
    }

    /// Looks a model up by exact name, then without a dated snapshot suffix:
    /// usage exports name snapshots ("gpt-4o-2024-08-06",
    /// "claude-3-5-sonnet-20241022") which are billed at the family's list price.
    /// A `provider/` prefix (as LiteLLM and gateways write names) is ignored.
    pub fn price_for(&self, model: &str) -> Option<&Price> {
        let model = model.trim();
        let bare = model.split_once('/').map_or(model, |(_, m)| m);
        [model, bare].into_iter().find_map(|m| self.exact(m).or_else(|| strip_date_suffix(m).and_then(|m| self.exact(m))))
    }

    /// The cheaper same-family model for `model`, if the catalog knows one.
    pub fn cheaper_sibling(&self, model: &str) -> Option<&Price> {
        let model = &self.price_for(model)?.model;
        let (_, target) = CHEAPER_SIBLINGS.iter().find(|(from, _)| *from == model)?;
        self.exact(target)
    }

    /// Whether `price` is one of this book's negotiated rates rather than the catalog's.
    pub fn is_override(&self, price: &Price) -> bool {
        self.overrides.iter().any(|p| std::ptr::eq(p, price))
    }

    fn exact(&self, model: &str) -> Option<&Price> {
        if let Some(p) = self.overrides.iter().find(|p| p.model == model) {
            return Some(p);
        }
        let catalog = &*CATALOG;
        catalog.by_name.get(model).map(|&i| &catalog.prices[i])
    }
}

/// "name-2024-08-06" or "name-20241022" -> "name".
fn strip_date_suffix(model: &str) -> Option<&str> {
    // `d` stands for any ASCII digit; every other byte must match literally.
    const SHAPES: [&[u8]; 2] = [b"-dddd-dd-dd", b"-dddddddd"];
    let matches = |suffix: &[u8], shape: &[u8]| {
        suffix.iter().zip(shape).all(|(&c, &s)| if s == b'd' { c.is_ascii_digit() } else { c == s })
    };
    SHAPES.iter().find_map(|shape| {
        let start = model.len().checked_sub(shape.len()).filter(|&start| start > 0)?;
        // The suffix is all ASCII when it matches, so `start` is a char boundary.
        matches(&model.as_bytes()[start..], shape).then(|| &model[..start])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price_for(model: &str) -> Option<&'static Price> {
        PriceBook::catalog().price_for(model)
    }

    fn cheaper_sibling(model: &str) -> Option<&'static Price> {
        PriceBook::catalog().cheaper_sibling(model)
    }

    fn exact(model: &str) -> Option<&'static Price> {
        PriceBook::catalog().exact(model)
    }

    fn gpt_4o() -> &'static Price {
        price_for("gpt-4o").unwrap()
    }

    #[test]
    fn retired_anthropic_models_bill_cache_writes_at_a_quarter_above_input() {
        // claude-3-5-sonnet: $3 in, so $3.75 a million written; claude-3-5-haiku: $0.80, $1.
        let written = |model: &str| {
            price_for(model).unwrap().usage_cost(&TokenUse {
                requests: 1,
                input: 1_000_000,
                cache_write: 1_000_000,
                ..TokenUse::default()
            })
        };
        assert_eq!(written("claude-3-5-sonnet"), Money(3_750_000));
        assert_eq!(written("claude-3-5-haiku"), Money(1_000_000));
        assert_eq!(written("gpt-4o"), Money(2_500_000), "no surcharge at OpenAI");
    }

    #[test]
    fn cost_matches_hand_computation_with_cache() {
        // 600k uncached * $2.50 + 400k cached * $1.25 + 100k out * $10 = $1.50 + $0.50 + $1.00
        assert_eq!(gpt_4o().cost(1_000_000, 400_000, 100_000), Money(3_000_000));
    }

    #[test]
    fn each_component_rounds_half_up_to_the_micro() {
        // 1 token * 2.5 micro = 2.5 -> 3; 1 cached * 1.25 -> 1; 1 out * 10 -> 10.
        assert_eq!(gpt_4o().cost(1, 0, 0), Money(3));
        assert_eq!(gpt_4o().cost(1, 1, 0), Money(1));
        assert_eq!(gpt_4o().cost(2, 1, 1), Money(3 + 1 + 10));
    }

    #[test]
    fn cache_writes_are_billed_at_the_cache_write_rate() {
        // Claude Sonnet 4.5: $3 in, $0.30 cache read, $3.75 cache write, $15 out per 1M.
        // 500k plain × $3 = $1.50; 200k read × $0.30 = $0.06; 300k written × $3.75 =
        // $1.125; 100k out × $15 = $1.50. Total $4.185.
        let p = price_for("claude-sonnet-4-5").unwrap();
        let t = TokenUse {
            requests: 100,
            input: 1_000_000,
            cached_input: 200_000,
            cache_write: 300_000,
            output: 100_000,
            reasoning: 0,
        };
        assert_eq!(p.usage_cost(&t), Money(4_185_000));
        // Writes beyond what is left of the input after reads are clamped.
        let over = TokenUse { cache_write: 5_000_000, ..t };
        assert_eq!(p.usage_cost(&over), p.usage_cost(&TokenUse { cache_write: 800_000, ..t }));
        // OpenAI publishes no cache-write rate: writes cost the input rate.
        let gpt = gpt_4o();
        assert_eq!(gpt.cache_write_per_mtok, gpt.input_per_mtok);
    }

    #[test]
    fn reasoning_tokens_use_the_reasoning_rate_where_one_is_published() {
        // Perplexity sonar-deep-research: $2 in, $8 out, $3 per 1M reasoning tokens.
        // 100k in × $2 = $0.20; 600k plain out × $8 = $4.80; 400k reasoning × $3 = $1.20.
        let p = price_for("sonar-deep-research").unwrap();
        let t = TokenUse { requests: 10, input: 100_000, output: 1_000_000, reasoning: 400_000, ..TokenUse::default() };
        assert_eq!(p.usage_cost(&t), Money(6_200_000));
        // Where reasoning is billed as output, splitting it out changes nothing.
        let o3 = price_for("o3-mini").unwrap();
        let t = TokenUse { requests: 1, input: 1_000, output: 9_000, reasoning: 7_000, ..TokenUse::default() };
        assert_eq!(o3.usage_cost(&t), o3.cost(1_000, 0, 9_000));
    }

    #[test]
    fn prompts_above_a_context_tier_use_its_rates() {
        // Gemini 2.5 Pro: $1.25 / $10 per 1M, and $2.50 / $15 for prompts over 200k tokens.
        let p = price_for("gemini-2.5-pro").unwrap();
        assert_eq!(p.tiers.len(), 1);
        assert_eq!(p.tiers[0].above_tokens, 200_000);
        // 2 requests averaging 250k prompt tokens: 500k × $2.50 + 10k × $15 = $1.40.
        let big = TokenUse { requests: 2, input: 500_000, output: 10_000, ..TokenUse::default() };
        assert_eq!(p.usage_cost(&big), Money(1_400_000));
        // 3 requests averaging 166,666: base rates, 500k × $1.25 + 10k × $10 = $0.725.
        assert_eq!(p.usage_cost(&TokenUse { requests: 3, ..big }), Money(725_000));
        // Exactly at the threshold is not above it.
        let at = TokenUse { requests: 1, input: 200_000, ..TokenUse::default() };
        assert_eq!(p.usage_cost(&at), Money(250_000));
        assert_eq!(p.usage_cost(&TokenUse { input: 200_001, ..at }), Money(500_003));
    }

    #[test]
    fn the_catalog_merges_both_sources_with_capability_flags() {
        let (source, _) = catalog_source();
        assert!(source.contains("litellm") && source.contains("models.dev"), "{source}");
        let caps = gpt_4o().capabilities;
        assert_eq!(caps, Capabilities { tool_calling: true, vision: true, reasoning: false, context_window: Some(128_000) });
        let o3 = price_for("o3-mini").unwrap().capabilities;
        assert!(o3.reasoning && !o3.vision);
        // A model only models.dev lists is in the catalog, marked so.
        let nemo = price_for("mistral-nemo").unwrap();
        assert_eq!(nemo.source, "models.dev");
        assert!(price_catalog().iter().all(|p| p.effective.len() == 10 || p.source == "built-in"));
    }

    #[test]
    fn cached_beyond_input_is_clamped() {
        assert_eq!(gpt_4o().cost(100, 500, 0), gpt_4o().cost(100, 100, 0));
    }

    #[test]
    fn batch_cost_applies_provider_discount() {
        assert_eq!(gpt_4o().batch_cost(1_000_000, 400_000, 100_000), Money(1_500_000));
    }

    #[test]
    fn catalog_has_published_prices() {
        let mini = price_for("gpt-4o-mini").unwrap();
        assert_eq!(
            (mini.input_per_mtok, mini.output_per_mtok, mini.cached_input_per_mtok),
            (Money(150_000), Money(600_000), Money(75_000))
        );
        // The shipped snapshot, plus built-ins for retired models.
        assert!(price_catalog().len() > 200, "{}", price_catalog().len());
        let (source, generated) = catalog_source();
        assert!(source.starts_with("litellm ") && generated.len() == 10);
        // A dated snapshot with a price of its own keeps it.
        assert_eq!(price_for("gpt-4o-2024-05-13").unwrap().input_per_mtok, Money(5_000_000));
        // Gateways' `provider/model` names resolve too.
        assert_eq!(price_for("openai/gpt-4o-mini").unwrap().model, "gpt-4o-mini");
        assert_eq!(price_for("claude-3-5-sonnet").unwrap().batch_discount_pct, 50);
    }

    #[test]
    fn resolves_dated_aliases() {
        assert_eq!(price_for("gpt-4o-2024-08-06").unwrap().model, "gpt-4o");
        assert_eq!(price_for("gpt-4o-mini-2024-07-18").unwrap().model, "gpt-4o-mini");
        assert_eq!(price_for("claude-3-5-sonnet-20241022").unwrap().model, "claude-3-5-sonnet");
        assert_eq!(price_for("claude-3-5-haiku-20241022").unwrap().model, "claude-3-5-haiku");
    }

    #[test]
    fn rejects_unknown_and_malformed_names() {
        assert_eq!(price_for("no-such-model-9000"), None);
        assert_eq!(price_for("gpt-4o-2024-8-06"), None);
        assert_eq!(price_for("gpt-4o-latest"), None);
        assert_eq!(price_for("-20241022"), None);
        assert_eq!(price_for(""), None);
        assert_eq!(price_for("gpt-4o-2024-08-0é"), None);
    }

    #[test]
    fn siblings_are_cheaper() {
        assert_eq!(cheaper_sibling("gpt-4o-2024-08-06").unwrap().model, "gpt-4o-mini");
        assert_eq!(cheaper_sibling("claude-3-5-sonnet").unwrap().model, "claude-3-5-haiku");
        assert_eq!(cheaper_sibling("gpt-4o-mini"), None);
        for (from, to) in CHEAPER_SIBLINGS {
            let (from, to) = (exact(from).unwrap(), exact(to).unwrap());
            assert!(to.input_per_mtok < from.input_per_mtok);
            assert!(to.output_per_mtok < from.output_per_mtok);
        }
    }

    #[test]
    fn a_book_s_negotiated_rates_come_before_the_catalog_and_only_in_that_book() {
        let negotiated = Price { input_per_mtok: Money(1_000_000), source: "negotiated", ..gpt_4o().clone() };
        let custom = Price { provider: "acme".into(), model: "acme-large".to_owned().into(), ..negotiated.clone() };
        let book = PriceBook::with_overrides(vec![negotiated, custom]);
        // Dated snapshots and gateway prefixes resolve to the negotiated rate too.
        for name in ["gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o"] {
            let p = book.price_for(name).unwrap();
            assert_eq!((p.input_per_mtok, book.is_override(p)), (Money(1_000_000), true), "{name}");
        }
        assert_eq!(book.price_for("acme-large").unwrap().provider, "acme");
        assert_eq!(book.cheaper_sibling("gpt-4o").unwrap().model, "gpt-4o-mini");
        assert!(!book.is_override(book.price_for("gpt-4o-mini").unwrap()));
        assert_eq!(book.overrides().len(), 2);
        // Another book, and the catalog, are untouched.
        assert_eq!(gpt_4o().input_per_mtok, Money(2_500_000));
        assert!(!PriceBook::catalog().is_override(gpt_4o()));
        assert!(!PriceBook::catalog().is_override(book.price_for("gpt-4o").unwrap()));
        assert_eq!(price_for("acme-large"), None);
    }

    #[test]
    fn rate_labels_keep_sub_cent_precision() {
        assert_eq!(rate_label(Money(75_000)), "$0.075");
        assert_eq!(rate_label(Money(2_500_000)), "$2.50");
        assert_eq!(rate_label(Money(0)), "$0.00");
        assert_eq!(gpt_4o().label(), "$2.50 in / $10.00 out per 1M tokens");
    }
}

//! Price overrides: a deployment's negotiated rates, from a TOML file
//! (`APEX_PRICES_FILE` / `prices_file`), read into the [`PriceBook`] the server prices
//! usage with.
//!
//! ```toml
//! [[price]]
//! model = "gpt-4o"               # as usage names it; dated snapshots and prefixes resolve
//! input_per_mtok = "2.00"        # USD per 1M tokens, a string or a number
//! output_per_mtok = "8.00"
//! cached_input_per_mtok = "1.00" # optional: the catalog's, else the input rate
//! cache_write_per_mtok = "2.50"  # optional: the catalog's ratio to input, else the input rate
//! reasoning_per_mtok = "8.00"    # optional: the catalog's ratio to output, else the output rate
//! batch_discount_pct = 50        # optional: the catalog's, else 0
//! provider = "openai"            # optional: the catalog's, else "custom"
//! ```
use std::path::Path;

use apex_costs::import::parse_usd;
use apex_costs::{Money, Price, PriceBook};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    price: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    model: String,
    provider: Option<String>,
    input_per_mtok: Amount,
    output_per_mtok: Amount,
    cached_input_per_mtok: Option<Amount>,
    cache_write_per_mtok: Option<Amount>,
    reasoning_per_mtok: Option<Amount>,
    batch_discount_pct: Option<u8>,
}

/// A dollar amount written as a string ("2.50") or a number (2.5); read exactly.
#[derive(Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Number(f64),
}

impl Amount {
    fn money(&self, field: &str, model: &str) -> Result<Money, String> {
        let text = match self {
            Amount::Text(s) => s.clone(),
            // The shortest decimal that reads back as this number: what the file said.
            Amount::Number(n) => n.to_string(),
        };
        parse_usd(&text).ok_or_else(|| format!("{model}: `{field}` is not an amount of dollars: `{text}`"))
    }
}

/// Reads the overrides file; every error names the model and the field. What an entry
/// leaves out comes from the catalog's entry for the model.
pub fn load(path: &Path) -> Result<Vec<Price>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("invalid price file {}: {e}", path.display()))?;
    file.price
        .iter()
        .map(|e| {
            let known = PriceBook::catalog().price_for(&e.model);
            let input = e.input_per_mtok.money("input_per_mtok", &e.model)?;
            let output = e.output_per_mtok.money("output_per_mtok", &e.model)?;
            let optional = |amount: &Option<Amount>, field: &str, catalog: Option<Money>, default: Money| match amount {
                Some(a) => a.money(field, &e.model),
                None => Ok(catalog.unwrap_or(default)),
            };
            Ok(Price {
                provider: e.provider.clone().unwrap_or_else(|| known.map_or("custom", |p| &p.provider).to_owned()).into(),
                model: e.model.clone().into(),
                input_per_mtok: input,
                output_per_mtok: output,
                cached_input_per_mtok: match &e.cached_input_per_mtok {
                    Some(a) => a.money("cached_input_per_mtok", &e.model)?,
                    None => known.map_or(input, |p| p.cached_input_per_mtok),
                },
                // Unless given, cache writes and reasoning keep the catalog's ratio to the
                // input and output rates (Anthropic's 1.25× write surcharge applies to the
                // negotiated input rate too), else cost what input and output cost.
                cache_write_per_mtok: optional(
                    &e.cache_write_per_mtok,
                    "cache_write_per_mtok",
                    known
                        .filter(|p| p.input_per_mtok.micros() > 0)
                        .map(|p| input.mul_div(p.cache_write_per_mtok.micros(), p.input_per_mtok.micros())),
                    input,
                )?,
                reasoning_per_mtok: optional(
                    &e.reasoning_per_mtok,
                    "reasoning_per_mtok",
                    known
                        .filter(|p| p.output_per_mtok.micros() > 0)
                        .map(|p| output.mul_div(p.reasoning_per_mtok.micros(), p.output_per_mtok.micros())),
                    output,
                )?,
                batch_discount_pct: e.batch_discount_pct.or(known.map(|p| p.batch_discount_pct)).unwrap_or(0).min(100),
                // A negotiated rate is flat: no context tiers. What the model can do is
                // the catalog's.
                tiers: &[],
                capabilities: known.map(|p| p.capabilities).unwrap_or_default(),
                source: "negotiated",
                effective: "",
            })
        })
        .collect()
}

/// The prices the settings name: the catalog, with the prices file's negotiated rates
/// when there is one.
pub fn book(settings: &crate::Settings) -> Result<PriceBook, String> {
    match &settings.prices_file {
        Some(path) => load(path).map(PriceBook::with_overrides),
        None => Ok(PriceBook::default()),
    }
}

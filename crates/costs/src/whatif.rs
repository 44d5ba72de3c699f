//! "What if": the same tokens priced on another model, for one feature or for everything.
use serde::Serialize;

use crate::analysis::DAYS_PER_MONTH;
use crate::anomalies::covered_days;
use crate::money::Money;
use crate::prices::{rate_label, PriceBook, TokenUse};
use crate::records::{list_cost, UsageRecord};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WhatIf {
    /// The feature moved, or `None` for all usage.
    pub feature: Option<String>,
    /// Catalog names of the models that usage runs on today.
    pub from_models: Vec<String>,
    pub to_model: String,
    /// At list price, normalised to a 30-day month, both sides.
    pub current_monthly: Money,
    pub projected_monthly: Money,
    /// `projected − current`: negative is a saving.
    pub monthly_change: Money,
    pub requests: u64,
    pub rationale: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WhatIfError {
    UnknownModel(String),
    NoUsage(String),
}

impl std::fmt::Display for WhatIfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownModel(m) => write!(f, "`{m}` is not in the price catalog"),
            Self::NoUsage(scope) => write!(f, "no priced usage for {scope}"),
        }
    }
}

/// Re-prices the usage of `feature` (or all usage) on `to_model`, token for token, both
/// sides with `prices`.
pub fn what_if(
    prices: &PriceBook,
    records: &[UsageRecord],
    feature: Option<&str>,
    to_model: &str,
) -> Result<WhatIf, WhatIfError> {
    let target = prices.price_for(to_model).ok_or_else(|| WhatIfError::UnknownModel(to_model.to_owned()))?;
    let scope: Vec<&UsageRecord> =
        records.iter().filter(|r| feature.is_none_or(|f| r.feature == f) && prices.price_for(&r.model).is_some()).collect();
    let scope_name = feature.map_or_else(|| "your usage".to_owned(), |f| format!("`{f}`"));
    if scope.is_empty() {
        return Err(WhatIfError::NoUsage(scope_name));
    }
    let current: Money = scope.iter().map(|r| list_cost(prices, r)).sum();
    let projected: Money = scope.iter().map(|r| target.usage_cost(&TokenUse::of(r))).sum();
    let mut from_models: Vec<String> =
        scope.iter().filter_map(|r| prices.price_for(&r.model)).map(|p| p.model.to_string()).collect();
    from_models.sort_unstable();
    from_models.dedup();
    let days = covered_days(scope.iter().map(|r| r.day.as_str())).len().max(1) as i64;
    let current_monthly = current.mul_div(DAYS_PER_MONTH, days);
    let projected_monthly = projected.mul_div(DAYS_PER_MONTH, days);
    let requests = scope.iter().map(|r| r.requests).sum();
    let rationale = format!(
        "{} ran {} requests on {} over {days} days, {current} at list price; the same input, cached and output \
         tokens on {} ({} in / {} out per 1M tokens) come to {projected}. Capability is not checked: try the model on a \
         sample of this workload before switching.",
        feature.map_or_else(|| "Your usage".to_owned(), |f| format!("`{f}`")),
        crate::money::group_thousands(requests),
        from_models.join(", "),
        target.model,
        rate_label(target.input_per_mtok),
        rate_label(target.output_per_mtok),
    );
    Ok(WhatIf {
        feature: feature.map(str::to_owned),
        from_models,
        to_model: target.model.to_string(),
        current_monthly,
        projected_monthly,
        monthly_change: projected_monthly - current_monthly,
        requests,
        rationale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prices::PriceBook;

    fn rec(day: &str, feature: &str, model: &str, input: u64, output: u64) -> UsageRecord {
        UsageRecord {
            day: day.into(),
            provider: "openai".into(),
            model: model.into(),
            feature: feature.into(),
            project: "p".into(),
            requests: 100,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
            cost: None,
            ..Default::default()
        }
    }

    #[test]
    fn reprices_a_feature_token_for_token() {
        // 10 days; chat: 2M in + 1M out per day on gpt-4o = $5 + $10 = $15/day.
        let mut records: Vec<UsageRecord> =
            (1..=10).map(|d| rec(&format!("2026-11-{d:02}"), "chat", "gpt-4o-2024-08-06", 2_000_000, 1_000_000)).collect();
        records.push(rec("2026-11-05", "search", "gpt-4o", 1_000_000, 0));
        let w = what_if(PriceBook::catalog(), &records, Some("chat"), "gpt-4o-mini").unwrap();
        assert_eq!(w.from_models, ["gpt-4o"]);
        // $150 over 10 days -> $450 a month; on mini: 2M × $0.15 + 1M × $0.60 = $0.90/day -> $27/month.
        assert_eq!((w.current_monthly, w.projected_monthly), (Money(450_000_000), Money(27_000_000)));
        assert_eq!(w.monthly_change, Money(-423_000_000));
        assert_eq!(w.requests, 1_000);
    }

    #[test]
    fn unknown_models_and_missing_usage_are_errors() {
        let records = vec![rec("2026-11-01", "chat", "gpt-4o", 1, 1)];
        assert_eq!(
            what_if(PriceBook::catalog(), &records, None, "no-such-model"),
            Err(WhatIfError::UnknownModel("no-such-model".into()))
        );
        assert_eq!(
            what_if(PriceBook::catalog(), &records, Some("billing"), "gpt-4o-mini").unwrap_err(),
            WhatIfError::NoUsage("`billing`".into())
        );
    }

    #[test]
    fn errors_say_what_is_missing() {
        assert_eq!(WhatIfError::UnknownModel("gpt-9".into()).to_string(), "`gpt-9` is not in the price catalog");
        assert_eq!(WhatIfError::NoUsage("`billing`".into()).to_string(), "no priced usage for `billing`");
    }
}

//! Netra Apex cost engine: prices LLM usage exactly and analyses where the
//! money goes, how to spend less, and where spend is heading.
//!
//! Pure computation — no I/O, no clocks, no randomness beyond the seeded
//! demo dataset — so every answer the agents give is reproducible.
//! Money is integer micro-dollars throughout; see [`Money`].

#![forbid(unsafe_code)]

mod analysis;
mod anomalies;
mod date;
pub mod import;
pub mod limits;
mod money;
mod prices;
mod query;
mod records;
mod whatif;

pub use analysis::{
    breakdown, budget_run_out, explain_change, forecast, recommend, spike_day, summarize, top_groups, total_savings,
    BilledVsList, BudgetRunOut, Change, Confidence, DailyTotal, Forecast, GroupBy, GroupTotal, Mover, Recommendation,
    RecommendationKind, Summary,
};
pub use anomalies::{detect_anomalies, top_drivers, week_over_week, Anomaly, Driver, WeekOverWeek};
pub use date::is_calendar_day;
pub use money::{basis_points, group_thousands, Money, MICROS_PER_USD};
pub use prices::{catalog_source, price_catalog, rate_label, Capabilities, ContextTier, Price, PriceBook, TokenUse};
pub use query::{aggregate, field, in_days, matches, UsageQuery, ROLLUP};
pub use records::{cost_of, demo_dataset, list_cost, UsageRecord};
pub use whatif::{what_if, WhatIf, WhatIfError};

//! Where spend is heading: run rates from the first and last week of a summary.

use super::{Summary, DAYS_PER_MONTH};
use crate::money::{div_round_half_away, Money};

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Forecast {
    pub days_observed: u32,
    /// Average of the last 7 days, times 30.
    pub monthly_run_rate: Money,
    /// Average of the first 7 days, times 30.
    pub previous_run_rate: Money,
    /// Change of the last-7 against the first-7 average, in basis points.
    pub trend_bp: i64,
}

/// Days in each run-rate window.
const RUN_RATE_DAYS: usize = 7;

/// Run rates from the first and last week of the summary. With fewer than 14
/// days the windows overlap (and with 7 or fewer they coincide, giving a flat
/// trend): the honest answer for so little data.
pub fn forecast(summary: &Summary) -> Forecast {
    let daily: Vec<Money> = summary.daily.iter().map(|d| d.cost).collect();
    let window = daily.len().min(RUN_RATE_DAYS);
    let run_rate = |days: &[Money]| days.iter().sum::<Money>().mul_div(DAYS_PER_MONTH, window as i64);
    let monthly_run_rate = run_rate(&daily[daily.len() - window..]);
    let previous_run_rate = run_rate(&daily[..window]);
    let trend_bp = if previous_run_rate > Money::ZERO {
        let change = i128::from((monthly_run_rate - previous_run_rate).micros()) * 10_000;
        Money::clamp(div_round_half_away(change, i128::from(previous_run_rate.micros()))).0
    } else {
        0
    };
    Forecast { days_observed: summary.days, monthly_run_rate, previous_run_rate, trend_bp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summarize;
    use crate::analysis::testing::{billed, record};
    use crate::prices::PriceBook;
    use crate::records::{demo_dataset, UsageRecord};

    #[test]
    fn a_short_history_has_one_window_and_a_flat_trend() {
        let records: Vec<UsageRecord> = (1..=3).map(|d| billed(&format!("2026-11-0{d}"), "f", d)).collect();
        let f = forecast(&summarize(PriceBook::catalog(), &records));
        // $6 over 3 days is $60 a month, for both windows.
        assert_eq!(
            (f.days_observed, f.monthly_run_rate, f.previous_run_rate, f.trend_bp),
            (3, Money(60_000_000), Money(60_000_000), 0)
        );
        // Nothing spent in the first week: no trend from zero.
        let records: Vec<UsageRecord> =
            (1..=14).map(|d| billed(&format!("2026-11-{d:02}"), "f", if d > 7 { 1 } else { 0 })).collect();
        let f = forecast(&summarize(PriceBook::catalog(), &records));
        assert_eq!((f.monthly_run_rate, f.previous_run_rate, f.trend_bp), (Money(30_000_000), Money::ZERO, 0));
    }

    #[test]
    fn forecast_follows_the_trend() {
        let rising: Vec<UsageRecord> =
            (1..=14).map(|d| record(&format!("2026-03-{d:02}"), "f", "gpt-4o", 1, 1_000_000 * d, 0, 0)).collect();
        let up = forecast(&summarize(PriceBook::catalog(), &rising));
        // First week averages $10 a day ($300/month), last week $27.50 ($825).
        assert_eq!(up.previous_run_rate, Money(300_000_000));
        assert_eq!(up.monthly_run_rate, Money(825_000_000));
        assert_eq!(up.trend_bp, 17_500);
        assert_eq!(up.days_observed, 14);

        let falling: Vec<UsageRecord> =
            rising.iter().map(|r| UsageRecord { input_tokens: 15_000_000 - r.input_tokens, ..r.clone() }).collect();
        assert!(forecast(&summarize(PriceBook::catalog(), &falling)).trend_bp < 0);
        assert!(forecast(&summarize(PriceBook::catalog(), &demo_dataset(0))).trend_bp > 0);
    }
}

//! Where spend is heading: run rates from the first and last week of a summary.

use super::{Summary, DAYS_PER_MONTH};
use crate::date;
use crate::money::Money;

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
    let trend_bp = (monthly_run_rate - previous_run_rate).ratio_bp(previous_run_rate).unwrap_or(0);
    Forecast { days_observed: summary.days, monthly_run_rate, previous_run_rate, trend_bp }
}

/// A monthly budget against the month of the last day of the data: what is spent so far,
/// the pace of the last 7 days, and the day the budget runs out at that pace.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BudgetRunOut {
    pub budget: Money,
    /// "YYYY-MM".
    pub month: String,
    /// From the first of the month to `through`.
    pub spent: Money,
    pub through: String,
    /// Average daily spend of the last 7 days (fewer with less data).
    pub daily_pace: Money,
    /// The day the spend of the month first reached the budget, when it already has.
    pub exceeded_on: Option<String>,
    /// The day it will at the pace, when that is within the month.
    pub runs_out_on: Option<String>,
    /// The month's spend at the pace: spent plus the pace for each day left.
    pub projected_month: Money,
    /// What is left of the budget (negative once it is exceeded).
    pub left: Money,
    /// The budget less the projected month: what stays unspent at the pace (negative when
    /// the pace goes over it).
    pub margin: Money,
}

/// The budget of the month `summary` ends in; `None` without data.
pub fn budget_run_out(summary: &Summary, budget: Money) -> Option<BudgetRunOut> {
    let last = summary.daily.last()?;
    let last_day = date::parse_day(&last.day)?;
    let (y, m, _) = date::civil_from_days(last_day);
    let month = format!("{y:04}-{m:02}");
    let (next_y, next_m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let days_left = date::days_from_civil(next_y, next_m, 1) - last_day - 1;
    let this_month: Vec<&crate::analysis::DailyTotal> = summary.daily.iter().filter(|t| t.day.starts_with(&month)).collect();
    let spent: Money = this_month.iter().map(|t| t.cost).sum();
    let window = &summary.daily[summary.daily.len().saturating_sub(RUN_RATE_DAYS)..];
    let recent: Money = window.iter().map(|t| t.cost).sum();
    let n = window.len() as i64;
    let exceeded_on = (spent >= budget).then(|| {
        let mut running = Money::ZERO;
        this_month.iter().find(|t| {
            running += t.cost;
            running >= budget
        })
    });
    let exceeded_on = exceeded_on.flatten().map(|t| t.day.clone());
    let runs_out_on = match exceeded_on {
        None if recent > Money::ZERO => {
            // The first day whose spend at the pace reaches the budget: ceil(left / pace).
            let left = i128::from((budget - spent).micros()) * i128::from(n);
            let pace = i128::from(recent.micros());
            let days = (left + pace - 1) / pace;
            (days <= i128::from(days_left)).then(|| date::format_day(last_day + days as i64))
        }
        _ => None,
    };
    let projected_month = spent + recent.mul_div(days_left, n);
    Some(BudgetRunOut {
        budget,
        month,
        spent,
        through: last.day.clone(),
        daily_pace: recent.mul_div(1, n),
        exceeded_on,
        runs_out_on,
        projected_month,
        left: budget - spent,
        margin: budget - projected_month,
    })
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
    fn a_budget_runs_out_at_the_recent_pace() {
        // $10 a day from 2026-11-01 to 2026-11-18: $180 spent, 12 days left.
        let records: Vec<UsageRecord> = (1..=18).map(|d| billed(&format!("2026-11-{d:02}"), "f", 10)).collect();
        let s = summarize(PriceBook::catalog(), &records);
        let b = budget_run_out(&s, Money(250_000_000)).unwrap();
        assert_eq!((b.month.as_str(), b.spent, b.daily_pace), ("2026-11", Money(180_000_000), Money(10_000_000)));
        assert_eq!((b.runs_out_on.as_deref(), b.exceeded_on), (Some("2026-11-25"), None), "$70 left is 7 days");
        assert_eq!(b.projected_month, Money(300_000_000));
        let b = budget_run_out(&s, Money(1_000_000_000)).unwrap();
        assert_eq!(b.runs_out_on, None, "not within the month");
        let b = budget_run_out(&s, Money(95_000_000)).unwrap();
        assert_eq!((b.exceeded_on.as_deref(), b.runs_out_on), (Some("2026-11-10"), None));
        assert!(budget_run_out(&summarize(PriceBook::catalog(), &[]), Money(1)).is_none());
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

//! Figures as answers print them, and the few computations the bank's expectations share
//! (run rate, budget, what-if, savings target), all in integer micro-dollars.
use apex_costs::{group_thousands, Money};

use crate::data::{date, Data, Day, Period, Row, LAST};

/// `$1,234.56`.
pub fn money(micros: i64) -> String {
    Money(micros).to_string()
}

/// `1,234,567`.
pub fn count(n: u64) -> String {
    group_thousands(n)
}

/// A unit cost: cents from a dollar up (`$1.23`), four decimals below (`$0.0123`).
pub fn fine(micros: f64) -> String {
    if micros >= 1_000_000.0 {
        money(micros.round() as i64)
    } else {
        format!("${:.4}", micros / 1_000_000.0)
    }
}

/// `part` as a share of `total` with one decimal, rounded half up: `31.7%`.
pub fn share(part: i64, total: i64) -> String {
    let bp = part as i128 * 10_000 / total as i128;
    let tenths = (bp + 5) / 10;
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// `a / b` rounded half away from zero (b > 0).
pub fn div_round(a: i128, b: i128) -> i128 {
    if a >= 0 {
        (2 * a + b) / (2 * b)
    } else {
        -((-2 * a + b) / (2 * b))
    }
}

/// The monthly run rate: the last 7 days' cost × 30 / 7.
pub fn run_rate(data: &Data) -> i64 {
    div_round(data.cost(Period::LAST_7_DAYS) as i128 * 30, 7) as i64
}

/// What a question about a November budget of `budget` micro-dollars expects: when it was
/// already reached, the day it was; when it will be reached this month at the last 7 days'
/// pace, that day; otherwise the projected November total.
pub fn budget(data: &Data, budget: i64) -> Vec<String> {
    let month = data.cost(Period::NOVEMBER);
    if month >= budget {
        let mut cumulative = 0;
        for d in Period::NOVEMBER.0..=LAST {
            cumulative += data.cost(Period::day(d));
            if cumulative >= budget {
                return vec!["already".into(), date(d)];
            }
        }
        unreachable!("the month reached the budget");
    }
    let week = data.cost(Period::LAST_7_DAYS) as i128;
    let days_left = 30 - (LAST - Period::NOVEMBER.0 + 1) as i128;
    // P = week / 7 per day: M + P × days_left ≥ N ⇔ 7M + week × days_left ≥ 7N.
    let (m, n) = (month as i128, budget as i128);
    if 7 * m + week * days_left >= 7 * n {
        // ceil((N − M) / P) = ceil(7(N − M) / week)
        let days = (7 * (n - m) + week - 1) / week;
        vec![date(LAST + days as Day)]
    } else {
        vec![money((m + div_round(week * days_left, 7)) as i64)]
    }
}

/// The projected monthly cost of `feature` on gpt-4o-mini at its list price ($0.15 input,
/// $0.075 cached input, $0.60 output per 1M tokens): its rows' tokens repriced, × 30 / the
/// days it has rows.
pub fn what_if_mini(data: &Data, feature: &str) -> i64 {
    let keep = |r: &Row| r.feature == feature;
    let numerator: i128 = data
        .rows
        .iter()
        .filter(|r| keep(r))
        .map(|r| (r.input - r.cached) as i128 * 150_000 + r.cached as i128 * 75_000 + r.output as i128 * 600_000)
        .sum();
    let days = data.days_with_data(Period::ALL, keep) as i128;
    div_round(numerator * 30, days * 1_000_000) as i64
}

/// The savings target of cutting `pct` percent of an average month (total × 30 / the days
/// in the data).
pub fn savings_target(data: &Data, pct: i64) -> i64 {
    let days = data.days_with_data(Period::ALL, |_| true) as i128;
    div_round(data.cost(Period::ALL) as i128 * 30 * pct as i128, days * 100) as i64
}

/// The average cost per day with data in `period`.
pub fn per_day(data: &Data, period: Period, keep: impl Fn(&Row) -> bool + Copy) -> String {
    let agg = data.agg(period, keep);
    fine(agg.cost as f64 / data.days_with_data(period, keep) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Data, Row, GPT_41};

    fn row(day: Day, feature: &'static str, cost_dollars: i64, input: u64, cached: u64, output: u64) -> Row {
        Row {
            day,
            model: GPT_41,
            feature,
            project: "p",
            user: "",
            api_key: "k",
            environment: "production",
            requests: 1,
            input,
            cached,
            output,
            cost: cost_dollars * 1_000_000,
        }
    }

    /// $100 on 2026-11-01, then $70 a day over the last 7 days (2026-11-12..18): November so
    /// far $590, a pace of $70 a day.
    fn tiny() -> Data {
        let mut rows = vec![row(61, "f", 100, 1_000_000, 0, 1_000_000)];
        rows.extend((72..=LAST).map(|d| row(d, if d == 72 { "g" } else { "h" }, 70, 2_000_000, 1_000_000, 0)));
        Data { rows }
    }

    #[test]
    fn expectations_on_a_tiny_dataset() {
        let data = tiny();
        assert_eq!(money(run_rate(&data)), "$2,100.00", "490 × 30 / 7");
        // Reached on the 7th day with data: 100 + 6 × 70 = 520 ≥ 500.
        assert_eq!(budget(&data, 500_000_000), ["already", "2026-11-17"]);
        // 590 + 12 × 70 = 1,430 ≥ 1,000: ceil(410 / 70) = 6 days after 2026-11-18.
        assert_eq!(budget(&data, 1_000_000_000), ["2026-11-24"]);
        assert_eq!(budget(&data, 2_000_000_000), ["$1,430.00"]);
        // 590 over 8 days with data, × 30 = 2,212.50 a month; 30% of it.
        assert_eq!(money(savings_target(&data, 30)), "$663.75");
        // f: 1M input at $0.15 and 1M output at $0.60 on one day, × 30.
        assert_eq!(money(what_if_mini(&data, "f")), "$22.50");
        // h: 1M uncached at $0.15 and 1M cached at $0.075 a day, 6 days: $0.225 × 30.
        assert_eq!(money(what_if_mini(&data, "h")), "$6.75");
        assert_eq!(per_day(&data, Period::NOVEMBER, |_| true), "$73.75");
        assert_eq!(data.peak_day(), 61);
        assert_eq!(data.driver_of(72), "g");
    }

    #[test]
    fn figures_print_like_answers() {
        assert_eq!(money(1_234_564_999), "$1,234.56");
        assert_eq!(money(1_234_565_000), "$1,234.57");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(fine(12_345.0), "$0.0123");
        assert_eq!(fine(1_234_567.0), "$1.23");
        assert_eq!(share(317, 1000), "31.7%");
        assert_eq!(share(3_165, 10_000), "31.7%", "half up");
        assert_eq!(share(3_164, 10_000), "31.6%");
        assert_eq!(share(1, 3), "33.3%");
        assert_eq!(div_round(7, 2), 4);
        assert_eq!(div_round(-7, 2), -4);
        assert_eq!(div_round(10, 4), 3);
    }
}

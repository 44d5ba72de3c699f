//! Around a direct answer: at most two things also worth knowing, and two questions to ask
//! next.
use apex_costs::group_thousands;

use super::{pct, Facts};
use crate::question::{Operation, Question};

/// At most two lines the user did not ask for but would want to know, each from the
/// findings of the run.
pub(crate) fn also(f: &Facts) -> Vec<String> {
    let op = f.q.operation;
    let mut lines = Vec::new();
    // A day that stands out, unless the answer is about such days.
    if !matches!(op, Operation::Anomalies | Operation::ExplainChange) {
        if let Some(a) = f.signals.anomalies.iter().max_by_key(|a| a.excess.0) {
            lines.push(format!(
                "**{}** stands out: {} `{}` cost {} against a typical {} a day. Ask \"why did costs spike on {}?\"",
                a.day, a.dimension, a.key, a.cost, a.median, a.day
            ));
        }
    }
    // Savings within reach, when they were looked for and the answer is not about them.
    if let Some(s) = f.savings.filter(|s| !matches!(op, Operation::Savings) && !s.recommendations.is_empty()) {
        let first = &s.recommendations[0];
        lines.push(format!(
            "Changes worth {} a month are within reach; the largest: {} ({} a month).",
            s.total_monthly_savings,
            super::money::on_feature(first),
            first.monthly_savings
        ));
    }
    if f.usage.unpriced_records > 0 {
        lines.push(format!(
            "{} records name models the price catalog does not know and carry no cost; they are left out of these figures.",
            group_thousands(f.usage.unpriced_records)
        ));
    }
    // How the last week moved, unless the answer is about movement.
    if !matches!(op, Operation::Trend | Operation::Compare | Operation::ExplainChange | Operation::Forecast) {
        if let Some((wow, change)) = f.signals.week_over_week.as_ref().and_then(|w| Some((w, w.change_bp?))) {
            let direction = if change >= 0 { "up" } else { "down" };
            lines.push(format!(
                "The last 7 days cost {}, {direction} {} on the 7 days before ({}).",
                wow.last_week,
                pct(change.saturating_abs()),
                wow.previous_week
            ));
        }
    }
    lines.truncate(2);
    lines
}

/// Two questions that go on from this one, phrased so that they can be asked as they are.
pub(crate) fn suggestions(q: &Question, f: &Facts) -> Vec<String> {
    let during = q.period.as_ref().map_or(String::new(), |p| {
        if p.first == p.last {
            format!(" on {}", p.first)
        } else {
            format!(" between {} and {}", p.first, p.last)
        }
    });
    let largest_feature = f.usage.by_feature.first().map(|g| g.key.as_str());
    let spike = f.signals.anomalies.iter().max_by_key(|a| a.excess.0).map(|a| a.day.as_str());
    let why = spike.map_or("How is our spend trending?".to_owned(), |d| format!("Why did costs spike on {d}?"));
    let pair: [String; 2] = match q.operation {
        Operation::Total | Operation::Compare => [format!("Which feature cost the most{during}?"), why],
        Operation::Top | Operation::Breakdown => [
            largest_feature.map_or("How is our spend trending?".to_owned(), |f| format!("How much did {f} cost last week?")),
            why,
        ],
        Operation::ExplainChange | Operation::Anomalies => {
            ["How can we reduce spend?".to_owned(), "How is our spend trending?".to_owned()]
        }
        Operation::Trend => [
            "Forecast next month".to_owned(),
            spike.map_or("Which feature costs the most?".to_owned(), |d| format!("Why did costs spike on {d}?")),
        ],
        Operation::Forecast => ["How can we cut 20%?".to_owned(), "How is our spend trending?".to_owned()],
        Operation::WhatIf | Operation::Savings => [
            "Forecast next month".to_owned(),
            largest_feature
                .map_or("Which feature costs the most?".to_owned(), |f| format!("What would {f} cost on gpt-4o-mini?")),
        ],
        Operation::Overview | Operation::ImportHelp | Operation::Greeting | Operation::OffTopic => {
            ["Which feature costs the most?".to_owned(), why]
        }
    };
    pair.into_iter().collect()
}

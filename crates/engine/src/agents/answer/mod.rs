//! The direct answer: the first sentence answers the question asked, with its figure or
//! name, from the tool results of the run; a short table or list supports it. One file per
//! family of questions.
use apex_costs::{Money, Summary};

pub(super) use super::pct;
use crate::question::{Dimension, Filter, Operation, Question};
use crate::tools::{Explained, Projection, Savings, Signals, Slice, WhatIfResult};

mod change;
mod money;
mod more;
mod slice;

pub(crate) use money::recommendations;
pub(crate) use more::{also, suggestions};
pub(crate) use slice::ranked;

/// What a direct answer is written from: the question and what the agents found for it.
pub(crate) struct Facts<'a> {
    pub q: &'a Question,
    pub usage: &'a Summary,
    pub signals: &'a Signals,
    pub slice: Option<&'a Slice>,
    pub change: Option<&'a Explained>,
    pub savings: Option<&'a Savings>,
    pub what_if: Option<&'a WhatIfResult>,
    pub forecast: Option<&'a Projection>,
}

/// The direct answer to the question, when it asks for something a direct answer gives:
/// the first sentence with the figure, then what supports it. `None` for the full report.
pub(crate) fn direct(f: &Facts) -> Option<String> {
    let q = f.q;
    let mut out = String::new();
    for n in &q.not_found {
        let what = n.dimension.map_or("name", Dimension::label);
        let closest = if n.suggestions.is_empty() { String::new() } else { format!(" (closest: {})", n.suggestions.join(", ")) };
        out.push_str(&format!("I found **no** {what} `{}` in your data{closest}. ", n.said));
    }
    if !q.not_found.is_empty() && q.filters.is_empty() {
        let total = f.usage.total;
        out.push_str(&format!("All your usage together cost {total} from {} to {}.\n\n", f.usage.from, f.usage.to));
        return Some(out);
    }
    let answer = match q.operation {
        Operation::Total => slice::total(q, f.slice?),
        Operation::Top => slice::top(q, f.slice?)?,
        Operation::Breakdown => slice::breakdown(q, f.slice?)?,
        Operation::Compare => slice::compare(q, f.slice?)?,
        Operation::ExplainChange => change::explain(f.change?, f.signals),
        Operation::Trend => change::trend(f.usage),
        Operation::Anomalies => change::anomalies(f.signals, f.usage),
        Operation::Forecast => money::forecast(f.forecast?),
        Operation::WhatIf if f.what_if.is_some() => money::what_if(f.what_if?),
        Operation::WhatIf | Operation::Savings => money::savings(q, f.savings?, f.usage),
        Operation::Overview | Operation::ImportHelp | Operation::Greeting | Operation::OffTopic => return None,
    };
    out.push_str(&answer);
    if !out.ends_with("\n\n") {
        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
    }
    Some(out)
}

/// "on model gpt-4.1 and feature support-bot".
pub(super) fn scope(filters: &[Filter]) -> String {
    let names: Vec<String> = filters
        .iter()
        .map(|f| {
            let name = if f.values.len() == 1 { f.values[0].clone() } else { f.said.clone() };
            format!("{} `{name}`", f.dimension.label())
        })
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" on {}", names.join(" and "))
    }
}

/// "yesterday (2026-11-30, the last day in your data)", or the days the data covers.
pub(super) fn when(q: &Question, s: &Slice) -> String {
    match &q.period {
        // "2026-11-12", "2026-11-03 … 2026-11-09".
        Some(p) if p.label.starts_with(|c: char| c.is_ascii_digit()) && p.first == p.last => format!("on {}", p.first),
        Some(p) if p.label.starts_with(|c: char| c.is_ascii_digit()) => format!("from {} to {}", p.first, p.last),
        // "November 2026 (…)", "Nov 12 (2026-11-12)".
        Some(p)
            if p.label.starts_with(|c: char| c.is_uppercase())
                || p.label.starts_with(|c: char| c.is_ascii_lowercase())
                    && p.label.split(' ').next().is_some_and(|w| w.len() == 3) =>
        {
            let label =
                if p.label.contains(&p.first.to_string()) { p.label.clone() } else { format!("{} ({})", p.label, p.span()) };
            format!("in {label}")
        }
        Some(p) if p.label.contains(&p.first.to_string()) => p.label.clone(),
        Some(p) => format!("in {} ({})", p.label, p.span()),
        None if s.from.is_empty() => "in your data".to_owned(),
        None => format!("from {} to {} (all your data)", s.from, s.to),
    }
}

/// Dollars with the precision a small figure needs: "$0.0123", "$12.35".
pub(super) fn fine(micros: f64) -> String {
    let dollars = micros / 1_000_000.0;
    if dollars.abs() >= 1.0 {
        Money(micros.round() as i64).to_string()
    } else {
        format!("${dollars:.4}")
    }
}

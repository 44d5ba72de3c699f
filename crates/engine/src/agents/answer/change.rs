//! Answers about movement: why spend changed, where it is trending, which days stand out.
use std::fmt::Write as _;

use apex_costs::{group_thousands, Money, Summary};

use super::pct;
use crate::tools::{Explained, Signals};

/// A change in words: "**$43.10 more**", "**$2.00 less**".
fn more_or_less(change: Money) -> String {
    if change.0 >= 0 {
        format!("**{change} more**")
    } else {
        format!("**{} less**", Money(change.0.saturating_abs()))
    }
}

fn signed(m: Money) -> String {
    if m.0 >= 0 {
        format!("+{m}")
    } else {
        m.to_string()
    }
}

/// "On 2026-11-12 you spent **$X**, **$D more** than an average day of the 7 before ($A);
/// most of it came from `support-bot` on gpt-4.1 (+$M)."
pub(super) fn explain(e: &Explained, signals: &Signals) -> String {
    let Some(c) = &e.change else {
        return "There is no usage to explain yet: import your usage and ask again.".to_owned();
    };
    let mut out = String::new();
    let single = c.from == c.to;
    let base = if c.baseline_days == c.days {
        format!("{} from {} to {}", c.baseline_cost, c.baseline_from, c.baseline_to)
    } else if single {
        format!("an average day of the {} days before ({})", c.baseline_days, c.baseline_cost)
    } else {
        format!("the {} days before, scaled to {} days ({})", c.baseline_days, c.days, c.baseline_cost)
    };
    let lead = match (e.picked, single) {
        // Asked why without a day, over data where no day is unusual: said so first.
        (true, _) if signals.anomalies.is_empty() => format!(
            "No day stands out as unusual; the one that rose most over the days before was **{}**: you spent **{}**",
            c.from, c.cost
        ),
        (true, _) => format!("Your spend stood out most on **{}**: you spent **{}**", c.from, c.cost),
        (false, true) => format!("On {} you spent **{}**", c.from, c.cost),
        (false, false) => format!("From {} to {} you spent **{}**", c.from, c.to, c.cost),
    };
    let top = c.movers.first().filter(|m| m.change.0 != 0 && c.change.0 != 0);
    let cause = match top {
        Some(m) if (m.change.0 > 0) == (c.change.0 > 0) => {
            format!(
                "; most of {} came from `{}` on {} ({})",
                if c.change.0 > 0 { "the rise" } else { "the drop" },
                m.feature,
                m.model,
                signed(m.change)
            )
        }
        Some(m) => format!("; the largest single move was `{}` on {} ({})", m.feature, m.model, signed(m.change)),
        None => String::new(),
    };
    let _ = writeln!(out, "{lead}, {} than {base}{cause}.\n", more_or_less(c.change));
    if let Some(m) = top {
        let _ = writeln!(
            out,
            "`{}` on {} made {} requests against {} in the comparison, at {} against {}.\n",
            m.feature,
            m.model,
            group_thousands(m.requests),
            group_thousands(m.baseline_requests),
            m.cost,
            m.baseline,
        );
    }
    out.push_str("| Feature | Model | Before | Now | Change |\n|---|---|---:|---:|---:|\n");
    for m in &c.movers {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", m.feature, m.model, m.baseline, m.cost, signed(m.change));
    }
    let _ = writeln!(
        out,
        "\nOf the {} change: {} from the number of requests (volume), {} from what each request cost (price), {} from spend moving between features and models, or starting and stopping (mix).\n",
        signed(c.change),
        signed(c.volume),
        signed(c.price),
        signed(c.mix),
    );
    if c.change.0 > 0 && c.volume.0 >= c.price.0 {
        out.push_str("More requests drove it: check for a retry loop, a runaway job or new traffic on that feature.\n");
    } else if c.change.0 > 0 {
        out.push_str("Dearer requests drove it: check for longer prompts or answers, or a switch to a pricier model.\n");
    }
    out
}

/// "Spend is **up 12.3%**: **$A** in the last 7 days (…) against $B in the 7 days before."
pub(super) fn trend(u: &Summary) -> String {
    let weeks = &u.weekly;
    let [.., before, last] = weeks.as_slice() else {
        return format!(
            "With {} days of data there are not two weeks to compare yet: you spent **{}** from {} to {}.",
            u.days, u.total, u.from, u.to
        );
    };
    let (now, then) = (last.cost, before.cost);
    let direction = match (now.0 - then.0).signum() {
        _ if then.0 == 0 => "up from nothing".to_owned(),
        1 => format!("**up {}**", pct(change_bp(now, then))),
        -1 => format!("**down {}**", pct(-change_bp(now, then))),
        _ => "**flat**".to_owned(),
    };
    let first_day = crate::question::day(&last.day).map(|d| (d - time::Duration::days(6)).to_string()).unwrap_or_default();
    let mut out = format!(
        "Spend is {direction}: **{now}** in the last 7 days ({first_day} to {}) against {then} in the 7 days before.\n\n",
        last.day
    );
    out.push_str("| 7 days ending | Spend | Change |\n|---|---:|---:|\n");
    for (i, week) in weeks.iter().enumerate().skip(weeks.len().saturating_sub(6)) {
        let change = match i.checked_sub(1).map(|j| weeks[j].cost) {
            Some(p) if p.0 > 0 => pct(change_bp(week.cost, p)),
            _ => String::new(),
        };
        let _ = writeln!(out, "| {} | {} | {change} |", week.day, week.cost);
    }
    out
}

fn change_bp(now: Money, then: Money) -> i64 {
    (now - then).ratio_bp(then).unwrap_or(0)
}

/// One entry per day that stands out (an incident), its largest spike first.
pub(super) fn anomalies(s: &Signals, u: &Summary) -> String {
    if s.anomalies.is_empty() {
        return format!(
            "No day stands out: every model's and feature's daily spend stayed within its usual range from {} to {}.",
            u.from, u.to
        );
    }
    let mut days: Vec<&str> = s.anomalies.iter().map(|a| a.day.as_str()).collect();
    days.sort_unstable();
    days.dedup();
    let named: Vec<String> = days
        .iter()
        .map(|day| {
            let a = s.anomalies.iter().filter(|a| a.day == *day).max_by_key(|a| a.excess.0).expect("a day of the list");
            format!("**{day}** ({} `{}` cost {} against a typical {})", a.dimension, a.key, a.cost, a.median)
        })
        .collect();
    let count = if days.len() == 1 { "one unusual day".to_owned() } else { format!("{} unusual days", days.len()) };
    let mut out = format!("I found {count}: {}.\n\n", named.join("; "));
    for day in &days {
        let _ = write!(out, "- **{day}**:");
        for a in s.anomalies.iter().filter(|a| a.day == *day) {
            let _ = write!(out, " {} `{}` {} against a typical {} ({} more);", a.dimension, a.key, a.cost, a.median, a.excess);
        }
        out.pop();
        out.push_str(".\n");
    }
    out.push_str("\nA spike like this is worth checking first: a retry loop, a runaway job or a prompt that grew. Ask \"why did costs spike on DAY?\" for what moved.\n");
    out
}

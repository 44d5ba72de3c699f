//! Answers from the slice of the usage a question narrows to: a total, a ranking, a
//! breakdown, two periods side by side.
use apex_costs::{basis_points, group_thousands, GroupTotal};

use super::{fine, pct, scope, when};
use crate::question::{Measure, Order, Question};
use crate::tools::Slice;

pub(super) fn total(q: &Question, s: &Slice) -> String {
    let (scope, when) = (scope(&q.filters), when(q, s));
    let share = if q.filters.is_empty() || s.period_cost.0 <= 0 {
        String::new()
    } else {
        format!(", **{}** of the {} spent in those days", pct(i64::from(s.share_bp)), s.period_cost)
    };
    let n = group_thousands;
    match q.measure {
        Measure::Requests => format!("There were **{} requests**{scope} {when} ({}).", n(s.requests), s.cost),
        Measure::Tokens => format!(
            "**{} tokens**{scope} {when}: {} input and {} output.",
            n(s.input_tokens + s.output_tokens),
            n(s.input_tokens),
            n(s.output_tokens)
        ),
        Measure::InputTokens => format!("**{} input tokens**{scope} {when}.", n(s.input_tokens)),
        Measure::OutputTokens => format!("**{} output tokens**{scope} {when}.", n(s.output_tokens)),
        Measure::CachedTokens => format!(
            "**{} input tokens were served from the cache**{scope} {when}, of {} input tokens.",
            n(s.cached_input_tokens),
            n(s.input_tokens)
        ),
        Measure::ReasoningTokens => format!("**{} reasoning tokens**{scope} {when}.", n(s.reasoning_tokens)),
        Measure::CacheHitShare if s.input_tokens > 0 => format!(
            "**{}** of input tokens{scope} {when} were served from the cache ({} of {}).",
            pct(basis_points(i128::from(s.cached_input_tokens), i128::from(s.input_tokens)).unwrap_or(0)),
            n(s.cached_input_tokens),
            n(s.input_tokens)
        ),
        Measure::CostPerRequest | Measure::CostPer1kRequests if s.requests == 0 => {
            format!("There were no requests{scope} {when}, so there is no cost per request.")
        }
        Measure::CostPerRequest => format!(
            "**{} per request**{scope} {when} ({} over {} requests).",
            fine(s.cost.0 as f64 / s.requests as f64),
            s.cost,
            n(s.requests)
        ),
        Measure::CostPer1kRequests => format!(
            "**{} per 1,000 requests**{scope} {when} ({} over {} requests).",
            fine(s.cost.0 as f64 * 1000.0 / s.requests as f64),
            s.cost,
            n(s.requests)
        ),
        Measure::CostPerUser => match s.end_users.filter(|&users| users > 0) {
            Some(users) => format!(
                "**{} per end user**{scope} {when}: {} over {} end users (untagged usage excluded from the count, not the cost).",
                fine(s.cost.0 as f64 / users as f64),
                s.cost,
                n(users)
            ),
            None => format!(
                "Your usage{scope} {when} carries no end-user tags, so I cannot give a cost per end user: \
                 import rows with a `user` column (or the source's end-user field) to get one. It cost {} in all.",
                s.cost
            ),
        },
        Measure::AveragePerDay if s.days > 0 => format!(
            "**{} a day** on average{scope} {when}: {} over {} days.",
            fine(s.cost.0 as f64 / f64::from(s.days)),
            s.cost,
            s.days
        ),
        Measure::Share if !q.filters.is_empty() => {
            format!("**{}** of the spend {when} went{scope}: {} of {}.", pct(i64::from(s.share_bp)), s.cost, s.period_cost)
        }
        _ => format!("You spent **{}**{scope} {when}{share}.", s.cost),
    }
}

/// The figure a ranking orders by, per group.
fn rank_key(q: &Question, g: &GroupTotal) -> f64 {
    match q.measure {
        Measure::CostPerRequest | Measure::CostPer1kRequests if g.requests > 0 => g.cost.0 as f64 / g.requests as f64,
        Measure::CostPerRequest | Measure::CostPer1kRequests => f64::NEG_INFINITY,
        Measure::Requests => g.requests as f64,
        Measure::Tokens => (g.input_tokens + g.output_tokens) as f64,
        Measure::InputTokens => g.input_tokens as f64,
        Measure::OutputTokens => g.output_tokens as f64,
        _ => g.cost.0 as f64,
    }
}

fn figure(q: &Question, g: &GroupTotal) -> String {
    match q.measure {
        Measure::CostPerRequest if g.requests > 0 => {
            format!("{} per request ({} over {} requests)", fine(rank_key(q, g)), g.cost, group_thousands(g.requests))
        }
        Measure::CostPer1kRequests if g.requests > 0 => format!("{} per 1,000 requests", fine(rank_key(q, g) * 1000.0)),
        Measure::Requests => format!("{} requests", group_thousands(g.requests)),
        Measure::Tokens | Measure::InputTokens | Measure::OutputTokens => {
            format!("{} tokens", group_thousands(rank_key(q, g) as u64))
        }
        _ => format!("{} ({})", g.cost, pct(i64::from(g.share_bp))),
    }
}

/// The slice's groups in the order the question ranks them (by its measure, largest or
/// smallest first): what "the second one" of a follow-up refers to.
pub(crate) fn ranked<'a>(q: &Question, s: &'a Slice) -> Vec<&'a GroupTotal> {
    let mut groups: Vec<&GroupTotal> = s.groups.iter().collect();
    groups.sort_by(|a, b| rank_key(q, b).total_cmp(&rank_key(q, a)).then_with(|| a.key.cmp(&b.key)));
    if q.rank.is_some_and(|r| r.order == Order::Smallest) {
        groups.reverse();
    }
    groups
}

pub(super) fn top(q: &Question, s: &Slice) -> Option<String> {
    let d = q.group_by?;
    let rank = q.rank?;
    let groups = ranked(q, s);
    let (scope, when) = (scope(&q.filters), when(q, s));
    let picked: Vec<&&GroupTotal> = groups.iter().skip(rank.place.saturating_sub(1)).take(rank.count.max(1)).collect();
    let Some(first) = picked.first() else {
        return Some(format!("There is no {} usage{scope} {when}.", d.label()));
    };
    let most = match (rank.order, q.measure) {
        (Order::Largest, Measure::CostPerRequest | Measure::CostPer1kRequests) => "the highest cost per request",
        (Order::Smallest, Measure::CostPerRequest | Measure::CostPer1kRequests) => "the lowest cost per request",
        (Order::Largest, Measure::Requests) => "the most requests",
        (Order::Smallest, Measure::Requests) => "the fewest requests",
        (Order::Largest, _) => "the most",
        (Order::Smallest, _) => "the least",
    };
    let verb = if matches!(q.measure, Measure::Requests | Measure::CostPerRequest | Measure::CostPer1kRequests) {
        "has"
    } else {
        "cost"
    };
    if picked.len() == 1 {
        let place = if rank.place > 1 { format!(" (number {} by this measure)", rank.place) } else { String::new() };
        return Some(format!(
            "The {} that {verb} {most}{scope} {when} is **{}**{place}: {}.",
            d.label(),
            first.key,
            figure(q, first)
        ));
    }
    let list: Vec<String> = picked.iter().map(|g| format!("**{}** {}", g.key, figure(q, g))).collect();
    Some(format!(
        "The {} {}s that {} {most}{scope} {when}: {}.",
        picked.len(),
        d.label(),
        if verb == "has" { "have" } else { "cost" },
        list.join(", ")
    ))
}

pub(super) fn breakdown(q: &Question, s: &Slice) -> Option<String> {
    let d = q.group_by?;
    let (scope, when) = (scope(&q.filters), when(q, s));
    let list: Vec<String> = s.groups.iter().map(|g| format!("**{}** {}", g.key, figure(q, g))).collect();
    let more = if s.more > 0 { format!(", and {} more", s.more) } else { String::new() };
    Some(format!("By {}{scope} {when} ({} in all): {}{more}.", d.label(), s.cost, list.join(", ")))
}

/// "You spent **$1,301.07** last week (…), **up 4.2%** from $1,248.60 the week before (…)."
pub(super) fn compare(q: &Question, s: &Slice) -> Option<String> {
    let then = q.compare.as_ref()?;
    let b = s.compared.as_ref()?;
    let scope = scope(&q.filters);
    let change = match b.change_bp {
        Some(bp) if bp > 0 => format!("**up {}** ({}) from", pct(bp), b.difference),
        Some(bp) if bp < 0 => format!("**down {}** ({}) from", pct(-bp), -b.difference),
        Some(_) => "the same as".to_owned(),
        None => "against nothing spent".to_owned(),
    };
    // Unequal periods ("this month so far" against last month) are said to be unequal.
    let unequal = if s.days.min(b.days) * 10 < s.days.max(b.days) * 9 && s.days > 0 && b.days > 0 {
        format!(" ({} days against {})", s.days, b.days)
    } else {
        String::new()
    };
    let then = if then.label.starts_with("last ") || then.label.starts_with("this ") {
        then.label.clone()
    } else {
        format!("in {}", then.label)
    };
    Some(format!("You spent **{}**{scope} {}, {change} {} {then}{unequal}.", s.cost, when(q, s), b.cost))
}

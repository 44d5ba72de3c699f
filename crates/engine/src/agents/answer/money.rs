//! Answers about money to come: the forecast and a budget, a what-if, savings toward a target.
use std::fmt::Write as _;

use apex_costs::{Money, Summary};

use super::pct;
use crate::question::Question;
use crate::tools::{Projection, Savings, WhatIfResult};

pub(super) fn forecast(p: &Projection) -> String {
    let f = &p.forecast;
    let mut out = String::new();
    if let Some(b) = &p.budget {
        let sentence = match (&b.exceeded_on, &b.runs_out_on) {
            (Some(day), _) => format!(
                "You have **already** spent your {} budget for {}: the month reached it on **{day}**, and it has cost {} through {}.",
                b.budget, b.month, b.spent, b.through
            ),
            (None, Some(day)) => format!(
                "At the last 7 days' pace ({} a day), your {} budget for {} runs out on **{day}**: {} is spent through {}, {} is left.",
                b.daily_pace,
                b.budget,
                b.month,
                b.spent,
                b.through,
                b.left
            ),
            (None, None) => format!(
                "Your {} budget for {} holds at the last 7 days' pace: the month comes to **{}** ({} spent through {}, then {} a day), {} under it.",
                b.budget,
                b.month,
                b.projected_month,
                b.spent,
                b.through,
                b.daily_pace,
                b.margin
            ),
        };
        let _ = writeln!(out, "{sentence}\n");
    }
    let direction = match f.trend_bp {
        t if t > 0 => format!("up {}", pct(t)),
        t if t < 0 => format!("down {}", pct(-t)),
        _ => "flat".to_owned(),
    };
    let _ = writeln!(
        out,
        "At the last 7 days' pace you will spend **{} per month**, {direction} from {} at the pace of the first week of your data ({} days observed).",
        f.monthly_run_rate, f.previous_run_rate, f.days_observed,
    );
    if let Some(b) = &p.budget {
        if b.exceeded_on.is_none() {
            let _ = writeln!(out, "\nAt that pace {} comes to {} in all.", b.month, b.projected_month);
        }
    }
    out
}

pub(super) fn what_if(w: &WhatIfResult) -> String {
    let w = match w {
        WhatIfResult::Priced(w) => w,
        WhatIfResult::Unavailable { unavailable } => return format!("I cannot price that change: {unavailable}."),
    };
    let scope = w.feature.as_deref().map_or_else(|| "all your usage".to_owned(), |f| format!("`{f}`"));
    let change = Money(w.monthly_change.0.saturating_abs());
    let verdict = match w.monthly_change.0.signum() {
        -1 => format!("**{change} a month less** ({} of its cost)", pct(change.ratio_bp(w.current_monthly).unwrap_or(0))),
        1 => format!("**{change} a month more** ({} more)", pct(change.ratio_bp(w.current_monthly).unwrap_or(0))),
        _ => "the same".to_owned(),
    };
    // The models it runs on now, less the one it would move to ("already partly on it").
    let others: Vec<&str> = w.from_models.iter().map(String::as_str).filter(|m| *m != w.to_model).collect();
    let now = match (others.is_empty(), others.len() < w.from_models.len()) {
        (true, _) => format!("where it already runs on {}", w.to_model),
        (false, true) => format!("on {} (and partly on {} already)", others.join(", "), w.to_model),
        (false, false) => format!("on {}", others.join(", ")),
    };
    format!(
        "On {}, {scope} would cost **{} a month** instead of {} {now}: {verdict}.\n\n{}\n",
        w.to_model, w.projected_monthly, w.current_monthly, w.rationale
    )
}

/// Savings, toward a target when the question gives one ("cut 30%"), in as many changes as
/// it asks for ("three ways"); every figure from the savings tool.
pub(super) fn savings(q: &Question, s: &Savings, usage: &Summary) -> String {
    let month = s.monthly_spend;
    let wanted = q.rank.map(|r| r.count).filter(|&n| n > 1);
    let goal = s.goal.as_ref();
    let n = goal.map_or(s.recommendations.len(), |g| g.changes);
    let recs = &s.recommendations[..n.min(s.recommendations.len())];
    let listed = goal.map_or(s.total_monthly_savings, |g| g.saved);
    let mut out = String::new();
    if recs.is_empty() {
        let no_tokens = usage.input_tokens == 0 && usage.output_tokens == 0 && usage.requests > 0;
        let why = if no_tokens {
            "your usage carries costs but no token counts, so I cannot check model fit, prompt caching, batch pricing or \
             answer lengths: import an export with token counts (the OpenAI usage export, LiteLLM or Langfuse logs, or a \
             CSV with `input_tokens` and `output_tokens`) and ask again"
        } else {
            "the checks for right-sized models, prompt caching, batch pricing, answer-length caps and repeated requests \
             found nothing worth changing"
        };
        return match goal.and_then(|g| Some((g.target_percent?, g.target?))) {
            Some((t, target)) => format!(
                "Cutting {t}% would mean saving **{target} a month** of your {month} average monthly spend, and I found no change that gets there: {why}."
            ),
            None => format!("I found no change that lowers your {month} average monthly spend: {why}."),
        };
    }
    let changes = if n == 1 { "one change".to_owned() } else { format!("{n} changes") };
    match goal.and_then(|g| Some((g.target_percent?, g.target?, g))) {
        Some((t, target, g)) => {
            let all = s.recommendations.len();
            let reach = match (g.short_by, g.short_by_all) {
                (None, _) => "which reaches the target".to_owned(),
                (Some(short), _) if n == all => {
                    format!("{short} short of it: the rest would have to come from using less")
                }
                (Some(short), None) => format!(
                    "{short} short of it; all {all} changes I found save {} a month, which reaches it",
                    s.total_monthly_savings
                ),
                (Some(short), Some(short_all)) => format!(
                    "{short} short of it; all {all} changes I found save {} a month, still {short_all} short: the rest would have to come from using less",
                    s.total_monthly_savings
                ),
            };
            let _ = writeln!(
                out,
                "Cutting {t}% means saving **{target} a month** of your {month} average monthly spend; the {changes} below save **{listed} a month** ({} of your spend), {reach}.\n",
                pct(listed.ratio_bp(month).unwrap_or(0)),
            );
        }
        None => {
            let first = &recs[0];
            let _ = writeln!(
                out,
                "You can save **{listed} a month** ({} of your {month} average monthly spend) with {changes}; the largest is {} ({} a month).\n",
                pct(listed.ratio_bp(month).unwrap_or(0)),
                on_feature(first),
                first.monthly_savings,
            );
        }
    }
    recommendations(recs, &mut out);
    if wanted.is_some_and(|w| w > n) {
        let _ = writeln!(out, "\nYou asked for {}; these are all the changes I found.", wanted.unwrap_or(n));
    }
    out
}

/// "enable prompt caching for support-bot", with the feature named when the title does
/// not name it.
pub(super) fn on_feature(r: &apex_costs::Recommendation) -> String {
    let title = r.title.to_lowercase();
    if title.contains(&r.feature.to_lowercase()) {
        title
    } else {
        format!("{title} on `{}`", r.feature)
    }
}

/// The changes as a numbered list, each with its figures, reasoning, confidence and how to
/// make it; for several, the note that the total counts overlapping changes once.
pub(crate) fn recommendations(recs: &[apex_costs::Recommendation], out: &mut String) {
    for (i, rec) in recs.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. **{}**: save **{}/month** ({} → {}). {} _Confidence: {}._ How: {}",
            i + 1,
            rec.title,
            rec.monthly_savings,
            rec.current_monthly,
            rec.projected_monthly,
            rec.rationale,
            rec.confidence,
            rec.how_to_apply,
        );
    }
    if recs.len() > 1 {
        out.push_str("\nWhere two changes touch the same feature, the total counts their combined effect once.\n");
    }
}

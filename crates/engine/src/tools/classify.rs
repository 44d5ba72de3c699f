//! Request triage: a small, transparent keyword classifier. It decides which part of the
//! analysis leads the report; every request still gets the full pipeline.
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Triage {
    /// `cost_analysis`, `optimization`, `forecast` or `general`.
    pub intent: &'static str,
    /// `model` or `feature`: the grouping the report leads with.
    pub focus: &'static str,
    /// The words that decided it, so the decision can be checked.
    pub matched: Vec<&'static str>,
}

const INTENTS: [(&str, &[&str]); 3] = [
    ("optimization", &["save", "saving", "savings", "reduce", "cut", "cheaper", "optimi", "lower"]),
    ("forecast", &["forecast", "predict", "projection", "next month", "trend", "budget"]),
    ("cost_analysis", &["cost", "spend", "spent", "bill", "price", "expens", "usage", "analy", "token"]),
];

pub fn classify(text: &str) -> Triage {
    let lower = text.to_lowercase();
    let mut best: (&'static str, Vec<&'static str>) = ("general", Vec::new());
    for (intent, words) in INTENTS {
        let matched: Vec<&'static str> = words.iter().copied().filter(|w| lower.contains(w)).collect();
        if matched.len() > best.1.len() {
            best = (intent, matched);
        }
    }
    let focus = if lower.contains("feature") || lower.contains("team") || lower.contains("project") {
        "feature"
    } else {
        "model"
    };
    Triage { intent: best.0, focus, matched: best.1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_common_requests() {
        assert_eq!(classify("Analyze my AI costs").intent, "cost_analysis");
        assert_eq!(classify("How can I reduce spend and save money?").intent, "optimization");
        assert_eq!(classify("Forecast next month's budget").intent, "forecast");
        assert_eq!(classify("hello there").intent, "general");
        assert_eq!(classify("Which feature costs most?").focus, "feature");
    }
}

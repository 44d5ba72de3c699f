//! Request triage: a small, transparent classifier. It decides what the answer leads with
//! and picks out the feature and the model a question names; every request still gets the
//! whole pipeline, so every answer rests on the same computed figures.
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Triage {
    /// `cost_analysis`, `optimization`, `forecast`, `what_if`, `import_help` or `off_topic`.
    pub intent: &'static str,
    /// `model` or `feature`: the grouping the report leads with.
    pub focus: &'static str,
    /// The words that decided it, so the decision can be checked.
    pub matched: Vec<&'static str>,
    /// A feature of the user's data that the question names.
    pub feature: Option<String>,
    /// For `what_if`: the model to price the usage on.
    pub target_model: Option<String>,
}

const INTENTS: [(&str, &[&str]); 5] = [
    ("import_help", &["import", "upload", "csv", "export", "load my", "add my data", "connect my"]),
    ("what_if", &["what if", "switch", "move ", "migrate", "instead of", "replace"]),
    ("optimization", &["save", "saving", "savings", "reduce", "cut", "cheaper", "optimi", "lower"]),
    ("forecast", &["forecast", "predict", "projection", "next month", "trend", "budget"]),
    ("cost_analysis", &["cost", "spend", "spent", "bill", "price", "expens", "usage", "analy", "token", "money"]),
];

/// `features` are the user's feature names; `is_model` tells whether a word names a priced model.
pub fn classify(text: &str, features: &[String], is_model: impl Fn(&str) -> bool) -> Triage {
    let lower = text.to_lowercase();
    let mut best: (&'static str, Vec<&'static str>) = ("off_topic", Vec::new());
    for (intent, words) in INTENTS {
        let matched: Vec<&'static str> = words.iter().copied().filter(|w| lower.contains(w)).collect();
        if matched.len() > best.1.len() {
            best = (intent, matched);
        }
    }
    let feature = features.iter().find(|f| lower.contains(&f.to_lowercase())).cloned();
    // The target is the last model named: "move chat from gpt-4o to gpt-4o-mini".
    let target_model = lower
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '?' | '!' | ';' | '(' | ')' | '"' | '\'' | '`'))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty() && is_model(w))
        .last()
        .map(str::to_owned);
    let mut intent = best.0;
    if intent == "what_if" && target_model.is_none() {
        // "switch" without a model to switch to is a request for savings.
        intent = "optimization";
    }
    if intent == "off_topic" && (feature.is_some() || target_model.is_some()) {
        intent = "cost_analysis";
    }
    let focus =
        if feature.is_some() || ["feature", "team", "project"].iter().any(|w| lower.contains(w)) { "feature" } else { "model" };
    Triage { intent, focus, matched: best.1, feature, target_model }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Triage {
        let features = vec!["support-chat".to_owned(), "ticket-triage".to_owned()];
        classify(text, &features, |w| ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"].contains(&w))
    }

    #[test]
    fn classifies_the_common_requests() {
        assert_eq!(run("Analyze my AI costs").intent, "cost_analysis");
        assert_eq!(run("How can I reduce spend and save money?").intent, "optimization");
        assert_eq!(run("Forecast next month's budget").intent, "forecast");
        assert_eq!(run("How do I import my OpenAI usage export?").intent, "import_help");
        assert_eq!(run("tell me a joke").intent, "off_topic");
        assert_eq!(run("Which feature costs most?").focus, "feature");
    }

    #[test]
    fn what_if_names_the_feature_and_the_target_model() {
        let t = run("What if we move support-chat from gpt-4o to gpt-4o-mini?");
        assert_eq!(t.intent, "what_if");
        assert_eq!(t.feature.as_deref(), Some("support-chat"));
        assert_eq!(t.target_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(run("Should we switch everything to claude-haiku-4-5").target_model.as_deref(), Some("claude-haiku-4-5"));
        assert_eq!(run("what if we switch?").intent, "optimization", "no target model");
        assert_eq!(run("ticket-triage").intent, "cost_analysis", "a feature alone is a question about it");
    }
}

//! The words of a question, and the names in it that belong to the user's data.
use serde::{Deserialize, Serialize};

/// What a name in the user's data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Model,
    Provider,
    Feature,
    Project,
    User,
    ApiKey,
    Environment,
    Day,
}

impl Dimension {
    /// In words ("end user").
    pub fn label(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Provider => "provider",
            Self::Feature => "feature",
            Self::Project => "project",
            Self::User => "end user",
            Self::ApiKey => "API key",
            Self::Environment => "environment",
            Self::Day => "day",
        }
    }

    /// The words that name the dimension itself ("by model", "which feature").
    pub(crate) fn words(self) -> &'static [&'static str] {
        match self {
            Self::Model => &["model", "models", "llm", "llms"],
            Self::Provider => &["provider", "providers", "vendor", "vendors"],
            Self::Feature => &["feature", "features", "use case", "use cases", "product", "products"],
            Self::Project => &["project", "projects", "team", "teams"],
            Self::User => &["end user", "end users", "end-user", "end-users", "customer", "customers", "user", "users"],
            Self::ApiKey => &["api key", "api keys", "key", "keys"],
            Self::Environment => &["environment", "environments", "env", "envs"],
            Self::Day => &["day", "days", "daily", "date", "dates"],
        }
    }

    pub(crate) const ALL: [Dimension; 8] =
        [Self::Model, Self::Provider, Self::Feature, Self::Project, Self::User, Self::ApiKey, Self::Environment, Self::Day];
}

/// The question in lower case, split into words: letters, digits and the characters that
/// hold model names and dates together (`gpt-4.1`, `2026-11-12`, `openai/gpt-4o`).
pub(crate) fn split(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut words = Vec::new();
    for raw in lower.split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '%' | '$' | ':' | ','))) {
        // Sentence punctuation at the ends is not part of a word; "1,000" keeps its comma.
        let w = raw.trim_matches(|c: char| matches!(c, '.' | ',' | ':' | '-' | '/'));
        if w.is_empty() {
            continue;
        }
        let group = |g: &str| {
            let g = g.split_once('.').map_or(g, |(whole, _)| whole);
            g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())
        };
        if w.contains(',') && !w.split(',').skip(1).all(group) {
            words.extend(w.split(',').filter(|p| !p.is_empty()).map(str::to_owned));
        } else {
            words.push(w.to_owned());
        }
    }
    words
}

/// Whether `needle` (lower case, possibly several words) occurs in `hay` as whole words.
pub(crate) fn contains_words(hay: &str, needle: &str) -> bool {
    find_words(hay, needle).is_some()
}

/// Where `needle` occurs in `hay` as whole words.
pub(crate) fn find_words(hay: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let is_word = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    // A plain scan: questions are short, and a searcher's setup for each of the few hundred
    // cue words a question is checked against cost more than the search itself.
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let mut from = 0;
    while let Some(at) = h.get(from..).and_then(|rest| rest.windows(n.len()).position(|w| w == n)) {
        let start = from + at;
        let end = start + needle.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        // A dot after a name ends a sentence ("… on gpt-4o.") unless more of a word follows.
        let after_ok = match after {
            None => true,
            Some('.') => !hay[end + 1..].chars().next().is_some_and(char::is_alphanumeric),
            Some(c) => !is_word(c),
        };
        if !before.is_some_and(is_word) && after_ok {
            return Some(start);
        }
        from = start + needle.chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// A dated snapshot's base name: `gpt-4o-2024-08-06` → `gpt-4o`, `claude-3-5-sonnet-20241022`
/// → `claude-3-5-sonnet`; other names are their own base.
pub(crate) fn undated(name: &str) -> &str {
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // -YYYY-MM-DD
    if bytes.len() > 11 && bytes[bytes.len() - 11] == b'-' {
        let tail = &name[name.len() - 10..];
        let t = tail.as_bytes();
        if t[4] == b'-' && t[7] == b'-' && digits(&t[..4]) && digits(&t[5..7]) && digits(&t[8..]) {
            return &name[..name.len() - 11];
        }
    }
    // -YYYYMMDD
    if bytes.len() > 9 && bytes[bytes.len() - 9] == b'-' && digits(&bytes[bytes.len() - 8..]) && bytes[bytes.len() - 8] == b'2' {
        return &name[..name.len() - 9];
    }
    name
}

/// Up to three names of `candidates` closest to `said` (for "did you mean").
pub(crate) fn closest<'a>(said: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .map(|c| {
            let sim = strsim::normalized_damerau_levenshtein(said, &c.to_lowercase());
            // A name that contains what was said (or the reverse) is a good guess too.
            let sim = if c.to_lowercase().contains(said) || said.contains(&c.to_lowercase()) { sim.max(0.6) } else { sim };
            (sim, c)
        })
        .filter(|(sim, _)| *sim >= 0.45)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_model_names_dates_and_amounts_whole() {
        assert_eq!(
            split("How much did gpt-4.1 cost on 2026-11-12, vs. openai/gpt-4o? $1,200.50 or 30%."),
            ["how", "much", "did", "gpt-4.1", "cost", "on", "2026-11-12", "vs", "openai/gpt-4o", "$1,200.50", "or", "30%"]
        );
        assert_eq!(split("support-bot,search"), ["support-bot", "search"]);
    }

    #[test]
    fn names_match_as_whole_words_only() {
        assert!(contains_words("what did gpt-4o cost?", "gpt-4o"));
        assert!(contains_words("what did gpt-4o cost.", "gpt-4o"));
        assert!(!contains_words("what did gpt-4o-mini cost?", "gpt-4o"));
        assert!(!contains_words("searching", "search"));
        assert!(contains_words("the search feature", "search"));
        assert!(contains_words("the support bot feature", "support bot"));
    }

    #[test]
    fn dated_snapshots_have_a_base_name() {
        assert_eq!(undated("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(undated("claude-3-5-sonnet-20241022"), "claude-3-5-sonnet");
        assert_eq!(undated("gpt-4.1"), "gpt-4.1");
        assert_eq!(undated("o1-mini"), "o1-mini");
    }

    #[test]
    fn suggestions_are_the_closest_names() {
        let names = ["support-bot", "search", "summarizer", "doc-qa"];
        assert_eq!(closest("suport-bot", names.iter().copied()), ["support-bot"]);
        assert_eq!(closest("support", names.iter().copied())[0], "support-bot");
        assert!(closest("zzzz", names.iter().copied()).is_empty());
    }
}

//! What an answer is judged by: its first sentence.

/// The first sentence of `answer`: leading blank lines and Markdown headings (`#` lines)
/// skipped, the first paragraph (up to a blank line) taken, and cut after the first `.`,
/// `?` or `!` followed by whitespace or the end (so `$1,234.56` and `31.7%` stay whole).
pub fn first_sentence(answer: &str) -> String {
    let paragraph: Vec<&str> = answer
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let paragraph = paragraph.join("\n");
    let mut chars = paragraph.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '?' | '!') && chars.peek().is_none_or(|(_, next)| next.is_whitespace()) {
            return paragraph[..i + c.len_utf8()].to_owned();
        }
    }
    paragraph
}

/// `text` as it is compared: lower case, without Markdown's `**` and backticks.
pub fn normalize(text: &str) -> String {
    text.replace("**", "").replace('`', "").to_lowercase()
}

/// The expected strings missing from `sentence` (case and Markdown emphasis ignored).
pub fn missing<'a>(sentence: &str, expected: &'a [String]) -> Vec<&'a str> {
    let sentence = normalize(sentence);
    expected.iter().filter(|e| !sentence.contains(&normalize(e))).map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sentence_skips_headings_and_stops_at_the_first_full_stop() {
        assert_eq!(
            first_sentence("You spent **$1,234.56** on gpt-4o. That is 31.7% of it."),
            "You spent **$1,234.56** on gpt-4o."
        );
        assert_eq!(
            first_sentence("\n\n## Your AI spend: $12.00\n\nIt rose 3.5% in a week! More below."),
            "It rose 3.5% in a week!"
        );
        assert_eq!(first_sentence("Which one? This one."), "Which one?");
        assert_eq!(first_sentence("Costs were $10.50.\nNext line."), "Costs were $10.50.");
        assert_eq!(
            first_sentence("No full stop here\nbut a second line\n\nSecond paragraph."),
            "No full stop here\nbut a second line"
        );
        assert_eq!(first_sentence("Ends with the figure $3.20."), "Ends with the figure $3.20.");
        assert_eq!(
            first_sentence("v1.2 of `gpt-4.1` costs $0.0123 per request. Yes."),
            "v1.2 of `gpt-4.1` costs $0.0123 per request."
        );
        assert_eq!(first_sentence(""), "");
        assert_eq!(first_sentence("# Only a heading"), "");
    }

    #[test]
    fn expected_strings_are_found_ignoring_case_and_emphasis() {
        let expected = vec!["Support-Bot".to_owned(), "$1,234.56".to_owned()];
        assert!(missing("The feature `support-bot` cost **$1,234.56**.", &expected).is_empty());
        assert_eq!(missing("The feature search cost $1,234.56.", &expected), ["Support-Bot"]);
    }
}

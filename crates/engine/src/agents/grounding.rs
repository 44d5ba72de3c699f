//! Grounding: a model may phrase the report, but every figure it states must be one the
//! tools computed in this run. A sentence with a figure that is not is replaced by the
//! computed statement closest to it.
//!
//! Checked figures: money (`$1,234.56`), percentages (`12.5%`) and counts of 100 or more
//! (tokens, requests). Small plain numbers (list items, "30 days", "3 changes"), dates
//! and figures inside names (`gpt-4o`, `claude-3.5`) are not figures of the analysis.
//! A figure may be rounded: `$1,235` stands for a computed $1,234.56.
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Money,
    Percent,
    Count,
}

/// A figure as written: its value, how many decimals it was written with, its scale
/// (`k` = 1000, `M` = 1e6) and kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Figure {
    pub kind: Kind,
    pub value: f64,
    pub decimals: i32,
    pub scale: f64,
}

pub struct Grounding {
    money: Vec<f64>,
    percent: Vec<f64>,
    count: Vec<f64>,
    /// The computed report's sentences: the replacements.
    statements: Vec<String>,
}

impl Grounding {
    /// `computed` is the built-in report of this run; `results` are the tool results it
    /// was written from (money in micro-dollars, shares in basis points, counts).
    pub fn new(computed: &str, results: &[&Value]) -> Self {
        let mut g = Self { money: Vec::new(), percent: Vec::new(), count: Vec::new(), statements: Vec::new() };
        for s in sentences(computed) {
            for f in figures(&s) {
                g.allow(f.kind, f.value * f.scale);
            }
            if s.trim().chars().any(char::is_alphanumeric) {
                g.statements.push(s);
            }
        }
        for v in results {
            g.allow_json(v);
        }
        g
    }

    /// Adds the figures of more tool results (those the model asked for).
    pub fn extend(&mut self, results: &[&Value]) {
        for v in results {
            self.allow_json(v);
        }
    }

    fn allow(&mut self, kind: Kind, value: f64) {
        match kind {
            Kind::Money => self.money.push(value),
            Kind::Percent => self.percent.push(value),
            Kind::Count => self.count.push(value),
        }
    }

    fn allow_json(&mut self, v: &Value) {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    let i = i as f64;
                    self.allow(Kind::Count, i);
                    self.allow(Kind::Money, i / 1e6);
                    self.allow(Kind::Percent, i / 100.0);
                } else if let Some(f) = n.as_f64() {
                    self.allow(Kind::Count, f);
                    self.allow(Kind::Money, f);
                    self.allow(Kind::Percent, f);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| self.allow_json(v)),
            Value::Object(o) => o.values().for_each(|v| self.allow_json(v)),
            Value::String(s) => {
                for f in figures(s) {
                    self.allow(f.kind, f.value * f.scale);
                }
            }
            _ => {}
        }
    }

    fn supported(&self, f: &Figure) -> bool {
        let allowed = match f.kind {
            Kind::Money => &self.money,
            Kind::Percent => &self.percent,
            Kind::Count => &self.count,
        };
        let unit = 10f64.powi(-f.decimals);
        // An allowed value rounded or truncated to the digits the figure was written with
        // (percentages are truncated: 68.29% is written 68.2%), with room for binary
        // fractions (3716.955 is written $3,716.96).
        allowed.iter().any(|a| {
            let d = a.abs() / f.scale - f.value;
            d >= -unit * 0.501 && d < unit * 0.999
        })
    }

    /// `None` when every figure in the sentence is supported; otherwise the computed
    /// statement that replaces it.
    pub fn check(&self, sentence: &str) -> Option<String> {
        (!self.unsupported(sentence).is_empty()).then(|| self.closest(sentence))
    }

    /// The figures of `sentence` that no tool computed, as `(value, scale)`.
    pub fn unsupported(&self, sentence: &str) -> Vec<(f64, f64)> {
        figures(sentence).into_iter().filter(|f| !self.supported(f)).map(|f| (f.value, f.scale)).collect()
    }

    /// The computed statement sharing the most words with `sentence`, keeping the
    /// sentence's trailing whitespace so that the text flows as before.
    fn closest(&self, sentence: &str) -> String {
        let words = word_set(sentence);
        let best = self
            .statements
            .iter()
            .max_by_key(|s| word_set(s).intersection(&words).count())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let trailing = &sentence[sentence.trim_end().len()..];
        format!("{best}{}", if trailing.is_empty() { " " } else { trailing })
    }
}

pub(super) fn word_set(s: &str) -> std::collections::HashSet<String> {
    s.split(|c: char| !c.is_alphabetic()).filter(|w| w.len() >= 3).map(str::to_lowercase).collect()
}

/// Splits text after sentence ends (`.`, `!`, `?` before whitespace) and line ends,
/// keeping every character: the pieces concatenate to the text.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(end) = sentence_end(rest) {
        out.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// The byte length of the first complete sentence of `text` with its trailing
/// whitespace, if `text` holds one (the whitespace after it has arrived).
pub fn sentence_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let ends = b == b'\n' || (matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace()));
        if ends {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            // Whitespace may still be coming: wait for the next word unless a line ended
            // (a newline after the stop ends the sentence now: the first token that could
            // follow it starts a new line).
            if j < bytes.len() || b == b'\n' || bytes[i + 1..j].contains(&b'\n') {
                return Some(j);
            }
            return None;
        }
        i += 1;
    }
    None
}

/// The figures of a text (see the module's rules on what counts).
pub(super) fn figures(text: &str) -> Vec<Figure> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = String::new();
        let mut decimals = -1i32;
        let mut grouped = false;
        while i < chars.len() {
            let c = chars[i];
            let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_ascii_digit() {
                digits.push(c);
                if decimals >= 0 {
                    decimals += 1;
                }
            } else if c == ',' && next_digit && decimals < 0 {
                grouped = true;
            } else if c == '.' && next_digit && decimals < 0 {
                digits.push('.');
                decimals = 0;
            } else {
                break;
            }
            i += 1;
        }
        let before = start.checked_sub(1).map(|p| chars[p]);
        let mut after = chars.get(i).copied();
        let mut scale = 1.0;
        if let Some(s @ ('k' | 'K' | 'M' | 'B')) = after {
            if !chars.get(i + 1).is_some_and(|c| c.is_alphanumeric()) {
                scale = match s {
                    'k' | 'K' => 1e3,
                    'M' => 1e6,
                    _ => 1e9,
                };
                i += 1;
                after = chars.get(i).copied();
            }
        }
        // Part of a name, a date or a version: not a figure.
        let in_name = before.is_some_and(|c| c.is_alphabetic() || matches!(c, '-' | '_' | '/' | ':' | '.'))
            || after.is_some_and(|c| c.is_alphabetic() || c == '-' || c == '_' || c == ':' || c == '/');
        let Ok(value) = digits.parse::<f64>() else { continue };
        if in_name && before != Some('$') {
            continue;
        }
        let kind = if before == Some('$') {
            Kind::Money
        } else if after == Some('%') {
            Kind::Percent
        } else if grouped || decimals >= 0 || value * scale >= 100.0 {
            Kind::Count
        } else {
            continue;
        };
        out.push(Figure { kind, value, decimals: decimals.max(0), scale });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grounding() -> Grounding {
        let computed = "## Your AI spend: $1,234.56 over 30 days\n\n12,345 requests used 9,876,543 input tokens.\n\
            Savings you can make: $321.00 per month.\n| gpt-4o | $900.00 | 72.9% | 1,000 |\n";
        Grounding::new(computed, &[&json!({ "total": 1_234_560_000i64, "share_bp": 2710 })])
    }

    #[test]
    fn computed_figures_and_their_roundings_are_supported() {
        let g = grounding();
        for s in [
            "You spent $1,234.56 in 30 days. ",
            "That is about $1,235 or $1.2k. ",
            "gpt-4o takes 72.9% of it, and 27.1% goes elsewhere. ",
            "Rounded down, that is 27% or $1,234. ",
            "There were 12,345 requests and 9.9M input tokens. ",
            "On 2026-01-05 gpt-4o-mini and claude-3.5 ran 3 jobs. ",
        ] {
            assert_eq!(g.check(s), None, "{s}");
        }
    }

    #[test]
    fn an_invented_figure_is_replaced_by_the_closest_computed_statement() {
        let g = grounding();
        let replaced = g.check("You could save $4,000.00 per month with these changes.\n").expect("replaced");
        assert_eq!(replaced, "Savings you can make: $321.00 per month.\n");
        assert!(g.check("gpt-4o takes 80% of the spend. ").is_some());
        assert!(g.check("There were 99,999 requests. ").is_some());
    }

    #[test]
    fn sentences_split_where_the_text_allows_and_reassemble() {
        let text = "Spend is $1.50 today. Next!\nA table | row |\nlast";
        let parts = sentences(text);
        assert_eq!(parts, ["Spend is $1.50 today. ", "Next!\n", "A table | row |\n", "last"]);
        assert_eq!(parts.concat(), text);
        assert_eq!(sentence_end("Done. "), None, "the next word may still be coming");
        assert_eq!(sentence_end("Done.\n"), Some(6), "a line ended: no need to wait for the next word");
        assert_eq!(sentence_end("Done. \n"), Some(7));
    }
}

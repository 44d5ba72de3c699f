//! Held to the facts: what a model writes passes these guards one sentence at a time
//! before it reaches the user.
//!
//! - **figure**: a money figure, percentage or count no tool computed in this run: the
//!   sentence is replaced by the computed statement closest to it ([`Grounding`]);
//! - **name**: a model, feature, project, provider or date that is neither in the user's
//!   data, nor in the catalog, nor in a tool result of the run: the sentence is dropped;
//! - **repeat**: a sentence the answer already said: dropped;
//! - **prompt**: a sentence quoting the instructions the model was given, or the form of
//!   its facts (the word FACTS, an agent's report, JSON): dropped;
//! - **direct_first**: when the answer's first sentence does not state the figure the
//!   question asked for, the computed direct answer is put before it.
//!
//! Names are recognised where a name cannot be mistaken for English: in backticks, and
//! words with letters, a digit and a `-` or `.` (`gpt-4o`, `claude-3.5-sonnet`,
//! `support-bot-v2`), and ISO dates. A plain word ("support") is not checked.
use std::collections::HashSet;

use apex_costs::PriceBook;
use serde::Serialize;
use serde_json::Value;

use super::grounding::{figures, sentences, Figure, Grounding, Kind};

/// What the guards removed or added, by guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GuardCounts {
    pub figure: u64,
    pub name: u64,
    pub repeat: u64,
    pub prompt: u64,
    pub direct_first: u64,
}

impl GuardCounts {
    pub fn total(&self) -> u64 {
        self.figure + self.name + self.repeat + self.prompt + self.direct_first
    }

    pub fn by_guard(&self) -> [(&'static str, u64); 5] {
        [
            ("figure", self.figure),
            ("name", self.name),
            ("repeat", self.repeat),
            ("prompt", self.prompt),
            ("direct_first", self.direct_first),
        ]
    }

    /// What was removed, for the run's events ("1 sentence with a figure no tool computed").
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.figure, "with a figure no tool computed, replaced"),
            (self.name, "naming something not in your data or the catalog, dropped"),
            (self.repeat, "repeated, dropped"),
            (self.prompt, "quoting the model's instructions, dropped"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} sentence{} {what}", if n == 1 { "" } else { "s" }))
        .collect();
        let mut text = parts.join("; ");
        if self.direct_first > 0 {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str("the computed answer put first (the model's first sentence did not state it)");
        }
        text
    }
}

/// The computed answer's lead (its first paragraph) and what a first sentence must state
/// to answer the question: the lead's first sentence marks its answer in bold (`**$1.2**`,
/// `**up 3.1%**`, `**2026-11-19**`, `**already**`, `**no**`); each bold part not already
/// in the question is a key, so is each name in backticks, and the first money figure or
/// percentage when no bold part is a figure or a day.
#[derive(Clone, Debug)]
pub struct Lead {
    pub text: String,
    keys: Vec<Key>,
}

/// One part of the answer a first sentence must state.
#[derive(Clone, Debug)]
enum Key {
    /// Figures, each stated as the model may round it.
    Figures(Vec<Figure>),
    /// A date or a word, stated as written (ignoring case).
    Words(String),
    /// Nothing a sentence could be checked for: the lead goes first.
    Never,
}

impl Lead {
    /// `text` is the computed answer's first paragraph, `question` what the user asked.
    pub fn new(text: impl Into<String>, question: &str) -> Self {
        let text = text.into();
        let first = sentences(&text).into_iter().next().unwrap_or_default();
        let bold: Vec<&str> = first.split("**").skip(1).step_by(2).map(str::trim).filter(|b| !b.is_empty()).collect();
        let asked = figures(question);
        let in_question =
            |f: &Figure| asked.iter().any(|a| a.kind == f.kind && (a.value * a.scale - f.value * f.scale).abs() < 1e-9);
        let mut keys = Vec::new();
        for part in &bold {
            let found = figures(part);
            // An ISO date is a word here: its digits are not a figure to round.
            if found.is_empty() || is_date(part) {
                if !question.to_lowercase().contains(&part.to_lowercase()) {
                    keys.push(Key::Words(part.to_lowercase()));
                }
            } else if !found.iter().all(in_question) {
                keys.push(Key::Figures(found.into_iter().filter(|f| !in_question(f)).collect()));
            }
        }
        // What the answer is about, in backticks (model `gpt-4o`, no feature `serach`), is
        // part of it: a model that swaps `gpt-4o` for `gpt-4` keeps the figures, not the
        // answer.
        for name in first.split('`').skip(1).step_by(2).filter(|n| !n.trim().is_empty()) {
            keys.push(Key::Words(name.to_lowercase()));
        }
        // A name in bold ("**alice**") is half an answer: its figure is the first money
        // figure or percentage of the sentence. A day in bold is a whole one.
        if !keys.iter().any(|k| matches!(k, Key::Figures(_)) || matches!(k, Key::Words(w) if is_date(w))) {
            let figure = figures(&first).into_iter().find(|f| f.kind != Kind::Count && !in_question(f));
            keys.extend(figure.map(|f| Key::Figures(vec![f])));
        }
        // Nothing to check a sentence for: the lead always goes first.
        if keys.is_empty() {
            keys.push(Key::Never);
        }
        Self { text, keys }
    }

    /// Whether `sentence` states every key of the lead (figures rounded as the model
    /// wrote them).
    fn stated_in(&self, sentence: &str) -> bool {
        let said = figures(sentence);
        let lower = sentence.to_lowercase();
        let stated = |key: &Figure| {
            said.iter().any(|f| {
                let unit = 10f64.powi(-f.decimals);
                f.kind == key.kind && ((key.value * key.scale) / f.scale - f.value).abs() <= unit * 0.501
            })
        };
        self.keys.iter().all(|k| match k {
            Key::Figures(figures) => figures.iter().all(stated),
            Key::Words(words) => contains_word(&lower, words),
            Key::Never => false,
        })
    }
}

/// Whether `text` holds `word` between non-alphanumeric characters (or its ends).
fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// What to do with a sentence.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send these pieces (the sentence, possibly replaced, possibly after the lead).
    Send(Vec<String>),
    /// Say nothing (whitespace that kept the layout may remain).
    Drop(String),
}

pub struct Guards {
    grounding: Grounding,
    known: HashSet<String>,
    prices: PriceBook,
    /// The data's first and last day (ISO dates compare as text).
    range: Option<(String, String)>,
    prompt: HashSet<String>,
    said: HashSet<String>,
    lead: Option<Lead>,
    pub counts: GuardCounts,
}

/// Words in a row that make a quotation of the instructions.
const QUOTE_WORDS: usize = 6;

impl Guards {
    /// `computed` is the built-in answer of the run, `results` the tool results (and agent
    /// results) it rests on, `names` every name of the user's data, `instructions` what
    /// the model was told (not the facts it was given).
    pub fn new(computed: &str, results: &[&Value], names: impl IntoIterator<Item = String>, instructions: &str) -> Self {
        let mut known: HashSet<String> = names.into_iter().map(|n| n.to_lowercase()).collect();
        for w in words(computed) {
            known.insert(w);
        }
        for v in results {
            strings(v, &mut known);
        }
        let prompt = shingles(instructions);
        Self {
            grounding: Grounding::new(computed, results),
            known,
            prices: PriceBook::default(),
            range: None,
            prompt,
            said: HashSet::new(),
            lead: None,
            counts: GuardCounts::default(),
        }
    }

    pub fn with_prices(mut self, prices: PriceBook) -> Self {
        self.prices = prices;
        self
    }

    pub fn with_range(mut self, from: String, to: String) -> Self {
        self.range = Some((from, to));
        self
    }

    /// The computed lead to put first unless the model's first sentence states its figure.
    pub fn with_lead(mut self, lead: Option<Lead>) -> Self {
        self.lead = lead;
        self
    }

    /// Text the model may refer to besides the facts: the question, earlier turns.
    pub fn know(&mut self, text: &str) {
        for w in words(text) {
            self.known.insert(w);
        }
    }

    /// Figures and names of more tool results (those the model asked for).
    pub fn extend(&mut self, results: &[&Value]) {
        self.grounding.extend(results);
        for v in results {
            strings(v, &mut self.known);
        }
    }

    /// Checks one sentence (with its trailing whitespace).
    pub fn pass(&mut self, sentence: &str) -> Verdict {
        let content = sentence.trim();
        let layout = || {
            let trailing = &sentence[sentence.trim_end().len()..];
            if trailing.contains('\n') {
                trailing.to_owned()
            } else {
                String::new()
            }
        };
        if content.is_empty() || !content.chars().any(char::is_alphanumeric) {
            return Verdict::Send(vec![sentence.to_owned()]);
        }
        if self.quotes_prompt(content) {
            self.counts.prompt += 1;
            return Verdict::Drop(layout());
        }
        let key = normalized(content);
        if key.split(' ').count() >= 3 && !self.said.insert(key) {
            self.counts.repeat += 1;
            return Verdict::Drop(layout());
        }
        if !self.unknown_names(content).is_empty() {
            self.counts.name += 1;
            return Verdict::Drop(layout());
        }
        let mut text = sentence.to_owned();
        if let Some(replacement) = self.grounding.check(sentence) {
            self.counts.figure += 1;
            text = replacement;
        }
        let mut out = Vec::with_capacity(2);
        // A heading is not the answer's first sentence: wait for the sentence after it.
        if !content.starts_with('#') {
            if let Some(lead) = self.lead.take() {
                if !lead.stated_in(&text) {
                    self.counts.direct_first += 1;
                    let mut lead_text = lead.text;
                    if !lead_text.ends_with("\n\n") {
                        lead_text.push_str(if lead_text.ends_with('\n') { "\n" } else { "\n\n" });
                    }
                    self.said.insert(normalized(lead_text.trim()));
                    out.push(lead_text);
                }
            }
        }
        out.push(text);
        Verdict::Send(out)
    }

    /// The lead, if no sentence has been sent yet (an answer with nothing left in it).
    pub fn unsent_lead(&mut self) -> Option<String> {
        let lead = self.lead.take()?;
        self.counts.direct_first += 1;
        Some(lead.text)
    }

    /// The names in `sentence` that are not known.
    pub fn unknown_names(&self, sentence: &str) -> Vec<String> {
        candidates(sentence).into_iter().filter(|c| !self.is_known(c)).collect()
    }

    fn is_known(&self, name: &str) -> bool {
        let lower = name.to_lowercase();
        if self.known.contains(&lower) {
            return true;
        }
        if is_date(&lower) {
            return self
                .range
                .as_ref()
                .is_some_and(|(from, to)| lower.as_str() >= from.as_str() && lower.as_str() <= to.as_str());
        }
        // A plural or possessive of a known name.
        let base = lower.trim_end_matches("'s").trim_end_matches('s');
        self.known.contains(base) || self.prices.price_for(&lower).is_some() || self.prices.price_for(base).is_some()
    }

    fn quotes_prompt(&self, sentence: &str) -> bool {
        // The markers of what the model is given: its facts, the agents' reports, their
        // JSON results. An answer never contains them.
        if ["FACTS", "Its result:", " agent] ", "{\""].iter().any(|m| sentence.contains(m)) {
            return true;
        }
        let words: Vec<String> = normalized(sentence).split(' ').map(str::to_owned).collect();
        words.windows(QUOTE_WORDS).any(|w| self.prompt.contains(&w.join(" ")))
    }
}

/// Lowercase words of a sentence, punctuation removed: what "the same sentence" means.
fn normalized(s: &str) -> String {
    s.split(|c: char| !c.is_alphanumeric() && c != '$' && c != '%' && c != '.')
        .map(|w| w.trim_matches('.').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn shingles(text: &str) -> HashSet<String> {
    let words: Vec<String> = normalized(text).split(' ').map(str::to_owned).collect();
    words.windows(QUOTE_WORDS).map(|w| w.join(" ")).collect()
}

/// The words of a text as names are compared: lowercase, outer punctuation trimmed.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace() || c == '`' || c == '|')
        .map(trim_word)
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

fn trim_word(w: &str) -> &str {
    w.trim_matches(|c: char| "\"'()[]{}<>,;:!?*_~".contains(c)).trim_end_matches('.')
}

fn strings(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.to_lowercase());
            out.extend(words(s));
        }
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn is_date(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The names a sentence states (see the module's rules).
fn candidates(sentence: &str) -> Vec<String> {
    let mut out = Vec::new();
    // In backticks: a name unless it is a command, a path or a setting.
    let mut parts = sentence.split('`');
    parts.next();
    while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
        let span = inside.trim();
        let setting = span.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
        if !span.is_empty() && span.len() <= 64 && !span.contains([' ', '/', '=', '?']) && !setting {
            out.push(span.to_owned());
        }
    }
    let unquoted: String = sentence.split('`').step_by(2).collect::<Vec<_>>().join(" ");
    for raw in unquoted.split(|c: char| c.is_whitespace() || c == '|') {
        let w = trim_word(raw);
        if w.starts_with('$') || w.contains("://") {
            continue;
        }
        if is_date(w) {
            out.push(w.to_owned());
            continue;
        }
        let letters = w.chars().filter(|c| c.is_alphabetic()).count();
        let digits = w.chars().any(|c| c.is_ascii_digit());
        let joined = w.contains(['-', '.']);
        if letters >= 2 && digits && joined && !w.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(w.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INSTRUCTIONS: &str =
        "You are Apex, an analyst of AI spend. State only figures that appear in the facts, copied exactly.";

    fn guards() -> Guards {
        let computed = "You spent **$1,234.56** on `support-bot` in November.\n\n| gpt-4o | $900.00 |\n";
        let results = json!({ "top": "gpt-4o-mini", "total": 1_234_560_000i64, "day": "2026-11-12" });
        Guards::new(computed, &[&results], ["support-bot".to_owned(), "search".to_owned()], INSTRUCTIONS)
            .with_prices(PriceBook::catalog().clone())
            .with_range("2026-10-01".into(), "2026-11-30".into())
    }

    #[test]
    fn names_from_the_data_the_results_and_the_catalog_pass() {
        let mut g = guards();
        for s in [
            "Most of it went to `support-bot` on gpt-4o. ",
            "Moving it to gpt-4o-mini or claude-3-5-haiku would help. ",
            "The jump came on 2026-11-12, within your data. ",
            "Use `APEX_LLM` and `POST /api/usage/import` to go further. ",
        ] {
            assert_eq!(g.pass(s), Verdict::Send(vec![s.to_owned()]), "{s}");
        }
        assert_eq!(g.counts, GuardCounts::default());
    }

    #[test]
    fn a_made_up_name_or_date_drops_the_sentence() {
        let mut g = guards();
        assert_eq!(g.pass("The feature `chat-summarizer` costs most.\n"), Verdict::Drop("\n".into()));
        assert_eq!(g.pass("Upgrade support-bot-v9 to save. "), Verdict::Drop(String::new()));
        assert_eq!(g.pass("Costs rose on 2025-01-03. "), Verdict::Drop(String::new()));
        assert_eq!(g.pass("Switch to gpt-7-ultra. "), Verdict::Drop(String::new()));
        assert_eq!(g.counts.name, 4);
    }

    #[test]
    fn repeats_and_quoted_instructions_are_dropped() {
        let mut g = guards();
        let s = "Ask questions and drill down into answers. ";
        assert!(matches!(g.pass(s), Verdict::Send(_)));
        assert_eq!(g.pass(s), Verdict::Drop(String::new()));
        assert_eq!(g.pass("ask questions, and drill down into answers!\n"), Verdict::Drop("\n".into()));
        assert_eq!(g.pass("2026-10-31 (FACTS): your spend. "), Verdict::Drop(String::new()));
        assert_eq!(g.pass("I state only figures that appear in the facts. "), Verdict::Drop(String::new()));
        assert_eq!(g.pass("Its result: {\"anomalies\":1,\"days\":28}. "), Verdict::Drop(String::new()));
        assert_eq!((g.counts.repeat, g.counts.prompt), (2, 3));
    }

    #[test]
    fn the_direct_answer_goes_first_when_the_model_leaves_its_figure_out() {
        let lead = || Some(Lead::new("You spent **$1,234.56** on `support-bot` in November.", "What did support-bot cost?"));
        let mut g = guards().with_lead(lead());
        assert!(matches!(g.pass("## Summary\n"), Verdict::Send(v) if v.len() == 1), "a heading waits");
        let Verdict::Send(pieces) = g.pass("Support costs are driven by long prompts. ") else { panic!() };
        assert_eq!(
            pieces,
            ["You spent **$1,234.56** on `support-bot` in November.\n\n", "Support costs are driven by long prompts. "]
        );
        assert_eq!(g.counts.direct_first, 1);

        let mut g = guards().with_lead(lead());
        let s = "You spent about $1,235 on support-bot. ";
        assert_eq!(g.pass(s), Verdict::Send(vec![s.to_owned()]), "stated, rounded: the model's sentence stays first");
        assert_eq!(g.counts.direct_first, 0);

        // Every bold part of the lead is the answer; a figure the question gave is not.
        let on = |computed: &str| Guards::new(computed, &[], Vec::<String>::new(), "");
        let compare = "You spent **$1,436.48** last week (2026-11-09 … 2026-11-15), **up 23.1%** ($269.66) from $1,166.82 in the week before.";
        let half = "We spent **$1,436.48** in the week of 2026-11-09. ";
        let mut g = on(compare).with_lead(Some(Lead::new(compare, "Last week versus the week before?")));
        assert!(matches!(g.pass(half), Verdict::Send(v) if v.len() == 2), "the change is missing: the lead goes first");
        let mut g = on(compare).with_lead(Some(Lead::new(compare, "Last week versus the week before?")));
        let whole = "Last week cost $1,436.48, up 23.1% on the week before. ";
        assert_eq!(g.pass(whole), Verdict::Send(vec![whole.to_owned()]));

        let budget = "Your $6,000.00 budget for 2026-11 holds: the month comes to **$5,831.31**, $168.69 under it.";
        let question = "We have a budget of $6,000 for November; when do we hit it?";
        let mut g = on(budget).with_lead(Some(Lead::new(budget, question)));
        assert!(
            matches!(g.pass("We're currently at $6,000. "), Verdict::Send(v) if v.len() == 2),
            "the budget is not the answer"
        );
        let runs_out = "At this pace your budget runs out on **2026-11-19**: $3,328.62 is spent.";
        let mut g = on(runs_out).with_lead(Some(Lead::new(runs_out, "When do we hit a $3,500 budget?")));
        assert!(matches!(g.pass("You will hit it in a few days. "), Verdict::Send(v) if v.len() == 2), "no day");
        let mut g = on(runs_out).with_lead(Some(Lead::new(runs_out, "When do we hit a $3,500 budget?")));
        assert!(matches!(g.pass("You will hit it on 2026-11-19. "), Verdict::Send(v) if v.len() == 1));

        // A bold word is matched as a word; a bold name is stated with its figure.
        let none = "I found **no** feature `serach` in your data (closest: search). All your usage cost $9.99.";
        let mut g = on(none).with_lead(Some(Lead::new(none, "What did serach cost?")));
        assert!(matches!(g.pass("The serach feature is now the norm. "), Verdict::Send(v) if v.len() == 2));
        let mut g = on(none).with_lead(Some(Lead::new(none, "What did serach cost?")));
        assert!(matches!(g.pass("There is no `serach` feature. "), Verdict::Send(v) if v.len() == 1));
        let top = "The end user that cost the most is **alice**: $1,104.38 (33.2%).";
        let mut g = on(top).with_lead(Some(Lead::new(top, "Who is our most expensive end user?")));
        assert!(matches!(g.pass("The most expensive end user is **Alice**. "), Verdict::Send(v) if v.len() == 2));
        let mut g = on(top).with_lead(Some(Lead::new(top, "Who is our most expensive end user?")));
        assert!(matches!(g.pass("Alice cost the most, $1,104.38. "), Verdict::Send(v) if v.len() == 1));
        // The name the answer is about is part of it.
        let about = "You spent **$1,545.97** on model `gpt-4o` in October 2026, **31.0%** of the $4,980.13 spent.";
        let mut g = on(about).with_lead(Some(Lead::new(about, "How much did we spend on gpt-4o in October?")));
        let swapped = "You spent $1,545.97 on model `gpt-4` in October, 31.0% of it. ";
        assert!(matches!(g.pass(swapped), Verdict::Send(v) if v.len() == 2), "another model's name");
        let mut g = on(about).with_lead(Some(Lead::new(about, "How much did we spend on gpt-4o in October?")));
        let right = "You spent $1,545.97 on `gpt-4o` in October, 31.0% of it. ";
        assert!(matches!(g.pass(right), Verdict::Send(v) if v.len() == 1));
        // Nothing at all to check: the lead goes first.
        let bare = "Here is the picture.";
        let mut g = on(bare).with_lead(Some(Lead::new(bare, "How are we doing?")));
        assert!(matches!(g.pass("All is well. "), Verdict::Send(v) if v.len() == 2));
    }
}

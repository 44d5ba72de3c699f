//! Understanding a question, deterministically and transparently: the time it is about
//! (resolved against the last day of the user's data), the names of the user's data it
//! mentions, what it measures and what it asks to do with it. A follow-up ("and in
//! October?", "the second one", "what about support-bot?") is read against the thread's
//! previous question and the ranking its answer gave.
mod memory;
mod period;
mod words;

pub use memory::{compact, Memory, Said, StoreMemory};

pub use period::{Period, Periods};
pub use words::Dimension;

use serde::{Deserialize, Serialize};
use time::Date;

use words::{closest, contains_words, find_words, split, undated};

/// What the question asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// The full report ("Analyze my AI costs").
    Overview,
    /// One figure ("How much did we spend on gpt-4.1 yesterday?").
    Total,
    /// The figure per name of a dimension ("spend by feature").
    Breakdown,
    /// The largest (or smallest) names by the measure ("Which model costs the most?").
    Top,
    /// Two periods side by side ("last week compared to the week before").
    Compare,
    /// Why the measure moved: which feature × model changed, by volume, price or mix.
    ExplainChange,
    /// How the measure moves day by day.
    Trend,
    /// Where spend is heading, and when a budget runs out.
    Forecast,
    /// The usage re-priced on another model.
    WhatIf,
    /// Changes that cut spend, toward a target when one is given.
    Savings,
    /// Days that stand out.
    Anomalies,
    ImportHelp,
    Greeting,
    OffTopic,
}

impl Operation {
    /// In words, for the triage step.
    pub fn label(self) -> &'static str {
        match self {
            Self::Overview => "overview",
            Self::Total => "total",
            Self::Breakdown => "breakdown",
            Self::Top => "top",
            Self::Compare => "compare two periods",
            Self::ExplainChange => "explain a change",
            Self::Trend => "trend",
            Self::Forecast => "forecast",
            Self::WhatIf => "what if",
            Self::Savings => "savings",
            Self::Anomalies => "unusual days",
            Self::ImportHelp => "import help",
            Self::Greeting => "greeting",
            Self::OffTopic => "off topic",
        }
    }
}

/// What the question counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Cost,
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
    CachedTokens,
    ReasoningTokens,
    CostPerRequest,
    CostPer1kRequests,
    CostPerUser,
    Share,
    AveragePerDay,
    CacheHitShare,
}

impl Measure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Cost => "cost",
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::InputTokens => "input tokens",
            Self::OutputTokens => "output tokens",
            Self::CachedTokens => "cached tokens",
            Self::ReasoningTokens => "reasoning tokens",
            Self::CostPerRequest => "cost per request",
            Self::CostPer1kRequests => "cost per 1,000 requests",
            Self::CostPerUser => "cost per end user",
            Self::Share => "share of spend",
            Self::AveragePerDay => "average per day",
            Self::CacheHitShare => "cache-hit share",
        }
    }
}

/// Largest first, or smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Largest,
    Smallest,
}

/// "The top 3", "the cheapest", "the second one" (position 2 of a ranking).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rank {
    pub order: Order,
    /// How many names to give.
    pub count: usize,
    /// The first place wanted, from 1 ("the second biggest" is place 2).
    pub place: usize,
}

/// Usage narrowed to some names of one dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub dimension: Dimension,
    /// The names in the data (a model's dated snapshots are all included).
    pub values: Vec<String>,
    /// How the question put it.
    pub said: String,
}

/// A name the question seems to mean that is not in the user's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotFound {
    pub said: String,
    pub dimension: Option<Dimension>,
    /// The closest names in the data.
    pub suggestions: Vec<String>,
}

/// A question, understood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub operation: Operation,
    pub measure: Measure,
    /// The days it is about; all the data when `None`.
    pub period: Option<Period>,
    /// The days it compares with.
    pub compare: Option<Period>,
    pub filters: Vec<Filter>,
    pub group_by: Option<Dimension>,
    pub rank: Option<Rank>,
    /// "Cut 30 %": the share of spend to save.
    pub target_percent: Option<u32>,
    /// "A $5,000 budget": in dollars, as written.
    pub budget: Option<String>,
    /// For a what-if: the model to price the usage on (a catalog name).
    pub what_if_model: Option<String>,
    pub not_found: Vec<NotFound>,
    /// Read against the thread's previous question.
    pub follow_up: bool,
    /// The words that decided the operation and the measure, so the reading can be checked.
    pub matched: Vec<String>,
}

impl Question {
    /// The reading in words, for the triage step: "total of cost; model gpt-4.1; yesterday
    /// (2026-11-30, the last day in your data)".
    pub fn describe(&self) -> String {
        let mut parts = vec![match self.operation {
            Operation::Total
            | Operation::Breakdown
            | Operation::Top
            | Operation::Compare
            | Operation::Trend
            | Operation::ExplainChange => {
                format!("{} of {}", self.operation.label(), self.measure.label())
            }
            other => other.label().to_owned(),
        }];
        if let Some(d) = self.group_by.filter(|_| matches!(self.operation, Operation::Breakdown | Operation::Top)) {
            let rank = match self.rank {
                Some(Rank { order: Order::Smallest, count, .. }) => format!(", smallest {count}"),
                Some(Rank { count, place, .. }) if place > 1 => format!(", number {place} of {count}"),
                Some(Rank { count, .. }) => format!(", largest {count}"),
                None => String::new(),
            };
            parts.push(format!("by {}{rank}", d.label()));
        }
        for f in &self.filters {
            parts.push(format!("{} {}", f.dimension.label(), f.values.join(" or ")));
        }
        if let Some(m) = &self.what_if_model {
            parts.push(format!("priced on {m}"));
        }
        if let Some(p) = self.target_percent {
            parts.push(format!("target {p} %"));
        }
        if let Some(b) = &self.budget {
            parts.push(format!("budget ${b}"));
        }
        if let Some(p) = &self.period {
            parts.push(p.label.clone());
        }
        if let Some(c) = &self.compare {
            parts.push(format!("compared with {}", c.label));
        }
        for n in &self.not_found {
            let hint = if n.suggestions.is_empty() { String::new() } else { format!(" (closest: {})", n.suggestions.join(", ")) };
            parts.push(format!("`{}` is not in your data{hint}", n.said));
        }
        if self.follow_up {
            parts.push("read with the previous question".to_owned());
        }
        parts.join("; ")
    }
}

/// The names in the user's data a question can refer to.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    names: Vec<(Dimension, String)>,
}

impl Vocabulary {
    pub fn new(names: impl IntoIterator<Item = (Dimension, String)>) -> Self {
        let mut names: Vec<(Dimension, String)> = names.into_iter().filter(|(_, n)| !n.trim().is_empty()).collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    /// Every name, of every dimension.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(_, n)| n.as_str())
    }

    fn of(&self, dimension: Dimension) -> impl Iterator<Item = &str> {
        self.names.iter().filter(move |(d, _)| *d == dimension).map(|(_, n)| n.as_str())
    }
}

/// The thread's previous turn: its question and the names its answer ranked, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub question: Option<Question>,
    pub ranking: Vec<String>,
}

/// Where a question is read: the user's names, the last day of their data, the model
/// catalog (a catalog name for a word, when it names a priced model) and the previous turn.
pub struct Context<'a> {
    pub vocabulary: &'a Vocabulary,
    pub last_day: Date,
    pub catalog: &'a dyn Fn(&str) -> Option<String>,
    pub previous: Option<&'a Turn>,
}

// Cue words per operation, strongest first. Whole words or phrases of the lower-case text.
const IMPORT: &[&str] =
    &["import", "upload", "csv", "export", "load my", "add my data", "connect my", "bring my data", "file format"];
const WHAT_IF: &[&str] = &[
    "what if",
    "instead",
    "switch",
    "switched",
    "move",
    "moved",
    "migrate",
    "if we used",
    "if we use",
    "if we moved",
    "replace",
    "swap",
    "would it cost",
    "would cost",
    "would be",
];
const SAVINGS: &[&str] = &[
    "save",
    "saving",
    "savings",
    "reduce",
    "cut",
    "cheaper",
    "optimize",
    "optimise",
    "optimization",
    "lower my",
    "lower our",
    "lower the",
    "trim",
    "waste",
];
const FORECAST: &[&str] = &[
    "forecast",
    "predict",
    "projection",
    "project to",
    "next month",
    "end of the month",
    "end of month",
    "run out",
    "runs out",
    "on track",
    "going to spend",
    "will we spend",
    "will i spend",
    "by month end",
    "budget",
    "projected",
    "run rate",
    "run-rate",
];
const EXPLAIN: &[&str] = &[
    "why",
    "what caused",
    "explain",
    "reason",
    "spike",
    "spiked",
    "jump",
    "jumped",
    "went up",
    "increase",
    "increased",
    "rose",
    "drop",
    "dropped",
    "went down",
    "decrease",
    "what happened",
    "what changed",
    "driving",
    "drove",
    "behind the",
];
const ANOMALIES: &[&str] =
    &["unusual", "anomaly", "anomalies", "anomalous", "outlier", "outliers", "spikes", "odd days", "strange", "abnormal"];
const COMPARE: &[&str] = &[
    "compare",
    "compared",
    "comparison",
    "vs",
    "versus",
    "than",
    "week before",
    "month before",
    "day before",
    "previous week",
    "previous month",
    "prior week",
    "prior month",
];
const TREND: &[&str] = &[
    "trend",
    "trending",
    "over time",
    "day by day",
    "growing",
    "growth",
    "per day over",
    "each day",
    "daily spend",
    "daily cost",
    "by day",
    "going up",
    "going down",
    "up or down",
    "rising",
    "falling",
    "climbing",
];
const OVERVIEW: &[&str] = &[
    "analyze",
    "analyse",
    "analysis",
    "overview",
    "report",
    "summary",
    "summarize",
    "summarise",
    "where is my money",
    "where does my money",
    "where is the money",
    "breakdown of my",
    "how am i doing",
    "audit",
];
const TOTAL: &[&str] = &[
    "how much",
    "total",
    "what did we spend",
    "what did i spend",
    "spent",
    "spend",
    "cost",
    "costs",
    "how many",
    "bill",
    "what was",
];
const TOP_LARGEST: &[&str] =
    &["most", "top", "biggest", "largest", "highest", "worst", "most expensive", "priciest", "heaviest", "max"];
const TOP_SMALLEST: &[&str] = &["least", "fewest", "bottom", "smallest", "lowest", "cheapest", "best", "least expensive", "min"];
const GREETING: &[&str] =
    &["hi", "hello", "hey", "thanks", "thank you", "good morning", "good afternoon", "good evening", "yo", "hiya", "cheers"];
const COST_WORDS: &[&str] = &[
    "cost",
    "costs",
    "spend",
    "spent",
    "spending",
    "bill",
    "billing",
    "price",
    "pricing",
    "expense",
    "expensive",
    "cheap",
    "usage",
    "token",
    "tokens",
    "money",
    "dollars",
    "$",
    "budget",
    "requests",
    "calls",
    "model",
    "models",
    "feature",
    "features",
    "savings",
    "save",
    "invoice",
    "charges",
    // "what burned the most money", "what's eating our budget".
    "burn",
    "burned",
    "burning",
    "burnt",
    "eating",
    "ate",
];

/// Words that are never a name of the user's data, wherever they stand ("which project
/// **has** the most", "the feature **that** costs").
const COMMON: &[&str] = &[
    "the",
    "a",
    "an",
    "each",
    "which",
    "what",
    "who",
    "per",
    "by",
    "every",
    "one",
    "that",
    "this",
    "these",
    "those",
    "my",
    "our",
    "your",
    "its",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "made",
    "make",
    "makes",
    "drive",
    "drives",
    "drove",
    "driving",
    "use",
    "used",
    "uses",
    "using",
    "run",
    "runs",
    "ran",
    "spent",
    "spend",
    "spends",
    "spending",
    "cost",
    "costs",
    "costing",
    "costed",
    "will",
    "would",
    "could",
    "should",
    "can",
    "most",
    "least",
    "top",
    "bottom",
    "biggest",
    "largest",
    "smallest",
    "highest",
    "lowest",
    "fewest",
    "cheapest",
    "expensive",
    "priciest",
    "costliest",
    "and",
    "or",
    "of",
    "for",
    "in",
    "on",
    "at",
    "to",
    "from",
    "with",
    "without",
    "over",
    "during",
    "since",
    "until",
    "last",
    "next",
    "previous",
    "so",
    "far",
    "alone",
    "only",
    "just",
    "total",
    "overall",
    "all",
    "yesterday",
    "today",
    "week",
    "month",
    "day",
    "year",
    "requests",
    "request",
    "calls",
    "tokens",
    "share",
    "money",
    "much",
    "many",
    "how",
    "name",
    "names",
    "called",
    "named",
    "it",
    "them",
    "more",
    "less",
    "than",
    "vs",
    "versus",
    "compared",
    "same",
    "other",
    "else",
    "ever",
    "now",
    "then",
    "again",
    "instead",
    "up",
    "down",
    "end",
    "weeks",
    "months",
    "days",
];

const ORDINALS: [&str; 10] = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];

fn any_cue(text: &str, cues: &[&'static str], matched: &mut Vec<String>) -> bool {
    let found: Vec<&str> = cues.iter().copied().filter(|c| contains_words(text, c)).collect();
    matched.extend(found.iter().map(|s| s.to_string()));
    !found.is_empty()
}

fn measure_of(text: &str, matched: &mut Vec<String>) -> Option<Measure> {
    let table: &[(&[&str], Measure)] = &[
        (
            &[
                "per 1,000 requests",
                "per 1000 requests",
                "per 1k requests",
                "per thousand requests",
                "per 1,000 calls",
                "per 1k calls",
                "per 1000 calls",
            ],
            Measure::CostPer1kRequests,
        ),
        (&["per request", "per call", "each request", "a request", "cost per req"], Measure::CostPerRequest),
        (
            &["per end user", "per end-user", "per user", "per customer", "each end user", "each user", "each customer"],
            Measure::CostPerUser,
        ),
        (&["cache hit", "cache-hit", "cache hits", "hit rate", "cache rate"], Measure::CacheHitShare),
        (&["cached tokens", "cache reads", "cached input", "cache read tokens"], Measure::CachedTokens),
        (&["reasoning tokens", "thinking tokens"], Measure::ReasoningTokens),
        (&["input tokens", "prompt tokens", "input token"], Measure::InputTokens),
        (&["output tokens", "completion tokens", "output token"], Measure::OutputTokens),
        (&["tokens", "token"], Measure::Tokens),
        (
            &[
                "average per day",
                "per day on average",
                "daily average",
                "average daily",
                "a day on average",
                "avg per day",
                "per day",
            ],
            Measure::AveragePerDay,
        ),
        (&["share", "percentage", "what percent", "what %", "proportion", "fraction", "% of"], Measure::Share),
        (&["requests", "calls", "how many times", "request count", "number of requests"], Measure::Requests),
    ];
    for (cues, measure) in table {
        if let Some(cue) = cues.iter().find(|c| contains_words(text, c) || (c.starts_with('%') && text.contains(*c))) {
            matched.push(cue.to_string());
            return Some(*measure);
        }
    }
    None
}

/// "by model", "per feature", "which project", "each key", "models": the dimension the
/// answer is grouped by. Read word by word: a lead word followed by a dimension's word, the
/// earliest such pair first; else a dimension's plural anywhere.
fn group_by_of(words: &[String]) -> Option<Dimension> {
    const LEADS: [&str; 22] = [
        "by",
        "per",
        "which",
        "what",
        "each",
        "every",
        "top",
        "across",
        "among",
        "between",
        // "our most expensive model", "the cheapest end user".
        "expensive",
        "costliest",
        "priciest",
        "cheapest",
        "biggest",
        "largest",
        "busiest",
        "heaviest",
        "lowest",
        "highest",
        "smallest",
        "least",
    ];
    // Words that may stand between a lead and the dimension: "the lowest spending user".
    const BETWEEN: [&str; 4] = ["spending", "costing", "paying", "billed"];
    // Whether the words from `i` on read `phrase` ("end user" is two words).
    let reads = |i: usize, phrase: &str| phrase.split(' ').enumerate().all(|(k, p)| words.get(i + k).is_some_and(|w| w == p));
    for (i, lead) in words.iter().enumerate().filter(|(_, w)| LEADS.contains(&w.as_str())) {
        for d in Dimension::ALL {
            // "per user" is a measure (cost per end user), not a grouping.
            if lead == "per" && d == Dimension::User {
                continue;
            }
            let at = i + 1 + usize::from(words.get(i + 1).is_some_and(|w| BETWEEN.contains(&w.as_str())));
            if d.words().iter().any(|w| reads(at, w)) {
                return Some(d);
            }
        }
    }
    // "Who spent the most?": the end users, unless the question names another dimension.
    let named = |d: Dimension| d.words().iter().any(|w| (0..words.len()).any(|i| reads(i, w)));
    if words.iter().any(|w| w == "who") && !Dimension::ALL.into_iter().any(|d| d != Dimension::User && named(d)) {
        return Some(Dimension::User);
    }
    // "Which 3 features…", "the most expensive models", "my features", "features ranked".
    Dimension::ALL.into_iter().find(|&d| {
        d.words()
            .iter()
            .filter(|w| w.ends_with('s') && !(d == Dimension::Day && **w == "days"))
            .any(|w| (0..words.len()).any(|i| reads(i, w)))
    })
}

/// "Three ways", "5 changes", "two ideas": how many savings the question asks for.
fn ways_count(words: &[String]) -> Option<usize> {
    const SMALL: [&str; 10] = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    words.windows(2).find_map(|pair| {
        let ways = matches!(
            pair[1].as_str(),
            "ways" | "changes" | "ideas" | "options" | "things" | "recommendations" | "suggestions" | "tips" | "steps"
        );
        let n = pair[0].parse::<usize>().ok().or_else(|| SMALL.iter().position(|w| *w == pair[0]).map(|p| p + 1));
        n.filter(|n| ways && (1..=20).contains(n))
    })
}

fn percent_of(words: &[String]) -> Option<u32> {
    for (i, w) in words.iter().enumerate() {
        let (digits, percent) = match w.strip_suffix('%') {
            Some(d) => (d, true),
            None => (w.as_str(), matches!(words.get(i + 1).map(String::as_str), Some("%" | "percent" | "pct"))),
        };
        if percent {
            if let Ok(n) = digits.parse::<f64>() {
                if n > 0.0 && n <= 100.0 {
                    return Some(n.round() as u32);
                }
            }
        }
    }
    // "by a third", "in half".
    let text = words.join(" ");
    if contains_words(&text, "in half") || contains_words(&text, "by half") {
        return Some(50);
    }
    if contains_words(&text, "a third") {
        return Some(33);
    }
    if contains_words(&text, "a quarter") {
        return Some(25);
    }
    None
}

fn budget_of(words: &[String]) -> Option<String> {
    let at = words.iter().position(|w| w == "budget" || w == "budgets")?;
    let amount = |w: &str| {
        let w = w.trim_start_matches('$');
        let (w, scale) = match w.strip_suffix('k') {
            Some(k) => (k, 1000.0),
            None => (w, 1.0),
        };
        let n: f64 = w.replace(',', "").parse().ok()?;
        (n > 0.0).then(|| {
            let v = n * scale;
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
    };
    // "a $5,000 budget", "budget of $5,000", "budget is 5000".
    let near = words[at.saturating_sub(3)..words.len().min(at + 4)].iter();
    let mut best = None;
    for w in near {
        let money_like = w.starts_with('$') || w.bytes().next().is_some_and(|b| b.is_ascii_digit());
        if money_like && !w.contains('-') && !w.ends_with('%') {
            best = best.or_else(|| amount(w));
        }
    }
    best
}

/// A "YYYY-MM-DD" day.
pub fn day(text: &str) -> Option<Date> {
    period::iso_day(text)
}

/// Reads `text` in `cx`.
pub fn parse(text: &str, cx: &Context) -> Question {
    let words = split(text);
    let lower = words.join(" ");
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let periods = period::periods(&refs, cx.last_day);
    let mut matched = Vec::new();
    let (filters, not_found, catalog_models) = names(&lower, &words, cx);

    let measure = measure_of(&lower, &mut matched);
    let group_by = group_by_of(&words);
    let target_percent = percent_of(&words);
    let budget = budget_of(&words);

    let mut rank = None;
    let count = words
        .iter()
        .enumerate()
        .find(|(i, w)| {
            matches!(w.as_str(), "top" | "bottom" | "which" | "first")
                && words.get(i + 1).is_some_and(|n| n.parse::<usize>().is_ok_and(|n| (1..=50).contains(&n)))
        })
        .and_then(|(i, _)| words[i + 1].parse::<usize>().ok())
        .or_else(|| ways_count(&words));
    let largest = any_cue(&lower, TOP_LARGEST, &mut Vec::new());
    let smallest = any_cue(&lower, TOP_SMALLEST, &mut Vec::new());
    if largest || smallest || count.is_some() {
        let order = if smallest && !largest { Order::Smallest } else { Order::Largest };
        let plural = group_by.is_some_and(|d| d.words().iter().any(|w| w.ends_with('s') && contains_words(&lower, w)));
        rank = Some(Rank { order, count: count.unwrap_or(if plural { 5 } else { 1 }), place: 1 });
    }

    // The operation: the strongest cue wins; the order of these checks is the priority.
    let cost_talk = COST_WORDS.iter().any(|w| contains_words(&lower, w) || lower.contains('$'));
    let what_if_model = what_if_target(&lower, &catalog_models, &filters);
    let mut m = Vec::new();
    let operation = if words.is_empty() {
        Operation::OffTopic
    } else if words.len() <= 4 && any_cue(&lower, GREETING, &mut m) && !cost_talk {
        Operation::Greeting
    } else if any_cue(&lower, IMPORT, &mut m) && !contains_words(&lower, "exported") {
        Operation::ImportHelp
    } else if what_if_model.is_some()
        && (any_cue(&lower, WHAT_IF, &mut m) || contains_words(&lower, "on") || contains_words(&lower, "with"))
    {
        Operation::WhatIf
    } else if any_cue(&lower, SAVINGS, &mut m) || any_cue(&lower, &["what if", "switch", "migrate", "swap"], &mut m) {
        // "What if we switch?" without a model to switch to asks for savings.
        Operation::Savings
    } else if any_cue(&lower, FORECAST, &mut m) {
        Operation::Forecast
    } else if any_cue(&lower, ANOMALIES, &mut m) && !contains_words(&lower, "why") {
        Operation::Anomalies
    } else if any_cue(&lower, EXPLAIN, &mut m)
        && (cost_talk || periods.period.is_some() || contains_words(&lower, "why"))
        && !(contains_words(&lower, "why") && rank.is_some())
    {
        Operation::ExplainChange
    } else if periods.compare.is_some() || (any_cue(&lower, COMPARE, &mut m) && periods.period.is_some()) {
        Operation::Compare
    } else if measure != Some(Measure::AveragePerDay) && any_cue(&lower, TREND, &mut m) {
        Operation::Trend
    } else if rank.is_some() && (group_by.is_some() || cost_talk) {
        Operation::Top
    } else if any_cue(&lower, OVERVIEW, &mut m) {
        Operation::Overview
    } else if group_by.is_some()
        && group_by != Some(Dimension::Day)
        && (contains_words(&lower, "by")
            || contains_words(&lower, "per")
            || contains_words(&lower, "breakdown")
            || contains_words(&lower, "split")
            || contains_words(&lower, "each"))
    {
        Operation::Breakdown
    } else if any_cue(&lower, TOTAL, &mut m) || measure.is_some() || !filters.is_empty() {
        // A name of the data alone ("support-bot?") asks what it costs.
        Operation::Total
    } else if cost_talk {
        Operation::Overview
    } else {
        Operation::OffTopic
    };
    matched.splice(0..0, m);

    let mut q = Question {
        operation,
        measure: measure.unwrap_or(Measure::Cost),
        period: periods.period,
        compare: periods.compare,
        filters,
        group_by,
        rank,
        target_percent,
        budget,
        what_if_model,
        not_found,
        follow_up: false,
        matched,
    };
    if q.operation == Operation::Top && q.group_by.is_none() {
        q.group_by = Some(Dimension::Feature);
    }
    if q.operation == Operation::ExplainChange && q.rank.is_some() && q.group_by.is_some() {
        // "Which feature costs the most and why?": the top one, with its reasons.
        q.operation = Operation::Top;
    }
    if let Some(previous) = cx.previous {
        follow_up(&mut q, &lower, &words, previous, periods.step_back.as_deref());
    }
    // A model named by its catalog name (a ranking's "claude-3-5-sonnet") covers its dated
    // snapshots in the data ("claude-3-5-sonnet-20241022").
    for f in q.filters.iter_mut().filter(|f| f.dimension == Dimension::Model) {
        let bases: Vec<String> = f.values.iter().map(|v| undated(&v.to_lowercase()).to_owned()).collect();
        for name in cx.vocabulary.of(Dimension::Model) {
            if bases.iter().any(|b| *b == undated(&name.to_lowercase())) && !f.values.iter().any(|v| v == name) {
                f.values.push(name.to_owned());
            }
        }
        f.values.sort();
    }
    q
}

/// The names of the user's data in `lower`, and the ones that look like names but are not
/// there; also the catalog models named (for what-ifs).
fn names(lower: &str, words: &[String], cx: &Context) -> (Vec<Filter>, Vec<NotFound>, Vec<(usize, String)>) {
    let mut filters: Vec<Filter> = Vec::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    let overlaps = |taken: &[(usize, usize)], s: usize, e: usize| taken.iter().any(|&(a, b)| s < b && a < e);
    // Longest names first, so "gpt-4o-mini" is not read as "gpt-4o".
    let mut all: Vec<&(Dimension, String)> = cx.vocabulary.names.iter().collect();
    all.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
    let add = |filters: &mut Vec<Filter>, dimension: Dimension, value: &str, said: &str| match filters
        .iter_mut()
        .find(|f| f.dimension == dimension && f.said == said)
    {
        Some(f) => {
            if !f.values.iter().any(|v| v == value) {
                f.values.push(value.to_owned());
            }
        }
        None => filters.push(Filter { dimension, values: vec![value.to_owned()], said: said.to_owned() }),
    };
    for (dimension, name) in &all {
        if *dimension == Dimension::Day {
            continue;
        }
        let lname = name.to_lowercase();
        // The name itself, its undated base (for models) and its words spaced out
        // ("support bot" for "support-bot").
        let mut forms = vec![lname.clone()];
        if *dimension == Dimension::Model {
            forms.push(undated(&lname).to_owned());
            if let Some((_, tail)) = lname.split_once('/') {
                forms.push(tail.to_owned());
                forms.push(undated(tail).to_owned());
            }
        }
        let spaced = lname.replace(['-', '_'], " ");
        if spaced != lname {
            forms.push(spaced);
        }
        for form in forms {
            if let Some(at) = find_words(lower, &form) {
                if overlaps(&taken, at, at + form.len()) && !filters.iter().any(|f| f.said == form) {
                    continue;
                }
                taken.push((at, at + form.len()));
                add(&mut filters, *dimension, name, &form);
                break;
            }
        }
    }
    filters.sort_by_key(|f| find_words(lower, &f.said).unwrap_or(usize::MAX));
    for f in &mut filters {
        f.values.sort();
    }

    // Catalog models named, in the order they appear.
    let mut catalog_models = Vec::new();
    let mut not_found = Vec::new();
    let mut at = 0;
    for w in words {
        let pos = lower[at..].find(w.as_str()).map_or(at, |p| p + at);
        at = pos + w.len();
        if overlaps(&taken, pos, pos + w.len()) {
            if let Some(name) = (cx.catalog)(w) {
                catalog_models.push((pos, name));
            }
            continue;
        }
        if let Some(name) = (cx.catalog)(w) {
            catalog_models.push((pos, name));
            continue;
        }
        // Looks like a model name ("gpt-5", "claude-4") but is neither in the data nor priced.
        let model_like =
            w.contains('-') && w.chars().any(|c| c.is_ascii_digit()) && w.chars().next().is_some_and(char::is_alphabetic);
        if model_like {
            let suggestions = closest(w, cx.vocabulary.of(Dimension::Model));
            not_found.push(NotFound { said: w.clone(), dimension: Some(Dimension::Model), suggestions });
        } else if let Some((dimension, name)) = misspelt(w, cx.vocabulary) {
            // "suport-bot", "serach": a name of the data, misspelt; said so rather than dropped.
            not_found.push(NotFound { said: w.clone(), dimension: Some(dimension), suggestions: vec![name.to_owned()] });
        } else if name_like(w) {
            // "support-bot" where the data has support-chat: a name, but not one of theirs.
            let names = cx.vocabulary.names.iter().filter(|(d, _)| *d != Dimension::Day).map(|(_, n)| n.as_str());
            let suggestions = closest(w, names);
            let dimension = suggestions.first().and_then(|s| cx.vocabulary.names.iter().find(|(_, n)| n == s)).map(|(d, _)| *d);
            not_found.push(NotFound { said: w.clone(), dimension, suggestions });
        }
    }
    // "the foo feature", "feature foo", "project bar": a name the data does not hold.
    for (i, w) in words.iter().enumerate() {
        let dimension = match w.as_str() {
            "feature" => Dimension::Feature,
            "project" => Dimension::Project,
            "provider" => Dimension::Provider,
            "environment" => Dimension::Environment,
            _ => continue,
        };
        let candidates = [i.checked_sub(1).map(|j| &words[j]), words.get(i + 1)];
        for said in candidates.into_iter().flatten() {
            let stop = question_word(said);
            if stop || said.parse::<f64>().is_ok() || filters.iter().any(|f| f.said.split(' ').any(|p| p == said)) {
                continue;
            }
            let suggestions = closest(said, cx.vocabulary.of(dimension));
            if !not_found.iter().any(|n: &NotFound| &n.said == said) {
                not_found.push(NotFound { said: said.clone(), dimension: Some(dimension), suggestions });
            }
            break;
        }
    }
    (filters, not_found, catalog_models)
}

/// A word of questions themselves, never a name of the user's data.
fn question_word(w: &str) -> bool {
    static WORDS: std::sync::LazyLock<std::collections::HashSet<&'static str>> = std::sync::LazyLock::new(|| {
        let cues = [
            COMMON,
            COST_WORDS,
            IMPORT,
            WHAT_IF,
            SAVINGS,
            FORECAST,
            EXPLAIN,
            ANOMALIES,
            COMPARE,
            TREND,
            OVERVIEW,
            TOTAL,
            TOP_LARGEST,
            TOP_SMALLEST,
        ];
        cues.into_iter().chain(Dimension::ALL.iter().map(|d| d.words())).flatten().copied().collect()
    });
    WORDS.contains(w)
}

/// A word made like a name of the data ("support-bot", "billing_v2") that no name, model
/// or word of questions accounts for.
fn name_like(word: &str) -> bool {
    (word.contains('-') || word.contains('_'))
        && word.chars().next().is_some_and(char::is_alphabetic)
        && word.split(['-', '_']).all(|part| !part.is_empty() && !question_word(part))
        && !question_word(word)
}

/// The name of the data `word` is a misspelling of ("suport-bot" → support-bot): one close
/// enough that a typo explains it, for a word that is not a word of questions themselves.
fn misspelt<'v>(word: &str, vocabulary: &'v Vocabulary) -> Option<(Dimension, &'v str)> {
    if word.chars().count() < 5 || !word.chars().all(|c| c.is_alphabetic() || c == '-' || c == '_') || question_word(word) {
        return None;
    }
    vocabulary
        .names
        .iter()
        .filter(|(d, _)| *d != Dimension::Day)
        .map(|(d, n)| (strsim::normalized_damerau_levenshtein(word, &n.to_lowercase()), *d, n.as_str()))
        .filter(|(sim, ..)| *sim >= 0.82 && *sim < 1.0)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, d, n)| (d, n))
}

/// The model a what-if prices on: the last catalog model named that is not the only model
/// filter ("move support-bot from gpt-4o to gpt-4o-mini" → gpt-4o-mini).
fn what_if_target(lower: &str, catalog: &[(usize, String)], filters: &[Filter]) -> Option<String> {
    let (_, target) = catalog.last()?;
    let in_data_only: Vec<&Filter> = filters.iter().filter(|f| f.dimension == Dimension::Model).collect();
    // "What did gpt-4o cost?" names one model of the data and asks no what-if.
    let is_source = in_data_only.iter().any(|f| {
        f.values.iter().any(|v| undated(&v.to_lowercase()) == undated(&target.to_lowercase()) || v.eq_ignore_ascii_case(target))
    });
    let cue = WHAT_IF.iter().any(|c| contains_words(lower, c))
        || contains_words(lower, "on")
        || contains_words(lower, "with")
        || contains_words(lower, "to");
    if is_source && catalog.len() == 1 {
        let said_as_target = ["instead", "switch", "switched", "move", "migrate", "what if", "used", "using", "to", "would"]
            .iter()
            .any(|c| contains_words(lower, c))
            && !contains_words(lower, "from");
        return said_as_target.then(|| target.clone());
    }
    cue.then(|| target.clone())
}

/// Completes `q` from the previous turn when it is a follow-up.
fn follow_up(q: &mut Question, lower: &str, words: &[String], previous: &Turn, step_back: Option<&str>) {
    let Some(prev) = previous.question.as_ref() else { return };
    let refers_back =
        ["that", "those", "it", "them", "this", "these"].iter().any(|w| contains_words(lower, w)) && words.len() <= 12;
    // "Which feature drives most of it?" after "which project costs the most?": the new
    // ranking within the name the previous one put first.
    let prev_dimension = prev.group_by.unwrap_or(Dimension::Feature);
    if refers_back
        && matches!(q.operation, Operation::Top | Operation::Breakdown)
        && prev.operation == Operation::Top
        && q.group_by.is_some_and(|d| d != prev_dimension)
        && !q.filters.iter().any(|f| f.dimension == prev_dimension)
    {
        if let Some(first) = previous.ranking.first() {
            q.follow_up = true;
            q.filters.push(Filter { dimension: prev_dimension, values: vec![first.clone()], said: first.to_lowercase() });
            if q.period.is_none() {
                q.period = prev.period.clone();
            }
            return;
        }
    }
    // "the second one", "the 3rd", "number 2", "#2".
    let place = words.iter().enumerate().find_map(|(i, w)| {
        let next = words.get(i + 1).map(String::as_str).unwrap_or("");
        if let Some(p) = ORDINALS.iter().position(|o| o == w) {
            let refers = matches!(next, "one" | "biggest" | "largest" | "most" | "cheapest" | "highest" | "lowest" | "")
                || next.ends_with("est")
                || ["feature", "model", "project", "provider", "user", "key"].iter().any(|d| next.starts_with(d));
            return refers.then_some(p + 1);
        }
        let n = w.trim_start_matches('#').trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let ordinal_suffix =
            w.ends_with("nd") || w.ends_with("rd") || w.ends_with("th") || w.ends_with("st") || w.starts_with('#');
        let numbered = (i > 0 && words[i - 1] == "number")
            || (ordinal_suffix && !words.get(i + 1).is_some_and(|n| n.len() > 2 && period_word(n)));
        n.parse::<usize>().ok().filter(|n| (1..=50).contains(n) && numbered && !is_day_reference(words, i))
    });
    // "How much did it spend?" after "which API key spent the most?": the first of the ranking.
    let place = place.or_else(|| {
        (refers_back
            && prev.operation == Operation::Top
            && matches!(q.operation, Operation::Total | Operation::OffTopic)
            && q.filters.is_empty()
            && !previous.ranking.is_empty())
        .then_some(1)
    });
    let elliptic = [
        "and",
        "what about",
        "how about",
        "same for",
        "and for",
        "and in",
        "what of",
        "now for",
        "and on",
        "and what about",
        "and the",
        "only",
        "just",
    ]
    .iter()
    .any(|c| lower.starts_with(c) && (lower.len() == c.len() || lower[c.len()..].starts_with(' ')));
    let bare = matches!(q.operation, Operation::OffTopic | Operation::Total | Operation::Overview)
        && q.matched.iter().all(|m| !OVERVIEW.contains(&m.as_str()));
    let names_something = !q.filters.is_empty() || q.period.is_some() || !q.not_found.is_empty();
    if !(place.is_some()
        || elliptic
        || (refers_back && bare)
        || (bare && names_something && words.len() <= 6 && q.operation == Operation::OffTopic))
    {
        return;
    }
    q.follow_up = true;
    let asked_new_operation =
        !matches!(q.operation, Operation::OffTopic | Operation::Total | Operation::Overview | Operation::Greeting);
    if let Some(place) = place {
        let dimension = prev.group_by.unwrap_or(Dimension::Feature);
        match previous.ranking.get(place - 1) {
            Some(name) => {
                q.filters.retain(|f| f.dimension != dimension);
                q.filters.push(Filter { dimension, values: vec![name.clone()], said: name.to_lowercase() });
            }
            None => q.not_found.push(NotFound {
                said: format!("number {place}"),
                dimension: Some(dimension),
                suggestions: previous.ranking.clone(),
            }),
        }
        if !asked_new_operation {
            q.operation = if prev.operation == Operation::Top || prev.operation == Operation::Breakdown {
                Operation::Total
            } else {
                prev.operation
            };
        }
        q.group_by = if asked_new_operation { q.group_by } else { None };
        q.rank = None;
    } else {
        // The previous question with what this one changes.
        if !asked_new_operation {
            q.operation = prev.operation;
            q.rank = q.rank.or(prev.rank);
            q.group_by = q.group_by.or(prev.group_by);
            q.what_if_model = q.what_if_model.clone().or_else(|| prev.what_if_model.clone());
            q.target_percent = q.target_percent.or(prev.target_percent);
            q.budget = q.budget.clone().or_else(|| prev.budget.clone());
        }
        if q.matched.iter().all(|m| !matches!(m.as_str(), "per request" | "requests" | "tokens" | "share"))
            && measure_unsaid(lower)
        {
            q.measure = prev.measure;
        }
        // "And the week before (that)?": a step back from the period the previous answer
        // ended on (the one it compared with, when it compared).
        let all_data = ["all the data", "all of the data", "all my data", "all our data", "all time", "ever", "overall"]
            .iter()
            .any(|c| contains_words(lower, c));
        match (step_back, prev.compare.as_ref().or(prev.period.as_ref())) {
            (Some(unit), Some(from)) if q.period.is_none() => {
                q.period = Some(from.step_back(unit));
                q.compare = None;
                if q.operation == Operation::Compare {
                    q.operation = Operation::Total;
                }
            }
            _ if q.period.is_none() && !all_data => {
                q.period = prev.period.clone();
                q.compare = q.compare.clone().or_else(|| prev.compare.clone());
            }
            _ => {}
        }
        // A new name of a dimension replaces the previous one's; the rest are kept
        // ("how much of that was on gpt-4o?" narrows the previous question).
        for f in &prev.filters {
            if !q.filters.iter().any(|n| n.dimension == f.dimension) {
                q.filters.push(f.clone());
            }
        }
    }
}

fn measure_unsaid(lower: &str) -> bool {
    measure_of(lower, &mut Vec::new()).is_none()
}

fn period_word(w: &str) -> bool {
    matches!(w, "day" | "days" | "week" | "weeks" | "month" | "months")
}

/// Whether the number at `i` is a day of a date ("the 12th", "since the 3rd", "nov 12th").
fn is_day_reference(words: &[String], i: usize) -> bool {
    let before = i.checked_sub(1).map(|j| words[j].as_str()).unwrap_or("");
    let before2 = i.checked_sub(2).map(|j| words[j].as_str()).unwrap_or("");
    let after = words.get(i + 1).map(String::as_str).unwrap_or("");
    matches!(before, "on" | "since" | "from" | "until" | "to")
        || (before == "the" && matches!(before2, "on" | "since" | "from" | "until" | "to" | "after" | "before"))
        || after == "of"
        || words.iter().any(|w| {
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].iter().any(|m| w.starts_with(m))
                && before.len() <= 4
                && before.starts_with(&w[..3])
        })
}

#[cfg(test)]
mod tests;

//! `apex eval`: the measure of whether the analyst answers the question asked.
//!
//! A bank of questions users ask about their AI spend ([`bank`]) is asked over a real
//! server and WebSocket ([`runner`]) about a generated dataset ([`data`]); an answer counts
//! when its first sentence ([`sentence`]) holds every figure and name the question expects,
//! computed from the generated rows by plain sums ([`figures`]), never through the engine.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod bank;
pub mod data;
pub mod figures;
pub mod runner;
pub mod sentence;

pub use bank::{bank, Question, KINDS};
pub use data::Data;
pub use sentence::first_sentence;

/// `apex eval`'s options.
#[derive(clap::Args, Debug, Default)]
pub struct EvalArgs {
    /// Also print every failed question, what it expected and the first sentence it got
    #[arg(long)]
    pub verbose: bool,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
    /// Exit with 1 when the share of questions answered (in percent) is below this
    #[arg(long, default_value_t = 0.0)]
    pub min: f64,
    /// TOML settings for the server the bank is asked of (the answer-writing model, say),
    /// over which the `APEX_*` environment applies as for `apex serve`; the data dir, the
    /// store and the authentication are the eval's own
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub writer: Writer,
}

/// Who writes the answers, over what the settings say.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Writer {
    /// Who writes the answers: `builtin`, `openai` (the server at `OPENAI_BASE_URL`, model
    /// `APEX_LLM_MODEL`) or `local` (the GGUF at `APEX_LLM_MODEL_PATH`, or the one `apex
    /// models pull` fetched into the configured data dir)
    #[arg(long, value_parser = ["builtin", "openai", "local"])]
    pub llm: Option<String>,
    /// What the model does: `plan` (calls the agents' tools) or `phrase`
    #[arg(long, value_parser = ["plan", "phrase"])]
    pub llm_mode: Option<String>,
}

/// One question asked, and how it went.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub question: Question,
    pub first_sentence: String,
    /// The whole answer.
    pub answer: String,
    /// Expected strings the first sentence lacks.
    pub missing: Vec<String>,
    /// Why there was no answer, when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub answered: bool,
    /// What the model did for this answer, when a model wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelNote>,
}

/// What the answer-writing model did for one answer, as the report agent recorded it.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct ModelNote {
    /// Sentences the guards changed, by guard: `figure` (a figure not computed in the run,
    /// replaced), `name` (a name not in the data or catalog, dropped), `repeat`, `prompt`
    /// (quoting the instructions, dropped) and `direct_first` (the computed answer put
    /// first).
    #[serde(default)]
    pub guards: BTreeMap<String, u64>,
    /// Tool calls the model made while planning.
    #[serde(default)]
    pub tool_calls: u64,
    /// Why the built-in writer finished the answer, when it had to.
    #[serde(default)]
    pub fallback: Option<String>,
}

/// The counts of one question type.
#[derive(Clone, Debug, Serialize)]
pub struct KindScore {
    pub kind: &'static str,
    pub questions: usize,
    pub answered: usize,
    /// Percent.
    pub share: f64,
}

/// The results of a whole bank.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Who wrote the answers: `built-in`, or the model and what it did.
    pub writer: String,
    pub questions: usize,
    pub answered: usize,
    /// Percent.
    pub share: f64,
    pub kinds: Vec<KindScore>,
    /// The guards' changes over the whole bank, by guard (empty for the built-in writer).
    pub guards: BTreeMap<String, u64>,
    /// Answers the built-in writer finished because the model failed.
    pub fallbacks: usize,
    /// Tool calls the model made over the whole bank.
    pub tool_calls: u64,
    pub outcomes: Vec<Outcome>,
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

impl Report {
    pub fn new(writer: String, outcomes: Vec<Outcome>) -> Report {
        let kinds = KINDS
            .iter()
            .map(|&kind| {
                let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.question.kind == kind).collect();
                let answered = of.iter().filter(|o| o.answered).count();
                KindScore { kind, questions: of.len(), answered, share: percent(answered, of.len()) }
            })
            .filter(|k| k.questions > 0)
            .collect();
        let answered = outcomes.iter().filter(|o| o.answered).count();
        let mut guards = BTreeMap::new();
        for (guard, n) in outcomes.iter().filter_map(|o| o.model.as_ref()).flat_map(|m| &m.guards) {
            *guards.entry(guard.clone()).or_insert(0) += n;
        }
        let models = || outcomes.iter().filter_map(|o| o.model.as_ref());
        let fallbacks = models().filter(|m| m.fallback.is_some()).count();
        let tool_calls = models().map(|m| m.tool_calls).sum();
        let share = percent(answered, outcomes.len());
        Report { writer, questions: outcomes.len(), answered, share, kinds, guards, fallbacks, tool_calls, outcomes }
    }

    /// Follow-up questions in the bank.
    pub fn follow_ups(&self) -> usize {
        self.outcomes.iter().filter(|o| o.question.follow_up).count()
    }

    /// The table per question type and the total.
    pub fn table(&self) -> String {
        let mut out = format!("{:<18} {:>9} {:>9} {:>7}\n", "type", "questions", "answered", "share");
        for k in &self.kinds {
            out += &format!("{:<18} {:>9} {:>9} {:>6.1}%\n", k.kind, k.questions, k.answered, k.share);
        }
        out += &format!("{:<18} {:>9} {:>9} {:>6.1}%\n", "total", self.questions, self.answered, self.share);
        out += &format!("written by: {}\n", self.writer);
        if self.outcomes.iter().any(|o| o.model.is_some()) {
            let guards: Vec<String> = self.guards.iter().map(|(g, n)| format!("{g} {n}")).collect();
            out += &format!("guards (sentences changed): {}\n", guards.join(", "));
            out +=
                &format!("model tool calls: {}; answers finished by the built-in writer: {}\n", self.tool_calls, self.fallbacks);
        }
        out
    }

    /// Every failed question: its type, text, expected strings and the first sentence it got.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for o in self.outcomes.iter().filter(|o| !o.answered) {
            let follow = if o.question.follow_up { " (follow-up)" } else { "" };
            out += &format!("[{}]{follow} {}\n  expected: {}\n", o.question.kind, o.question.text, o.question.expect.join(" | "));
            out += &format!("  missing:  {}\n", o.missing.join(" | "));
            match &o.error {
                Some(e) => out += &format!("  error:    {e}\n"),
                None => out += &format!("  got:      {}\n", o.first_sentence.replace('\n', " ")),
            }
        }
        out
    }
}

/// Generates the data, asks the whole bank of a fresh server (settings from the defaults,
/// `config`, the `APEX_*` environment and `writer`) and judges the answers.
pub async fn evaluate(config: Option<&Path>, writer: &Writer) -> anyhow::Result<Report> {
    let data = Data::generate();
    let questions = bank(&data);
    let (writer, answers) = runner::ask_all(config, writer, data.csv(), data.rows.len(), &questions).await?;
    let outcomes = questions
        .into_iter()
        .zip(answers)
        .map(|(question, answer)| {
            let first = first_sentence(&answer.text);
            let missing: Vec<String> = sentence::missing(&first, &question.expect).into_iter().map(str::to_owned).collect();
            let answered = answer.error.is_none() && missing.is_empty();
            let (text, error, model) = (answer.text, answer.error, answer.model);
            Outcome { question, first_sentence: first, answer: text, missing, error, answered, model }
        })
        .collect();
    Ok(Report::new(writer, outcomes))
}

/// `apex eval`: prints the report; the exit code is 1 when the share answered is below
/// `--min`.
pub async fn run(args: EvalArgs) -> anyhow::Result<i32> {
    let report = evaluate(args.config.as_deref(), &args.writer).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if args.verbose {
            print!("{}", report.failures());
            println!();
        }
        print!("{}", report.table());
    }
    Ok(if report.share < args.min { 1 } else { 0 })
}

//! Request triage: the question parser's reading of the request, and what the answer leads
//! with; every request still gets the whole pipeline, so every answer rests on the same
//! computed figures.
use apex_protocol::AgentName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Tool, ToolError};
use crate::context::RunContext;
use crate::question::{parse, Context, Dimension, Operation, Question, Vocabulary};

/// What the user is asking for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    CostAnalysis,
    Optimization,
    Forecast,
    WhatIf,
    ImportHelp,
    OffTopic,
}

impl Intent {
    /// In words ("what if").
    pub fn label(self) -> &'static str {
        match self {
            Self::CostAnalysis => "cost analysis",
            Self::Optimization => "optimization",
            Self::Forecast => "forecast",
            Self::WhatIf => "what if",
            Self::ImportHelp => "import help",
            Self::OffTopic => "off topic",
        }
    }
}

/// The grouping the report leads with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Focus {
    Model,
    Feature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Triage {
    pub intent: Intent,
    pub focus: Focus,
    /// The words that decided it, so the decision can be checked.
    pub matched: Vec<String>,
    /// A feature of the user's data that the question names.
    pub feature: Option<String>,
    /// For `what_if`: the model to price the usage on.
    pub target_model: Option<String>,
    /// The question as the parser read it: period, names, measure, operation.
    pub question: Question,
}

/// Reads `text` with the question parser (see [`crate::question`]) and says what the answer
/// leads with: the intent, the grouping, and the feature and model it names.
pub fn classify(text: &str, cx: &Context) -> Triage {
    let question = parse(text, cx);
    let intent = match question.operation {
        Operation::ImportHelp => Intent::ImportHelp,
        Operation::Greeting | Operation::OffTopic => Intent::OffTopic,
        Operation::WhatIf if question.what_if_model.is_some() => Intent::WhatIf,
        // "switch" without a model to switch to is a request for savings.
        Operation::WhatIf | Operation::Savings => Intent::Optimization,
        Operation::Forecast => Intent::Forecast,
        _ => Intent::CostAnalysis,
    };
    let named = |d: Dimension| question.filters.iter().find(|f| f.dimension == d).and_then(|f| f.values.first().cloned());
    let feature = named(Dimension::Feature);
    let by_feature = feature.is_some()
        || matches!(question.group_by, Some(Dimension::Feature | Dimension::Project))
        || question.filters.iter().any(|f| f.dimension == Dimension::Project);
    let focus = if by_feature { Focus::Feature } else { Focus::Model };
    let target_model = if intent == Intent::WhatIf { question.what_if_model.clone() } else { None };
    Triage { intent, focus, matched: question.matched.clone(), feature, target_model, question }
}

/// The names of the user's data, of every dimension a question can name: those of
/// `records`, and `more` (end users and API keys the records sum over).
pub fn vocabulary<'a>(
    records: impl IntoIterator<Item = &'a apex_costs::UsageRecord>,
    more: impl IntoIterator<Item = (Dimension, &'a str)>,
) -> Vocabulary {
    let mut names = std::collections::BTreeSet::new();
    for r in records {
        for (d, name) in [
            (Dimension::Model, &r.model),
            (Dimension::Provider, &r.provider),
            (Dimension::Feature, &r.feature),
            (Dimension::Project, &r.project),
            (Dimension::User, &r.user),
            (Dimension::ApiKey, &r.api_key),
            (Dimension::Environment, &r.environment),
        ] {
            if !name.is_empty() {
                names.insert((d, name.as_str()));
            }
        }
    }
    names.extend(more.into_iter().filter(|(_, name)| !name.is_empty()));
    Vocabulary::new(names.into_iter().map(|(d, n)| (d, n.to_owned())))
}

/// Triage: what the user is asking for.
pub struct ClassifyRequest;

#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClassifyArgs {
    /// The request to classify; the run's question when omitted.
    #[serde(default)]
    pub text: Option<String>,
}

#[async_trait]
impl Tool for ClassifyRequest {
    const NAME: &'static str = "classify_request";
    const AGENT: AgentName = AgentName::Triage;
    const DESCRIPTION: &'static str =
        "What a request asks for (intent), which grouping should lead, and the feature and model it names.";
    type Args = ClassifyArgs;
    type Output = Triage;

    async fn run(&self, ctx: &RunContext, args: ClassifyArgs) -> Result<Triage, ToolError> {
        let text = args.text.as_deref().unwrap_or(&ctx.text);
        let vocabulary = ctx.data.vocabulary().await?;
        let summary = ctx.data.summary().await?;
        // Relative dates are read against the last day of the data; without data, today.
        let last_day = crate::question::day(&summary.to).unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
        let catalog = |w: &str| ctx.data.prices().price_for(w).map(|p| p.model.to_string());
        let previous = match &ctx.memory {
            Some(memory) => memory.previous_turn(&ctx.user_id, ctx.thread_id, ctx.run_id).await,
            None => None,
        };
        Ok(classify(text, &Context { vocabulary: &vocabulary, last_day, catalog: &catalog, previous: previous.as_ref() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Triage {
        let vocabulary = Vocabulary::new(
            [(Dimension::Feature, "support-chat"), (Dimension::Feature, "ticket-triage"), (Dimension::Model, "gpt-4o")]
                .map(|(d, n)| (d, n.to_owned())),
        );
        let catalog = |w: &str| ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"].contains(&w).then(|| w.to_owned());
        let last_day = time::macros::date!(2026 - 11 - 24);
        classify(text, &Context { vocabulary: &vocabulary, last_day, catalog: &catalog, previous: None })
    }

    #[test]
    fn classifies_the_common_requests() {
        assert_eq!(run("Analyze my AI costs").intent, Intent::CostAnalysis);
        assert_eq!(run("How can I reduce spend and save money?").intent, Intent::Optimization);
        assert_eq!(run("Forecast next month's budget").intent, Intent::Forecast);
        assert_eq!(run("How do I import my OpenAI usage export?").intent, Intent::ImportHelp);
        assert_eq!(run("tell me a joke").intent, Intent::OffTopic);
        assert_eq!(run("Which feature costs most?").focus, Focus::Feature);
    }

    #[test]
    fn what_if_names_the_feature_and_the_target_model() {
        let t = run("What if we move support-chat from gpt-4o to gpt-4o-mini?");
        assert_eq!(t.intent, Intent::WhatIf);
        assert_eq!(t.feature.as_deref(), Some("support-chat"));
        assert_eq!(t.target_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(run("Should we switch everything to claude-haiku-4-5").target_model.as_deref(), Some("claude-haiku-4-5"));
        assert_eq!(run("what if we switch?").intent, Intent::Optimization, "no target model");
        assert_eq!(run("ticket-triage").intent, Intent::CostAnalysis, "a feature alone is a question about it");
    }
}

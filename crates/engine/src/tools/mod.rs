//! Tools: the capabilities agents (and a configured model) call, one file each.
//!
//! A [`Tool`] is typed: its arguments and its output are Rust types, its arguments' JSON
//! Schema is derived from the type, and agents get the output back as that type. The
//! registry ([`Tools`]) holds them as [`DynTool`]s, so the wire stays JSON: a call is
//! streamed as `tool_executing` (the arguments) and `tool_completed` (the output), and a
//! model can call a tool by name with JSON arguments that are checked against its type.
//!
//! Adding a tool: a file here with its type and `impl Tool`, and one line in [`builtin`].
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use apex_llm::ToolSpec;
use apex_protocol::{AgentName, EventKind};
use apex_telemetry as m;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::context::RunContext;
use crate::error::AgentError;
use crate::sink::Sink;

mod anomalies;
mod classify;
mod explain;
mod forecast;
mod overview;
mod query;
mod savings;
mod slice;
mod what_if;

pub use anomalies::{AnomalyArgs, DetectAnomalies, Signals};
pub use classify::{classify, vocabulary, ClassifyArgs, ClassifyRequest, Focus, Intent, Triage};
pub use explain::{ExplainArgs, ExplainChange, Explained};
pub use forecast::{dollars, ForecastArgs, ForecastSpend, Projection};
pub use overview::{Overview, UsageOverview};
pub use query::{Breakdown, QueryArgs, QueryUsage, UsageQuery};
pub use savings::{FindSavings, Goal, Savings, SavingsArgs};
pub use slice::{slice, Compared, QuerySlice, Slice, SliceArgs, SliceFilter};
pub use what_if::{WhatIfArgs, WhatIfResult, WhatIfTool};

/// The tools every run has, one or more per agent.
pub fn builtin() -> Tools {
    Tools::default()
        .with(Arc::new(UsageOverview))
        .with(Arc::new(ClassifyRequest))
        .with(Arc::new(QueryUsage))
        .with(Arc::new(QuerySlice))
        .with(Arc::new(DetectAnomalies))
        .with(Arc::new(ExplainChange))
        .with(Arc::new(FindSavings::default()))
        .with(Arc::new(WhatIfTool))
        .with(Arc::new(ForecastSpend))
}

/// A capability with typed arguments and output. Tools see only the run's context
/// (identity, question, usage data), so real data sources plug in without touching the
/// runtime.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name agents, models and clients know it by (`tool` in the events).
    const NAME: &'static str;
    /// The agent that owns it: a model's call of it is streamed as that agent's.
    const AGENT: AgentName;
    /// What it does, for a model choosing a tool.
    const DESCRIPTION: &'static str;
    type Args: Serialize + DeserializeOwned + schemars::JsonSchema + Send;
    type Output: Serialize + Send + 'static;

    async fn run(&self, ctx: &RunContext, args: Self::Args) -> Result<Self::Output, ToolError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    pub(crate) fn encoding(e: serde_json::Error) -> Self {
        Self(format!("result could not be encoded: {e}"))
    }
}

/// A tool as the registry holds it: JSON in, JSON (and the typed output) out. Every
/// [`Tool`] is one; wrappers (a fault-injection delay, a test's stand-in) implement it
/// directly and delegate.
#[async_trait]
pub trait DynTool: Send + Sync {
    fn name(&self) -> &str;
    /// The agent that owns it.
    fn agent(&self) -> AgentName;
    fn description(&self) -> &str;
    /// The JSON Schema of the arguments.
    fn parameters(&self) -> Value;
    async fn call(&self, ctx: &RunContext, args: Value) -> Result<ToolValue, ToolError>;
}

/// A tool's output: as JSON for the wire, and as its type for the agent that called it.
pub struct ToolValue {
    pub json: Value,
    pub typed: Box<dyn Any + Send>,
}

#[async_trait]
impl<T: Tool> DynTool for T {
    fn name(&self) -> &str {
        T::NAME
    }

    fn agent(&self) -> AgentName {
        T::AGENT
    }

    fn description(&self) -> &str {
        T::DESCRIPTION
    }

    fn parameters(&self) -> Value {
        schema_of::<T::Args>()
    }

    async fn call(&self, ctx: &RunContext, args: Value) -> Result<ToolValue, ToolError> {
        let args: T::Args = serde_json::from_value(args).map_err(|e| ToolError(format!("invalid arguments: {e}")))?;
        let output = self.run(ctx, args).await?;
        let json = serde_json::to_value(&output).map_err(ToolError::encoding)?;
        Ok(ToolValue { json, typed: Box::new(output) })
    }
}

/// The JSON Schema of a type, self-contained (no `$ref`s), as function-calling APIs take it.
pub fn schema_of<A: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = Value::from(generator.into_root_schema_for::<A>());
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
    }
    schema
}

/// The tools available to a run, by name. Replacing one by name is how a deployment (or a
/// test) swaps an implementation.
#[derive(Clone, Default)]
pub struct Tools(Arc<HashMap<String, Arc<dyn DynTool>>>);

impl Tools {
    pub fn with(mut self, tool: Arc<dyn DynTool>) -> Self {
        Arc::make_mut(&mut self.0).insert(tool.name().to_owned(), tool);
        self
    }

    /// Wraps every tool, e.g. to add a fault-injection delay.
    pub fn map(self, wrap: impl Fn(Arc<dyn DynTool>) -> Arc<dyn DynTool>) -> Self {
        Self(Arc::new(self.0.iter().map(|(name, tool)| (name.clone(), wrap(tool.clone()))).collect()))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynTool>> {
        self.0.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The tools `agent` owns, by name.
    pub fn owned_by(&self, agent: AgentName) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.values().filter(|t| t.agent() == agent).map(|t| t.name()).collect();
        names.sort_unstable();
        names
    }

    /// The named tools as a model is offered them (name, description, argument schema).
    pub fn specs(&self, names: &[&str]) -> Vec<ToolSpec> {
        names
            .iter()
            .filter_map(|name| self.get(name))
            .map(|t| ToolSpec { name: t.name().to_owned(), description: t.description().to_owned(), parameters: t.parameters() })
            .collect()
    }

    /// Calls the tool `T` for `agent`, streaming the call as `tool_executing` and
    /// `tool_completed`; returns its typed output.
    pub async fn call<T: Tool>(
        &self,
        ctx: &RunContext,
        sink: &dyn Sink,
        agent: AgentName,
        args: T::Args,
    ) -> Result<T::Output, AgentError> {
        let args = serde_json::to_value(&args).map_err(|e| AgentError::Internal(format!("arguments of {}: {e}", T::NAME)))?;
        let value = self.dispatch(ctx, sink, agent, T::NAME, args).await?;
        value.typed.downcast::<T::Output>().map(|output| *output).map_err(|_| {
            AgentError::Internal(format!("the tool registered as `{}` does not return the output its name promises", T::NAME))
        })
    }

    /// Calls a tool by name with JSON arguments (a model's call); returns its JSON output.
    pub async fn call_json(
        &self,
        ctx: &RunContext,
        sink: &dyn Sink,
        agent: AgentName,
        name: &str,
        args: Value,
    ) -> Result<Value, AgentError> {
        Ok(self.dispatch(ctx, sink, agent, name, args).await?.json)
    }

    async fn dispatch(
        &self,
        ctx: &RunContext,
        sink: &dyn Sink,
        agent: AgentName,
        name: &str,
        args: Value,
    ) -> Result<ToolValue, AgentError> {
        let Some(tool) = self.get(name).cloned() else {
            return Err(AgentError::UnknownTool(name.to_owned()));
        };
        let tool_call_id = sink.next_tool_call_id();
        let started = Instant::now();
        let executing =
            EventKind::ToolExecuting { agent, tool: name.to_owned(), tool_call_id: tool_call_id.clone(), args: args.clone() };
        sink.emit(executing).await;
        let result = tool.call(ctx, args).instrument(tracing::info_span!("tool", tool = name)).await;
        let elapsed = started.elapsed();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::TOOL_CALLS, "tool" => name.to_owned(), "outcome" => outcome).increment(1);
        metrics::histogram!(m::TOOL_DURATION, "tool" => name.to_owned()).record(elapsed.as_secs_f64());
        let (duration_ms, duration_us) = (elapsed.as_millis() as u64, elapsed.as_micros() as u64);
        let (ok, result_json, error) = match &result {
            Ok(v) => (true, Some(v.json.clone()), None),
            Err(e) => (false, None, Some(e.0.clone())),
        };
        let tool = name.to_owned();
        sink.emit(EventKind::ToolCompleted {
            agent,
            tool,
            tool_call_id,
            ok,
            result: result_json,
            error,
            duration_ms,
            duration_us,
        })
        .await;
        result.map_err(|e| AgentError::Tool { tool: name.to_owned(), message: e.0 })
    }
}

/// Delays a tool before it runs: a fault-injection knob (`APEX_TOOL_DELAY_MS`) for testing
/// how clients live through slow runs, disconnects and restarts. Off by default.
pub struct Delayed {
    pub inner: Arc<dyn DynTool>,
    pub delay: std::time::Duration,
}

#[async_trait]
impl DynTool for Delayed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn agent(&self) -> AgentName {
        self.inner.agent()
    }
    fn description(&self) -> &str {
        self.inner.description()
    }
    fn parameters(&self) -> Value {
        self.inner.parameters()
    }
    async fn call(&self, ctx: &RunContext, args: Value) -> Result<ToolValue, ToolError> {
        tokio::time::sleep(self.delay).await;
        self.inner.call(ctx, args).await
    }
}

/// The arguments of a tool that takes none (`{}`).
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct NoArgs {}

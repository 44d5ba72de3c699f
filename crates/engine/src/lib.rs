//! The run engine: everything between an accepted user message and its final answer.
//!
//! [`RunManager`] accepts a message, persists it, and spawns a run task that owns a
//! [`RunContext`]. The [`Supervisor`](supervisor::Supervisor) drives the agents in order;
//! agents call [`Tool`]s and report through the [`EventSink`], which numbers each event,
//! appends it to the run's [`RunLog`] (live fan-out to every follower) and hands it to the
//! batching [`writer`] for persistence. Nothing here knows about HTTP, WebSocket or SQL.
#![forbid(unsafe_code)]

pub mod agent;
pub mod agents;
pub mod cluster;
pub mod context;
pub mod log;
pub mod manager;
pub mod sink;
pub mod supervisor;
pub mod tools;
pub mod writer;

pub use agent::{Agent, AgentError, AgentOutput, Scratchpad, Tool, ToolError, Tools};
pub use cluster::Cluster;
pub use context::RunContext;
pub use log::{Follow, RunLog};
pub use manager::{Accepted, EngineSettings, RunManager, StartError, OWN_USAGE_ACCOUNT};
pub use sink::EventSink;
pub use tools::{DemoUsage, Origin, StoredUsage, UsageData, UsageSource};

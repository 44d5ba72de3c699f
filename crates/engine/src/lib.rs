//! The run engine: everything between an accepted user message and its final answer.
//!
//! [`RunManager`] accepts a message, persists it, and spawns a run task that owns a
//! [`RunContext`]. The [`Supervisor`](supervisor::Supervisor) drives the agents in order;
//! each fills its part of the run's [`Findings`], calling typed [`Tool`]s through the
//! [`Tools`] registry and reporting through a [`Sink`]: the live [`EventSink`] numbers each
//! event, appends it to the run's [`RunLog`] (live fan-out to every follower) and hands it
//! to the batching [`writer`] for persistence. Nothing here knows about HTTP, WebSocket or
//! SQL.
//!
//! The modules, in the order data flows: [`usage`] (the user's records) → [`context`] (one
//! run) → [`sink`] (its events) → [`tools`] → [`agent`] and [`agents`] → [`supervisor`] →
//! [`manager`] (runs, their lifetimes and followers) with [`log`], [`writer`] and
//! [`cluster`] beside it.
#![forbid(unsafe_code)]

pub mod agent;
pub mod agents;
pub mod cluster;
pub mod context;
pub mod error;
pub mod log;
pub mod manager;
pub mod question;
pub mod sink;
pub mod supervisor;
pub mod tools;
pub mod usage;
pub mod writer;

pub use agent::{Agent, AgentOutput, Findings, Step};
pub use cluster::Cluster;
pub use context::RunContext;
pub use error::AgentError;
pub use log::{Follow, RunLog};
pub use manager::{Accepted, EngineSettings, RunManager, StartError, OWN_USAGE_ACCOUNT};
pub use sink::{EventSink, MemorySink, Sink};
pub use tools::{DynTool, Tool, ToolError, ToolValue, Tools};
pub use usage::{DemoUsage, Origin, RunData, StoredUsage, UsageData, UsageSource};

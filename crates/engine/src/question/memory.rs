//! Thread memory: the previous turn of a thread — its question as triage read it and the
//! names its answer ranked — so that a follow-up ("the second one", "and in October?") is
//! read against it. It is recovered from what every run already persists (the agents'
//! results), so it survives a reconnect, a restart and a move to another instance.
use std::sync::Arc;

use apex_protocol::{RunId, ThreadId, UserId};
use apex_store::Store;
use async_trait::async_trait;

use super::{Question, Turn};

#[async_trait]
pub trait Memory: Send + Sync {
    /// The last answered turn of `thread` before the run `current`, if any.
    async fn previous_turn(&self, user: &UserId, thread: ThreadId, current: RunId) -> Option<Turn>;
}

/// Memory read from the store.
pub struct StoreMemory(pub Arc<dyn Store>);

#[async_trait]
impl Memory for StoreMemory {
    async fn previous_turn(&self, user: &UserId, thread: ThreadId, current: RunId) -> Option<Turn> {
        let messages = self.0.thread_messages(user, thread).await.ok()?;
        let run = messages.iter().rev().filter(|m| m.role == "assistant").find_map(|m| m.run_id.filter(|r| *r != current))?;
        let results = self.0.agent_results(user, run).await.ok()?;
        let output = |agent: &str| results.iter().find(|r| r.agent == agent).map(|r| &r.output);
        let question: Option<Question> = output("triage").and_then(|o| serde_json::from_value(o.get("question")?.clone()).ok());
        let ranking: Vec<String> =
            output("data").and_then(|o| serde_json::from_value(o.get("ranking")?.clone()).ok()).unwrap_or_default();
        question.is_some().then_some(Turn { question, ranking })
    }
}

//! Thread memory: the previous turn of a thread — its question as triage read it and the
//! names its answer ranked — so that a follow-up ("the second one", "and in October?") is
//! read against it. It is recovered from what every run already persists (the agents'
//! results), so it survives a reconnect, a restart and a move to another instance. Only
//! the branch that leads to the message being answered counts (see [`StoreMemory`]).
use std::sync::Arc;

use apex_protocol::{RunId, ThreadId, UserId};
use apex_store::{branch_to, MessageRow, Store};
use async_trait::async_trait;

use super::{Question, Turn};

#[async_trait]
pub trait Memory: Send + Sync {
    /// The last answered turn of `thread` before the run `current`, if any.
    async fn previous_turn(&self, user: &UserId, thread: ThreadId, current: RunId) -> Option<Turn>;

    /// The thread's earlier messages before the run `current`, oldest first, compacted for a
    /// model's prompt (see [`compact`]).
    async fn history(&self, _user: &UserId, _thread: ThreadId, _current: RunId) -> Vec<Said> {
        Vec::new()
    }
}

/// One earlier message of a thread, as a model is given it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    pub by_user: bool,
    pub text: String,
}

/// Messages a model is given of a thread's history: the most recent ones.
pub const HISTORY_MESSAGES: usize = 6;
/// Characters kept of each earlier message (answers are long; their start says the most).
pub const HISTORY_CHARS: usize = 600;

/// The last [`HISTORY_MESSAGES`] messages, each cut to [`HISTORY_CHARS`] characters.
pub fn compact(messages: impl IntoIterator<Item = Said>) -> Vec<Said> {
    let all: Vec<Said> = messages.into_iter().filter(|m| !m.text.trim().is_empty()).collect();
    let skip = all.len().saturating_sub(HISTORY_MESSAGES);
    all.into_iter()
        .skip(skip)
        .map(|m| {
            let text = if m.text.chars().count() > HISTORY_CHARS {
                format!("{}…", m.text.chars().take(HISTORY_CHARS).collect::<String>())
            } else {
                m.text
            };
            Said { by_user: m.by_user, text }
        })
        .collect()
}

/// Memory read from the store. A thread is a tree (edits and regenerates branch it): a run
/// remembers the branch that leads to the message it answers, not the branches beside it.
pub struct StoreMemory(pub Arc<dyn Store>);

impl StoreMemory {
    /// The messages before the one the run `current` answers, on its branch, oldest first.
    async fn branch(&self, user: &UserId, thread: ThreadId, current: RunId) -> Option<Vec<MessageRow>> {
        let (messages, run) = tokio::join!(self.0.thread_messages(user, thread), self.0.get_run(user, current));
        let (messages, run) = (messages.ok()?, run.ok()?);
        let mut path: Vec<MessageRow> = branch_to(&messages, run.user_message_id).into_iter().cloned().collect();
        path.pop();
        Some(path)
    }
}

#[async_trait]
impl Memory for StoreMemory {
    async fn previous_turn(&self, user: &UserId, thread: ThreadId, current: RunId) -> Option<Turn> {
        let branch = self.branch(user, thread, current).await?;
        let run = branch.iter().rev().filter(|m| m.role == "assistant").find_map(|m| m.run_id)?;
        let results = self.0.agent_results(user, run).await.ok()?;
        let output = |agent: &str| results.iter().find(|r| r.agent == agent).map(|r| &r.output);
        let question: Option<Question> = output("triage").and_then(|o| serde_json::from_value(o.get("question")?.clone()).ok());
        let ranking: Vec<String> =
            output("data").and_then(|o| serde_json::from_value(o.get("ranking")?.clone()).ok()).unwrap_or_default();
        question.is_some().then_some(Turn { question, ranking })
    }

    async fn history(&self, user: &UserId, thread: ThreadId, current: RunId) -> Vec<Said> {
        let Some(branch) = self.branch(user, thread, current).await else { return Vec::new() };
        compact(
            branch
                .into_iter()
                .filter(|m| matches!(m.role.as_str(), "user" | "assistant"))
                .map(|m| Said { by_user: m.role == "user", text: m.content }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_latest_messages_cut_short() {
        let long = "x".repeat(HISTORY_CHARS + 50);
        let messages = (0..10).map(|i| Said { by_user: i % 2 == 0, text: if i == 9 { long.clone() } else { format!("m{i}") } });
        let kept = compact(messages);
        assert_eq!(kept.len(), HISTORY_MESSAGES);
        assert_eq!(kept[0].text, "m4");
        assert_eq!(kept[5].text.chars().count(), HISTORY_CHARS + 1, "cut, with an ellipsis");
    }
}

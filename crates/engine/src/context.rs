//! What a run knows about itself.
use std::sync::Arc;

use apex_protocol::{MessageId, RunId, ThreadId, UserId};

use crate::question::Memory;
use crate::usage::RunData;

/// The identity and input of one run; handed to every agent and tool.
#[derive(Clone)]
pub struct RunContext {
    pub user_id: UserId,
    /// A demo identity: shown the demo dataset until it imports usage of its own.
    pub demo: bool,
    pub thread_id: ThreadId,
    pub run_id: RunId,
    /// The id of the assistant message this run writes.
    pub message_id: MessageId,
    /// The user's message that started the run.
    pub text: Arc<str>,
    /// The user's usage data, loaded once for the whole run.
    pub data: RunData,
    /// The thread's earlier turns, for reading a follow-up (none in tests that need none).
    pub memory: Option<Arc<dyn Memory>>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("user_id", &self.user_id)
            .field("demo", &self.demo)
            .field("thread_id", &self.thread_id)
            .field("run_id", &self.run_id)
            .field("message_id", &self.message_id)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

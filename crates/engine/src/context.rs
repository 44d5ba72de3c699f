//! What a run knows about itself.
use std::sync::Arc;

use apex_protocol::{MessageId, RunId, ThreadId};

use crate::tools::ToolContext;

/// The identity and input of one run; handed to every agent.
#[derive(Clone, Debug)]
pub struct RunContext {
    pub user_id: Arc<str>,
    pub thread_id: ThreadId,
    pub run_id: RunId,
    /// The id of the assistant message this run writes.
    pub message_id: MessageId,
    /// The user's message that started the run.
    pub text: Arc<str>,
    pub tools: ToolContext,
}

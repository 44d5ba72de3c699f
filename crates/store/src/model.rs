//! The records the store reads and writes.
use apex_protocol::{MessageId, OrgId, RunId, ThreadId, UserId};
use serde::Serialize;

/// The `error_code`/`error_message` of a run that the server stopped (shutdown past its
/// grace period, or a crash) before it could finish.
pub static INTERRUPTED: std::sync::LazyLock<(String, String)> =
    std::sync::LazyLock::new(|| ("interrupted".into(), "the server stopped before the run finished".into()));

/// Longest thread title derived from the first message, in characters.
pub const TITLE_CHARS: usize = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "timed_out" => Self::TimedOut,
            "interrupted" => Self::Interrupted,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// An accepted user message and the run it starts. The ids are chosen by the caller, so
/// that many of these can be written in one transaction.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub user_id: UserId,
    /// `None` starts a new thread, with id `new_thread_id`.
    pub thread_id: Option<ThreadId>,
    pub new_thread_id: ThreadId,
    pub run_id: RunId,
    pub message_id: MessageId,
    pub text: String,
    pub client_message_id: Option<String>,
    pub at_ms: u64,
    /// The instance that executes the run (its lease keeps the run alive).
    pub owner: Option<String>,
    /// Where the message goes in its thread.
    pub place: Place,
}

/// Where an accepted message goes in its thread: a tree, each message after its parent.
/// A place that already has a message starts a branch beside it; nothing is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// After the thread's latest message (first, in a new thread).
    Latest,
    /// After this message, or first in the thread (`None`).
    After(Option<MessageId>),
    /// No new message: the run answers `message_id`, a stored user message, again.
    Again,
}

impl NewRun {
    pub fn new(
        user_id: &UserId,
        thread_id: Option<ThreadId>,
        text: String,
        client_message_id: Option<String>,
        at_ms: u64,
    ) -> Self {
        Self {
            user_id: user_id.clone(),
            thread_id,
            new_thread_id: ThreadId::new(),
            run_id: RunId::new(),
            message_id: MessageId::new(),
            text,
            client_message_id,
            at_ms,
            owner: None,
            place: Place::Latest,
        }
    }

    /// The same, placed elsewhere in its thread.
    pub fn placed(mut self, place: Place) -> Self {
        self.place = place;
        self
    }

    /// The same, executed by `instance`.
    pub fn owned_by(mut self, instance: &str) -> Self {
        self.owner = Some(instance.to_owned());
        self
    }

    pub fn thread(&self) -> ThreadId {
        self.thread_id.unwrap_or(self.new_thread_id)
    }
}

/// The outcome of each begin of a batch, in order, and the begins to write: given the
/// runs of earlier `client_message_id`s (by user and id) and the owners of the threads
/// named, a resent id gives the original run, another user's thread gives
/// `ThreadNotFound`. The same rules for every backend.
pub(crate) fn decide_begins<'a>(
    begins: &'a [NewRun],
    mut seen: std::collections::HashMap<(String, String), BegunRun>,
    owners: &std::collections::HashMap<ThreadId, String>,
) -> (Vec<BeginOutcome>, Vec<&'a NewRun>) {
    let mut outcomes = Vec::with_capacity(begins.len());
    let mut accepted = Vec::with_capacity(begins.len());
    for b in begins {
        let key = b.client_message_id.as_ref().map(|c| (b.user_id.to_string(), c.clone()));
        if let Some(original) = key.as_ref().and_then(|k| seen.get(k)) {
            outcomes.push(BeginOutcome::Duplicate(original.clone()));
            continue;
        }
        if let Some(thread) = b.thread_id {
            if owners.get(&thread).map(String::as_str) != Some(b.user_id.as_str()) {
                outcomes.push(BeginOutcome::ThreadNotFound);
                continue;
            }
        }
        let begun = BegunRun { run_id: b.run_id, thread_id: b.thread(), message_id: b.message_id };
        if let Some(k) = key {
            // The same id twice in one batch: the second is a resend of the first.
            seen.insert(k, begun.clone());
        }
        outcomes.push(BeginOutcome::Begun(begun));
        accepted.push(b);
    }
    (outcomes, accepted)
}

/// What became of a [`NewRun`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeginOutcome {
    /// Written: the message is durable and the run is `queued`.
    Begun(BegunRun),
    /// `client_message_id` was seen before for this user: the original, nothing written.
    Duplicate(BegunRun),
    /// The thread does not exist for this user.
    ThreadNotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BegunRun {
    pub run_id: RunId,
    pub thread_id: ThreadId,
    pub message_id: MessageId,
}

/// One write of the engine's writer task.
#[derive(Clone, Debug)]
pub enum Write {
    RunStarted {
        run_id: RunId,
        at_ms: u64,
    },
    /// An event exactly as sent on the wire.
    Event {
        run_id: RunId,
        seq: u64,
        kind: &'static str,
        json: std::sync::Arc<str>,
    },
    AgentResult {
        run_id: RunId,
        agent: &'static str,
        output: String,
        duration_ms: u64,
    },
    Finish(RunFinish),
}

/// The end of a run: its state, its answer (full or partial) and its terminal event.
#[derive(Clone, Debug)]
pub struct RunFinish {
    pub run_id: RunId,
    pub user_id: UserId,
    pub thread_id: ThreadId,
    pub status: RunStatus,
    pub at_ms: u64,
    pub error: Option<(String, String)>,
    /// The assistant message; saved when its text is not empty.
    pub message_id: MessageId,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadRow {
    pub id: ThreadId,
    pub title: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// The organization whose members may read the thread; `None` while it is personal.
    pub shared_with: Option<OrgId>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageRow {
    pub id: MessageId,
    pub thread_id: ThreadId,
    /// The message this one follows; `None` for the first of its thread. Messages with the
    /// same parent are branches: an edit, or another answer to the same question.
    pub parent_id: Option<MessageId>,
    pub run_id: Option<RunId>,
    pub role: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    pub created_at: u64,
}

/// A run of a thread, for drawing the thread: which message it answers, and how it went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadRunRow {
    pub id: RunId,
    pub user_message_id: MessageId,
    pub status: RunStatus,
    pub created_at: u64,
}

/// The messages from the first of the thread to `last`, in order, following parents.
/// Empty when `last` is not among `messages`.
pub fn branch_to(messages: &[MessageRow], last: MessageId) -> Vec<&MessageRow> {
    let by_id: std::collections::HashMap<MessageId, &MessageRow> = messages.iter().map(|m| (m.id, m)).collect();
    let mut path = Vec::new();
    let mut next = Some(last);
    while let Some(id) = next {
        // A cycle cannot be written (a parent always exists before its child); bound it anyway.
        let Some(m) = by_id.get(&id).filter(|_| path.len() < messages.len()) else { break };
        path.push(*m);
        next = m.parent_id;
    }
    path.reverse();
    path
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRow {
    pub id: RunId,
    pub thread_id: ThreadId,
    pub user_message_id: MessageId,
    pub status: RunStatus,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The highest `seq` persisted for this run.
    pub last_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentResultRow {
    pub agent: String,
    pub output: serde_json::Value,
    pub duration_ms: u64,
}

/// A thread title from the first message: its first line, whitespace collapsed, shortened.
pub fn title_from(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("New chat");
    let collapsed: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= TITLE_CHARS {
        collapsed
    } else {
        let cut: String = collapsed.chars().take(TITLE_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

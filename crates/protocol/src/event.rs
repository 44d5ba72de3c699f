//! Run events: everything a run emits, in order, each with a per-run `seq` (1, 2, 3 …).
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{MessageId, RunId, ThreadId};

/// The agents of the pipeline, in the order the supervisor runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentName {
    Supervisor,
    Triage,
    Data,
    Optimization,
    Report,
}

impl AgentName {
    pub const SUB_AGENTS: [AgentName; 4] = [Self::Triage, Self::Data, Self::Optimization, Self::Report];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supervisor => "supervisor",
            Self::Triage => "triage",
            Self::Data => "data",
            Self::Optimization => "optimization",
            Self::Report => "report",
        }
    }
}

/// One event of a run as sent on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    #[serde(flatten)]
    pub kind: EventKind,
    pub run_id: RunId,
    pub thread_id: ThreadId,
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

/// What happened. Exactly one terminal kind ends every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    AgentStarted {
        agent: AgentName,
    },
    AgentThinking {
        agent: AgentName,
        text: String,
    },
    ToolExecuting {
        agent: AgentName,
        tool: String,
        tool_call_id: String,
        args: Value,
    },
    ToolCompleted {
        agent: AgentName,
        tool: String,
        tool_call_id: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        duration_ms: u64,
        /// The same duration in microseconds: most steps take well under a millisecond.
        #[serde(default)]
        duration_us: u64,
    },
    AgentCompleted {
        agent: AgentName,
        summary: String,
        duration_ms: u64,
        #[serde(default)]
        duration_us: u64,
    },
    ResponseDelta {
        message_id: MessageId,
        text: String,
    },
    FinalResponse {
        message_id: MessageId,
        text: String,
        /// Questions that go on from this answer, phrased to be asked as they are (the
        /// chat page offers them as buttons); absent when there are none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<String>,
    },
    RunFailed {
        code: String,
        message: String,
    },
    RunCancelled {},
    RunTimedOut {
        partial_text: String,
    },
    /// The server stopped (shutdown past its grace period, or a crash) before the run
    /// could finish; `partial_text` is what had been written so far.
    RunInterrupted {
        partial_text: String,
    },
}

impl EventKind {
    /// True for the kinds that end a run; exactly one of them is a run's last event.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::FinalResponse { .. }
                | Self::RunFailed { .. }
                | Self::RunCancelled {}
                | Self::RunTimedOut { .. }
                | Self::RunInterrupted { .. }
        )
    }

    /// The wire name of this kind (the `type` field).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::AgentStarted { .. } => "agent_started",
            Self::AgentThinking { .. } => "agent_thinking",
            Self::ToolExecuting { .. } => "tool_executing",
            Self::ToolCompleted { .. } => "tool_completed",
            Self::AgentCompleted { .. } => "agent_completed",
            Self::ResponseDelta { .. } => "response_delta",
            Self::FinalResponse { .. } => "final_response",
            Self::RunFailed { .. } => "run_failed",
            Self::RunCancelled {} => "run_cancelled",
            Self::RunTimedOut { .. } => "run_timed_out",
            Self::RunInterrupted { .. } => "run_interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serializes_flat_with_type_first() {
        let ev = RunEvent {
            kind: EventKind::AgentStarted { agent: AgentName::Supervisor },
            run_id: RunId::new(),
            thread_id: ThreadId::new(),
            seq: 1,
            ts: 5,
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert!(s.starts_with(r#"{"type":"agent_started","agent":"supervisor","run_id":"#), "{s}");
        let back: RunEvent = serde_json::from_str(&s).unwrap();
        assert_eq!(back, ev);
        let c = serde_json::to_string(&EventKind::RunCancelled {}).unwrap();
        assert_eq!(c, r#"{"type":"run_cancelled"}"#);
    }

    fn one_of_each_kind() -> Vec<EventKind> {
        let agent = AgentName::Data;
        let text = String::from("t");
        vec![
            EventKind::AgentStarted { agent },
            EventKind::AgentThinking { agent, text: text.clone() },
            EventKind::ToolExecuting { agent, tool: "q".into(), tool_call_id: "c".into(), args: Value::Null },
            EventKind::ToolCompleted {
                agent,
                tool: "q".into(),
                tool_call_id: "c".into(),
                ok: true,
                result: None,
                error: None,
                duration_ms: 1,
                duration_us: 1_000,
            },
            EventKind::AgentCompleted { agent, summary: text.clone(), duration_ms: 1, duration_us: 1_000 },
            EventKind::ResponseDelta { message_id: MessageId::new(), text: text.clone() },
            EventKind::FinalResponse { message_id: MessageId::new(), text: text.clone(), suggestions: Vec::new() },
            EventKind::RunFailed { code: "x".into(), message: text.clone() },
            EventKind::RunCancelled {},
            EventKind::RunTimedOut { partial_text: text.clone() },
            EventKind::RunInterrupted { partial_text: text },
        ]
    }

    #[test]
    fn type_name_is_the_wire_type() {
        for kind in one_of_each_kind() {
            let wire = serde_json::to_value(&kind).unwrap();
            assert_eq!(wire["type"], kind.type_name(), "{kind:?}");
        }
    }

    #[test]
    fn only_the_final_response_and_the_four_endings_are_terminal() {
        let terminal: Vec<&str> = one_of_each_kind().iter().filter(|k| k.is_terminal()).map(|k| k.type_name()).collect();
        assert_eq!(terminal, ["final_response", "run_failed", "run_cancelled", "run_timed_out", "run_interrupted"]);
    }

    #[test]
    fn agent_names_are_their_wire_names() {
        let all = [AgentName::Supervisor, AgentName::Triage, AgentName::Data, AgentName::Optimization, AgentName::Report];
        let names: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, ["supervisor", "triage", "data", "optimization", "report"]);
        for a in all {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }
}

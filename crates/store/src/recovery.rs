//! Crash recovery, the same for every backend: what a run that never finished left in
//! its events, and the writes that end it as `interrupted`.
use std::collections::HashMap;

use apex_protocol::{AgentName, EventKind, MessageId, RunEvent, RunId, ThreadId, UserId};

use crate::model::{RunFinish, RunStatus, Write, INTERRUPTED};
use crate::rows::{parse_id, Orphan, OrphanEvent};
use crate::StoreResult;

/// The runs a lost instance left open and the writes that end them, from the runs and all
/// their stored events (in any order): the same for every backend, which only selects the
/// rows and applies the writes in one transaction.
pub(crate) fn interrupt_orphans(
    orphans: Vec<Orphan>,
    events: Vec<OrphanEvent>,
    now: u64,
) -> StoreResult<(Vec<RunId>, Vec<Write>)> {
    let mut by_run: HashMap<String, Vec<OrphanEvent>> = HashMap::with_capacity(orphans.len());
    for event in events {
        by_run.entry(event.run_id.clone()).or_default().push(event);
    }
    let mut interrupted = Vec::with_capacity(orphans.len());
    let mut writes = Vec::new();
    for orphan in orphans {
        let run_id: RunId = parse_id(&orphan.id)?;
        let thread_id: ThreadId = parse_id(&orphan.thread_id)?;
        let mut events = by_run.remove(&orphan.id).unwrap_or_default();
        events.sort_by_key(OrphanEvent::seq);
        let events = events.into_iter().map(|e| (e.seq(), e.into_payload()));
        writes.extend(interrupt_writes(run_id, UserId::from(orphan.user_id), thread_id, events, now));
        interrupted.push(run_id);
    }
    Ok((interrupted, writes))
}

/// The writes that close a run a crash (or a lost instance) left open: a failed
/// `tool_completed` for every tool call that never completed, then `run_interrupted`
/// past anything a client saw, and the run's final state with its partial answer.
/// `events` are the run's persisted `(seq, payload)` in order.
pub fn interrupt_writes(
    run_id: RunId,
    user_id: UserId,
    thread_id: ThreadId,
    events: impl IntoIterator<Item = (u64, String)>,
    now: u64,
) -> Vec<Write> {
    let state = PersistedState::read(events);
    let mut seq = state.last_seq;
    let mut event = |kind: EventKind| {
        seq += 1;
        let e = RunEvent { kind, run_id, thread_id, seq, ts: now };
        let json = serde_json::to_string(&e).expect("run events always serialize").into();
        Write::Event { run_id, seq, kind: e.kind.type_name(), json }
    };
    let mut writes: Vec<Write> = state
        .open_calls
        .into_iter()
        .map(|(agent, tool, tool_call_id)| {
            event(EventKind::ToolCompleted {
                agent,
                tool,
                tool_call_id,
                ok: false,
                result: None,
                error: Some("the server stopped before the tool finished".into()),
                duration_ms: 0,
                duration_us: 0,
            })
        })
        .collect();
    writes.push(event(EventKind::RunInterrupted { partial_text: state.partial.clone() }));
    writes.push(Write::Finish(RunFinish {
        run_id,
        user_id,
        thread_id,
        status: RunStatus::Interrupted,
        at_ms: now,
        error: Some(INTERRUPTED.clone()),
        message_id: state.message_id.unwrap_or_default(),
        text: state.partial,
    }));
    writes
}

/// What a crash left of a run: its last persisted seq, the answer streamed so far (and the
/// message id the deltas used), and the tool calls that never completed.
struct PersistedState {
    last_seq: u64,
    partial: String,
    message_id: Option<MessageId>,
    open_calls: Vec<(AgentName, String, String)>,
}

impl PersistedState {
    fn read(events: impl IntoIterator<Item = (u64, String)>) -> Self {
        let mut state = Self { last_seq: 0, partial: String::new(), message_id: None, open_calls: Vec::new() };
        for (seq, payload) in events {
            state.last_seq = seq;
            let Ok(event) = serde_json::from_str::<RunEvent>(&payload) else { continue };
            match event.kind {
                EventKind::ResponseDelta { message_id, text } => {
                    state.partial.push_str(&text);
                    state.message_id = Some(message_id);
                }
                EventKind::ToolExecuting { agent, tool, tool_call_id, .. } => state.open_calls.push((agent, tool, tool_call_id)),
                EventKind::ToolCompleted { tool_call_id, .. } => state.open_calls.retain(|c| c.2 != tool_call_id),
                _ => {}
            }
        }
        state
    }
}

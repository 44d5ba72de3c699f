//! Frames the server sends that are not run events.
use serde::{Deserialize, Serialize};

use crate::codes::ErrorCode;
use crate::ids::{ConnectionId, MessageId, RunId, ThreadId};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Always the first frame of a connection.
    ConnectionReady {
        user_id: String,
        connection_id: ConnectionId,
        demo: bool,
        /// In demo mode: a signed token for this identity, to keep it on reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        protocol: String,
    },
    Pong,
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<RunId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_message_id: Option<String>,
    },
    /// The user message is persisted and its run has started; its events follow.
    MessageAccepted {
        run_id: RunId,
        thread_id: ThreadId,
        message_id: MessageId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_message_id: Option<String>,
    },
    /// The server is stopping: runs in progress get `grace_ms` to finish, then the socket
    /// closes with 1012. Reconnect and `resume`.
    ServerShutdown {
        grace_ms: u64,
    },
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error { code, message: message.into(), run_id: None, client_message_id: None }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_frame_carries_its_code_and_message_and_nothing_else() {
        let frame = ServerFrame::error(ErrorCode::ThreadBusy, "wait for the run to end");
        assert_eq!(frame.to_json(), r#"{"type":"error","code":"thread_busy","message":"wait for the run to end"}"#);
    }

    #[test]
    fn frames_serialize_tagged_by_type_and_read_back() {
        let frames = [
            ServerFrame::Pong,
            ServerFrame::ServerShutdown { grace_ms: 250 },
            ServerFrame::MessageAccepted {
                run_id: RunId::new(),
                thread_id: ThreadId::new(),
                message_id: MessageId::new(),
                client_message_id: Some("c-1".into()),
            },
        ];
        assert_eq!(frames[0].to_json(), r#"{"type":"pong"}"#);
        assert_eq!(frames[1].to_json(), r#"{"type":"server_shutdown","grace_ms":250}"#);
        for f in frames {
            let back: ServerFrame = serde_json::from_str(&f.to_json()).unwrap();
            assert_eq!(back, f);
        }
    }
}

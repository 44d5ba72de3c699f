//! Stable error codes (in `error` frames and REST error bodies) and WebSocket close codes.
use serde::{Deserialize, Serialize};

/// The `code` of an `error` frame. Clients may branch on these; they never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON, or not a JSON object.
    InvalidJson,
    /// The text frame is larger than the configured limit (default 8192 bytes).
    MessageTooLarge,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// `type` names no known client frame.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type or an invalid value.
    InvalidField,
    /// The client sends faster than its allowance; retry later.
    RateLimited,
    /// The run or thread does not exist for this user.
    NotFound,
    /// The thread already has an active run; wait for it to end or stop it.
    ThreadBusy,
    /// The server is shutting down and accepts no new runs.
    ShuttingDown,
    /// Storage is failing (e.g. the disk is full): nothing new can be saved, so nothing
    /// new is accepted. Retryable once storage recovers (`/api/health` says when).
    StorageUnavailable,
    /// The user already has as many runs in flight as allowed; wait for one to end.
    TooManyRuns,
    /// The connection's organization (`?org=` at the upgrade) no longer counts the user as
    /// a member: reconnect for another one.
    NotAMember,
    /// A server-side fault; the request may be retried.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::MessageTooLarge => "message_too_large",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::UnknownType => "unknown_type",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::RateLimited => "rate_limited",
            Self::NotFound => "not_found",
            Self::ThreadBusy => "thread_busy",
            Self::ShuttingDown => "shutting_down",
            Self::StorageUnavailable => "storage_unavailable",
            Self::TooManyRuns => "too_many_runs",
            Self::NotAMember => "not_a_member",
            Self::Internal => "internal",
        }
    }
}

/// WebSocket close codes Apex uses. The server closes only for a reason the client can act
/// on; 1011 (internal error) is never sent for anything a client did.
pub mod close {
    /// Normal closure (the client asked, or the server is done).
    pub const NORMAL: u16 = 1000;
    /// The server is going away without restart semantics.
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol violation by the peer (bad opcode, masking, fragmentation).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation, e.g. the token expired during the connection, a refused Origin,
    /// or a flood of control frames.
    pub const POLICY: u16 = 1008;
    /// A frame exceeded the transport limit (far above the 8 KiB message limit).
    pub const TOO_BIG: u16 = 1009;
    /// Service restart: sent after `server_shutdown`; reconnect and `resume`.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later: overload, connection cap, or a consumer too slow to keep up.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The peer stopped answering pings.
    pub const PING_TIMEOUT: u16 = 4000;
    /// The sign-in session of the connection ended: signed out (here or in another tab),
    /// revoked, or its account disabled or given a new password. Sign in again; do not
    /// reconnect with the same token.
    pub const SESSION_ENDED: u16 = 4001;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_reads_as_its_wire_name() {
        let all = [
            (ErrorCode::InvalidJson, "invalid_json"),
            (ErrorCode::MessageTooLarge, "message_too_large"),
            (ErrorCode::BinaryNotSupported, "binary_not_supported"),
            (ErrorCode::UnknownType, "unknown_type"),
            (ErrorCode::MissingField, "missing_field"),
            (ErrorCode::InvalidField, "invalid_field"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::ThreadBusy, "thread_busy"),
            (ErrorCode::ShuttingDown, "shutting_down"),
            (ErrorCode::StorageUnavailable, "storage_unavailable"),
            (ErrorCode::TooManyRuns, "too_many_runs"),
            (ErrorCode::Internal, "internal"),
        ];
        for (code, name) in all {
            assert_eq!(code.as_str(), name);
            assert_eq!(serde_json::to_value(code).unwrap(), name, "as_str and the JSON form agree");
        }
    }
}

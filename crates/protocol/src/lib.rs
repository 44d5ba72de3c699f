//! The Apex wire protocol (v1), in one place.
//!
//! Everything that crosses the WebSocket is defined here: the frames a client may send
//! ([`client`]), the run events and server frames it receives ([`event`], [`server`]), and
//! the stable error and close codes ([`codes`]). Other transports map these same types.
#![forbid(unsafe_code)]

pub mod client;
pub mod codes;
pub mod event;
pub mod ids;
pub mod server;

pub use client::{parse_client_frame, Branch, ClientError, ClientFrame, UserMessage};
pub use codes::{close, ErrorCode};
pub use event::{AgentName, EventKind, RunEvent};
pub use ids::{ConnectionId, MessageId, OrgId, RunId, ThreadId, UserId, ORG_ID_PREFIX};
pub use server::ServerFrame;

/// The WebSocket subprotocol spoken by this version.
pub const SUBPROTOCOL: &str = "apex.v1";
/// Prefix of the subprotocol that carries a token from browsers (`jwt.<token>`).
pub const JWT_SUBPROTOCOL_PREFIX: &str = "jwt.";
/// Prefix of the user ids that demo mode gives anonymous clients
/// (`demo-user-<unix ms>-<8 hex digits>`).
pub const DEMO_USER_PREFIX: &str = "demo-user-";
/// Default upper bound, in bytes, of one client text frame.
pub const DEFAULT_MAX_CLIENT_FRAME: usize = 8192;

/// Milliseconds since the Unix epoch, the unit of every `ts` on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_milliseconds_since_the_epoch() {
        // 2023-11-14 in ms: a clock in seconds, or a constant, would fall far below.
        let before = now_ms();
        assert!(before > 1_700_000_000_000, "{before}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(now_ms() >= before + 5);
    }
}

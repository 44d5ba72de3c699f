//! Load and readiness: `apex bench` (the golden path at N users, sweeps, capacity, soak,
//! peers and deployments compared in the same run) and `apex readiness` (a live
//! deployment's scorecard), both driving real servers over the WebSocket client.
pub mod bench;
pub mod readiness;

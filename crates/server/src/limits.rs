//! Allowances per user, shared by all of the user's connections on this instance: how many
//! WebSockets they may hold, and how many frames per second they may send in all (each
//! connection also has its own allowance, in the session).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct UserLimits {
    max_connections: usize,
    rate: u32,
    users: Mutex<HashMap<Arc<str>, UserEntry>>,
}

struct UserEntry {
    connections: usize,
    frames: TokenBucket,
}

impl UserLimits {
    pub fn new(max_connections: usize, rate: u32) -> Self {
        Self { max_connections, rate, users: Mutex::default() }
    }

    /// Counts a connection of `user`, or `None` when the user already holds the maximum.
    pub fn connect(self: &Arc<Self>, user: &Arc<str>) -> Option<UserConnection> {
        let mut users = self.users.lock().expect("user limits lock");
        let entry =
            users.entry(user.clone()).or_insert_with(|| UserEntry { connections: 0, frames: TokenBucket::new(self.rate) });
        if entry.connections >= self.max_connections {
            return None;
        }
        entry.connections += 1;
        Some(UserConnection { limits: self.clone(), user: user.clone() })
    }

    /// Takes one frame from the user's allowance.
    pub fn allow_frame(&self, user: &str) -> bool {
        let mut users = self.users.lock().expect("user limits lock");
        users.get_mut(user).is_none_or(|entry| entry.frames.allow())
    }
}

/// One open connection of a user; released on drop.
pub struct UserConnection {
    limits: Arc<UserLimits>,
    user: Arc<str>,
}

impl Drop for UserConnection {
    fn drop(&mut self) {
        let mut users = self.limits.users.lock().expect("user limits lock");
        if let Some(entry) = users.get_mut(&self.user) {
            entry.connections -= 1;
            if entry.connections == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// A frame allowance: `rate` per second, bursts of twice that.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32) -> Self {
        Self::with(rate as f64, rate as f64 * 2.0)
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
    }

    /// `rate` per second, at most `burst` at once.
    pub fn with(rate: f64, burst: f64) -> Self {
        Self { rate, burst, tokens: burst, at: Instant::now() }
    }

    pub fn allow(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Sign-in attempts per address: `per_minute`, in bursts of as many. At most [`ADDRESSES`]
/// addresses are remembered; past that, the full buckets (addresses that have not tried
/// lately) are forgotten, then every one (an attacker with that many addresses is not
/// slowed by a per-address limit anyway; the per-account lockout still holds).
pub struct AttemptLimits {
    per_minute: u32,
    buckets: Mutex<HashMap<std::net::IpAddr, TokenBucket>>,
}

const ADDRESSES: usize = 10_000;

impl AttemptLimits {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::default() }
    }

    pub fn allow(&self, ip: std::net::IpAddr) -> bool {
        let mut buckets = self.buckets.lock().expect("attempt limits lock");
        if buckets.len() >= ADDRESSES && !buckets.contains_key(&ip) {
            let burst = self.per_minute as f64;
            buckets.retain(|_, b| {
                b.refill();
                b.tokens < burst
            });
            if buckets.len() >= ADDRESSES {
                buckets.clear();
            }
        }
        let per_minute = self.per_minute as f64;
        buckets.entry(ip).or_insert_with(|| TokenBucket::with(per_minute / 60.0, per_minute)).allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_attempts_are_limited_per_address() {
        let limits = AttemptLimits::new(5);
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        assert_eq!((0..20).filter(|_| limits.allow(a)).count(), 5);
        assert!(limits.allow([10, 0, 0, 2].into()), "another address has its own allowance");
    }

    #[test]
    fn a_users_connections_share_one_allowance_and_a_cap() {
        let limits = Arc::new(UserLimits::new(2, 5));
        let alice: Arc<str> = Arc::from("alice");
        let first = limits.connect(&alice).expect("first");
        let _second = limits.connect(&alice).expect("second");
        assert!(limits.connect(&alice).is_none(), "a third connection is over the cap");
        assert!(limits.connect(&Arc::from("bob")).is_some(), "another user is not affected");
        let allowed = (0..30).filter(|_| limits.allow_frame("alice")).count();
        assert_eq!(allowed, 10, "a burst of twice the rate, for both connections together");
        drop(first);
        assert!(limits.connect(&alice).is_some(), "a slot frees when a connection closes");
    }
}

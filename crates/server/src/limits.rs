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
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32) -> Self {
        Self { rate: rate as f64, tokens: rate as f64 * 2.0, at: Instant::now() }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

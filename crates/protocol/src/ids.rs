//! Identifier newtypes. All are UUIDs (v7, so they sort by creation time) on the wire as
//! strings; a malformed id never gets past the parser.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A conversation thread owned by one user.
    ThreadId
);
id_type!(
    /// One execution of the agent pipeline for one user message.
    RunId
);
id_type!(
    /// A persisted message (user or assistant).
    MessageId
);
id_type!(
    /// One WebSocket connection.
    ConnectionId
);

/// Who a request is for: the subject of the token that authenticated it (a local account,
/// an identity provider's `sub`, or a demo identity). Every run, cache entry and store
/// query is scoped to one. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(std::sync::Arc<str>);

impl UserId {
    pub fn new(id: impl Into<std::sync::Arc<str>>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for UserId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl From<String> for UserId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How a shared organization's id begins (`org:` and a UUID); no user id may.
pub const ORG_ID_PREFIX: &str = "org:";

/// Whose usage data: a shared organization's (`org:…`), or a user's own — every user has a
/// personal space whose id is the user id. Usage, its imports and every analysis of it are
/// scoped to one; threads and runs stay the user's. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(std::sync::Arc<str>);

impl OrgId {
    /// The user's own space.
    pub fn personal(user: &UserId) -> Self {
        Self(user.0.clone())
    }

    /// A new shared organization's id.
    pub fn new_shared() -> Self {
        Self(format!("{ORG_ID_PREFIX}{}", Uuid::now_v7().hyphenated()).into())
    }

    /// An id as stored or sent: a shared organization's when it has the prefix.
    pub fn new(id: impl Into<std::sync::Arc<str>>) -> Self {
        Self(id.into())
    }

    /// A shared organization (not someone's personal space).
    pub fn is_shared(&self) -> bool {
        self.0.starts_with(ORG_ID_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&UserId> for OrgId {
    fn from(user: &UserId) -> Self {
        Self::personal(user)
    }
}

impl AsRef<str> for OrgId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for OrgId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl From<String> for OrgId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

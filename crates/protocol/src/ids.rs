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

/// A string id shared cheaply (an `Arc<str>`): its constructor, `as_str`, `Display`,
/// `Debug` as the quoted string, `From<&str>`/`From<String>`, `AsRef<str>`, and serde as
/// the bare string.
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// An id as stored or sent.
            pub fn new(id: impl Into<std::sync::Arc<str>>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id.into())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Who a request is for: the subject of the token that authenticated it (a local
    /// account, an identity provider's `sub`, or a demo identity). Every run, cache entry
    /// and store query is scoped to one. Cheap to clone.
    UserId
);

/// How a shared organization's id begins (`org:` and a UUID); no user id may.
pub const ORG_ID_PREFIX: &str = "org:";

string_id!(
    /// Whose usage data: a shared organization's (`org:…`), or a user's own — every user
    /// has a personal space whose id is the user id. Usage, its imports and every analysis
    /// of it are scoped to one; threads and runs stay the user's (a thread may be shared
    /// with an organization for its members to read). Cheap to clone.
    OrgId
);

impl OrgId {
    /// The user's own space.
    pub fn personal(user: &UserId) -> Self {
        Self(user.0.clone())
    }

    /// A new shared organization's id.
    pub fn new_shared() -> Self {
        Self(format!("{ORG_ID_PREFIX}{}", Uuid::now_v7().hyphenated()).into())
    }

    /// A shared organization (not someone's personal space).
    pub fn is_shared(&self) -> bool {
        self.0.starts_with(ORG_ID_PREFIX)
    }
}

impl From<&UserId> for OrgId {
    fn from(user: &UserId) -> Self {
        Self::personal(user)
    }
}

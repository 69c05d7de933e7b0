//! Users: identity, profile, permissions and the session epoch that ends old tokens.

use std::fmt;

use uuid::Uuid;

use crate::{ScopeSet, SessionEpoch, Timestamp, Username};

/// A user's stable identifier, the `sub` claim of their tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    /// Wraps an identifier produced by the id generator or read from storage.
    #[must_use]
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(formatter)
    }
}

/// The descriptive, non-security part of a user record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserProfile {
    /// Contact address, if given.
    pub email: Option<String>,
    /// Display name, if given.
    pub full_name: Option<String>,
}

/// A stored user, without their password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable identifier.
    pub id: UserId,
    /// Unique, normalised login name.
    pub username: Username,
    /// Email and display name.
    pub profile: UserProfile,
    /// A disabled user can neither log in nor use tokens issued earlier.
    pub disabled: bool,
    /// The scopes this user may be granted.
    pub scopes: ScopeSet,
    /// When the user was created.
    pub created_at: Timestamp,
    /// Bumped whenever the user's credentials change; tokens carry the epoch they were
    /// issued under and die when it moves on.
    pub session_epoch: SessionEpoch,
}

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
///
/// Invariant (when built with [`UserProfile::new`]): the email, if any, is at most 254
/// bytes with one `@` between non-empty parts and no whitespace or control characters;
/// the full name, if any, is 1 to 200 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserProfile {
    /// Contact address, if given.
    pub email: Option<String>,
    /// Display name, if given.
    pub full_name: Option<String>,
}

/// Why a profile field was refused; the variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Not a plausible email address.
    #[error("email must be an address like name@example.com, at most 254 characters")]
    Email,
    /// Empty, too long or containing control characters.
    #[error("full_name must be 1 to 200 characters without control characters")]
    FullName,
}

impl UserProfile {
    /// The longest email accepted (RFC 5321 §4.5.3.1.3 path limit).
    pub const MAX_EMAIL_BYTES: usize = 254;
    /// The longest full name accepted, in characters.
    pub const MAX_FULL_NAME_CHARS: usize = 200;

    /// Validates both fields.
    ///
    /// # Errors
    ///
    /// [`ProfileError`] naming the first invalid field.
    pub fn new(email: Option<String>, full_name: Option<String>) -> Result<Self, ProfileError> {
        if let Some(email) = &email {
            Self::check_email(email)?;
        }
        if let Some(full_name) = &full_name {
            Self::check_full_name(full_name)?;
        }
        Ok(Self { email, full_name })
    }

    /// Checks one email address.
    ///
    /// # Errors
    ///
    /// [`ProfileError::Email`].
    pub fn check_email(email: &str) -> Result<(), ProfileError> {
        // Deliberately shallow: the only real check of an address is sending mail to it.
        let plausible = email.len() <= Self::MAX_EMAIL_BYTES
            && !email
                .chars()
                .any(|character| character.is_whitespace() || character.is_control())
            && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if plausible {
            Ok(())
        } else {
            Err(ProfileError::Email)
        }
    }

    /// Checks one display name.
    ///
    /// # Errors
    ///
    /// [`ProfileError::FullName`].
    pub fn check_full_name(full_name: &str) -> Result<(), ProfileError> {
        let length = full_name.chars().count();
        let valid = (1..=Self::MAX_FULL_NAME_CHARS).contains(&length)
            && !full_name.chars().any(char::is_control);
        if valid {
            Ok(())
        } else {
            Err(ProfileError::FullName)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_are_accepted() {
        for email in ["a@b", "alice@example.com", "a.b+tag@sub.example.org"] {
            assert_eq!(UserProfile::check_email(email), Ok(()), "{email}");
        }
    }

    #[test]
    fn implausible_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for email in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a@b@c",
            "al ice@example.com",
            "a\0@b",
            long.as_str(),
        ] {
            assert_eq!(
                UserProfile::check_email(email),
                Err(ProfileError::Email),
                "{email:?}"
            );
        }
    }

    #[test]
    fn full_names_are_bounded_and_printable() {
        assert_eq!(UserProfile::check_full_name("Zoë O'Brien-Łukasz"), Ok(()));
        assert_eq!(
            UserProfile::check_full_name(""),
            Err(ProfileError::FullName)
        );
        assert_eq!(
            UserProfile::check_full_name(&"x".repeat(201)),
            Err(ProfileError::FullName)
        );
        assert_eq!(
            UserProfile::check_full_name("bell\u{7}"),
            Err(ProfileError::FullName)
        );
    }

    #[test]
    fn new_checks_both_fields() {
        assert_eq!(
            UserProfile::new(Some("bad".into()), None),
            Err(ProfileError::Email)
        );
        assert_eq!(
            UserProfile::new(None, Some(String::new())),
            Err(ProfileError::FullName)
        );
        assert!(UserProfile::new(None, None).is_ok());
    }
}

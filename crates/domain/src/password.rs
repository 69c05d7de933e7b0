//! Passwords: the secret itself, its stored hash, and the policy a new password must meet.

use std::fmt;
use std::sync::LazyLock;

use crate::Username;

/// Common and breached passwords, one per line, lower-case and sorted, embedded in the binary.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// A password as the user typed it.
///
/// Invariant: none; the policy is checked separately by [`PasswordPolicy::check`] because a
/// login must verify even a password that today's policy would refuse.
/// `Debug` is redacted and there is no `Display`, so a password cannot reach a log by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    #[must_use]
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret, for the hasher and the policy; never for logs or responses.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string format, as produced and understood by the hasher adapter.
///
/// `Debug` is redacted and there is no `Display`: a hash never leaves the server.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string read from storage or produced by the hasher.
    #[must_use]
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storage and verification only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("PasswordHash(<redacted>)")
    }
}

/// The rule a new password broke. Messages name the rule and are safe to show the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleViolation {
    /// Fewer characters than the configured minimum.
    #[error("password must be at least {min} characters long")]
    TooShort {
        /// The configured minimum, in characters.
        min: usize,
    },
    /// More than [`PasswordPolicy::MAX_BYTES`] bytes of UTF-8.
    #[error("password must be at most 1024 bytes long")]
    TooLong,
    /// Equal to the username or contains it.
    #[error("password must not contain the username")]
    ContainsUsername,
    /// On the shipped list of common and breached passwords.
    #[error("password is too common; choose one that is not on lists of breached passwords")]
    Common,
}

/// What a new password must satisfy (NIST SP 800-63B-4 §3.1.1.2).
///
/// Invariant: `min_length` is at least [`PasswordPolicy::FLOOR`] characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_length: usize,
}

impl PasswordPolicy {
    /// The smallest minimum length an operator may configure.
    pub const FLOOR: usize = 8;
    /// The SPEC default minimum length (single-factor authentication).
    pub const DEFAULT_MIN_LENGTH: usize = 15;
    /// The most bytes a password may have; also bounds the cost of hashing hostile input.
    pub const MAX_BYTES: usize = 1024;

    /// A policy with the given minimum length, or `None` below [`Self::FLOOR`].
    #[must_use]
    pub fn new(min_length: usize) -> Option<Self> {
        (min_length >= Self::FLOOR).then_some(Self { min_length })
    }

    /// The configured minimum length, in characters.
    #[must_use]
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// Checks a password that `username` wants to set.
    ///
    /// # Errors
    ///
    /// The first [`PasswordRuleViolation`] found, in the order: too long, too short,
    /// contains the username, common.
    pub fn check(
        &self,
        password: &Password,
        username: &Username,
    ) -> Result<(), PasswordRuleViolation> {
        let secret = password.expose();
        if secret.len() > Self::MAX_BYTES {
            return Err(PasswordRuleViolation::TooLong);
        }
        if secret.chars().count() < self.min_length {
            return Err(PasswordRuleViolation::TooShort {
                min: self.min_length,
            });
        }
        let lowered = secret.to_lowercase();
        if lowered.contains(username.as_str()) {
            return Err(PasswordRuleViolation::ContainsUsername);
        }
        if is_common(&lowered) {
            return Err(PasswordRuleViolation::Common);
        }
        Ok(())
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: Self::DEFAULT_MIN_LENGTH,
        }
    }
}

/// The embedded list's lines, indexed once: slices into the static text, no copies.
static COMMON_INDEX: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS.lines().collect());

/// Whether the lower-cased password is on the embedded list (binary search, O(log n)).
fn is_common(lowered: &str) -> bool {
    COMMON_INDEX.binary_search(&lowered).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Username {
        Username::parse("alice").expect("valid")
    }

    fn check(secret: &str) -> Result<(), PasswordRuleViolation> {
        PasswordPolicy::default().check(&Password::new(secret.to_owned()), &alice())
    }

    #[test]
    fn the_embedded_list_is_sorted_lowercase_and_unique() {
        let lines: Vec<&str> = COMMON_PASSWORDS.lines().collect();
        assert!(
            lines.windows(2).all(|pair| pair[0] < pair[1]),
            "sort the list with LC_ALL=C sort -u"
        );
        assert!(
            lines
                .iter()
                .all(|line| *line == line.to_lowercase() && !line.is_empty())
        );
    }

    #[test]
    fn a_long_unusual_passphrase_is_accepted() {
        assert_eq!(check("correct horse battery staple"), Ok(()));
    }

    #[test]
    fn each_rule_is_named_when_broken() {
        assert_eq!(
            check("short"),
            Err(PasswordRuleViolation::TooShort { min: 15 })
        );
        assert_eq!(
            check(&"x".repeat(1025)),
            Err(PasswordRuleViolation::TooLong)
        );
        assert_eq!(
            check("my name is ALICE, hello there"),
            Err(PasswordRuleViolation::ContainsUsername)
        );
        assert_eq!(
            check("CorrectHorseBatteryStaple"),
            Err(PasswordRuleViolation::Common)
        );
    }

    #[test]
    fn length_counts_characters_but_the_cap_counts_bytes() {
        assert_eq!(check(&"é".repeat(15)), Ok(()));
        assert_eq!(check(&"é".repeat(513)), Err(PasswordRuleViolation::TooLong));
        assert_eq!(check(&"é".repeat(512)), Ok(()));
    }

    #[test]
    fn minimum_length_is_configurable_down_to_the_floor() {
        assert_eq!(PasswordPolicy::new(7), None);
        let policy = PasswordPolicy::new(8).expect("at the floor");

        assert_eq!(
            policy.check(&Password::new("zebra-kite".into()), &alice()),
            Ok(())
        );
        assert_eq!(
            policy.check(&Password::new("password".into()), &alice()),
            Err(PasswordRuleViolation::Common)
        );
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let rendered = format!(
            "{:?} {:?}",
            Password::new("hunter2hunter2".into()),
            PasswordHash::new("$argon2id$x".into())
        );

        assert!(!rendered.contains("hunter2"));
        assert!(!rendered.contains("argon2id"));
    }
}

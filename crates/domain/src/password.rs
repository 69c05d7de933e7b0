//! Passwords: the secret itself, its stored hash, and the policy a new password must meet.

use std::cmp::Ordering;
use std::fmt;

use zeroize::Zeroize as _;

use crate::Username;

/// Common and breached passwords, one per line, lower-case, at least
/// [`PasswordPolicy::FLOOR`] characters, sorted by bytes (`LC_ALL=C sort -u`), embedded in the
/// binary. `common_passwords.README.md` beside this file names the source and its licence and
/// shows how to regenerate the list.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// A password as the user typed it.
///
/// Invariant: none; the policy is checked separately by [`PasswordPolicy::check`] because a
/// login must verify even a password that today's policy would refuse.
/// `Debug` is redacted and there is no `Display`, so a password cannot reach a log by accident.
/// Its memory is wiped when it is dropped.
#[derive(Clone)]
pub struct Password(String);

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

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

/// Whether the lower-cased password is on the embedded list.
fn is_common(lowered: &str) -> bool {
    contains_line(COMMON_PASSWORDS, lowered)
}

/// Whether `needle` is one of the lines of `sorted_lines`, a newline-separated list sorted by
/// bytes.
///
/// A binary search over byte offsets of the text itself: each step finds the line around the
/// middle and compares it. Unlike an index of line slices, it needs no heap (an index of the
/// list would take about 600 KiB) and no start-up work, and it still costs O(log n) comparisons.
fn contains_line(sorted_lines: &str, needle: &str) -> bool {
    let text = sorted_lines.as_bytes();
    let needle = needle.as_bytes();
    // Invariant: `low` and `high` are line starts (or the end of the text), and if `needle` is
    // a line, it lies between them.
    let (mut low, mut high) = (0, text.len());
    while low < high {
        let middle = low + (high - low) / 2;
        let start = text[low..middle]
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(low, |offset| low + offset + 1);
        let end = text[start..high]
            .iter()
            .position(|byte| *byte == b'\n')
            .map_or(high, |offset| start + offset);
        match text[start..end].cmp(needle) {
            Ordering::Equal => return true,
            Ordering::Less => low = end + 1,
            Ordering::Greater => high = start,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn alice() -> Username {
        Username::parse("alice").expect("valid")
    }

    fn check(secret: &str) -> Result<(), PasswordRuleViolation> {
        PasswordPolicy::default().check(&Password::new(secret.to_owned()), &alice())
    }

    fn check_at_the_floor(secret: &str) -> Result<(), PasswordRuleViolation> {
        PasswordPolicy::new(PasswordPolicy::FLOOR)
            .expect("the floor is a valid minimum")
            .check(&Password::new(secret.to_owned()), &alice())
    }

    #[test]
    fn the_embedded_list_is_sorted_unique_lower_case_and_at_least_the_floor_long() {
        let lines: Vec<&str> = COMMON_PASSWORDS.split('\n').collect();

        assert_eq!(lines.last(), Some(&""), "the list ends with a newline");
        let entries = &lines[..lines.len() - 1];
        assert!(
            entries.windows(2).all(|pair| pair[0] < pair[1]),
            "sort the list with LC_ALL=C sort -u"
        );
        for entry in entries {
            assert_eq!(*entry, entry.to_lowercase(), "{entry:?} is not lower-case");
            assert_eq!(*entry, entry.trim(), "{entry:?} is not trimmed");
            assert!(
                entry.chars().count() >= PasswordPolicy::FLOOR,
                "{entry:?} is shorter than any policy allows"
            );
            assert!(!entry.contains('\r'), "{entry:?} has a carriage return");
        }
    }

    #[test]
    fn the_embedded_list_covers_tens_of_thousands_of_passwords() {
        let entries = COMMON_PASSWORDS.lines().count();

        assert!(entries > 30_000, "only {entries} entries");
    }

    #[test]
    fn every_entry_of_the_list_is_found() {
        let missed: Vec<&str> = COMMON_PASSWORDS
            .lines()
            .filter(|entry| !is_common(entry))
            .collect();

        assert_eq!(missed, Vec::<&str>::new());
    }

    #[test]
    fn the_search_finds_exact_lines_only() {
        let list = "apple\nbanana\ncherry\n";

        for line in ["apple", "banana", "cherry"] {
            assert!(contains_line(list, line), "{line}");
        }
        for absent in [
            "", "a", "appl", "apples", "b", "bananas", "cherry\n", "zebra", "\n",
        ] {
            assert!(!contains_line(list, absent), "{absent:?}");
        }
        assert!(contains_line("only", "only"), "no trailing newline");
        assert!(!contains_line("", "anything"));
    }

    proptest! {
        #[test]
        fn the_search_agrees_with_a_set_lookup(
            lines in proptest::collection::btree_set("[a-c]{1,4}", 0..40),
            probe in "[a-c]{0,5}",
            trailing_newline in any::<bool>(),
        ) {
            let mut text = lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
            if trailing_newline && !lines.is_empty() {
                text.push('\n');
            }

            prop_assert_eq!(contains_line(&text, &probe), lines.contains(&probe));
        }
    }

    #[test]
    fn well_known_common_passwords_are_refused() {
        for secret in [
            "password123",
            "qwertyuiop",
            "iloveyou1",
            "1qaz2wsx3edc",
            "football1",
            "correcthorsebatterystaple",
        ] {
            assert_eq!(
                check_at_the_floor(secret),
                Err(PasswordRuleViolation::Common),
                "{secret}"
            );
        }
    }

    #[test]
    fn the_list_is_matched_whatever_the_case() {
        for secret in ["Password123", "QWERTYUIOP", "iLoveYou1"] {
            assert_eq!(
                check_at_the_floor(secret),
                Err(PasswordRuleViolation::Common),
                "{secret}"
            );
        }
        assert_eq!(
            check("QwertyuiopAsdfghjkl"),
            Err(PasswordRuleViolation::Common),
            "also under the default minimum length"
        );
    }

    #[test]
    fn a_long_random_passphrase_is_accepted() {
        assert_eq!(check("tundra-violet-quasar-mosaic-71"), Ok(()));
        assert_eq!(check_at_the_floor("Zq7#vLp2xN"), Ok(()));
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

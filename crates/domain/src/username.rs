//! Usernames: the login name of a user, normalised so two spellings never coexist.

use std::fmt;

/// Why a string is not a username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Shorter than [`Username::MIN_LEN`] or longer than [`Username::MAX_LEN`].
    #[error("username must be 3 to 64 characters long")]
    Length,
    /// Contains a character outside `a-z`, `0-9`, `.`, `_` and `-`.
    #[error("username may contain only a-z, 0-9, '.', '_' and '-'")]
    Charset,
}

/// A username that passed [`Username::parse`].
///
/// Invariant: 3 to 64 bytes of `a-z`, `0-9`, `.`, `_` or `-`, already lower-cased,
/// so two spellings of the same name can never both be stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// The fewest characters a username may have.
    pub const MIN_LEN: usize = 3;
    /// The most characters a username may have.
    pub const MAX_LEN: usize = 64;

    /// Lower-cases `raw` (SPEC: usernames are case-insensitive) and validates it.
    ///
    /// # Errors
    ///
    /// - [`UsernameError::Length`] outside 3 to 64 characters.
    /// - [`UsernameError::Charset`] for any character outside `[a-z0-9._-]` after lower-casing.
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        // Checking the length first bounds the work done on hostile input.
        let length = raw.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&length) {
            return Err(UsernameError::Length);
        }
        // Only ASCII letters are case-folded: any other letter fails the charset check anyway,
        // and Unicode case folding could map a foreign character onto an ASCII one.
        let normalised = raw.to_ascii_lowercase();
        if !normalised.bytes().all(is_username_byte) {
            return Err(UsernameError::Charset);
        }
        Ok(Self(normalised))
    }

    /// The normalised name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_username_byte(byte: u8) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-')
}

impl fmt::Display for Username {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_lowercases_valid_names() {
        for (raw, expected) in [
            ("alice", "alice"),
            ("Alice", "alice"),
            ("ADMIN", "admin"),
            ("a.b_c-d", "a.b_c-d"),
            ("abc", "abc"),
            ("user123", "user123"),
        ] {
            assert_eq!(
                Username::parse(raw).map(|name| name.0),
                Ok(expected.to_owned()),
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_names_of_the_wrong_length() {
        for raw in ["", "a", "ab", &"a".repeat(65)] {
            assert_eq!(Username::parse(raw), Err(UsernameError::Length), "{raw}");
        }
        assert!(Username::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_characters_outside_the_charset() {
        for raw in [
            "al ice",
            "alice@example",
            "al'ice",
            "alice;--",
            "ålice",
            "al\0ce",
            "名前です",
            "İstanbul",
        ] {
            assert_eq!(Username::parse(raw), Err(UsernameError::Charset), "{raw:?}");
        }
    }

    #[test]
    fn sql_looking_names_are_just_invalid() {
        assert_eq!(Username::parse("x' OR '1'='1"), Err(UsernameError::Charset));
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_and_output_satisfies_the_invariant(raw in "\\PC{0,80}") {
            if let Ok(name) = Username::parse(&raw) {
                prop_assert!((3..=64).contains(&name.as_str().len()));
                prop_assert!(name.as_str().bytes().all(is_username_byte));
                prop_assert_eq!(Username::parse(name.as_str()), Ok(name.clone()));
            }
        }

        #[test]
        fn every_case_spelling_parses_to_the_same_name(raw in "[a-zA-Z0-9._-]{3,64}") {
            prop_assert_eq!(Username::parse(&raw), Username::parse(&raw.to_ascii_uppercase()));
        }
    }
}

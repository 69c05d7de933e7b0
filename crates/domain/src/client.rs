//! Client identifiers (RFC 6749 §2.2), copied into the token's `client_id` claim.

use std::fmt;

/// Why a string is not a client identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    /// Longer than [`ClientId::MAX_LEN`] bytes.
    #[error("client_id must be at most 128 characters long")]
    TooLong,
    /// Contains a character outside RFC 6749 Appendix A's VSCHAR (`%x20-7E`).
    #[error("client_id may contain only printable ASCII characters")]
    Charset,
}

/// A client identifier.
///
/// Invariant: 1 to 128 printable ASCII characters (RFC 6749 Appendix A.1 VSCHAR).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// The longest identifier accepted.
    pub const MAX_LEN: usize = 128;

    /// The identifier of a client that did not say who it is.
    #[must_use]
    pub fn default_client() -> Self {
        Self("default".to_owned())
    }

    /// Validates `raw`; the empty string means "no client id" and yields the default.
    ///
    /// # Errors
    ///
    /// [`ClientIdError::TooLong`] or [`ClientIdError::Charset`].
    pub fn parse(raw: &str) -> Result<Self, ClientIdError> {
        if raw.is_empty() {
            return Ok(Self::default_client());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ClientIdError::TooLong);
        }
        if !raw.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
            return Err(ClientIdError::Charset);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The identifier.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_the_default_client() {
        assert_eq!(ClientId::parse("").map(|id| id.0), Ok("default".to_owned()));
    }

    #[test]
    fn printable_ascii_up_to_128_is_accepted() {
        assert!(ClientId::parse("my app:v1 (web)").is_ok());
        assert!(ClientId::parse(&"c".repeat(128)).is_ok());
        assert_eq!(
            ClientId::parse(&"c".repeat(129)),
            Err(ClientIdError::TooLong)
        );
        assert_eq!(ClientId::parse("tab\there"), Err(ClientIdError::Charset));
        assert_eq!(ClientId::parse("ünï"), Err(ClientIdError::Charset));
    }
}

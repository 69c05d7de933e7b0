//! Opaque refresh tokens: random generation, keyed successor derivation, SHA-256 storage form.

use std::fmt;

use authgate_application::ports::{KeyMaterial, RefreshToken, RefreshTokenCodec, RefreshTokenHash};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::CryptoError;
use crate::random::{base64url, os_random_or_panic};

/// Domain separation for the successor HMAC, so the key can never be confused with a MAC
/// computed for another purpose.
const SUCCESSOR_LABEL: &[u8] = b"authgate-refresh-successor-v1";
/// Random bytes per token, and the shortest accepted successor key: 256 bits.
const TOKEN_BYTES: usize = 32;

/// A fresh 256-bit server secret, offered as the candidate in
/// `KeyStore::secret("refresh-successor-key", candidate)`.
///
/// # Panics
///
/// If the operating system's random number generator fails.
#[must_use]
pub fn new_secret() -> KeyMaterial {
    KeyMaterial(os_random_or_panic::<TOKEN_BYTES>().to_vec())
}

/// The [`RefreshTokenCodec`] port: OS-random tokens, HMAC-SHA256 successors, SHA-256 hashes.
///
/// Invariant: the successor key is at least 256 bits. Every instance must be built with the
/// same key (from the `KeyStore`), or concurrent refreshes on different instances disagree.
/// `Debug` is redacted.
#[derive(Clone)]
pub struct HmacRefreshTokenCodec {
    /// Keyed once; cloned per derivation, which is cheaper than re-keying.
    successor_mac: Hmac<Sha256>,
}

impl fmt::Debug for HmacRefreshTokenCodec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("HmacRefreshTokenCodec(<redacted>)")
    }
}

impl HmacRefreshTokenCodec {
    /// A codec deriving successors under `secret`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::WeakSecret`] if `secret` is shorter than 32 bytes: anyone who could
    /// guess it could compute the live successor of a stolen, already-rotated token.
    pub fn new(secret: KeyMaterial) -> Result<Self, CryptoError> {
        let weak = || CryptoError::WeakSecret {
            name: "refresh-token successor key",
            min_bytes: TOKEN_BYTES,
        };
        if secret.0.len() < TOKEN_BYTES {
            return Err(weak());
        }
        let successor_mac = Hmac::<Sha256>::new_from_slice(&secret.0).map_err(|_| weak())?;
        Ok(Self { successor_mac })
    }
}

impl RefreshTokenCodec for HmacRefreshTokenCodec {
    fn generate(&self) -> RefreshToken {
        RefreshToken::new(base64url(&os_random_or_panic::<TOKEN_BYTES>()))
    }

    fn successor(&self, parent: &RefreshToken) -> RefreshToken {
        let mac = self
            .successor_mac
            .clone()
            .chain_update(SUCCESSOR_LABEL)
            .chain_update(parent.expose().as_bytes());
        RefreshToken::new(base64url(&mac.finalize().into_bytes()))
    }

    fn hash(&self, token: &RefreshToken) -> RefreshTokenHash {
        RefreshTokenHash(Sha256::digest(token.expose().as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn codec(fill: u8) -> HmacRefreshTokenCodec {
        HmacRefreshTokenCodec::new(KeyMaterial(vec![fill; 32])).unwrap()
    }

    fn is_url_safe(token: &str) -> bool {
        token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    }

    #[test]
    fn generated_tokens_carry_256_random_bits_in_url_safe_characters() {
        let codec = codec(1);

        let tokens: Vec<RefreshToken> = (0..100).map(|_| codec.generate()).collect();

        let distinct: HashSet<&str> = tokens.iter().map(RefreshToken::expose).collect();
        assert_eq!(distinct.len(), 100);
        for token in &tokens {
            assert_eq!(token.expose().len(), 43);
            assert!(is_url_safe(token.expose()));
        }
    }

    #[test]
    fn the_successor_is_deterministic_url_safe_and_differs_from_its_parent() {
        let codec = codec(1);
        let parent = codec.generate();

        let first = codec.successor(&parent);
        let again = codec.successor(&parent);

        assert_eq!(first, again);
        assert_ne!(first, parent);
        assert_eq!(first.expose().len(), 43);
        assert!(is_url_safe(first.expose()));
        assert_ne!(codec.successor(&first), first);
    }

    #[test]
    fn the_successor_depends_on_the_key_and_matches_hmac_sha256() {
        let parent = RefreshToken::new("parent-token".into());
        let mut expected = Hmac::<Sha256>::new_from_slice(&[1; 32]).unwrap();
        expected.update(b"authgate-refresh-successor-v1parent-token");

        let under_one = codec(1).successor(&parent);
        let under_two = codec(2).successor(&parent);

        assert_ne!(under_one, under_two);
        assert_eq!(
            under_one.expose(),
            base64url(&expected.finalize().into_bytes())
        );
    }

    #[test]
    fn the_storage_hash_is_sha256_of_the_token_text() {
        let token = RefreshToken::new("abc".into());

        let hash = codec(1).hash(&token);

        // FIPS 180-2 Appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let actual: String = hash.0.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn a_successor_key_shorter_than_256_bits_is_refused() {
        let result = HmacRefreshTokenCodec::new(KeyMaterial(vec![1; 31]));

        assert!(matches!(
            result,
            Err(CryptoError::WeakSecret { min_bytes: 32, .. })
        ));
    }

    #[test]
    fn new_secrets_are_32_random_bytes() {
        let first = new_secret();

        assert_eq!(first.0.len(), 32);
        assert_ne!(first, new_secret());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let rendered = format!("{:?}", codec(0xab));

        assert_eq!(rendered, "HmacRefreshTokenCodec(<redacted>)");
    }
}

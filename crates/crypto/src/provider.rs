//! The startup check that jsonwebtoken 12 has exactly one working crypto backend.

use jsonwebtoken::crypto::{CryptoProvider, rust_crypto};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::CryptoError;

/// Makes sure jsonwebtoken has a usable crypto provider, installing the RustCrypto one if
/// feature unification left it with none or two, then signs and verifies one message with it.
///
/// jsonwebtoken 12 picks its backend at run time and panics on the first `encode`/`decode`
/// without one; calling this at startup turns that into an error before any request.
/// Idempotent and cheap; [`crate::JwtTokenSigner::load`] calls it too.
///
/// # Errors
///
/// [`CryptoError::CryptoProvider`] if no provider can be installed or the self-test fails.
pub fn ensure_crypto_provider() -> Result<(), CryptoError> {
    if CryptoProvider::try_get_default().is_none() {
        // Losing a race against another installer is fine: that one is a real provider too.
        let _ = rust_crypto::DEFAULT_PROVIDER.install_default();
    }
    if CryptoProvider::try_get_default().is_none() {
        return Err(CryptoError::CryptoProvider("none is installed"));
    }
    self_test()
}

/// One HS256 sign-and-verify through the installed provider's factories.
fn self_test() -> Result<(), CryptoError> {
    const SELF_TEST: CryptoError =
        CryptoError::CryptoProvider("the sign-and-verify self-test failed");
    let secret = [0x5a_u8; 32];
    let message = b"authgate crypto provider self-test";
    let encoding_key = EncodingKey::from_secret(&secret).map_err(|_| SELF_TEST)?;
    let decoding_key = DecodingKey::from_secret(&secret).map_err(|_| SELF_TEST)?;
    let signature = jsonwebtoken::crypto::sign(message, &encoding_key, Algorithm::HS256)
        .map_err(|_| SELF_TEST)?;
    match jsonwebtoken::crypto::verify(&signature, message, &decoding_key, Algorithm::HS256) {
        Ok(true) => Ok(()),
        _ => Err(SELF_TEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crypto_provider_is_available_and_works() {
        let first = ensure_crypto_provider();
        let second = ensure_crypto_provider();

        assert!(first.is_ok());
        assert!(second.is_ok());
    }
}

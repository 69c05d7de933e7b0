//! Randomness straight from the operating system, and the base64url form tokens use.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use rand::rngs::SysRng;

use crate::CryptoError;

/// `N` bytes from the operating system's CSPRNG.
///
/// # Errors
///
/// [`CryptoError::Random`] if the operating system cannot provide randomness.
pub(crate) fn os_random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0_u8; N];
    SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| CryptoError::Random(Box::new(error)))?;
    Ok(bytes)
}

/// `N` bytes from the operating system's CSPRNG, for callers that cannot report failure.
///
/// # Panics
///
/// If the operating system cannot provide randomness. Continuing with anything but fresh
/// randomness would hand out guessable tokens, so failing the request is the only safe answer.
pub(crate) fn os_random_or_panic<const N: usize>() -> [u8; N] {
    os_random().expect("the operating system's random number generator failed; refusing to issue a guessable token")
}

/// Unpadded base64url (RFC 4648 §5), the encoding of JOSE and of authgate's opaque tokens.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; `None` for anything else, including non-canonical trailing bits.
pub(crate) fn from_base64url(text: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

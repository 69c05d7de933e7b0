//! authgate's cryptography adapters: Argon2id password hashing, JWT access-token signing and
//! verification, signing-key generation, and opaque refresh tokens.
//!
//! Each adapter implements a port of `authgate_application::ports` ([`Argon2PasswordHasher`],
//! [`JwtTokenSigner`], [`HmacRefreshTokenCodec`]) and translates library errors at the seam,
//! so nothing above this crate names `argon2` or `jsonwebtoken`.
//! It deliberately does not judge claims: `exp`, `iss`, `aud` and the user's session are the
//! domain's `TokenPolicy` and the application's business. It never stores anything itself:
//! keys and server secrets live behind the `KeyStore` port, and it never reads the wall clock.
//! Secret-bearing types here have redacted `Debug` and no `Display`.

mod error;
mod keys;
mod password;
mod provider;
mod random;
mod refresh;
mod signer;
mod verified_cache;

#[cfg(test)]
mod test_support;

pub use error::CryptoError;
pub use keys::generate_key;
pub use password::{Argon2PasswordHasher, Argon2Settings, HashingLimits};
pub use provider::ensure_crypto_provider;
pub use refresh::{HmacRefreshTokenCodec, new_secret};
pub use signer::{JwtTokenSigner, SignerConfig};

//! The crate's one error type for construction, key handling and startup checks.

use authgate_application::ports::{BoxError, RepositoryError, SigningAlgorithm};

/// Why a cryptography adapter could not be built, or a key could not be made or loaded.
///
/// Messages name what failed and never contain key material, secrets or passwords.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// jsonwebtoken has no usable crypto backend (a build with none, or a broken one).
    #[error("no usable JWT crypto provider: {0}")]
    CryptoProvider(&'static str),
    /// The Argon2 parameters are outside what Argon2 allows.
    #[error("invalid Argon2 parameters: {0}")]
    Argon2Params(#[source] argon2::Error),
    /// The hashing concurrency limits are unusable.
    #[error("invalid password-hashing limits: {0}")]
    HashingLimits(&'static str),
    /// A password-hashing thread could not be started, or its memory not allocated.
    #[error("could not set up the password-hashing threads")]
    HashingPool(#[source] BoxError),
    /// HS256 was configured without a secret, or with one that is too short.
    #[error("HS256 signing needs AUTHGATE_JWT_SECRET of at least {min_bytes} bytes")]
    WeakHs256Secret {
        /// The required minimum length.
        min_bytes: usize,
    },
    /// A server secret (such as the refresh-successor key) is too short.
    #[error("the {name} must be at least {min_bytes} bytes")]
    WeakSecret {
        /// Which secret.
        name: &'static str,
        /// The required minimum length.
        min_bytes: usize,
    },
    /// Keys for this algorithm are not generated or stored (HS256 uses the configured secret).
    #[error("{} keys are not generated or stored", .0.as_str())]
    UnsupportedAlgorithm(SigningAlgorithm),
    /// Generating a key pair failed.
    #[error("could not generate a {} signing key", .algorithm.as_str())]
    KeyGeneration {
        /// The algorithm of the key being generated.
        algorithm: SigningAlgorithm,
        /// The cause, secret-free.
        #[source]
        source: BoxError,
    },
    /// A stored key could not be decoded.
    #[error("stored signing key '{kid}' is not a valid {} key: {reason}", .algorithm.as_str())]
    InvalidStoredKey {
        /// The key's `kid`.
        kid: String,
        /// The algorithm the key claims to be for.
        algorithm: SigningAlgorithm,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// After loading (and creating if needed) there is still no active key to sign with.
    #[error("no active {} signing key in the key store", .0.as_str())]
    NoActiveKey(SigningAlgorithm),
    /// The key store failed.
    #[error("the key store failed")]
    KeyStore(#[source] RepositoryError),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random(#[source] BoxError),
    /// A blocking task panicked or was cancelled.
    #[error("a background cryptography task failed")]
    Task(#[source] BoxError),
}

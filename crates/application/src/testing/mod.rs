//! In-memory fakes and mocks of every port, for tests (feature `testing`).
//!
//! Fakes say what they do: [`InsecureHasher`] is fast because it is not a password hash.
//! The repository fakes pass the same contract suite as the real adapters, so they cannot drift.

mod fakes;
mod repositories;

pub use crate::ports::{
    MockAccessTokenDenylist, MockBearerLookup, MockClock, MockHealthProbe, MockIdGenerator,
    MockKeyStore, MockLoginThrottle, MockPasswordHasher, MockRefreshTokenCodec,
    MockRefreshTokenStore, MockTokenSigner, MockUserRepository,
};
pub use fakes::*;
pub use repositories::*;

//! Deterministic fakes of the non-repository ports: time, ids, hashing, signing, refresh tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use authgate_domain::{AccessClaims, Password, PasswordHash, Timestamp};
use uuid::Uuid;

use crate::ports::{
    BoxError, Clock, HashError, IdGenerator, PasswordHasher, PublicJwk, RefreshToken,
    RefreshTokenCodec, RefreshTokenHash, TokenFormatError, TokenSigner, Verification,
};

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock reading `seconds` since the Unix epoch.
    #[must_use]
    pub fn at_unix(seconds: i64) -> Self {
        Self(AtomicI64::new(seconds))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let seconds = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.load(Ordering::SeqCst))
    }
}

/// Ids 1, 2, 3, … as UUIDs, so tests can predict them.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn new_id(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::SeqCst) + 1))
    }
}

/// A "hasher" that stores the password in the clear behind a prefix. Never use outside tests.
///
/// It counts verifications so tests can check that every login path costs exactly one.
/// A hash from [`InsecureHasher::outdated_hash_of`] verifies but reports `needs_rehash`,
/// like an Argon2 hash made under older parameters.
#[derive(Debug, Default)]
pub struct InsecureHasher {
    verifications: AtomicU64,
}

impl InsecureHasher {
    const PREFIX: &'static str = "insecure$";
    const OUTDATED: &'static str = "outdated$";

    /// How many times `verify` ran.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::SeqCst)
    }

    /// The hash this hasher produces for `password`.
    #[must_use]
    pub fn hash_of(password: &str) -> PasswordHash {
        PasswordHash::new(format!("{}{password}", Self::PREFIX))
    }

    /// A hash of `password` "made under older parameters".
    #[must_use]
    pub fn outdated_hash_of(password: &str) -> PasswordHash {
        PasswordHash::new(format!("{}{}{password}", Self::OUTDATED, Self::PREFIX))
    }
}

#[async_trait]
impl PasswordHasher for InsecureHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        Ok(Self::hash_of(password.expose()))
    }

    async fn verify(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let (outdated, stored) = match hash.expose().strip_prefix(Self::OUTDATED) {
            Some(rest) => (true, rest),
            None => (false, hash.expose()),
        };
        let secret = stored
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| HashError::Internal("not an insecure hash".into()))?;
        Ok(Verification {
            matches: secret == password.expose(),
            needs_rehash: outdated,
        })
    }
}

/// A signer whose "tokens" are handles into a table of the claims it signed.
#[derive(Debug, Default)]
pub struct FakeSigner {
    signed: Mutex<HashMap<String, AccessClaims>>,
}

#[async_trait]
impl TokenSigner for FakeSigner {
    async fn sign(&self, claims: &AccessClaims) -> Result<String, BoxError> {
        let token = format!("fake.{}", claims.jwt_id);
        self.signed
            .lock()
            .map_err(|_| "poisoned")?
            .insert(token.clone(), claims.clone());
        Ok(token)
    }

    async fn verify(&self, token: &str) -> Result<AccessClaims, TokenFormatError> {
        let signed = self
            .signed
            .lock()
            .map_err(|_| TokenFormatError::Malformed)?;
        signed
            .get(token)
            .cloned()
            .ok_or(TokenFormatError::BadSignature)
    }

    async fn public_keys(&self) -> Vec<PublicJwk> {
        Vec::new()
    }
}

/// Refresh tokens `rt-1`, `rt-2`, …; the successor of `x` is `x+`; the "hash" is the bytes
/// of the token, zero-padded. Predictable, so tests can spell tokens out.
#[derive(Debug, Default)]
pub struct FakeRefreshCodec(AtomicU64);

impl RefreshTokenCodec for FakeRefreshCodec {
    fn generate(&self) -> RefreshToken {
        RefreshToken::new(format!("rt-{}", self.0.fetch_add(1, Ordering::SeqCst) + 1))
    }

    fn successor(&self, parent: &RefreshToken) -> RefreshToken {
        RefreshToken::new(format!("{}+", parent.expose()))
    }

    fn hash(&self, token: &RefreshToken) -> RefreshTokenHash {
        let mut bytes = [0_u8; 32];
        for (slot, byte) in bytes.iter_mut().zip(token.expose().bytes()) {
            *slot = byte;
        }
        RefreshTokenHash(bytes)
    }
}

/// A throttle that allows every attempt and counts nothing: for tests whose subject is not
/// throttling (the real counters are tested in the persistence crate).
#[derive(Debug, Default)]
pub struct UnlimitedThrottle;

#[async_trait]
impl crate::ports::LoginThrottle for UnlimitedThrottle {
    async fn begin_attempt(
        &self,
        _username: &str,
        _address: Option<std::net::IpAddr>,
        _now: Timestamp,
    ) -> Result<authgate_domain::ThrottleDecision, crate::ports::RepositoryError> {
        Ok(authgate_domain::ThrottleDecision::Allowed)
    }

    async fn give_back(
        &self,
        _username: &str,
        _address: Option<std::net::IpAddr>,
        _now: Timestamp,
    ) -> Result<(), crate::ports::RepositoryError> {
        Ok(())
    }

    async fn record_success(
        &self,
        _username: &str,
        _address: Option<std::net::IpAddr>,
        _now: Timestamp,
    ) -> Result<(), crate::ports::RepositoryError> {
        Ok(())
    }

    async fn purge_expired(&self, _now: Timestamp) -> Result<u64, crate::ports::RepositoryError> {
        Ok(0)
    }
}

//! Ports: the capabilities use cases need from the outside world, each documented as a contract.
//!
//! Adapters (`authgate-persistence`, `authgate-crypto`, the server's clock) implement these;
//! every repository port has a contract suite in the persistence crate that its SQLite,
//! PostgreSQL and in-memory implementations all pass.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use authgate_domain::{
    AccessClaims, ClientId, Password, PasswordHash, ScopeSet, SessionEpoch, Timestamp, User,
    UserId, UserProfile, Username,
};
use uuid::Uuid;

/// An opaque infrastructure failure, kept for the log and never shown to a client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failures of a repository port.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// A user with this username exists already, whatever its case.
    #[error("username is taken")]
    UsernameTaken,
    /// The user to change or delete does not exist.
    #[error("no such user")]
    NotFound,
    /// The change would leave no enabled user holding `users:write`.
    #[error("the last enabled administrator cannot be disabled, demoted or deleted")]
    LastAdministrator,
    /// The database failed or could not be reached.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
}

/// A user to store, with their password hash.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Stable identifier, from the [`IdGenerator`].
    pub id: UserId,
    /// Normalised login name.
    pub username: Username,
    /// Argon2id PHC string.
    pub password_hash: PasswordHash,
    /// Email and display name.
    pub profile: UserProfile,
    /// Scopes the user may be granted.
    pub scopes: ScopeSet,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A partial update of a user; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// Enable or disable the account.
    pub disabled: Option<bool>,
    /// Replace the allowed scopes.
    pub scopes: Option<ScopeSet>,
    /// Set (`Some(Some(_))`) or clear (`Some(None)`) the email.
    pub email: Option<Option<String>>,
    /// Set (`Some(Some(_))`) or clear (`Some(None)`) the display name.
    pub full_name: Option<Option<String>>,
}

/// Persistent store of users.
///
/// The rule that keeps the service administrable is part of this contract, so that the
/// adapter can enforce it atomically: no `update` or `delete` may leave the store without
/// an enabled user holding `users:write` when it had one before.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Finds a user by normalised username; `Ok(None)` when there is none.
    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, RepositoryError>;

    /// Finds a user by id; `Ok(None)` when there is none.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError>;

    /// Finds a user and their password hash, for verifying a password.
    async fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<(User, PasswordHash)>, RepositoryError>;

    /// Stores a new user with session epoch 0.
    ///
    /// # Errors
    ///
    /// - [`RepositoryError::UsernameTaken`] if the name exists.
    async fn insert(&self, new_user: &NewUser) -> Result<User, RepositoryError>;

    /// Stores `new_user` only if there are no users at all, atomically, so that several
    /// instances starting together on an empty database create exactly one.
    /// Returns whether the user was stored.
    async fn insert_if_empty(&self, new_user: &NewUser) -> Result<bool, RepositoryError>;

    /// Replaces the password hash and moves the user to the next session epoch, ending
    /// every token issued before. Returns the updated user.
    ///
    /// # Errors
    ///
    /// - [`RepositoryError::NotFound`] if the user does not exist.
    async fn change_password(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<User, RepositoryError>;

    /// Replaces the password hash with an equivalent one (a rehash under new parameters)
    /// without ending any session. A missing user is not an error.
    async fn upgrade_password_hash(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<(), RepositoryError>;

    /// Applies `patch` and returns the updated user.
    ///
    /// # Errors
    ///
    /// - [`RepositoryError::NotFound`] if the user does not exist.
    /// - [`RepositoryError::LastAdministrator`] if the patch would disable or remove
    ///   `users:write` from the last enabled user holding it.
    async fn update(&self, username: &Username, patch: &UserPatch)
    -> Result<User, RepositoryError>;

    /// Deletes a user and returns what was deleted.
    ///
    /// # Errors
    ///
    /// - [`RepositoryError::NotFound`] if the user does not exist.
    /// - [`RepositoryError::LastAdministrator`] if they are the last enabled user holding
    ///   `users:write`.
    async fn delete(&self, username: &Username) -> Result<User, RepositoryError>;

    /// Up to `limit` users with usernames strictly after `after`, in username order.
    /// Keyset pagination: stable under concurrent inserts, every existing user seen once.
    async fn list(&self, after: Option<Username>, limit: u32)
    -> Result<Vec<User>, RepositoryError>;
}

/// SHA-256 of a refresh token: the only form in which refresh tokens are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash(pub [u8; 32]);

impl fmt::Debug for RefreshTokenHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("RefreshTokenHash(..)")
    }
}

/// A refresh token in plaintext, as handed to and presented by the client.
///
/// `Debug` is redacted and there is no `Display`, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// Wraps a token generated by the [`RefreshTokenCodec`] or presented by a client.
    #[must_use]
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token, for the response body and hashing only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("RefreshToken(<redacted>)")
    }
}

/// One login session: the chain of refresh tokens that descend from one password grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// Family identifier.
    pub id: Uuid,
    /// Whose session it is.
    pub user_id: UserId,
    /// The scope granted at login; refreshes may narrow it, never widen it.
    pub scope: ScopeSet,
    /// The client the family was issued to.
    pub client_id: ClientId,
    /// The user's session epoch at login; the family dies when it moves on.
    pub session_epoch: SessionEpoch,
    /// When the password grant happened.
    pub issued_at: Timestamp,
    /// Absolute end of the family, `issued_at + --refresh-token-ttl`.
    pub expires_at: Timestamp,
}

/// What presenting a refresh token to [`RefreshTokenStore::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was current: it is now rotated out and `successor` is current.
    Rotated(RefreshFamily),
    /// The token was rotated out within the grace period, into this same `successor`:
    /// a concurrent or retried refresh, answered like the first one.
    Replayed(RefreshFamily),
    /// The token was rotated out earlier than the grace period allows: reuse. The whole
    /// family has been revoked, in the same transaction.
    Reused,
    /// Unknown, revoked or expired: nothing changed.
    Invalid,
}

/// Persistent store of refresh-token families (RFC 9700 §4.14 rotation with reuse detection).
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Starts a new family whose first token is `token`.
    async fn create_family(
        &self,
        family: &RefreshFamily,
        token: &RefreshTokenHash,
    ) -> Result<(), RepositoryError>;

    /// Presents `token` for rotation into `successor`, atomically (one transaction with a
    /// row lock or conditional update: two racing callers never both see `Rotated`).
    ///
    /// - current token of a live family: mark it rotated at `now`, store `successor` as the
    ///   family's current token, answer [`RotateOutcome::Rotated`];
    /// - token rotated into the same `successor` less than `grace` ago (strictly): answer
    ///   [`RotateOutcome::Replayed`] and change nothing;
    /// - any other rotated token: revoke the family (reason `reuse`) and answer
    ///   [`RotateOutcome::Reused`];
    /// - unknown token, revoked family, or family expired at `now`: [`RotateOutcome::Invalid`].
    async fn rotate(
        &self,
        token: &RefreshTokenHash,
        successor: &RefreshTokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<RotateOutcome, RepositoryError>;

    /// The family of `token` if `token` is its current (not rotated) token and the family is
    /// neither revoked nor expired at `now`.
    async fn find_current(
        &self,
        token: &RefreshTokenHash,
        now: Timestamp,
    ) -> Result<Option<RefreshFamily>, RepositoryError>;

    /// Revokes the family `token` belongs to, if any (reason given for the record).
    async fn revoke_family_of(
        &self,
        token: &RefreshTokenHash,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), RepositoryError>;

    /// Revokes every family of `user_id`.
    async fn revoke_user_families(
        &self,
        user_id: UserId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), RepositoryError>;

    /// Deletes families that expired before `now`, with their tokens. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError>;
}

/// Revoked access tokens, by `jti`, until they would have expired anyway.
///
/// Whether a `jti` is denied is read through [`BearerLookup`], together with the token's user.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait AccessTokenDenylist: Send + Sync {
    /// Denies `jwt_id` until `expires_at`. Denying twice is not an error.
    async fn deny(&self, jwt_id: &str, expires_at: Timestamp) -> Result<(), RepositoryError>;

    /// Forgets entries that expired before `now`. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError>;
}

/// What bearer authentication reads about a verified access token: its user as stored now
/// and whether the token was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerSubject {
    /// The user the token was issued to, as stored now; `None` when there is no such user.
    /// Disabled users are returned as they are: judging them is the caller's job.
    pub user: Option<User>,
    /// Whether the token's `jti` is on the [`AccessTokenDenylist`].
    pub revoked: bool,
}

/// The storage reads of bearer authentication, answered in one round trip.
///
/// Every authenticated request needs both the denylist entry and the user; reading them in
/// one statement halves the database round trips of the hottest path, and gives both
/// answers from one snapshot.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait BearerLookup: Send + Sync {
    /// The user `user_id` as stored now, disabled or not (`None` if there is no such user),
    /// and whether `jwt_id` is denied (as [`AccessTokenDenylist::deny`] left it, until
    /// purged), read together. An unknown user is not an error: `revoked` is answered for
    /// it all the same.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Unavailable`] when the database fails.
    async fn bearer_subject(
        &self,
        user_id: UserId,
        jwt_id: &str,
    ) -> Result<BearerSubject, RepositoryError>;
}

/// The JWS algorithm access tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037), the default.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for RFC 9068 interoperability.
    Rs256,
    /// HMAC-SHA256 with a shared secret; publishes no keys.
    Hs256,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Hs256 => "HS256",
        }
    }

    /// Parses a JOSE `alg` name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::EdDsa, Self::Rs256, Self::Hs256]
            .into_iter()
            .find(|alg| alg.as_str() == name)
    }
}

/// Private key material, as stored. `Debug` is redacted, and the bytes are wiped when it is
/// dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(pub Vec<u8>);

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("KeyMaterial(<redacted>)")
    }
}

/// A signing key as stored in the database, shared by every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The JOSE `kid`.
    pub kid: String,
    /// The algorithm the key is for.
    pub algorithm: SigningAlgorithm,
    /// PKCS#8 DER of the private key.
    pub private_key: KeyMaterial,
    /// When the key was made.
    pub created_at: Timestamp,
    /// When a newer key replaced it for signing; it still verifies until its tokens expire.
    pub retired_at: Option<Timestamp>,
}

/// Persistent store of signing keys and server secrets.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key, oldest first.
    async fn list(&self) -> Result<Vec<StoredKey>, RepositoryError>;

    /// Stores `key` as the active key for its algorithm unless an active (unretired) key for
    /// that algorithm exists already, atomically. Returns whether it was stored.
    async fn insert_if_no_active(&self, key: &StoredKey) -> Result<bool, RepositoryError>;

    /// Stores `key` as the active key for its algorithm and retires the previous one at
    /// `key.created_at`, atomically.
    async fn rotate(&self, key: &StoredKey) -> Result<(), RepositoryError>;

    /// Rotates to `key` only if it is due, atomically: when the active key for
    /// `key.algorithm` was created strictly before `created_before`, or there is no active
    /// key, retires the active key (if any) at `key.created_at`, stores `key` as active and
    /// answers `true`; otherwise changes nothing and answers `false`.
    ///
    /// Of several instances racing with the same `created_before`, exactly one rotates: the
    /// check and the write are one transaction, serialised against every other writer of
    /// the keys, so the later callers find the fresh key and leave it be.
    async fn rotate_if_due(
        &self,
        key: &StoredKey,
        created_before: Timestamp,
    ) -> Result<bool, RepositoryError>;

    /// The secret stored under `name`, storing `candidate` first if there is none. Every
    /// caller, on every instance, gets the same bytes.
    async fn secret(
        &self,
        name: &str,
        candidate: &KeyMaterial,
    ) -> Result<KeyMaterial, RepositoryError>;
}

/// Failures of the password hasher.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is busy and the wait queue is full; retry later.
    #[error("password hashing is at capacity")]
    Busy,
    /// The hash could not be computed or parsed.
    #[error("password hashing failed")]
    Internal(#[source] BoxError),
}

/// The result of verifying a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// Whether the password matches.
    pub matches: bool,
    /// Whether the stored hash uses other parameters than the configured ones.
    pub needs_rehash: bool,
}

/// Slow, salted password hashing (Argon2id), run off the async workers.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes `password` with a fresh salt and the configured parameters.
    ///
    /// # Errors
    ///
    /// [`HashError::Busy`] at capacity; [`HashError::Internal`] otherwise.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;

    /// Verifies `password` against `hash` in constant time.
    ///
    /// # Errors
    ///
    /// [`HashError::Busy`] at capacity; [`HashError::Internal`] for an unparsable hash.
    async fn verify(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError>;

    /// Whether a verification would be accepted right now. A hint, for refusing work early
    /// when hashing is saturated: [`PasswordHasher::verify`] may still answer
    /// [`HashError::Busy`] when other callers take the last place first.
    fn has_capacity(&self) -> bool {
        true
    }
}

/// Why a presented access token was refused before its claims were judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// Not a compact JWS, or undecodable header or claims.
    #[error("the token is malformed")]
    Malformed,
    /// The `alg` is not the configured one (including `none`).
    #[error("the token is signed with an unexpected algorithm")]
    WrongAlgorithm,
    /// The `typ` header is not `at+jwt`.
    #[error("the token is not an access token")]
    WrongType,
    /// No known key has this `kid`.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token signature is invalid")]
    BadSignature,
}

/// A public key for the JWKS document (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    /// The `kid`.
    pub kid: String,
    /// The algorithm the key verifies.
    pub algorithm: SigningAlgorithm,
    /// The key itself.
    pub key: PublicKeyParams,
}

/// The key-type-specific members of a public JWK, base64url-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKeyParams {
    /// `kty: OKP`, `crv: Ed25519` (RFC 8037).
    Ed25519 {
        /// The public key.
        x: String,
    },
    /// `kty: RSA` (RFC 7518 §6.3).
    Rsa {
        /// Modulus.
        n: String,
        /// Public exponent.
        e: String,
    },
}

/// Signs and verifies access tokens with the keys from the [`KeyStore`].
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait TokenSigner: Send + Sync {
    /// Signs `claims` as an RFC 9068 JWT (`typ: at+jwt`) with the newest active key.
    ///
    /// # Errors
    ///
    /// An opaque error if no key can sign.
    async fn sign(&self, claims: &AccessClaims) -> Result<String, BoxError>;

    /// Verifies the header and signature of `token` and decodes its claims. Judging the
    /// claims (`exp`, `iss`, `aud`) is the caller's job.
    ///
    /// # Errors
    ///
    /// The [`TokenFormatError`] that describes the first failed check.
    async fn verify(&self, token: &str) -> Result<AccessClaims, TokenFormatError>;

    /// The public keys of every key that may still have live tokens (none for HS256).
    async fn public_keys(&self) -> Vec<PublicJwk>;
}

/// Generates, derives and hashes opaque refresh tokens.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
pub trait RefreshTokenCodec: Send + Sync {
    /// A fresh token of at least 256 random bits, URL-safe.
    fn generate(&self) -> RefreshToken;

    /// The successor of `parent`: a keyed derivation (HMAC under a server secret), so that
    /// every concurrent refresh of `parent` gets the same token without storing it.
    fn successor(&self, parent: &RefreshToken) -> RefreshToken;

    /// SHA-256 of the token, its storage form.
    fn hash(&self, token: &RefreshToken) -> RefreshTokenHash;
}

/// The current time.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// Unique identifiers for users, token ids and families.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
pub trait IdGenerator: Send + Sync {
    /// A new random (version 4) UUID.
    fn new_id(&self) -> Uuid;
}

/// Whether the database answers, for readiness probes.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Runs a trivial query.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Unavailable`] when the database does not answer.
    async fn ping(&self) -> Result<(), RepositoryError>;
}

/// How long the counters of a login-throttling key are kept after its last counted attempt,
/// unless it is still blocked (see [`LoginThrottle::purge_expired`]).
///
/// Forgetting a username's failures restarts its backoff, so this is far longer than the
/// longest backoff: an attacker who waits a day between bursts gets fewer guesses than one
/// who keeps trying at the fifteen-minute maximum.
pub const LOGIN_THROTTLE_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Counters of login attempts per username and per client address (SPEC §2 abuse limits).
///
/// The store applies [`authgate_domain::ThrottlePolicy`] atomically: parallel attempts are
/// counted one by one, so they cannot all slip past the limit. Every instance that shares
/// the store enforces one limit; an in-process store (the SQLite deployment, one instance
/// per database file) counts for its own process only.
#[cfg_attr(any(test, feature = "testing"), mockall::automock)]
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// Decides on a login attempt for `username` (normalised, or the raw name lower-cased)
    /// from `address`. When neither key is blocked the attempt is counted against both and
    /// `Allowed` is answered; otherwise nothing is counted and `Throttled` says for how long.
    async fn begin_attempt(
        &self,
        username: &str,
        address: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<authgate_domain::ThrottleDecision, RepositoryError>;

    /// The attempt succeeded: the username's counters reset, and the address gets its
    /// attempt back.
    async fn record_success(
        &self,
        username: &str,
        address: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<(), RepositoryError>;

    /// An attempt begun with [`LoginThrottle::begin_attempt`] never reached a verdict (hashing
    /// was busy or failed): take it back from both counters, so that load is never mistaken
    /// for guessing and users with the right password are not locked out by a busy server.
    async fn give_back(
        &self,
        username: &str,
        address: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<(), RepositoryError>;

    /// Forgets every key whose last counted attempt (or success) was more than
    /// [`LOGIN_THROTTLE_RETENTION`] before `now` and which is not blocked at `now`, so that
    /// usernames and addresses sprayed by an attacker cannot grow the store without bound.
    /// Returns how many keys were forgotten.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError>;
}

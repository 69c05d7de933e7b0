//! A bounded cache of access tokens whose signature verified, keyed by the token's SHA-256.
//!
//! It holds only what follows from the token's bytes and the key that verified them, so a
//! hit answers exactly as verifying again would: the caller checks on every read that the
//! token's `kid` still names the same key material and that the key still verifies. Claims
//! are not judged here, and nothing about revocation or the user is kept: those are read
//! afresh on every request, so revocation, disabling and password changes act at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use authgate_domain::{AccessClaims, Timestamp, TokenPolicy};

/// Independent locks, so that 64 concurrent readers rarely meet on one.
const SHARDS: usize = 16;

/// SHA-256 of a compact JWS, as presented.
pub(crate) type TokenDigest = [u8; 32];

/// SHA-256 of the public key (or HS256 secret) that verified a token.
pub(crate) type KeyFingerprint = [u8; 32];

/// What a successful verification established.
pub(crate) struct VerifiedToken {
    /// The decoded claims, not yet judged.
    pub(crate) claims: AccessClaims,
    /// The header's `kid`.
    pub(crate) kid: Arc<str>,
    /// The key material `kid` named when the signature verified.
    pub(crate) key: KeyFingerprint,
}

/// Verified tokens, at most `capacity` of them.
pub(crate) struct VerifiedCache {
    shards: Vec<Mutex<HashMap<TokenDigest, Arc<Entry>>>>,
    shard_capacity: usize,
}

struct Entry {
    token: VerifiedToken,
    /// `exp` plus the largest leeway: from then on the claims are refused whatever the
    /// configured leeway, so the entry is worthless.
    useful_until: Timestamp,
}

impl VerifiedCache {
    /// An empty cache of at most `capacity` tokens (rounded up to a multiple of 16).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// The claims of the token with `digest`, if it verified before, is not past its expiry
    /// and `key_still_verifies(kid, key)` says its key would still be chosen and accepted.
    pub(crate) fn get(
        &self,
        digest: &TokenDigest,
        now: Timestamp,
        key_still_verifies: impl FnOnce(&str, &KeyFingerprint) -> bool,
    ) -> Option<AccessClaims> {
        let shard = self.shard(digest);
        let entry = lock(shard).get(digest).cloned()?;
        if now < entry.useful_until && key_still_verifies(&entry.token.kid, &entry.token.key) {
            return Some(entry.token.claims.clone());
        }
        // Removing is always safe: the caller verifies in full and caches again if it can.
        let mut shard = lock(shard);
        if shard
            .get(digest)
            .is_some_and(|current| Arc::ptr_eq(current, &entry))
        {
            shard.remove(digest);
        }
        None
    }

    /// Remembers a verified token, unless it is already useless at `now`. A full shard
    /// first drops its expired entries, then, if still full, an arbitrary half.
    pub(crate) fn insert(&self, digest: TokenDigest, token: VerifiedToken, now: Timestamp) {
        let useful_until = token.claims.expires_at.plus(TokenPolicy::MAX_LEEWAY);
        if now >= useful_until {
            return;
        }
        let mut shard = lock(self.shard(&digest));
        if shard.len() >= self.shard_capacity && !shard.contains_key(&digest) {
            shard.retain(|_, entry| now < entry.useful_until);
            if shard.len() >= self.shard_capacity {
                // Iteration order is the map's random hashing order, so this drops an
                // arbitrary half: live tokens come back in on their next presentation.
                let mut keep = false;
                shard.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        shard.insert(
            digest,
            Arc::new(Entry {
                token,
                useful_until,
            }),
        );
    }

    fn shard(&self, digest: &TokenDigest) -> &Mutex<HashMap<TokenDigest, Arc<Entry>>> {
        &self.shards[usize::from(digest[0]) % self.shards.len()]
    }

    /// How many tokens are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

/// A shard; nothing panics while one is locked, so poisoning is ignored.
fn lock<T>(shard: &Mutex<T>) -> MutexGuard<'_, T> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use authgate_domain::{ClientId, ScopeSet, SessionEpoch, UserId, Username};
    use sha2::{Digest as _, Sha256};
    use uuid::Uuid;

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);
    const KEY: KeyFingerprint = [1; 32];

    fn digest(index: usize) -> TokenDigest {
        Sha256::digest(index.to_le_bytes()).into()
    }

    fn token(expires_at: Timestamp) -> VerifiedToken {
        VerifiedToken {
            claims: AccessClaims {
                issuer: "http://127.0.0.1:8080".into(),
                subject: UserId::new(Uuid::from_u128(7)),
                audience: "authgate".into(),
                expires_at,
                issued_at: NOW,
                jwt_id: "jti".into(),
                scope: ScopeSet::empty(),
                client_id: ClientId::default_client(),
                username: Username::parse("alice").unwrap(),
                session_epoch: SessionEpoch::new(0),
            },
            kid: "kid-1".into(),
            key: KEY,
        }
    }

    fn same_key(kid: &str, key: &KeyFingerprint) -> bool {
        kid == "kid-1" && *key == KEY
    }

    #[test]
    fn a_cached_token_is_found_while_its_key_still_verifies() {
        let cache = VerifiedCache::new(64);
        let expires_at = NOW.plus(std::time::Duration::from_secs(900));
        cache.insert(digest(1), token(expires_at), NOW);

        let found = cache.get(&digest(1), NOW, same_key);
        let other = cache.get(&digest(2), NOW, same_key);
        let key_gone = cache.get(&digest(1), NOW, |_, _| false);
        let after_removal = cache.get(&digest(1), NOW, same_key);

        assert_eq!(found.map(|claims| claims.expires_at), Some(expires_at));
        assert!(other.is_none());
        assert!(key_gone.is_none());
        assert!(after_removal.is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_entry_lives_until_expiry_plus_the_largest_leeway_and_no_longer() {
        let cache = VerifiedCache::new(64);
        let expires_at = NOW.plus(std::time::Duration::from_secs(900));
        let last_useful = expires_at
            .plus(TokenPolicy::MAX_LEEWAY)
            .minus(std::time::Duration::from_secs(1));
        cache.insert(digest(1), token(expires_at), NOW);

        let just_inside = cache.get(&digest(1), last_useful, same_key);
        let just_outside = cache.get(
            &digest(1),
            expires_at.plus(TokenPolicy::MAX_LEEWAY),
            same_key,
        );

        assert!(just_inside.is_some());
        assert!(just_outside.is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_token_that_is_already_useless_is_not_cached() {
        let cache = VerifiedCache::new(64);

        cache.insert(digest(1), token(NOW.minus(TokenPolicy::MAX_LEEWAY)), NOW);

        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_never_grows_beyond_its_capacity() {
        let cache = VerifiedCache::new(64);
        let soon = NOW.plus(std::time::Duration::from_secs(10));
        let later = NOW.plus(std::time::Duration::from_secs(900));
        for index in 0..64 {
            cache.insert(digest(index), token(soon), NOW);
        }
        let after_expiry = soon.plus(TokenPolicy::MAX_LEEWAY);

        let mut largest = 0;
        for index in 64..10_064 {
            cache.insert(digest(index), token(later), after_expiry);
            largest = largest.max(cache.len());
        }

        assert!(largest <= 64, "{largest} entries");
        assert!(cache.len() >= 16, "eviction kept {} entries", cache.len());
    }
}

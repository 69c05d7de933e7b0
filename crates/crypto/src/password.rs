//! Argon2id password hashing on the blocking pool, behind a bounded semaphore.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::Error as PhcError;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _,
    Version,
};
use async_trait::async_trait;
use authgate_application::ports::{HashError, PasswordHasher, Verification};
use authgate_domain::{Password, PasswordHash};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::CryptoError;
use crate::random::{base64url, os_random};

/// Argon2id cost parameters (RFC 9106 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory cost `m`, in KiB.
    pub memory_kib: u32,
    /// Time cost `t`: passes over the memory.
    pub iterations: u32,
    /// Parallelism `p`: lanes.
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    /// OWASP's Argon2id recommendation, also SPEC §1's defaults: m = 19456 KiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// How much hashing may run and wait at once.
///
/// Each running hash holds `memory_kib` of memory and one blocking thread, so these two
/// numbers bound the memory and threads a login storm can take (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingLimits {
    /// Hashes computed at the same time (`--max-concurrent-hashes`); at least 1.
    pub max_concurrent: usize,
    /// Callers allowed to wait for a slot; one more is told [`HashError::Busy`] at once.
    pub max_queued: usize,
}

/// The [`PasswordHasher`] port over Argon2id, version 0x13.
///
/// Invariant: the parameters were accepted by Argon2 and `max_concurrent` is at least 1.
/// Work runs on `tokio::task::spawn_blocking`, so an async worker never stalls for the
/// ~15 ms an OWASP-sized hash takes. Cheap to clone; clones share the limits.
#[derive(Clone)]
pub struct Argon2PasswordHasher {
    engine: Arc<Engine>,
    limiter: Arc<Limiter>,
}

impl fmt::Debug for Argon2PasswordHasher {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Argon2PasswordHasher")
            .field("settings", &self.engine.settings)
            .field("limits", &self.limiter.limits)
            .finish()
    }
}

impl Argon2PasswordHasher {
    /// A hasher with the given cost and concurrency limits.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Argon2Params`] for parameters Argon2 refuses (such as `m < 8·p`);
    /// [`CryptoError::HashingLimits`] when `max_concurrent` is 0 or absurdly large.
    pub fn new(settings: Argon2Settings, limits: HashingLimits) -> Result<Self, CryptoError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(CryptoError::Argon2Params)?;
        if limits.max_concurrent == 0 {
            return Err(CryptoError::HashingLimits(
                "at least one concurrent hash is needed",
            ));
        }
        if limits.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(CryptoError::HashingLimits("too many concurrent hashes"));
        }
        Ok(Self {
            engine: Arc::new(Engine {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                settings,
            }),
            limiter: Arc::new(Limiter {
                slots: Arc::new(Semaphore::new(limits.max_concurrent)),
                waiting: AtomicUsize::new(0),
                limits,
            }),
        })
    }

    /// The configured cost parameters.
    #[must_use]
    pub fn settings(&self) -> Argon2Settings {
        self.engine.settings
    }

    /// The hash of a fresh random password, to verify against when a username is unknown so
    /// that both paths cost one Argon2 run and timing does not reveal which users exist.
    ///
    /// # Errors
    ///
    /// As [`PasswordHasher::hash`], plus [`HashError::Internal`] if the OS has no randomness.
    pub async fn decoy_hash(&self) -> Result<PasswordHash, HashError> {
        let secret = os_random::<32>().map_err(|error| HashError::Internal(error.into()))?;
        self.hash(&Password::new(base64url(&secret))).await
    }

    /// Hashes on the calling thread, bypassing the limits; for benchmarks and offline tools.
    ///
    /// # Errors
    ///
    /// [`HashError::Internal`] if Argon2 fails.
    pub fn hash_blocking(&self, password: &Password) -> Result<PasswordHash, HashError> {
        self.engine.hash(password)
    }

    /// Verifies on the calling thread, bypassing the limits; for benchmarks and offline tools.
    ///
    /// # Errors
    ///
    /// [`HashError::Internal`] for an unparsable or non-Argon2 hash.
    pub fn verify_blocking(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        self.engine.verify(password, hash)
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, HashError> + Send + 'static,
    {
        let permit = self.limiter.acquire().await?;
        let engine = Arc::clone(&self.engine);
        // The permit moves into the task: if the caller is cancelled the hash still runs to
        // the end (spawn_blocking cannot be stopped), and the slot stays taken until it has.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&engine)
        })
        .await
        .map_err(|error| HashError::Internal(error.into()))?
    }
}

#[async_trait]
impl PasswordHasher for Argon2PasswordHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.clone();
        self.run(move |engine| engine.hash(&password)).await
    }

    async fn verify(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        let password = password.clone();
        let hash = hash.clone();
        self.run(move |engine| engine.verify(&password, &hash))
            .await
    }
}

/// The configured Argon2 context and the settings it was built from.
struct Engine {
    argon2: Argon2<'static>,
    settings: Argon2Settings,
}

impl Engine {
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let phc = self
            .argon2
            .hash_password(password.expose().as_bytes())
            .map_err(internal)?;
        Ok(PasswordHash::new(phc.to_string()))
    }

    fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<Verification, HashError> {
        let phc = PhcHash::new(hash.expose()).map_err(|error| internal(error.into()))?;
        let needs_rehash = !self.uses_configured_parameters(&phc);
        // Argon2 recomputes with the stored hash's own algorithm, version and parameters and
        // compares the outputs in constant time.
        let matches = match self
            .argon2
            .verify_password(password.expose().as_bytes(), &phc)
        {
            Ok(()) => true,
            Err(PhcError::PasswordInvalid) => false,
            Err(error) => return Err(internal(error)),
        };
        Ok(Verification {
            matches,
            needs_rehash,
        })
    }

    /// Compares the parts that define the cost, not whole `Params`: a parsed hash also
    /// records its output length, which a freshly configured `Params` leaves unset.
    fn uses_configured_parameters(&self, phc: &PhcHash) -> bool {
        let Ok(params) = Params::try_from(phc) else {
            return false;
        };
        phc.algorithm.as_str() == argon2::ARGON2ID_IDENT.as_str()
            && phc.version == Some(Version::V0x13.into())
            && params.m_cost() == self.settings.memory_kib
            && params.t_cost() == self.settings.iterations
            && params.p_cost() == self.settings.parallelism
    }
}

fn internal(error: PhcError) -> HashError {
    HashError::Internal(Box::new(error))
}

/// Hashing slots, plus a bounded count of callers waiting for one.
struct Limiter {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: HashingLimits,
}

impl Limiter {
    /// A slot, waiting for one only if fewer than `max_queued` callers already are.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, HashError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        let max_queued = self.limits.max_queued;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < max_queued).then_some(waiting + 1)
            })
            .map_err(|_| HashError::Busy)?;
        // Dropped when the permit arrives or when the caller gives up (a cancelled request),
        // so abandoned waits never leak queue places.
        let _queued = QueuedGuard(&self.waiting);
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|error| HashError::Internal(error.into()))
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// One place in the wait queue, given back on drop.
struct QueuedGuard<'a>(&'a AtomicUsize);

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Argon2Settings = Argon2Settings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    const ROOMY: HashingLimits = HashingLimits {
        max_concurrent: 2,
        max_queued: 8,
    };

    fn hasher(settings: Argon2Settings) -> Argon2PasswordHasher {
        Argon2PasswordHasher::new(settings, ROOMY).unwrap()
    }

    fn password(secret: &str) -> Password {
        Password::new(secret.to_owned())
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_needs_no_rehash() {
        let hasher = hasher(TINY);

        let hash = hasher
            .hash(&password("correct horse battery staple"))
            .await
            .unwrap();
        let verification = hasher
            .verify(&password("correct horse battery staple"), &hash)
            .await
            .unwrap();

        assert!(hash.expose().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            verification,
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn a_wrong_password_does_not_match() {
        let hasher = hasher(TINY);
        let hash = hasher
            .hash(&password("correct horse battery staple"))
            .await
            .unwrap();

        let verification = hasher
            .verify(&password("correct horse battery stapler"), &hash)
            .await
            .unwrap();

        assert!(!verification.matches);
    }

    #[tokio::test]
    async fn each_hash_has_its_own_salt() {
        let hasher = hasher(TINY);

        let first = hasher.hash(&password("same password")).await.unwrap();
        let second = hasher.hash(&password("same password")).await.unwrap();

        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn a_hash_with_other_costs_still_verifies_but_needs_a_rehash() {
        let old = hasher(TINY);
        let hash = old
            .hash(&password("a long enough passphrase"))
            .await
            .unwrap();
        let memory = hasher(Argon2Settings {
            memory_kib: 128,
            ..TINY
        });
        let time = hasher(Argon2Settings {
            iterations: 2,
            ..TINY
        });
        let lanes = hasher(Argon2Settings {
            memory_kib: 64,
            parallelism: 2,
            ..TINY
        });

        for current in [memory, time, lanes] {
            let verification = current
                .verify(&password("a long enough passphrase"), &hash)
                .await
                .unwrap();

            assert_eq!(
                verification,
                Verification {
                    matches: true,
                    needs_rehash: true
                }
            );
        }
    }

    #[tokio::test]
    async fn an_argon2i_hash_needs_a_rehash_to_argon2id() {
        let params = Params::new(64, 1, 1, None).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params);
        let hash = PasswordHash::new(
            argon2i
                .hash_password(b"a long enough passphrase")
                .unwrap()
                .to_string(),
        );

        let verification = hasher(TINY)
            .verify(&password("a long enough passphrase"), &hash)
            .await
            .unwrap();

        assert_eq!(
            verification,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn an_unparsable_stored_hash_is_an_internal_error() {
        let hasher = hasher(TINY);

        for stored in [
            "",
            "not a hash",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA",
        ] {
            let result = hasher
                .verify(
                    &password("anything at all"),
                    &PasswordHash::new(stored.to_owned()),
                )
                .await;

            assert!(matches!(result, Err(HashError::Internal(_))), "{stored:?}");
        }
    }

    #[test]
    fn parameters_argon2_refuses_are_a_construction_error() {
        let too_little_memory = Argon2Settings {
            memory_kib: 4,
            ..TINY
        };
        let no_time = Argon2Settings {
            iterations: 0,
            ..TINY
        };
        let no_slots = HashingLimits {
            max_concurrent: 0,
            max_queued: 1,
        };

        assert!(matches!(
            Argon2PasswordHasher::new(too_little_memory, ROOMY),
            Err(CryptoError::Argon2Params(_))
        ));
        assert!(matches!(
            Argon2PasswordHasher::new(no_time, ROOMY),
            Err(CryptoError::Argon2Params(_))
        ));
        assert!(matches!(
            Argon2PasswordHasher::new(TINY, no_slots),
            Err(CryptoError::HashingLimits(_))
        ));
    }

    #[test]
    fn the_default_settings_are_owasps() {
        assert_eq!(
            Argon2Settings::default(),
            Argon2Settings {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1
            }
        );
    }

    #[tokio::test]
    async fn callers_beyond_the_slots_and_the_queue_are_told_busy_at_once() {
        let hasher = Argon2PasswordHasher::new(
            TINY,
            HashingLimits {
                max_concurrent: 1,
                max_queued: 1,
            },
        )
        .unwrap();
        let hash = hasher
            .hash(&password("a long enough passphrase"))
            .await
            .unwrap();
        let slot = hasher.limiter.acquire().await.unwrap();
        let first_guess = password("first guess");
        let queued = hasher.verify(&first_guess, &hash);
        tokio::pin!(queued);
        tokio::select! {
            biased;
            _ = &mut queued => panic!("the only slot is taken"),
            () = std::future::ready(()) => {}
        }

        let refused = hasher.verify(&password("second guess"), &hash).await;

        assert!(matches!(refused, Err(HashError::Busy)));
        assert_eq!(hasher.limiter.waiting(), 1);
        drop(slot);
        assert!(!queued.await.unwrap().matches);
        assert_eq!(hasher.limiter.waiting(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_gives_its_queue_place_back() {
        let hasher = Argon2PasswordHasher::new(
            TINY,
            HashingLimits {
                max_concurrent: 1,
                max_queued: 1,
            },
        )
        .unwrap();
        let slot = hasher.limiter.acquire().await.unwrap();
        let secret = password("a long enough passphrase");
        {
            let abandoned = hasher.hash(&secret);
            tokio::pin!(abandoned);
            tokio::select! {
                biased;
                _ = &mut abandoned => panic!("the only slot is taken"),
                () = std::future::ready(()) => {}
            }
            assert_eq!(hasher.limiter.waiting(), 1);
        }

        let waiting_after_cancel = hasher.limiter.waiting();
        drop(slot);
        let hashed = hasher.hash(&secret).await;

        assert_eq!(waiting_after_cancel, 0);
        assert!(hashed.is_ok());
    }

    #[tokio::test]
    async fn no_queue_means_busy_as_soon_as_the_slots_are_taken() {
        let hasher = Argon2PasswordHasher::new(
            TINY,
            HashingLimits {
                max_concurrent: 1,
                max_queued: 0,
            },
        )
        .unwrap();
        let _slot = hasher.limiter.acquire().await.unwrap();

        let refused = hasher.hash(&password("a long enough passphrase")).await;

        assert!(matches!(refused, Err(HashError::Busy)));
    }

    #[tokio::test]
    async fn the_decoy_hash_is_a_current_argon2id_hash_of_an_unknowable_password() {
        let hasher = hasher(TINY);

        let decoy = hasher.decoy_hash().await.unwrap();
        let verification = hasher.verify(&password(""), &decoy).await.unwrap();

        assert_eq!(
            verification,
            Verification {
                matches: false,
                needs_rehash: false
            }
        );
        assert_ne!(decoy, hasher.decoy_hash().await.unwrap());
    }

    #[test]
    fn blocking_variants_agree_with_the_async_ones() {
        let hasher = hasher(TINY);

        let hash = hasher
            .hash_blocking(&password("a long enough passphrase"))
            .unwrap();

        assert!(
            hasher
                .verify_blocking(&password("a long enough passphrase"), &hash)
                .unwrap()
                .matches
        );
    }

    #[test]
    fn debug_output_shows_settings_only() {
        let rendered = format!("{:?}", hasher(TINY));

        assert!(rendered.contains("memory_kib: 64"));
    }
}

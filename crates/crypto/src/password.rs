//! Argon2id password hashing on a dedicated pool of low-priority threads with preallocated memory.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash as PhcHash, Version};
use async_trait::async_trait;
use authgate_application::ports::{HashError, PasswordHasher, Verification};
use authgate_domain::{Password, PasswordHash};
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

use crate::CryptoError;
use crate::random::{base64url, os_random};

/// Salt length of new hashes: the 16 bytes RFC 9106 §3.1 recommends.
const SALT_BYTES: usize = argon2::RECOMMENDED_SALT_LEN;
/// Output length of new hashes, argon2's default (32 bytes).
const OUTPUT_BYTES: usize = Params::DEFAULT_OUTPUT_LEN;
/// More hashing threads than this is a configuration mistake, not a deployment: each one
/// holds `m` of memory for the life of the process.
const MAX_CONCURRENT_HASHES: usize = 1024;
/// A stored hash may ask for at most this multiple of the configured memory...
const MAX_STORED_MEMORY_FACTOR: usize = 4;
/// ...and never for more than 1 GiB (in 1 KiB Argon2 blocks), unless configured so.
const MAX_STORED_MEMORY_BLOCKS: usize = 1 << 20;
/// A stored hash may ask for at most this multiple of the configured work (memory × passes).
const MAX_STORED_WORK_FACTOR: u64 = 8;
/// How much the hashing threads' nice value is raised, i.e. their priority lowered. Nice 10
/// gives a hashing thread about a tenth of the CPU share of a request thread when both want
/// to run, and lets a woken request thread preempt it at once, yet does not starve logins on a
/// machine kept busy by bearer traffic (nice 19 or `SCHED_IDLE` would).
#[cfg(target_os = "linux")]
const HASHING_NICE_INCREMENT: i32 = 10;

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
/// Each hashing thread holds `memory_kib` of memory for good, so these two numbers bound the
/// memory, threads and waiting callers a login storm can take (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingLimits {
    /// Hashes computed at the same time (`--max-concurrent-hashes`): the number of hashing
    /// threads; at least 1.
    pub max_concurrent: usize,
    /// Callers allowed to wait for a thread; one more is told [`HashError::Busy`] at once.
    pub max_queued: usize,
}

/// The [`PasswordHasher`] port over Argon2id, version 0x13.
///
/// Invariant: the parameters were accepted by Argon2, and exactly `max_concurrent` threads
/// (named `authgate-argon2-N`, at a lowered priority on Linux) each own one buffer of `m`
/// KiB, allocated at construction and reused by every hash, so hashing memory stays at
/// `max_concurrent × m` whatever the load. Work reaches them through a queue of at most
/// `max_queued` waiting jobs. Cheap to clone; clones share the threads, which stop once
/// the last clone is dropped.
#[derive(Clone)]
pub struct Argon2PasswordHasher {
    engine: Arc<Engine>,
    pool: Arc<Pool>,
}

impl fmt::Debug for Argon2PasswordHasher {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Argon2PasswordHasher")
            .field("settings", &self.engine.settings)
            .field("limits", &self.pool.limits)
            .finish()
    }
}

impl Argon2PasswordHasher {
    /// A hasher with the given cost and concurrency limits, and its threads.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Argon2Params`] for parameters Argon2 refuses (such as `m < 8·p`);
    /// [`CryptoError::HashingLimits`] when `max_concurrent` is 0 or absurdly large;
    /// [`CryptoError::HashingPool`] when a thread or its memory cannot be had.
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
        if limits.max_concurrent > MAX_CONCURRENT_HASHES {
            return Err(CryptoError::HashingLimits("too many concurrent hashes"));
        }
        let capacity = limits
            .max_concurrent
            .checked_add(limits.max_queued)
            .ok_or(CryptoError::HashingLimits("too many queued hashes"))?;
        let engine = Arc::new(Engine::new(settings, params));
        // The pool exists before its threads do: if starting one fails, dropping the pool on
        // the way out stops those already started.
        let pool = Pool {
            shared: Arc::new(Shared::new(capacity)),
            limits,
        };
        for index in 0..limits.max_concurrent {
            let memory = engine
                .allocate_memory()
                .map_err(|error| CryptoError::HashingPool(error.into()))?;
            let shared = Arc::clone(&pool.shared);
            let engine = Arc::clone(&engine);
            thread::Builder::new()
                .name(format!("authgate-argon2-{index}"))
                .spawn(move || run_hashing_thread(&shared, &engine, memory))
                .map_err(|error| CryptoError::HashingPool(error.into()))?;
        }
        Ok(Self {
            engine,
            pool: Arc::new(pool),
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

    /// Hashes on the calling thread with memory of its own, bypassing the pool and its
    /// limits; for benchmarks and offline tools.
    ///
    /// # Errors
    ///
    /// [`HashError::Internal`] if Argon2 fails.
    pub fn hash_blocking(&self, password: &Password) -> Result<PasswordHash, HashError> {
        self.engine.hash(password, None)
    }

    /// Verifies on the calling thread with memory of its own, bypassing the pool and its
    /// limits; for benchmarks and offline tools.
    ///
    /// # Errors
    ///
    /// [`HashError::Internal`] for an unparsable, non-Argon2 or absurdly costly stored hash.
    pub fn verify_blocking(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        self.engine.verify(password, hash, None)
    }

    /// Queues the job `work` builds around its reply channel, and waits for the answer.
    async fn run<T>(&self, work: impl FnOnce(Reply<T>) -> Work) -> Result<T, HashError> {
        let (reply, answer) = oneshot::channel();
        // If this future is dropped while the job waits, the ticket takes it out of the
        // queue; once a thread has it, the thread sees the closed channel and skips it, or
        // finishes and its answer is discarded.
        let mut ticket = self.pool.shared.submit(work(reply))?;
        let answer = answer.await;
        ticket.answered();
        answer.map_err(|_| HashError::Internal("the password-hashing threads stopped".into()))?
    }
}

#[async_trait]
impl PasswordHasher for Argon2PasswordHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.clone();
        self.run(|reply| Work::Hash { password, reply }).await
    }

    async fn verify(
        &self,
        password: &Password,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        let password = password.clone();
        let hash = hash.clone();
        self.run(|reply| Work::Verify {
            password,
            hash,
            reply,
        })
        .await
    }

    fn has_capacity(&self) -> bool {
        self.pool.shared.has_capacity()
    }
}

/// The configured Argon2 context, the settings it was built from, and the memory it fills.
struct Engine {
    argon2: Argon2<'static>,
    settings: Argon2Settings,
    /// Argon2 blocks (1 KiB each) the configured parameters fill: each thread's memory.
    blocks: usize,
}

impl Engine {
    fn new(settings: Argon2Settings, params: Params) -> Self {
        Self {
            blocks: params.block_count(),
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            settings,
        }
    }

    /// One thread's memory for the configured parameters, written once so that it is
    /// resident from the start rather than faulted in during the first hashes.
    fn allocate_memory(&self) -> Result<Vec<Block>, std::collections::TryReserveError> {
        let mut memory = Vec::new();
        memory.try_reserve_exact(self.blocks)?;
        memory.resize(self.blocks, Block::new());
        Ok(memory)
    }

    /// Hashes `password` under a fresh salt from the OS, in `memory` if given (argon2
    /// allocates otherwise).
    fn hash(
        &self,
        password: &Password,
        memory: Option<&mut [Block]>,
    ) -> Result<PasswordHash, HashError> {
        let salt = os_random::<SALT_BYTES>().map_err(|error| HashError::Internal(error.into()))?;
        self.hash_with_salt(password, &salt, memory)
    }

    /// The PHC string `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`, as argon2's own
    /// `hash_password` writes it.
    fn hash_with_salt(
        &self,
        password: &Password,
        salt: &[u8],
        memory: Option<&mut [Block]>,
    ) -> Result<PasswordHash, HashError> {
        let mut output = [0_u8; OUTPUT_BYTES];
        compute(
            &self.argon2,
            password.expose().as_bytes(),
            salt,
            &mut output,
            memory,
        )?;
        let phc = PhcHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon2.params()).map_err(internal)?,
            salt: Some(Salt::new(salt).map_err(internal)?),
            hash: Some(Output::new(&output).map_err(internal)?),
        };
        Ok(PasswordHash::new(phc.to_string()))
    }

    /// Recomputes the stored hash's output for `password` with the stored algorithm,
    /// version, parameters and salt, and compares the outputs in constant time.
    fn verify(
        &self,
        password: &Password,
        hash: &PasswordHash,
        memory: Option<&mut [Block]>,
    ) -> Result<Verification, HashError> {
        let stored = StoredHash::parse(hash)?;
        self.check_affordable(&stored.params)?;
        let needs_rehash = !self.is_configured(&stored);
        let argon2 = Argon2::new(stored.algorithm, stored.version, stored.params);
        let mut output = [0_u8; Output::MAX_LENGTH];
        let output = &mut output[..stored.output.len()];
        // A stored hash with more memory than configured (the operator lowered `m`) gets a
        // buffer of its own from argon2 for this one call; it is rehashed on success.
        compute(
            &argon2,
            password.expose().as_bytes(),
            &stored.salt,
            output,
            memory,
        )?;
        let matches = output.ct_eq(stored.output.as_bytes()).into();
        Ok(Verification {
            matches,
            needs_rehash,
        })
    }

    /// Refuses stored parameters far beyond the configured ones, so that a tampered or
    /// corrupted row cannot make one verification take a gigabyte or a minute.
    fn check_affordable(&self, params: &Params) -> Result<(), HashError> {
        let blocks = params.block_count();
        let memory_limit = (self.blocks.saturating_mul(MAX_STORED_MEMORY_FACTOR))
            .min(MAX_STORED_MEMORY_BLOCKS)
            .max(self.blocks);
        let work = (blocks as u64).saturating_mul(u64::from(params.t_cost()));
        let work_limit = (self.blocks as u64)
            .saturating_mul(u64::from(self.settings.iterations))
            .saturating_mul(MAX_STORED_WORK_FACTOR);
        if blocks > memory_limit || work > work_limit {
            return Err(HashError::Internal(Box::new(StoredHashError::TooCostly)));
        }
        Ok(())
    }

    /// Compares the parts that define the cost, not whole `Params`: a parsed hash also
    /// records its output length, which a freshly configured `Params` leaves unset.
    fn is_configured(&self, stored: &StoredHash) -> bool {
        stored.algorithm == Algorithm::Argon2id
            && stored.declared_version == Some(Version::V0x13.into())
            && stored.params.m_cost() == self.settings.memory_kib
            && stored.params.t_cost() == self.settings.iterations
            && stored.params.p_cost() == self.settings.parallelism
    }
}

/// Fills `output` with Argon2 of `password` and `salt`, in `memory` when it is given and
/// large enough, else in memory argon2 allocates for this call.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
    memory: Option<&mut [Block]>,
) -> Result<(), HashError> {
    match memory {
        Some(blocks) if blocks.len() >= argon2.params().block_count() => {
            argon2.hash_password_into_with_memory(password, salt, output, blocks)
        }
        _ => argon2.hash_password_into(password, salt, output),
    }
    .map_err(internal)
}

/// A stored PHC string, taken apart.
struct StoredHash {
    algorithm: Algorithm,
    /// The version to compute with: the stated one, else 0x13 as argon2 assumes.
    version: Version,
    /// The version as stated, if it is.
    declared_version: Option<u32>,
    /// Includes the output length.
    params: Params,
    salt: Salt,
    output: Output,
}

impl StoredHash {
    fn parse(hash: &PasswordHash) -> Result<Self, HashError> {
        let phc = PhcHash::new(hash.expose()).map_err(internal)?;
        let algorithm = Algorithm::new(phc.algorithm.as_str()).map_err(internal)?;
        let version = phc
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(internal)?
            .unwrap_or_default();
        let params = Params::try_from(&phc).map_err(internal)?;
        let (Some(salt), Some(output)) = (phc.salt, phc.hash) else {
            return Err(HashError::Internal(Box::new(StoredHashError::Incomplete)));
        };
        Ok(Self {
            algorithm,
            version,
            declared_version: phc.version,
            params,
            salt,
            output,
        })
    }
}

/// Why a stored hash that parsed cannot be verified.
#[derive(Debug, thiserror::Error)]
enum StoredHashError {
    #[error("the stored password hash has no salt or no output")]
    Incomplete,
    #[error("the stored password hash asks for far more memory or time than configured")]
    TooCostly,
}

fn internal(error: impl std::error::Error + Send + Sync + 'static) -> HashError {
    HashError::Internal(Box::new(error))
}

/// The reply channel of one job.
type Reply<T> = oneshot::Sender<Result<T, HashError>>;

/// What a hashing thread is asked to do.
enum Work {
    Hash {
        password: Password,
        reply: Reply<PasswordHash>,
    },
    Verify {
        password: Password,
        hash: PasswordHash,
        reply: Reply<Verification>,
    },
    /// Runs arbitrary code on a hashing thread, to hold a thread or look at it in tests.
    #[cfg(test)]
    Run(Box<dyn FnOnce() + Send>),
}

/// The hashing threads' shared state, owned by the hasher: dropping it stops them.
struct Pool {
    shared: Arc<Shared>,
    limits: HashingLimits,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// The queue between callers and hashing threads, and the count that bounds it.
struct Shared {
    queue: Mutex<Queue>,
    job_ready: Condvar,
    /// Jobs queued or running; never more than `capacity`.
    admitted: AtomicUsize,
    /// `max_concurrent + max_queued`.
    capacity: usize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    next_id: u64,
    closed: bool,
}

struct Job {
    id: u64,
    work: Work,
}

impl Shared {
    fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            job_ready: Condvar::new(),
            admitted: AtomicUsize::new(0),
            capacity,
        }
    }

    /// The queue; a panic never happens while it is locked, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_capacity(&self) -> bool {
        self.admitted.load(Ordering::Acquire) < self.capacity
    }

    /// Queues `work`, or answers [`HashError::Busy`] at once when every thread is busy and
    /// `max_queued` jobs already wait.
    fn submit(&self, work: Work) -> Result<Ticket<'_>, HashError> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |admitted| {
                (admitted < self.capacity).then_some(admitted + 1)
            })
            .map_err(|_| HashError::Busy)?;
        let id = {
            let mut queue = self.lock();
            let id = queue.next_id;
            queue.next_id += 1;
            queue.jobs.push_back(Job { id, work });
            id
        };
        self.job_ready.notify_one();
        Ok(Ticket {
            shared: self,
            id,
            answered: false,
        })
    }

    /// The next job, waiting for one; `None` once the pool is closed.
    fn next_job(&self) -> Option<Work> {
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return None;
            }
            if let Some(job) = queue.jobs.pop_front() {
                return Some(job.work);
            }
            queue = self
                .job_ready
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Runs `compute` for a caller who still waits, frees the job's place, then answers.
    fn answer<T>(&self, reply: Reply<T>, compute: impl FnOnce() -> Result<T, HashError>) {
        if reply.is_closed() {
            // The caller gave up after a thread took the job: skip the work.
            self.release();
            return;
        }
        let outcome = catch_unwind(AssertUnwindSafe(compute)).unwrap_or_else(|_| {
            Err(HashError::Internal(
                "password hashing panicked; the thread carries on".into(),
            ))
        });
        // The place is free before the answer is sent, so a caller holding its answer never
        // sees its own job still counted.
        self.release();
        // A caller who gave up meanwhile has dropped the receiver: the answer is discarded.
        let _ = reply.send(outcome);
    }

    fn release(&self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }

    fn close(&self) {
        self.lock().closed = true;
        self.job_ready.notify_all();
    }

    #[cfg(test)]
    fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }
}

/// A caller's claim on a queued job: dropped before the answer came (a cancelled request),
/// it takes the job out of the queue if no thread has it yet, and gives its place back.
struct Ticket<'a> {
    shared: &'a Shared,
    id: u64,
    answered: bool,
}

impl Ticket<'_> {
    /// The job ran (or was dropped by its thread): its place is the thread's to give back.
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let removed = {
            let mut queue = self.shared.lock();
            let position = queue.jobs.iter().position(|job| job.id == self.id);
            position.and_then(|position| queue.jobs.remove(position))
        };
        // A job a thread already took is released by that thread.
        if removed.is_some() {
            self.shared.release();
        }
    }
}

/// One hashing thread: lowers its priority, then runs jobs in `memory` until the pool closes.
fn run_hashing_thread(shared: &Shared, engine: &Engine, mut memory: Vec<Block>) {
    lower_priority();
    while let Some(work) = shared.next_job() {
        match work {
            Work::Hash { password, reply } => {
                shared.answer(reply, || engine.hash(&password, Some(&mut memory[..])));
            }
            Work::Verify {
                password,
                hash,
                reply,
            } => {
                shared.answer(reply, || {
                    engine.verify(&password, &hash, Some(&mut memory[..]))
                });
            }
            #[cfg(test)]
            Work::Run(code) => {
                code();
                shared.release();
            }
        }
    }
}

/// Raises the calling thread's nice value, so that request threads (tokio's workers, the
/// database drivers) run first whenever both want a core: bearer requests must never queue
/// behind a login storm. Failing to is logged, not fatal: hashing still works, at normal
/// priority.
#[cfg(target_os = "linux")]
fn lower_priority() {
    use rustix::process::{getpriority_process, setpriority_process};
    // On Linux, PRIO_PROCESS with a thread id sets the nice value of that thread alone
    // (every thread is a scheduling entity of its own), not of the whole process.
    let thread = Some(rustix::thread::gettid());
    let lowered = getpriority_process(thread).and_then(|nice| {
        setpriority_process(thread, nice.saturating_add(HASHING_NICE_INCREMENT).min(19))
    });
    if let Err(error) = lowered {
        tracing::warn!(error = %error, "could not lower the priority of a password-hashing thread; it runs at normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    tracing::debug!("password-hashing threads run at normal priority on this platform");
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use argon2::PasswordHasher as _;

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

    fn limited(max_concurrent: usize, max_queued: usize) -> Argon2PasswordHasher {
        Argon2PasswordHasher::new(
            TINY,
            HashingLimits {
                max_concurrent,
                max_queued,
            },
        )
        .unwrap()
    }

    fn password(secret: &str) -> Password {
        Password::new(secret.to_owned())
    }

    /// A PHC string made by argon2 itself, with the given algorithm, version and costs.
    fn foreign_hash(
        algorithm: Algorithm,
        version: Version,
        (memory, time, lanes): (u32, u32, u32),
        secret: &str,
    ) -> PasswordHash {
        let params = Params::new(memory, time, lanes, None).unwrap();
        let argon2 = Argon2::new(algorithm, version, params);
        PasswordHash::new(argon2.hash_password(secret.as_bytes()).unwrap().to_string())
    }

    /// Occupies one hashing thread until the returned sender is dropped.
    fn hold_a_thread(hasher: &Argon2PasswordHasher) -> mpsc::Sender<()> {
        let (release, wait) = mpsc::channel::<()>();
        let mut ticket = hasher
            .pool
            .shared
            .submit(Work::Run(Box::new(move || {
                let _ = wait.recv();
            })))
            .unwrap();
        // Nobody waits for this job's answer; it must stay queued until a thread runs it.
        ticket.answered();
        release
    }

    /// Runs `code` on a hashing thread and returns what it returned.
    fn on_a_hashing_thread<T: Send + 'static>(
        hasher: &Argon2PasswordHasher,
        code: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (sender, receiver) = mpsc::channel();
        let mut ticket = hasher
            .pool
            .shared
            .submit(Work::Run(Box::new(move || {
                let _ = sender.send(code());
            })))
            .unwrap();
        ticket.answered();
        receiver.recv().unwrap()
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

    #[test]
    fn new_hashes_are_the_phc_strings_argon2_itself_writes() {
        let hasher = hasher(Argon2Settings {
            memory_kib: 256,
            iterations: 2,
            parallelism: 2,
        });
        let salt = [7_u8; SALT_BYTES];
        let mut memory = hasher.engine.allocate_memory().unwrap();
        let reference = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 2, 2, None).unwrap(),
        )
        .hash_password_with_salt(b"a long enough passphrase", &salt)
        .unwrap()
        .to_string();

        let in_thread_memory = hasher
            .engine
            .hash_with_salt(
                &password("a long enough passphrase"),
                &salt,
                Some(&mut memory[..]),
            )
            .unwrap();
        let in_fresh_memory = hasher
            .engine
            .hash_with_salt(&password("a long enough passphrase"), &salt, None)
            .unwrap();

        assert_eq!(in_thread_memory.expose(), reference);
        assert_eq!(in_fresh_memory.expose(), reference);
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
    async fn a_hash_with_more_memory_than_configured_verifies_in_memory_of_its_own() {
        let stored = foreign_hash(
            Algorithm::Argon2id,
            Version::V0x13,
            (256, 1, 1),
            "a long enough passphrase",
        );
        let hasher = hasher(TINY);

        let right = hasher
            .verify(&password("a long enough passphrase"), &stored)
            .await
            .unwrap();
        let wrong = hasher
            .verify(&password("another long passphrase"), &stored)
            .await
            .unwrap();

        assert_eq!(
            right,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        assert!(!wrong.matches);
        assert_eq!(hasher.pool.shared.admitted(), 0);
    }

    #[tokio::test]
    async fn legacy_argon2_variants_verify_as_argon2_does_and_need_a_rehash() {
        let hasher = hasher(TINY);

        for (algorithm, version) in [
            (Algorithm::Argon2i, Version::V0x13),
            (Algorithm::Argon2d, Version::V0x13),
            (Algorithm::Argon2id, Version::V0x10),
        ] {
            let stored = foreign_hash(algorithm, version, (64, 1, 1), "a long enough passphrase");

            let right = hasher
                .verify(&password("a long enough passphrase"), &stored)
                .await
                .unwrap();
            let wrong = hasher
                .verify(&password("a long enough passphrasf"), &stored)
                .await
                .unwrap();

            assert_eq!(
                right,
                Verification {
                    matches: true,
                    needs_rehash: true
                },
                "{algorithm:?} {version:?}"
            );
            assert!(!wrong.matches, "{algorithm:?} {version:?}");
        }
    }

    #[tokio::test]
    async fn a_hash_without_a_version_is_computed_as_0x13_and_needs_a_rehash() {
        let hasher = hasher(TINY);
        let current = hasher
            .hash(&password("a long enough passphrase"))
            .await
            .unwrap();
        let unversioned = PasswordHash::new(current.expose().replace("$v=19", ""));

        let verification = hasher
            .verify(&password("a long enough passphrase"), &unversioned)
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
    async fn an_unparsable_or_incomplete_stored_hash_is_an_internal_error() {
        let hasher = hasher(TINY);

        for stored in [
            "",
            "not a hash",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$argon2id$v=19$m=64,t=1,p=1",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA",
            "$argon2id$v=18$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
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

    #[tokio::test]
    async fn stored_costs_far_beyond_the_configured_ones_are_refused_without_computing() {
        let hasher = hasher(Argon2Settings {
            memory_kib: 64,
            iterations: 2,
            parallelism: 1,
        });
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let output = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let stored =
            |params: &str| PasswordHash::new(format!("$argon2id$v=19${params}${salt}${output}"));

        let four_times_the_memory = hasher
            .verify(&password("anything at all"), &stored("m=256,t=1,p=1"))
            .await;
        let eight_times_the_work = hasher
            .verify(&password("anything at all"), &stored("m=64,t=16,p=1"))
            .await;
        let too_much_memory = hasher
            .verify(&password("anything at all"), &stored("m=264,t=1,p=1"))
            .await;
        let many_lanes = hasher
            .verify(&password("anything at all"), &stored("m=512,t=1,p=64"))
            .await;
        let too_much_work = hasher
            .verify(&password("anything at all"), &stored("m=64,t=17,p=1"))
            .await;
        let a_gigabyte = hasher
            .verify(
                &password("anything at all"),
                &stored("m=4194304,t=4294967295,p=1"),
            )
            .await;

        assert!(matches!(
            four_times_the_memory,
            Ok(Verification { matches: false, .. })
        ));
        assert!(matches!(
            eight_times_the_work,
            Ok(Verification { matches: false, .. })
        ));
        for refused in [too_much_memory, many_lanes, too_much_work, a_gigabyte] {
            let Err(HashError::Internal(error)) = refused else {
                panic!("a costly stored hash was computed: {refused:?}")
            };
            assert!(error.to_string().contains("far more memory or time"));
        }
    }

    #[test]
    fn the_memory_bound_never_refuses_the_configured_cost_and_stops_at_a_gigabyte() {
        let huge = Engine::new(TINY, Params::new(2 * 1024 * 1024, 1, 1, None).unwrap());
        let default = Engine::new(
            Argon2Settings::default(),
            Params::new(19_456, 2, 1, None).unwrap(),
        );

        assert!(huge.check_affordable(huge.argon2.params()).is_ok());
        assert!(
            default
                .check_affordable(&Params::new(4 * 19_456, 2, 1, None).unwrap())
                .is_ok()
        );
        assert!(
            default
                .check_affordable(&Params::new(4 * 19_456 + 8, 2, 1, None).unwrap())
                .is_err()
        );
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
        let absurd_slots = HashingLimits {
            max_concurrent: MAX_CONCURRENT_HASHES + 1,
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
        assert!(matches!(
            Argon2PasswordHasher::new(TINY, absurd_slots),
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

    #[test]
    fn each_thread_owns_memory_for_exactly_the_configured_cost() {
        let hasher = hasher(Argon2Settings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        });

        let memory = hasher.engine.allocate_memory().unwrap();

        assert_eq!(memory.len(), 19_456);
        assert_eq!(memory.len() * Block::SIZE, 19 * 1024 * 1024);
    }

    #[test]
    fn hashing_runs_on_threads_named_after_their_pool() {
        let hasher = limited(1, 0);

        let name = on_a_hashing_thread(&hasher, || thread::current().name().map(str::to_owned));

        assert_eq!(name.as_deref(), Some("authgate-argon2-0"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_run_at_a_lower_priority_than_the_thread_that_made_them() {
        fn current_nice() -> i32 {
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        }
        let own = current_nice();
        let hasher = limited(1, 0);

        let hashing = on_a_hashing_thread(&hasher, current_nice);

        assert_eq!(hashing, (own + HASHING_NICE_INCREMENT).min(19));
    }

    #[tokio::test]
    async fn callers_beyond_the_threads_and_the_queue_are_told_busy_at_once() {
        let hasher = limited(1, 1);
        let hash = hasher
            .hash(&password("a long enough passphrase"))
            .await
            .unwrap();
        let thread = hold_a_thread(&hasher);
        let first_guess = password("first guess");
        let queued = hasher.verify(&first_guess, &hash);
        tokio::pin!(queued);
        tokio::select! {
            biased;
            _ = &mut queued => panic!("the only thread is taken"),
            () = std::future::ready(()) => {}
        }

        let capacity_when_full = hasher.has_capacity();
        let refused = hasher.verify(&password("second guess"), &hash).await;

        assert!(matches!(refused, Err(HashError::Busy)));
        assert!(!capacity_when_full);
        assert_eq!(hasher.pool.shared.admitted(), 2);
        drop(thread);
        assert!(!queued.await.unwrap().matches);
        assert_eq!(hasher.pool.shared.admitted(), 0);
        assert!(hasher.has_capacity());
    }

    #[test]
    fn exactly_max_concurrent_jobs_run_at_once_each_on_its_own_thread() {
        let hasher = limited(2, 1);
        let (started, starts) = mpsc::channel();
        let mut releases = Vec::new();
        for _ in 0..3 {
            let (release, wait) = mpsc::channel::<()>();
            let started = started.clone();
            let mut ticket = hasher
                .pool
                .shared
                .submit(Work::Run(Box::new(move || {
                    let _ = started.send(thread::current().name().map(str::to_owned));
                    let _ = wait.recv();
                })))
                .unwrap();
            ticket.answered();
            releases.push(release);
        }
        // A guard against hanging, not a timing assertion.
        let patience = std::time::Duration::from_secs(30);

        let mut running = vec![
            starts.recv_timeout(patience).unwrap(),
            starts.recv_timeout(patience).unwrap(),
        ];
        let refused = hasher.pool.shared.submit(Work::Run(Box::new(|| {}))).err();
        let third_before_a_thread_is_free = starts.try_recv().ok();
        releases.remove(0);
        let third = starts.recv_timeout(patience).unwrap();

        running.sort();
        assert_eq!(
            running,
            [
                Some("authgate-argon2-0".to_owned()),
                Some("authgate-argon2-1".to_owned())
            ]
        );
        assert!(matches!(refused, Some(HashError::Busy)));
        assert_eq!(third_before_a_thread_is_free, None);
        assert!(third.is_some());
    }

    #[tokio::test]
    async fn a_cancelled_waiter_gives_its_queue_place_back() {
        let hasher = limited(1, 1);
        let thread = hold_a_thread(&hasher);
        let secret = password("a long enough passphrase");
        {
            let abandoned = hasher.hash(&secret);
            tokio::pin!(abandoned);
            tokio::select! {
                biased;
                _ = &mut abandoned => panic!("the only thread is taken"),
                () = std::future::ready(()) => {}
            }
            assert_eq!(hasher.pool.shared.admitted(), 2);
        }

        let admitted_after_cancel = hasher.pool.shared.admitted();
        drop(thread);
        let hashed = hasher.hash(&secret).await;

        assert_eq!(admitted_after_cancel, 1);
        assert!(hashed.is_ok());
        assert_eq!(hasher.pool.shared.admitted(), 0);
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_after_a_thread_took_it_is_skipped_and_frees_its_place() {
        let hasher = limited(1, 2);
        let thread = hold_a_thread(&hasher);
        let (reply, answer) = oneshot::channel();
        let mut ticket = hasher
            .pool
            .shared
            .submit(Work::Hash {
                password: password("a long enough passphrase"),
                reply,
            })
            .unwrap();
        // As if a thread had taken the job just before the caller was cancelled.
        ticket.answered();
        drop(ticket);
        drop(answer);

        let admitted_with_the_orphan = hasher.pool.shared.admitted();
        drop(thread);
        // Queued behind the orphan, so answered only once the thread has dealt with it.
        let next = hasher.hash(&password("a long enough passphrase")).await;

        assert_eq!(admitted_with_the_orphan, 2);
        assert!(next.is_ok());
        assert_eq!(hasher.pool.shared.admitted(), 0);
    }

    #[tokio::test]
    async fn no_queue_means_busy_as_soon_as_the_threads_are_taken() {
        let hasher = limited(1, 0);
        let _thread = hold_a_thread(&hasher);

        let refused = hasher.hash(&password("a long enough passphrase")).await;

        assert!(matches!(refused, Err(HashError::Busy)));
        assert!(!hasher.has_capacity());
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

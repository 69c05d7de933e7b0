//! The ceiling for the password grant: raw Argon2id verifications with the server's default
//! parameters (m = 19456 KiB, t = 2, p = 1), on as many std threads as the server has hashing
//! slots, for the same window as the HTTP workloads.

use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};

use super::stats::{Outcome, Tally};

/// SPEC §1's defaults, which `cargo xtask bench` runs the server with.
pub const MEMORY_KIB: u32 = 19_456;
/// Time cost.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

/// Verifies a correct password against its PHC hash on `threads` threads, each in a bounded
/// loop, counting the verifications that finish between `warmup` and `warmup + duration`
/// from now.
///
/// # Errors
///
/// When Argon2 refuses the parameters or a verification fails.
pub fn ceiling(threads: usize, warmup: Duration, duration: Duration) -> anyhow::Result<Tally> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).context("Argon2 parameters")?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = b"a correct horse, verified repeatedly";
    let phc = argon2
        .hash_password(password)
        .context("hashing the reference password")?
        .to_string();

    let start = Instant::now() + warmup;
    let end = start + duration;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Tally> {
                    let mut tally = Tally::default();
                    while Instant::now() < end {
                        let started = Instant::now();
                        // Parse each time, as the server does for every login.
                        let parsed = PasswordHash::new(&phc).context("parsing the PHC string")?;
                        argon2
                            .verify_password(password, &parsed)
                            .context("verifying the reference password")?;
                        let finished = Instant::now();
                        if start <= finished && finished <= end {
                            tally.record(Outcome::Ok, finished - started);
                        }
                    }
                    Ok(tally)
                })
            })
            .collect();
        let mut total = Tally::default();
        for handle in handles {
            let tally = handle
                .join()
                .map_err(|_| anyhow::anyhow!("an Argon2 thread panicked"))??;
            total.merge(tally);
        }
        Ok(total)
    })
}

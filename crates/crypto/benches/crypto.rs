//! Benchmarks of the hot cryptography: access-token signing and verification (first
//! presentation and cached) per algorithm, refresh-token generation, derivation and hashing,
//! and one Argon2id verification in fresh memory and on the hashing pool.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use authgate_application::ports::{
    KeyMaterial, KeyStore, PasswordHasher as _, RefreshTokenCodec as _, RepositoryError,
    SigningAlgorithm, StoredKey, TokenSigner as _,
};
use authgate_application::testing::FixedClock;
use authgate_crypto::{
    Argon2PasswordHasher, Argon2Settings, HashingLimits, HmacRefreshTokenCodec, JwtTokenSigner,
    SignerConfig, new_secret,
};
use authgate_domain::{
    AccessClaims, ClientId, Password, Scope, ScopeSet, SessionEpoch, Timestamp, UserId, Username,
};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const NOW: i64 = 1_700_000_000;

/// Just enough of a key store for the signer to create and load its key.
#[derive(Default)]
struct BenchKeyStore {
    keys: Mutex<Vec<StoredKey>>,
    secrets: Mutex<HashMap<String, KeyMaterial>>,
}

#[async_trait]
impl KeyStore for BenchKeyStore {
    async fn list(&self) -> Result<Vec<StoredKey>, RepositoryError> {
        Ok(self.keys.lock().expect("unpoisoned").clone())
    }

    async fn insert_if_no_active(&self, key: &StoredKey) -> Result<bool, RepositoryError> {
        let mut keys = self.keys.lock().expect("unpoisoned");
        if keys
            .iter()
            .any(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none())
        {
            return Ok(false);
        }
        keys.push(key.clone());
        Ok(true)
    }

    async fn rotate(&self, key: &StoredKey) -> Result<(), RepositoryError> {
        self.keys.lock().expect("unpoisoned").push(key.clone());
        Ok(())
    }

    async fn rotate_if_due(
        &self,
        key: &StoredKey,
        _created_before: Timestamp,
    ) -> Result<bool, RepositoryError> {
        self.keys.lock().expect("unpoisoned").push(key.clone());
        Ok(true)
    }

    async fn secret(
        &self,
        name: &str,
        candidate: &KeyMaterial,
    ) -> Result<KeyMaterial, RepositoryError> {
        let mut secrets = self.secrets.lock().expect("unpoisoned");
        Ok(secrets
            .entry(name.to_owned())
            .or_insert_with(|| candidate.clone())
            .clone())
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn claims() -> AccessClaims {
    AccessClaims {
        issuer: "http://127.0.0.1:8080".into(),
        subject: UserId::new(uuid::Uuid::from_u128(0x1234_5678)),
        audience: "authgate".into(),
        expires_at: Timestamp::from_unix(NOW + 900),
        issued_at: Timestamp::from_unix(NOW),
        jwt_id: "0f0e0d0c-0b0a-4908-8706-050403020100".into(),
        scope: ScopeSet::from_iter([Scope::ProfileRead, Scope::ProfileWrite]),
        client_id: ClientId::default_client(),
        username: Username::parse("alice").expect("a valid username"),
        session_epoch: SessionEpoch::new(0),
    }
}

fn access_tokens(criterion: &mut Criterion) {
    let runtime = runtime();
    let mut group = criterion.benchmark_group("access_token");
    for algorithm in [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Hs256,
    ] {
        let config = SignerConfig {
            algorithm,
            hs256_secret: Some(b"bench-secret-bench-secret-bench-secret".to_vec()),
            access_token_ttl: Duration::from_secs(900),
        };
        let signer = runtime
            .block_on(JwtTokenSigner::load(
                Arc::new(BenchKeyStore::default()),
                config,
                Arc::new(FixedClock::at_unix(NOW)),
            ))
            .expect("a signer");
        let claims = claims();
        let token = runtime.block_on(signer.sign(&claims)).expect("a token");

        group.bench_function(format!("sign/{}", algorithm.as_str()), |bencher| {
            bencher.iter(|| runtime.block_on(signer.sign(black_box(&claims))));
        });
        // The same token again and again: after the first, answered by the verified cache.
        group.bench_function(format!("verify_cached/{}", algorithm.as_str()), |bencher| {
            bencher.iter(|| runtime.block_on(signer.verify(black_box(&token))));
        });
        // A token whose `exp` is long past: the signer leaves judging claims to its caller
        // and never caches such a token, so every verification is a full one (the SHA-256
        // of the token and a cache miss included), as on a token's first presentation.
        let expired = AccessClaims {
            expires_at: Timestamp::from_unix(NOW - 3_600),
            issued_at: Timestamp::from_unix(NOW - 4_500),
            ..claims.clone()
        };
        let uncacheable = runtime.block_on(signer.sign(&expired)).expect("a token");
        group.bench_function(
            format!("verify_uncached/{}", algorithm.as_str()),
            |bencher| {
                bencher.iter(|| runtime.block_on(signer.verify(black_box(&uncacheable))));
            },
        );
    }
    group.finish();
}

fn refresh_tokens(criterion: &mut Criterion) {
    let codec = HmacRefreshTokenCodec::new(new_secret()).expect("a codec");
    let token = codec.generate();
    let mut group = criterion.benchmark_group("refresh_token");
    group.bench_function("generate", |bencher| bencher.iter(|| codec.generate()));
    group.bench_function("successor", |bencher| {
        bencher.iter(|| codec.successor(black_box(&token)))
    });
    group.bench_function("hash", |bencher| {
        bencher.iter(|| codec.hash(black_box(&token)))
    });
    group.finish();
}

fn password_verification(criterion: &mut Criterion) {
    let runtime = runtime();
    let limits = HashingLimits {
        max_concurrent: 1,
        max_queued: 0,
    };
    let hasher = Argon2PasswordHasher::new(Argon2Settings::default(), limits).expect("a hasher");
    let password = Password::new("correct horse battery staple".into());
    let hash = hasher.hash_blocking(&password).expect("a hash");
    let mut group = criterion.benchmark_group("argon2id_default_params");
    group.sample_size(10);
    // In memory allocated for the call, as before the pool existed.
    group.bench_function("verify_blocking", |bencher| {
        bencher.iter(|| hasher.verify_blocking(black_box(&password), black_box(&hash)));
    });
    // On a pool thread, in its preallocated memory, including the queue and the reply.
    group.bench_function("verify_via_port", |bencher| {
        bencher.iter(|| runtime.block_on(hasher.verify(black_box(&password), black_box(&hash))));
    });
    group.finish();
}

criterion_group!(
    benches,
    access_tokens,
    refresh_tokens,
    password_verification
);
criterion_main!(benches);

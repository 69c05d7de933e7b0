//! [`KeyStore`] on SQLite.

use async_trait::async_trait;
use authgate_application::ports::{KeyMaterial, KeyStore, RepositoryError, StoredKey};
use authgate_domain::Timestamp;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::BEGIN_IMMEDIATE;
use crate::error::unavailable;
use crate::rows::{KeyRow, decode_all};

/// [`KeyStore`] on SQLite: `signing_keys`, whose partial unique index allows one unretired
/// key per algorithm, and `server_secrets`.
pub(crate) struct SqliteKeyStore {
    pool: SqlitePool,
}

impl SqliteKeyStore {
    /// An adapter over `pool`.
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn list(&self) -> Result<Vec<StoredKey>, RepositoryError> {
        let rows = sqlx::query_as::<_, KeyRow>(
            "SELECT kid, alg, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_all(rows)
    }

    async fn insert_if_no_active(&self, key: &StoredKey) -> Result<bool, RepositoryError> {
        // The partial unique index decides: of several instances starting at once, one insert
        // wins and the others do nothing. The key is stored active whatever its `retired_at`.
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, NULL) \
             ON CONFLICT (alg) WHERE retired_at IS NULL DO NOTHING",
        )
        .bind(key.kid.as_str())
        .bind(key.algorithm.as_str())
        .bind(key.private_key.0.as_slice())
        .bind(key.created_at.unix())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn rotate(&self, key: &StoredKey) -> Result<(), RepositoryError> {
        let mut transaction = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(unavailable)?;
        retire_and_insert(&mut transaction, key).await?;
        transaction.commit().await.map_err(unavailable)
    }

    async fn rotate_if_due(
        &self,
        key: &StoredKey,
        created_before: Timestamp,
    ) -> Result<bool, RepositoryError> {
        // BEGIN IMMEDIATE takes the write lock before the read, so racing instances take turns
        // and each later one reads the key the earlier one stored.
        let mut transaction = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(unavailable)?;
        let active_created_at = sqlx::query_scalar::<_, i64>(
            "SELECT created_at FROM signing_keys WHERE alg = ?1 AND retired_at IS NULL",
        )
        .bind(key.algorithm.as_str())
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        if active_created_at.is_some_and(|created_at| created_at >= created_before.unix()) {
            transaction.rollback().await.map_err(unavailable)?;
            return Ok(false);
        }
        retire_and_insert(&mut transaction, key).await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn secret(
        &self,
        name: &str,
        candidate: &KeyMaterial,
    ) -> Result<KeyMaterial, RepositoryError> {
        // Insert-or-ignore, then read: whoever inserted first, everyone reads the same bytes.
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate.0.as_slice())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let value =
            sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM server_secrets WHERE name = ?1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(KeyMaterial(value))
    }
}

/// Retires the active key for `key.algorithm` at `key.created_at` and stores `key` as active,
/// inside the caller's transaction.
async fn retire_and_insert(
    transaction: &mut Transaction<'_, Sqlite>,
    key: &StoredKey,
) -> Result<(), RepositoryError> {
    sqlx::query("UPDATE signing_keys SET retired_at = ?2 WHERE alg = ?1 AND retired_at IS NULL")
        .bind(key.algorithm.as_str())
        .bind(key.created_at.unix())
        .execute(&mut **transaction)
        .await
        .map_err(unavailable)?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, NULL)",
    )
    .bind(key.kid.as_str())
    .bind(key.algorithm.as_str())
    .bind(key.private_key.0.as_slice())
    .bind(key.created_at.unix())
    .execute(&mut **transaction)
    .await
    .map_err(unavailable)?;
    Ok(())
}

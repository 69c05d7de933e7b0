//! [`KeyStore`] on SQLite.

use async_trait::async_trait;
use authgate_application::ports::{KeyMaterial, KeyStore, RepositoryError, StoredKey};
use authgate_domain::Timestamp;
use sqlx::SqliteConnection;

use super::SqliteDatabase;
use crate::error::unavailable;
use crate::rows::{KeyRow, decode_all};

/// [`KeyStore`] on SQLite: `signing_keys`, whose partial unique index allows one unretired
/// key per algorithm, and `server_secrets`.
pub(crate) struct SqliteKeyStore {
    database: SqliteDatabase,
}

impl SqliteKeyStore {
    /// An adapter over `database`.
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        Self { database }
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn list(&self) -> Result<Vec<StoredKey>, RepositoryError> {
        let rows = sqlx::query_as::<_, KeyRow>(
            "SELECT kid, alg, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.database.pool)
        .await
        .map_err(unavailable)?;
        decode_all(rows)
    }

    async fn insert_if_no_active(&self, key: &StoredKey) -> Result<bool, RepositoryError> {
        // The partial unique index decides: of several instances starting at once, one insert
        // wins and the others do nothing. The key is stored active whatever its `retired_at`.
        let _turn = self.database.write_turn().await?;
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, NULL) \
             ON CONFLICT (alg) WHERE retired_at IS NULL DO NOTHING",
        )
        .bind(key.kid.as_str())
        .bind(key.algorithm.as_str())
        .bind(key.private_key.0.as_slice())
        .bind(key.created_at.unix())
        .execute(&self.database.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn rotate(&self, key: &StoredKey) -> Result<(), RepositoryError> {
        let mut transaction = self.database.begin_write().await?;
        let result = retire_and_insert(&mut transaction, key).await;
        transaction.finish(result).await
    }

    async fn rotate_if_due(
        &self,
        key: &StoredKey,
        created_before: Timestamp,
    ) -> Result<bool, RepositoryError> {
        // BEGIN IMMEDIATE takes the write lock before the read, so racing instances take turns
        // and each later one reads the key the earlier one stored.
        let mut transaction = self.database.begin_write().await?;
        let result = rotate_if_due_within(&mut transaction, key, created_before).await;
        transaction.finish(result).await
    }

    async fn secret(
        &self,
        name: &str,
        candidate: &KeyMaterial,
    ) -> Result<KeyMaterial, RepositoryError> {
        // Insert-or-ignore, then read: whoever inserted first, everyone reads the same bytes.
        // Only the insert writes, so the turn ends before the read.
        {
            let _turn = self.database.write_turn().await?;
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(candidate.0.as_slice())
                .execute(&self.database.pool)
                .await
                .map_err(unavailable)?;
        }
        let value =
            sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM server_secrets WHERE name = ?1")
                .bind(name)
                .fetch_one(&self.database.pool)
                .await
                .map_err(unavailable)?;
        Ok(KeyMaterial(value))
    }
}

/// [`KeyStore::rotate_if_due`] inside the caller's write transaction.
async fn rotate_if_due_within(
    connection: &mut SqliteConnection,
    key: &StoredKey,
    created_before: Timestamp,
) -> Result<bool, RepositoryError> {
    let active_created_at = sqlx::query_scalar::<_, i64>(
        "SELECT created_at FROM signing_keys WHERE alg = ?1 AND retired_at IS NULL",
    )
    .bind(key.algorithm.as_str())
    .fetch_optional(&mut *connection)
    .await
    .map_err(unavailable)?;
    if active_created_at.is_some_and(|created_at| created_at >= created_before.unix()) {
        return Ok(false);
    }
    retire_and_insert(connection, key).await?;
    Ok(true)
}

/// Retires the active key for `key.algorithm` at `key.created_at` and stores `key` as active,
/// inside the caller's transaction.
async fn retire_and_insert(
    connection: &mut SqliteConnection,
    key: &StoredKey,
) -> Result<(), RepositoryError> {
    sqlx::query("UPDATE signing_keys SET retired_at = ?2 WHERE alg = ?1 AND retired_at IS NULL")
        .bind(key.algorithm.as_str())
        .bind(key.created_at.unix())
        .execute(&mut *connection)
        .await
        .map_err(unavailable)?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, NULL)",
    )
    .bind(key.kid.as_str())
    .bind(key.algorithm.as_str())
    .bind(key.private_key.0.as_slice())
    .bind(key.created_at.unix())
    .execute(&mut *connection)
    .await
    .map_err(unavailable)?;
    Ok(())
}

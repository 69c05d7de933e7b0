//! [`AccessTokenDenylist`] on SQLite.

use async_trait::async_trait;
use authgate_application::ports::{AccessTokenDenylist, RepositoryError};
use authgate_domain::Timestamp;

use super::SqliteDatabase;
use crate::error::unavailable;

/// [`AccessTokenDenylist`] on SQLite, in `access_token_denylist`.
pub(crate) struct SqliteDenylist {
    database: SqliteDatabase,
}

impl SqliteDenylist {
    /// An adapter over `database`.
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        Self { database }
    }
}

#[async_trait]
impl AccessTokenDenylist for SqliteDenylist {
    async fn deny(&self, jwt_id: &str, expires_at: Timestamp) -> Result<(), RepositoryError> {
        // Denying again keeps the later expiry, so a second revocation never shortens the first.
        let _turn = self.database.write_turn().await?;
        sqlx::query(
            "INSERT INTO access_token_denylist (jti, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
        )
        .bind(jwt_id)
        .bind(expires_at.unix())
        .execute(&self.database.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        let _turn = self.database.write_turn().await?;
        let purged = sqlx::query("DELETE FROM access_token_denylist WHERE expires_at < ?1")
            .bind(now.unix())
            .execute(&self.database.pool)
            .await
            .map_err(unavailable)?
            .rows_affected();
        Ok(purged)
    }
}

//! [`AccessTokenDenylist`] on PostgreSQL.

use async_trait::async_trait;
use authgate_application::ports::{AccessTokenDenylist, RepositoryError};
use authgate_domain::Timestamp;
use sqlx::PgPool;

use crate::error::unavailable;

/// [`AccessTokenDenylist`] on PostgreSQL, in `access_token_denylist`.
pub(crate) struct PgDenylist {
    pool: PgPool,
}

impl PgDenylist {
    /// An adapter over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl AccessTokenDenylist for PgDenylist {
    async fn deny(&self, jwt_id: &str, expires_at: Timestamp) -> Result<(), RepositoryError> {
        // Denying again keeps the later expiry, so a second revocation never shortens the first.
        sqlx::query(
            "INSERT INTO access_token_denylist (jti, expires_at) VALUES ($1, to_timestamp($2)) \
             ON CONFLICT (jti) DO UPDATE \
             SET expires_at = greatest(access_token_denylist.expires_at, excluded.expires_at)",
        )
        .bind(jwt_id)
        .bind(expires_at.unix())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        let purged =
            sqlx::query("DELETE FROM access_token_denylist WHERE expires_at < to_timestamp($1)")
                .bind(now.unix())
                .execute(&self.pool)
                .await
                .map_err(unavailable)?
                .rows_affected();
        Ok(purged)
    }
}

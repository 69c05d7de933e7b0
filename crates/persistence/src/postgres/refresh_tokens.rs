//! [`RefreshTokenStore`] on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use authgate_application::ports::{
    RefreshFamily, RefreshTokenHash, RefreshTokenStore, RepositoryError, RotateOutcome,
};
use authgate_domain::{Timestamp, UserId};
use sqlx::PgPool;

use super::scope_array;
use crate::error::unavailable;
use crate::rows::{
    FamilyRow, PresentedTokenRow, REUSE_REASON, Rotation, decode_optional, epoch_column,
};

/// The columns of [`FamilyRow`] from the family aliased `f`, converted to its primitive types.
macro_rules! family_columns {
    () => {
        "f.id::text AS id, f.user_id::text AS user_id, array_to_string(f.scope, ' ') AS scope, f.client_id, \
         f.session_epoch, extract(epoch FROM f.issued_at)::bigint AS issued_at, \
         extract(epoch FROM f.expires_at)::bigint AS expires_at"
    };
}

/// [`RefreshTokenStore`] on PostgreSQL: families in `refresh_token_families`, every token
/// ever issued (by SHA-256) in `refresh_tokens`.
pub(crate) struct PgRefreshTokenStore {
    pool: PgPool,
}

impl PgRefreshTokenStore {
    /// An adapter over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl RefreshTokenStore for PgRefreshTokenStore {
    async fn create_family(
        &self,
        family: &RefreshFamily,
        token: &RefreshTokenHash,
    ) -> Result<(), RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO refresh_token_families (id, user_id, scope, client_id, session_epoch, issued_at, expires_at) \
             VALUES ($1::uuid, $2::uuid, $3, $4, $5, to_timestamp($6), to_timestamp($7))",
        )
        .bind(family.id.to_string())
        .bind(family.user_id.to_string())
        .bind(scope_array(family.scope))
        .bind(family.client_id.as_str())
        .bind(epoch_column(family.session_epoch))
        .bind(family.issued_at.unix())
        .bind(family.expires_at.unix())
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        sqlx::query("INSERT INTO refresh_tokens (hash, family_id, issued_at) VALUES ($1, $2::uuid, to_timestamp($3))")
            .bind(token.0.as_slice())
            .bind(family.id.to_string())
            .bind(family.issued_at.unix())
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        transaction.commit().await.map_err(unavailable)
    }

    async fn rotate(
        &self,
        token: &RefreshTokenHash,
        successor: &RefreshTokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<RotateOutcome, RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        // FOR UPDATE locks the token and its family until commit. A racing rotation blocks
        // here, then re-reads both rows as this one left them: exactly one sees the token current.
        let presented = sqlx::query_as::<_, PresentedTokenRow>(concat!(
            "SELECT ",
            family_columns!(),
            ", extract(epoch FROM f.revoked_at)::bigint AS revoked_at, ",
            "extract(epoch FROM t.rotated_at)::bigint AS rotated_at, t.successor_hash ",
            "FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id ",
            "WHERE t.hash = $1 FOR UPDATE"
        ))
        .bind(token.0.as_slice())
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let outcome = match Rotation::decide(presented, successor, now, grace)? {
            Rotation::Invalid => RotateOutcome::Invalid,
            Rotation::Replay(family) => RotateOutcome::Replayed(family),
            Rotation::Rotate(family) => {
                sqlx::query("UPDATE refresh_tokens SET rotated_at = to_timestamp($2), successor_hash = $3 WHERE hash = $1")
                    .bind(token.0.as_slice())
                    .bind(now.unix())
                    .bind(successor.0.as_slice())
                    .execute(&mut *transaction)
                    .await
                    .map_err(unavailable)?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (hash, family_id, parent_hash, issued_at) \
                     VALUES ($1, $2::uuid, $3, to_timestamp($4))",
                )
                .bind(successor.0.as_slice())
                .bind(family.id.to_string())
                .bind(token.0.as_slice())
                .bind(now.unix())
                .execute(&mut *transaction)
                .await
                .map_err(unavailable)?;
                RotateOutcome::Rotated(family)
            }
            Rotation::RevokeForReuse(family_id) => {
                sqlx::query(
                    "UPDATE refresh_token_families SET revoked_at = to_timestamp($2), revoked_reason = $3 \
                     WHERE id = $1::uuid AND revoked_at IS NULL",
                )
                .bind(family_id.to_string())
                .bind(now.unix())
                .bind(REUSE_REASON)
                .execute(&mut *transaction)
                .await
                .map_err(unavailable)?;
                RotateOutcome::Reused
            }
        };
        transaction.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn find_current(
        &self,
        token: &RefreshTokenHash,
        now: Timestamp,
    ) -> Result<Option<RefreshFamily>, RepositoryError> {
        let row = sqlx::query_as::<_, FamilyRow>(concat!(
            "SELECT ",
            family_columns!(),
            " FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id ",
            "WHERE t.hash = $1 AND t.rotated_at IS NULL AND f.revoked_at IS NULL AND f.expires_at > to_timestamp($2)"
        ))
        .bind(token.0.as_slice())
        .bind(now.unix())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_optional(row)
    }

    async fn revoke_family_of(
        &self,
        token: &RefreshTokenHash,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        // A family keeps the first reason it was revoked for.
        sqlx::query(
            "UPDATE refresh_token_families SET revoked_at = to_timestamp($2), revoked_reason = $3 \
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1) AND revoked_at IS NULL",
        )
        .bind(token.0.as_slice())
        .bind(now.unix())
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_user_families(
        &self,
        user_id: UserId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        sqlx::query(
            "UPDATE refresh_token_families SET revoked_at = to_timestamp($2), revoked_reason = $3 \
             WHERE user_id = $1::uuid AND revoked_at IS NULL",
        )
        .bind(user_id.to_string())
        .bind(now.unix())
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        // The tokens go with their family through ON DELETE CASCADE.
        let purged =
            sqlx::query("DELETE FROM refresh_token_families WHERE expires_at < to_timestamp($1)")
                .bind(now.unix())
                .execute(&self.pool)
                .await
                .map_err(unavailable)?
                .rows_affected();
        Ok(purged)
    }
}

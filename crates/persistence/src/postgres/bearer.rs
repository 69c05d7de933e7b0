//! [`BearerLookup`] on PostgreSQL.

use async_trait::async_trait;
use authgate_application::ports::{BearerLookup, BearerSubject, RepositoryError};
use authgate_domain::UserId;
use sqlx::PgPool;

use super::users::user_columns;
use crate::error::unavailable;
use crate::rows::BearerRow;

/// [`BearerLookup`] on PostgreSQL: `access_token_denylist` and `users` in one statement.
pub(crate) struct PgBearerLookup {
    pool: PgPool,
}

impl PgBearerLookup {
    /// An adapter over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl BearerLookup for PgBearerLookup {
    async fn bearer_subject(
        &self,
        user_id: UserId,
        jwt_id: &str,
    ) -> Result<BearerSubject, RepositoryError> {
        // The one-row `one` makes the statement answer a row, and so `revoked`, even when no
        // user matches; each side is a primary-key lookup, and one statement sees one snapshot.
        let row = sqlx::query_as::<_, BearerRow>(concat!(
            "SELECT EXISTS (SELECT 1 FROM access_token_denylist WHERE jti = $2) AS revoked, ",
            user_columns!(),
            " FROM (SELECT 1) AS one LEFT JOIN users ON users.id = $1::uuid"
        ))
        .bind(user_id.to_string())
        .bind(jwt_id)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(BearerSubject::try_from(row)?)
    }
}

//! [`BearerLookup`] on SQLite.

use async_trait::async_trait;
use authgate_application::ports::{BearerLookup, BearerSubject, RepositoryError};
use authgate_domain::UserId;
use sqlx::SqlitePool;

use super::users::user_columns;
use crate::error::unavailable;
use crate::rows::BearerRow;

/// [`BearerLookup`] on SQLite: `access_token_denylist` and `users` in one statement.
pub(crate) struct SqliteBearerLookup {
    pool: SqlitePool,
}

impl SqliteBearerLookup {
    /// An adapter over `pool`.
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl BearerLookup for SqliteBearerLookup {
    async fn bearer_subject(
        &self,
        user_id: UserId,
        jwt_id: &str,
    ) -> Result<BearerSubject, RepositoryError> {
        // The one-row `one` makes the statement answer a row, and so `revoked`, even when no
        // user matches; each side is a primary-key lookup.
        let row = sqlx::query_as::<_, BearerRow>(concat!(
            "SELECT EXISTS (SELECT 1 FROM access_token_denylist WHERE jti = ?2) AS revoked, ",
            user_columns!(),
            " FROM (SELECT 1) AS one LEFT JOIN users ON users.id = ?1"
        ))
        .bind(user_id.to_string())
        .bind(jwt_id)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(BearerSubject::try_from(row)?)
    }
}

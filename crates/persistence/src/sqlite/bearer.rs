//! [`BearerLookup`] on SQLite.

use async_trait::async_trait;
use authgate_application::ports::{BearerLookup, BearerSubject, RepositoryError};
use authgate_domain::UserId;

use super::SqliteDatabase;
use super::users::user_columns;
use crate::error::unavailable;
use crate::rows::BearerRow;

/// [`BearerLookup`] on SQLite: `access_token_denylist` and `users` in one statement, on the
/// calling thread (see [`super::direct`]).
pub(crate) struct SqliteBearerLookup {
    database: SqliteDatabase,
}

impl SqliteBearerLookup {
    /// An adapter over `database`.
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        Self { database }
    }
}

/// The lookup: the one-row `one` makes the statement answer a row, and so `revoked`, even
/// when no user matches; each side is a primary-key lookup.
const BEARER_SUBJECT: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM access_token_denylist WHERE jti = ?2) AS revoked, ",
    user_columns!(),
    " FROM (SELECT 1) AS one LEFT JOIN users ON users.id = ?1"
);

#[async_trait]
impl BearerLookup for SqliteBearerLookup {
    async fn bearer_subject(
        &self,
        user_id: UserId,
        jwt_id: &str,
    ) -> Result<BearerSubject, RepositoryError> {
        let user_id = user_id.to_string();
        let row = match &self.database.direct {
            Some(direct) => direct.readers.read(|connection| {
                connection
                    .prepare_cached(BEARER_SUBJECT)?
                    .query_row((&user_id, jwt_id), BearerRow::from_direct)
            })?,
            None => sqlx::query_as::<_, BearerRow>(BEARER_SUBJECT)
                .bind(user_id)
                .bind(jwt_id)
                .fetch_one(&self.database.pool)
                .await
                .map_err(unavailable)?,
        };
        Ok(BearerSubject::try_from(row)?)
    }
}

//! [`RefreshTokenStore`] on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use authgate_application::ports::{
    RefreshFamily, RefreshTokenHash, RefreshTokenStore, RepositoryError, RotateOutcome,
};
use authgate_domain::{Timestamp, UserId};
use rusqlite::OptionalExtension;
use sqlx::SqliteConnection;

use super::SqliteDatabase;
use crate::error::unavailable;
use crate::rows::{
    FamilyRow, PresentedTokenRow, REUSE_REASON, Rotation, decode_optional, epoch_column,
};

/// [`RefreshTokenStore`] on SQLite: families in `refresh_token_families`, every token ever
/// issued (by SHA-256) in `refresh_tokens`.
pub(crate) struct SqliteRefreshTokenStore {
    database: SqliteDatabase,
}

impl SqliteRefreshTokenStore {
    /// An adapter over `database`.
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        Self { database }
    }
}

#[async_trait]
impl RefreshTokenStore for SqliteRefreshTokenStore {
    async fn create_family(
        &self,
        family: &RefreshFamily,
        token: &RefreshTokenHash,
    ) -> Result<(), RepositoryError> {
        match &self.database.direct {
            Some(direct) => {
                let turn = self.database.owned_write_turn().await?;
                let (family, token) = (family.clone(), *token);
                direct
                    .writer
                    .transaction(turn, move |transaction| {
                        insert_family_directly(transaction, &family, &token)
                    })
                    .await
            }
            None => {
                let mut transaction = self.database.begin_write().await?;
                let result = insert_family(&mut transaction, family, token).await;
                transaction.finish(result).await
            }
        }
    }

    async fn rotate(
        &self,
        token: &RefreshTokenHash,
        successor: &RefreshTokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<RotateOutcome, RepositoryError> {
        // Racing rotations of one token queue for the write lock, so each one reads the token
        // as the previous one left it: exactly one sees it current.
        match &self.database.direct {
            Some(direct) => {
                let turn = self.database.owned_write_turn().await?;
                let (token, successor) = (*token, *successor);
                direct
                    .writer
                    .transaction(turn, move |transaction| {
                        rotate_directly(transaction, &token, &successor, now, grace)
                    })
                    .await
            }
            None => {
                let mut transaction = self.database.begin_write().await?;
                let result = rotate_within(&mut transaction, token, successor, now, grace).await;
                transaction.finish(result).await
            }
        }
    }

    async fn find_current(
        &self,
        token: &RefreshTokenHash,
        now: Timestamp,
    ) -> Result<Option<RefreshFamily>, RepositoryError> {
        let row = sqlx::query_as::<_, FamilyRow>(
            "SELECT f.id, f.user_id, f.scope, f.client_id, f.session_epoch, f.issued_at, f.expires_at \
             FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id \
             WHERE t.hash = ?1 AND t.rotated_at IS NULL AND f.revoked_at IS NULL AND f.expires_at > ?2",
        )
        .bind(token.0.as_slice())
        .bind(now.unix())
        .fetch_optional(&self.database.pool)
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
        let _turn = self.database.write_turn().await?;
        sqlx::query(
            "UPDATE refresh_token_families SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = ?1) AND revoked_at IS NULL",
        )
        .bind(token.0.as_slice())
        .bind(now.unix())
        .bind(reason)
        .execute(&self.database.pool)
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
        let _turn = self.database.write_turn().await?;
        sqlx::query(
            "UPDATE refresh_token_families SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE user_id = ?1 AND revoked_at IS NULL",
        )
        .bind(user_id.to_string())
        .bind(now.unix())
        .bind(reason)
        .execute(&self.database.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        // The tokens go with their family through ON DELETE CASCADE.
        let _turn = self.database.write_turn().await?;
        let purged = sqlx::query("DELETE FROM refresh_token_families WHERE expires_at < ?1")
            .bind(now.unix())
            .execute(&self.database.pool)
            .await
            .map_err(unavailable)?
            .rows_affected();
        Ok(purged)
    }
}

/// Stores a family: `?1` id, `?2` user, `?3` scope, `?4` client, `?5` session epoch,
/// `?6` issued at, `?7` expires at.
const INSERT_FAMILY: &str = "INSERT INTO refresh_token_families (id, user_id, scope, client_id, session_epoch, issued_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Stores a family's first token: `?1` hash, `?2` family, `?3` issued at.
const INSERT_FIRST_TOKEN: &str =
    "INSERT INTO refresh_tokens (hash, family_id, issued_at) VALUES (?1, ?2, ?3)";

/// [`insert_family`] inside the caller's write transaction on a direct connection.
fn insert_family_directly(
    transaction: &rusqlite::Transaction<'_>,
    family: &RefreshFamily,
    token: &RefreshTokenHash,
) -> Result<(), RepositoryError> {
    let family_id = family.id.to_string();
    transaction
        .prepare_cached(INSERT_FAMILY)
        .and_then(|mut statement| {
            statement.execute((
                &family_id,
                family.user_id.to_string(),
                family.scope.to_string(),
                family.client_id.as_str(),
                epoch_column(family.session_epoch),
                family.issued_at.unix(),
                family.expires_at.unix(),
            ))
        })
        .and_then(|_| transaction.prepare_cached(INSERT_FIRST_TOKEN))
        .and_then(|mut statement| {
            statement.execute((token.0.as_slice(), &family_id, family.issued_at.unix()))
        })
        .map_err(unavailable)?;
    Ok(())
}

/// Stores `family` and its first token inside the caller's write transaction.
async fn insert_family(
    connection: &mut SqliteConnection,
    family: &RefreshFamily,
    token: &RefreshTokenHash,
) -> Result<(), RepositoryError> {
    sqlx::query(INSERT_FAMILY)
        .bind(family.id.to_string())
        .bind(family.user_id.to_string())
        .bind(family.scope.to_string())
        .bind(family.client_id.as_str())
        .bind(epoch_column(family.session_epoch))
        .bind(family.issued_at.unix())
        .bind(family.expires_at.unix())
        .execute(&mut *connection)
        .await
        .map_err(unavailable)?;
    sqlx::query(INSERT_FIRST_TOKEN)
        .bind(token.0.as_slice())
        .bind(family.id.to_string())
        .bind(family.issued_at.unix())
        .execute(&mut *connection)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// [`RefreshTokenStore::rotate`] inside the caller's write transaction on a direct
/// connection: the statements of [`rotate_within`], without a thread hop between them.
fn rotate_directly(
    transaction: &rusqlite::Transaction<'_>,
    token: &RefreshTokenHash,
    successor: &RefreshTokenHash,
    now: Timestamp,
    grace: Duration,
) -> Result<RotateOutcome, RepositoryError> {
    let presented = transaction
        .prepare_cached(PRESENTED_TOKEN)
        .and_then(|mut statement| {
            statement
                .query_row([token.0.as_slice()], PresentedTokenRow::from_direct)
                .optional()
        })
        .map_err(unavailable)?;
    let outcome = match Rotation::decide(presented, successor, now, grace)? {
        Rotation::Invalid => RotateOutcome::Invalid,
        Rotation::Replay(family) => RotateOutcome::Replayed(family),
        Rotation::Rotate(family) => {
            let family_id = family.id.to_string();
            transaction
                .prepare_cached(MARK_ROTATED)
                .and_then(|mut statement| {
                    statement.execute((token.0.as_slice(), now.unix(), successor.0.as_slice()))
                })
                .and_then(|_| transaction.prepare_cached(INSERT_SUCCESSOR))
                .and_then(|mut statement| {
                    statement.execute((
                        successor.0.as_slice(),
                        &family_id,
                        token.0.as_slice(),
                        now.unix(),
                    ))
                })
                .map_err(unavailable)?;
            RotateOutcome::Rotated(family)
        }
        Rotation::RevokeForReuse(family_id) => {
            transaction
                .prepare_cached(REVOKE_FOR_REUSE)
                .and_then(|mut statement| {
                    statement.execute((family_id.to_string(), now.unix(), REUSE_REASON))
                })
                .map_err(unavailable)?;
            RotateOutcome::Reused
        }
    };
    Ok(outcome)
}

/// The presented token and its family, for [`Rotation::decide`].
const PRESENTED_TOKEN: &str = "SELECT f.id, f.user_id, f.scope, f.client_id, f.session_epoch, f.issued_at, f.expires_at, \
            f.revoked_at, t.rotated_at, t.successor_hash \
     FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id \
     WHERE t.hash = ?1";

/// Marks the presented token (`?1`) rotated at `?2` into the successor `?3`.
const MARK_ROTATED: &str =
    "UPDATE refresh_tokens SET rotated_at = ?2, successor_hash = ?3 WHERE hash = ?1";

/// Stores the successor `?1` in family `?2`, the child of `?3`, issued at `?4`.
const INSERT_SUCCESSOR: &str =
    "INSERT INTO refresh_tokens (hash, family_id, parent_hash, issued_at) VALUES (?1, ?2, ?3, ?4)";

/// Revokes family `?1` at `?2` for reason `?3`, unless it is revoked already.
const REVOKE_FOR_REUSE: &str = "UPDATE refresh_token_families SET revoked_at = ?2, revoked_reason = ?3 \
     WHERE id = ?1 AND revoked_at IS NULL";

/// [`RefreshTokenStore::rotate`] inside the caller's write transaction.
async fn rotate_within(
    connection: &mut SqliteConnection,
    token: &RefreshTokenHash,
    successor: &RefreshTokenHash,
    now: Timestamp,
    grace: Duration,
) -> Result<RotateOutcome, RepositoryError> {
    let presented = sqlx::query_as::<_, PresentedTokenRow>(PRESENTED_TOKEN)
        .bind(token.0.as_slice())
        .fetch_optional(&mut *connection)
        .await
        .map_err(unavailable)?;
    let outcome = match Rotation::decide(presented, successor, now, grace)? {
        Rotation::Invalid => RotateOutcome::Invalid,
        Rotation::Replay(family) => RotateOutcome::Replayed(family),
        Rotation::Rotate(family) => {
            sqlx::query(MARK_ROTATED)
                .bind(token.0.as_slice())
                .bind(now.unix())
                .bind(successor.0.as_slice())
                .execute(&mut *connection)
                .await
                .map_err(unavailable)?;
            sqlx::query(INSERT_SUCCESSOR)
                .bind(successor.0.as_slice())
                .bind(family.id.to_string())
                .bind(token.0.as_slice())
                .bind(now.unix())
                .execute(&mut *connection)
                .await
                .map_err(unavailable)?;
            RotateOutcome::Rotated(family)
        }
        Rotation::RevokeForReuse(family_id) => {
            sqlx::query(REVOKE_FOR_REUSE)
                .bind(family_id.to_string())
                .bind(now.unix())
                .bind(REUSE_REASON)
                .execute(&mut *connection)
                .await
                .map_err(unavailable)?;
            RotateOutcome::Reused
        }
    };
    Ok(outcome)
}

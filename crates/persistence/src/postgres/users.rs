//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use authgate_application::ports::{NewUser, RepositoryError, UserPatch, UserRepository};
use authgate_domain::{PasswordHash, Scope, User, UserId, Username};
use sqlx::{PgConnection, PgPool};

use super::scope_array;
use crate::error::{unavailable, user_insert_error};
use crate::rows::{CredentialsRow, UserRow, decode_all, decode_optional, keep_an_administrator};

/// The columns of [`UserRow`], converted to its primitive types, for `SELECT` and `RETURNING`.
macro_rules! user_columns {
    () => {
        "id::text AS id, username, email, full_name, disabled, array_to_string(scopes, ' ') AS scopes, \
         extract(epoch FROM created_at)::bigint AS created_at, session_epoch"
    };
}
pub(super) use user_columns;

/// Key of the transaction-scoped advisory lock that serialises changes which may remove an
/// administrator (`update`, `delete`). Without it, two transactions demoting two different
/// administrators would each still see the other one and both commit, leaving none.
const ADMINISTRATORS_LOCK: i64 = 0x6175_7468_6761_0001;

/// [`UserRepository`] on PostgreSQL.
pub(crate) struct PgUserRepository {
    pool: PgPool,
}

impl PgUserRepository {
    /// An adapter over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, RepositoryError> {
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_optional(row)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1::uuid"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_optional(row)
    }

    async fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<(User, PasswordHash)>, RepositoryError> {
        let row = sqlx::query_as::<_, CredentialsRow>(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_optional(row)
    }

    async fn insert(&self, new_user: &NewUser) -> Result<User, RepositoryError> {
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "INSERT INTO users (id, username, password_hash, email, full_name, disabled, scopes, created_at, session_epoch) ",
            "VALUES ($1::uuid, $2, $3, $4, $5, false, $6, to_timestamp($7), 0) RETURNING ",
            user_columns!()
        ))
        .bind(new_user.id.to_string())
        .bind(new_user.username.as_str())
        .bind(new_user.password_hash.expose())
        .bind(new_user.profile.email.as_deref())
        .bind(new_user.profile.full_name.as_deref())
        .bind(scope_array(new_user.scopes))
        .bind(new_user.created_at.unix())
        .fetch_one(&self.pool)
        .await
        .map_err(user_insert_error)?;
        Ok(User::try_from(row)?)
    }

    async fn insert_if_empty(&self, new_user: &NewUser) -> Result<bool, RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        // SHARE ROW EXCLUSIVE conflicts with itself and with every writer, so instances
        // bootstrapping together take turns, and the emptiness check below (a new statement,
        // hence a new snapshot) sees the user an earlier turn committed. Readers are not blocked.
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, email, full_name, disabled, scopes, created_at, session_epoch) \
             SELECT $1::uuid, $2, $3, $4, $5, false, $6, to_timestamp($7), 0 WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(new_user.id.to_string())
        .bind(new_user.username.as_str())
        .bind(new_user.password_hash.expose())
        .bind(new_user.profile.email.as_deref())
        .bind(new_user.profile.full_name.as_deref())
        .bind(scope_array(new_user.scopes))
        .bind(new_user.created_at.unix())
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?
        .rows_affected();
        transaction.commit().await.map_err(unavailable)?;
        Ok(inserted == 1)
    }

    async fn change_password(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<User, RepositoryError> {
        // One statement, so no request can see the new hash with the old epoch. The modulo
        // wraps like `SessionEpoch::next`.
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE users SET password_hash = $2, session_epoch = (session_epoch + 1) % 4294967296 ",
            "WHERE id = $1::uuid RETURNING ",
            user_columns!()
        ))
        .bind(id.to_string())
        .bind(password_hash.expose())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_optional(row)?.ok_or(RepositoryError::NotFound)
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<(), RepositoryError> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1::uuid")
            .bind(id.to_string())
            .bind(password_hash.expose())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn update(
        &self,
        username: &Username,
        patch: &UserPatch,
    ) -> Result<User, RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        lock_administrators(&mut transaction).await?;
        let administrators_before = count_administrators(&mut transaction).await?;
        // `$4`/`$6` say whether email/full_name are being set, since `$5`/`$7` being NULL
        // may mean "clear it" or "leave it".
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE users SET disabled = coalesce($2, disabled), scopes = coalesce($3, scopes), ",
            "email = CASE WHEN $4 THEN $5 ELSE email END, full_name = CASE WHEN $6 THEN $7 ELSE full_name END ",
            "WHERE username = $1 RETURNING ",
            user_columns!()
        ))
        .bind(username.as_str())
        .bind(patch.disabled)
        .bind(patch.scopes.map(scope_array))
        .bind(patch.email.is_some())
        .bind(patch.email.as_ref().and_then(Option::as_deref))
        .bind(patch.full_name.is_some())
        .bind(patch.full_name.as_ref().and_then(Option::as_deref))
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        // Returning early drops the transaction, which rolls the change back.
        let user = changed_user(&mut transaction, administrators_before, row).await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(user)
    }

    async fn delete(&self, username: &Username) -> Result<User, RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        lock_administrators(&mut transaction).await?;
        let administrators_before = count_administrators(&mut transaction).await?;
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "DELETE FROM users WHERE username = $1 RETURNING ",
            user_columns!()
        ))
        .bind(username.as_str())
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        // Returning early drops the transaction, which rolls the change back.
        let user = changed_user(&mut transaction, administrators_before, row).await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(user)
    }

    async fn list(
        &self,
        after: Option<Username>,
        limit: u32,
    ) -> Result<Vec<User>, RepositoryError> {
        // The empty string sorts before every valid username, so it stands for "from the
        // start"; the column's "C" collation makes this byte order, as on SQLite.
        let rows = sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username > $1 ORDER BY username LIMIT $2"
        ))
        .bind(after.as_ref().map_or("", Username::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_all(rows)
    }
}

/// Takes [`ADMINISTRATORS_LOCK`] until the transaction ends.
async fn lock_administrators(connection: &mut PgConnection) -> Result<(), RepositoryError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADMINISTRATORS_LOCK)
        .execute(connection)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// The user an update or delete returned (`NotFound` when none), once the change is known
/// to keep an administrator where there was one; on an error the caller rolls back.
async fn changed_user(
    connection: &mut PgConnection,
    administrators_before: i64,
    row: Option<UserRow>,
) -> Result<User, RepositoryError> {
    let row = row.ok_or(RepositoryError::NotFound)?;
    keep_an_administrator(
        administrators_before,
        count_administrators(connection).await?,
    )?;
    Ok(User::try_from(row)?)
}

/// How many enabled users hold `users:write`.
async fn count_administrators(connection: &mut PgConnection) -> Result<i64, RepositoryError> {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM users WHERE NOT disabled AND $1 = ANY (scopes)",
    )
    .bind(Scope::UsersWrite.as_str())
    .fetch_one(connection)
    .await
    .map_err(unavailable)
}

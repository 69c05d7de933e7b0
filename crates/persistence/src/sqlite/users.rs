//! [`UserRepository`] on SQLite.

use async_trait::async_trait;
use authgate_application::ports::{NewUser, RepositoryError, UserPatch, UserRepository};
use authgate_domain::{PasswordHash, Scope, User, UserId, Username};
use rusqlite::OptionalExtension;
use sqlx::SqliteConnection;

use super::SqliteDatabase;
use crate::error::{unavailable, user_insert_error};
use crate::rows::{CredentialsRow, UserRow, decode_all, decode_optional, keep_an_administrator};

/// The columns of [`UserRow`], for `SELECT` and `RETURNING`.
macro_rules! user_columns {
    () => {
        "id, username, email, full_name, disabled, scopes, created_at, session_epoch"
    };
}
pub(super) use user_columns;

/// [`UserRepository`] on SQLite. Scopes are stored space-delimited, timestamps as seconds.
pub(crate) struct SqliteUserRepository {
    database: SqliteDatabase,
}

impl SqliteUserRepository {
    /// An adapter over `database`.
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        Self { database }
    }
}

impl SqliteUserRepository {
    /// The row `find` (a `SELECT` on `?1`) answers for `key`: on a direct reader, read with
    /// `from_direct`, or through sqlx for an in-memory database.
    async fn find_one<Row>(
        &self,
        find: &'static str,
        key: &str,
        from_direct: fn(&rusqlite::Row<'_>) -> rusqlite::Result<Row>,
    ) -> Result<Option<Row>, RepositoryError>
    where
        Row: for<'row> sqlx::FromRow<'row, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        match &self.database.direct {
            Some(direct) => direct.readers.read(|connection| {
                connection
                    .prepare_cached(find)?
                    .query_row([key], from_direct)
                    .optional()
            }),
            None => sqlx::query_as::<_, Row>(find)
                .bind(key)
                .fetch_optional(&self.database.pool)
                .await
                .map_err(unavailable),
        }
    }
}

#[async_trait]
impl UserRepository for SqliteUserRepository {
    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, RepositoryError> {
        const FIND: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = ?1"
        );
        decode_optional(
            self.find_one(FIND, username.as_str(), UserRow::from_direct)
                .await?,
        )
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        const FIND: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?1");
        decode_optional(
            self.find_one(FIND, &id.to_string(), UserRow::from_direct)
                .await?,
        )
    }

    async fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<(User, PasswordHash)>, RepositoryError> {
        const FIND: &str = concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE username = ?1"
        );
        decode_optional(
            self.find_one(FIND, username.as_str(), CredentialsRow::from_direct)
                .await?,
        )
    }

    async fn insert(&self, new_user: &NewUser) -> Result<User, RepositoryError> {
        let _turn = self.database.write_turn().await?;
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "INSERT INTO users (id, username, password_hash, email, full_name, disabled, scopes, created_at, session_epoch) ",
            "VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, 0) RETURNING ",
            user_columns!()
        ))
        .bind(new_user.id.to_string())
        .bind(new_user.username.as_str())
        .bind(new_user.password_hash.expose())
        .bind(new_user.profile.email.as_deref())
        .bind(new_user.profile.full_name.as_deref())
        .bind(new_user.scopes.to_string())
        .bind(new_user.created_at.unix())
        .fetch_one(&self.database.pool)
        .await
        .map_err(user_insert_error)?;
        Ok(User::try_from(row)?)
    }

    async fn insert_if_empty(&self, new_user: &NewUser) -> Result<bool, RepositoryError> {
        // One statement that writes takes SQLite's write lock before it reads anything, so
        // the emptiness check and the insert are one step for every instance sharing the file.
        let _turn = self.database.write_turn().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, email, full_name, disabled, scopes, created_at, session_epoch) \
             SELECT ?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, 0 WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(new_user.id.to_string())
        .bind(new_user.username.as_str())
        .bind(new_user.password_hash.expose())
        .bind(new_user.profile.email.as_deref())
        .bind(new_user.profile.full_name.as_deref())
        .bind(new_user.scopes.to_string())
        .bind(new_user.created_at.unix())
        .execute(&self.database.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn change_password(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<User, RepositoryError> {
        // One statement, so no request can see the new hash with the old epoch. The modulo
        // wraps like `SessionEpoch::next`.
        let _turn = self.database.write_turn().await?;
        let row = sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE users SET password_hash = ?2, session_epoch = (session_epoch + 1) % 4294967296 ",
            "WHERE id = ?1 RETURNING ",
            user_columns!()
        ))
        .bind(id.to_string())
        .bind(password_hash.expose())
        .fetch_optional(&self.database.pool)
        .await
        .map_err(unavailable)?;
        decode_optional(row)?.ok_or(RepositoryError::NotFound)
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<(), RepositoryError> {
        let _turn = self.database.write_turn().await?;
        sqlx::query("UPDATE users SET password_hash = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(password_hash.expose())
            .execute(&self.database.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn update(
        &self,
        username: &Username,
        patch: &UserPatch,
    ) -> Result<User, RepositoryError> {
        let mut transaction = self.database.begin_write().await?;
        let result = update_keeping_an_administrator(&mut transaction, username, patch).await;
        transaction.finish(result).await
    }

    async fn delete(&self, username: &Username) -> Result<User, RepositoryError> {
        let mut transaction = self.database.begin_write().await?;
        let result = delete_keeping_an_administrator(&mut transaction, username).await;
        transaction.finish(result).await
    }

    async fn list(
        &self,
        after: Option<Username>,
        limit: u32,
    ) -> Result<Vec<User>, RepositoryError> {
        // The empty string sorts before every valid username, so it stands for "from the start".
        let rows = sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username > ?1 ORDER BY username LIMIT ?2"
        ))
        .bind(after.as_ref().map_or("", Username::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.database.pool)
        .await
        .map_err(unavailable)?;
        decode_all(rows)
    }
}

/// Applies `patch` to `username` inside the caller's write transaction, failing (for the
/// caller to roll back) if that leaves no administrator where there was one.
async fn update_keeping_an_administrator(
    connection: &mut SqliteConnection,
    username: &Username,
    patch: &UserPatch,
) -> Result<User, RepositoryError> {
    let administrators_before = count_administrators(connection).await?;
    // `?4`/`?6` say whether email/full_name are being set, since `?5`/`?7` being NULL
    // may mean "clear it" or "leave it".
    let row = sqlx::query_as::<_, UserRow>(concat!(
        "UPDATE users SET disabled = coalesce(?2, disabled), scopes = coalesce(?3, scopes), ",
        "email = CASE WHEN ?4 THEN ?5 ELSE email END, full_name = CASE WHEN ?6 THEN ?7 ELSE full_name END ",
        "WHERE username = ?1 RETURNING ",
        user_columns!()
    ))
    .bind(username.as_str())
    .bind(patch.disabled)
    .bind(patch.scopes.map(|scopes| scopes.to_string()))
    .bind(patch.email.is_some())
    .bind(patch.email.as_ref().and_then(Option::as_deref))
    .bind(patch.full_name.is_some())
    .bind(patch.full_name.as_ref().and_then(Option::as_deref))
    .fetch_optional(&mut *connection)
    .await
    .map_err(unavailable)?;
    changed_user(connection, administrators_before, row).await
}

/// Deletes `username` inside the caller's write transaction, failing (for the caller to roll
/// back) if that leaves no administrator where there was one.
async fn delete_keeping_an_administrator(
    connection: &mut SqliteConnection,
    username: &Username,
) -> Result<User, RepositoryError> {
    let administrators_before = count_administrators(connection).await?;
    let row = sqlx::query_as::<_, UserRow>(concat!(
        "DELETE FROM users WHERE username = ?1 RETURNING ",
        user_columns!()
    ))
    .bind(username.as_str())
    .fetch_optional(&mut *connection)
    .await
    .map_err(unavailable)?;
    changed_user(connection, administrators_before, row).await
}

/// The user an update or delete returned (`NotFound` when none), once the change is known
/// to keep an administrator where there was one; on an error the caller rolls back.
async fn changed_user(
    connection: &mut SqliteConnection,
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
async fn count_administrators(connection: &mut SqliteConnection) -> Result<i64, RepositoryError> {
    // Padding both sides with spaces matches whole scope names only.
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM users WHERE NOT disabled AND instr(' ' || scopes || ' ', ' ' || ?1 || ' ') > 0",
    )
    .bind(Scope::UsersWrite.as_str())
    .fetch_one(connection)
    .await
    .map_err(unavailable)
}

//! Errors at the seam: what opening a database can fail with, and sqlx errors turned into
//! [`RepositoryError`]s so that nothing above this crate names sqlx.

use authgate_application::ports::{BoxError, RepositoryError};

/// Why the database could not be opened or migrated.
///
/// Messages never contain the database URL, which may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The URL's scheme (held here, without the rest of the URL) is neither `sqlite` nor
    /// `postgres`/`postgresql`.
    #[error(
        "unsupported database URL scheme '{0}': expected sqlite://, postgres:// or postgresql://"
    )]
    UnsupportedUrl(String),
    /// The URL is malformed or the database could not be opened.
    #[error("could not connect to the database")]
    Connect(#[source] BoxError),
    /// A migration failed, or the database is newer than this binary.
    #[error("could not migrate the database")]
    Migrate(#[source] BoxError),
}

impl PersistenceError {
    pub(crate) fn connect(error: sqlx::Error) -> Self {
        Self::Connect(error.into())
    }

    pub(crate) fn migrate(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error.into())
    }
}

/// Any driver failure: the database is down, a statement failed, or a row did not decode.
pub(crate) fn unavailable(error: impl Into<BoxError>) -> RepositoryError {
    RepositoryError::Unavailable(error.into())
}

/// A failed insert into `users`: a unique violation can only be the username, because ids
/// are random v4 UUIDs; anything else is an infrastructure failure.
pub(crate) fn user_insert_error(error: sqlx::Error) -> RepositoryError {
    match error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            RepositoryError::UsernameTaken
        }
        other => unavailable(other),
    }
}

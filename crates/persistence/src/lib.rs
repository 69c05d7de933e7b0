//! authgate's storage: the repository ports of `authgate-application`, implemented with sqlx
//! on SQLite and PostgreSQL, and the migrations that shape both databases.
//!
//! [`Database::connect`] picks the backend from the URL scheme; [`Database::repositories`]
//! hands out the adapters as `Arc<dyn Port>`, so no sqlx type leaves this crate. The atomic
//! operations the ports promise (refresh-token rotation, the last-administrator rule, the
//! one-time bootstrap user, one active signing key per algorithm, a due key rotation made by
//! exactly one instance, counting a login attempt) are each one statement or one transaction
//! here, never a read followed by a write in the caller.
//!
//! [`Database::login_throttle`] counts login attempts in the database on PostgreSQL, where
//! several instances share it, and in process memory on SQLite, where one instance per
//! database file is the supported deployment.
//!
//! This crate makes no security decisions and knows no HTTP, hashing or signing: it stores
//! what the use cases hand it, and applies the domain's throttle policy to stored counters.
//! Both dialects pass the same contract suite (`src/contract.rs`) as the in-memory fakes of
//! `authgate_application::testing`.

mod error;
mod postgres;
mod rows;
mod sqlite;
mod throttle;

#[cfg(test)]
mod contract;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use authgate_application::ports::{
    AccessTokenDenylist, BearerLookup, HealthProbe, KeyStore, LoginThrottle, RefreshTokenStore,
    UserRepository,
};
use authgate_domain::ThrottlePolicy;

pub use error::PersistenceError;
pub use throttle::MemoryLoginThrottle;

/// The database engine behind a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, from a `sqlite:` URL.
    Sqlite,
    /// PostgreSQL, from a `postgres:` or `postgresql:` URL.
    Postgres,
}

impl Backend {
    /// A short lower-case name, for logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// How many connections to keep and how long to wait for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// The most connections open at once. An in-memory SQLite database always uses one.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    /// Ten connections and a five-second wait.
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Every repository port, backed by one database.
#[derive(Clone)]
pub struct Repositories {
    /// Users and their password hashes.
    pub users: Arc<dyn UserRepository>,
    /// Refresh-token families.
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    /// Revoked access tokens.
    pub denylist: Arc<dyn AccessTokenDenylist>,
    /// The user and denylist reads of bearer authentication, in one statement.
    pub bearer_lookup: Arc<dyn BearerLookup>,
    /// Signing keys and server secrets.
    pub keys: Arc<dyn KeyStore>,
    /// Readiness probe.
    pub health: Arc<dyn HealthProbe>,
}

/// A connection pool to authgate's database, SQLite or PostgreSQL.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    /// Login-throttling counters, shared by every clone of this database handle.
    throttle: Arc<dyn LoginThrottle>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(sqlite::SqliteDatabase),
    Postgres(sqlx::PgPool),
}

impl Database {
    /// Opens a pool to the database at `url`: `sqlite://path` (the file is created if
    /// missing), `sqlite::memory:`, or `postgres://…` / `postgresql://…`.
    ///
    /// At least one connection is opened before this returns, so a wrong URL or an
    /// unreachable server fails here rather than on the first request.
    ///
    /// # Errors
    ///
    /// - [`PersistenceError::UnsupportedUrl`] for any other scheme.
    /// - [`PersistenceError::Connect`] when the URL is malformed or the database cannot be opened.
    pub async fn connect(url: &str, options: PoolOptions) -> Result<Self, PersistenceError> {
        let pool = match scheme(url) {
            Some("sqlite") => Pool::Sqlite(
                sqlite::connect(url, options)
                    .await
                    .map_err(PersistenceError::connect)?,
            ),
            Some("postgres" | "postgresql") => Pool::Postgres(
                postgres::connect(url, options)
                    .await
                    .map_err(PersistenceError::connect)?,
            ),
            other => {
                return Err(PersistenceError::UnsupportedUrl(
                    other.unwrap_or_default().to_owned(),
                ));
            }
        };
        let throttle: Arc<dyn LoginThrottle> = match &pool {
            // One instance per SQLite file is the supported deployment, so its counters can
            // live in process memory, which spares every login attempt a write transaction.
            Pool::Sqlite(_) => Arc::new(MemoryLoginThrottle::new(ThrottlePolicy::default())),
            // Several instances share a PostgreSQL database: they must count together.
            Pool::Postgres(pool) => Arc::new(postgres::PgLoginThrottle::new(
                pool.clone(),
                ThrottlePolicy::default(),
            )),
        };
        Ok(Self { pool, throttle })
    }

    /// The login-throttling counters of this deployment: in this process's memory on SQLite
    /// (shared by every clone of this handle), in the database on PostgreSQL (shared by every
    /// instance).
    #[must_use]
    pub fn login_throttle(&self) -> Arc<dyn LoginThrottle> {
        self.throttle.clone()
    }

    /// Applies the migrations compiled into the binary that the database has not seen yet.
    /// Safe to run from several instances at once: they take turns under a lock (an advisory
    /// lock on PostgreSQL, the write lock on SQLite) and later ones find nothing to do.
    ///
    /// # Errors
    ///
    /// [`PersistenceError::Migrate`] when a migration fails or the database has migrations
    /// this binary does not know (it is older than the schema).
    pub async fn migrate(&self) -> Result<(), PersistenceError> {
        match &self.pool {
            Pool::Sqlite(database) => sqlite::migrate(database).await,
            Pool::Postgres(pool) => postgres::migrate(pool).await,
        }
        .map_err(PersistenceError::migrate)
    }

    /// Which engine this is, for logs.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The repository adapters, sharing this pool.
    #[must_use]
    pub fn repositories(&self) -> Repositories {
        match &self.pool {
            Pool::Sqlite(database) => sqlite::repositories(database),
            Pool::Postgres(pool) => postgres::repositories(pool),
        }
    }

    /// Waits for checked-out connections to come back, then closes every connection.
    /// Queries started afterwards fail as unavailable.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(database) => database.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

impl fmt::Debug for Database {
    /// Shows the backend only: the pool's connect options would include the URL's password.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Database")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// The scheme of `url` (RFC 3986 §3.1), if it has a well-formed one.
///
/// Only the scheme is ever echoed in an error, never the rest of the URL, which may hold a
/// password.
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut characters = scheme.chars();
    let well_formed = characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && characters.all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '+' | '-' | '.')
        });
    well_formed.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_selects_the_backend_and_nothing_else_is_read() {
        assert_eq!(scheme("sqlite://authgate.db"), Some("sqlite"));
        assert_eq!(scheme("sqlite::memory:"), Some("sqlite"));
        assert_eq!(
            scheme("postgresql://user:secret@host/db"),
            Some("postgresql")
        );
        assert_eq!(scheme("authgate.db"), None);
        assert_eq!(scheme("user secret:x"), None);
    }

    #[tokio::test]
    async fn an_unsupported_url_is_refused_without_echoing_its_password() {
        let result = Database::connect(
            "mysql://root:hunter2@localhost/authgate",
            PoolOptions::default(),
        )
        .await;

        let Err(error) = result else {
            panic!("mysql must be refused")
        };
        assert!(matches!(&error, PersistenceError::UnsupportedUrl(scheme) if scheme == "mysql"));
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[tokio::test]
    async fn a_malformed_postgres_url_fails_to_connect_without_echoing_its_password() {
        let result = Database::connect(
            "postgres://admin:hunter2@localhost:notaport/authgate",
            PoolOptions::default(),
        )
        .await;

        let Err(error) = result else {
            panic!("a bad port must be refused")
        };
        assert!(matches!(error, PersistenceError::Connect(_)));
        let chain = error_chain(&error);
        assert!(!chain.contains("hunter2"), "{chain}");
    }

    #[tokio::test]
    async fn an_in_memory_sqlite_database_keeps_its_data_between_queries() {
        let database = Database::connect("sqlite::memory:", PoolOptions::default())
            .await
            .expect("in-memory sqlite opens");
        database.migrate().await.expect("migrations apply");
        let keys = database.repositories().keys;

        let first = keys
            .secret("s", &authgate_application::ports::KeyMaterial(vec![1]))
            .await
            .expect("stored");
        let second = keys
            .secret("s", &authgate_application::ports::KeyMaterial(vec![2]))
            .await
            .expect("read");

        assert_eq!(first, second);
        assert_eq!(database.backend(), Backend::Sqlite);
        assert_eq!(format!("{database:?}"), "Database { backend: Sqlite, .. }");
        database.close().await;
    }

    fn error_chain(error: &dyn std::error::Error) -> String {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        chain
    }
}

//! The SQLite adapters: connection settings, migrations, and one adapter per port.
//!
//! Every transaction that writes opens with `BEGIN IMMEDIATE`, which takes the database's
//! write lock up front. A deferred transaction would take it only at its first write, and in
//! WAL mode a writer whose read snapshot went stale in the meantime gets `SQLITE_BUSY` at
//! once, without waiting out the busy timeout; taking the lock first makes racing writers
//! queue instead, and makes every read-then-write transaction serialisable. A single
//! statement needs no transaction: one that writes takes the lock before it reads.

mod denylist;
mod keys;
mod refresh_tokens;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authgate_application::ports::{HealthProbe, RepositoryError};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::unavailable;
use crate::{PoolOptions, Repositories};

pub(crate) use denylist::SqliteDenylist;
pub(crate) use keys::SqliteKeyStore;
pub(crate) use refresh_tokens::SqliteRefreshTokenStore;
pub(crate) use users::SqliteUserRepository;

/// The SQLite migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The statement that opens every transaction that writes (see the module docs).
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool on the SQLite database at `url`, creating the file if it is missing.
pub(crate) async fn connect(url: &str, options: PoolOptions) -> Result<SqlitePool, sqlx::Error> {
    let connect_options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        // WAL lets readers proceed while one connection writes; NORMAL synchronous is the
        // setting SQLite recommends with WAL (durable except for the last commits on power loss).
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Off by default in SQLite: without it ON DELETE CASCADE does nothing.
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool_options = SqlitePoolOptions::new().acquire_timeout(options.acquire_timeout);
    let pool_options = if is_in_memory(url) {
        // An in-memory database lives only as long as a connection to it, and sqlx shares
        // it between connections through SQLite's shared cache, whose table locks ignore
        // the busy timeout. One connection that is never recycled avoids both problems.
        pool_options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        pool_options.max_connections(options.max_connections)
    };
    pool_options.connect_with(connect_options).await
}

/// Whether `url` names an in-memory database (`sqlite::memory:`, `sqlite://:memory:` or
/// `mode=memory`), following sqlx's own URL parsing.
fn is_in_memory(url: &str) -> bool {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, parameters) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:"
        || parameters
            .split('&')
            .any(|parameter| parameter == "mode=memory")
}

/// Applies the pending migrations under the database's write lock.
///
/// sqlx's migration lock is a PostgreSQL advisory lock and does nothing on SQLite, so two
/// processes starting together on one file would both apply migration 1, and the second
/// would fail on "table users already exists". Inside one `BEGIN IMMEDIATE` transaction
/// (sqlx runs each migration as a savepoint within it) the later process waits for the
/// earlier one, then finds every migration applied.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    let mut transaction = pool.begin_with(BEGIN_IMMEDIATE).await?;
    // `run_direct` is `run` minus the `Acquire` bound, whose lifetime makes `run`'s future
    // fail the `Send` check when a caller spawns `Database::migrate`.
    MIGRATOR.run_direct(None, &mut *transaction, false).await?;
    transaction.commit().await?;
    Ok(())
}

/// Every adapter, sharing `pool`.
pub(crate) fn repositories(pool: &SqlitePool) -> Repositories {
    Repositories {
        users: Arc::new(SqliteUserRepository::new(pool.clone())),
        refresh_tokens: Arc::new(SqliteRefreshTokenStore::new(pool.clone())),
        denylist: Arc::new(SqliteDenylist::new(pool.clone())),
        keys: Arc::new(SqliteKeyStore::new(pool.clone())),
        health: Arc::new(SqliteHealthProbe { pool: pool.clone() }),
    }
}

/// [`HealthProbe`] on SQLite.
pub(crate) struct SqliteHealthProbe {
    pool: SqlitePool,
}

#[async_trait]
impl HealthProbe for SqliteHealthProbe {
    async fn ping(&self) -> Result<(), RepositoryError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Database;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn instances_starting_together_on_one_file_both_migrate_it() {
        for _ in 0..5 {
            let directory = tempfile::tempdir().expect("a temporary directory");
            let url = format!(
                "sqlite://{}",
                directory.path().join("authgate.db").display()
            );
            let first = Database::connect(&url, PoolOptions::default())
                .await
                .expect("opens");
            let second = Database::connect(&url, PoolOptions::default())
                .await
                .expect("opens");

            let (first_migration, second_migration) = tokio::join!(
                tokio::spawn({
                    let first = first.clone();
                    async move { first.migrate().await }
                }),
                tokio::spawn({
                    let second = second.clone();
                    async move { second.migrate().await }
                }),
            );

            assert!(matches!(first_migration, Ok(Ok(()))), "{first_migration:?}");
            assert!(
                matches!(second_migration, Ok(Ok(()))),
                "{second_migration:?}"
            );
            first.close().await;
            second.close().await;
        }
    }

    #[test]
    fn in_memory_urls_are_recognised() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://:memory:"));
        assert!(is_in_memory("sqlite://?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite://authgate.db"));
        assert!(!is_in_memory("sqlite:///tmp/memory.db?mode=rwc"));
    }
}

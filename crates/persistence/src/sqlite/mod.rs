//! The SQLite adapters: connection settings, migrations, and one adapter per port.
//!
//! Every transaction that writes opens with `BEGIN IMMEDIATE`, which takes the database's
//! write lock up front. A deferred transaction would take it only at its first write, and in
//! WAL mode a writer whose read snapshot went stale in the meantime gets `SQLITE_BUSY` at
//! once, without waiting out the busy timeout; taking the lock first makes racing writers
//! queue instead, and makes every read-then-write transaction serialisable. A single
//! statement needs no transaction: one that writes takes the lock before it reads.
//!
//! SQLite admits one writer at a time, and a connection that finds the write lock taken
//! waits in its busy handler, which polls with sleeps of 1, 2, 5, 10 … 100 ms: under
//! concurrent writes most of a writer's latency would be sleeping past the moment the lock
//! came free. So this process's writers first take turns on one in-process FIFO queue (a
//! [`tokio::sync::Mutex`] shared by every adapter of a [`SqliteDatabase`]), and each holds its
//! turn until its statement or transaction has ended. The busy handler is then left only
//! for other processes on the same file: the command line, or a second server.

mod bearer;
mod denylist;
mod direct;
mod keys;
mod refresh_tokens;
mod users;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authgate_application::ports::{HealthProbe, RepositoryError};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};

use crate::error::unavailable;
use crate::{PoolOptions, Repositories};

pub(crate) use bearer::SqliteBearerLookup;
pub(crate) use denylist::SqliteDenylist;
pub(crate) use direct::{ChangeWatch, DirectReaders, DirectWriter};
pub(crate) use keys::SqliteKeyStore;
pub(crate) use refresh_tokens::SqliteRefreshTokenStore;
pub(crate) use users::SqliteUserRepository;

/// The SQLite migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The statement that opens every transaction that writes (see the module docs).
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// How long a statement waits for another connection's write lock before failing, and how
/// long a writer waits for its turn in this process's queue.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool on one SQLite database, and the queue on which this process's writers take turns
/// (see the module docs). Cloning is cheap and shares both.
#[derive(Clone)]
pub(crate) struct SqliteDatabase {
    /// The connections, for reads and for the writer whose turn it is.
    pub(crate) pool: SqlitePool,
    /// Held by the writer whose turn it is; tokio's mutex grants it in request order.
    writers: Arc<Mutex<()>>,
    /// Connections of its own for the hot statements, without sqlx's worker threads
    /// (see [`direct`]); `None` for an in-memory database, which only sqlx's connection sees.
    pub(crate) direct: Option<Arc<Direct>>,
}

/// The direct connections of a database file (see [`direct`]).
pub(crate) struct Direct {
    pub(crate) readers: DirectReaders,
    pub(crate) writer: DirectWriter,
    pub(crate) watch: ChangeWatch,
}

/// This process's turn to write (see the module docs), as `guard` holds it. When the turn
/// ends, the write is over, so whatever was cached from the database may be stale: dropping
/// the turn bumps the [`ChangeWatch`] generation. (A sqlx write whose caller stopped waiting
/// gives up its turn while sqlx may still commit it on the worker thread; the watch's
/// `data_version` check notices that commit like another process's.)
pub(crate) struct WriteTurn<Guard> {
    _guard: Guard,
    direct: Option<Arc<Direct>>,
}

impl<Guard> Drop for WriteTurn<Guard> {
    fn drop(&mut self) {
        if let Some(direct) = &self.direct {
            direct.watch.bump();
        }
    }
}

/// A writer waited longer than [`BUSY_TIMEOUT`] for its turn.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for earlier writers to the SQLite database")]
struct WriterQueueTimeout;

impl SqliteDatabase {
    /// Waits until every earlier writer of this process is done, then holds the turn until
    /// the returned guard is dropped. Hold it across the whole statement or transaction.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Unavailable`] after [`BUSY_TIMEOUT`], as SQLite's busy handler
    /// would give up, so that writers do not queue without bound.
    pub(crate) async fn write_turn(
        &self,
    ) -> Result<WriteTurn<MutexGuard<'_, ()>>, RepositoryError> {
        let guard = tokio::time::timeout(BUSY_TIMEOUT, self.writers.lock())
            .await
            .map_err(|_| unavailable(WriterQueueTimeout))?;
        Ok(self.turn(guard))
    }

    /// [`SqliteDatabase::write_turn`] as a guard that can move to another thread.
    pub(crate) async fn owned_write_turn(
        &self,
    ) -> Result<WriteTurn<OwnedMutexGuard<()>>, RepositoryError> {
        let guard = tokio::time::timeout(BUSY_TIMEOUT, Arc::clone(&self.writers).lock_owned())
            .await
            .map_err(|_| unavailable(WriterQueueTimeout))?;
        Ok(self.turn(guard))
    }

    fn turn<Guard>(&self, guard: Guard) -> WriteTurn<Guard> {
        WriteTurn {
            _guard: guard,
            direct: self.direct.clone(),
        }
    }

    /// Closes the pool. A process that wrote first waits out [`direct::NOTICE_WITHIN`], so
    /// that other processes on the file have noticed its writes once it is gone.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
        if self
            .direct
            .as_ref()
            .is_some_and(|direct| direct.watch.wrote())
        {
            tokio::time::sleep(2 * direct::NOTICE_WITHIN).await;
        }
    }

    /// Begins a write transaction: this process's turn first, then the database's write lock
    /// (`BEGIN IMMEDIATE`), which is then only ever contended by other processes.
    pub(crate) async fn begin_write(&self) -> Result<WriteTransaction<'_>, RepositoryError> {
        let turn = self.write_turn().await?;
        let transaction = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(unavailable)?;
        Ok(WriteTransaction { transaction, turn })
    }
}

/// A transaction begun with `BEGIN IMMEDIATE` that keeps this process's write turn until
/// [`WriteTransaction::finish`] has committed or rolled it back.
pub(crate) struct WriteTransaction<'turn> {
    transaction: Transaction<'static, Sqlite>,
    turn: WriteTurn<MutexGuard<'turn, ()>>,
}

impl WriteTransaction<'_> {
    /// Commits when `result` is `Ok` and rolls back otherwise, and only then gives the turn
    /// to the next writer.
    ///
    /// Dropping the transaction instead would also roll it back, but sqlx runs that rollback
    /// later, on the connection's worker thread: the next writer could find the write lock
    /// still held and sleep in the busy handler after all.
    pub(crate) async fn finish<T>(
        self,
        result: Result<T, RepositoryError>,
    ) -> Result<T, RepositoryError> {
        let Self { transaction, turn } = self;
        let finished = match result {
            Ok(value) => transaction
                .commit()
                .await
                .map_err(unavailable)
                .map(|()| value),
            Err(error) => {
                // The caller must hear the first error. After a failed rollback sqlx tries
                // again when the connection returns to the pool, or closes the connection.
                if let Err(rollback) = transaction.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed write failed");
                }
                Err(error)
            }
        };
        drop(turn);
        finished
    }
}

impl Deref for WriteTransaction<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.transaction
    }
}

impl DerefMut for WriteTransaction<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.transaction
    }
}

/// Opens a pool on the SQLite database at `url`, creating the file if it is missing.
pub(crate) async fn connect(
    url: &str,
    options: PoolOptions,
) -> Result<SqliteDatabase, sqlx::Error> {
    open(url, options, BUSY_TIMEOUT).await
}

/// [`connect`] with the given busy timeout, which tests set to zero.
async fn open(
    url: &str,
    options: PoolOptions,
    busy_timeout: Duration,
) -> Result<SqliteDatabase, sqlx::Error> {
    let connect_options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        // WAL lets readers proceed while one connection writes; NORMAL synchronous is the
        // setting SQLite recommends with WAL (durable except for the last commits on power loss).
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Off by default in SQLite: without it ON DELETE CASCADE does nothing.
        .foreign_keys(true)
        .busy_timeout(busy_timeout);
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
    // Switching a new database file into WAL mode needs an exclusive lock that SQLite's busy
    // timeout does not wait for, so when several processes create the file at once, all but
    // one fail with SQLITE_BUSY. Retrying briefly lets them find WAL already on.
    let mut attempt = 0;
    let pool = loop {
        match pool_options
            .clone()
            .connect_with(connect_options.clone())
            .await
        {
            Err(error) if is_busy(&error) && attempt < OPEN_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => break result?,
        }
    };
    // The pool's first connection has created the file and turned WAL on.
    let direct = if is_in_memory(url) {
        None
    } else {
        let path = connect_options.get_filename();
        let readers =
            std::thread::available_parallelism().map_or(2, |cores| cores.get().clamp(2, 8));
        let opened = DirectReaders::open(path, readers, busy_timeout).and_then(|readers| {
            Ok(Direct {
                readers,
                writer: DirectWriter::open(path, busy_timeout)?,
                watch: ChangeWatch::open(path, busy_timeout)?,
            })
        });
        match opened {
            Ok(direct) => Some(Arc::new(direct)),
            Err(error) => {
                pool.close().await;
                return Err(sqlx::Error::Configuration(error.into()));
            }
        }
    };
    Ok(SqliteDatabase {
        pool,
        writers: Arc::new(Mutex::new(())),
        direct,
    })
}

/// How often opening the database is retried while another process holds the lock that
/// turning WAL on needs (50 ms apart: at most about two seconds in all).
const OPEN_RETRIES: u32 = 40;

/// Whether `error` is SQLite's "database is locked" (`SQLITE_BUSY`, code 5).
fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database.code().is_some_and(|code| code == "5"),
        _ => false,
    }
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
pub(crate) async fn migrate(database: &SqliteDatabase) -> Result<(), MigrateError> {
    // Migrating is a write like any other, so it waits for this process's turn too; without
    // a timeout, as sqlx's migration lock on PostgreSQL waits.
    let _turn = database.writers.lock().await;
    let mut transaction = database.pool.begin_with(BEGIN_IMMEDIATE).await?;
    // `run_direct` is `run` minus the `Acquire` bound, whose lifetime makes `run`'s future
    // fail the `Send` check when a caller spawns `Database::migrate`.
    MIGRATOR.run_direct(None, &mut *transaction, false).await?;
    transaction.commit().await?;
    Ok(())
}

/// Every adapter, sharing `database`'s pool and writer queue.
pub(crate) fn repositories(database: &SqliteDatabase) -> Repositories {
    Repositories {
        users: Arc::new(SqliteUserRepository::new(database.clone())),
        refresh_tokens: Arc::new(SqliteRefreshTokenStore::new(database.clone())),
        denylist: Arc::new(SqliteDenylist::new(database.clone())),
        bearer_lookup: Arc::new(SqliteBearerLookup::new(database.clone())),
        keys: Arc::new(SqliteKeyStore::new(database.clone())),
        health: Arc::new(SqliteHealthProbe {
            pool: database.pool.clone(),
        }),
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
    use authgate_application::ports::{NewUser, UserPatch};
    use authgate_domain::{PasswordHash, ScopeSet, Timestamp, UserId, UserProfile, Username};
    use uuid::Uuid;

    use super::*;
    use crate::Database;

    fn new_user(name: &str) -> NewUser {
        NewUser {
            id: UserId::new(Uuid::new_v4()),
            username: Username::parse(name).expect("a valid test username"),
            password_hash: PasswordHash::new(format!("$argon2id$hash-of-{name}")),
            profile: UserProfile::default(),
            scopes: ScopeSet::default_for_new_user(),
            created_at: Timestamp::from_unix(1_700_000_000),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_writers_of_one_process_take_turns_without_the_busy_handler() {
        // With a busy timeout of zero, a writer that found the write lock taken would fail
        // at once with SQLITE_BUSY: every racing write succeeding shows they took turns.
        let directory = tempfile::tempdir().expect("a temporary directory");
        let url = format!(
            "sqlite://{}",
            directory.path().join("authgate.db").display()
        );
        let database = open(&url, PoolOptions::default(), Duration::ZERO)
            .await
            .expect("opens");
        migrate(&database).await.expect("migrates");
        // Open the connections first, so that the writes race each other, not connecting.
        let mut connections = Vec::new();
        for _ in 0..PoolOptions::default().max_connections {
            connections.push(database.pool.acquire().await.expect("a connection opens"));
        }
        drop(connections);
        let repositories = repositories(&database);
        repositories
            .users
            .insert(&new_user("alice"))
            .await
            .expect("alice is stored");

        let writes: Vec<_> = (0..60)
            .map(|index| {
                let repositories = repositories.clone();
                tokio::spawn(async move {
                    match index % 3 {
                        // A single statement.
                        0 => repositories
                            .denylist
                            .deny(&format!("jti-{index}"), Timestamp::from_unix(1_700_000_900))
                            .await
                            .map(drop),
                        1 => repositories
                            .users
                            .insert(&new_user(&format!("user-{index}")))
                            .await
                            .map(drop),
                        // A transaction that reads before it writes.
                        _ => {
                            let patch = UserPatch {
                                full_name: Some(Some(format!("Alice {index}"))),
                                ..UserPatch::default()
                            };
                            let alice = Username::parse("alice").expect("a valid username");
                            repositories.users.update(&alice, &patch).await.map(drop)
                        }
                    }
                })
            })
            .collect();

        for write in writes {
            let outcome = write.await.expect("a write does not panic");
            assert!(outcome.is_ok(), "{outcome:?}");
        }
        database.pool.close().await;
    }

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

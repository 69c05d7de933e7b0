//! SQLite without sqlx's worker threads, for the statements on the hot paths.
//!
//! sqlx runs each SQLite statement on its connection's own worker thread and hands the
//! statement and its rows over through channels: at least two thread wake-ups per statement.
//! On a loaded 2-core machine those hand-offs cost far more than the statements themselves
//! (`BENCHMARKS.md`: about 9 context switches and 370 µs of CPU per `/users/me`, under 1 % of
//! it inside SQLite). So the statements every bearer request and every refresh makes run on
//! connections of their own, opened with rusqlite on the same file and the same SQLite
//! library:
//!
//! - **Reads** ([`DirectReaders`]) run on the calling thread, like the signature verification
//!   next to them. They are primary-key lookups on pages in SQLite's cache, a few microseconds
//!   each, and in WAL mode a reader never waits for a writer.
//! - **The refresh-token writes** ([`DirectWriter`]: a new family, a rotation) run as one
//!   blocking call each: the whole `BEGIN IMMEDIATE … COMMIT` in a single hop to tokio's
//!   blocking pool, instead of a hop per statement. A write may wait for another process's
//!   write lock or run a WAL checkpoint, so it never runs on an async worker. It still takes
//!   this process's writer turn first, like every other write (see the parent module).
//! - **Change detection** ([`ChangeWatch`]) tells cached reads when they may be stale: a
//!   generation that every write of this process bumps when it ends, and that a check of
//!   SQLite's `PRAGMA data_version` bumps when another process (the command line, a second
//!   server) has committed. A read cached under the current generation is therefore exact
//!   for this process's writes, and at most [`NOTICE_WITHIN`] behind another process's;
//!   a process that wrote waits that long when it closes the database, so that once
//!   `authgate user disable` has returned, every server on the file has noticed.
//!
//! An in-memory database is private to sqlx's connection, so it has no direct connections
//! and keeps to sqlx.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use authgate_application::ports::RepositoryError;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::OwnedMutexGuard;

use super::WriteTurn;
use crate::error::unavailable;

/// How long another process's commit may go unnoticed by [`ChangeWatch::generation`].
pub(crate) const NOTICE_WITHIN: Duration = Duration::from_millis(1);

/// Connections for reading on the calling thread, one per core: a caller takes the first
/// free one, and waits for one only when every core is already reading.
pub(crate) struct DirectReaders {
    connections: Box<[Mutex<Connection>]>,
    /// Where the next caller starts looking, so that callers spread over the connections.
    next: AtomicUsize,
}

impl DirectReaders {
    /// Opens `count` read-only connections to the database file at `path`, which must exist.
    pub(crate) fn open(
        path: &Path,
        count: usize,
        busy_timeout: Duration,
    ) -> rusqlite::Result<Self> {
        let connections = (0..count.max(1))
            .map(|_| {
                let connection = open(path, busy_timeout)?;
                // Belt and braces: these connections serve lookups only.
                connection.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(connection))
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `read` on a free connection, on this thread.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, RepositoryError> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let connection = (0..count)
            .find_map(|offset| self.connections[(start + offset) % count].try_lock().ok())
            .unwrap_or_else(|| lock(&self.connections[start]));
        read(&connection).map_err(unavailable)
    }
}

/// One connection for writes that run as a whole on tokio's blocking pool.
pub(crate) struct DirectWriter {
    connection: Arc<Mutex<Connection>>,
}

impl DirectWriter {
    /// Opens the connection to the database file at `path`, which must exist.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let connection = open(path, busy_timeout)?;
        // Off by default in SQLite: without it ON DELETE CASCADE does nothing.
        connection.pragma_update(None, "foreign_keys", true)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the blocking pool, holding `turn`
    /// (this process's writer turn) until the transaction has ended, also when the caller
    /// stops waiting for it. Commits when `work` succeeds and rolls back otherwise.
    pub(crate) async fn transaction<T, Work>(
        &self,
        turn: WriteTurn<OwnedMutexGuard<()>>,
        work: Work,
    ) -> Result<T, RepositoryError>
    where
        T: Send + 'static,
        Work: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, RepositoryError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let outcome = run_transaction(&mut lock(&connection), work);
            // Only once the transaction has ended may this process's next writer begin.
            drop(turn);
            outcome
        })
        .await
        .map_err(unavailable)?
    }
}

/// `work` in one `BEGIN IMMEDIATE` transaction on `connection`: committed when it succeeds;
/// rolled back otherwise, at once, by dropping the unfinished rusqlite transaction.
fn run_transaction<T>(
    connection: &mut Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, RepositoryError>,
) -> Result<T, RepositoryError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let value = work(&transaction)?;
    transaction.commit().map_err(unavailable)?;
    Ok(value)
}

/// Whether what was read from the database may since have changed (see the module docs).
pub(crate) struct ChangeWatch {
    /// Bumped by every write of this process as it ends, and by a check that finds another
    /// process's commit.
    generation: AtomicU64,
    /// When the latest completed check began, in nanoseconds since `origin`.
    checked: AtomicU64,
    origin: Instant,
    /// The connection whose `data_version` is checked, and the version it last answered.
    /// `data_version` counts the commits of every *other* connection, so it must always be
    /// asked on this one.
    watcher: Mutex<(Connection, i64)>,
    /// Whether this process has written since the watch began.
    wrote: AtomicBool,
}

impl ChangeWatch {
    /// Starts watching the database file at `path`, which must exist.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let connection = open(path, busy_timeout)?;
        connection.pragma_update(None, "query_only", true)?;
        let origin = Instant::now();
        let version = data_version(&connection)?;
        Ok(Self {
            generation: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            origin,
            watcher: Mutex::new((connection, version)),
            wrote: AtomicBool::new(false),
        })
    }

    /// The current generation. A read made under it is exact for this process's writes and
    /// for another process's commits older than [`NOTICE_WITHIN`]: when no check has begun
    /// within that time, this one checks `data_version` first (a few microseconds, at most
    /// about once per [`NOTICE_WITHIN`] under load).
    ///
    /// Read the generation *before* reading the data it will vouch for: a write that ends
    /// in between then leaves the read under an older generation, not a stale one under
    /// the newer.
    pub(crate) fn generation(&self) -> Result<u64, RepositoryError> {
        let began = self.nanos_since_origin();
        let checked = self.checked.load(Ordering::Acquire);
        if began.saturating_sub(checked) > nanos(NOTICE_WITHIN) {
            let mut watcher = lock(&self.watcher);
            let version = data_version(&watcher.0).map_err(unavailable)?;
            if version != watcher.1 {
                watcher.1 = version;
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            self.checked.fetch_max(began, Ordering::AcqRel);
        }
        Ok(self.generation.load(Ordering::Acquire))
    }

    /// A write of this process has ended (committed or not): what was read before is stale.
    pub(crate) fn bump(&self) {
        self.wrote.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this process has written since the watch began.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Acquire)
    }

    fn nanos_since_origin(&self) -> u64 {
        nanos(self.origin.elapsed())
    }
}

/// `duration` in nanoseconds; saturates after 584 years.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// SQLite's count of commits by other connections, as seen by `connection`.
fn data_version(connection: &Connection) -> rusqlite::Result<i64> {
    connection
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// Opens one connection with the settings the sqlx pool uses (WAL is a property of the file
/// and already on).
fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    // NO_MUTEX: each connection is used by one thread at a time, behind its own lock.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(busy_timeout)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(connection)
}

/// Locks `connection`. A panic while it was held cannot have left it inconsistent: SQLite
/// rolls back an unfinished transaction when rusqlite's guard is dropped during the unwind.
fn lock<T>(connection: &Mutex<T>) -> MutexGuard<'_, T> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

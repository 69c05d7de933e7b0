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
//! - **The refresh rotation** ([`DirectWriter`]) runs as one blocking call: the whole
//!   `BEGIN IMMEDIATE … COMMIT` in a single hop to tokio's blocking pool, instead of a hop
//!   per statement. A write may wait for another process's write lock or run a WAL
//!   checkpoint, so it never runs on an async worker. It still takes this process's writer
//!   turn first, like every other write (see the parent module).
//!
//! An in-memory database is private to sqlx's connection, so it has no direct connections
//! and keeps to sqlx.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use authgate_application::ports::RepositoryError;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::OwnedMutexGuard;

use crate::error::unavailable;

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
        turn: OwnedMutexGuard<()>,
        work: Work,
    ) -> Result<T, RepositoryError>
    where
        T: Send + 'static,
        Work: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, RepositoryError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = lock(&connection);
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            // Dropping an unfinished rusqlite transaction rolls it back, at once and here.
            let value = work(&transaction)?;
            transaction.commit().map_err(unavailable)?;
            drop(turn);
            Ok(value)
        })
        .await
        .map_err(unavailable)?
    }
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
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

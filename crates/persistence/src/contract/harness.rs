//! Fresh, empty repositories for each contract check, and the clean-up after it.

use std::io::Write;
use std::sync::{Arc, Once};

use authgate_application::ports::LoginThrottle;
use authgate_application::testing::{
    InMemoryBearerLookup, InMemoryDenylist, InMemoryHealthProbe, InMemoryKeyStore,
    InMemoryRefreshTokenStore, InMemoryUserRepository,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::task::JoinError;
use uuid::Uuid;

use super::RACERS;
use crate::{Database, Pool, PoolOptions, Repositories};

/// The variable naming a PostgreSQL server the tests may create databases on.
const POSTGRES_URL_VARIABLE: &str = "AUTHGATE_TEST_POSTGRES_URL";

/// Where a check runs.
pub(crate) enum TestBackend {
    /// A new SQLite file in a temporary directory.
    Sqlite,
    /// A new database `authgate_test_<uuid>` on the server at `AUTHGATE_TEST_POSTGRES_URL`,
    /// dropped afterwards; skipped when the variable is unset.
    Postgres,
    /// The fakes of `authgate_application::testing`.
    InMemory,
    /// An in-memory SQLite database (`sqlite::memory:`): one connection, and sqlx for every
    /// statement, where a file has direct connections and the bearer-lookup cache.
    SqliteInMemory,
}

/// Runs `check` on a fresh, migrated, empty store of `backend`, then cleans up, even when the
/// check panics: it runs as its own task, and its panic is re-raised after the clean-up.
pub(crate) async fn run<Check, Fut>(backend: TestBackend, check: Check)
where
    Check: FnOnce(Repositories) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        TestBackend::InMemory => finish(tokio::spawn(check(in_memory())).await),
        TestBackend::SqliteInMemory => {
            // Its one connection serves every racer in turn; there are none to open ahead.
            let database = Database::connect("sqlite::memory:", PoolOptions::default())
                .await
                .expect("the in-memory database opens");
            database.migrate().await.expect("the migrations apply");
            let outcome = tokio::spawn(check(database.repositories())).await;
            database.close().await;
            finish(outcome);
        }
        TestBackend::Sqlite | TestBackend::Postgres => {
            on_fresh_database(backend, 1, |databases| check(databases[0].repositories())).await;
        }
    }
}

/// Two instances' handles on the login-throttling counters of one deployment.
pub(crate) type Throttles = [Arc<dyn LoginThrottle>; 2];

/// Runs `check` on the login throttle of a fresh `backend` deployment, like [`run`].
///
/// On PostgreSQL the two handles come from two pools on one database, as two instances would
/// have them. On SQLite, whose supported deployment is one instance per database file, both
/// handles are that instance's in-process throttle.
pub(crate) async fn run_throttle<Check, Fut>(backend: TestBackend, check: Check)
where
    Check: FnOnce(Throttles) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        TestBackend::InMemory | TestBackend::SqliteInMemory => {
            unreachable!("the SQLite runs already check the in-memory counters SQLite uses")
        }
        TestBackend::Sqlite => {
            on_fresh_database(backend, 1, |databases| {
                let throttle = databases[0].login_throttle();
                check([throttle.clone(), throttle])
            })
            .await;
        }
        TestBackend::Postgres => {
            on_fresh_database(backend, 2, |databases| {
                check([databases[0].login_throttle(), databases[1].login_throttle()])
            })
            .await;
        }
    }
}

/// Runs `check` with `instances` handles (each its own pool) on one fresh, migrated SQLite
/// file or PostgreSQL database, then closes them and deletes the database.
async fn on_fresh_database<Check, Fut>(backend: TestBackend, instances: usize, check: Check)
where
    Check: FnOnce(&[Database]) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        TestBackend::InMemory | TestBackend::SqliteInMemory => {
            unreachable!("only the port checks run in memory")
        }
        TestBackend::Sqlite => {
            let directory = tempfile::tempdir().expect("a temporary directory can be made");
            let url = format!(
                "sqlite://{}",
                directory.path().join("authgate.db").display()
            );
            let databases = open_all(&url, instances).await;
            let outcome = tokio::spawn(check(&databases)).await;
            close_all(&databases).await;
            finish(outcome);
        }
        TestBackend::Postgres => {
            let Ok(server_url) = std::env::var(POSTGRES_URL_VARIABLE) else {
                skip_postgres();
                return;
            };
            let name = format!("authgate_test_{}", Uuid::new_v4().simple());
            execute_on_server(&server_url, &format!("CREATE DATABASE {name}")).await;
            let databases = open_all(&with_database(&server_url, &name), instances).await;
            let outcome = tokio::spawn(check(&databases)).await;
            close_all(&databases).await;
            // FORCE ends connections a panicking check may have left behind (PostgreSQL 13+).
            execute_on_server(
                &server_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
            finish(outcome);
        }
    }
}

async fn open_all(url: &str, instances: usize) -> Vec<Database> {
    let mut databases = Vec::with_capacity(instances);
    for _ in 0..instances {
        databases.push(open(url).await);
    }
    databases
}

async fn close_all(databases: &[Database]) {
    for database in databases {
        database.close().await;
    }
}

fn in_memory() -> Repositories {
    let users = Arc::new(InMemoryUserRepository::new());
    let denylist = Arc::new(InMemoryDenylist::new());
    Repositories {
        bearer_lookup: Arc::new(InMemoryBearerLookup::new(users.clone(), denylist.clone())),
        users,
        refresh_tokens: Arc::new(InMemoryRefreshTokenStore::new()),
        denylist,
        keys: Arc::new(InMemoryKeyStore::new()),
        health: Arc::new(InMemoryHealthProbe::new()),
    }
}

async fn open(url: &str) -> Database {
    let database = Database::connect(url, PoolOptions::default())
        .await
        .expect("the test database opens");
    database
        .migrate()
        .await
        .expect("the migrations apply to an empty database");
    open_connections(&database).await;
    database
}

/// Opens as many connections as there are racers and returns them to the pool idle, so that
/// racing calls really overlap instead of queueing behind connection set-up.
async fn open_connections(database: &Database) {
    match &database.pool {
        Pool::Sqlite(sqlite) => {
            let mut held = Vec::with_capacity(RACERS);
            for _ in 0..RACERS {
                held.push(sqlite.pool.acquire().await.expect("a connection opens"));
            }
        }
        Pool::Postgres(pool) => {
            let mut held = Vec::with_capacity(RACERS);
            for _ in 0..RACERS {
                held.push(pool.acquire().await.expect("a connection opens"));
            }
        }
    }
}

/// Re-raises the check's panic, if it had one.
fn finish(outcome: Result<(), JoinError>) {
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the check did not finish: {error}"),
        }
    }
}

/// Says once per test binary, on the real stderr (libtest captures `eprintln!`), that the
/// PostgreSQL runs pass without running.
fn skip_postgres() {
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        let notice = format!("SKIP postgres: {POSTGRES_URL_VARIABLE} not set\n");
        // Losing the notice is no reason to fail the test.
        let _ = std::io::stderr().write_all(notice.as_bytes());
    });
}

/// Runs one statement on the server's default database. `statement` only ever interpolates
/// a name made of `authgate_test_` and hex digits.
async fn execute_on_server(server_url: &str, statement: &str) {
    let mut connection = PgConnection::connect(server_url)
        .await
        .expect("the test PostgreSQL server answers");
    sqlx::query(AssertSqlSafe(statement.to_owned()))
        .execute(&mut connection)
        .await
        .expect("the statement runs");
    connection.close().await.expect("the connection closes");
}

/// `server_url` with its database (the URL's path) replaced by `name`, keeping any query.
fn with_database(server_url: &str, name: &str) -> String {
    let (base, query) = server_url
        .split_once('?')
        .map_or((server_url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    let query = query.map(|query| format!("?{query}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..path_start])
}

#[test]
fn the_test_database_replaces_the_url_path_and_keeps_the_rest() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5433/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5433/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1", "t1"),
        "postgres://u:p@h:1/t1"
    );
    assert_eq!(
        with_database("postgresql://h/db?sslmode=disable", "t1"),
        "postgresql://h/t1?sslmode=disable"
    );
}

//! The PostgreSQL adapters: connection settings, migrations, and one adapter per port.
//!
//! Columns use native types (`uuid`, `timestamptz`, `text[]`, `bytea`); queries convert them
//! to the shared row structs' primitives in SQL (`id::text`, `extract(epoch FROM …)::bigint`,
//! `array_to_string(…)`), and parameters back (`$1::uuid`, `to_timestamp($1)`). Transactions
//! run at READ COMMITTED, where every statement sees what committed before it started; each
//! read-then-write therefore first takes a row lock (`FOR UPDATE`) or a lock that serialises
//! the writers it races with.

mod bearer;
mod denylist;
mod keys;
mod refresh_tokens;
mod throttle;
mod users;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use authgate_application::ports::{HealthProbe, RepositoryError};
use authgate_domain::ScopeSet;
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::unavailable;
use crate::{PoolOptions, Repositories};

pub(crate) use bearer::PgBearerLookup;
pub(crate) use denylist::PgDenylist;
pub(crate) use keys::PgKeyStore;
pub(crate) use refresh_tokens::PgRefreshTokenStore;
pub(crate) use throttle::PgLoginThrottle;
pub(crate) use users::PgUserRepository;

/// The PostgreSQL migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Opens a pool on the PostgreSQL database at `url`.
pub(crate) async fn connect(url: &str, options: PoolOptions) -> Result<PgPool, sqlx::Error> {
    let connect_options = PgConnectOptions::from_str(url)?;
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect_options)
        .await
}

/// The storage form of a scope set: a `text[]` of catalogue names.
fn scope_array(scopes: ScopeSet) -> Vec<&'static str> {
    scopes.names().collect()
}

/// Applies the pending migrations. sqlx holds a session advisory lock meanwhile, so
/// instances starting together take turns.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut connection = pool.acquire().await?;
    // `run_direct` is `run` minus the `Acquire` bound, whose lifetime makes `run`'s future
    // fail the `Send` check when a caller spawns `Database::migrate`.
    MIGRATOR.run_direct(None, &mut *connection, false).await
}

/// Every adapter, sharing `pool`.
pub(crate) fn repositories(pool: &PgPool) -> Repositories {
    Repositories {
        users: Arc::new(PgUserRepository::new(pool.clone())),
        refresh_tokens: Arc::new(PgRefreshTokenStore::new(pool.clone())),
        denylist: Arc::new(PgDenylist::new(pool.clone())),
        bearer_lookup: Arc::new(PgBearerLookup::new(pool.clone())),
        keys: Arc::new(PgKeyStore::new(pool.clone())),
        health: Arc::new(PgHealthProbe { pool: pool.clone() }),
    }
}

/// [`HealthProbe`] on PostgreSQL.
pub(crate) struct PgHealthProbe {
    pool: PgPool,
}

#[async_trait]
impl HealthProbe for PgHealthProbe {
    async fn ping(&self) -> Result<(), RepositoryError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

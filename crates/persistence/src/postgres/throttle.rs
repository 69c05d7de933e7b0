//! [`LoginThrottle`] on PostgreSQL: counters shared by every instance on the database.

use std::net::IpAddr;

use async_trait::async_trait;
use authgate_application::ports::{LOGIN_THROTTLE_RETENTION, LoginThrottle, RepositoryError};
use authgate_domain::{ThrottleDecision, ThrottlePolicy, ThrottleState, Timestamp};
use sqlx::{FromRow, PgPool, Postgres, Transaction};

use crate::error::unavailable;
use crate::rows::{CorruptRow, decode_optional};

/// [`LoginThrottle`] on PostgreSQL: one `login_throttle` row per username and per address.
///
/// Each call is one transaction that locks the rows it decides on (`SELECT … FOR UPDATE`)
/// and applies the [`ThrottlePolicy`] to what it read, so parallel attempts, on one instance
/// or many, are counted one after another. Rows are always locked username first, then
/// address, and a call locks at most one of each, so two calls never wait on each other in a
/// cycle.
pub(crate) struct PgLoginThrottle {
    pool: PgPool,
    policy: ThrottlePolicy,
}

impl PgLoginThrottle {
    /// Counters over `pool` enforcing `policy`.
    pub(crate) fn new(pool: PgPool, policy: ThrottlePolicy) -> Self {
        Self { pool, policy }
    }
}

/// What a `login_throttle` row counts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Username,
    Address,
}

impl Kind {
    /// The `kind` column's value.
    const fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Address => "address",
        }
    }
}

/// The counters of one `login_throttle` row.
#[derive(FromRow)]
struct ThrottleRow {
    attempts: i64,
    window_start: i64,
    blocked_until: Option<i64>,
}

impl TryFrom<ThrottleRow> for ThrottleState {
    type Error = CorruptRow;

    fn try_from(row: ThrottleRow) -> Result<Self, Self::Error> {
        Ok(Self {
            attempts: u32::try_from(row.attempts)
                .map_err(|_| CorruptRow::column("login_throttle.attempts"))?,
            window_start: Timestamp::from_unix(row.window_start),
            blocked_until: row.blocked_until.map(Timestamp::from_unix),
        })
    }
}

/// Locks the row of (`kind`, `subject`), creating it with empty counters first if there is
/// none, and returns its counters.
///
/// The insert of a row another transaction is inserting waits for that transaction to end,
/// and the `SELECT` that follows (a new snapshot at READ COMMITTED) then sees its row.
async fn lock_counters(
    transaction: &mut Transaction<'_, Postgres>,
    kind: Kind,
    subject: &str,
    now: Timestamp,
) -> Result<ThrottleState, RepositoryError> {
    sqlx::query(
        "INSERT INTO login_throttle (kind, subject, attempts, window_start, blocked_until, updated_at) \
         VALUES ($1, $2, 0, to_timestamp(0), NULL, to_timestamp($3)) \
         ON CONFLICT (kind, subject) DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(subject)
    .bind(now.unix())
    .execute(&mut **transaction)
    .await
    .map_err(unavailable)?;
    let state = lock_existing_counters(transaction, kind, subject).await?;
    Ok(state.unwrap_or_default())
}

/// Locks the row of (`kind`, `subject`) and returns its counters; `None` when there is no row.
async fn lock_existing_counters(
    transaction: &mut Transaction<'_, Postgres>,
    kind: Kind,
    subject: &str,
) -> Result<Option<ThrottleState>, RepositoryError> {
    let row = sqlx::query_as::<_, ThrottleRow>(
        "SELECT attempts, extract(epoch FROM window_start)::bigint AS window_start, \
                extract(epoch FROM blocked_until)::bigint AS blocked_until \
         FROM login_throttle WHERE kind = $1 AND subject = $2 FOR UPDATE",
    )
    .bind(kind.as_str())
    .bind(subject)
    .fetch_optional(&mut **transaction)
    .await
    .map_err(unavailable)?;
    decode_optional(row)
}

/// Writes `state` back to the row of (`kind`, `subject`), which the transaction has locked.
async fn store_counters(
    transaction: &mut Transaction<'_, Postgres>,
    kind: Kind,
    subject: &str,
    state: ThrottleState,
    now: Timestamp,
) -> Result<(), RepositoryError> {
    sqlx::query(
        "UPDATE login_throttle SET attempts = $3, window_start = to_timestamp($4), \
                blocked_until = to_timestamp($5), updated_at = to_timestamp($6) \
         WHERE kind = $1 AND subject = $2",
    )
    .bind(kind.as_str())
    .bind(subject)
    .bind(i64::from(state.attempts))
    .bind(state.window_start.unix())
    .bind(state.blocked_until.map(Timestamp::unix))
    .bind(now.unix())
    .execute(&mut **transaction)
    .await
    .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl LoginThrottle for PgLoginThrottle {
    async fn begin_attempt(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<ThrottleDecision, RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        let username_state = lock_counters(&mut transaction, Kind::Username, username, now).await?;
        let (decision, next_username) = self.policy.username_attempt(username_state, now);
        if decision != ThrottleDecision::Allowed {
            // Nothing is counted, and the rollback also drops a row just created empty.
            transaction.rollback().await.map_err(unavailable)?;
            return Ok(decision);
        }
        let address = address.map(|address| address.to_string());
        if let Some(address) = &address {
            let address_state =
                lock_counters(&mut transaction, Kind::Address, address, now).await?;
            let (decision, next_address) = self.policy.address_attempt(address_state, now);
            if decision != ThrottleDecision::Allowed {
                transaction.rollback().await.map_err(unavailable)?;
                return Ok(decision);
            }
            store_counters(&mut transaction, Kind::Address, address, next_address, now).await?;
        }
        store_counters(
            &mut transaction,
            Kind::Username,
            username,
            next_username,
            now,
        )
        .await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(ThrottleDecision::Allowed)
    }

    async fn record_success(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        // Deleting the row is resetting it: an absent row reads as empty counters.
        sqlx::query("DELETE FROM login_throttle WHERE kind = $1 AND subject = $2")
            .bind(Kind::Username.as_str())
            .bind(username)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        if let Some(address) = address.map(|address| address.to_string())
            && let Some(state) =
                lock_existing_counters(&mut transaction, Kind::Address, &address).await?
        {
            let next = self.policy.address_success(state);
            store_counters(&mut transaction, Kind::Address, &address, next, now).await?;
        }
        transaction.commit().await.map_err(unavailable)
    }

    async fn give_back(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        // Same lock order as `begin_attempt` (username, then address), so the two never deadlock.
        if let Some(state) =
            lock_existing_counters(&mut transaction, Kind::Username, username).await?
        {
            let next = self.policy.username_give_back(state);
            store_counters(&mut transaction, Kind::Username, username, next, now).await?;
        }
        if let Some(address) = address.map(|address| address.to_string())
            && let Some(state) =
                lock_existing_counters(&mut transaction, Kind::Address, &address).await?
        {
            let next = self.policy.address_success(state);
            store_counters(&mut transaction, Kind::Address, &address, next, now).await?;
        }
        transaction.commit().await.map_err(unavailable)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        let purged = sqlx::query(
            "DELETE FROM login_throttle WHERE updated_at < to_timestamp($1) \
             AND (blocked_until IS NULL OR blocked_until <= to_timestamp($2))",
        )
        .bind(now.minus(LOGIN_THROTTLE_RETENTION).unix())
        .bind(now.unix())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(purged)
    }
}

//! Row structs shared by both dialects, and their conversion into domain types.
//!
//! Each dialect's SQL selects the same column names with the same primitive types
//! (PostgreSQL converts `uuid`, `timestamptz` and `text[]` in the query), so one set of
//! `FromRow` structs and one set of checks on stored values serve both.

use std::time::Duration;

use authgate_application::ports::{
    BearerSubject, KeyMaterial, RefreshFamily, RefreshTokenHash, RepositoryError, SigningAlgorithm,
    StoredKey,
};
use authgate_domain::{
    ClientId, PasswordHash, ScopeSet, SessionEpoch, Timestamp, User, UserId, UserProfile, Username,
};
use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};
use uuid::Uuid;

use crate::error::unavailable;

/// A stored value that the domain rejects: the database was changed behind authgate's back,
/// or by a newer version. Reported as [`RepositoryError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("stored {column} is invalid")]
pub(crate) struct CorruptRow {
    column: &'static str,
}

impl CorruptRow {
    pub(crate) const fn column(column: &'static str) -> Self {
        Self { column }
    }
}

impl From<CorruptRow> for RepositoryError {
    fn from(error: CorruptRow) -> Self {
        unavailable(error)
    }
}

/// The columns of `users` that make a [`User`].
#[derive(FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    disabled: bool,
    scopes: String,
    created_at: i64,
    session_epoch: i64,
}

impl TryFrom<UserRow> for User {
    type Error = CorruptRow;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: UserId::new(parse_uuid(&row.id, "users.id")?),
            username: Username::parse(&row.username)
                .map_err(|_| CorruptRow::column("users.username"))?,
            profile: UserProfile {
                email: row.email,
                full_name: row.full_name,
            },
            disabled: row.disabled,
            scopes: parse_scopes(&row.scopes, "users.scopes")?,
            created_at: Timestamp::from_unix(row.created_at),
            session_epoch: parse_epoch(row.session_epoch, "users.session_epoch")?,
        })
    }
}

/// A user with their password hash, for verifying a password.
#[derive(FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for (User, PasswordHash) {
    type Error = CorruptRow;

    fn try_from(row: CredentialsRow) -> Result<Self, Self::Error> {
        Ok((
            User::try_from(row.user)?,
            PasswordHash::new(row.password_hash),
        ))
    }
}

/// The columns of [`UserRow`] from the nullable side of a `LEFT JOIN`: `None` when no user
/// matched and every column is NULL.
pub(crate) struct JoinedUserRow(Option<UserRow>);

impl<'row, R: Row> FromRow<'row, R> for JoinedUserRow
where
    &'row str: ColumnIndex<R>,
    Option<String>: Decode<'row, R::Database> + Type<R::Database>,
    UserRow: FromRow<'row, R>,
{
    fn from_row(row: &'row R) -> Result<Self, sqlx::Error> {
        // `users.id` is the primary key, so it is NULL only when the join found no user.
        let id: Option<String> = row.try_get("id")?;
        match id {
            None => Ok(Self(None)),
            Some(_) => UserRow::from_row(row).map(|user| Self(Some(user))),
        }
    }
}

/// What bearer authentication reads in one statement: whether the `jti` is denied, and the
/// user's columns (all NULL when there is no such user).
#[derive(FromRow)]
pub(crate) struct BearerRow {
    revoked: bool,
    #[sqlx(flatten)]
    user: JoinedUserRow,
}

impl TryFrom<BearerRow> for BearerSubject {
    type Error = CorruptRow;

    fn try_from(row: BearerRow) -> Result<Self, Self::Error> {
        Ok(Self {
            user: row.user.0.map(User::try_from).transpose()?,
            revoked: row.revoked,
        })
    }
}

/// The columns of `refresh_token_families` that make a [`RefreshFamily`].
#[derive(FromRow)]
pub(crate) struct FamilyRow {
    id: String,
    user_id: String,
    scope: String,
    client_id: String,
    session_epoch: i64,
    issued_at: i64,
    expires_at: i64,
}

impl TryFrom<FamilyRow> for RefreshFamily {
    type Error = CorruptRow;

    fn try_from(row: FamilyRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: parse_uuid(&row.id, "refresh_token_families.id")?,
            user_id: UserId::new(parse_uuid(&row.user_id, "refresh_token_families.user_id")?),
            scope: parse_scopes(&row.scope, "refresh_token_families.scope")?,
            client_id: ClientId::parse(&row.client_id)
                .map_err(|_| CorruptRow::column("refresh_token_families.client_id"))?,
            session_epoch: parse_epoch(row.session_epoch, "refresh_token_families.session_epoch")?,
            issued_at: Timestamp::from_unix(row.issued_at),
            expires_at: Timestamp::from_unix(row.expires_at),
        })
    }
}

/// A presented refresh token joined with its family: everything `rotate` decides on.
#[derive(FromRow)]
pub(crate) struct PresentedTokenRow {
    #[sqlx(flatten)]
    family: FamilyRow,
    revoked_at: Option<i64>,
    rotated_at: Option<i64>,
    successor_hash: Option<Vec<u8>>,
}

/// What `rotate` must do, decided from the presented token's row before anything is written.
#[derive(Debug)]
pub(crate) enum Rotation {
    /// Answer `RotateOutcome::Invalid` and change nothing.
    Invalid,
    /// Mark the token rotated, store the successor, answer `RotateOutcome::Rotated`.
    Rotate(RefreshFamily),
    /// Answer `RotateOutcome::Replayed` and change nothing.
    Replay(RefreshFamily),
    /// Revoke the family with this id and answer `RotateOutcome::Reused`.
    RevokeForReuse(Uuid),
}

impl Rotation {
    /// Applies the rules of [`RefreshTokenStore::rotate`](authgate_application::ports::RefreshTokenStore::rotate)
    /// to the token's row, `None` when the token is unknown.
    pub(crate) fn decide(
        presented: Option<PresentedTokenRow>,
        successor: &RefreshTokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<Self, CorruptRow> {
        let Some(presented) = presented else {
            return Ok(Self::Invalid);
        };
        let family = RefreshFamily::try_from(presented.family)?;
        // A dead family answers Invalid even for a rotated token: there is nothing left to
        // revoke, and calling it reuse would only add noise to the logs.
        if presented.revoked_at.is_some() || family.expires_at <= now {
            return Ok(Self::Invalid);
        }
        let Some(rotated_at) = presented.rotated_at else {
            return Ok(Self::Rotate(family));
        };
        // The successor is derived from the presented token, so a client retrying or racing
        // within the grace period asks for the same successor and gets the same answer
        // (SPEC §2). A different successor means the token was rotated some other way.
        let same_successor = presented.successor_hash.as_deref() == Some(successor.0.as_slice());
        if same_successor && Timestamp::from_unix(rotated_at).plus(grace) > now {
            Ok(Self::Replay(family))
        } else {
            Ok(Self::RevokeForReuse(family.id))
        }
    }
}

/// The reason recorded when `rotate` revokes a family because a rotated token came back.
pub(crate) const REUSE_REASON: &str = "reuse";

/// The columns of `signing_keys`.
#[derive(FromRow)]
pub(crate) struct KeyRow {
    kid: String,
    alg: String,
    private_key: Vec<u8>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = CorruptRow;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        Ok(Self {
            kid: row.kid,
            algorithm: SigningAlgorithm::parse(&row.alg)
                .ok_or(CorruptRow::column("signing_keys.alg"))?,
            private_key: KeyMaterial(row.private_key),
            created_at: Timestamp::from_unix(row.created_at),
            retired_at: row.retired_at.map(Timestamp::from_unix),
        })
    }
}

/// The last-administrator rule of [`UserRepository`](authgate_application::ports::UserRepository):
/// a change may not take the count of enabled `users:write` holders from some to none.
pub(crate) fn keep_an_administrator(before: i64, after: i64) -> Result<(), RepositoryError> {
    if before > 0 && after == 0 {
        Err(RepositoryError::LastAdministrator)
    } else {
        Ok(())
    }
}

/// The same rows read through rusqlite, on SQLite's direct connections
/// (`sqlite::direct`): by column name, with the types the `FromRow` derives read.
mod direct {
    use rusqlite::Row;

    use super::{BearerRow, CredentialsRow, FamilyRow, JoinedUserRow, PresentedTokenRow, UserRow};

    impl UserRow {
        pub(crate) fn from_direct(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self {
                id: row.get("id")?,
                username: row.get("username")?,
                email: row.get("email")?,
                full_name: row.get("full_name")?,
                disabled: row.get("disabled")?,
                scopes: row.get("scopes")?,
                created_at: row.get("created_at")?,
                session_epoch: row.get("session_epoch")?,
            })
        }
    }

    impl CredentialsRow {
        pub(crate) fn from_direct(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self {
                user: UserRow::from_direct(row)?,
                password_hash: row.get("password_hash")?,
            })
        }
    }

    impl BearerRow {
        pub(crate) fn from_direct(row: &Row<'_>) -> rusqlite::Result<Self> {
            // `users.id` is the primary key, so it is NULL only when the join found no user.
            let id: Option<String> = row.get("id")?;
            let user = match id {
                None => JoinedUserRow(None),
                Some(_) => JoinedUserRow(Some(UserRow::from_direct(row)?)),
            };
            Ok(Self {
                revoked: row.get("revoked")?,
                user,
            })
        }
    }

    impl FamilyRow {
        pub(crate) fn from_direct(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self {
                id: row.get("id")?,
                user_id: row.get("user_id")?,
                scope: row.get("scope")?,
                client_id: row.get("client_id")?,
                session_epoch: row.get("session_epoch")?,
                issued_at: row.get("issued_at")?,
                expires_at: row.get("expires_at")?,
            })
        }
    }

    impl PresentedTokenRow {
        pub(crate) fn from_direct(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self {
                family: FamilyRow::from_direct(row)?,
                revoked_at: row.get("revoked_at")?,
                rotated_at: row.get("rotated_at")?,
                successor_hash: row.get("successor_hash")?,
            })
        }
    }
}

/// Converts an optional row, reporting an undecodable one as unavailable storage.
pub(crate) fn decode_optional<Row, Domain>(
    row: Option<Row>,
) -> Result<Option<Domain>, RepositoryError>
where
    Domain: TryFrom<Row, Error = CorruptRow>,
{
    Ok(row.map(Domain::try_from).transpose()?)
}

/// Converts a list of rows, failing on the first undecodable one.
pub(crate) fn decode_all<Row, Domain>(rows: Vec<Row>) -> Result<Vec<Domain>, RepositoryError>
where
    Domain: TryFrom<Row, Error = CorruptRow>,
{
    Ok(rows
        .into_iter()
        .map(Domain::try_from)
        .collect::<Result<_, _>>()?)
}

/// The storage form of a session epoch: a `u32` widened, since neither dialect has one.
pub(crate) fn epoch_column(epoch: SessionEpoch) -> i64 {
    i64::from(epoch.value())
}

fn parse_uuid(raw: &str, column: &'static str) -> Result<Uuid, CorruptRow> {
    Uuid::parse_str(raw).map_err(|_| CorruptRow::column(column))
}

fn parse_scopes(raw: &str, column: &'static str) -> Result<ScopeSet, CorruptRow> {
    ScopeSet::parse(raw).map_err(|_| CorruptRow::column(column))
}

fn parse_epoch(raw: i64, column: &'static str) -> Result<SessionEpoch, CorruptRow> {
    u32::try_from(raw)
        .map(SessionEpoch::new)
        .map_err(|_| CorruptRow::column(column))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);
    const GRACE: Duration = Duration::from_secs(10);

    fn presented(
        rotated_at: Option<i64>,
        successor: Option<[u8; 32]>,
        revoked: bool,
        expires_at: i64,
    ) -> PresentedTokenRow {
        PresentedTokenRow {
            family: FamilyRow {
                id: Uuid::from_u128(1).to_string(),
                user_id: Uuid::from_u128(2).to_string(),
                scope: "profile:read".into(),
                client_id: "default".into(),
                session_epoch: 0,
                issued_at: NOW.unix() - 100,
                expires_at,
            },
            revoked_at: revoked.then_some(NOW.unix() - 1),
            rotated_at,
            successor_hash: successor.map(Vec::from),
        }
    }

    #[test]
    fn replay_needs_the_same_successor_within_the_grace_period() {
        let successor = RefreshTokenHash([7; 32]);
        let live = NOW.unix() + 1000;

        let within = Rotation::decide(
            Some(presented(Some(NOW.unix() - 9), Some([7; 32]), false, live)),
            &successor,
            NOW,
            GRACE,
        );
        let at_the_edge = Rotation::decide(
            Some(presented(Some(NOW.unix() - 10), Some([7; 32]), false, live)),
            &successor,
            NOW,
            GRACE,
        );
        let other_successor = Rotation::decide(
            Some(presented(Some(NOW.unix()), Some([8; 32]), false, live)),
            &successor,
            NOW,
            GRACE,
        );

        assert!(matches!(within, Ok(Rotation::Replay(_))));
        assert!(matches!(at_the_edge, Ok(Rotation::RevokeForReuse(_))));
        assert!(matches!(other_successor, Ok(Rotation::RevokeForReuse(_))));
    }

    #[test]
    fn dead_families_are_invalid_whatever_the_token() {
        let successor = RefreshTokenHash([7; 32]);

        let revoked = Rotation::decide(
            Some(presented(None, None, true, NOW.unix() + 1000)),
            &successor,
            NOW,
            GRACE,
        );
        let expired = Rotation::decide(
            Some(presented(
                Some(NOW.unix() - 100),
                Some([1; 32]),
                false,
                NOW.unix(),
            )),
            &successor,
            NOW,
            GRACE,
        );
        let unknown = Rotation::decide(None, &successor, NOW, GRACE);

        assert!(matches!(revoked, Ok(Rotation::Invalid)));
        assert!(matches!(expired, Ok(Rotation::Invalid)));
        assert!(matches!(unknown, Ok(Rotation::Invalid)));
    }

    #[test]
    fn corrupt_rows_are_reported_with_the_column_and_never_the_value() {
        let mut row = presented(None, None, false, NOW.unix() + 1000);
        row.family.scope = "profile:read admin".into();

        let result = Rotation::decide(Some(row), &RefreshTokenHash([0; 32]), NOW, GRACE);

        let Err(error) = result else {
            panic!("an unknown scope must not decode")
        };
        assert_eq!(
            error.to_string(),
            "stored refresh_token_families.scope is invalid"
        );
    }

    #[test]
    fn the_administrator_rule_only_forbids_going_from_some_to_none() {
        assert!(keep_an_administrator(2, 1).is_ok());
        assert!(keep_an_administrator(0, 0).is_ok());
        assert!(matches!(
            keep_an_administrator(1, 0),
            Err(RepositoryError::LastAdministrator)
        ));
    }
}

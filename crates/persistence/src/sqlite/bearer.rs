//! [`BearerLookup`] on SQLite, with a cache of its answers.
//!
//! Every bearer request asks the same question about its token until something is written,
//! so the answers are kept, under the [`ChangeWatch`](super::ChangeWatch) generation they
//! were read in. Any write of this process ends the generation (a revocation, a disabled
//! user, a password change: exact, on the next request), and so does another process's
//! commit, within [`NOTICE_WITHIN`](super::direct::NOTICE_WITHIN). Nothing in the cache is
//! trusted beyond that: the signature, expiry and session checks of the token itself run on
//! every request, before the lookup.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use authgate_application::ports::{BearerLookup, BearerSubject, RepositoryError};
use authgate_domain::UserId;

use super::SqliteDatabase;
use super::users::user_columns;
use crate::error::unavailable;
use crate::rows::BearerRow;

/// [`BearerLookup`] on SQLite: `access_token_denylist` and `users` in one statement, on the
/// calling thread (see [`super::direct`]).
pub(crate) struct SqliteBearerLookup {
    database: SqliteDatabase,
    cache: SubjectCache,
}

impl SqliteBearerLookup {
    /// An adapter over `database`.
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        Self {
            database,
            cache: SubjectCache::default(),
        }
    }
}

/// The lookup: the one-row `one` makes the statement answer a row, and so `revoked`, even
/// when no user matches; each side is a primary-key lookup.
const BEARER_SUBJECT: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM access_token_denylist WHERE jti = ?2) AS revoked, ",
    user_columns!(),
    " FROM (SELECT 1) AS one LEFT JOIN users ON users.id = ?1"
);

#[async_trait]
impl BearerLookup for SqliteBearerLookup {
    async fn bearer_subject(
        &self,
        user_id: UserId,
        jwt_id: &str,
    ) -> Result<BearerSubject, RepositoryError> {
        let Some(direct) = &self.database.direct else {
            let row = sqlx::query_as::<_, BearerRow>(BEARER_SUBJECT)
                .bind(user_id.to_string())
                .bind(jwt_id)
                .fetch_one(&self.database.pool)
                .await
                .map_err(unavailable)?;
            return Ok(BearerSubject::try_from(row)?);
        };
        // The generation first, then the read it vouches for (see `ChangeWatch::generation`).
        let generation = direct.watch.generation()?;
        if let Some(subject) = self.cache.get(generation, user_id, jwt_id) {
            return Ok(subject);
        }
        let row = direct.readers.read(|connection| {
            connection
                .prepare_cached(BEARER_SUBJECT)?
                .query_row((user_id.to_string(), jwt_id), BearerRow::from_direct)
        })?;
        let subject = BearerSubject::try_from(row)?;
        self.cache.put(generation, user_id, jwt_id, &subject);
        Ok(subject)
    }
}

/// At most this many answers are kept; a full cache starts over.
const CACHE_CAPACITY: usize = 16_384;

/// The answers of one generation, by `jti` (unique per token), each with the user id it was
/// asked with.
#[derive(Default)]
struct SubjectCache {
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    generation: u64,
    answers: HashMap<String, (UserId, BearerSubject)>,
}

impl SubjectCache {
    /// The answer read in `generation` for this token, if there is one.
    fn get(&self, generation: u64, user_id: UserId, jwt_id: &str) -> Option<BearerSubject> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.generation != generation {
            return None;
        }
        state
            .answers
            .get(jwt_id)
            .filter(|(cached_for, _)| *cached_for == user_id)
            .map(|(_, subject)| subject.clone())
    }

    /// Keeps `subject`, read in `generation`, unless a later generation has begun; a new
    /// generation drops every older answer.
    fn put(&self, generation: u64, user_id: UserId, jwt_id: &str, subject: &BearerSubject) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if generation < state.generation {
            return;
        }
        if generation > state.generation || state.answers.len() >= CACHE_CAPACITY {
            state.generation = generation;
            state.answers.clear();
        }
        state
            .answers
            .insert(jwt_id.to_owned(), (user_id, subject.clone()));
    }
}

#[cfg(test)]
mod tests {
    use authgate_application::ports::{NewUser, UserPatch};
    use authgate_domain::{PasswordHash, ScopeSet, Timestamp, UserProfile, Username};
    use uuid::Uuid;

    use crate::{Database, PoolOptions, Repositories};

    const EXPIRES: Timestamp = Timestamp::from_unix(4_000_000_000);

    fn alice() -> NewUser {
        NewUser {
            id: authgate_domain::UserId::new(Uuid::new_v4()),
            username: Username::parse("alice").expect("a valid username"),
            password_hash: PasswordHash::new("$argon2id$hash-of-alice".to_owned()),
            profile: UserProfile::default(),
            scopes: ScopeSet::default_for_new_user(),
            created_at: Timestamp::from_unix(1_700_000_000),
        }
    }

    /// Two handles on one fresh database file, as two processes would hold them.
    async fn two_processes() -> (tempfile::TempDir, Database, Database) {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let url = format!(
            "sqlite://{}",
            directory.path().join("authgate.db").display()
        );
        let first = Database::connect(&url, PoolOptions::default())
            .await
            .expect("opens");
        first.migrate().await.expect("migrates");
        let second = Database::connect(&url, PoolOptions::default())
            .await
            .expect("opens");
        (directory, first, second)
    }

    async fn disabled(repositories: &Repositories, user: &NewUser, jti: &str) -> Option<bool> {
        let subject = repositories
            .bearer_lookup
            .bearer_subject(user.id, jti)
            .await
            .expect("the lookup succeeds");
        subject.user.map(|user| user.disabled)
    }

    /// One process on a fresh file, with alice stored and the answer for her `jti-1` cached.
    async fn alice_cached() -> (tempfile::TempDir, Database, Repositories, NewUser) {
        let (directory, database, other) = two_processes().await;
        other.close().await;
        let repositories = database.repositories();
        let alice = alice();
        repositories.users.insert(&alice).await.expect("stored");
        assert_eq!(disabled(&repositories, &alice, "jti-1").await, Some(false));
        (directory, database, repositories, alice)
    }

    #[tokio::test]
    async fn a_cached_answer_ends_with_this_process_s_next_write() {
        let (_directory, database, repositories, alice) = alice_cached().await;

        repositories
            .denylist
            .deny("jti-1", EXPIRES)
            .await
            .expect("denied");
        let subject = repositories
            .bearer_lookup
            .bearer_subject(alice.id, "jti-1")
            .await
            .expect("the lookup succeeds");
        assert!(
            subject.revoked,
            "a revocation shows on the very next lookup"
        );

        let patch = UserPatch {
            disabled: Some(true),
            ..UserPatch::default()
        };
        assert_eq!(disabled(&repositories, &alice, "jti-2").await, Some(false));
        repositories
            .users
            .update(&alice.username, &patch)
            .await
            .expect("disabled");
        assert_eq!(disabled(&repositories, &alice, "jti-2").await, Some(true));

        repositories
            .users
            .delete(&alice.username)
            .await
            .expect("deleted");
        assert_eq!(disabled(&repositories, &alice, "jti-2").await, None);
        database.close().await;
    }

    #[tokio::test]
    async fn another_process_s_write_shows_once_it_has_closed_the_database() {
        let (_directory, server, command_line) = two_processes().await;
        let alice = alice();
        let server_side = server.repositories();
        server_side.users.insert(&alice).await.expect("stored");
        assert_eq!(disabled(&server_side, &alice, "jti-1").await, Some(false));

        let patch = UserPatch {
            disabled: Some(true),
            ..UserPatch::default()
        };
        command_line
            .repositories()
            .users
            .update(&alice.username, &patch)
            .await
            .expect("disabled by the other process");
        // What `authgate user disable` does last; it waits out `NOTICE_WITHIN`.
        command_line.close().await;

        assert_eq!(disabled(&server_side, &alice, "jti-1").await, Some(true));
        server.close().await;
    }

    #[tokio::test]
    async fn an_answer_is_only_given_for_the_user_it_was_read_for() {
        let (_directory, database, repositories, _alice) = alice_cached().await;

        let stranger = authgate_domain::UserId::new(Uuid::new_v4());
        let subject = repositories
            .bearer_lookup
            .bearer_subject(stranger, "jti-1")
            .await
            .expect("the lookup succeeds");
        assert_eq!(subject.user, None);
        database.close().await;
    }
}

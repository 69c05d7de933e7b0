//! The contract suite: what every implementation of the repository ports must do, run on
//! SQLite, on PostgreSQL (when `AUTHGATE_TEST_POSTGRES_URL` is set) and on the in-memory fakes.
//!
//! Each check is an async function over a fresh, empty [`Repositories`]; the macros at the end
//! turn every check into one `#[tokio::test]` per backend, so backends are parameters rather
//! than copies. Checks that race use a multi-threaded runtime and real concurrent calls.

mod harness;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use authgate_application::ports::{
    BearerSubject, KeyMaterial, LOGIN_THROTTLE_RETENTION, NewUser, RefreshFamily, RefreshTokenHash,
    RepositoryError, RotateOutcome, SigningAlgorithm, StoredKey, UserPatch,
};
use authgate_domain::{
    ClientId, PasswordHash, Scope, ScopeSet, SessionEpoch, ThrottleDecision, Timestamp, User,
    UserId, UserProfile, Username,
};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::Repositories;
use harness::Throttles;

/// The time every check starts at.
const T0: Timestamp = Timestamp::from_unix(1_700_000_000);
/// The default `--refresh-reuse-grace`.
const GRACE: Duration = Duration::from_secs(10);
/// The lifetime of test families.
const FAMILY_TTL: Duration = Duration::from_secs(3600);
/// How many callers race in the concurrency checks.
pub(crate) const RACERS: usize = 10;
/// How often the checks that race on one outcome repeat: who wins a race is a matter of
/// timing, and on a machine with few cores one round may not overlap at all.
const RACE_ROUNDS: usize = 10;

#[track_caller]
fn username(raw: &str) -> Username {
    Username::parse(raw).expect("test usernames are valid")
}

/// Builds the [`NewUser`]s the checks store.
struct TestUser(NewUser);

impl TestUser {
    /// An enabled user with the default scopes and no profile.
    #[track_caller]
    fn named(raw: &str) -> Self {
        Self(NewUser {
            id: UserId::new(Uuid::new_v4()),
            username: username(raw),
            password_hash: PasswordHash::new(format!(
                "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$hash-of-{raw}"
            )),
            profile: UserProfile::default(),
            scopes: ScopeSet::default_for_new_user(),
            created_at: T0,
        })
    }

    /// With every scope, `users:write` included.
    fn administrator(mut self) -> Self {
        self.0.scopes = ScopeSet::all();
        self
    }

    fn with_profile(mut self, email: &str, full_name: &str) -> Self {
        self.0.profile = UserProfile {
            email: Some(email.to_owned()),
            full_name: Some(full_name.to_owned()),
        };
        self
    }

    fn build(self) -> NewUser {
        self.0
    }
}

async fn insert(repositories: &Repositories, user: TestUser) -> User {
    repositories
        .users
        .insert(&user.build())
        .await
        .expect("the user is stored")
}

async fn find(repositories: &Repositories, raw: &str) -> Option<User> {
    repositories
        .users
        .find_by_username(&username(raw))
        .await
        .expect("the lookup succeeds")
}

/// A refresh token's hash; distinct `seed`s give distinct tokens.
fn token(seed: u8) -> RefreshTokenHash {
    RefreshTokenHash([seed; 32])
}

/// Stores a family for `user` issued at [`T0`] whose first token is `first`.
async fn start_family(
    repositories: &Repositories,
    user: &User,
    first: RefreshTokenHash,
) -> RefreshFamily {
    let family = RefreshFamily {
        id: Uuid::new_v4(),
        user_id: user.id,
        scope: ScopeSet::from_iter([Scope::ProfileRead, Scope::UsersRead]),
        client_id: ClientId::parse("test-client").expect("a valid client id"),
        session_epoch: user.session_epoch,
        issued_at: T0,
        expires_at: T0.plus(FAMILY_TTL),
    };
    repositories
        .refresh_tokens
        .create_family(&family, &first)
        .await
        .expect("the family is stored");
    family
}

async fn rotate(
    repositories: &Repositories,
    presented: RefreshTokenHash,
    successor: RefreshTokenHash,
    now: Timestamp,
    grace: Duration,
) -> RotateOutcome {
    repositories
        .refresh_tokens
        .rotate(&presented, &successor, now, grace)
        .await
        .expect("rotation runs")
}

async fn is_current(
    repositories: &Repositories,
    presented: RefreshTokenHash,
    now: Timestamp,
) -> bool {
    repositories
        .refresh_tokens
        .find_current(&presented, now)
        .await
        .expect("the lookup succeeds")
        .is_some()
}

async fn bearer_subject(
    repositories: &Repositories,
    user_id: UserId,
    jwt_id: &str,
) -> BearerSubject {
    repositories
        .bearer_lookup
        .bearer_subject(user_id, jwt_id)
        .await
        .expect("the lookup succeeds")
}

/// Whether `jwt_id` is denied, as bearer authentication reads it.
async fn is_denied(repositories: &Repositories, jwt_id: &str) -> bool {
    bearer_subject(repositories, UserId::new(Uuid::new_v4()), jwt_id)
        .await
        .revoked
}

fn key(kid: &str, algorithm: SigningAlgorithm, created_at: Timestamp) -> StoredKey {
    StoredKey {
        kid: kid.to_owned(),
        algorithm,
        private_key: KeyMaterial(kid.as_bytes().to_vec()),
        created_at,
        retired_at: None,
    }
}

/// Runs `racers` (at most [`RACERS`]) copies of `call` at once and collects their results.
///
/// The copies wait at a barrier so that they start together, and the harness has already
/// opened [`RACERS`] connections, so none of them is delayed by connecting.
async fn race<Output, Call, Fut>(racers: usize, call: Call) -> Vec<Output>
where
    Output: Send + 'static,
    Call: Fn(usize) -> Fut,
    Fut: Future<Output = Output> + Send + 'static,
{
    let start = Arc::new(Barrier::new(racers));
    let handles: Vec<_> = (0..racers)
        .map(|index| {
            let start = Arc::clone(&start);
            let racer = call(index);
            tokio::spawn(async move {
                start.wait().await;
                racer.await
            })
        })
        .collect();
    let mut outputs = Vec::with_capacity(racers);
    for handle in handles {
        outputs.push(handle.await.expect("a racing call does not panic"));
    }
    outputs
}

// ---------------------------------------------------------------------------------------------
// Users

pub(crate) async fn a_stored_user_is_found_by_username_and_by_id(repositories: Repositories) {
    let new_user = TestUser::named("alice")
        .with_profile("alice@example.com", "Alice Liddell")
        .build();

    let stored = repositories.users.insert(&new_user).await.expect("stored");

    assert_eq!(stored.id, new_user.id);
    assert_eq!(stored.username, new_user.username);
    assert_eq!(stored.profile, new_user.profile);
    assert_eq!(stored.scopes, new_user.scopes);
    assert_eq!(stored.created_at, T0);
    assert!(!stored.disabled);
    assert_eq!(stored.session_epoch, SessionEpoch::new(0));
    assert_eq!(find(&repositories, "alice").await, Some(stored.clone()));
    assert_eq!(
        repositories
            .users
            .find_by_id(new_user.id)
            .await
            .expect("lookup"),
        Some(stored.clone())
    );
    let (user, hash) = repositories
        .users
        .find_credentials(&username("alice"))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(user, stored);
    assert_eq!(hash.expose(), new_user.password_hash.expose());
    assert_eq!(find(&repositories, "bob").await, None);
    assert_eq!(
        repositories
            .users
            .find_by_id(UserId::new(Uuid::new_v4()))
            .await
            .expect("lookup"),
        None
    );
    assert!(
        repositories
            .users
            .find_credentials(&username("bob"))
            .await
            .expect("lookup")
            .is_none()
    );
}

pub(crate) async fn a_duplicate_username_is_refused_as_taken(repositories: Repositories) {
    insert(&repositories, TestUser::named("alice")).await;

    let result = repositories
        .users
        .insert(&TestUser::named("alice").administrator().build())
        .await;

    assert!(
        matches!(result, Err(RepositoryError::UsernameTaken)),
        "{result:?}"
    );
    let kept = find(&repositories, "alice")
        .await
        .expect("the first alice remains");
    assert_eq!(kept.scopes, ScopeSet::default_for_new_user());
}

pub(crate) async fn usernames_differing_only_in_case_collide_because_callers_normalise_them(
    repositories: Repositories,
) {
    // The store compares exactly; case-insensitivity comes from `Username::parse` lower-casing.
    insert(&repositories, TestUser::named("Alice")).await;

    let result = repositories
        .users
        .insert(&TestUser::named("ALICE").build())
        .await;

    assert!(
        matches!(result, Err(RepositoryError::UsernameTaken)),
        "{result:?}"
    );
    assert_eq!(
        find(&repositories, "aLiCe")
            .await
            .map(|user| user.username.as_str().to_owned()),
        Some("alice".into())
    );
}

pub(crate) async fn changing_the_password_replaces_the_hash_and_moves_to_the_next_session_epoch(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let new_hash = PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$bmV3c2FsdA$new".into());

    let once = repositories
        .users
        .change_password(alice.id, &new_hash)
        .await
        .expect("changed");
    let twice = repositories
        .users
        .change_password(alice.id, &new_hash)
        .await
        .expect("changed again");
    let unknown = repositories
        .users
        .change_password(UserId::new(Uuid::new_v4()), &new_hash)
        .await;

    assert_eq!(once.session_epoch, SessionEpoch::new(1));
    assert_eq!(twice.session_epoch, SessionEpoch::new(2));
    assert_eq!(
        find(&repositories, "alice")
            .await
            .map(|user| user.session_epoch),
        Some(SessionEpoch::new(2))
    );
    let (_, hash) = repositories
        .users
        .find_credentials(&username("alice"))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(hash.expose(), new_hash.expose());
    assert!(
        matches!(unknown, Err(RepositoryError::NotFound)),
        "{unknown:?}"
    );
}

pub(crate) async fn upgrading_a_password_hash_keeps_every_session(repositories: Repositories) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let rehashed = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$rehashed".into());

    repositories
        .users
        .upgrade_password_hash(alice.id, &rehashed)
        .await
        .expect("upgraded");
    let missing = repositories
        .users
        .upgrade_password_hash(UserId::new(Uuid::new_v4()), &rehashed)
        .await;

    let (user, hash) = repositories
        .users
        .find_credentials(&username("alice"))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(hash.expose(), rehashed.expose());
    assert_eq!(user.session_epoch, SessionEpoch::new(0));
    assert!(missing.is_ok(), "{missing:?}");
}

pub(crate) async fn a_patch_changes_only_the_fields_it_names(repositories: Repositories) {
    insert(
        &repositories,
        TestUser::named("alice").with_profile("alice@example.com", "Alice"),
    )
    .await;
    let readers = ScopeSet::from_iter([Scope::ProfileRead, Scope::UsersRead]);

    let disabled = repositories
        .users
        .update(
            &username("alice"),
            &UserPatch {
                disabled: Some(true),
                scopes: Some(readers),
                ..UserPatch::default()
            },
        )
        .await
        .expect("patched");
    let renamed = repositories
        .users
        .update(
            &username("alice"),
            &UserPatch {
                email: Some(Some("a@example.org".into())),
                full_name: Some(None),
                ..UserPatch::default()
            },
        )
        .await
        .expect("patched");
    let untouched = repositories
        .users
        .update(&username("alice"), &UserPatch::default())
        .await
        .expect("patched");
    let unknown = repositories
        .users
        .update(&username("nobody"), &UserPatch::default())
        .await;

    assert!(disabled.disabled);
    assert_eq!(disabled.scopes, readers);
    assert_eq!(disabled.profile.email.as_deref(), Some("alice@example.com"));
    assert!(renamed.disabled);
    assert_eq!(renamed.scopes, readers);
    assert_eq!(
        renamed.profile,
        UserProfile {
            email: Some("a@example.org".into()),
            full_name: None
        }
    );
    assert_eq!(untouched, renamed);
    assert_eq!(find(&repositories, "alice").await, Some(renamed));
    assert!(
        matches!(unknown, Err(RepositoryError::NotFound)),
        "{unknown:?}"
    );
}

pub(crate) async fn keyset_pagination_visits_every_user_exactly_once_in_byte_order(
    repositories: Repositories,
) {
    // Punctuation sorts differently under natural-language collations; the stores use byte order.
    let names = [
        "zed", "a.b", "a-b", "a_b", "abc", "0day", "m.n.o", "b--", "z9z", "_x_",
    ];
    for name in names {
        insert(&repositories, TestUser::named(name)).await;
    }
    let mut expected: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    expected.sort();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = repositories
            .users
            .list(after.clone(), 3)
            .await
            .expect("a page");
        assert!(page.len() <= 3, "a page never exceeds its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.username.clone());
        seen.extend(
            page.into_iter()
                .map(|user| user.username.as_str().to_owned()),
        );
        if seen.len() == 3 {
            // Inserted mid-walk: behind the cursor is not seen, ahead of it is, and nothing
            // that existed is skipped or repeated.
            insert(&repositories, TestUser::named("00a")).await;
            insert(&repositories, TestUser::named("zz-late")).await;
        }
    }
    expected.push("zz-late".to_owned());

    assert_eq!(seen, expected);
    assert_eq!(
        repositories
            .users
            .list(None, 200)
            .await
            .expect("one page")
            .len(),
        names.len() + 2
    );
    assert!(
        repositories
            .users
            .list(Some(username("zzz")), 10)
            .await
            .expect("past the end")
            .is_empty()
    );
}

pub(crate) async fn deleting_a_user_returns_them_and_unknown_users_are_not_found(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;

    let deleted = repositories
        .users
        .delete(&username("alice"))
        .await
        .expect("deleted");
    let again = repositories.users.delete(&username("alice")).await;

    assert_eq!(deleted, alice);
    assert_eq!(find(&repositories, "alice").await, None);
    assert!(matches!(again, Err(RepositoryError::NotFound)), "{again:?}");
}

pub(crate) async fn the_last_administrator_cannot_be_disabled(repositories: Repositories) {
    insert(&repositories, TestUser::named("root").administrator()).await;
    insert(&repositories, TestUser::named("alice")).await;

    let result = repositories
        .users
        .update(
            &username("root"),
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await;

    assert!(
        matches!(result, Err(RepositoryError::LastAdministrator)),
        "{result:?}"
    );
    assert!(
        !find(&repositories, "root")
            .await
            .expect("still there")
            .disabled,
        "the refused change is rolled back"
    );
}

pub(crate) async fn the_last_administrator_cannot_lose_users_write(repositories: Repositories) {
    insert(&repositories, TestUser::named("root").administrator()).await;
    let everything_else = ScopeSet::all()
        .iter()
        .filter(|scope| *scope != Scope::UsersWrite)
        .collect();

    let demoted = repositories
        .users
        .update(
            &username("root"),
            &UserPatch {
                scopes: Some(everything_else),
                email: Some(Some("r@x.io".into())),
                ..UserPatch::default()
            },
        )
        .await;
    let after_refusal = find(&repositories, "root").await.expect("still there");
    let renamed = repositories
        .users
        .update(
            &username("root"),
            &UserPatch {
                email: Some(Some("root@example.com".into())),
                ..UserPatch::default()
            },
        )
        .await;

    assert!(
        matches!(demoted, Err(RepositoryError::LastAdministrator)),
        "{demoted:?}"
    );
    assert_eq!(
        after_refusal.profile.email, None,
        "nothing of the refused patch is kept"
    );
    let root = renamed.expect("a change that keeps the administrator is allowed");
    assert_eq!(root.scopes, ScopeSet::all());
    assert_eq!(root.profile.email.as_deref(), Some("root@example.com"));
}

pub(crate) async fn the_last_administrator_cannot_be_deleted(repositories: Repositories) {
    insert(&repositories, TestUser::named("root").administrator()).await;
    insert(&repositories, TestUser::named("alice")).await;

    let result = repositories.users.delete(&username("root")).await;
    let other = repositories.users.delete(&username("alice")).await;

    assert!(
        matches!(result, Err(RepositoryError::LastAdministrator)),
        "{result:?}"
    );
    assert!(
        find(&repositories, "root").await.is_some(),
        "the refused delete is rolled back"
    );
    assert!(other.is_ok(), "{other:?}");
}

pub(crate) async fn an_administrator_may_go_while_another_enabled_one_remains(
    repositories: Repositories,
) {
    insert(&repositories, TestUser::named("root").administrator()).await;
    insert(&repositories, TestUser::named("deputy").administrator()).await;
    insert(&repositories, TestUser::named("ghost").administrator()).await;
    repositories
        .users
        .update(
            &username("ghost"),
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("two remain");

    let deleted = repositories.users.delete(&username("deputy")).await;
    let last = repositories
        .users
        .update(
            &username("root"),
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await;

    assert!(deleted.is_ok(), "{deleted:?}");
    assert!(
        matches!(last, Err(RepositoryError::LastAdministrator)),
        "a disabled administrator does not count: {last:?}"
    );
}

pub(crate) async fn without_an_administrator_the_rule_blocks_nothing(repositories: Repositories) {
    insert(&repositories, TestUser::named("alice")).await;
    insert(&repositories, TestUser::named("bob")).await;

    let disabled = repositories
        .users
        .update(
            &username("alice"),
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await;
    let deleted = repositories.users.delete(&username("bob")).await;

    assert!(disabled.is_ok(), "{disabled:?}");
    assert!(deleted.is_ok(), "{deleted:?}");
}

pub(crate) async fn racing_removals_of_the_last_two_administrators_leave_one(
    repositories: Repositories,
) {
    // Alternately disable and delete both administrators at once; restore them between rounds.
    const ADMINISTRATORS: [&str; 2] = ["root", "deputy"];
    for name in ADMINISTRATORS {
        insert(&repositories, TestUser::named(name).administrator()).await;
    }

    for round in 0..RACE_ROUNDS {
        let users = repositories.users.clone();
        let outcomes = race(ADMINISTRATORS.len(), move |index| {
            let users = users.clone();
            async move {
                let target = username(ADMINISTRATORS[index]);
                if round % 2 == 0 {
                    let disable = UserPatch {
                        disabled: Some(true),
                        ..UserPatch::default()
                    };
                    users.update(&target, &disable).await.map(|_| ())
                } else {
                    users.delete(&target).await.map(|_| ())
                }
            }
        })
        .await;

        let refused = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Err(RepositoryError::LastAdministrator)))
            .count();
        assert_eq!(refused, 1, "round {round}: {outcomes:?}");
        assert_eq!(
            outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        let remaining = repositories.users.list(None, 10).await.expect("a page");
        let administrators = remaining
            .iter()
            .filter(|user| !user.disabled && user.scopes.contains(Scope::UsersWrite))
            .count();
        assert_eq!(administrators, 1, "round {round}: {outcomes:?}");
        for name in ADMINISTRATORS {
            if find(&repositories, name).await.is_some() {
                let enable = UserPatch {
                    disabled: Some(false),
                    ..UserPatch::default()
                };
                repositories
                    .users
                    .update(&username(name), &enable)
                    .await
                    .expect("enabling is always allowed");
            } else {
                insert(&repositories, TestUser::named(name).administrator()).await;
            }
        }
    }
}

pub(crate) async fn insert_if_empty_stores_only_into_an_empty_store(repositories: Repositories) {
    let first = repositories
        .users
        .insert_if_empty(&TestUser::named("admin").administrator().build())
        .await;
    let second = repositories
        .users
        .insert_if_empty(&TestUser::named("other").administrator().build())
        .await;

    assert!(matches!(first, Ok(true)), "{first:?}");
    assert!(matches!(second, Ok(false)), "{second:?}");
    assert!(
        find(&repositories, "admin")
            .await
            .is_some_and(|admin| admin.scopes == ScopeSet::all())
    );
    assert_eq!(find(&repositories, "other").await, None);
}

pub(crate) async fn racing_bootstraps_store_exactly_one_user(repositories: Repositories) {
    // Plain users rather than administrators, so that each round can empty the store again.
    for round in 0..RACE_ROUNDS {
        let users = repositories.users.clone();
        let outcomes = race(RACERS, move |index| {
            let users = users.clone();
            async move {
                let candidate = TestUser::named(&format!("admin-{round}-{index}")).build();
                users.insert_if_empty(&candidate).await
            }
        })
        .await;

        let stored = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(true)))
            .count();
        assert_eq!(stored, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.iter().all(Result::is_ok),
            "round {round}: {outcomes:?}"
        );
        let everyone = repositories.users.list(None, 100).await.expect("a page");
        assert_eq!(everyone.len(), 1, "round {round}");
        for user in everyone {
            repositories
                .users
                .delete(&user.username)
                .await
                .expect("a plain user can be deleted");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Refresh tokens

pub(crate) async fn the_first_token_of_a_new_family_is_current(repositories: Repositories) {
    let alice = insert(&repositories, TestUser::named("alice")).await;

    let family = start_family(&repositories, &alice, token(1)).await;

    let found = repositories
        .refresh_tokens
        .find_current(&token(1), T0)
        .await
        .expect("lookup");
    assert_eq!(found, Some(family));
    assert!(
        !is_current(&repositories, token(2), T0).await,
        "an unknown token is not current"
    );
}

pub(crate) async fn rotating_the_current_token_makes_its_successor_current(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let family = start_family(&repositories, &alice, token(1)).await;
    let now = T0.plus(Duration::from_secs(60));

    let first = rotate(&repositories, token(1), token(2), now, GRACE).await;
    let second = rotate(&repositories, token(2), token(3), now, GRACE).await;

    assert_eq!(first, RotateOutcome::Rotated(family.clone()));
    assert_eq!(second, RotateOutcome::Rotated(family.clone()));
    assert!(!is_current(&repositories, token(1), now).await);
    assert!(!is_current(&repositories, token(2), now).await);
    assert_eq!(
        repositories
            .refresh_tokens
            .find_current(&token(3), now)
            .await
            .expect("lookup"),
        Some(family)
    );
}

pub(crate) async fn a_rotated_token_presented_again_within_the_grace_period_is_replayed(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let family = start_family(&repositories, &alice, token(1)).await;
    rotate(&repositories, token(1), token(2), T0, GRACE).await;

    let immediately = rotate(&repositories, token(1), token(2), T0, GRACE).await;
    let just_in_time = rotate(
        &repositories,
        token(1),
        token(2),
        T0.plus(Duration::from_secs(9)),
        GRACE,
    )
    .await;

    assert_eq!(immediately, RotateOutcome::Replayed(family.clone()));
    assert_eq!(just_in_time, RotateOutcome::Replayed(family));
    assert!(
        is_current(&repositories, token(2), T0).await,
        "a replay changes nothing"
    );
}

pub(crate) async fn a_rotated_token_presented_once_the_grace_period_is_over_revokes_the_family(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    start_family(&repositories, &alice, token(1)).await;
    rotate(&repositories, token(1), token(2), T0, GRACE).await;
    let later = T0.plus(GRACE);

    let reuse = rotate(&repositories, token(1), token(2), later, GRACE).await;

    assert_eq!(reuse, RotateOutcome::Reused, "the grace period is strict");
    assert!(
        !is_current(&repositories, token(2), later).await,
        "the newest token dies with its family"
    );
    assert_eq!(
        rotate(&repositories, token(2), token(3), later, GRACE).await,
        RotateOutcome::Invalid
    );
    assert_eq!(
        rotate(&repositories, token(1), token(2), later, GRACE).await,
        RotateOutcome::Invalid
    );
}

pub(crate) async fn a_rotated_token_presented_with_another_successor_is_reuse(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    start_family(&repositories, &alice, token(1)).await;
    rotate(&repositories, token(1), token(2), T0, GRACE).await;

    let outcome = rotate(&repositories, token(1), token(9), T0, GRACE).await;

    assert_eq!(outcome, RotateOutcome::Reused);
    assert!(!is_current(&repositories, token(2), T0).await);
}

pub(crate) async fn concurrent_rotations_within_the_grace_period_all_agree(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;

    for round in 0..RACE_ROUNDS {
        let (presented, successor) = race_tokens(round);
        let family = start_family(&repositories, &alice, presented).await;
        let store = repositories.refresh_tokens.clone();
        let outcomes = race(RACERS, move |_| {
            let store = store.clone();
            async move {
                store
                    .rotate(&presented, &successor, T0, GRACE)
                    .await
                    .expect("rotation runs")
            }
        })
        .await;

        let rotated = outcomes
            .iter()
            .filter(|outcome| **outcome == RotateOutcome::Rotated(family.clone()))
            .count();
        let replayed = outcomes
            .iter()
            .filter(|outcome| **outcome == RotateOutcome::Replayed(family.clone()))
            .count();
        assert_eq!(
            (rotated, replayed),
            (1, RACERS - 1),
            "round {round}: {outcomes:?}"
        );
        assert!(is_current(&repositories, successor, T0).await);
    }
}

pub(crate) async fn concurrent_rotations_without_grace_let_exactly_one_succeed(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;

    for round in 0..RACE_ROUNDS {
        let (presented, successor) = race_tokens(round);
        start_family(&repositories, &alice, presented).await;
        let store = repositories.refresh_tokens.clone();
        let outcomes = race(RACERS, move |_| {
            let store = store.clone();
            async move {
                store
                    .rotate(&presented, &successor, T0, Duration::ZERO)
                    .await
                    .expect("rotation runs")
            }
        })
        .await;

        // The first loser revokes the family as reuse; later ones may find it revoked already.
        let rotated = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, RotateOutcome::Rotated(_)))
            .count();
        let reused = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, RotateOutcome::Reused))
            .count();
        assert_eq!(rotated, 1, "round {round}: {outcomes:?}");
        assert!(reused >= 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|outcome| !matches!(outcome, RotateOutcome::Replayed(_))),
            "round {round}: {outcomes:?}"
        );
        assert!(
            !is_current(&repositories, successor, T0).await,
            "the winner's successor dies with the family"
        );
    }
}

/// A fresh first token and its successor for each round of a rotation race.
fn race_tokens(round: usize) -> (RefreshTokenHash, RefreshTokenHash) {
    let seed = u8::try_from(100 + 2 * round).expect("few rounds");
    (token(seed), token(seed + 1))
}

pub(crate) async fn revoking_a_family_by_an_old_token_invalidates_its_newest_token(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    start_family(&repositories, &alice, token(1)).await;
    rotate(&repositories, token(1), token(2), T0, GRACE).await;

    repositories
        .refresh_tokens
        .revoke_family_of(&token(1), "revoked", T0)
        .await
        .expect("revoked");
    repositories
        .refresh_tokens
        .revoke_family_of(&token(1), "again", T0)
        .await
        .expect("revoking twice is harmless");
    repositories
        .refresh_tokens
        .revoke_family_of(&token(77), "revoked", T0)
        .await
        .expect("an unknown token is no error");

    assert!(!is_current(&repositories, token(2), T0).await);
    assert_eq!(
        rotate(&repositories, token(2), token(3), T0, GRACE).await,
        RotateOutcome::Invalid
    );
    assert_eq!(
        rotate(&repositories, token(1), token(2), T0, GRACE).await,
        RotateOutcome::Invalid
    );
}

pub(crate) async fn revoking_a_users_families_leaves_other_users_alone(repositories: Repositories) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let bob = insert(&repositories, TestUser::named("bob")).await;
    start_family(&repositories, &alice, token(1)).await;
    start_family(&repositories, &alice, token(2)).await;
    start_family(&repositories, &bob, token(3)).await;

    repositories
        .refresh_tokens
        .revoke_user_families(alice.id, "password_changed", T0)
        .await
        .expect("revoked");

    assert!(!is_current(&repositories, token(1), T0).await);
    assert!(!is_current(&repositories, token(2), T0).await);
    assert!(is_current(&repositories, token(3), T0).await);
    assert_eq!(
        rotate(&repositories, token(1), token(11), T0, GRACE).await,
        RotateOutcome::Invalid
    );
}

pub(crate) async fn a_family_is_dead_from_the_second_it_expires(repositories: Repositories) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let family = start_family(&repositories, &alice, token(1)).await;
    let last_second = family.expires_at.minus(Duration::from_secs(1));

    assert!(is_current(&repositories, token(1), last_second).await);
    assert!(!is_current(&repositories, token(1), family.expires_at).await);
    assert_eq!(
        rotate(&repositories, token(1), token(2), family.expires_at, GRACE).await,
        RotateOutcome::Invalid
    );
    assert_eq!(
        rotate(&repositories, token(1), token(2), last_second, GRACE).await,
        RotateOutcome::Rotated(family)
    );
}

pub(crate) async fn an_unknown_token_is_invalid_and_changes_nothing(repositories: Repositories) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    start_family(&repositories, &alice, token(1)).await;

    let outcome = rotate(&repositories, token(42), token(1), T0, GRACE).await;

    assert_eq!(outcome, RotateOutcome::Invalid);
    assert!(is_current(&repositories, token(1), T0).await);
}

pub(crate) async fn purging_deletes_only_families_that_expired_before_now(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    let expiring = start_family(&repositories, &alice, token(1)).await;
    rotate(&repositories, token(1), token(2), T0, GRACE).await;
    let mut lasting = RefreshFamily {
        id: Uuid::new_v4(),
        ..expiring.clone()
    };
    lasting.expires_at = expiring.expires_at.plus(FAMILY_TTL);
    repositories
        .refresh_tokens
        .create_family(&lasting, &token(3))
        .await
        .expect("stored");

    let at_expiry = repositories
        .refresh_tokens
        .purge_expired(expiring.expires_at)
        .await
        .expect("purged");
    let after = repositories
        .refresh_tokens
        .purge_expired(expiring.expires_at.plus(Duration::from_secs(1)))
        .await
        .expect("purged");

    assert_eq!((at_expiry, after), (0, 1));
    assert!(is_current(&repositories, token(3), expiring.expires_at).await);
    assert_eq!(
        rotate(&repositories, token(1), token(2), T0, GRACE).await,
        RotateOutcome::Invalid,
        "its tokens went too"
    );
}

// ---------------------------------------------------------------------------------------------
// Access-token denylist

pub(crate) async fn a_denied_token_id_stays_denied_until_purged_after_its_expiry(
    repositories: Repositories,
) {
    let expires_at = T0.plus(Duration::from_secs(900));
    let denylist = &repositories.denylist;

    denylist.deny("jti-1", expires_at).await.expect("denied");
    denylist
        .deny("jti-1", T0)
        .await
        .expect("denying twice is no error and keeps the later expiry");
    denylist.deny("jti-2", T0).await.expect("denied");

    assert!(is_denied(&repositories, "jti-1").await);
    assert!(!is_denied(&repositories, "jti-3").await);
    assert_eq!(
        denylist.purge_expired(T0).await.expect("purged"),
        0,
        "only entries that expired before now go"
    );
    assert_eq!(
        denylist
            .purge_expired(T0.plus(Duration::from_secs(1)))
            .await
            .expect("purged"),
        1
    );
    assert!(!is_denied(&repositories, "jti-2").await);
    assert!(is_denied(&repositories, "jti-1").await);
    assert_eq!(
        denylist
            .purge_expired(expires_at.plus(Duration::from_secs(1)))
            .await
            .expect("purged"),
        1
    );
    assert!(!is_denied(&repositories, "jti-1").await);
}

// ---------------------------------------------------------------------------------------------
// Bearer lookup

pub(crate) async fn a_known_user_with_a_token_nobody_revoked_is_found_and_not_revoked(
    repositories: Repositories,
) {
    let alice = insert(
        &repositories,
        TestUser::named("alice").with_profile("alice@example.com", "Alice Liddell"),
    )
    .await;
    repositories
        .denylist
        .deny("jti-2", T0.plus(Duration::from_secs(900)))
        .await
        .expect("denied");

    let subject = bearer_subject(&repositories, alice.id, "jti-1").await;

    assert_eq!(
        subject,
        BearerSubject {
            user: Some(alice),
            revoked: false,
        }
    );
}

pub(crate) async fn a_denied_token_id_is_revoked_for_known_and_unknown_users(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    repositories
        .denylist
        .deny("jti-1", T0.plus(Duration::from_secs(900)))
        .await
        .expect("denied");

    let known = bearer_subject(&repositories, alice.id, "jti-1").await;
    let unknown = bearer_subject(&repositories, UserId::new(Uuid::new_v4()), "jti-1").await;

    assert_eq!(
        known,
        BearerSubject {
            user: Some(alice),
            revoked: true,
        }
    );
    assert_eq!(
        unknown,
        BearerSubject {
            user: None,
            revoked: true,
        }
    );
}

pub(crate) async fn an_unknown_or_deleted_user_is_none_and_not_an_error(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    insert(&repositories, TestUser::named("bob")).await;
    repositories
        .users
        .delete(&username("alice"))
        .await
        .expect("deleted");

    let deleted = bearer_subject(&repositories, alice.id, "jti-1").await;
    let unknown = bearer_subject(&repositories, UserId::new(Uuid::new_v4()), "jti-1").await;

    let nobody = BearerSubject {
        user: None,
        revoked: false,
    };
    assert_eq!(deleted, nobody);
    assert_eq!(unknown, nobody);
}

pub(crate) async fn the_user_is_returned_as_stored_now_even_when_disabled(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    repositories
        .users
        .change_password(alice.id, &PasswordHash::new("$argon2id$new".to_owned()))
        .await
        .expect("the password changes");
    let disabled = repositories
        .users
        .update(
            &username("alice"),
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("alice is disabled");

    let subject = bearer_subject(&repositories, alice.id, "jti-1").await;

    assert_eq!(
        subject,
        BearerSubject {
            user: Some(disabled.clone()),
            revoked: false,
        }
    );
    assert!(disabled.disabled);
    assert_eq!(disabled.session_epoch, alice.session_epoch.next());
}

// ---------------------------------------------------------------------------------------------
// Keys and secrets

pub(crate) async fn only_the_first_active_key_per_algorithm_is_stored(repositories: Repositories) {
    let keys = &repositories.keys;

    let first = keys
        .insert_if_no_active(&key("ed-1", SigningAlgorithm::EdDsa, T0))
        .await
        .expect("runs");
    let second = keys
        .insert_if_no_active(&key("ed-2", SigningAlgorithm::EdDsa, T0))
        .await
        .expect("runs");
    let rsa = keys
        .insert_if_no_active(&key(
            "rsa-1",
            SigningAlgorithm::Rs256,
            T0.plus(Duration::from_secs(1)),
        ))
        .await
        .expect("runs");

    assert!(first);
    assert!(!second);
    assert!(rsa, "each algorithm has its own active key");
    assert_eq!(
        keys.list().await.expect("listed"),
        vec![
            key("ed-1", SigningAlgorithm::EdDsa, T0),
            key(
                "rsa-1",
                SigningAlgorithm::Rs256,
                T0.plus(Duration::from_secs(1))
            )
        ]
    );
}

pub(crate) async fn rotating_retires_the_active_key_when_the_new_one_is_made(
    repositories: Repositories,
) {
    let keys = &repositories.keys;
    let later = T0.plus(Duration::from_secs(86_400));
    keys.insert_if_no_active(&key("ed-1", SigningAlgorithm::EdDsa, T0))
        .await
        .expect("stored");
    keys.insert_if_no_active(&key("hs-1", SigningAlgorithm::Hs256, T0))
        .await
        .expect("stored");

    keys.rotate(&key("ed-2", SigningAlgorithm::EdDsa, later))
        .await
        .expect("rotated");

    let listed = keys.list().await.expect("listed");
    let kids: Vec<&str> = listed.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(kids, ["ed-1", "hs-1", "ed-2"], "oldest first");
    assert_eq!(listed[0].retired_at, Some(later));
    assert_eq!(
        listed[1].retired_at, None,
        "other algorithms keep their key"
    );
    assert_eq!(listed[2], key("ed-2", SigningAlgorithm::EdDsa, later));
    assert!(
        !keys
            .insert_if_no_active(&key("ed-3", SigningAlgorithm::EdDsa, later))
            .await
            .expect("runs")
    );
}

pub(crate) async fn racing_first_starts_store_exactly_one_active_key(repositories: Repositories) {
    let keys = repositories.keys.clone();

    let outcomes = race(RACERS, move |index| {
        let keys = keys.clone();
        async move {
            keys.insert_if_no_active(&key(&format!("ed-{index}"), SigningAlgorithm::EdDsa, T0))
                .await
        }
    })
    .await;

    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(true)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(repositories.keys.list().await.expect("listed").len(), 1);
}

pub(crate) async fn a_due_rotation_retires_the_old_key_and_a_fresh_key_is_left_alone(
    repositories: Repositories,
) {
    let keys = &repositories.keys;
    let later = T0.plus(Duration::from_secs(100));
    keys.insert_if_no_active(&key("ed-1", SigningAlgorithm::EdDsa, T0))
        .await
        .expect("stored");
    keys.insert_if_no_active(&key("hs-1", SigningAlgorithm::Hs256, T0))
        .await
        .expect("stored");

    let not_yet = keys
        .rotate_if_due(&key("ed-early", SigningAlgorithm::EdDsa, later), T0)
        .await
        .expect("runs");
    let due = keys
        .rotate_if_due(
            &key("ed-2", SigningAlgorithm::EdDsa, later),
            T0.plus(Duration::from_secs(1)),
        )
        .await
        .expect("runs");
    let fresh = keys
        .rotate_if_due(
            &key(
                "ed-3",
                SigningAlgorithm::EdDsa,
                later.plus(Duration::from_secs(1)),
            ),
            later,
        )
        .await
        .expect("runs");

    assert!(!not_yet, "a key created exactly at the cut-off is not due");
    assert!(due);
    assert!(!fresh, "the key just stored is not due");
    let listed = keys.list().await.expect("listed");
    let kids: Vec<&str> = listed.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(kids, ["ed-1", "hs-1", "ed-2"], "nothing else was stored");
    assert_eq!(
        listed[0].retired_at,
        Some(later),
        "retired when ed-2 was made"
    );
    assert_eq!(
        listed[1].retired_at, None,
        "other algorithms keep their key"
    );
    assert_eq!(listed[2], key("ed-2", SigningAlgorithm::EdDsa, later));
}

pub(crate) async fn a_due_rotation_without_an_active_key_stores_the_key(
    repositories: Repositories,
) {
    let keys = &repositories.keys;

    let rotated = keys
        .rotate_if_due(&key("rsa-1", SigningAlgorithm::Rs256, T0), T0)
        .await
        .expect("runs");

    assert!(rotated);
    assert_eq!(
        keys.list().await.expect("listed"),
        vec![key("rsa-1", SigningAlgorithm::Rs256, T0)]
    );
}

pub(crate) async fn racing_due_rotations_rotate_exactly_once(repositories: Repositories) {
    const STEP: Duration = Duration::from_secs(100);
    repositories
        .keys
        .insert_if_no_active(&key("ed-start", SigningAlgorithm::EdDsa, T0))
        .await
        .expect("stored");

    for round in 1..=RACE_ROUNDS {
        // Every racer finds the active key (made a step ago) due and offers its own key made
        // now; once one has rotated, the active key is the new one and is not due.
        let now = T0.plus(STEP * u32::try_from(round).expect("few rounds"));
        let keys = repositories.keys.clone();
        let outcomes = race(RACERS, move |index| {
            let keys = keys.clone();
            let candidate = key(&format!("ed-{round}-{index}"), SigningAlgorithm::EdDsa, now);
            async move { keys.rotate_if_due(&candidate, now.minus(STEP / 2)).await }
        })
        .await;

        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Ok(true)))
                .count(),
            1,
            "round {round}: {outcomes:?}"
        );
    }
    let listed = repositories.keys.list().await.expect("listed");
    assert_eq!(listed.len(), RACE_ROUNDS + 1, "one key per round");
    assert_eq!(
        listed.iter().filter(|key| key.retired_at.is_none()).count(),
        1,
        "one active key"
    );
}

pub(crate) async fn a_secret_is_stored_once_and_every_caller_gets_the_same_bytes(
    repositories: Repositories,
) {
    let keys = repositories.keys.clone();

    let raced = race(RACERS, move |index| {
        let keys = keys.clone();
        let candidate = KeyMaterial(vec![u8::try_from(index).expect("few racers"); 32]);
        async move {
            keys.secret("refresh-token-hmac", &candidate)
                .await
                .expect("a secret")
        }
    })
    .await;
    let later = repositories
        .keys
        .secret("refresh-token-hmac", &KeyMaterial(vec![0xff; 32]))
        .await
        .expect("a secret");
    let other = repositories
        .keys
        .secret("other", &KeyMaterial(vec![0xee; 16]))
        .await
        .expect("a secret");

    assert!(raced.iter().all(|secret| *secret == later), "{raced:?}");
    assert_ne!(later, KeyMaterial(vec![0xff; 32]));
    assert_eq!(other, KeyMaterial(vec![0xee; 16]));
}

// ---------------------------------------------------------------------------------------------
// Login throttle: the counters behind SPEC §2's abuse limits, seen from two instances.

/// The limits of SPEC §2, as the default [`ThrottlePolicy`](authgate_domain::ThrottlePolicy).
const MAX_CONSECUTIVE_FAILURES: usize = 5;
const MAX_ATTEMPTS_PER_ADDRESS: usize = 50;

#[track_caller]
fn address(raw: &str) -> IpAddr {
    raw.parse().expect("test addresses are valid")
}

fn is_allowed(decision: &Result<ThrottleDecision, RepositoryError>) -> bool {
    matches!(decision, Ok(ThrottleDecision::Allowed))
}

/// The `Retry-After` of a throttled decision, in seconds.
#[track_caller]
fn retry_after(decision: Result<ThrottleDecision, RepositoryError>) -> u64 {
    match decision {
        Ok(ThrottleDecision::Throttled { retry_after }) => retry_after.as_secs(),
        other => panic!("expected a throttled attempt, got {other:?}"),
    }
}

/// Makes `count` attempts for `username` from `from`, alternating between the instances, and
/// returns how many were allowed.
async fn attempts(
    throttles: &Throttles,
    username: &str,
    from: Option<IpAddr>,
    now: Timestamp,
    count: usize,
) -> usize {
    let mut allowed = 0;
    for index in 0..count {
        let decision = throttles[index % 2]
            .begin_attempt(username, from, now)
            .await;
        assert!(decision.is_ok(), "{decision:?}");
        if is_allowed(&decision) {
            allowed += 1;
        }
    }
    allowed
}

pub(crate) async fn parallel_guesses_on_two_instances_allow_exactly_five(throttles: Throttles) {
    for round in 0..RACE_ROUNDS {
        let username = format!("alice{round}");
        let from = address(&format!("192.0.2.{round}"));
        let racing = throttles.clone();

        let outcomes = race(RACERS, move |index| {
            let throttle = racing[index % 2].clone();
            let username = username.clone();
            async move { throttle.begin_attempt(&username, Some(from), T0).await }
        })
        .await;

        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|outcome| is_allowed(outcome))
                .count(),
            MAX_CONSECUTIVE_FAILURES,
            "round {round}: {outcomes:?}"
        );
    }
}

pub(crate) async fn parallel_attempts_from_one_address_allow_exactly_fifty_a_minute(
    throttles: Throttles,
) {
    // Sixty attempts in all, ten more than the budget.
    const ATTEMPTS_PER_RACER: usize = 6;
    let from = address("198.51.100.7");
    let racing = throttles.clone();

    let allowed = race(RACERS, move |racer| {
        let throttle = racing[racer % 2].clone();
        async move {
            let mut allowed = 0;
            for attempt in 0..ATTEMPTS_PER_RACER {
                let username = format!("user{racer}x{attempt}");
                let decision = throttle.begin_attempt(&username, Some(from), T0).await;
                assert!(decision.is_ok(), "{decision:?}");
                if is_allowed(&decision) {
                    allowed += 1;
                }
            }
            allowed
        }
    })
    .await;

    assert_eq!(allowed.iter().sum::<usize>(), MAX_ATTEMPTS_PER_ADDRESS);
    assert_eq!(
        retry_after(throttles[0].begin_attempt("late", Some(from), T0).await),
        60,
        "blocked until the minute is over"
    );
}

pub(crate) async fn one_address_gets_fifty_attempts_a_minute_then_a_new_window(
    throttles: Throttles,
) {
    let from = address("2001:db8::1");
    for index in 0..MAX_ATTEMPTS_PER_ADDRESS {
        let decision = throttles[index % 2]
            .begin_attempt(&format!("user{index}"), Some(from), T0)
            .await;
        assert!(is_allowed(&decision), "attempt {index}: {decision:?}");
    }
    let ten_seconds_on = T0.plus(Duration::from_secs(10));

    let over_budget = throttles[1]
        .begin_attempt("user50", Some(from), ten_seconds_on)
        .await;
    let other_address = throttles[0]
        .begin_attempt("user50", Some(address("2001:db8::2")), ten_seconds_on)
        .await;
    let next_minute = throttles[0]
        .begin_attempt("user51", Some(from), T0.plus(Duration::from_secs(60)))
        .await;

    assert_eq!(retry_after(over_budget), 50);
    assert!(is_allowed(&other_address), "{other_address:?}");
    assert!(is_allowed(&next_minute), "{next_minute:?}");
}

pub(crate) async fn throttling_one_username_leaves_other_usernames_and_addresses_alone(
    throttles: Throttles,
) {
    let attacker = address("192.0.2.1");
    let other = address("192.0.2.2");
    attempts(
        &throttles,
        "alice",
        Some(attacker),
        T0,
        MAX_CONSECUTIVE_FAILURES + 1,
    )
    .await;

    let alice_elsewhere = throttles[1].begin_attempt("alice", Some(other), T0).await;
    let bob_from_attacker = throttles[0].begin_attempt("bob", Some(attacker), T0).await;
    let carol_elsewhere = throttles[1].begin_attempt("carol", Some(other), T0).await;
    let alice_anywhere = throttles[0].begin_attempt("alice", None, T0).await;

    assert_eq!(retry_after(alice_elsewhere), 1);
    assert!(is_allowed(&bob_from_attacker), "{bob_from_attacker:?}");
    assert!(is_allowed(&carol_elsewhere), "{carol_elsewhere:?}");
    assert_eq!(retry_after(alice_anywhere), 1);
}

pub(crate) async fn backoff_starts_at_one_second_and_doubles_with_each_failure(
    throttles: Throttles,
) {
    let allowed = attempts(&throttles, "alice", None, T0, MAX_CONSECUTIVE_FAILURES).await;
    let first_wait = retry_after(throttles[1].begin_attempt("alice", None, T0).await);
    let one_second_on = T0.plus(Duration::from_secs(1));
    let sixth = throttles[0]
        .begin_attempt("alice", None, one_second_on)
        .await;
    let second_wait = retry_after(
        throttles[1]
            .begin_attempt("alice", None, one_second_on)
            .await,
    );

    assert_eq!(allowed, MAX_CONSECUTIVE_FAILURES);
    assert_eq!(first_wait, 1);
    assert!(is_allowed(&sixth), "the backoff ends: {sixth:?}");
    assert_eq!(second_wait, 2);
}

pub(crate) async fn a_throttled_attempt_counts_against_nothing(throttles: Throttles) {
    let from = address("203.0.113.9");
    attempts(
        &throttles,
        "alice",
        Some(from),
        T0,
        MAX_CONSECUTIVE_FAILURES,
    )
    .await;

    let refused = attempts(&throttles, "alice", Some(from), T0, 20).await;
    let mut others_allowed = 0;
    for index in 0..MAX_ATTEMPTS_PER_ADDRESS {
        let decision = throttles[index % 2]
            .begin_attempt(&format!("user{index}"), Some(from), T0)
            .await;
        if is_allowed(&decision) {
            others_allowed += 1;
        }
    }

    assert_eq!(refused, 0);
    assert_eq!(
        others_allowed,
        MAX_ATTEMPTS_PER_ADDRESS - MAX_CONSECUTIVE_FAILURES,
        "the address counted only alice's allowed attempts"
    );
}

pub(crate) async fn a_given_back_attempt_counts_against_nothing(throttles: Throttles) {
    let from = address("203.0.113.10");
    for index in 0..20 {
        let decision = throttles[index % 2]
            .begin_attempt("alice", Some(from), T0)
            .await;
        assert!(is_allowed(&decision), "attempt {index} is allowed");
        throttles[(index + 1) % 2]
            .give_back("alice", Some(from), T0)
            .await
            .expect("given back");
    }

    let counted = attempts(&throttles, "alice", Some(from), T0, 20).await;

    assert_eq!(
        counted, MAX_CONSECUTIVE_FAILURES,
        "the given-back attempts left no trace"
    );
}

pub(crate) async fn a_success_resets_the_username_and_gives_the_address_its_attempt_back(
    throttles: Throttles,
) {
    let from = address("198.51.100.20");
    attempts(
        &throttles,
        "alice",
        Some(from),
        T0,
        MAX_CONSECUTIVE_FAILURES,
    )
    .await;
    for index in MAX_CONSECUTIVE_FAILURES..MAX_ATTEMPTS_PER_ADDRESS {
        throttles[index % 2]
            .begin_attempt(&format!("user{index}"), Some(from), T0)
            .await
            .expect("counted");
    }
    let before = throttles[0].begin_attempt("alice", None, T0).await;
    let address_before = throttles[1].begin_attempt("carol", Some(from), T0).await;

    throttles[1]
        .record_success("alice", Some(from), T0)
        .await
        .expect("recorded");

    assert!(matches!(before, Ok(ThrottleDecision::Throttled { .. })));
    assert!(matches!(
        address_before,
        Ok(ThrottleDecision::Throttled { .. })
    ));
    assert_eq!(
        attempts(&throttles, "alice", None, T0, MAX_CONSECUTIVE_FAILURES + 1).await,
        MAX_CONSECUTIVE_FAILURES,
        "alice starts over"
    );
    let given_back = throttles[0].begin_attempt("carol", Some(from), T0).await;
    let then_blocked = throttles[1].begin_attempt("dave", Some(from), T0).await;
    assert!(is_allowed(&given_back), "{given_back:?}");
    assert!(matches!(
        then_blocked,
        Ok(ThrottleDecision::Throttled { .. })
    ));
}

pub(crate) async fn purging_forgets_only_keys_idle_for_longer_than_the_retention(
    throttles: Throttles,
) {
    let from = address("192.0.2.99");
    attempts(
        &throttles,
        "alice",
        Some(from),
        T0,
        MAX_CONSECUTIVE_FAILURES,
    )
    .await;
    let retention_over = T0.plus(LOGIN_THROTTLE_RETENTION);
    let just_after = retention_over.plus(Duration::from_secs(1));
    attempts(&throttles, "bob", None, retention_over, 1).await;

    let at_the_edge = throttles[0]
        .purge_expired(retention_over)
        .await
        .expect("purged");
    let after = throttles[1]
        .purge_expired(just_after)
        .await
        .expect("purged");
    let again = throttles[0]
        .purge_expired(just_after)
        .await
        .expect("purged");

    assert_eq!(
        (at_the_edge, after, again),
        (0, 2, 0),
        "alice and her address"
    );
    assert_eq!(
        attempts(
            &throttles,
            "alice",
            None,
            just_after,
            MAX_CONSECUTIVE_FAILURES + 1
        )
        .await,
        MAX_CONSECUTIVE_FAILURES,
        "alice's failures were forgotten"
    );
    attempts(
        &throttles,
        "bob",
        None,
        just_after,
        MAX_CONSECUTIVE_FAILURES - 1,
    )
    .await;
    assert!(
        matches!(
            throttles[1].begin_attempt("bob", None, just_after).await,
            Ok(ThrottleDecision::Throttled { .. })
        ),
        "bob's recent failure still counts"
    );
}

// ---------------------------------------------------------------------------------------------
// Health

pub(crate) async fn a_reachable_database_answers_the_health_probe(repositories: Repositories) {
    let result = repositories.health.ping().await;

    assert!(result.is_ok(), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// SQL only: what spans tables, which the separate in-memory fakes cannot show.

pub(crate) async fn deleting_a_user_deletes_their_refresh_token_families(
    repositories: Repositories,
) {
    let alice = insert(&repositories, TestUser::named("alice")).await;
    start_family(&repositories, &alice, token(1)).await;

    repositories
        .users
        .delete(&username("alice"))
        .await
        .expect("deleted");

    assert!(!is_current(&repositories, token(1), T0).await);
    assert_eq!(
        rotate(&repositories, token(1), token(2), T0, GRACE).await,
        RotateOutcome::Invalid
    );
}

pub(crate) async fn a_family_for_an_unknown_user_is_refused(repositories: Repositories) {
    let family = RefreshFamily {
        id: Uuid::new_v4(),
        user_id: UserId::new(Uuid::new_v4()),
        scope: ScopeSet::default_for_new_user(),
        client_id: ClientId::default_client(),
        session_epoch: SessionEpoch::default(),
        issued_at: T0,
        expires_at: T0.plus(FAMILY_TTL),
    };

    let result = repositories
        .refresh_tokens
        .create_family(&family, &token(1))
        .await;

    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        !is_current(&repositories, token(1), T0).await,
        "nothing half-stored"
    );
}

// ---------------------------------------------------------------------------------------------
// Runners

/// One `#[tokio::test]` per check, running it on `$backend`.
macro_rules! run_checks {
    ($backend:expr => $($check:ident),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            crate::contract::harness::run($backend, crate::contract::$check).await;
        }
    )+};
}

/// Every check of the port contracts, on `$backend`.
macro_rules! port_contract {
    ($backend:expr) => {
        run_checks!($backend =>
            a_stored_user_is_found_by_username_and_by_id,
            a_duplicate_username_is_refused_as_taken,
            usernames_differing_only_in_case_collide_because_callers_normalise_them,
            changing_the_password_replaces_the_hash_and_moves_to_the_next_session_epoch,
            upgrading_a_password_hash_keeps_every_session,
            a_patch_changes_only_the_fields_it_names,
            keyset_pagination_visits_every_user_exactly_once_in_byte_order,
            deleting_a_user_returns_them_and_unknown_users_are_not_found,
            the_last_administrator_cannot_be_disabled,
            the_last_administrator_cannot_lose_users_write,
            the_last_administrator_cannot_be_deleted,
            an_administrator_may_go_while_another_enabled_one_remains,
            without_an_administrator_the_rule_blocks_nothing,
            racing_removals_of_the_last_two_administrators_leave_one,
            insert_if_empty_stores_only_into_an_empty_store,
            racing_bootstraps_store_exactly_one_user,
            the_first_token_of_a_new_family_is_current,
            rotating_the_current_token_makes_its_successor_current,
            a_rotated_token_presented_again_within_the_grace_period_is_replayed,
            a_rotated_token_presented_once_the_grace_period_is_over_revokes_the_family,
            a_rotated_token_presented_with_another_successor_is_reuse,
            concurrent_rotations_within_the_grace_period_all_agree,
            concurrent_rotations_without_grace_let_exactly_one_succeed,
            revoking_a_family_by_an_old_token_invalidates_its_newest_token,
            revoking_a_users_families_leaves_other_users_alone,
            a_family_is_dead_from_the_second_it_expires,
            an_unknown_token_is_invalid_and_changes_nothing,
            purging_deletes_only_families_that_expired_before_now,
            a_denied_token_id_stays_denied_until_purged_after_its_expiry,
            a_known_user_with_a_token_nobody_revoked_is_found_and_not_revoked,
            a_denied_token_id_is_revoked_for_known_and_unknown_users,
            an_unknown_or_deleted_user_is_none_and_not_an_error,
            the_user_is_returned_as_stored_now_even_when_disabled,
            only_the_first_active_key_per_algorithm_is_stored,
            rotating_retires_the_active_key_when_the_new_one_is_made,
            racing_first_starts_store_exactly_one_active_key,
            a_due_rotation_retires_the_old_key_and_a_fresh_key_is_left_alone,
            a_due_rotation_without_an_active_key_stores_the_key,
            racing_due_rotations_rotate_exactly_once,
            a_secret_is_stored_once_and_every_caller_gets_the_same_bytes,
            a_reachable_database_answers_the_health_probe,
        );
    };
}

/// One `#[tokio::test]` per login-throttle check, running it on `$backend`.
macro_rules! throttle_contract {
    ($backend:expr) => {
        run_throttle_checks!($backend =>
            parallel_guesses_on_two_instances_allow_exactly_five,
            parallel_attempts_from_one_address_allow_exactly_fifty_a_minute,
            one_address_gets_fifty_attempts_a_minute_then_a_new_window,
            throttling_one_username_leaves_other_usernames_and_addresses_alone,
            backoff_starts_at_one_second_and_doubles_with_each_failure,
            a_throttled_attempt_counts_against_nothing,
            a_given_back_attempt_counts_against_nothing,
            a_success_resets_the_username_and_gives_the_address_its_attempt_back,
            purging_forgets_only_keys_idle_for_longer_than_the_retention,
        );
    };
}

/// Like `run_checks!`, for checks over the login throttle.
macro_rules! run_throttle_checks {
    ($backend:expr => $($check:ident),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            crate::contract::harness::run_throttle($backend, crate::contract::$check).await;
        }
    )+};
}

/// The checks of what the database enforces across tables, on `$backend`.
macro_rules! sql_contract {
    ($backend:expr) => {
        run_checks!($backend =>
            deleting_a_user_deletes_their_refresh_token_families,
            a_family_for_an_unknown_user_is_refused,
        );
    };
}

mod sqlite {
    port_contract!(super::harness::TestBackend::Sqlite);
    sql_contract!(super::harness::TestBackend::Sqlite);
    mod throttle {
        throttle_contract!(super::super::harness::TestBackend::Sqlite);
    }
}

mod postgres {
    port_contract!(super::harness::TestBackend::Postgres);
    sql_contract!(super::harness::TestBackend::Postgres);
    mod throttle {
        throttle_contract!(super::super::harness::TestBackend::Postgres);
    }
}

mod in_memory {
    port_contract!(super::harness::TestBackend::InMemory);
}

mod sqlite_in_memory {
    port_contract!(super::harness::TestBackend::SqliteInMemory);
}

//! User administration: create, read, list, change and delete users.

use std::sync::Arc;

use authgate_domain::{
    Password, PasswordPolicy, PasswordRuleViolation, ProfileError, ScopeSet, User, UserProfile,
    Username, UsernameError,
};

use crate::ports::{
    BoxError, Clock, HashError, IdGenerator, NewUser, PasswordHasher, RefreshTokenStore,
    RepositoryError, UserPatch, UserRepository,
};

/// Why a user-administration request failed.
#[derive(Debug, thiserror::Error)]
pub enum UserAdminError {
    /// The username is malformed.
    #[error(transparent)]
    InvalidUsername(#[from] UsernameError),
    /// An email or display name is malformed.
    #[error(transparent)]
    InvalidProfile(#[from] ProfileError),
    /// The password breaks a rule.
    #[error(transparent)]
    WeakPassword(#[from] PasswordRuleViolation),
    /// The username is taken.
    #[error("a user with this username exists already")]
    UsernameTaken,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The change would leave nobody able to administer users.
    #[error(
        "the last enabled user holding users:write cannot be disabled, lose that scope or be deleted"
    )]
    LastAdministrator,
    /// Every hashing slot is busy.
    #[error("the server is busy; retry shortly")]
    Busy,
    /// A port failed.
    #[error("user administration failed")]
    Internal(#[source] BoxError),
}

impl From<RepositoryError> for UserAdminError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::UsernameTaken => Self::UsernameTaken,
            RepositoryError::NotFound => Self::NotFound,
            RepositoryError::LastAdministrator => Self::LastAdministrator,
            RepositoryError::Unavailable(source) => Self::Internal(source),
        }
    }
}

impl From<HashError> for UserAdminError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => Self::Busy,
            HashError::Internal(source) => Self::Internal(source),
        }
    }
}

/// A request to create a user.
#[derive(Debug)]
pub struct CreateUserRequest {
    /// The username as given; normalised here.
    pub username: String,
    /// The initial password.
    pub password: Password,
    /// Email and display name (validated here).
    pub email: Option<String>,
    /// Display name.
    pub full_name: Option<String>,
    /// Allowed scopes; `None` means `profile:read profile:write`.
    pub scopes: Option<ScopeSet>,
}

/// Creates users.
pub struct CreateUser {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    policy: PasswordPolicy,
}

impl CreateUser {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        policy: PasswordPolicy,
    ) -> Self {
        Self {
            users,
            hasher,
            clock,
            ids,
            policy,
        }
    }

    /// Validates and stores a new user.
    ///
    /// # Errors
    ///
    /// `InvalidUsername`, `InvalidProfile`, `WeakPassword` (checked before any hashing),
    /// `UsernameTaken`, `Busy` or `Internal`.
    pub async fn execute(&self, request: CreateUserRequest) -> Result<User, UserAdminError> {
        let new_user = self.prepare(request).await?;
        let user = self.users.insert(&new_user).await?;
        tracing::info!(user.id = %user.id, user.name = %user.username, "user created");
        Ok(user)
    }

    /// Stores `request` only if there are no users at all (the bootstrap administrator).
    /// Returns the user when it was created, `None` when users existed already.
    ///
    /// # Errors
    ///
    /// As [`CreateUser::execute`], except `UsernameTaken`.
    pub async fn execute_if_empty(
        &self,
        request: CreateUserRequest,
    ) -> Result<Option<User>, UserAdminError> {
        // A cheap look first, so that a normal start does not pay for an Argon2 hash.
        if !self.users.list(None, 1).await?.is_empty() {
            return Ok(None);
        }
        let new_user = self.prepare(request).await?;
        if !self.users.insert_if_empty(&new_user).await? {
            return Ok(None);
        }
        let user = self
            .users
            .find_by_id(new_user.id)
            .await?
            .ok_or(UserAdminError::NotFound)?;
        tracing::info!(user.id = %user.id, user.name = %user.username, "bootstrap administrator created");
        Ok(Some(user))
    }

    async fn prepare(&self, request: CreateUserRequest) -> Result<NewUser, UserAdminError> {
        let username = Username::parse(&request.username)?;
        let profile = UserProfile::new(request.email, request.full_name)?;
        self.policy.check(&request.password, &username)?;
        let password_hash = self.hasher.hash(&request.password).await?;
        Ok(NewUser {
            id: authgate_domain::UserId::new(self.ids.new_id()),
            username,
            password_hash,
            profile,
            scopes: request
                .scopes
                .unwrap_or_else(ScopeSet::default_for_new_user),
            created_at: self.clock.now(),
        })
    }
}

/// One page of users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// Users in username order.
    pub users: Vec<User>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<Username>,
}

/// Reads users.
pub struct ReadUsers {
    users: Arc<dyn UserRepository>,
}

impl ReadUsers {
    /// The most users one page may hold.
    pub const MAX_PAGE: u32 = 200;

    pub(crate) fn new(users: Arc<dyn UserRepository>) -> Self {
        Self { users }
    }

    /// One user by name. A malformed name is simply not found.
    ///
    /// # Errors
    ///
    /// `NotFound` or `Internal`.
    pub async fn get(&self, username: &str) -> Result<User, UserAdminError> {
        let username = Username::parse(username).map_err(|_| UserAdminError::NotFound)?;
        self.users
            .find_by_username(&username)
            .await?
            .ok_or(UserAdminError::NotFound)
    }

    /// Up to `limit` (1 to 200) users after `after`, in username order.
    ///
    /// # Errors
    ///
    /// `Internal`.
    pub async fn list(
        &self,
        after: Option<Username>,
        limit: u32,
    ) -> Result<UserPage, UserAdminError> {
        let limit = limit.clamp(1, Self::MAX_PAGE);
        // One extra row tells whether another page follows without a second query.
        let mut users = self.users.list(after, limit + 1).await?;
        let next_after = if users.len() > limit as usize {
            users.truncate(limit as usize);
            users.last().map(|user| user.username.clone())
        } else {
            None
        };
        Ok(UserPage { users, next_after })
    }
}

/// Changes and deletes users.
pub struct ManageUser {
    users: Arc<dyn UserRepository>,
    refresh_tokens: Arc<dyn RefreshTokenStore>,
    clock: Arc<dyn Clock>,
}

impl ManageUser {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        refresh_tokens: Arc<dyn RefreshTokenStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            users,
            refresh_tokens,
            clock,
        }
    }

    /// Applies `patch` to `username`. Disabling also revokes the user's refresh-token
    /// families; their access tokens fail on the next request because bearer
    /// authentication reads the user every time.
    ///
    /// # Errors
    ///
    /// `InvalidProfile`, `NotFound`, `LastAdministrator` or `Internal`.
    pub async fn update(&self, username: &str, patch: &UserPatch) -> Result<User, UserAdminError> {
        let username = Username::parse(username).map_err(|_| UserAdminError::NotFound)?;
        if let Some(Some(email)) = &patch.email {
            UserProfile::check_email(email)?;
        }
        if let Some(Some(full_name)) = &patch.full_name {
            UserProfile::check_full_name(full_name)?;
        }
        let user = self.users.update(&username, patch).await?;
        if patch.disabled == Some(true) {
            self.refresh_tokens
                .revoke_user_families(user.id, "user_disabled", self.clock.now())
                .await?;
        }
        tracing::info!(user.id = %user.id, "user updated");
        Ok(user)
    }

    /// Deletes `username` and revokes their refresh-token families.
    ///
    /// # Errors
    ///
    /// `NotFound`, `LastAdministrator` or `Internal`.
    pub async fn delete(&self, username: &str) -> Result<(), UserAdminError> {
        let username = Username::parse(username).map_err(|_| UserAdminError::NotFound)?;
        let user = self.users.delete(&username).await?;
        self.refresh_tokens
            .revoke_user_families(user.id, "user_deleted", self.clock.now())
            .await?;
        tracing::info!(user.id = %user.id, "user deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use authgate_domain::{Scope, UserId};
    use mockall::predicate::eq;
    use uuid::Uuid;

    use super::*;
    use crate::services::fixtures::{NOW, PASSWORD, ports, settings, user};
    use crate::services::{Ports, UseCases};
    use crate::testing::{
        InMemoryUserRepository, InsecureHasher, MockPasswordHasher, MockRefreshTokenStore,
        MockUserRepository,
    };

    fn use_cases(ports: Ports) -> UseCases {
        UseCases::new(ports, settings())
    }

    fn request(username: &str) -> CreateUserRequest {
        CreateUserRequest {
            username: username.to_owned(),
            password: Password::new(PASSWORD.to_owned()),
            email: Some("alice@example.com".into()),
            full_name: Some("Alice Liddell".into()),
            scopes: None,
        }
    }

    /// The user a repository makes of `new_user`.
    fn stored(new_user: &NewUser) -> User {
        User {
            id: new_user.id,
            username: new_user.username.clone(),
            profile: new_user.profile.clone(),
            disabled: false,
            scopes: new_user.scopes,
            created_at: new_user.created_at,
            session_epoch: authgate_domain::SessionEpoch::default(),
        }
    }

    /// Creates `request` where neither hashing nor storing may happen.
    async fn create_refused_before_hashing(
        request: CreateUserRequest,
    ) -> Result<User, UserAdminError> {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().never();
        let mut users = MockUserRepository::new();
        users.expect_insert().never();
        let create = use_cases(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..ports()
        })
        .create_user;
        create.execute(request).await
    }

    fn users_inserting() -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users
            .expect_insert()
            .times(1)
            .returning(|new_user| Ok(stored(new_user)));
        users
    }

    fn names(page: &UserPage) -> Vec<&str> {
        page.users
            .iter()
            .map(|user| user.username.as_str())
            .collect()
    }

    /// A repository holding `names`, each with [`PASSWORD`].
    async fn repository_of(names: &[&str]) -> Arc<InMemoryUserRepository> {
        let users = Arc::new(InMemoryUserRepository::new());
        let create = use_cases(Ports {
            users: users.clone(),
            ..ports()
        })
        .create_user;
        for name in names {
            create
                .execute(request(name))
                .await
                .expect("a valid new user");
        }
        users
    }

    /// A store that expects the families of `user_id` to be revoked exactly once, as of now.
    fn store_expecting_revocation_of(user_id: UserId) -> MockRefreshTokenStore {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_revoke_user_families()
            .withf(move |id, _, now| *id == user_id && *now == NOW)
            .times(1)
            .returning(|_, _, _| Ok(()));
        refresh_tokens
    }

    fn store_expecting_no_revocation() -> MockRefreshTokenStore {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens.expect_revoke_user_families().never();
        refresh_tokens
    }

    fn users_updating_to(updated: User) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        let username = updated.username.clone();
        users
            .expect_update()
            .withf(move |name, _| *name == username)
            .times(1)
            .returning(move |_, _| Ok(updated.clone()));
        users
    }

    #[tokio::test]
    async fn a_malformed_username_is_refused_before_hashing() {
        let result = create_refused_before_hashing(request("al")).await;

        assert!(matches!(
            result,
            Err(UserAdminError::InvalidUsername(UsernameError::Length))
        ));
    }

    #[tokio::test]
    async fn an_invalid_email_is_refused_before_hashing() {
        let result = create_refused_before_hashing(CreateUserRequest {
            email: Some("alice".into()),
            ..request("alice")
        })
        .await;

        assert!(matches!(
            result,
            Err(UserAdminError::InvalidProfile(ProfileError::Email))
        ));
    }

    #[tokio::test]
    async fn an_invalid_full_name_is_refused_before_hashing() {
        let result = create_refused_before_hashing(CreateUserRequest {
            full_name: Some(String::new()),
            ..request("alice")
        })
        .await;

        assert!(matches!(
            result,
            Err(UserAdminError::InvalidProfile(ProfileError::FullName))
        ));
    }

    #[tokio::test]
    async fn a_weak_password_is_refused_before_hashing() {
        let result = create_refused_before_hashing(CreateUserRequest {
            password: Password::new("alice-1234567890".into()),
            ..request("alice")
        })
        .await;

        assert!(matches!(
            result,
            Err(UserAdminError::WeakPassword(
                PasswordRuleViolation::ContainsUsername
            ))
        ));
    }

    #[tokio::test]
    async fn a_new_user_is_stored_normalised_hashed_and_with_the_default_scopes() {
        let mut users = MockUserRepository::new();
        users
            .expect_insert()
            .withf(|new_user| {
                new_user.id == UserId::new(Uuid::from_u128(1))
                    && new_user.username.as_str() == "alice"
                    && new_user.password_hash == InsecureHasher::hash_of(PASSWORD)
                    && new_user.profile.email.as_deref() == Some("alice@example.com")
                    && new_user.profile.full_name.as_deref() == Some("Alice Liddell")
                    && new_user.scopes
                        == ScopeSet::from_iter([Scope::ProfileRead, Scope::ProfileWrite])
                    && new_user.created_at == NOW
            })
            .times(1)
            .returning(|new_user| Ok(stored(new_user)));
        let create = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .create_user;

        let result = create.execute(request("Alice")).await;

        assert!(matches!(result, Ok(user) if user.username.as_str() == "alice"));
    }

    #[tokio::test]
    async fn requested_scopes_replace_the_defaults() {
        let create = use_cases(Ports {
            users: Arc::new(users_inserting()),
            ..ports()
        })
        .create_user;
        let scopes = ScopeSet::from_iter([Scope::UsersRead]);

        let result = create
            .execute(CreateUserRequest {
                scopes: Some(scopes),
                ..request("alice")
            })
            .await;

        assert!(matches!(result, Ok(user) if user.scopes == scopes));
    }

    #[tokio::test]
    async fn a_taken_username_is_reported_as_taken() {
        let mut users = MockUserRepository::new();
        users
            .expect_insert()
            .returning(|_| Err(RepositoryError::UsernameTaken));
        let create = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .create_user;

        let result = create.execute(request("alice")).await;

        assert!(matches!(result, Err(UserAdminError::UsernameTaken)));
    }

    #[tokio::test]
    async fn a_busy_hasher_is_reported_as_busy() {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().returning(|_| Err(HashError::Busy));
        let create = use_cases(Ports {
            hasher: Arc::new(hasher),
            ..ports()
        })
        .create_user;

        let result = create.execute(request("alice")).await;

        assert!(matches!(result, Err(UserAdminError::Busy)));
    }

    #[tokio::test]
    async fn the_bootstrap_user_is_created_in_an_empty_store() {
        let users = Arc::new(InMemoryUserRepository::new());
        let create = use_cases(Ports {
            users: users.clone(),
            ..ports()
        })
        .create_user;

        let result = create
            .execute_if_empty(CreateUserRequest {
                scopes: Some(ScopeSet::all()),
                ..request("admin")
            })
            .await;

        assert!(
            matches!(result, Ok(Some(admin)) if admin.username.as_str() == "admin" && admin.scopes == ScopeSet::all())
        );
        assert!(matches!(
            users
                .find_by_username(&Username::parse("admin").expect("valid"))
                .await,
            Ok(Some(_))
        ));
    }

    #[tokio::test]
    async fn the_bootstrap_user_is_created_only_once() {
        let users = Arc::new(InMemoryUserRepository::new());
        let create = use_cases(Ports {
            users: users.clone(),
            ..ports()
        })
        .create_user;
        create
            .execute_if_empty(request("admin"))
            .await
            .expect("the first start creates the user");

        let result = create.execute_if_empty(request("other")).await;

        assert!(matches!(result, Ok(None)));
        assert!(matches!(
            users
                .find_by_username(&Username::parse("other").expect("valid"))
                .await,
            Ok(None)
        ));
    }

    #[tokio::test]
    async fn a_store_with_users_costs_the_bootstrap_no_hashing() {
        let mut users = MockUserRepository::new();
        users
            .expect_list()
            .with(eq(None), eq(1))
            .times(1)
            .returning(|_, _| Ok(vec![user("alice")]));
        users.expect_insert_if_empty().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().never();
        let create = use_cases(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..ports()
        })
        .create_user;

        let result = create.execute_if_empty(request("admin")).await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn losing_the_bootstrap_race_creates_nothing() {
        let mut users = MockUserRepository::new();
        users.expect_list().returning(|_, _| Ok(Vec::new()));
        users
            .expect_insert_if_empty()
            .times(1)
            .returning(|_| Ok(false));
        users.expect_find_by_id().never();
        let create = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .create_user;

        let result = create.execute_if_empty(request("admin")).await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn pages_follow_one_another_and_only_a_page_with_more_after_it_has_a_next_cursor() {
        let users = repository_of(&["dave", "alice", "carol", "bob", "erin"]).await;
        let read = use_cases(Ports { users, ..ports() }).read_users;

        let first = read.list(None, 2).await.expect("first page");
        let second = read
            .list(first.next_after.clone(), 2)
            .await
            .expect("second page");
        let last = read
            .list(second.next_after.clone(), 2)
            .await
            .expect("last page");

        assert_eq!(names(&first), ["alice", "bob"]);
        assert_eq!(first.next_after.as_ref().map(Username::as_str), Some("bob"));
        assert_eq!(names(&second), ["carol", "dave"]);
        assert_eq!(
            second.next_after.as_ref().map(Username::as_str),
            Some("dave")
        );
        assert_eq!(names(&last), ["erin"]);
        assert_eq!(last.next_after, None);
    }

    #[tokio::test]
    async fn a_page_that_exactly_ends_the_list_has_no_next_cursor() {
        let users = repository_of(&["alice", "bob"]).await;
        let read = use_cases(Ports { users, ..ports() }).read_users;

        let page = read.list(None, 2).await;

        assert!(matches!(page, Ok(UserPage { users, next_after: None }) if users.len() == 2));
    }

    #[tokio::test]
    async fn the_page_size_is_clamped_to_between_1_and_200() {
        for (asked, fetched) in [
            (0, 2),
            (1, 2),
            (50, 51),
            (200, 201),
            (201, 201),
            (u32::MAX, 201),
        ] {
            let mut users = MockUserRepository::new();
            users
                .expect_list()
                .with(eq(None), eq(fetched))
                .times(1)
                .returning(|_, _| Ok(Vec::new()));
            let read = use_cases(Ports {
                users: Arc::new(users),
                ..ports()
            })
            .read_users;

            let page = read.list(None, asked).await;

            assert!(
                matches!(
                    page,
                    Ok(UserPage {
                        next_after: None,
                        ..
                    })
                ),
                "limit {asked}"
            );
        }
    }

    #[tokio::test]
    async fn a_clamped_page_holds_at_most_200_users() {
        let mut users = MockUserRepository::new();
        let many: Vec<User> = (0..201)
            .map(|number| user(&format!("user{number:03}")))
            .collect();
        users.expect_list().returning(move |_, _| Ok(many.clone()));
        let read = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .read_users;

        let page = read.list(None, 1_000).await.expect("a page");

        assert_eq!(page.users.len(), 200);
        assert_eq!(
            page.next_after.as_ref().map(Username::as_str),
            Some("user199")
        );
    }

    #[tokio::test]
    async fn one_user_is_read_by_name_case_insensitively() {
        let users = repository_of(&["alice"]).await;
        let read = use_cases(Ports { users, ..ports() }).read_users;

        let result = read.get("ALICE").await;

        assert!(matches!(result, Ok(user) if user.username.as_str() == "alice"));
    }

    #[tokio::test]
    async fn an_unknown_or_malformed_username_is_not_found() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_by_username()
            .times(1)
            .returning(|_| Ok(None));
        let read = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .read_users;

        let unknown = read.get("nobody").await;
        let malformed = read.get("no such user!").await;

        assert!(matches!(unknown, Err(UserAdminError::NotFound)));
        assert!(matches!(malformed, Err(UserAdminError::NotFound)));
    }

    #[tokio::test]
    async fn disabling_a_user_revokes_their_refresh_token_families() {
        let mut alice = user("alice");
        alice.disabled = true;
        let manage = use_cases(Ports {
            refresh_tokens: Arc::new(store_expecting_revocation_of(alice.id)),
            users: Arc::new(users_updating_to(alice)),
            ..ports()
        })
        .manage_user;

        let result = manage
            .update(
                "alice",
                &UserPatch {
                    disabled: Some(true),
                    ..UserPatch::default()
                },
            )
            .await;

        assert!(matches!(result, Ok(user) if user.disabled));
    }

    #[tokio::test]
    async fn other_changes_leave_refresh_tokens_alone() {
        for patch in [
            UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            },
            UserPatch {
                scopes: Some(ScopeSet::all()),
                ..UserPatch::default()
            },
            UserPatch {
                email: Some(None),
                full_name: Some(Some("Alice".into())),
                ..UserPatch::default()
            },
        ] {
            let manage = use_cases(Ports {
                refresh_tokens: Arc::new(store_expecting_no_revocation()),
                users: Arc::new(users_updating_to(user("alice"))),
                ..ports()
            })
            .manage_user;

            let result = manage.update("alice", &patch).await;

            assert!(result.is_ok(), "{patch:?}");
        }
    }

    #[tokio::test]
    async fn the_last_administrator_cannot_be_disabled() {
        let mut users = MockUserRepository::new();
        users
            .expect_update()
            .returning(|_, _| Err(RepositoryError::LastAdministrator));
        let manage = use_cases(Ports {
            refresh_tokens: Arc::new(store_expecting_no_revocation()),
            users: Arc::new(users),
            ..ports()
        })
        .manage_user;

        let result = manage
            .update(
                "admin",
                &UserPatch {
                    disabled: Some(true),
                    ..UserPatch::default()
                },
            )
            .await;

        assert!(matches!(result, Err(UserAdminError::LastAdministrator)));
    }

    #[tokio::test]
    async fn an_invalid_email_or_full_name_changes_nothing() {
        for (patch, expected) in [
            (
                UserPatch {
                    email: Some(Some("not an address".into())),
                    ..UserPatch::default()
                },
                ProfileError::Email,
            ),
            (
                UserPatch {
                    full_name: Some(Some("bell\u{7}".into())),
                    ..UserPatch::default()
                },
                ProfileError::FullName,
            ),
        ] {
            let mut users = MockUserRepository::new();
            users.expect_update().never();
            let manage = use_cases(Ports {
                users: Arc::new(users),
                ..ports()
            })
            .manage_user;

            let result = manage.update("alice", &patch).await;

            assert!(
                matches!(result, Err(UserAdminError::InvalidProfile(error)) if error == expected),
                "{patch:?}"
            );
        }
    }

    #[tokio::test]
    async fn updating_an_unknown_user_is_not_found() {
        let mut users = MockUserRepository::new();
        users
            .expect_update()
            .returning(|_, _| Err(RepositoryError::NotFound));
        let manage = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .manage_user;

        let result = manage
            .update(
                "nobody",
                &UserPatch {
                    disabled: Some(true),
                    ..UserPatch::default()
                },
            )
            .await;

        assert!(matches!(result, Err(UserAdminError::NotFound)));
    }

    #[tokio::test]
    async fn deleting_a_user_revokes_their_refresh_token_families() {
        let alice = user("alice");
        let mut users = MockUserRepository::new();
        let deleted = alice.clone();
        users
            .expect_delete()
            .withf(|name| name.as_str() == "alice")
            .times(1)
            .returning(move |_| Ok(deleted.clone()));
        let manage = use_cases(Ports {
            refresh_tokens: Arc::new(store_expecting_revocation_of(alice.id)),
            users: Arc::new(users),
            ..ports()
        })
        .manage_user;

        let result = manage.delete("Alice").await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn deleting_an_unknown_user_is_not_found_and_revokes_nothing() {
        let mut users = MockUserRepository::new();
        users
            .expect_delete()
            .returning(|_| Err(RepositoryError::NotFound));
        let manage = use_cases(Ports {
            refresh_tokens: Arc::new(store_expecting_no_revocation()),
            users: Arc::new(users),
            ..ports()
        })
        .manage_user;

        let result = manage.delete("nobody").await;

        assert!(matches!(result, Err(UserAdminError::NotFound)));
    }

    #[tokio::test]
    async fn a_malformed_username_is_not_found_by_update_or_delete() {
        let mut users = MockUserRepository::new();
        users.expect_update().never();
        users.expect_delete().never();
        let manage = use_cases(Ports {
            users: Arc::new(users),
            ..ports()
        })
        .manage_user;

        let updated = manage.update("no such user!", &UserPatch::default()).await;
        let deleted = manage.delete("x").await;

        assert!(matches!(updated, Err(UserAdminError::NotFound)));
        assert!(matches!(deleted, Err(UserAdminError::NotFound)));
    }
}

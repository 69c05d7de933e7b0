//! User administration: create, read, list, change and delete users.

use std::sync::Arc;

use authgate_domain::{
    Password, PasswordPolicy, PasswordRuleViolation, ProfileError, ScopeSet, User, UserProfile, Username, UsernameError,
};

use crate::ports::{
    BoxError, Clock, HashError, IdGenerator, NewUser, PasswordHasher, RefreshTokenStore, RepositoryError, UserPatch,
    UserRepository,
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
    #[error("the last enabled user holding users:write cannot be disabled, lose that scope or be deleted")]
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
        Self { users, hasher, clock, ids, policy }
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
    pub async fn execute_if_empty(&self, request: CreateUserRequest) -> Result<Option<User>, UserAdminError> {
        // A cheap look first, so that a normal start does not pay for an Argon2 hash.
        if !self.users.list(None, 1).await?.is_empty() {
            return Ok(None);
        }
        let new_user = self.prepare(request).await?;
        if !self.users.insert_if_empty(&new_user).await? {
            return Ok(None);
        }
        let user = self.users.find_by_id(new_user.id).await?.ok_or(UserAdminError::NotFound)?;
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
            scopes: request.scopes.unwrap_or_else(ScopeSet::default_for_new_user),
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
        self.users.find_by_username(&username).await?.ok_or(UserAdminError::NotFound)
    }

    /// Up to `limit` (1 to 200) users after `after`, in username order.
    ///
    /// # Errors
    ///
    /// `Internal`.
    pub async fn list(&self, after: Option<Username>, limit: u32) -> Result<UserPage, UserAdminError> {
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
    pub(crate) fn new(users: Arc<dyn UserRepository>, refresh_tokens: Arc<dyn RefreshTokenStore>, clock: Arc<dyn Clock>) -> Self {
        Self { users, refresh_tokens, clock }
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
            self.refresh_tokens.revoke_user_families(user.id, "user_disabled", self.clock.now()).await?;
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
        self.refresh_tokens.revoke_user_families(user.id, "user_deleted", self.clock.now()).await?;
        tracing::info!(user.id = %user.id, "user deleted");
        Ok(())
    }
}

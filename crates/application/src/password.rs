//! Changing passwords: by the user (knowing the current one) and by an operator.

use std::sync::Arc;

use authgate_domain::{Password, PasswordPolicy, PasswordRuleViolation, User, Username};

use crate::authenticate::Principal;
use crate::ports::{BoxError, Clock, HashError, PasswordHasher, RefreshTokenStore, RepositoryError, UserRepository};

/// Why a password change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    /// The current password is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The user does not exist.
    #[error("no such user")]
    UnknownUser,
    /// The new password breaks a rule.
    #[error(transparent)]
    Weak(#[from] PasswordRuleViolation),
    /// Every hashing slot is busy.
    #[error("the server is busy; retry shortly")]
    Busy,
    /// A port failed.
    #[error("password change failed")]
    Internal(#[source] BoxError),
}

impl From<HashError> for ChangePasswordError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => Self::Busy,
            HashError::Internal(source) => Self::Internal(source),
        }
    }
}

impl From<RepositoryError> for ChangePasswordError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound => Self::UnknownUser,
            other => Self::Internal(other.into()),
        }
    }
}

/// Sets a new password and ends every session that the old one started.
pub struct ChangePassword {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    refresh_tokens: Arc<dyn RefreshTokenStore>,
    clock: Arc<dyn Clock>,
    policy: PasswordPolicy,
}

impl ChangePassword {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        refresh_tokens: Arc<dyn RefreshTokenStore>,
        clock: Arc<dyn Clock>,
        policy: PasswordPolicy,
    ) -> Self {
        Self { users, hasher, refresh_tokens, clock, policy }
    }

    /// The caller changes their own password, proving they know the current one.
    ///
    /// # Errors
    ///
    /// [`ChangePasswordError::WrongPassword`], [`ChangePasswordError::Weak`],
    /// [`ChangePasswordError::UnknownUser`] (deleted meanwhile), `Busy` or `Internal`.
    pub async fn execute(&self, principal: &Principal, current: &Password, new: Password) -> Result<(), ChangePasswordError> {
        let (user, hash) =
            self.users.find_credentials(&principal.user.username).await?.ok_or(ChangePasswordError::UnknownUser)?;
        if user.id != principal.user.id {
            return Err(ChangePasswordError::UnknownUser);
        }
        if !self.hasher.verify(current, &hash).await?.matches {
            return Err(ChangePasswordError::WrongPassword);
        }
        self.replace(&user, new).await
    }

    /// An operator sets `username`'s password (`authgate user set-password`).
    ///
    /// # Errors
    ///
    /// [`ChangePasswordError::UnknownUser`], [`ChangePasswordError::Weak`], `Busy` or `Internal`.
    pub async fn execute_as_operator(&self, username: &Username, new: Password) -> Result<(), ChangePasswordError> {
        let user = self.users.find_by_username(username).await?.ok_or(ChangePasswordError::UnknownUser)?;
        self.replace(&user, new).await
    }

    async fn replace(&self, user: &User, new: Password) -> Result<(), ChangePasswordError> {
        self.policy.check(&new, &user.username)?;
        let hash = self.hasher.hash(&new).await?;
        // Moving to the next session epoch ends every earlier access token exactly;
        // revoking the families ends every earlier refresh token.
        self.users.change_password(user.id, &hash).await?;
        self.refresh_tokens.revoke_user_families(user.id, "password_changed", self.clock.now()).await?;
        tracing::info!(user.id = %user.id, "password changed; earlier sessions ended");
        Ok(())
    }
}

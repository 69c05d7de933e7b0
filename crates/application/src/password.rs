//! Changing passwords: by the user (knowing the current one) and by an operator.

use std::sync::Arc;

use authgate_domain::{
    Password, PasswordPolicy, PasswordRuleViolation, ThrottleDecision, User, Username,
};

use crate::authenticate::Principal;
use crate::ports::{
    BoxError, Clock, HashError, LoginThrottle, PasswordHasher, RefreshTokenStore, RepositoryError,
    UserRepository,
};

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
    /// Too many wrong current passwords for this user; nothing was verified.
    #[error("too many failed attempts; retry later")]
    Throttled {
        /// How long to wait before the next attempt.
        retry_after: std::time::Duration,
    },
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
    throttle: Arc<dyn LoginThrottle>,
    clock: Arc<dyn Clock>,
    policy: PasswordPolicy,
}

impl ChangePassword {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        refresh_tokens: Arc<dyn RefreshTokenStore>,
        throttle: Arc<dyn LoginThrottle>,
        clock: Arc<dyn Clock>,
        policy: PasswordPolicy,
    ) -> Self {
        Self {
            users,
            hasher,
            refresh_tokens,
            throttle,
            clock,
            policy,
        }
    }

    /// The caller changes their own password, proving they know the current one.
    ///
    /// # Errors
    ///
    /// [`ChangePasswordError::WrongPassword`], [`ChangePasswordError::Weak`],
    /// [`ChangePasswordError::UnknownUser`] (deleted meanwhile), `Busy` or `Internal`.
    pub async fn execute(
        &self,
        principal: &Principal,
        current: &Password,
        new: Password,
    ) -> Result<(), ChangePasswordError> {
        let (user, hash) = self
            .users
            .find_credentials(&principal.user.username)
            .await?
            .ok_or(ChangePasswordError::UnknownUser)?;
        if user.id != principal.user.id {
            return Err(ChangePasswordError::UnknownUser);
        }
        // Guessing the current password with a stolen access token is a login attempt too:
        // it counts against the same per-username limit.
        let username = user.username.as_str();
        let now = self.clock.now();
        if let ThrottleDecision::Throttled { retry_after } =
            self.throttle.begin_attempt(username, None, now).await?
        {
            return Err(ChangePasswordError::Throttled { retry_after });
        }
        let verification = match self.hasher.verify(current, &hash).await {
            Ok(verification) => verification,
            Err(error) => {
                // No verdict: the attempt does not count against the user.
                self.throttle.give_back(username, None, now).await?;
                return Err(error.into());
            }
        };
        if !verification.matches {
            return Err(ChangePasswordError::WrongPassword);
        }
        self.throttle.record_success(username, None, now).await?;
        self.replace(&user, new).await
    }

    /// An operator sets `username`'s password (`authgate user set-password`).
    ///
    /// # Errors
    ///
    /// [`ChangePasswordError::UnknownUser`], [`ChangePasswordError::Weak`], `Busy` or `Internal`.
    pub async fn execute_as_operator(
        &self,
        username: &Username,
        new: Password,
    ) -> Result<(), ChangePasswordError> {
        let user = self
            .users
            .find_by_username(username)
            .await?
            .ok_or(ChangePasswordError::UnknownUser)?;
        self.replace(&user, new).await
    }

    async fn replace(&self, user: &User, new: Password) -> Result<(), ChangePasswordError> {
        self.policy.check(&new, &user.username)?;
        let hash = self.hasher.hash(&new).await?;
        // Moving to the next session epoch ends every earlier access token exactly;
        // revoking the families ends every earlier refresh token.
        self.users.change_password(user.id, &hash).await?;
        self.refresh_tokens
            .revoke_user_families(user.id, "password_changed", self.clock.now())
            .await?;
        tracing::info!(user.id = %user.id, "password changed; earlier sessions ended");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mockall::Sequence;

    use super::*;
    use crate::ports::Verification;
    use crate::services::fixtures::{NOW, PASSWORD, claims_for, ports, settings, user};
    use crate::services::{Ports, UseCases};
    use crate::testing::{
        InsecureHasher, MockPasswordHasher, MockRefreshTokenStore, MockUserRepository,
    };

    const NEW_PASSWORD: &str = "a brand new passphrase";

    fn change_password(ports: Ports) -> ChangePassword {
        UseCases::new(ports, settings()).change_password
    }

    fn principal(user: &User) -> Principal {
        Principal {
            user: user.clone(),
            claims: claims_for(user, "jti-1"),
        }
    }

    fn password(secret: &str) -> Password {
        Password::new(secret.to_owned())
    }

    /// A repository that finds `user`, whose password is [`PASSWORD`].
    fn users_knowing(user: &User) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        let stored = user.clone();
        users
            .expect_find_credentials()
            .returning(move |_| Ok(Some((stored.clone(), InsecureHasher::hash_of(PASSWORD)))));
        let stored = user.clone();
        users
            .expect_find_by_username()
            .returning(move |_| Ok(Some(stored.clone())));
        users
    }

    /// Expects exactly one change of `user`'s password, to [`NEW_PASSWORD`], and then the
    /// revocation of all their refresh-token families.
    fn expect_change_then_revocation(
        user: &User,
        users: &mut MockUserRepository,
        refresh_tokens: &mut MockRefreshTokenStore,
        sequence: &mut Sequence,
    ) {
        let (changed, user_id) = (user.clone(), user.id);
        users
            .expect_change_password()
            .withf(move |id, hash| *id == user_id && *hash == InsecureHasher::hash_of(NEW_PASSWORD))
            .times(1)
            .in_sequence(sequence)
            .returning(move |_, _| Ok(changed.clone()));
        refresh_tokens
            .expect_revoke_user_families()
            .withf(move |id, _, now| *id == user_id && *now == NOW)
            .times(1)
            .in_sequence(sequence)
            .returning(|_, _, _| Ok(()));
    }

    fn users_expecting_no_change(user: &User) -> MockUserRepository {
        let mut users = users_knowing(user);
        users.expect_change_password().never();
        users
    }

    #[tokio::test]
    async fn a_wrong_current_password_changes_nothing() {
        let alice = user("alice");
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().times(1).returning(|_, _| {
            Ok(Verification {
                matches: false,
                needs_rehash: false,
            })
        });
        hasher.expect_hash().never();
        let change = change_password(Ports {
            users: Arc::new(users_expecting_no_change(&alice)),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = change
            .execute(
                &principal(&alice),
                &password("not the password"),
                password(NEW_PASSWORD),
            )
            .await;

        assert!(matches!(result, Err(ChangePasswordError::WrongPassword)));
    }

    #[tokio::test]
    async fn a_weak_new_password_is_refused_before_hashing() {
        let alice = user("alice");
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().times(1).returning(|_, _| {
            Ok(Verification {
                matches: true,
                needs_rehash: false,
            })
        });
        hasher.expect_hash().never();
        let change = change_password(Ports {
            users: Arc::new(users_expecting_no_change(&alice)),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = change
            .execute(&principal(&alice), &password(PASSWORD), password("short"))
            .await;

        assert!(matches!(
            result,
            Err(ChangePasswordError::Weak(PasswordRuleViolation::TooShort {
                min: 15
            }))
        ));
    }

    #[tokio::test]
    async fn a_new_password_containing_the_username_is_refused() {
        let alice = user("alice");
        let change = change_password(Ports {
            users: Arc::new(users_expecting_no_change(&alice)),
            ..ports()
        });

        let result = change
            .execute(
                &principal(&alice),
                &password(PASSWORD),
                password("alice in wonderland 1865"),
            )
            .await;

        assert!(matches!(
            result,
            Err(ChangePasswordError::Weak(
                PasswordRuleViolation::ContainsUsername
            ))
        ));
    }

    #[tokio::test]
    async fn a_change_stores_the_new_hash_then_revokes_every_refresh_token_family() {
        let alice = user("alice");
        let mut sequence = Sequence::new();
        let mut users = users_knowing(&alice);
        let mut refresh_tokens = MockRefreshTokenStore::new();
        expect_change_then_revocation(&alice, &mut users, &mut refresh_tokens, &mut sequence);
        let change = change_password(Ports {
            users: Arc::new(users),
            refresh_tokens: Arc::new(refresh_tokens),
            ..ports()
        });

        let result = change
            .execute(
                &principal(&alice),
                &password(PASSWORD),
                password(NEW_PASSWORD),
            )
            .await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn a_principal_whose_account_was_replaced_is_an_unknown_user() {
        let alice = user("alice");
        let mut impostor = user("alice");
        impostor.id = user("mallory").id;
        let change = change_password(Ports {
            users: Arc::new(users_expecting_no_change(&alice)),
            ..ports()
        });

        let result = change
            .execute(
                &principal(&impostor),
                &password(PASSWORD),
                password(NEW_PASSWORD),
            )
            .await;

        assert!(matches!(result, Err(ChangePasswordError::UnknownUser)));
    }

    #[tokio::test]
    async fn a_busy_hasher_is_reported_as_busy() {
        let alice = user("alice");
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .returning(|_, _| Err(HashError::Busy));
        let change = change_password(Ports {
            users: Arc::new(users_expecting_no_change(&alice)),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = change
            .execute(
                &principal(&alice),
                &password(PASSWORD),
                password(NEW_PASSWORD),
            )
            .await;

        assert!(matches!(result, Err(ChangePasswordError::Busy)));
    }

    #[tokio::test]
    async fn an_operator_sets_a_password_without_knowing_the_current_one() {
        let alice = user("alice");
        let mut sequence = Sequence::new();
        let mut users = users_knowing(&alice);
        let mut refresh_tokens = MockRefreshTokenStore::new();
        expect_change_then_revocation(&alice, &mut users, &mut refresh_tokens, &mut sequence);
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().never();
        hasher
            .expect_hash()
            .times(1)
            .returning(|new| Ok(InsecureHasher::hash_of(new.expose())));
        let change = change_password(Ports {
            users: Arc::new(users),
            refresh_tokens: Arc::new(refresh_tokens),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = change
            .execute_as_operator(&alice.username, password(NEW_PASSWORD))
            .await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn an_operator_setting_the_password_of_an_unknown_user_is_told_so() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_username().returning(|_| Ok(None));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().never();
        let change = change_password(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = change
            .execute_as_operator(&user("nobody").username, password(NEW_PASSWORD))
            .await;

        assert!(matches!(result, Err(ChangePasswordError::UnknownUser)));
    }

    #[tokio::test]
    async fn a_user_deleted_during_the_change_is_an_unknown_user() {
        let alice = user("alice");
        let mut users = users_knowing(&alice);
        users
            .expect_change_password()
            .returning(|_, _| Err(RepositoryError::NotFound));
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens.expect_revoke_user_families().never();
        let change = change_password(Ports {
            users: Arc::new(users),
            refresh_tokens: Arc::new(refresh_tokens),
            ..ports()
        });

        let result = change
            .execute_as_operator(&alice.username, password(NEW_PASSWORD))
            .await;

        assert!(matches!(result, Err(ChangePasswordError::UnknownUser)));
    }

    #[tokio::test]
    async fn a_failing_store_is_internal() {
        let alice = user("alice");
        let mut users = users_knowing(&alice);
        users
            .expect_change_password()
            .returning(|_, _| Err(RepositoryError::Unavailable("database down".into())));
        let change = change_password(Ports {
            users: Arc::new(users),
            ..ports()
        });

        let result = change
            .execute_as_operator(&alice.username, password(NEW_PASSWORD))
            .await;

        assert!(matches!(result, Err(ChangePasswordError::Internal(_))));
    }
}

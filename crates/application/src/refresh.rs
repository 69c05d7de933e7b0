//! The refresh-token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

use std::sync::Arc;
use std::time::Duration;

use authgate_domain::{ScopeError, ScopeSet};

use crate::issuer::{IssuedTokens, TokenIssuer};
use crate::ports::{BoxError, RefreshToken, RefreshTokenStore, RotateOutcome, UserRepository};

/// A refresh-grant request.
#[derive(Debug)]
pub struct RefreshRequest {
    /// The presented refresh token.
    pub refresh_token: RefreshToken,
    /// A narrower scope for the new access token; `None` keeps the family's scope.
    pub scope: Option<ScopeSet>,
}

/// Why a refresh grant failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, revoked or reused token, or its user may no longer log in.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidGrant,
    /// The requested scope exceeds the family's original scope.
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    /// A port failed.
    #[error("token refresh failed")]
    Internal(#[source] BoxError),
}

/// Trades a refresh token for a new access token and the next refresh token.
pub struct RefreshAccessToken {
    users: Arc<dyn UserRepository>,
    issuer: Arc<TokenIssuer>,
    reuse_grace: Duration,
}

impl RefreshAccessToken {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        issuer: Arc<TokenIssuer>,
        reuse_grace: Duration,
    ) -> Self {
        Self {
            users,
            issuer,
            reuse_grace,
        }
    }

    fn store(&self) -> &dyn RefreshTokenStore {
        self.issuer.refresh_tokens.as_ref()
    }

    /// Rotates the presented token and issues tokens for the family's user.
    ///
    /// The successor is derived from the presented token under a server key, so every
    /// refresh of one token within the grace period answers the same successor without
    /// the plaintext ever being stored.
    ///
    /// # Errors
    ///
    /// - [`RefreshError::InvalidGrant`] for an unknown, expired or revoked token, for reuse
    ///   of a rotated token after the grace period (which revokes the whole family), and
    ///   when the user was deleted, disabled or changed their password.
    /// - [`RefreshError::InvalidScope`] for a scope outside the family's.
    /// - [`RefreshError::Internal`] when a port fails.
    pub async fn execute(&self, request: RefreshRequest) -> Result<IssuedTokens, RefreshError> {
        let codec = self.issuer.codec.as_ref();
        let presented = codec.hash(&request.refresh_token);
        let successor = codec.successor(&request.refresh_token);
        let now = self.issuer.clock.now();

        let outcome = self
            .store()
            .rotate(&presented, &codec.hash(&successor), now, self.reuse_grace)
            .await
            .map_err(internal)?;
        let family = match outcome {
            RotateOutcome::Rotated(family) | RotateOutcome::Replayed(family) => family,
            RotateOutcome::Reused => {
                tracing::warn!("refresh token reuse detected; the token family has been revoked");
                return Err(RefreshError::InvalidGrant);
            }
            RotateOutcome::Invalid => return Err(RefreshError::InvalidGrant),
        };

        let user = self
            .users
            .find_by_id(family.user_id)
            .await
            .map_err(internal)?;
        let Some(user) =
            user.filter(|user| !user.disabled && user.session_epoch == family.session_epoch)
        else {
            return Err(RefreshError::InvalidGrant);
        };
        // The family's scope, narrowed by the request; also capped by what the user may
        // still have, should an administrator have taken scopes away since.
        let scope = match request.scope.filter(|scope| !scope.is_empty()) {
            Some(requested) => ScopeSet::grant(Some(requested), family.scope)?,
            None => family.scope,
        };
        let scope = scope
            .iter()
            .filter(|granted| user.scopes.contains(*granted))
            .collect();

        let access_token = self
            .issuer
            .access_token(&user, scope, family.client_id)
            .await
            .map_err(RefreshError::Internal)?;
        tracing::info!(user.id = %user.id, family.id = %family.id, "refresh grant succeeded");
        Ok(IssuedTokens {
            access_token,
            expires_in: self.issuer.policy.access_ttl(),
            refresh_token: Some(successor),
            scope,
        })
    }
}

fn internal(error: impl Into<BoxError>) -> RefreshError {
    RefreshError::Internal(error.into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use authgate_domain::{ClientId, Scope, ScopeError, User};

    use super::*;
    use crate::ports::{RefreshFamily, RepositoryError, TokenSigner};
    use crate::services::fixtures::{NOW, family_of, ports, refresh_hash, settings, user};
    use crate::services::{Ports, Settings, UseCases};
    use crate::testing::{FakeSigner, MockRefreshTokenStore, MockUserRepository};

    fn refresh(ports: Ports) -> RefreshAccessToken {
        UseCases::new(ports, settings()).refresh
    }

    fn request(scope: Option<ScopeSet>) -> RefreshRequest {
        RefreshRequest {
            refresh_token: RefreshToken::new("rt-1".into()),
            scope,
        }
    }

    fn store_answering(outcome: RotateOutcome) -> MockRefreshTokenStore {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_rotate()
            .times(1)
            .returning(move |_, _, _, _| Ok(outcome.clone()));
        refresh_tokens
    }

    fn users_finding(user: Option<User>) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users
            .expect_find_by_id()
            .returning(move |_| Ok(user.clone()));
        users
    }

    /// Ports in which presenting `rt-1` has `outcome` and `user` is stored as given.
    fn ports_where(outcome: RotateOutcome, user: Option<User>) -> Ports {
        Ports {
            refresh_tokens: Arc::new(store_answering(outcome)),
            users: Arc::new(users_finding(user)),
            ..ports()
        }
    }

    /// Ports in which `rt-1` rotates within `family` and `user` is stored as given.
    fn rotating_ports(family: RefreshFamily, user: Option<User>) -> Ports {
        ports_where(RotateOutcome::Rotated(family), user)
    }

    #[tokio::test]
    async fn a_rotated_token_is_answered_with_tokens_and_its_successor() {
        let alice = user("alice");
        let refresh = refresh(rotating_ports(family_of(&alice), Some(alice)));

        let result = refresh.execute(request(None)).await;

        assert!(
            matches!(result, Ok(IssuedTokens { refresh_token: Some(token), .. }) if token.expose() == "rt-1+")
        );
    }

    #[tokio::test]
    async fn a_replayed_token_within_the_grace_is_answered_with_the_same_successor() {
        let alice = user("alice");
        let refresh = refresh(ports_where(
            RotateOutcome::Replayed(family_of(&alice)),
            Some(alice),
        ));

        let result = refresh.execute(request(None)).await;

        assert!(
            matches!(result, Ok(IssuedTokens { refresh_token: Some(token), .. }) if token.expose() == "rt-1+")
        );
    }

    #[tokio::test]
    async fn a_reused_token_is_invalid_grant() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().never();
        let refresh = refresh(Ports {
            refresh_tokens: Arc::new(store_answering(RotateOutcome::Reused)),
            users: Arc::new(users),
            ..ports()
        });

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Err(RefreshError::InvalidGrant)));
    }

    #[tokio::test]
    async fn an_unknown_revoked_or_expired_token_is_invalid_grant() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().never();
        let refresh = refresh(Ports {
            refresh_tokens: Arc::new(store_answering(RotateOutcome::Invalid)),
            users: Arc::new(users),
            ..ports()
        });

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Err(RefreshError::InvalidGrant)));
    }

    #[tokio::test]
    async fn the_token_of_a_deleted_user_is_invalid_grant() {
        let alice = user("alice");
        let refresh = refresh(rotating_ports(family_of(&alice), None));

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Err(RefreshError::InvalidGrant)));
    }

    #[tokio::test]
    async fn the_token_of_a_disabled_user_is_invalid_grant() {
        let mut alice = user("alice");
        let family = family_of(&alice);
        alice.disabled = true;
        let refresh = refresh(rotating_ports(family, Some(alice)));

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Err(RefreshError::InvalidGrant)));
    }

    #[tokio::test]
    async fn a_token_from_before_a_password_change_is_invalid_grant() {
        let mut alice = user("alice");
        let family = family_of(&alice);
        alice.session_epoch = alice.session_epoch.next();
        let refresh = refresh(rotating_ports(family, Some(alice)));

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Err(RefreshError::InvalidGrant)));
    }

    #[tokio::test]
    async fn a_narrower_scope_gives_a_narrower_access_token() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let refresh = refresh(Ports {
            signer: signer.clone(),
            ..rotating_ports(family_of(&alice), Some(alice))
        });
        let narrower = ScopeSet::from_iter([Scope::ProfileRead]);

        let result = refresh.execute(request(Some(narrower))).await;

        let tokens = result.expect("refresh succeeds");
        assert_eq!(tokens.scope, narrower);
        assert!(
            matches!(signer.verify(&tokens.access_token).await, Ok(claims) if claims.scope == narrower)
        );
    }

    #[tokio::test]
    async fn a_wider_scope_is_invalid_scope() {
        let alice = user("alice");
        let refresh = refresh(rotating_ports(family_of(&alice), Some(alice)));
        let wider = ScopeSet::default_for_new_user().with(Scope::UsersRead);

        let result = refresh.execute(request(Some(wider))).await;

        assert!(matches!(
            result,
            Err(RefreshError::InvalidScope(ScopeError::NotAllowed(
                Scope::UsersRead
            )))
        ));
    }

    #[tokio::test]
    async fn an_omitted_scope_keeps_the_familys_scope() {
        let alice = user("alice");
        let family = family_of(&alice);
        let family_scope = family.scope;
        let refresh = refresh(rotating_ports(family, Some(alice)));

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Ok(tokens) if tokens.scope == family_scope));
    }

    #[tokio::test]
    async fn an_empty_scope_keeps_the_familys_scope() {
        let alice = user("alice");
        let family = family_of(&alice);
        let family_scope = family.scope;
        let refresh = refresh(rotating_ports(family, Some(alice)));

        let result = refresh.execute(request(Some(ScopeSet::empty()))).await;

        assert!(matches!(result, Ok(tokens) if tokens.scope == family_scope));
    }

    #[tokio::test]
    async fn scopes_the_user_lost_since_login_are_no_longer_granted() {
        let mut alice = user("alice");
        let family = family_of(&alice);
        alice.scopes = ScopeSet::from_iter([Scope::ProfileRead]);
        let refresh = refresh(rotating_ports(family, Some(alice)));

        let result = refresh.execute(request(None)).await;

        assert!(
            matches!(result, Ok(tokens) if tokens.scope == ScopeSet::from_iter([Scope::ProfileRead]))
        );
    }

    #[tokio::test]
    async fn the_access_token_is_for_the_familys_client_and_the_current_user() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let refresh = refresh(Ports {
            signer: signer.clone(),
            ..rotating_ports(family_of(&alice), Some(alice.clone()))
        });

        let result = refresh.execute(request(None)).await;

        let tokens = result.expect("refresh succeeds");
        let claims = signer
            .verify(&tokens.access_token)
            .await
            .expect("a token the signer made");
        assert_eq!(
            claims.client_id,
            ClientId::parse("spa").expect("valid client id")
        );
        assert_eq!(claims.subject, alice.id);
        assert_eq!(claims.session_epoch, alice.session_epoch);
        assert_eq!(claims.issued_at, NOW);
    }

    #[tokio::test]
    async fn rotation_presents_the_tokens_hash_its_successors_hash_and_the_configured_grace() {
        let alice = user("alice");
        let family = family_of(&alice);
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_rotate()
            .withf(|token, successor, now, grace| {
                *token == refresh_hash("rt-1")
                    && *successor == refresh_hash("rt-1+")
                    && *now == NOW
                    && *grace == Duration::from_secs(3)
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(RotateOutcome::Rotated(family.clone())));
        let ports = Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            users: Arc::new(users_finding(Some(alice))),
            ..ports()
        };
        let refresh = UseCases::new(
            ports,
            Settings {
                refresh_reuse_grace: Duration::from_secs(3),
                ..settings()
            },
        )
        .refresh;

        let result = refresh.execute(request(None)).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn a_failing_store_is_internal() {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_rotate()
            .returning(|_, _, _, _| Err(RepositoryError::Unavailable("database down".into())));
        let refresh = refresh(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            ..ports()
        });

        let result = refresh.execute(request(None)).await;

        assert!(matches!(result, Err(RefreshError::Internal(_))));
    }
}

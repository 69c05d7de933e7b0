//! Token introspection (RFC 7662).

use std::sync::Arc;

use authgate_domain::{ClientId, ScopeSet, Timestamp, UserId, Username};

use crate::authenticate::{AuthenticateBearer, AuthenticationError};
use crate::issuer::TokenIssuer;
use crate::ports::{BoxError, RefreshToken, UserRepository};

/// Which kind of token was introspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A JWT access token.
    AccessToken,
    /// An opaque refresh token.
    RefreshToken,
}

/// The metadata of an active token (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    /// Access or refresh token.
    pub kind: TokenKind,
    /// Scopes in force.
    pub scope: ScopeSet,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The user's login name.
    pub username: Username,
    /// The user's id.
    pub subject: UserId,
    /// `aud`.
    pub audience: String,
    /// `iss`.
    pub issuer: String,
    /// Expiry (for a refresh token, the end of its family).
    pub expires_at: Timestamp,
    /// Issue time (for a refresh token, the login that started its family).
    pub issued_at: Timestamp,
    /// `jti`, for access tokens.
    pub jwt_id: Option<String>,
}

/// Answers "is this token active, and what is it?".
pub struct IntrospectToken {
    authenticate: Arc<AuthenticateBearer>,
    users: Arc<dyn UserRepository>,
    issuer: Arc<TokenIssuer>,
}

impl IntrospectToken {
    pub(crate) fn new(
        authenticate: Arc<AuthenticateBearer>,
        users: Arc<dyn UserRepository>,
        issuer: Arc<TokenIssuer>,
    ) -> Self {
        Self {
            authenticate,
            users,
            issuer,
        }
    }

    /// Introspects `token`. `Ok(None)` means inactive: unknown, malformed, expired,
    /// revoked, reused, or belonging to a disabled user or an ended session; RFC 7662 §2.2
    /// says nothing more may be revealed about it.
    ///
    /// # Errors
    ///
    /// An opaque error when a port fails.
    pub async fn execute(&self, token: &str) -> Result<Option<ActiveToken>, BoxError> {
        match self.authenticate.execute(token).await {
            Ok(principal) => {
                let claims = principal.claims;
                return Ok(Some(ActiveToken {
                    kind: TokenKind::AccessToken,
                    scope: claims
                        .scope
                        .iter()
                        .filter(|scope| principal.user.scopes.contains(*scope))
                        .collect(),
                    client_id: claims.client_id,
                    username: principal.user.username,
                    subject: claims.subject,
                    audience: claims.audience,
                    issuer: claims.issuer,
                    expires_at: claims.expires_at,
                    issued_at: claims.issued_at,
                    jwt_id: Some(claims.jwt_id),
                }));
            }
            Err(AuthenticationError::Internal(source)) => return Err(source),
            Err(AuthenticationError::Format(_) | AuthenticationError::Rejected(_)) => {}
        }
        self.introspect_refresh_token(token).await
    }

    async fn introspect_refresh_token(&self, token: &str) -> Result<Option<ActiveToken>, BoxError> {
        let hash = self.issuer.codec.hash(&RefreshToken::new(token.to_owned()));
        let Some(family) = self
            .issuer
            .refresh_tokens
            .find_current(&hash, self.issuer.clock.now())
            .await?
        else {
            return Ok(None);
        };
        let user = self.users.find_by_id(family.user_id).await?;
        let Some(user) =
            user.filter(|user| !user.disabled && user.session_epoch == family.session_epoch)
        else {
            return Ok(None);
        };
        let policy = &self.issuer.policy;
        Ok(Some(ActiveToken {
            kind: TokenKind::RefreshToken,
            scope: family
                .scope
                .iter()
                .filter(|scope| user.scopes.contains(*scope))
                .collect(),
            client_id: family.client_id,
            username: user.username,
            subject: user.id,
            audience: policy.audience().to_owned(),
            issuer: policy.issuer().to_owned(),
            expires_at: family.expires_at,
            issued_at: family.issued_at,
            jwt_id: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use authgate_domain::{Scope, User};

    use super::*;
    use crate::ports::{RefreshFamily, RepositoryError};
    use crate::services::fixtures::{
        NOW, access_token, bearer_lookup_finding, family_of, ports, refresh_hash, settings,
        token_policy, user,
    };
    use crate::services::{Ports, UseCases};
    use crate::testing::{FakeSigner, MockBearerLookup, MockRefreshTokenStore, MockUserRepository};

    fn introspect(ports: Ports) -> IntrospectToken {
        UseCases::new(ports, settings()).introspect
    }

    fn users_finding(user: Option<User>) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users
            .expect_find_by_id()
            .returning(move |_| Ok(user.clone()));
        users
    }

    /// A store whose only current token is `rt-1`, in `family`.
    fn store_with(family: Option<RefreshFamily>) -> MockRefreshTokenStore {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_find_current()
            .returning(move |token, _| {
                Ok(family.clone().filter(|_| *token == refresh_hash("rt-1")))
            });
        refresh_tokens
    }

    /// Ports in which `user` is stored as given, nothing is denied and `rt-1` is in `family`.
    fn introspection_ports(
        signer: &Arc<FakeSigner>,
        user: Option<User>,
        family: Option<RefreshFamily>,
    ) -> Ports {
        Ports {
            signer: signer.clone(),
            bearer_lookup: Arc::new(bearer_lookup_finding(user.clone(), false)),
            users: Arc::new(users_finding(user)),
            refresh_tokens: Arc::new(store_with(family)),
            ..ports()
        }
    }

    #[tokio::test]
    async fn an_active_access_token_is_described_by_its_claims() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let introspect = introspect(introspection_ports(&signer, Some(alice.clone()), None));

        let result = introspect.execute(&token).await;

        let expected = ActiveToken {
            kind: TokenKind::AccessToken,
            scope: alice.scopes,
            client_id: ClientId::default_client(),
            username: alice.username,
            subject: alice.id,
            audience: "authgate".into(),
            issuer: "https://authgate.test".into(),
            expires_at: NOW.plus(token_policy().access_ttl()),
            issued_at: NOW,
            jwt_id: Some("jti-1".into()),
        };
        assert!(matches!(result, Ok(Some(active)) if active == expected));
    }

    #[tokio::test]
    async fn an_access_token_shows_only_the_scopes_its_user_still_holds() {
        let mut alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        alice.scopes = ScopeSet::from_iter([Scope::ProfileRead]);
        let introspect = introspect(introspection_ports(&signer, Some(alice), None));

        let result = introspect.execute(&token).await;

        assert!(
            matches!(result, Ok(Some(active)) if active.scope == ScopeSet::from_iter([Scope::ProfileRead]))
        );
    }

    #[tokio::test]
    async fn an_active_refresh_token_is_described_by_its_family() {
        let alice = user("alice");
        let family = family_of(&alice);
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(introspection_ports(
            &signer,
            Some(alice.clone()),
            Some(family.clone()),
        ));

        let result = introspect.execute("rt-1").await;

        let expected = ActiveToken {
            kind: TokenKind::RefreshToken,
            scope: family.scope,
            client_id: family.client_id,
            username: alice.username,
            subject: alice.id,
            audience: "authgate".into(),
            issuer: "https://authgate.test".into(),
            expires_at: family.expires_at,
            issued_at: family.issued_at,
            jwt_id: None,
        };
        assert!(matches!(result, Ok(Some(active)) if active == expected));
    }

    #[tokio::test]
    async fn a_refresh_token_is_looked_up_by_its_hash_as_of_now() {
        let alice = user("alice");
        let family = family_of(&alice);
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_find_current()
            .withf(|token, now| *token == refresh_hash("rt-1") && *now == NOW)
            .times(1)
            .returning(move |_, _| Ok(Some(family.clone())));
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            ..introspection_ports(&signer, Some(alice), None)
        });

        let result = introspect.execute("rt-1").await;

        assert!(matches!(
            result,
            Ok(Some(ActiveToken {
                kind: TokenKind::RefreshToken,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn a_revoked_access_token_is_inactive() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let introspect = introspect(Ports {
            bearer_lookup: Arc::new(bearer_lookup_finding(Some(alice.clone()), true)),
            ..introspection_ports(&signer, Some(alice), None)
        });

        let result = introspect.execute(&token).await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn an_unknown_token_is_inactive() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(introspection_ports(
            &signer,
            Some(alice.clone()),
            Some(family_of(&alice)),
        ));

        let result = introspect.execute("rt-2").await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn a_revoked_or_rotated_refresh_token_is_inactive() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(introspection_ports(&signer, Some(alice), None));

        let result = introspect.execute("rt-1").await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn the_refresh_token_of_a_disabled_user_is_inactive() {
        let mut alice = user("alice");
        let family = family_of(&alice);
        alice.disabled = true;
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(introspection_ports(&signer, Some(alice), Some(family)));

        let result = introspect.execute("rt-1").await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn a_refresh_token_from_before_a_password_change_is_inactive() {
        let mut alice = user("alice");
        let family = family_of(&alice);
        alice.session_epoch = alice.session_epoch.next();
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(introspection_ports(&signer, Some(alice), Some(family)));

        let result = introspect.execute("rt-1").await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn the_refresh_token_of_a_deleted_user_is_inactive() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let introspect = introspect(introspection_ports(&signer, None, Some(family_of(&alice))));

        let result = introspect.execute("rt-1").await;

        assert!(matches!(result, Ok(None)));
    }

    #[tokio::test]
    async fn a_failing_port_is_an_error_not_an_inactive_token() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let mut lookup = MockBearerLookup::new();
        lookup
            .expect_bearer_subject()
            .returning(|_, _| Err(RepositoryError::Unavailable("database down".into())));
        let introspect = introspect(Ports {
            bearer_lookup: Arc::new(lookup),
            ..introspection_ports(&signer, Some(alice), None)
        });

        let result = introspect.execute(&token).await;

        assert!(result.is_err());
    }
}

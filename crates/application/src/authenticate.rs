//! Bearer authentication (RFC 6750): from a presented access token to a principal.

use std::sync::Arc;

use authgate_domain::{AccessClaims, ClaimsRejection, Scope, ScopeSet, TokenPolicy, User};

use crate::ports::{BearerLookup, BoxError, Clock, TokenFormatError, TokenSigner};

/// An authenticated caller: the verified claims and the user as stored now.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, read on this request, so that disabling takes effect at once.
    pub user: User,
    /// The token's verified claims.
    pub claims: AccessClaims,
}

impl Principal {
    /// The scopes in force: those granted to the token that the user still holds.
    #[must_use]
    pub fn scopes(&self) -> ScopeSet {
        self.claims
            .scope
            .iter()
            .filter(|scope| self.user.scopes.contains(*scope))
            .collect()
    }

    /// Whether `scope` is in force.
    #[must_use]
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes().contains(scope)
    }
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    /// The token is not a well-formed access token signed by one of our keys.
    #[error(transparent)]
    Format(#[from] TokenFormatError),
    /// The token verified but may not be used (expired, revoked, user gone, …).
    #[error(transparent)]
    Rejected(#[from] ClaimsRejection),
    /// A port failed.
    #[error("authentication failed")]
    Internal(#[source] BoxError),
}

/// Authenticates bearer tokens.
pub struct AuthenticateBearer {
    signer: Arc<dyn TokenSigner>,
    lookup: Arc<dyn BearerLookup>,
    clock: Arc<dyn Clock>,
    policy: TokenPolicy,
}

impl AuthenticateBearer {
    pub(crate) fn new(
        signer: Arc<dyn TokenSigner>,
        lookup: Arc<dyn BearerLookup>,
        clock: Arc<dyn Clock>,
        policy: TokenPolicy,
    ) -> Self {
        Self {
            signer,
            lookup,
            clock,
            policy,
        }
    }

    /// Verifies `token` (SPEC §3): signature and algorithm, `typ`, `iss`, `aud`, `exp`,
    /// the revocation denylist, and that the user exists, is enabled and has not changed
    /// their password since.
    ///
    /// # Errors
    ///
    /// [`AuthenticationError::Format`] or [`AuthenticationError::Rejected`] naming the first
    /// failed check; [`AuthenticationError::Internal`] when a port fails.
    pub async fn execute(&self, token: &str) -> Result<Principal, AuthenticationError> {
        let claims = self.signer.verify(token).await?;
        self.policy.check_claims(&claims, self.clock.now())?;
        // One round trip for both reads: this runs on every authenticated request.
        let subject = self
            .lookup
            .bearer_subject(claims.subject, &claims.jwt_id)
            .await
            .map_err(|error| AuthenticationError::Internal(error.into()))?;
        if subject.revoked {
            return Err(ClaimsRejection::Revoked.into());
        }
        let user = subject.user.ok_or(ClaimsRejection::UnknownUser)?;
        TokenPolicy::check_session(&claims, &user)?;
        Ok(Principal { user, claims })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ports::{BearerSubject, RepositoryError};
    use crate::services::fixtures::{
        NOW, access_token, bearer_lookup_finding, claims_for, ports, settings, token_policy, user,
    };
    use crate::services::{Ports, UseCases};
    use crate::testing::{FakeSigner, FixedClock, MockBearerLookup, MockTokenSigner};

    fn authenticate(ports: Ports) -> Arc<AuthenticateBearer> {
        UseCases::new(ports, settings()).authenticate
    }

    /// Ports that sign with `signer`, revoke nothing and store `user` as given.
    fn bearer_ports(signer: &Arc<FakeSigner>, user: Option<User>) -> Ports {
        Ports {
            signer: signer.clone(),
            bearer_lookup: Arc::new(bearer_lookup_finding(user, false)),
            ..ports()
        }
    }

    #[tokio::test]
    async fn a_valid_token_yields_its_user_and_claims() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let authenticate = authenticate(bearer_ports(&signer, Some(alice.clone())));

        let result = authenticate.execute(&token).await;

        assert!(
            matches!(result, Ok(Principal { user, claims }) if user == alice && claims == claims_for(&alice, "jti-1"))
        );
    }

    #[tokio::test]
    async fn the_token_of_a_deleted_user_is_rejected_as_unknown_user() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let authenticate = authenticate(bearer_ports(&signer, None));

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(ClaimsRejection::UnknownUser))
        ));
    }

    #[tokio::test]
    async fn the_token_of_a_disabled_user_is_rejected() {
        let mut alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        alice.disabled = true;
        let authenticate = authenticate(bearer_ports(&signer, Some(alice)));

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(ClaimsRejection::UserDisabled))
        ));
    }

    #[tokio::test]
    async fn a_token_from_before_a_password_change_is_rejected_as_session_ended() {
        let mut alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        alice.session_epoch = alice.session_epoch.next();
        let authenticate = authenticate(bearer_ports(&signer, Some(alice)));

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(ClaimsRejection::SessionEnded))
        ));
    }

    #[tokio::test]
    async fn a_token_whose_jti_is_denied_is_rejected_as_revoked() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let mut lookup = MockBearerLookup::new();
        let stored = alice.clone();
        lookup
            .expect_bearer_subject()
            .withf(move |user_id, jwt_id| *user_id == alice.id && jwt_id == "jti-1")
            .times(1)
            .returning(move |_, _| {
                Ok(BearerSubject {
                    user: Some(stored.clone()),
                    revoked: true,
                })
            });
        let authenticate = authenticate(Ports {
            bearer_lookup: Arc::new(lookup),
            ..bearer_ports(&signer, None)
        });

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(ClaimsRejection::Revoked))
        ));
    }

    #[tokio::test]
    async fn a_revoked_token_of_a_deleted_user_is_rejected_as_revoked() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let authenticate = authenticate(Ports {
            bearer_lookup: Arc::new(bearer_lookup_finding(None, true)),
            ..bearer_ports(&signer, None)
        });

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(ClaimsRejection::Revoked))
        ));
    }

    #[tokio::test]
    async fn a_token_past_its_expiry_and_the_leeway_is_rejected_as_expired() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let clock = Arc::new(FixedClock::at_unix(NOW.unix()));
        let authenticate = authenticate(Ports {
            clock: clock.clone(),
            ..bearer_ports(&signer, Some(alice))
        });
        clock.advance(token_policy().access_ttl() + token_policy().leeway());

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(ClaimsRejection::Expired))
        ));
    }

    #[tokio::test]
    async fn a_token_just_past_its_expiry_is_accepted_within_the_leeway() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let clock = Arc::new(FixedClock::at_unix(NOW.unix()));
        let authenticate = authenticate(Ports {
            clock: clock.clone(),
            ..bearer_ports(&signer, Some(alice))
        });
        clock.advance(token_policy().access_ttl() + Duration::from_secs(1));

        let result = authenticate.execute(&token).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn a_token_the_signer_refuses_is_a_format_error() {
        let mut signer = MockTokenSigner::new();
        signer
            .expect_verify()
            .times(1)
            .returning(|_| Err(TokenFormatError::WrongAlgorithm));
        let authenticate = authenticate(Ports {
            signer: Arc::new(signer),
            ..ports()
        });

        let result = authenticate.execute("eyJhbGciOiJub25lIn0.e30.").await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Format(
                TokenFormatError::WrongAlgorithm
            ))
        ));
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_rejected() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let mut claims = claims_for(&alice, "jti-1");
        claims.audience = "another-api".into();
        let token = signer
            .sign(&claims)
            .await
            .expect("the fake signer signs anything");
        let authenticate = authenticate(bearer_ports(&signer, Some(alice)));

        let result = authenticate.execute(&token).await;

        assert!(matches!(
            result,
            Err(AuthenticationError::Rejected(
                ClaimsRejection::WrongAudience
            ))
        ));
    }

    #[tokio::test]
    async fn a_failing_bearer_lookup_is_internal() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &alice, "jti-1").await;
        let mut lookup = MockBearerLookup::new();
        lookup
            .expect_bearer_subject()
            .returning(|_, _| Err(RepositoryError::Unavailable("database down".into())));
        let authenticate = authenticate(Ports {
            bearer_lookup: Arc::new(lookup),
            ..bearer_ports(&signer, Some(alice))
        });

        let result = authenticate.execute(&token).await;

        assert!(matches!(result, Err(AuthenticationError::Internal(_))));
    }

    #[test]
    fn the_scopes_in_force_are_those_of_the_token_that_the_user_still_holds() {
        let mut alice = user("alice");
        let mut claims = claims_for(&alice, "jti-1");
        claims.scope = ScopeSet::from_iter([Scope::ProfileRead, Scope::ProfileWrite]);
        alice.scopes = ScopeSet::from_iter([Scope::ProfileRead, Scope::UsersRead]);

        let principal = Principal {
            user: alice,
            claims,
        };

        assert_eq!(
            principal.scopes(),
            ScopeSet::from_iter([Scope::ProfileRead])
        );
        assert!(principal.has_scope(Scope::ProfileRead));
        assert!(!principal.has_scope(Scope::ProfileWrite));
        assert!(!principal.has_scope(Scope::UsersRead));
    }
}

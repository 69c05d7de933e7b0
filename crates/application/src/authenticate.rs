//! Bearer authentication (RFC 6750): from a presented access token to a principal.

use std::sync::Arc;

use authgate_domain::{AccessClaims, ClaimsRejection, Scope, ScopeSet, TokenPolicy, User};

use crate::ports::{AccessTokenDenylist, BoxError, Clock, TokenFormatError, TokenSigner, UserRepository};

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
        self.claims.scope.iter().filter(|scope| self.user.scopes.contains(*scope)).collect()
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
    denylist: Arc<dyn AccessTokenDenylist>,
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
    policy: TokenPolicy,
}

impl AuthenticateBearer {
    pub(crate) fn new(
        signer: Arc<dyn TokenSigner>,
        denylist: Arc<dyn AccessTokenDenylist>,
        users: Arc<dyn UserRepository>,
        clock: Arc<dyn Clock>,
        policy: TokenPolicy,
    ) -> Self {
        Self { signer, denylist, users, clock, policy }
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
        if self.denylist.is_denied(&claims.jwt_id).await.map_err(|error| AuthenticationError::Internal(error.into()))? {
            return Err(ClaimsRejection::Revoked.into());
        }
        let user = self
            .users
            .find_by_id(claims.subject)
            .await
            .map_err(|error| AuthenticationError::Internal(error.into()))?
            .ok_or(ClaimsRejection::UnknownUser)?;
        TokenPolicy::check_session(&claims, &user)?;
        Ok(Principal { user, claims })
    }
}

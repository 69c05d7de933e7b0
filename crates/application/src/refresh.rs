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
    pub(crate) fn new(users: Arc<dyn UserRepository>, issuer: Arc<TokenIssuer>, reuse_grace: Duration) -> Self {
        Self { users, issuer, reuse_grace }
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

        let outcome =
            self.store().rotate(&presented, &codec.hash(&successor), now, self.reuse_grace).await.map_err(internal)?;
        let family = match outcome {
            RotateOutcome::Rotated(family) | RotateOutcome::Replayed(family) => family,
            RotateOutcome::Reused => {
                tracing::warn!("refresh token reuse detected; the token family has been revoked");
                return Err(RefreshError::InvalidGrant);
            }
            RotateOutcome::Invalid => return Err(RefreshError::InvalidGrant),
        };

        let user = self.users.find_by_id(family.user_id).await.map_err(internal)?;
        let Some(user) = user.filter(|user| !user.disabled && user.session_epoch == family.session_epoch) else {
            return Err(RefreshError::InvalidGrant);
        };
        // The family's scope, narrowed by the request; also capped by what the user may
        // still have, should an administrator have taken scopes away since.
        let scope = match request.scope.filter(|scope| !scope.is_empty()) {
            Some(requested) => ScopeSet::grant(Some(requested), family.scope)?,
            None => family.scope,
        };
        let scope = scope.iter().filter(|granted| user.scopes.contains(*granted)).collect();

        let access_token = self.issuer.access_token(&user, scope, family.client_id).await.map_err(RefreshError::Internal)?;
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

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
    pub(crate) fn new(authenticate: Arc<AuthenticateBearer>, users: Arc<dyn UserRepository>, issuer: Arc<TokenIssuer>) -> Self {
        Self { authenticate, users, issuer }
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
                    scope: claims.scope.iter().filter(|scope| principal.user.scopes.contains(*scope)).collect(),
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
        let Some(family) = self.issuer.refresh_tokens.find_current(&hash, self.issuer.clock.now()).await? else {
            return Ok(None);
        };
        let user = self.users.find_by_id(family.user_id).await?;
        let Some(user) = user.filter(|user| !user.disabled && user.session_epoch == family.session_epoch) else {
            return Ok(None);
        };
        let policy = &self.issuer.policy;
        Ok(Some(ActiveToken {
            kind: TokenKind::RefreshToken,
            scope: family.scope.iter().filter(|scope| user.scopes.contains(*scope)).collect(),
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

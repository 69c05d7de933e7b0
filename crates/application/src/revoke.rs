//! Token revocation (RFC 7009).

use std::sync::Arc;

use crate::issuer::TokenIssuer;
use crate::ports::{AccessTokenDenylist, BoxError, RefreshToken};

/// What the client says the token is (RFC 7009 §2.1); a hint only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

/// Revokes access and refresh tokens.
pub struct RevokeToken {
    denylist: Arc<dyn AccessTokenDenylist>,
    issuer: Arc<TokenIssuer>,
}

impl RevokeToken {
    pub(crate) fn new(denylist: Arc<dyn AccessTokenDenylist>, issuer: Arc<TokenIssuer>) -> Self {
        Self { denylist, issuer }
    }

    /// Revokes `token`, whatever it is. A refresh token revokes its whole family; an
    /// access token's `jti` is denied until it expires. An unknown, malformed or expired
    /// token is not an error (RFC 7009 §2.2: no oracle for token validity).
    ///
    /// The hint only decides which interpretation is tried first (§2.1).
    ///
    /// # Errors
    ///
    /// An opaque error when a port fails.
    pub async fn execute(&self, token: &str, hint: Option<TokenTypeHint>) -> Result<(), BoxError> {
        if hint == Some(TokenTypeHint::RefreshToken) {
            self.revoke_refresh_token(token).await?;
            self.revoke_access_token(token).await
        } else {
            self.revoke_access_token(token).await?;
            self.revoke_refresh_token(token).await
        }
    }

    async fn revoke_access_token(&self, token: &str) -> Result<(), BoxError> {
        // Only our own, well-signed tokens go on the denylist, so the table cannot be
        // filled with garbage by anonymous callers.
        let Ok(claims) = self.issuer.signer.verify(token).await else { return Ok(()) };
        if claims.issuer != self.issuer.policy.issuer() || claims.expires_at <= self.issuer.clock.now() {
            return Ok(());
        }
        // Deny until the token could no longer pass the expiry check anyway.
        let until = claims.expires_at.plus(self.issuer.policy.leeway());
        self.denylist.deny(&claims.jwt_id, until).await?;
        tracing::info!(token.jti = %claims.jwt_id, "access token revoked");
        Ok(())
    }

    async fn revoke_refresh_token(&self, token: &str) -> Result<(), BoxError> {
        let hash = self.issuer.codec.hash(&RefreshToken::new(token.to_owned()));
        self.issuer.refresh_tokens.revoke_family_of(&hash, "revoked", self.issuer.clock.now()).await?;
        Ok(())
    }
}

//! Issuing tokens: the part of every grant that comes after the user is known.

use std::sync::Arc;
use std::time::Duration;

use authgate_domain::{ClientId, ScopeSet, TokenPolicy, User};

use crate::ports::{
    BoxError, Clock, IdGenerator, RefreshFamily, RefreshToken, RefreshTokenCodec,
    RefreshTokenStore, TokenSigner,
};

/// What a successful grant hands the client (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The signed JWT access token.
    pub access_token: String,
    /// The access token's lifetime.
    pub expires_in: Duration,
    /// A refresh token, when the refresh grant is enabled.
    pub refresh_token: Option<RefreshToken>,
    /// The scope granted to the access token.
    pub scope: ScopeSet,
}

/// Signs access tokens and starts refresh-token families; shared by the grants.
pub(crate) struct TokenIssuer {
    pub(crate) signer: Arc<dyn TokenSigner>,
    pub(crate) refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub(crate) codec: Arc<dyn RefreshTokenCodec>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) policy: TokenPolicy,
    pub(crate) issue_refresh_tokens: bool,
}

impl TokenIssuer {
    /// Signs a new access token for `user`.
    pub(crate) async fn access_token(
        &self,
        user: &User,
        scope: ScopeSet,
        client_id: ClientId,
    ) -> Result<String, BoxError> {
        let jwt_id = self.ids.new_id().simple().to_string();
        let claims = self
            .policy
            .access_claims(user, scope, client_id, jwt_id, self.clock.now());
        self.signer.sign(&claims).await
    }

    /// Issues the tokens of a password grant: an access token and, when enabled, the first
    /// refresh token of a new family.
    pub(crate) async fn start_session(
        &self,
        user: &User,
        scope: ScopeSet,
        client_id: ClientId,
    ) -> Result<IssuedTokens, BoxError> {
        let refresh_token = if self.issue_refresh_tokens {
            let now = self.clock.now();
            let family = RefreshFamily {
                id: self.ids.new_id(),
                user_id: user.id,
                scope,
                client_id: client_id.clone(),
                session_epoch: user.session_epoch,
                issued_at: now,
                expires_at: now.plus(self.policy.refresh_ttl()),
            };
            let token = self.codec.generate();
            self.refresh_tokens
                .create_family(&family, &self.codec.hash(&token))
                .await?;
            Some(token)
        } else {
            None
        };
        let access_token = self.access_token(user, scope, client_id).await?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.policy.access_ttl(),
            refresh_token,
            scope,
        })
    }
}

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
        let Ok(claims) = self.issuer.signer.verify(token).await else {
            return Ok(());
        };
        // Deny until the token could no longer pass the expiry check anyway. A token past
        // `exp` but within the leeway still authenticates, so it must still be denied.
        let until = claims.expires_at.plus(self.issuer.policy.leeway());
        if claims.issuer != self.issuer.policy.issuer() || until <= self.issuer.clock.now() {
            return Ok(());
        }
        self.denylist.deny(&claims.jwt_id, until).await?;
        tracing::info!(token.jti = %claims.jwt_id, "access token revoked");
        Ok(())
    }

    async fn revoke_refresh_token(&self, token: &str) -> Result<(), BoxError> {
        let hash = self.issuer.codec.hash(&RefreshToken::new(token.to_owned()));
        self.issuer
            .refresh_tokens
            .revoke_family_of(&hash, "revoked", self.issuer.clock.now())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mockall::Sequence;

    use super::*;
    use crate::ports::{RepositoryError, TokenFormatError};
    use crate::services::fixtures::{
        NOW, access_token, ports, refresh_hash, settings, token_policy, user,
    };
    use crate::services::{Ports, UseCases};
    use crate::testing::{
        FakeSigner, FixedClock, MockAccessTokenDenylist, MockRefreshTokenStore, MockTokenSigner,
    };

    fn revoke(ports: Ports) -> RevokeToken {
        UseCases::new(ports, settings()).revoke
    }

    /// A store in which no token has a family, so revoking one changes nothing.
    fn store_without_families() -> MockRefreshTokenStore {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_revoke_family_of()
            .returning(|_, _, _| Ok(()));
        refresh_tokens
    }

    fn denylist_expecting(
        jwt_id: &'static str,
        until: authgate_domain::Timestamp,
    ) -> MockAccessTokenDenylist {
        let mut denylist = MockAccessTokenDenylist::new();
        denylist
            .expect_deny()
            .withf(move |denied, expires_at| denied == jwt_id && *expires_at == until)
            .times(1)
            .returning(|_, _| Ok(()));
        denylist
    }

    fn denylist_expecting_nothing() -> MockAccessTokenDenylist {
        let mut denylist = MockAccessTokenDenylist::new();
        denylist.expect_deny().never();
        denylist
    }

    #[tokio::test]
    async fn an_access_tokens_jti_is_denied_until_it_expires_plus_the_leeway() {
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &user("alice"), "jti-1").await;
        let until = NOW
            .plus(token_policy().access_ttl())
            .plus(token_policy().leeway());
        let revoke = revoke(Ports {
            signer,
            denylist: Arc::new(denylist_expecting("jti-1", until)),
            refresh_tokens: Arc::new(store_without_families()),
            ..ports()
        });

        let result = revoke
            .execute(&token, Some(TokenTypeHint::AccessToken))
            .await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn an_access_token_past_its_expiry_but_within_the_leeway_is_still_denied() {
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &user("alice"), "jti-1").await;
        let until = NOW
            .plus(token_policy().access_ttl())
            .plus(token_policy().leeway());
        let clock = Arc::new(FixedClock::at_unix(NOW.unix()));
        let revoke = revoke(Ports {
            signer,
            clock: clock.clone(),
            denylist: Arc::new(denylist_expecting("jti-1", until)),
            refresh_tokens: Arc::new(store_without_families()),
            ..ports()
        });
        // Bearer authentication still accepts the token for another 20 seconds.
        clock.advance(token_policy().access_ttl() + Duration::from_secs(10));

        let result = revoke.execute(&token, None).await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn an_access_token_past_its_expiry_and_the_leeway_is_not_denied() {
        let signer = Arc::new(FakeSigner::default());
        let token = access_token(&signer, &user("alice"), "jti-1").await;
        let clock = Arc::new(FixedClock::at_unix(NOW.unix()));
        let revoke = revoke(Ports {
            signer,
            clock: clock.clone(),
            denylist: Arc::new(denylist_expecting_nothing()),
            refresh_tokens: Arc::new(store_without_families()),
            ..ports()
        });
        clock.advance(token_policy().access_ttl() + token_policy().leeway());

        let result = revoke.execute(&token, None).await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn a_refresh_token_revokes_its_family() {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_revoke_family_of()
            .withf(|token, _, now| *token == refresh_hash("rt-1") && *now == NOW)
            .times(1)
            .returning(|_, _, _| Ok(()));
        let revoke = revoke(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            denylist: Arc::new(denylist_expecting_nothing()),
            ..ports()
        });

        let result = revoke
            .execute("rt-1", Some(TokenTypeHint::RefreshToken))
            .await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn a_refresh_token_revokes_its_family_whatever_the_hint() {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_revoke_family_of()
            .withf(|token, _, _| *token == refresh_hash("rt-1"))
            .times(1)
            .returning(|_, _, _| Ok(()));
        let revoke = revoke(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            denylist: Arc::new(denylist_expecting_nothing()),
            ..ports()
        });

        let result = revoke
            .execute("rt-1", Some(TokenTypeHint::AccessToken))
            .await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn garbage_is_revoked_without_error_and_denies_nothing() {
        let revoke = revoke(Ports {
            refresh_tokens: Arc::new(store_without_families()),
            denylist: Arc::new(denylist_expecting_nothing()),
            ..ports()
        });

        let result = revoke.execute("not a token at all", None).await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn a_refresh_token_hint_tries_the_refresh_token_first() {
        let mut sequence = Sequence::new();
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_revoke_family_of()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_, _, _| Ok(()));
        let mut signer = MockTokenSigner::new();
        signer
            .expect_verify()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Err(TokenFormatError::Malformed));
        let revoke = revoke(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            signer: Arc::new(signer),
            ..ports()
        });

        let result = revoke
            .execute("rt-1", Some(TokenTypeHint::RefreshToken))
            .await;

        assert!(matches!(result, Ok(())));
    }

    #[tokio::test]
    async fn an_access_token_hint_or_none_tries_the_access_token_first() {
        for hint in [Some(TokenTypeHint::AccessToken), None] {
            let mut sequence = Sequence::new();
            let mut signer = MockTokenSigner::new();
            signer
                .expect_verify()
                .times(1)
                .in_sequence(&mut sequence)
                .returning(|_| Err(TokenFormatError::Malformed));
            let mut refresh_tokens = MockRefreshTokenStore::new();
            refresh_tokens
                .expect_revoke_family_of()
                .times(1)
                .in_sequence(&mut sequence)
                .returning(|_, _, _| Ok(()));
            let revoke = revoke(Ports {
                refresh_tokens: Arc::new(refresh_tokens),
                signer: Arc::new(signer),
                ..ports()
            });

            let result = revoke.execute("rt-1", hint).await;

            assert!(matches!(result, Ok(())), "hint {hint:?}");
        }
    }

    #[tokio::test]
    async fn a_failing_store_is_reported() {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_revoke_family_of()
            .returning(|_, _, _| Err(RepositoryError::Unavailable("database down".into())));
        let revoke = revoke(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            ..ports()
        });

        let result = revoke
            .execute("rt-1", Some(TokenTypeHint::RefreshToken))
            .await;

        assert!(result.is_err());
    }
}

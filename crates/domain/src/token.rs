//! Access-token policy (RFC 9068): which claims to issue, and which claims to accept.

use std::time::Duration;

use crate::{ClientId, ScopeSet, Timestamp, User, UserId, Username};

/// A per-user counter, bumped on every password change.
///
/// Tokens carry the epoch they were issued under; a token whose epoch differs from the
/// user's current one was issued before the last password change. Comparing counters
/// is exact even when both events fall in the same second, unlike comparing `iat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SessionEpoch(u32);

impl SessionEpoch {
    /// Wraps a stored or decoded counter.
    #[must_use]
    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    /// The counter.
    #[must_use]
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The epoch after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

/// The claims of an access token (RFC 9068 §2.2), in domain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `iss`: who issued the token.
    pub issuer: String,
    /// `sub`: the user's stable id.
    pub subject: UserId,
    /// `aud`: the resource servers the token is for.
    pub audience: String,
    /// `exp`.
    pub expires_at: Timestamp,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `jti`: unique per token, the key of the revocation denylist.
    pub jwt_id: String,
    /// `scope`: the granted scopes.
    pub scope: ScopeSet,
    /// `client_id`: the client the token was issued to.
    pub client_id: ClientId,
    /// `username`: the user's login name at issue time.
    pub username: Username,
    /// `session_epoch` (private claim): the user's epoch at issue time.
    pub session_epoch: SessionEpoch,
}

/// Why otherwise well-signed claims are not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsRejection {
    /// `exp` is in the past, beyond the leeway.
    #[error("the token has expired")]
    Expired,
    /// `iat` is in the future, beyond the leeway.
    #[error("the token was issued in the future")]
    NotYetValid,
    /// `iss` is not this server.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// The JOSE `typ` header is not `at+jwt`.
    #[error("the token is not an access token")]
    WrongType,
    /// The subject does not exist any more.
    #[error("the token's user no longer exists")]
    UnknownUser,
    /// The subject is disabled.
    #[error("the token's user is disabled")]
    UserDisabled,
    /// The user's credentials changed after the token was issued.
    #[error("the token was issued before the user's last password change")]
    SessionEnded,
    /// The token was revoked.
    #[error("the token has been revoked")]
    Revoked,
}

/// How access and refresh tokens are issued and judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    issuer: String,
    audience: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    leeway: Duration,
}

impl TokenPolicy {
    /// The JOSE `typ` values accepted for an access token (RFC 9068 §2.1, RFC 7515 §4.1.9).
    pub const ACCESS_TOKEN_TYPES: [&'static str; 2] = ["at+jwt", "application/at+jwt"];
    /// The largest clock-skew allowance SPEC §3 permits.
    pub const MAX_LEEWAY: Duration = Duration::from_secs(30);

    /// A policy issuing for `issuer` and `audience`, with the given lifetimes and the
    /// largest permitted leeway.
    #[must_use]
    pub fn new(
        issuer: String,
        audience: String,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
            leeway: Self::MAX_LEEWAY,
        }
    }

    /// The `iss` of issued tokens.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of issued tokens.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Access-token lifetime.
    #[must_use]
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Absolute lifetime of a refresh-token family.
    #[must_use]
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Allowed clock skew when judging `exp` and `iat`.
    #[must_use]
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The claims of a new access token for `user`.
    #[must_use]
    pub fn access_claims(
        &self,
        user: &User,
        scope: ScopeSet,
        client_id: ClientId,
        jwt_id: String,
        now: Timestamp,
    ) -> AccessClaims {
        AccessClaims {
            issuer: self.issuer.clone(),
            subject: user.id,
            audience: self.audience.clone(),
            expires_at: now.plus(self.access_ttl),
            issued_at: now,
            jwt_id,
            scope,
            client_id,
            username: user.username.clone(),
            session_epoch: user.session_epoch,
        }
    }

    /// Whether a JOSE `typ` header names an access token.
    #[must_use]
    pub fn is_access_token_type(typ: &str) -> bool {
        Self::ACCESS_TOKEN_TYPES
            .iter()
            .any(|accepted| accepted.eq_ignore_ascii_case(typ))
    }

    /// Judges the claims of a token whose signature has verified.
    ///
    /// # Errors
    ///
    /// The first failing check: issuer, audience, expiry, issue time.
    pub fn check_claims(
        &self,
        claims: &AccessClaims,
        now: Timestamp,
    ) -> Result<(), ClaimsRejection> {
        if claims.issuer != self.issuer {
            return Err(ClaimsRejection::WrongIssuer);
        }
        if claims.audience != self.audience {
            return Err(ClaimsRejection::WrongAudience);
        }
        if claims.expires_at.plus(self.leeway) <= now {
            return Err(ClaimsRejection::Expired);
        }
        if claims.issued_at > now.plus(self.leeway) {
            return Err(ClaimsRejection::NotYetValid);
        }
        Ok(())
    }

    /// Judges whether the token's user may still use it.
    ///
    /// # Errors
    ///
    /// [`ClaimsRejection::UnknownUser`] when `user` is not the subject,
    /// [`ClaimsRejection::UserDisabled`], or [`ClaimsRejection::SessionEnded`] when the
    /// user's password changed after issue.
    pub fn check_session(claims: &AccessClaims, user: &User) -> Result<(), ClaimsRejection> {
        if user.id != claims.subject {
            return Err(ClaimsRejection::UnknownUser);
        }
        if user.disabled {
            return Err(ClaimsRejection::UserDisabled);
        }
        if user.session_epoch != claims.session_epoch {
            return Err(ClaimsRejection::SessionEnded);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scope, UserProfile};

    const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);

    fn policy() -> TokenPolicy {
        TokenPolicy::new(
            "http://127.0.0.1:8080".into(),
            "authgate".into(),
            Duration::from_secs(900),
            Duration::from_secs(14 * 86_400),
        )
    }

    fn user() -> User {
        User {
            id: UserId::new(uuid::Uuid::from_u128(7)),
            username: Username::parse("alice").expect("valid"),
            profile: UserProfile::default(),
            disabled: false,
            scopes: ScopeSet::default_for_new_user(),
            created_at: Timestamp::from_unix(0),
            session_epoch: SessionEpoch::new(3),
        }
    }

    fn claims() -> AccessClaims {
        let scope = ScopeSet::from_iter([Scope::ProfileRead]);
        policy().access_claims(
            &user(),
            scope,
            ClientId::default_client(),
            "jti-1".into(),
            NOW,
        )
    }

    #[test]
    fn issued_claims_carry_the_policy_and_the_user() {
        let claims = claims();

        assert_eq!(claims.issuer, "http://127.0.0.1:8080");
        assert_eq!(claims.audience, "authgate");
        assert_eq!(claims.expires_at.unix() - claims.issued_at.unix(), 900);
        assert_eq!(claims.subject, user().id);
        assert_eq!(claims.username.as_str(), "alice");
        assert_eq!(claims.session_epoch, SessionEpoch::new(3));
        assert_eq!(policy().check_claims(&claims, NOW), Ok(()));
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        let claims = claims();
        let expiry = claims.expires_at;

        assert_eq!(
            policy().check_claims(&claims, expiry.plus(Duration::from_secs(29))),
            Ok(())
        );
        assert_eq!(
            policy().check_claims(&claims, expiry.plus(Duration::from_secs(30))),
            Err(ClaimsRejection::Expired)
        );
    }

    #[test]
    fn tokens_from_the_future_are_refused_beyond_the_leeway() {
        let claims = claims();

        assert_eq!(
            policy().check_claims(&claims, NOW.minus(Duration::from_secs(30))),
            Ok(())
        );
        assert_eq!(
            policy().check_claims(&claims, NOW.minus(Duration::from_secs(31))),
            Err(ClaimsRejection::NotYetValid)
        );
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let mut foreign = claims();
        foreign.issuer = "http://evil".into();
        let mut elsewhere = claims();
        elsewhere.audience = "other".into();

        assert_eq!(
            policy().check_claims(&foreign, NOW),
            Err(ClaimsRejection::WrongIssuer)
        );
        assert_eq!(
            policy().check_claims(&elsewhere, NOW),
            Err(ClaimsRejection::WrongAudience)
        );
    }

    #[test]
    fn session_checks_cover_disabled_users_and_password_changes() {
        let claims = claims();
        let mut disabled = user();
        disabled.disabled = true;
        let mut changed = user();
        changed.session_epoch = changed.session_epoch.next();
        let mut other = user();
        other.id = UserId::new(uuid::Uuid::from_u128(8));

        assert_eq!(TokenPolicy::check_session(&claims, &user()), Ok(()));
        assert_eq!(
            TokenPolicy::check_session(&claims, &disabled),
            Err(ClaimsRejection::UserDisabled)
        );
        assert_eq!(
            TokenPolicy::check_session(&claims, &changed),
            Err(ClaimsRejection::SessionEnded)
        );
        assert_eq!(
            TokenPolicy::check_session(&claims, &other),
            Err(ClaimsRejection::UnknownUser)
        );
    }

    #[test]
    fn only_access_token_types_are_accepted() {
        assert!(TokenPolicy::is_access_token_type("at+jwt"));
        assert!(TokenPolicy::is_access_token_type("application/at+jwt"));
        assert!(TokenPolicy::is_access_token_type("AT+JWT"));
        assert!(!TokenPolicy::is_access_token_type("JWT"));
        assert!(!TokenPolicy::is_access_token_type(""));
    }
}

//! The composition root of the application layer: every use case built over one set of ports.

use std::sync::Arc;
use std::time::Duration;

use authgate_domain::{PasswordHash, PasswordPolicy, TokenPolicy};

use crate::authenticate::AuthenticateBearer;
use crate::introspect::IntrospectToken;
use crate::issuer::TokenIssuer;
use crate::login::LoginWithPassword;
use crate::password::ChangePassword;
use crate::ports::{
    AccessTokenDenylist, BearerLookup, BoxError, Clock, HealthProbe, IdGenerator, LoginThrottle,
    PasswordHasher, PublicJwk, RefreshTokenCodec, RefreshTokenStore, TokenSigner, UserRepository,
};
use crate::refresh::RefreshAccessToken;
use crate::revoke::RevokeToken;
use crate::users::{CreateUser, ManageUser, ReadUsers};

/// One implementation of every port.
#[derive(Clone)]
pub struct Ports {
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Refresh-token families.
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    /// Revoked access tokens.
    pub denylist: Arc<dyn AccessTokenDenylist>,
    /// The user and denylist reads of bearer authentication, in one round trip; over the
    /// same data as `users` and `denylist`.
    pub bearer_lookup: Arc<dyn BearerLookup>,
    /// Login-attempt counters.
    pub throttle: Arc<dyn LoginThrottle>,
    /// Database liveness.
    pub health: Arc<dyn HealthProbe>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access-token signing.
    pub signer: Arc<dyn TokenSigner>,
    /// Refresh-token generation and hashing.
    pub refresh_codec: Arc<dyn RefreshTokenCodec>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdGenerator>,
}

/// The policies and switches the use cases run under.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Issuer, audience and lifetimes of tokens.
    pub token_policy: TokenPolicy,
    /// Rules for new passwords.
    pub password_policy: PasswordPolicy,
    /// How long a rotated refresh token may be presented again and still get the same
    /// successor (SPEC §2).
    pub refresh_reuse_grace: Duration,
    /// Whether password grants also return a refresh token (the refresh grant is enabled).
    pub issue_refresh_tokens: bool,
    /// A hash of a random password with the configured parameters, verified against for
    /// unknown users so they cost what known ones do.
    pub decoy_hash: PasswordHash,
}

/// Every use case, ready to be shared by the HTTP handlers and the command line.
pub struct UseCases {
    /// `grant_type=password`.
    pub login: LoginWithPassword,
    /// `grant_type=refresh_token`.
    pub refresh: RefreshAccessToken,
    /// RFC 7009 revocation.
    pub revoke: RevokeToken,
    /// RFC 7662 introspection.
    pub introspect: IntrospectToken,
    /// Bearer authentication.
    pub authenticate: Arc<AuthenticateBearer>,
    /// Password changes.
    pub change_password: ChangePassword,
    /// User creation, including the bootstrap administrator.
    pub create_user: CreateUser,
    /// Reading users.
    pub read_users: ReadUsers,
    /// Changing and deleting users.
    pub manage_user: ManageUser,
    /// Purging expired rows.
    pub purge_expired: PurgeExpired,
    /// Database liveness.
    pub health: Arc<dyn HealthProbe>,
    /// The public signing keys (JWKS).
    pub publish_keys: PublishKeys,
    /// The token policy in force (issuer, audience, lifetimes).
    pub token_policy: TokenPolicy,
    /// The clock the use cases read, for adapters that need the time the same way.
    pub clock: Arc<dyn Clock>,
}

impl UseCases {
    /// Builds every use case over `ports`.
    #[must_use]
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let clock = ports.clock.clone();
        let issuer = Arc::new(TokenIssuer {
            signer: ports.signer.clone(),
            refresh_tokens: ports.refresh_tokens.clone(),
            codec: ports.refresh_codec.clone(),
            clock: ports.clock.clone(),
            ids: ports.ids.clone(),
            policy: settings.token_policy.clone(),
            issue_refresh_tokens: settings.issue_refresh_tokens,
        });
        let authenticate = Arc::new(AuthenticateBearer::new(
            ports.signer.clone(),
            ports.bearer_lookup,
            ports.clock.clone(),
            settings.token_policy.clone(),
        ));
        Self {
            login: LoginWithPassword::new(
                ports.users.clone(),
                ports.hasher.clone(),
                ports.throttle.clone(),
                issuer.clone(),
                settings.decoy_hash,
            ),
            refresh: RefreshAccessToken::new(
                ports.users.clone(),
                issuer.clone(),
                settings.refresh_reuse_grace,
            ),
            revoke: RevokeToken::new(ports.denylist.clone(), issuer.clone()),
            introspect: IntrospectToken::new(authenticate.clone(), ports.users.clone(), issuer),
            authenticate,
            change_password: ChangePassword::new(
                ports.users.clone(),
                ports.hasher.clone(),
                ports.refresh_tokens.clone(),
                ports.throttle.clone(),
                ports.clock.clone(),
                settings.password_policy,
            ),
            create_user: CreateUser::new(
                ports.users.clone(),
                ports.hasher,
                ports.clock.clone(),
                ports.ids,
                settings.password_policy,
            ),
            read_users: ReadUsers::new(ports.users.clone()),
            manage_user: ManageUser::new(
                ports.users,
                ports.refresh_tokens.clone(),
                ports.clock.clone(),
            ),
            purge_expired: PurgeExpired {
                refresh_tokens: ports.refresh_tokens,
                denylist: ports.denylist,
                clock: ports.clock,
            },
            health: ports.health,
            publish_keys: PublishKeys {
                signer: ports.signer,
            },
            token_policy: settings.token_policy,
            clock,
        }
    }
}

/// Deletes expired refresh-token families and denylist entries; run periodically, off the
/// request path.
pub struct PurgeExpired {
    refresh_tokens: Arc<dyn RefreshTokenStore>,
    denylist: Arc<dyn AccessTokenDenylist>,
    clock: Arc<dyn Clock>,
}

impl PurgeExpired {
    /// Purges both stores; returns how many rows went.
    ///
    /// # Errors
    ///
    /// An opaque error when a store fails.
    pub async fn execute(&self) -> Result<u64, BoxError> {
        let now = self.clock.now();
        let families = self.refresh_tokens.purge_expired(now).await?;
        let denied = self.denylist.purge_expired(now).await?;
        Ok(families + denied)
    }
}

/// Lists the public keys that verify live tokens, for `/.well-known/jwks.json`.
pub struct PublishKeys {
    signer: Arc<dyn TokenSigner>,
}

impl PublishKeys {
    /// The public keys (none for HS256, whose secret is never published).
    pub async fn execute(&self) -> Vec<PublicJwk> {
        self.signer.public_keys().await
    }
}

/// Seed data and port bundles shared by the use cases' unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;
    use std::time::Duration;

    use authgate_domain::{
        AccessClaims, ClientId, PasswordHash, PasswordPolicy, ScopeSet, SessionEpoch, Timestamp,
        TokenPolicy, User, UserId, UserProfile, Username,
    };
    use uuid::Uuid;

    use super::{Ports, Settings};
    use crate::ports::{
        BearerSubject, RefreshFamily, RefreshToken, RefreshTokenCodec, RefreshTokenHash,
        TokenSigner,
    };
    use crate::testing::{
        FakeRefreshCodec, FakeSigner, FixedClock, InsecureHasher, MockAccessTokenDenylist,
        MockBearerLookup, MockHealthProbe, MockRefreshTokenStore, MockUserRepository,
        SequentialIds,
    };

    /// The instant every test starts at.
    pub(crate) const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);
    /// The password of every seeded user.
    pub(crate) const PASSWORD: &str = "correct horse battery staple";
    /// The configured refresh-token reuse grace.
    pub(crate) const REUSE_GRACE: Duration = Duration::from_secs(10);

    /// Issuer `https://authgate.test`, audience `authgate`, 15 minute access tokens,
    /// 14 day refresh families, 30 s leeway.
    pub(crate) fn token_policy() -> TokenPolicy {
        TokenPolicy::new(
            "https://authgate.test".into(),
            "authgate".into(),
            Duration::from_secs(15 * 60),
            Duration::from_secs(14 * 86_400),
        )
    }

    /// The hash unknown users are verified against.
    pub(crate) fn decoy_hash() -> PasswordHash {
        InsecureHasher::hash_of("decoy: a password nobody knows")
    }

    /// The SPEC defaults, with refresh tokens enabled.
    pub(crate) fn settings() -> Settings {
        Settings {
            token_policy: token_policy(),
            password_policy: PasswordPolicy::default(),
            refresh_reuse_grace: REUSE_GRACE,
            issue_refresh_tokens: true,
            decoy_hash: decoy_hash(),
        }
    }

    /// Every port: a mock without expectations for each store, so that a call the test did
    /// not arrange fails it, and deterministic fakes for the rest (clock stopped at [`NOW`]).
    pub(crate) fn ports() -> Ports {
        Ports {
            throttle: std::sync::Arc::new(crate::testing::UnlimitedThrottle),
            users: Arc::new(MockUserRepository::new()),
            refresh_tokens: Arc::new(MockRefreshTokenStore::new()),
            denylist: Arc::new(MockAccessTokenDenylist::new()),
            bearer_lookup: Arc::new(MockBearerLookup::new()),
            health: Arc::new(MockHealthProbe::new()),
            hasher: Arc::new(InsecureHasher::default()),
            signer: Arc::new(FakeSigner::default()),
            refresh_codec: Arc::new(FakeRefreshCodec::default()),
            clock: Arc::new(FixedClock::at_unix(NOW.unix())),
            ids: Arc::new(SequentialIds::default()),
        }
    }

    /// A bearer lookup that finds `user` (whoever is asked for) and answers `revoked` for
    /// every token id.
    pub(crate) fn bearer_lookup_finding(user: Option<User>, revoked: bool) -> MockBearerLookup {
        let mut lookup = MockBearerLookup::new();
        lookup.expect_bearer_subject().returning(move |_, _| {
            Ok(BearerSubject {
                user: user.clone(),
                revoked,
            })
        });
        lookup
    }

    /// An enabled user with the default scopes, in session epoch 4 (so that a token of
    /// epoch 0 would stand out). The id spells the name, so different names never share one.
    pub(crate) fn user(name: &str) -> User {
        let id = name
            .bytes()
            .fold(0_u128, |id, byte| id << 8 | u128::from(byte));
        User {
            id: UserId::new(Uuid::from_u128(id)),
            username: Username::parse(name).expect("a valid test username"),
            profile: UserProfile::default(),
            disabled: false,
            scopes: ScopeSet::default_for_new_user(),
            created_at: NOW.minus(Duration::from_secs(86_400)),
            session_epoch: SessionEpoch::new(4),
        }
    }

    /// The claims of an access token for `user`, with all their scopes, issued at [`NOW`].
    pub(crate) fn claims_for(user: &User, jwt_id: &str) -> AccessClaims {
        token_policy().access_claims(
            user,
            user.scopes,
            ClientId::default_client(),
            jwt_id.to_owned(),
            NOW,
        )
    }

    /// A token that `signer` verifies into [`claims_for`]`(user, jwt_id)`.
    pub(crate) async fn access_token(signer: &FakeSigner, user: &User, jwt_id: &str) -> String {
        signer
            .sign(&claims_for(user, jwt_id))
            .await
            .expect("the fake signer signs anything")
    }

    /// A live family of `user`, started an hour ago by client `spa` with all their scopes.
    pub(crate) fn family_of(user: &User) -> RefreshFamily {
        let issued_at = NOW.minus(Duration::from_secs(3_600));
        RefreshFamily {
            id: Uuid::from_u128(0xFA),
            user_id: user.id,
            scope: user.scopes,
            client_id: ClientId::parse("spa").expect("a valid client id"),
            session_epoch: user.session_epoch,
            issued_at,
            expires_at: issued_at.plus(token_policy().refresh_ttl()),
        }
    }

    /// What [`FakeRefreshCodec`] stores for the token `token`.
    pub(crate) fn refresh_hash(token: &str) -> RefreshTokenHash {
        FakeRefreshCodec::default().hash(&RefreshToken::new(token.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use authgate_domain::{ClaimsRejection, ClientId, Password};

    use super::fixtures::{NOW, PASSWORD, REUSE_GRACE, ports, settings};
    use super::*;
    use crate::ports::{PublicKeyParams, RefreshToken, SigningAlgorithm, UserPatch};
    use crate::testing::{
        FixedClock, InMemoryBearerLookup, InMemoryDenylist, InMemoryRefreshTokenStore,
        InMemoryUserRepository, MockAccessTokenDenylist, MockRefreshTokenStore, MockTokenSigner,
    };
    use crate::{
        AuthenticationError, CreateUserRequest, IssuedTokens, LoginError, LoginRequest,
        RefreshError, RefreshRequest,
    };

    const NEW_PASSWORD: &str = "a brand new passphrase";

    /// Every use case over in-memory stores, with the clock that drives them.
    struct Service {
        use_cases: UseCases,
        clock: Arc<FixedClock>,
    }

    impl Service {
        /// A service whose only user is `alice`, with [`PASSWORD`].
        async fn with_alice() -> Self {
            let clock = Arc::new(FixedClock::at_unix(NOW.unix()));
            let users = Arc::new(InMemoryUserRepository::new());
            let denylist = Arc::new(InMemoryDenylist::new());
            let ports = Ports {
                bearer_lookup: Arc::new(InMemoryBearerLookup::new(users.clone(), denylist.clone())),
                users,
                refresh_tokens: Arc::new(InMemoryRefreshTokenStore::new()),
                denylist,
                clock: clock.clone(),
                ..ports()
            };
            let use_cases = UseCases::new(ports, settings());
            let alice = CreateUserRequest {
                username: "alice".into(),
                password: Password::new(PASSWORD.into()),
                email: None,
                full_name: None,
                scopes: None,
            };
            use_cases
                .create_user
                .execute(alice)
                .await
                .expect("alice is a valid new user");
            Self { use_cases, clock }
        }

        async fn login(&self, password: &str) -> Result<IssuedTokens, LoginError> {
            let request = LoginRequest {
                client_address: None,
                username: "alice".into(),
                password: Password::new(password.into()),
                scope: None,
                client_id: ClientId::default_client(),
            };
            self.use_cases.login.execute(request).await
        }

        async fn refresh(
            &self,
            refresh_token: &RefreshToken,
        ) -> Result<IssuedTokens, RefreshError> {
            let request = RefreshRequest {
                refresh_token: refresh_token.clone(),
                scope: None,
            };
            self.use_cases.refresh.execute(request).await
        }
    }

    fn refresh_token_of(tokens: &IssuedTokens) -> RefreshToken {
        tokens
            .refresh_token
            .clone()
            .expect("the refresh grant is enabled")
    }

    #[tokio::test]
    async fn concurrent_refreshes_within_the_grace_agree_and_a_later_reuse_revokes_the_whole_family()
     {
        let service = Service::with_alice().await;
        let first = refresh_token_of(&service.login(PASSWORD).await.expect("alice logs in"));
        let second = refresh_token_of(
            &service
                .refresh(&first)
                .await
                .expect("the first refresh rotates"),
        );
        let replayed = refresh_token_of(
            &service
                .refresh(&first)
                .await
                .expect("a retry within the grace"),
        );
        service.clock.advance(REUSE_GRACE);

        let reused = service.refresh(&first).await;
        let newest = service.refresh(&second).await;

        assert_eq!(replayed.expose(), second.expose());
        assert!(matches!(reused, Err(RefreshError::InvalidGrant)));
        assert!(matches!(newest, Err(RefreshError::InvalidGrant)));
    }

    #[tokio::test]
    async fn the_successor_keeps_the_session_going() {
        let service = Service::with_alice().await;
        let first = refresh_token_of(&service.login(PASSWORD).await.expect("alice logs in"));
        let second = refresh_token_of(
            &service
                .refresh(&first)
                .await
                .expect("the first refresh rotates"),
        );

        let third = service.refresh(&second).await;

        let tokens = third.expect("the successor rotates in turn");
        assert!(
            service
                .use_cases
                .authenticate
                .execute(&tokens.access_token)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn changing_the_password_ends_earlier_access_and_refresh_tokens() {
        let service = Service::with_alice().await;
        let before = service.login(PASSWORD).await.expect("alice logs in");
        let principal = service
            .use_cases
            .authenticate
            .execute(&before.access_token)
            .await
            .expect("a live token");
        service
            .use_cases
            .change_password
            .execute(
                &principal,
                &Password::new(PASSWORD.into()),
                Password::new(NEW_PASSWORD.into()),
            )
            .await
            .expect("the password changes");

        let old_access = service
            .use_cases
            .authenticate
            .execute(&before.access_token)
            .await;
        let old_refresh = service.refresh(&refresh_token_of(&before)).await;
        let old_password = service.login(PASSWORD).await;
        let after = service
            .login(NEW_PASSWORD)
            .await
            .expect("the new password works");

        assert!(matches!(
            old_access,
            Err(AuthenticationError::Rejected(ClaimsRejection::SessionEnded))
        ));
        assert!(matches!(old_refresh, Err(RefreshError::InvalidGrant)));
        assert!(matches!(old_password, Err(LoginError::InvalidCredentials)));
        assert!(
            service
                .use_cases
                .authenticate
                .execute(&after.access_token)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_revoked_access_token_no_longer_authenticates_or_introspects() {
        let service = Service::with_alice().await;
        let tokens = service.login(PASSWORD).await.expect("alice logs in");

        service
            .use_cases
            .revoke
            .execute(&tokens.access_token, None)
            .await
            .expect("revocation succeeds");

        let authenticated = service
            .use_cases
            .authenticate
            .execute(&tokens.access_token)
            .await;
        let introspected = service
            .use_cases
            .introspect
            .execute(&tokens.access_token)
            .await;
        assert!(matches!(
            authenticated,
            Err(AuthenticationError::Rejected(ClaimsRejection::Revoked))
        ));
        assert!(matches!(introspected, Ok(None)));
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_no_longer_refreshes_or_introspects() {
        let service = Service::with_alice().await;
        let refresh_token =
            refresh_token_of(&service.login(PASSWORD).await.expect("alice logs in"));
        let active = service
            .use_cases
            .introspect
            .execute(refresh_token.expose())
            .await;

        service
            .use_cases
            .revoke
            .execute(refresh_token.expose(), None)
            .await
            .expect("revocation succeeds");

        let refreshed = service.refresh(&refresh_token).await;
        let introspected = service
            .use_cases
            .introspect
            .execute(refresh_token.expose())
            .await;
        assert!(matches!(active, Ok(Some(_))));
        assert!(matches!(refreshed, Err(RefreshError::InvalidGrant)));
        assert!(matches!(introspected, Ok(None)));
    }

    #[tokio::test]
    async fn disabling_a_user_ends_their_sessions_at_once() {
        let service = Service::with_alice().await;
        let tokens = service.login(PASSWORD).await.expect("alice logs in");
        let disable = UserPatch {
            disabled: Some(true),
            ..UserPatch::default()
        };

        service
            .use_cases
            .manage_user
            .update("alice", &disable)
            .await
            .expect("alice is disabled");

        let authenticated = service
            .use_cases
            .authenticate
            .execute(&tokens.access_token)
            .await;
        let refreshed = service.refresh(&refresh_token_of(&tokens)).await;
        let logged_in = service.login(PASSWORD).await;
        assert!(matches!(
            authenticated,
            Err(AuthenticationError::Rejected(ClaimsRejection::UserDisabled))
        ));
        assert!(matches!(refreshed, Err(RefreshError::InvalidGrant)));
        assert!(matches!(logged_in, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn purging_clears_both_stores_as_of_now_and_counts_every_row() {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_purge_expired()
            .withf(|now| *now == NOW)
            .times(1)
            .returning(|_| Ok(3));
        let mut denylist = MockAccessTokenDenylist::new();
        denylist
            .expect_purge_expired()
            .withf(|now| *now == NOW)
            .times(1)
            .returning(|_| Ok(4));
        let use_cases = UseCases::new(
            Ports {
                refresh_tokens: Arc::new(refresh_tokens),
                denylist: Arc::new(denylist),
                ..ports()
            },
            settings(),
        );

        let purged = use_cases.purge_expired.execute().await;

        assert!(matches!(purged, Ok(7)));
    }

    #[tokio::test]
    async fn a_failing_store_fails_the_purge() {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens.expect_purge_expired().returning(|_| {
            Err(crate::ports::RepositoryError::Unavailable(
                "database down".into(),
            ))
        });
        let use_cases = UseCases::new(
            Ports {
                refresh_tokens: Arc::new(refresh_tokens),
                ..ports()
            },
            settings(),
        );

        let purged = use_cases.purge_expired.execute().await;

        assert!(purged.is_err());
    }

    #[tokio::test]
    async fn published_keys_are_the_signers_public_keys() {
        let key = PublicJwk {
            kid: "k1".into(),
            algorithm: SigningAlgorithm::EdDsa,
            key: PublicKeyParams::Ed25519 {
                x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            },
        };
        let mut signer = MockTokenSigner::new();
        let published = key.clone();
        signer
            .expect_public_keys()
            .times(1)
            .returning(move || vec![published.clone()]);
        let use_cases = UseCases::new(
            Ports {
                signer: Arc::new(signer),
                ..ports()
            },
            settings(),
        );

        let keys = use_cases.publish_keys.execute().await;

        assert_eq!(keys, vec![key]);
    }
}

//! The resource-owner password grant (RFC 6749 §4.3).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use authgate_domain::{
    ClientId, Password, PasswordHash, ScopeError, ScopeSet, ThrottleDecision, Timestamp, Username,
};

use crate::issuer::{IssuedTokens, TokenIssuer};
use crate::ports::{BoxError, HashError, LoginThrottle, PasswordHasher, UserRepository};
use crate::sampled_log::SampledLog;

/// A password-grant request, as the client sent it.
#[derive(Debug)]
pub struct LoginRequest {
    /// The username as typed; normalised and validated here, so that a malformed name is
    /// answered exactly like an unknown one.
    pub username: String,
    /// The password as typed.
    pub password: Password,
    /// The requested scope; `None` asks for everything the user may have.
    pub scope: Option<ScopeSet>,
    /// The client the tokens are for.
    pub client_id: ClientId,
    /// The network address the request came from, for per-address throttling.
    pub client_address: Option<IpAddr>,
}

/// Why a password grant failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password or disabled account; deliberately one variant.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The client asked for more than the user may have.
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    /// Too many failed attempts for this username or from this address; nothing was
    /// verified.
    #[error("too many failed login attempts; retry later")]
    Throttled {
        /// How long to wait before the next attempt.
        retry_after: Duration,
    },
    /// Every hashing slot is busy; the client should retry shortly.
    #[error("the server is busy; retry shortly")]
    Busy,
    /// A port failed; the source is logged, never shown to the client.
    #[error("token issuance failed")]
    Internal(#[source] BoxError),
}

/// Trades a username and password for tokens.
pub struct LoginWithPassword {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    throttle: Arc<dyn LoginThrottle>,
    issuer: Arc<TokenIssuer>,
    /// Hash of a random password, verified against when the user is unknown.
    decoy_hash: PasswordHash,
    /// An attacker can repeat a throttled attempt as fast as the network allows.
    throttled_log: SampledLog,
}

impl LoginWithPassword {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        throttle: Arc<dyn LoginThrottle>,
        issuer: Arc<TokenIssuer>,
        decoy_hash: PasswordHash,
    ) -> Self {
        Self {
            users,
            hasher,
            throttle,
            issuer,
            decoy_hash,
            throttled_log: SampledLog::default(),
        }
    }

    /// Verifies the credentials and issues tokens.
    ///
    /// # Errors
    ///
    /// - [`LoginError::InvalidCredentials`] for an unknown or malformed username, a wrong
    ///   password or a disabled user; each costs exactly one password verification.
    /// - [`LoginError::InvalidScope`] when the requested scope exceeds the user's.
    /// - [`LoginError::Busy`] when hashing is at capacity.
    /// - [`LoginError::Internal`] when a port fails.
    pub async fn execute(&self, request: LoginRequest) -> Result<IssuedTokens, LoginError> {
        let username = Username::parse(&request.username);
        // Malformed names are throttled too, under a bounded key, so that they cannot be used
        // to probe without limit either.
        let throttle_key = match &username {
            Ok(username) => username.as_str().to_owned(),
            Err(_) => request
                .username
                .to_lowercase()
                .chars()
                .take(Username::MAX_LEN)
                .collect(),
        };
        let now = self.issuer.clock.now();
        let decision = self
            .throttle
            .begin_attempt(&throttle_key, request.client_address, now)
            .await
            .map_err(|error| LoginError::Internal(error.into()))?;
        if let ThrottleDecision::Throttled { retry_after } = decision {
            if let Some(left_out) = self.throttled_log.sample(now) {
                tracing::warn!(
                    client.address = ?request.client_address,
                    throttled.unlogged = left_out,
                    "login attempt throttled"
                );
            }
            return Err(LoginError::Throttled { retry_after });
        }
        // Refuse before the user lookup when hashing is saturated: in a login storm every
        // doomed attempt would otherwise cost a database round trip, taken from the bearer
        // requests that share the pool. The attempt reached no verdict, so it is given back.
        if !self.hasher.has_capacity() {
            self.give_back(&throttle_key, request.client_address, now)
                .await;
            return Err(LoginError::Busy);
        }

        let credentials = match username {
            Ok(username) => self
                .users
                .find_credentials(&username)
                .await
                .map_err(|error| LoginError::Internal(error.into()))?,
            Err(_) => None,
        };

        // Verify even when the user does not exist, so that both paths cost one Argon2 run
        // and response times do not reveal which usernames exist.
        let hash = credentials
            .as_ref()
            .map_or(&self.decoy_hash, |(_, hash)| hash);
        let verification = match self.hasher.verify(&request.password, hash).await {
            Ok(verification) => verification,
            Err(error) => {
                // No verdict was reached: the attempt must not count as a failure, or a busy
                // server would lock out users typing the right password.
                self.give_back(&throttle_key, request.client_address, now)
                    .await;
                return Err(match error {
                    HashError::Busy => LoginError::Busy,
                    HashError::Internal(source) => LoginError::Internal(source),
                });
            }
        };

        let user = match credentials {
            Some((user, _)) if verification.matches && !user.disabled => user,
            _ => return Err(LoginError::InvalidCredentials),
        };
        // The password was right: the failure counters reset even if the scope is refused.
        if let Err(error) = self
            .throttle
            .record_success(&throttle_key, request.client_address, now)
            .await
        {
            tracing::warn!(error = %error, "resetting the login throttle failed");
        }
        let scope = ScopeSet::grant(request.scope, user.scopes)?;

        if verification.needs_rehash {
            self.upgrade_hash(&user.id, &request.password).await;
        }

        let tokens = self
            .issuer
            .start_session(&user, scope, request.client_id)
            .await
            .map_err(LoginError::Internal)?;
        tracing::info!(user.id = %user.id, token.scope = %scope, "password grant succeeded");
        Ok(tokens)
    }

    /// Takes back an attempt that reached no verdict. A failure only means the attempt stays
    /// counted, so it is logged, not returned.
    async fn give_back(&self, throttle_key: &str, address: Option<IpAddr>, now: Timestamp) {
        if let Err(error) = self.throttle.give_back(throttle_key, address, now).await {
            tracing::warn!(error = %error, "giving back a login attempt failed");
        }
    }

    /// Re-hashes a verified password under the configured parameters. A failure only means
    /// the upgrade waits for the next login, so it is logged, not returned.
    async fn upgrade_hash(&self, user_id: &authgate_domain::UserId, password: &Password) {
        let result = match self.hasher.hash(password).await {
            Ok(hash) => self
                .users
                .upgrade_password_hash(*user_id, &hash)
                .await
                .map_err(BoxError::from),
            Err(error) => Err(error.into()),
        };
        match result {
            Ok(()) => {
                tracing::info!(user.id = %user_id, "password hash upgraded to the configured parameters")
            }
            Err(error) => {
                tracing::warn!(user.id = %user_id, error = %error, "password hash upgrade failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use authgate_domain::{
        ClientId, Password, PasswordHash, Scope, ScopeError, ScopeSet, SessionEpoch, User,
    };

    use super::*;
    use crate::ports::{HashError, RepositoryError, TokenSigner, Verification};
    use crate::services::fixtures::{
        NOW, PASSWORD, decoy_hash, ports, refresh_hash, settings, token_policy, user,
    };
    use crate::services::{Ports, Settings, UseCases};
    use crate::testing::{
        FakeSigner, InsecureHasher, MockPasswordHasher, MockRefreshTokenStore, MockUserRepository,
    };

    const MISMATCH: Verification = Verification {
        matches: false,
        needs_rehash: false,
    };
    const MATCH: Verification = Verification {
        matches: true,
        needs_rehash: false,
    };

    fn login(ports: Ports) -> LoginWithPassword {
        UseCases::new(ports, settings()).login
    }

    fn request(username: &str, password: &str) -> LoginRequest {
        LoginRequest {
            client_address: None,
            username: username.to_owned(),
            password: Password::new(password.to_owned()),
            scope: None,
            client_id: ClientId::default_client(),
        }
    }

    fn request_with_scope(scope: ScopeSet) -> LoginRequest {
        LoginRequest {
            client_address: None,
            scope: Some(scope),
            ..request("alice", PASSWORD)
        }
    }

    /// A repository that knows `user`, with [`PASSWORD`] hashed by the [`InsecureHasher`].
    fn users_knowing(user: &User) -> MockUserRepository {
        users_knowing_with_hash(user, InsecureHasher::hash_of(PASSWORD))
    }

    fn users_knowing_with_hash(user: &User, password_hash: PasswordHash) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        let stored = user.clone();
        users
            .expect_find_credentials()
            .withf(move |username| *username == stored.username)
            .returning({
                let stored = user.clone();
                move |_| Ok(Some((stored.clone(), password_hash.clone())))
            });
        users
    }

    /// A refresh-token store that accepts every new family.
    fn accepting_store() -> MockRefreshTokenStore {
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_create_family()
            .returning(|_, _| Ok(()));
        refresh_tokens
    }

    /// Ports in which `alice` exists with [`PASSWORD`] and every login can succeed.
    fn alice_ports(alice: &User) -> Ports {
        Ports {
            users: Arc::new(users_knowing(alice)),
            refresh_tokens: Arc::new(accepting_store()),
            ..ports()
        }
    }

    #[tokio::test]
    async fn unknown_user_still_costs_exactly_one_verification_against_the_decoy_hash() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials()
            .times(1)
            .returning(|_| Ok(None));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .withf(|_, hash| *hash == decoy_hash())
            .times(1)
            .returning(|_, _| Ok(MISMATCH));
        let login = login(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = login.execute(request("nobody", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn unknown_user_is_refused_even_if_the_decoy_password_is_guessed() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| Ok(None));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher.expect_verify().times(1).returning(|_, _| Ok(MATCH));
        let login = login(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = login.execute(request("nobody", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn malformed_username_is_not_looked_up_but_still_costs_one_verification() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .withf(|_, hash| *hash == decoy_hash())
            .times(1)
            .returning(|_, _| Ok(MISMATCH));
        let login = login(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..ports()
        });

        let result = login.execute(request("no such user!", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn usernames_are_lower_cased_before_lookup() {
        let alice = user("alice");
        let login = login(alice_ports(&alice));

        let result = login.execute(request("ALICE", PASSWORD)).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn wrong_password_is_invalid_credentials() {
        let alice = user("alice");
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .times(1)
            .returning(|_, _| Ok(MISMATCH));
        let login = login(Ports {
            hasher: Arc::new(hasher),
            ..alice_ports(&alice)
        });

        let result = login
            .execute(request("alice", "a wrong but long password"))
            .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn disabled_user_with_the_right_password_is_invalid_credentials() {
        let mut alice = user("alice");
        alice.disabled = true;
        let login = login(alice_ports(&alice));

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn a_scope_the_user_may_not_have_is_invalid_scope() {
        let alice = user("alice");
        let login = login(alice_ports(&alice));

        let result = login
            .execute(request_with_scope(ScopeSet::from_iter([
                Scope::ProfileRead,
                Scope::UsersWrite,
            ])))
            .await;

        assert!(matches!(
            result,
            Err(LoginError::InvalidScope(ScopeError::NotAllowed(
                Scope::UsersWrite
            )))
        ));
    }

    #[tokio::test]
    async fn a_wrong_password_is_not_told_apart_by_an_invalid_scope() {
        let alice = user("alice");
        let login = login(alice_ports(&alice));
        let request = LoginRequest {
            client_address: None,
            scope: Some(ScopeSet::all()),
            ..request("alice", "a wrong but long password")
        };

        let result = login.execute(request).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn no_scope_grants_every_scope_the_user_may_have() {
        let mut alice = user("alice");
        alice.scopes = ScopeSet::from_iter([Scope::ProfileRead, Scope::UsersRead]);
        let login = login(alice_ports(&alice));

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(result, Ok(tokens) if tokens.scope == alice.scopes));
    }

    #[tokio::test]
    async fn an_empty_scope_grants_every_scope_the_user_may_have() {
        let mut alice = user("alice");
        alice.scopes = ScopeSet::from_iter([Scope::ProfileRead, Scope::UsersRead]);
        let login = login(alice_ports(&alice));

        let result = login.execute(request_with_scope(ScopeSet::empty())).await;

        assert!(matches!(result, Ok(tokens) if tokens.scope == alice.scopes));
    }

    #[tokio::test]
    async fn a_narrower_scope_is_granted_as_requested() {
        let alice = user("alice");
        let login = login(alice_ports(&alice));
        let narrower = ScopeSet::from_iter([Scope::ProfileRead]);

        let result = login.execute(request_with_scope(narrower)).await;

        assert!(matches!(result, Ok(tokens) if tokens.scope == narrower));
    }

    #[tokio::test]
    async fn the_access_token_carries_the_user_the_scope_and_the_client() {
        let alice = user("alice");
        let signer = Arc::new(FakeSigner::default());
        let login = login(Ports {
            signer: signer.clone(),
            ..alice_ports(&alice)
        });
        let client_id = ClientId::parse("my-app").expect("valid client id");

        let tokens = login
            .execute(LoginRequest {
                client_address: None,
                client_id: client_id.clone(),
                ..request("alice", PASSWORD)
            })
            .await;

        let tokens = tokens.expect("login succeeds");
        let claims = signer
            .verify(&tokens.access_token)
            .await
            .expect("a token the signer made");
        assert_eq!(claims.subject, alice.id);
        assert_eq!(claims.username, alice.username);
        assert_eq!(claims.scope, alice.scopes);
        assert_eq!(claims.client_id, client_id);
        assert_eq!(claims.session_epoch, alice.session_epoch);
        assert_eq!(claims.issued_at, NOW);
        assert_eq!(tokens.expires_in, token_policy().access_ttl());
    }

    #[tokio::test]
    async fn busy_hasher_is_reported_as_busy() {
        let alice = user("alice");
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .returning(|_, _| Err(HashError::Busy));
        let login = login(Ports {
            hasher: Arc::new(hasher),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::Busy)));
    }

    #[tokio::test]
    async fn a_failing_hasher_is_internal() {
        let alice = user("alice");
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .returning(|_, _| Err(HashError::Internal("unparsable hash".into())));
        let login = login(Ports {
            hasher: Arc::new(hasher),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::Internal(_))));
    }

    #[tokio::test]
    async fn a_correct_login_against_an_outdated_hash_stores_a_fresh_one() {
        let alice = user("alice");
        let mut users = users_knowing_with_hash(&alice, InsecureHasher::outdated_hash_of(PASSWORD));
        let alice_id = alice.id;
        users
            .expect_upgrade_password_hash()
            .withf(move |id, hash| *id == alice_id && *hash == InsecureHasher::hash_of(PASSWORD))
            .times(1)
            .returning(|_, _| Ok(()));
        let login = login(Ports {
            users: Arc::new(users),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn a_correct_login_against_a_current_hash_stores_nothing() {
        let alice = user("alice");
        let mut users = users_knowing(&alice);
        users.expect_upgrade_password_hash().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher.expect_verify().times(1).returning(|_, _| Ok(MATCH));
        hasher.expect_hash().never();
        let login = login(Ports {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn a_failed_hash_upgrade_does_not_fail_the_login() {
        let alice = user("alice");
        let mut users = users_knowing_with_hash(&alice, InsecureHasher::outdated_hash_of(PASSWORD));
        users
            .expect_upgrade_password_hash()
            .times(1)
            .returning(|_, _| Err(RepositoryError::Unavailable("database down".into())));
        let login = login(Ports {
            users: Arc::new(users),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn a_wrong_password_against_an_outdated_hash_is_not_rehashed() {
        let alice = user("alice");
        let mut users = users_knowing_with_hash(&alice, InsecureHasher::outdated_hash_of(PASSWORD));
        users.expect_upgrade_password_hash().never();
        let login = login(Ports {
            users: Arc::new(users),
            ..alice_ports(&alice)
        });

        let result = login
            .execute(request("alice", "a wrong but long password"))
            .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn success_starts_a_refresh_family_in_the_users_session_epoch() {
        let alice = user("alice");
        let expected_user = alice.clone();
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_create_family()
            .withf(move |family, token| {
                family.user_id == expected_user.id
                    && family.session_epoch == SessionEpoch::new(4)
                    && family.scope == expected_user.scopes
                    && family.client_id == ClientId::default_client()
                    && family.issued_at == NOW
                    && family.expires_at == NOW.plus(token_policy().refresh_ttl())
                    && *token == refresh_hash("rt-1")
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let login = login(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(
            matches!(result, Ok(IssuedTokens { refresh_token: Some(token), .. }) if token.expose() == "rt-1")
        );
    }

    #[tokio::test]
    async fn without_the_refresh_grant_no_family_is_started_and_no_refresh_token_issued() {
        let alice = user("alice");
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens.expect_create_family().never();
        let ports = Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            ..alice_ports(&alice)
        };
        let login = UseCases::new(
            ports,
            Settings {
                issue_refresh_tokens: false,
                ..settings()
            },
        )
        .login;

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(
            result,
            Ok(IssuedTokens {
                refresh_token: None,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_failing_user_repository_is_internal() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials()
            .returning(|_| Err(RepositoryError::Unavailable("database down".into())));
        let login = login(Ports {
            users: Arc::new(users),
            ..ports()
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::Internal(_))));
    }

    #[tokio::test]
    async fn a_failing_refresh_token_store_is_internal() {
        let alice = user("alice");
        let mut refresh_tokens = MockRefreshTokenStore::new();
        refresh_tokens
            .expect_create_family()
            .returning(|_, _| Err(RepositoryError::Unavailable("database down".into())));
        let login = login(Ports {
            refresh_tokens: Arc::new(refresh_tokens),
            ..alice_ports(&alice)
        });

        let result = login.execute(request("alice", PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::Internal(_))));
    }
}

#[cfg(test)]
mod throttling_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use authgate_domain::{ClientId, Password, ThrottleDecision};

    use super::*;
    use crate::services::fixtures::{PASSWORD, ports, settings, user};
    use crate::services::{Ports, UseCases};
    use crate::testing::{
        InsecureHasher, MockLoginThrottle, MockPasswordHasher, MockUserRepository,
    };

    fn request(username: &str, password: &str) -> LoginRequest {
        LoginRequest {
            username: username.to_owned(),
            password: Password::new(password.to_owned()),
            scope: None,
            client_id: ClientId::default_client(),
            client_address: Some("192.0.2.7".parse().expect("ip")),
        }
    }

    #[tokio::test]
    async fn a_throttled_attempt_is_refused_before_any_lookup_or_hashing() {
        let mut throttle = MockLoginThrottle::new();
        throttle
            .expect_begin_attempt()
            .withf(|username, address, _| username == "alice" && address.is_some())
            .times(1)
            .returning(|_, _, _| {
                Ok(ThrottleDecision::Throttled {
                    retry_after: Duration::from_secs(4),
                })
            });
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher.expect_verify().never();
        let login = UseCases::new(
            Ports {
                throttle: Arc::new(throttle),
                hasher: Arc::new(hasher),
                ..ports()
            },
            settings(),
        )
        .login;

        let result = login.execute(request("ALICE", PASSWORD)).await;

        assert!(
            matches!(result, Err(LoginError::Throttled { retry_after }) if retry_after == Duration::from_secs(4))
        );
    }

    #[tokio::test]
    async fn a_wrong_password_is_counted_and_not_forgiven() {
        let alice = user("alice");
        let mut users = MockUserRepository::new();
        let stored = alice.clone();
        users
            .expect_find_credentials()
            .returning(move |_| Ok(Some((stored.clone(), InsecureHasher::hash_of(PASSWORD)))));
        let mut throttle = MockLoginThrottle::new();
        throttle
            .expect_begin_attempt()
            .times(1)
            .returning(|_, _, _| Ok(ThrottleDecision::Allowed));
        throttle.expect_record_success().never();
        let login = UseCases::new(
            Ports {
                throttle: Arc::new(throttle),
                users: Arc::new(users),
                ..ports()
            },
            settings(),
        )
        .login;

        let result = login.execute(request("alice", "not-the-password")).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn malformed_usernames_are_throttled_under_a_bounded_key() {
        let mut throttle = MockLoginThrottle::new();
        throttle
            .expect_begin_attempt()
            .withf(|key, _, _| {
                key.chars().count() == 64 && key.chars().all(|character| character == 'x')
            })
            .times(1)
            .returning(|_, _, _| {
                Ok(ThrottleDecision::Throttled {
                    retry_after: Duration::from_secs(1),
                })
            });
        let login = UseCases::new(
            Ports {
                throttle: Arc::new(throttle),
                ..ports()
            },
            settings(),
        )
        .login;

        let result = login.execute(request(&"X".repeat(500), PASSWORD)).await;

        assert!(matches!(result, Err(LoginError::Throttled { .. })));
    }
}

#[cfg(test)]
mod give_back_tests {
    use std::sync::Arc;

    use authgate_domain::{ClientId, Password, ThrottleDecision};

    use super::*;
    use crate::ports::HashError;
    use crate::services::fixtures::{PASSWORD, ports, settings};
    use crate::services::{Ports, UseCases};
    use crate::testing::{MockLoginThrottle, MockPasswordHasher, MockUserRepository};

    #[tokio::test]
    async fn a_busy_hasher_gives_the_attempt_back_instead_of_counting_a_failure() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| Ok(None));
        let mut throttle = MockLoginThrottle::new();
        throttle
            .expect_begin_attempt()
            .times(1)
            .returning(|_, _, _| Ok(ThrottleDecision::Allowed));
        throttle
            .expect_give_back()
            .withf(|username, _, _| username == "alice")
            .times(1)
            .returning(|_, _, _| Ok(()));
        throttle.expect_record_success().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .returning(|_, _| Err(HashError::Busy));
        let login = UseCases::new(
            Ports {
                throttle: Arc::new(throttle),
                hasher: Arc::new(hasher),
                users: Arc::new(users),
                ..ports()
            },
            settings(),
        )
        .login;

        let result = login
            .execute(LoginRequest {
                username: "alice".into(),
                password: Password::new(PASSWORD.into()),
                scope: None,
                client_id: ClientId::default_client(),
                client_address: None,
            })
            .await;

        assert!(matches!(result, Err(LoginError::Busy)));
    }

    #[tokio::test]
    async fn a_saturated_hasher_is_busy_before_any_lookup_and_gives_the_attempt_back() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().never();
        let mut throttle = MockLoginThrottle::new();
        throttle
            .expect_begin_attempt()
            .times(1)
            .returning(|_, _, _| Ok(ThrottleDecision::Allowed));
        throttle
            .expect_give_back()
            .withf(|username, address, _| username == "alice" && address.is_some())
            .times(1)
            .returning(|_, _, _| Ok(()));
        throttle.expect_record_success().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().times(1).return_const(false);
        hasher.expect_verify().never();
        let login = UseCases::new(
            Ports {
                throttle: Arc::new(throttle),
                hasher: Arc::new(hasher),
                users: Arc::new(users),
                ..ports()
            },
            settings(),
        )
        .login;

        let result = login
            .execute(LoginRequest {
                username: "ALICE".into(),
                password: Password::new(PASSWORD.into()),
                scope: None,
                client_id: ClientId::default_client(),
                client_address: Some("192.0.2.7".parse().expect("an address")),
            })
            .await;

        assert!(matches!(result, Err(LoginError::Busy)));
    }
}

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
    AccessTokenDenylist, BoxError, Clock, HealthProbe, IdGenerator, PasswordHasher, PublicJwk, RefreshTokenCodec,
    RefreshTokenStore, TokenSigner, UserRepository,
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
}

impl UseCases {
    /// Builds every use case over `ports`.
    #[must_use]
    pub fn new(ports: Ports, settings: Settings) -> Self {
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
            ports.denylist.clone(),
            ports.users.clone(),
            ports.clock.clone(),
            settings.token_policy.clone(),
        ));
        Self {
            login: LoginWithPassword::new(ports.users.clone(), ports.hasher.clone(), issuer.clone(), settings.decoy_hash),
            refresh: RefreshAccessToken::new(ports.users.clone(), issuer.clone(), settings.refresh_reuse_grace),
            revoke: RevokeToken::new(ports.denylist.clone(), issuer.clone()),
            introspect: IntrospectToken::new(authenticate.clone(), ports.users.clone(), issuer),
            authenticate,
            change_password: ChangePassword::new(
                ports.users.clone(),
                ports.hasher.clone(),
                ports.refresh_tokens.clone(),
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
            manage_user: ManageUser::new(ports.users, ports.refresh_tokens.clone(), ports.clock.clone()),
            purge_expired: PurgeExpired { refresh_tokens: ports.refresh_tokens, denylist: ports.denylist, clock: ports.clock },
            health: ports.health,
            publish_keys: PublishKeys { signer: ports.signer },
            token_policy: settings.token_policy,
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

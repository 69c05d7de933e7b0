//! Wiring: adapters, use cases and the router, built in one readable function.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use authgate_application::ports::{
    Clock, IdGenerator, KeyStore, LoginThrottle, PasswordHasher, SigningAlgorithm,
};
use authgate_application::{CreateUserRequest, Ports, Settings, UseCases};
use authgate_crypto::{
    Argon2PasswordHasher, Argon2Settings, HashingLimits, HmacRefreshTokenCodec, JwtTokenSigner,
    SignerConfig,
};
use authgate_domain::{Password, ScopeSet, TokenPolicy, Username};
use authgate_http::{AppState, HttpConfig};
use authgate_persistence::{Database, PoolOptions};
use axum::serve::{Listener, ListenerExt as _};
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_rustls::rustls::ServerConfig;

use crate::adapters::{RandomIds, SystemClock};
use crate::config::{Config, Secret};
use crate::tls::TlsListener;

/// Name of the server secret that keys refresh-token successor derivation.
const REFRESH_SUCCESSOR_KEY: &str = "refresh-successor-key";
/// How often expired refresh families, denylist entries and idle login-throttle counters are
/// purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How long in-flight requests may run after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Replacements for the real clock and id generator, for tests.
#[derive(Clone, Default)]
pub struct Overrides {
    /// A clock to use instead of the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// An id generator to use instead of random UUIDs.
    pub ids: Option<Arc<dyn IdGenerator>>,
}

impl Overrides {
    /// Overrides only the clock.
    #[must_use]
    pub fn clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock: Some(clock),
            ids: None,
        }
    }
}

/// The administrator created on first start, reported once so `main` can print it.
pub struct BootstrapReport {
    /// The administrator's username.
    pub username: Username,
    /// The generated password, when `AUTHGATE_ADMIN_PASSWORD` was not set.
    pub generated_password: Option<Password>,
}

/// Everything the commands need: the database and the use cases over it.
pub struct Services {
    /// The database the adapters share.
    pub database: Database,
    /// Every use case.
    pub use_cases: Arc<UseCases>,
    /// The signer, kept to reload keys periodically.
    pub signer: Arc<JwtTokenSigner>,
    /// The key store, for `authgate keys`.
    pub keys: Arc<dyn KeyStore>,
    /// The clock in use.
    pub clock: Arc<dyn Clock>,
}

impl Services {
    /// Connects to the database, applies migrations and builds every adapter and use case.
    ///
    /// # Errors
    ///
    /// Database, migration or key-loading failures, with context.
    pub async fn open(config: &Config, overrides: Overrides) -> anyhow::Result<Self> {
        authgate_crypto::ensure_crypto_provider()
            .context("initialising the JWT crypto provider")?;
        let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let ids = overrides.ids.unwrap_or_else(|| Arc::new(RandomIds));

        let pool_options = PoolOptions {
            max_connections: config.db_max_connections,
            acquire_timeout: Duration::from_secs(5),
        };
        let database = Database::connect(&config.database_url, pool_options)
            .await
            .context("connecting to the database")?;
        database
            .migrate()
            .await
            .context("applying database migrations")?;
        let repositories = database.repositories();

        let hasher = Arc::new(
            Argon2PasswordHasher::new(
                Argon2Settings {
                    memory_kib: config.argon2.memory_kib,
                    iterations: config.argon2.iterations,
                    parallelism: config.argon2.parallelism,
                },
                HashingLimits {
                    max_concurrent: config.max_concurrent_hashes,
                    // Enough waiters to keep every slot busy under load, few enough that a
                    // login storm is answered 503 at once instead of queueing without bound.
                    max_queued: config.max_concurrent_hashes * 16,
                },
            )
            .context("configuring Argon2id")?,
        );
        let signer = Arc::new(
            JwtTokenSigner::load(
                repositories.keys.clone(),
                SignerConfig {
                    algorithm: config.signing_alg,
                    hs256_secret: config
                        .jwt_secret
                        .as_ref()
                        .map(|secret| secret.expose().as_bytes().to_vec()),
                    access_token_ttl: config.access_token_ttl,
                },
                clock.clone(),
            )
            .await
            .context("loading signing keys")?,
        );
        let successor_key = repositories
            .keys
            .secret(REFRESH_SUCCESSOR_KEY, &authgate_crypto::new_secret())
            .await
            .context("loading the refresh-token key")?;
        let decoy_hash = hasher
            .hash(&Password::new(uuid::Uuid::new_v4().to_string()))
            .await
            .context("computing the decoy password hash")?;

        let ports = Ports {
            users: repositories.users,
            refresh_tokens: repositories.refresh_tokens,
            denylist: repositories.denylist,
            throttle: database.login_throttle(),
            health: repositories.health,
            hasher,
            signer: signer.clone(),
            refresh_codec: Arc::new(
                HmacRefreshTokenCodec::new(successor_key)
                    .context("loading the refresh-token key")?,
            ),
            clock: clock.clone(),
            ids,
        };
        let settings = Settings {
            token_policy: TokenPolicy::new(
                config.issuer(),
                config.audience.clone(),
                config.access_token_ttl,
                config.refresh_token_ttl,
            ),
            password_policy: config.password_policy,
            refresh_reuse_grace: config.refresh_reuse_grace,
            issue_refresh_tokens: config.refresh_grant,
            decoy_hash,
        };
        Ok(Self {
            database,
            use_cases: Arc::new(UseCases::new(ports, settings)),
            signer,
            keys: repositories.keys,
            clock,
        })
    }

    /// Creates the administrator if there are no users at all (SPEC §1).
    ///
    /// # Errors
    ///
    /// A weak `AUTHGATE_ADMIN_PASSWORD`, or a storage failure.
    pub async fn bootstrap_admin(
        &self,
        password: Option<&Secret>,
    ) -> anyhow::Result<Option<BootstrapReport>> {
        let generated = password.is_none().then(generate_password);
        let password = match (password, &generated) {
            (Some(secret), _) => Password::new(secret.expose().to_owned()),
            (None, Some(generated)) => generated.clone(),
            (None, None) => unreachable!("a password is generated whenever none is configured"),
        };
        let request = CreateUserRequest {
            username: "admin".to_owned(),
            password,
            email: None,
            full_name: Some("Administrator".to_owned()),
            scopes: Some(ScopeSet::all()),
        };
        let created = self
            .use_cases
            .create_user
            .execute_if_empty(request)
            .await
            .context(
                "creating the bootstrap administrator (is AUTHGATE_ADMIN_PASSWORD acceptable?)",
            )?;
        Ok(created.map(|user| BootstrapReport {
            username: user.username,
            generated_password: generated,
        }))
    }
}

/// A random 24-character password from the OS CSPRNG (~143 bits), far above any policy.
fn generate_password() -> Password {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let password = (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    Password::new(password)
}

/// The whole service, built and ready to serve.
pub struct App {
    services: Services,
    router: axum::Router,
    maintenance: Maintenance,
    /// The administrator created on this start, if any.
    pub bootstrap: Option<BootstrapReport>,
}

impl App {
    /// Builds adapters, use cases and the router, and creates the bootstrap administrator
    /// if the database has no users. `main` and the black-box tests both call this.
    ///
    /// # Errors
    ///
    /// Configuration, database or key failures, with context.
    pub async fn build(config: Config, overrides: Overrides) -> anyhow::Result<Self> {
        let services = Services::open(&config, overrides).await?;
        let bootstrap = services
            .bootstrap_admin(config.admin_password.as_ref())
            .await?;
        let http_config = HttpConfig {
            issuer: config.issuer(),
            password_grant: config.password_grant,
            refresh_grant: config.refresh_grant,
            cors_origins: config.cors_origins.clone(),
            hsts: config.tls.is_some(),
            trusted_proxies: config.trusted_proxies.clone(),
        };
        let router = authgate_http::router(AppState {
            use_cases: services.use_cases.clone(),
            config: Arc::new(http_config),
        });
        let maintenance = Maintenance {
            use_cases: services.use_cases.clone(),
            signer: services.signer.clone(),
            keys: services.keys.clone(),
            throttle: services.database.login_throttle(),
            clock: services.clock.clone(),
            algorithm: config.signing_alg,
            key_rotation_interval: config.key_rotation_interval,
            key_reload_interval: config.key_reload_interval,
        };
        Ok(Self {
            services,
            router,
            maintenance,
            bootstrap,
        })
    }

    /// The use cases, for tests that arrange state directly.
    #[must_use]
    pub fn use_cases(&self) -> Arc<UseCases> {
        self.services.use_cases.clone()
    }

    /// Serves plain HTTP on `listener` until `shutdown` completes, then lets in-flight
    /// requests finish (bounded) and closes the database pool.
    ///
    /// # Errors
    ///
    /// I/O failures of the listener.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_on(listener, shutdown).await
    }

    /// Serves HTTPS on `listener` with `tls` (see [`crate::tls::load_server_config`]), like
    /// [`App::serve`]; each TLS handshake runs in its own task with a timeout.
    ///
    /// # Errors
    ///
    /// I/O failures of the listener.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = TlsListener::new(listener, tls).context("starting the TLS listener")?;
        self.serve_on(listener, shutdown).await
    }

    async fn serve_on<L>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()>
    where
        L: Listener<Addr = SocketAddr>,
    {
        let maintenance = tokio::spawn(self.maintenance.run());

        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // axum implements `Connected` (what fills `ConnectInfo<SocketAddr>`, which throttling
        // reads) for `TcpListener` and for any listener wrapped by `tap_io`, and the orphan rule
        // forbids implementing it here for the TLS listener: so every listener goes through
        // a `tap_io` that leaves the connection as it is.
        //
        // axum 0.8's `serve` gives hyper no timer, so hyper's 30 s header-read timeout is inert:
        // a client that trickles its request head holds its connection. The TLS handshake has
        // its own timeout (`tls.rs`), and once the head is in, the router's request timeout
        // bounds the rest (`authgate_http`'s middleware).
        let listener = listener.tap_io(|_connection: &mut L::Io| {});
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });
        let mut server = std::pin::pin!(server.into_future());

        tokio::select! {
            result = &mut server => result.context("serving HTTP")?,
            () = shutdown => {
                tracing::info!("shutdown requested; finishing in-flight requests");
                let _ = stop_tx.send(true);
                if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                    tracing::warn!("in-flight requests did not finish in time; closing");
                }
            }
        }
        maintenance.abort();
        self.services.database.close().await;
        Ok(())
    }
}

/// Periodic work off the request path: rotating a due signing key, reloading the keys, and
/// purging expired rows.
struct Maintenance {
    use_cases: Arc<UseCases>,
    signer: Arc<JwtTokenSigner>,
    keys: Arc<dyn KeyStore>,
    throttle: Arc<dyn LoginThrottle>,
    clock: Arc<dyn Clock>,
    algorithm: SigningAlgorithm,
    key_rotation_interval: Duration,
    key_reload_interval: Duration,
}

impl Maintenance {
    /// Runs until the task is aborted. The first ticks come at once, so an instance that
    /// starts with an overdue key rotates it before its first minute is out.
    async fn run(self) {
        let mut reload = tokio::time::interval(self.key_reload_interval);
        let mut purge = tokio::time::interval(PURGE_INTERVAL);
        // After a slow tick (an RSA key takes a while to generate), carry on at the usual
        // pace rather than catching up with a burst.
        reload.set_missed_tick_behavior(MissedTickBehavior::Delay);
        purge.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = reload.tick() => {
                    self.rotate_key_if_due().await;
                    if let Err(error) = self.signer.reload().await {
                        tracing::warn!(error = %error, "reloading signing keys failed");
                    }
                }
                _ = purge.tick() => self.purge().await,
            }
        }
    }

    /// Replaces the active signing key once it is `key_rotation_interval` old.
    ///
    /// Every instance runs this; [`KeyStore::rotate_if_due`] lets exactly one of them rotate,
    /// and the others pick the new key up on their next reload. A candidate key is generated
    /// only when the stored key looks due, so RSA keys are not made every minute for nothing.
    async fn rotate_key_if_due(&self) {
        // The HS256 key is the configured secret: there is nothing to rotate here.
        if self.algorithm == SigningAlgorithm::Hs256 {
            return;
        }
        let now = self.clock.now();
        let created_before = now.minus(self.key_rotation_interval);
        let stored = match self.keys.list().await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(error = %error, "listing signing keys for rotation failed");
                return;
            }
        };
        let newest_active = stored
            .iter()
            .filter(|key| key.algorithm == self.algorithm && key.retired_at.is_none())
            .map(|key| key.created_at)
            .max();
        if newest_active.is_some_and(|created_at| created_at >= created_before) {
            return;
        }
        let algorithm = self.algorithm;
        let candidate = match tokio::task::spawn_blocking(move || {
            authgate_crypto::generate_key(algorithm, now)
        })
        .await
        {
            Ok(Ok(candidate)) => candidate,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "generating a signing key for rotation failed");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, "generating a signing key for rotation failed");
                return;
            }
        };
        match self.keys.rotate_if_due(&candidate, created_before).await {
            Ok(true) => tracing::info!(
                key.kid = %candidate.kid,
                key.alg = algorithm.as_str(),
                "rotated the signing key"
            ),
            Ok(false) => tracing::debug!("another instance rotated the signing key first"),
            Err(error) => tracing::warn!(error = %error, "rotating the signing key failed"),
        }
    }

    async fn purge(&self) {
        match self.use_cases.purge_expired.execute().await {
            Ok(purged) => tracing::debug!(rows = purged, "purged expired tokens"),
            Err(error) => tracing::warn!(error = %error, "purging expired tokens failed"),
        }
        match self.throttle.purge_expired(self.clock.now()).await {
            Ok(purged) => tracing::debug!(keys = purged, "purged idle login-throttle counters"),
            Err(error) => {
                tracing::warn!(error = %error, "purging login-throttle counters failed");
            }
        }
    }
}

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
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::{Listener, ListenerExt as _};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt as _;

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
/// Connections open at once. Each costs a task, a file descriptor and hyper's buffers (a few
/// KiB idle, up to about 400 KiB while reading a huge request head); at the cap the server
/// stops accepting until one closes, so further clients wait in the kernel's backlog instead
/// of costing memory. Far above the router's 512 requests in flight (`authgate_http`), since
/// most connections of keep-alive clients sit idle between requests. The file-descriptor
/// limit (`ulimit -n`) must exceed this plus the database pool, or accepting fails first
/// (logged and retried after a pause).
const MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to send a whole request head, counted from when the server
/// starts waiting for it: on a new connection, and again after each response on a keep-alive
/// connection. Progress does not extend it, so a client that trickles its headers
/// (slowloris) is cut off, and an idle keep-alive connection is closed, after this long.
/// Honest clients send a head in one round trip. hyper closes the connection without a
/// response; once the head is in, the router's request timeout bounds the rest, and the TLS
/// handshake before it has its own timeout (`tls.rs`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open, however busy. Nothing else bounds a client that reads
/// its responses slowly or not at all (no timeout covers writing a response), and a busy
/// client would otherwise hold its connection forever; at the limit the connection is closed
/// gracefully, which HTTP/1.1 clients handle by reconnecting.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long a connection asked to close (at [`MAX_CONNECTION_LIFETIME`]) may take to finish
/// the request in progress: as long as the router's own request timeout, so any request the
/// router would still answer is answered. Then the connection is dropped.
const CONNECTION_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
            bearer_lookup: repositories.bearer_lookup,
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
    /// Slow clients are bounded: a connection whose next request head is slow to arrive (an
    /// idle keep-alive connection included) is closed, every connection has a maximum
    /// lifetime, and the number of open connections is capped.
    ///
    /// # Errors
    ///
    /// None at present: failures to accept a connection are logged and retried after a
    /// pause, and a failing connection ends only itself.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Responses are small and latency-bound; Nagle's algorithm could only delay them.
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(error = %error, "could not set TCP_NODELAY");
            }
        });
        self.serve_on(listener, shutdown).await
    }

    /// Serves HTTPS on `listener` with `tls` (see [`crate::tls::load_server_config`]), like
    /// [`App::serve`]; each TLS handshake runs in its own task with a timeout.
    ///
    /// # Errors
    ///
    /// The bound address of `listener` cannot be read.
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
        serve_connections(listener, self.router, MAX_CONNECTIONS, shutdown).await;
        maintenance.abort();
        self.services.database.close().await;
        Ok(())
    }
}

/// Accepts connections from `listener` and serves `router` on each until `shutdown`
/// completes; then stops accepting, lets open connections finish their requests for up to
/// [`SHUTDOWN_GRACE`], and closes whatever is left.
///
/// This replaces `axum::serve`, which gives hyper no timer (so hyper's header-read timeout
/// is inert) and accepts connections without limit.
///
/// Invariant: at most `max_connections` connections are open at once, and each one is
/// closed at the latest [`HEADER_READ_TIMEOUT`] after it starts waiting for a request head,
/// or [`MAX_CONNECTION_LIFETIME`] plus [`CONNECTION_DRAIN_TIMEOUT`] after it was accepted.
/// A failing or panicking connection ends its own task only.
async fn serve_connections<L>(
    mut listener: L,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The permit is taken before accepting, so at the cap new clients wait in the kernel's
        // backlog (and give up there) instead of costing a task and buffers here. `Listener`
        // implementations retry accept errors themselves, with a pause for those that are not
        // about one connection (out of file descriptors), so this loop cannot spin.
        let accept = async {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed");
            let (io, peer) = listener.accept().await;
            (io, peer, permit)
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = connections.join_next() => report_connection_end(finished),
            (io, peer, permit) = accept => {
                let connection = serve_connection(io, peer, router.clone(), stopping.clone());
                connections.spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
        }
    }

    tracing::info!(
        connections = connections.len(),
        "shutdown requested; finishing in-flight requests"
    );
    // Closing the listening socket (for TLS: stopping its accept loop) makes new clients fail
    // at once instead of waiting unanswered in the backlog.
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(finished) = connections.join_next().await {
            report_connection_end(finished);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "in-flight requests did not finish in time; closing"
        );
        // Aborting drops the connections (closing their sockets) and their handlers, whose
        // database transactions roll back, before the caller closes the pool.
        connections.shutdown().await;
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it, it fails, or it times out;
/// once `stopping` turns true or the connection reaches [`MAX_CONNECTION_LIFETIME`], the
/// request in progress may finish within [`CONNECTION_DRAIN_TIMEOUT`] (at shutdown,
/// [`serve_connections`] cuts it off sooner, after [`SHUTDOWN_GRACE`]) and the connection is
/// closed.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tracing::trace!(client.address = %peer, "connection accepted");
    // Handlers and the login throttle read the client's address from this extension (axum's
    // `into_make_service_with_connect_info` used to insert it); without it every client
    // would share one anonymous throttling budget.
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);

    let ended = tokio::select! {
        result = connection.as_mut() => Some(result),
        _ = stopping.wait_for(|stop| *stop) => None,
        () = tokio::time::sleep(MAX_CONNECTION_LIFETIME) => None,
    };
    let result = match ended {
        Some(result) => result,
        None => {
            // No further request is read; the one in progress gets its response, with
            // `Connection: close`, and an idle connection closes at once.
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(CONNECTION_DRAIN_TIMEOUT, connection).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(client.address = %peer, "closing a connection that did not drain in time");
                    return;
                }
            }
        }
    };
    match result {
        Ok(()) => tracing::trace!(client.address = %peer, "connection closed"),
        // Timeouts, resets and malformed requests are the client's problem (hyper has already
        // answered what it could); debug level keeps floods out of the default log.
        Err(error) => {
            tracing::debug!(client.address = %peer, error = %error, "connection ended with an error");
        }
    }
}

/// Logs a connection task that panicked; the panic ends that connection only.
fn report_connection_end(finished: Result<(), JoinError>) {
    if let Err(error) = finished
        && error.is_panic()
    {
        tracing::error!(error = %error, "a connection task panicked");
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

#[cfg(test)]
mod tests {
    //! The accept loop and connection handling over in-memory streams, in paused time, so the
    //! timeouts are checked to the second without waiting for them.

    use std::io;
    use std::net::{IpAddr, Ipv4Addr};

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    use super::*;

    /// The address every test connection comes from.
    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40_000);
    /// A keep-alive request for `/`.
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

    /// Connections a test opens, handed to the server as if accepted from [`PEER`].
    struct TestListener(mpsc::UnboundedReceiver<DuplexStream>);

    impl Listener for TestListener {
        type Io = DuplexStream;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (DuplexStream, SocketAddr) {
            match self.0.recv().await {
                Some(io) => (io, PEER),
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)))
        }
    }

    /// [`serve_connections`] over a [`TestListener`], with a router whose `/slow` takes 5 s,
    /// `/hang` never answers, `/large` answers 1 MiB and `/panic` panics.
    struct TestServer {
        connections: mpsc::UnboundedSender<DuplexStream>,
        /// Receives one message each time `/slow` or `/hang` starts.
        entered: mpsc::UnboundedReceiver<()>,
        shutdown: Option<oneshot::Sender<()>>,
        stopped: JoinHandle<()>,
    }

    impl TestServer {
        fn start(max_connections: usize) -> Self {
            let (connections, incoming) = mpsc::unbounded_channel();
            let (entered_tx, entered) = mpsc::unbounded_channel();
            let (shutdown, shutdown_rx) = oneshot::channel::<()>();
            let slow_entered = entered_tx.clone();
            let router =
                Router::new()
                    .route("/", get(|| async { "ok" }))
                    .route(
                        "/peer",
                        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                            peer.to_string()
                        }),
                    )
                    .route(
                        "/slow",
                        get(move || async move {
                            let _ = slow_entered.send(());
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            "slow"
                        }),
                    )
                    .route(
                        "/hang",
                        get(move || async move {
                            let _ = entered_tx.send(());
                            std::future::pending::<&'static str>().await
                        }),
                    )
                    .route("/large", get(|| async { "x".repeat(1 << 20) }))
                    .route(
                        "/panic",
                        get(|| async { panic!("a handler bug") as &'static str }),
                    );
            let stopped = tokio::spawn(serve_connections(
                TestListener(incoming),
                router,
                max_connections,
                async move {
                    let _ = shutdown_rx.await;
                },
            ));
            Self {
                connections,
                entered,
                shutdown: Some(shutdown),
                stopped,
            }
        }

        /// Opens a connection; the server accepts it when it next accepts.
        fn connect(&self) -> DuplexStream {
            let (client, server) = tokio::io::duplex(64 * 1024);
            self.connections.send(server).expect("the server runs");
            client
        }

        fn signal_shutdown(&mut self) {
            let _ = self.shutdown.take().expect("not signalled yet").send(());
        }
    }

    /// Reads one response (its body sized by `Content-Length`), lower-cased; `None` if the
    /// connection closes first.
    async fn read_response(client: &mut DuplexStream) -> Option<String> {
        let mut received = Vec::new();
        loop {
            if let Some(head_end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |length| length.trim().parse().expect("a length"));
                if received.len() >= head_end + 4 + length {
                    return Some(String::from_utf8_lossy(&received).to_ascii_lowercase());
                }
            }
            let mut buffer = [0; 16 * 1024];
            match client.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    }

    /// Whether the server has closed the connection, waiting as long as it takes.
    async fn closed(client: &mut DuplexStream) -> bool {
        let mut buffer = [0; 1024];
        matches!(client.read(&mut buffer).await, Ok(0) | Err(_))
    }

    #[track_caller]
    fn assert_ok(response: Option<&String>) {
        assert!(
            response.is_some_and(|response| response.starts_with("http/1.1 200")),
            "{response:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn handlers_see_the_client_address_as_connect_info() {
        let server = TestServer::start(8);
        let mut client = server.connect();

        client
            .write_all(b"GET /peer HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut client).await;

        assert_ok(response.as_ref());
        assert!(
            response.is_some_and(|response| response.ends_with("\r\n\r\n192.0.2.7:40000")),
            "the handler saw another address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_trickles_its_request_head_is_cut_off_after_the_header_read_timeout() {
        let server = TestServer::start(8);
        let mut client = server.connect();
        let started = Instant::now();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();

        // One more header line every second: progress, but never the end of the head.
        let mut lines_sent = 0;
        let mut buffer = [0; 1024];
        let read = loop {
            tokio::select! {
                read = client.read(&mut buffer) => break read,
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if client.write_all(b"X-Slow: 1\r\n").await.is_ok() {
                        lines_sent += 1;
                    }
                }
            }
        };

        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(
            (HEADER_READ_TIMEOUT..HEADER_READ_TIMEOUT + Duration::from_secs(1))
                .contains(&started.elapsed()),
            "closed after {:?}",
            started.elapsed()
        );
        assert!(lines_sent >= 9, "{lines_sent}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
        let server = TestServer::start(8);
        let mut client = server.connect();
        let started = Instant::now();

        let closed = closed(&mut client).await;

        assert!(closed);
        assert!(
            (HEADER_READ_TIMEOUT..HEADER_READ_TIMEOUT + Duration::from_secs(1))
                .contains(&started.elapsed()),
            "closed after {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
        let server = TestServer::start(8);
        let mut client = server.connect();
        client.write_all(GET).await.unwrap();
        let first = read_response(&mut client).await;
        let idle_since = Instant::now();

        let closed = closed(&mut client).await;

        assert_ok(first.as_ref());
        assert!(
            first.is_some_and(|first| !first.contains("connection: close")),
            "kept alive"
        );
        assert!(closed);
        assert!(
            (HEADER_READ_TIMEOUT..HEADER_READ_TIMEOUT + Duration::from_secs(1))
                .contains(&idle_since.elapsed()),
            "closed after {:?} idle",
            idle_since.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_connection_cap_the_next_connection_waits_until_one_closes() {
        let server = TestServer::start(1);
        let first = server.connect();
        let mut second = server.connect();
        second.write_all(GET).await.unwrap();

        let mut buffer = [0; 1];
        let while_full =
            tokio::time::timeout(Duration::from_secs(5), second.read(&mut buffer)).await;
        drop(first);
        let after = read_response(&mut second).await;

        assert!(
            while_full.is_err(),
            "the second connection was served while the first held the only slot"
        );
        assert_ok(after.as_ref());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_closed_at_its_maximum_lifetime() {
        let server = TestServer::start(8);
        let mut client = server.connect();
        let started = Instant::now();

        // A request every 9 s, so the header-read timeout never closes the connection, for
        // up to twice the lifetime.
        let mut answered = 0;
        let mut closed_after = None;
        while started.elapsed() < 2 * MAX_CONNECTION_LIFETIME {
            client.write_all(GET).await.unwrap();
            assert_ok(read_response(&mut client).await.as_ref());
            answered += 1;
            let mut buffer = [0; 1];
            if tokio::time::timeout(Duration::from_secs(9), client.read(&mut buffer))
                .await
                .is_ok()
            {
                closed_after = Some(started.elapsed());
                break;
            }
        }

        assert!(
            closed_after.is_some_and(|closed_after| (MAX_CONNECTION_LIFETIME
                ..MAX_CONNECTION_LIFETIME + Duration::from_secs(1))
                .contains(&closed_after)),
            "closed after {closed_after:?}"
        );
        assert!(answered > 30, "{answered}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_its_response_frees_its_slot_after_lifetime_and_drain() {
        let server = TestServer::start(1);
        let mut stuck = server.connect();
        stuck
            .write_all(b"GET /large HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut waiting = server.connect();
        waiting.write_all(GET).await.unwrap();
        let started = Instant::now();
        let expected = MAX_CONNECTION_LIFETIME + CONNECTION_DRAIN_TIMEOUT;

        let response = tokio::time::timeout(2 * expected, read_response(&mut waiting))
            .await
            .ok()
            .flatten();

        assert_ok(response.as_ref());
        assert!(
            (expected..expected + Duration::from_secs(1)).contains(&started.elapsed()),
            "served after {:?}",
            started.elapsed()
        );
        drop(stuck);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_handler_ends_its_connection_only() {
        let server = TestServer::start(8);
        let mut panicking = server.connect();
        panicking
            .write_all(b"GET /panic HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();

        let panicked = read_response(&mut panicking).await;
        let mut next = server.connect();
        next.write_all(GET).await.unwrap();
        let after = read_response(&mut next).await;

        assert!(panicked.is_none(), "{panicked:?}");
        assert_ok(after.as_ref());
    }

    #[tokio::test(start_paused = true)]
    async fn on_shutdown_idle_connections_close_at_once_and_requests_in_progress_finish() {
        let mut server = TestServer::start(8);
        let mut idle = server.connect();
        idle.write_all(GET).await.unwrap();
        assert_ok(read_response(&mut idle).await.as_ref());
        let mut busy = server.connect();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        server.entered.recv().await.unwrap();
        let signalled = Instant::now();

        server.signal_shutdown();
        let idle_closed = closed(&mut idle).await;
        let idle_closed_after = signalled.elapsed();
        let slow = read_response(&mut busy).await;
        let busy_closed = closed(&mut busy).await;
        server.stopped.await.unwrap();

        assert!(idle_closed);
        assert_eq!(idle_closed_after, Duration::ZERO);
        assert_ok(slow.as_ref());
        assert!(
            slow.is_some_and(|slow| slow.contains("connection: close")),
            "the last response announces the close"
        );
        assert!(busy_closed);
        assert!(
            signalled.elapsed() < SHUTDOWN_GRACE,
            "stopped after {:?}",
            signalled.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_shutdown_connections_still_busy_after_the_grace_are_closed() {
        let mut server = TestServer::start(8);
        let mut hung = server.connect();
        hung.write_all(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        server.entered.recv().await.unwrap();
        let signalled = Instant::now();

        server.signal_shutdown();
        server.stopped.await.unwrap();
        let stopped_after = signalled.elapsed();
        let hung_closed = closed(&mut hung).await;

        assert!(
            (SHUTDOWN_GRACE..SHUTDOWN_GRACE + Duration::from_secs(1)).contains(&stopped_after),
            "stopped after {stopped_after:?}"
        );
        assert!(hung_closed);
    }

    #[tokio::test(start_paused = true)]
    async fn after_shutdown_no_connection_is_accepted() {
        let mut server = TestServer::start(8);

        server.signal_shutdown();
        server.stopped.await.unwrap();
        let refused = server.connections.send(tokio::io::duplex(1024).1).is_err();

        assert!(refused, "the listener was not dropped");
    }
}

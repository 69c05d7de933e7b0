//! Test harness: the real `App` on an ephemeral port over a throwaway database, an HTTP client,
//! and builders for the requests most tests make.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authgate::{App, Argon2Config, Config, Overrides, Secret, SystemClock};
use authgate_application::ports::Clock;
use authgate_application::testing::FixedClock;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The bootstrap administrator's password in every test app.
pub const ADMIN_PASSWORD: &str = "root-passphrase-for-tests-only";
/// A password that satisfies the default policy for any test username.
pub const GOOD_PASSWORD: &str = "violet-kettle-harbour-42";

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A throwaway database in the PostgreSQL cluster at this server URL.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when `AUTHGATE_TEST_POSTGRES_URL` is set; otherwise prints a visible skip line.
    pub fn postgres(test: &str) -> Option<Self> {
        match std::env::var("AUTHGATE_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Postgres(url)),
            _ => {
                eprintln!("SKIP {test} on postgres: AUTHGATE_TEST_POSTGRES_URL is not set");
                None
            }
        }
    }
}

/// Generates one `#[tokio::test]` per backend for each named `async fn name(backend: Backend)`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) = $crate::helpers::Backend::postgres(stringify!($name)) {
                        super::$name(backend).await;
                    }
                }
            }
        )*
    };
}
pub(crate) use backend_tests;

/// A database that exists for one test.
pub struct TempDatabase {
    /// The URL the app connects to.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TempDatabase {
    /// Creates an empty database on `backend`.
    pub async fn create(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("authgate.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres(server_url) => {
                use sqlx::Connection as _;
                let name = format!("authgate_test_{}", uuid::Uuid::new_v4().simple());
                let mut connection = sqlx::PgConnection::connect(server_url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut connection)
                    .await
                    .expect("create test database");
                let _ = connection.close().await;
                let (base, _) = server_url
                    .rsplit_once('/')
                    .expect("URL with a database name");
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }
}

/// A running authgate.
pub struct TestApp {
    /// `http://addr`.
    pub base: String,
    /// The clock the app reads; advance it to expire tokens.
    pub clock: Arc<FixedClock>,
    /// The database it runs on.
    pub db: TempDatabase,
    /// A client that follows no redirects.
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The configuration tests run with: SPEC defaults, cheap Argon2, a known admin password.
pub fn test_config(addr: SocketAddr, database_url: String) -> Config {
    let mut config = Config::defaults(addr, database_url);
    config.argon2 = Argon2Config {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    config.admin_password = Some(Secret::new(ADMIN_PASSWORD.to_owned()));
    config.db_max_connections = 5;
    config
}

/// Starts authgate on SQLite with the test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |_| {}).await
}

/// Starts authgate on `backend`, after `adjust` has changed the test configuration.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let db = TempDatabase::create(&backend).await;
    let mut config = test_config(addr, db.url.clone());
    adjust(&mut config);
    // Real time as the starting point, so the tokens also satisfy independent verifiers.
    let clock = Arc::new(FixedClock::at_unix(SystemClock.now().unix()));
    let app = App::build(config.clone(), Overrides::clock(clock.clone()))
        .await
        .expect("app builds");
    let (shutdown, stopped) = oneshot::channel();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        base: format!("http://{addr}"),
        clock,
        db,
        client,
        shutdown: Some(shutdown),
    }
}

impl TestApp {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /token` with a form body given as pairs.
    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// A password grant.
    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.token(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ])
        .await
    }

    /// A successful password grant's JSON body.
    pub async fn login_ok(&self, username: &str, password: &str) -> Value {
        let response = self.login(username, password).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "login of {username} failed"
        );
        response.json().await.expect("json")
    }

    /// An access token of the bootstrap administrator (every scope).
    pub async fn admin_token(&self) -> String {
        access_token(&self.login_ok("admin", ADMIN_PASSWORD).await)
    }

    /// `GET path` with a bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Creates a user through the API with the given scopes (space-delimited).
    pub async fn create_user(&self, username: &str, scopes: &str) -> Response {
        let admin = self.admin_token().await;
        let scopes: Vec<&str> = scopes
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .collect();
        self.client
            .post(self.url("/users"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"username": username, "password": GOOD_PASSWORD, "scopes": scopes}))
            .send()
            .await
            .expect("request")
    }

    /// Moves the app's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// The `access_token` of a token response.
#[track_caller]
pub fn access_token(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The `refresh_token` of a token response.
#[track_caller]
pub fn refresh_token(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// Asserts an RFC 6749 §5.2 error response.
#[track_caller]
pub fn assert_oauth_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    expected: &str,
) {
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "status for {expected}: {body}"
    );
    assert_eq!(body["error"], expected, "{body}");
    assert_eq!(
        headers
            .get("cache-control")
            .map(|value| value.to_str().unwrap_or_default()),
        Some("no-store")
    );
}

/// Sends a response's status, headers and JSON body back together.
pub async fn parts(response: Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

//! Test helpers: the router over in-memory fakes, users seeded through the use cases, and
//! request builders and response readers for `router.oneshot(request)` tests.

use std::sync::Arc;
use std::time::Duration;

use authgate_application::ports::{HealthProbe, PasswordHasher, TokenSigner};
use authgate_application::testing::{
    FakeRefreshCodec, FakeSigner, FixedClock, InMemoryBearerLookup, InMemoryDenylist,
    InMemoryHealthProbe, InMemoryRefreshTokenStore, InMemoryUserRepository, InsecureHasher,
    SequentialIds,
};
use authgate_application::{CreateUserRequest, Ports, Settings, UseCases};
use authgate_domain::{Password, PasswordPolicy, ScopeSet, TokenPolicy};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::{AppState, HttpConfig, router};

/// The issuer of every test deployment.
pub(crate) const ISSUER: &str = "http://authgate.test";
/// A password every seeded user has; it satisfies the default policy.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The configuration of a default deployment: both grants, no CORS, no TLS.
pub(crate) fn config() -> HttpConfig {
    HttpConfig {
        trusted_proxies: Vec::new(),
        issuer: ISSUER.to_owned(),
        password_grant: true,
        refresh_grant: true,
        cors_origins: Vec::new(),
        hsts: false,
    }
}

/// Builds a [`TestApp`], replacing fakes where a test needs other behaviour.
pub(crate) struct TestAppBuilder {
    config: HttpConfig,
    hasher: Arc<dyn PasswordHasher>,
    signer: Arc<dyn TokenSigner>,
    health: Arc<dyn HealthProbe>,
}

impl TestAppBuilder {
    pub(crate) fn config(mut self, config: HttpConfig) -> Self {
        self.config = config;
        self
    }

    pub(crate) fn hasher(mut self, hasher: impl PasswordHasher + 'static) -> Self {
        self.hasher = Arc::new(hasher);
        self
    }

    pub(crate) fn signer(mut self, signer: impl TokenSigner + 'static) -> Self {
        self.signer = Arc::new(signer);
        self
    }

    pub(crate) fn health(mut self, health: Arc<dyn HealthProbe>) -> Self {
        self.health = health;
        self
    }

    pub(crate) fn build(self) -> TestApp {
        let users = Arc::new(InMemoryUserRepository::new());
        let denylist = Arc::new(InMemoryDenylist::new());
        let ports = Ports {
            throttle: std::sync::Arc::new(authgate_application::testing::UnlimitedThrottle),
            bearer_lookup: Arc::new(InMemoryBearerLookup::new(users.clone(), denylist.clone())),
            users,
            refresh_tokens: Arc::new(InMemoryRefreshTokenStore::new()),
            denylist,
            health: self.health,
            hasher: self.hasher,
            signer: self.signer,
            refresh_codec: Arc::new(FakeRefreshCodec::default()),
            clock: Arc::new(FixedClock::at_unix(1_700_000_000)),
            ids: Arc::new(SequentialIds::default()),
        };
        let settings = Settings {
            token_policy: TokenPolicy::new(
                ISSUER.to_owned(),
                "authgate".to_owned(),
                Duration::from_secs(900),
                Duration::from_secs(14 * 86_400),
            ),
            password_policy: PasswordPolicy::default(),
            refresh_reuse_grace: Duration::from_secs(10),
            issue_refresh_tokens: self.config.refresh_grant,
            decoy_hash: InsecureHasher::hash_of("a decoy nobody will ever type"),
        };
        let use_cases = Arc::new(UseCases::new(ports, settings));
        let state = AppState {
            use_cases: use_cases.clone(),
            config: Arc::new(self.config),
        };
        TestApp {
            router: router(state),
            use_cases,
        }
    }
}

/// The service over fakes, and the use cases behind it for arranging state.
pub(crate) struct TestApp {
    router: Router,
    pub(crate) use_cases: Arc<UseCases>,
}

impl TestApp {
    pub(crate) fn builder() -> TestAppBuilder {
        TestAppBuilder {
            config: config(),
            hasher: Arc::new(InsecureHasher::default()),
            signer: Arc::new(FakeSigner::default()),
            health: Arc::new(InMemoryHealthProbe::new()),
        }
    }

    /// A default deployment with no users.
    pub(crate) fn new() -> Self {
        Self::builder().build()
    }

    /// A default deployment with `admin` (every scope) and `alice` (the default scopes).
    pub(crate) async fn with_users() -> Self {
        let app = Self::new();
        app.add_user("admin", ScopeSet::all()).await;
        app.add_user("alice", ScopeSet::default_for_new_user())
            .await;
        app
    }

    /// Creates `username` with [`PASSWORD`] and `scopes`.
    pub(crate) async fn add_user(&self, username: &str, scopes: ScopeSet) {
        let request = CreateUserRequest {
            username: username.to_owned(),
            password: Password::new(PASSWORD.to_owned()),
            email: None,
            full_name: None,
            scopes: Some(scopes),
        };
        self.use_cases
            .create_user
            .execute(request)
            .await
            .expect("seed user");
    }

    /// Logs `username` in with `scope` (empty: all they may have) and returns the access token.
    pub(crate) async fn token(&self, username: &str, scope: &str) -> String {
        let response = self
            .send(form(
                "/token",
                &[
                    ("grant_type", "password"),
                    ("username", username),
                    ("password", PASSWORD),
                    ("scope", scope),
                ],
            ))
            .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "login of {username}: {}",
            response.text()
        );
        response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

/// A buffered response.
pub(crate) struct TestResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl TestResponse {
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .expect("ASCII header")
    }

    /// Asserts an RFC 9457 problem document with this status and returns its `detail`.
    #[track_caller]
    pub(crate) fn assert_problem(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("content-type"), "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["status"], status.as_u16());
        assert_eq!(body["title"], status.canonical_reason().unwrap_or_default());
        body["detail"].as_str().expect("detail").to_owned()
    }

    /// Asserts an RFC 6749 §5.2 error with this status and code, and returns the body.
    #[track_caller]
    pub(crate) fn assert_oauth_error(&self, status: StatusCode, error: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("cache-control"), "no-store");
        assert_eq!(self.header("pragma"), "no-cache");
        let body = self.json();
        assert_eq!(body["error"], error, "{body}");
        body
    }
}

/// A form `POST` to `path`.
pub(crate) fn form(path: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    form_builder(path)
        .body(Body::from(encode(pairs)))
        .expect("request")
}

/// A form `POST` builder, for adding headers.
pub(crate) fn form_builder(path: &str) -> axum::http::request::Builder {
    Request::post(path).header(CONTENT_TYPE, "application/x-www-form-urlencoded")
}

/// Form-encodes `pairs`.
pub(crate) fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A request with an optional bearer token and an optional JSON body.
pub(crate) fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

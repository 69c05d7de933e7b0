//! Cross-cutting layers: admission control (load shedding and a request timeout), the body
//! limit in each family's shape, security headers, CORS, request tracing, and problem
//! documents for unknown routes and methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use authgate_application::SampledLog;
use authgate_application::ports::Clock;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    STRICT_TRANSPORT_SECURITY, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{
    DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, MakeSpan, TraceLayer,
};
use tracing::{Level, Span};

use crate::oauth_error::OAuthError;
use crate::problem::Problem;
use crate::{BODY_LIMIT_BYTES, HttpConfig};

/// How long browsers may cache a CORS preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);
/// HSTS lifetime: two years, the usual preload-list value.
const HSTS: &str = "max-age=63072000";

/// Requests in progress at once, across every endpoint. Each one costs a task, buffers and
/// perhaps a database connection; past this the server sheds load instead of queueing, so a
/// flood is answered `503` at once and memory stays bounded. Password hashing has its own,
/// much smaller, limit (SPEC §2), so logins can never take more than a sliver of these.
pub(crate) const MAX_IN_FLIGHT_REQUESTS: usize = 512;
/// How long the server works on one request, from its head being read (the body upload
/// included, since extractors read it inside the handler) to the response head. Far beyond
/// any honest request; it bounds what a client that trickles its body, or a stuck
/// dependency, can hold.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `path` is a token endpoint, whose errors use the OAuth shape.
fn is_token_endpoint(path: &str) -> bool {
    path == "/token" || path.starts_with("/token/")
}

/// Admission control for the whole router: at most `max_in_flight` requests at once, each
/// answered within `timeout`.
///
/// Invariant: requests never queue here. Unbounded queueing (tower's `ConcurrencyLimit` on
/// its own) would turn a flood into growing memory and ever-later answers; instead an
/// excess request is shed at once with `503` and `Retry-After`, in its family's shape.
#[derive(Clone)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    timeout: Duration,
    /// A flood sheds thousands of requests a second: one warning a second says so.
    shed_log: Arc<SampledLog>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Admission")
            .field("available", &self.slots.available_permits())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Admits `max_in_flight` requests at once, each for at most `timeout`; `clock` paces the
    /// warnings about shed requests.
    pub(crate) fn new(max_in_flight: usize, timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            timeout,
            shed_log: Arc::default(),
            clock,
        }
    }
}

/// Runs the request if a slot is free and it finishes in time; otherwise `503` with
/// `Retry-After`, as `temporarily_unavailable` on the token endpoints and a problem elsewhere.
/// A timed-out handler is dropped: its database transaction, if any, rolls back.
pub(crate) async fn admit(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    let token_endpoint = is_token_endpoint(request.uri().path());
    let Ok(_slot) = admission.slots.try_acquire_owned() else {
        if let Some(left_out) = admission.shed_log.sample(admission.clock.now()) {
            tracing::warn!(
                http.path = request.uri().path(),
                shed.unlogged = left_out,
                "shedding requests: too many requests in progress"
            );
        }
        return unavailable(token_endpoint);
    };
    // A clone of the URI shares its bytes: nothing is copied unless the request times out.
    let uri = request.uri().clone();
    match tokio::time::timeout(admission.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(http.path = uri.path(), timeout = ?admission.timeout, "request timed out");
            unavailable(token_endpoint)
        }
    }
}

/// `503` with `Retry-After: 1` in the family's shape: the answer a busy password hasher
/// gives, since to the client it is the same condition.
fn unavailable(token_endpoint: bool) -> Response {
    if token_endpoint {
        OAuthError::TemporarilyUnavailable.into_response()
    } else {
        Problem::busy().into_response()
    }
}

/// Refuses a body declared larger than the limit before any handler runs, on every endpoint,
/// including those that never read a body. Undeclared (chunked) bodies are cut off by
/// `DefaultBodyLimit` when an extractor reads them, and the extractor answers in its family's shape.
pub(crate) async fn reject_oversized_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let limit = u64::try_from(BODY_LIMIT_BYTES).unwrap_or(u64::MAX);
    if declared.is_some_and(|length| length > limit) {
        return if is_token_endpoint(request.uri().path()) {
            OAuthError::PayloadTooLarge.into_response()
        } else {
            Problem::payload_too_large().into_response()
        };
    }
    next.run(request).await
}

/// Adds `X-Content-Type-Options: nosniff` to every response, `Strict-Transport-Security` when
/// TLS is on, and `Cache-Control: no-store` unless the handler chose otherwise: most responses
/// carry a token or user data, and failing closed is cheaper than remembering each one.
pub(crate) async fn security_headers(
    State(config): State<Arc<HttpConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if config.hsts {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

/// CORS for exactly the configured origins, or `None` (no CORS headers at all) when there are none.
pub(crate) fn cors(config: &HttpConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|origin| {
            // An origin never ends with a slash; tolerate one in the configuration.
            let origin = origin.trim().trim_end_matches('/');
            HeaderValue::from_str(origin)
                .inspect_err(|_| {
                    tracing::warn!(
                        cors.origin = origin,
                        "ignoring a CORS origin that is not a valid header value"
                    )
                })
                .ok()
        })
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE])
            .expose_headers([LOCATION, RETRY_AFTER, WWW_AUTHENTICATE])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// Request tracing whose spans hold the method and the path only: never the query string,
/// headers (the `Authorization` header above all) or bodies.
pub(crate) fn trace() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(DefaultOnRequest::new().level(Level::DEBUG))
        // One line per request at INFO cost ~7 % of `/users/me` throughput (BENCHMARKS.md);
        // security events (logins, refreshes, revocations, reuse) are logged at INFO by the
        // use cases, and `RUST_LOG=tower_http=debug` turns this access log on.
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        // tower-http would log every 5xx at ERROR: in a login storm, one line per `503`, which
        // cost about 12 % of the server's CPU. A `500` is logged with its cause where it
        // arises (`log_internal`); the rest belongs to the access log.
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
}

/// Makes the span of one request: `http.method` and `http.path`.
///
/// At DEBUG, under tower-http's target, so that it comes and goes with the access log
/// (`RUST_LOG=info,tower_http=debug`): the JSON formatter renders a span's fields when the
/// span is made, and at INFO that cost about 7 % of a `/users/me` request (BENCHMARKS.md).
/// The security events at INFO describe themselves without it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        tracing::debug_span!(
            target: "tower_http::trace",
            "http.request",
            http.method = %request.method(),
            http.path = request.uri().path()
        )
    }
}

/// `404` for a path no route matches.
pub(crate) async fn route_not_found() -> Problem {
    Problem::not_found("there is no endpoint at this path")
}

/// `405` for a known path with another method; axum adds the `Allow` header.
pub(crate) async fn method_not_allowed(method: Method) -> Problem {
    Problem::method_not_allowed(format!("this endpoint does not accept {method}"))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::header::{
        ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    };
    use axum::http::{Request, StatusCode};

    use super::*;
    use crate::test_support::{PASSWORD, TestApp, TestResponse, config, form, request};

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(authgate_application::testing::FixedClock::at_unix(
            1_700_000_000,
        ))
    }

    fn preflight(origin: &str) -> Request<Body> {
        Request::options("/token")
            .header(ORIGIN, origin)
            .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type",
            )
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn every_response_forbids_sniffing_and_caching_by_default() {
        let app = TestApp::new();

        for response in [
            app.send(get("/healthz")).await,
            app.send(get("/nowhere")).await,
            app.send(form("/token", &[])).await,
        ] {
            assert_eq!(response.header("x-content-type-options"), "nosniff");
            assert_eq!(response.header("cache-control"), "no-store");
            assert!(response.headers.get("strict-transport-security").is_none());
        }
    }

    #[tokio::test]
    async fn hsts_is_sent_when_tls_is_on() {
        let app = TestApp::builder()
            .config(HttpConfig {
                hsts: true,
                ..config()
            })
            .build();

        let response = app.send(get("/healthz")).await;

        assert_eq!(response.header("strict-transport-security"), HSTS);
    }

    #[tokio::test]
    async fn cors_is_off_by_default() {
        let app = TestApp::new();

        let preflight = app.send(preflight("https://app.example")).await;
        let simple = app
            .send(
                Request::get("/healthz")
                    .header(ORIGIN, "https://app.example")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        for response in [preflight, simple] {
            assert!(
                !response
                    .headers
                    .keys()
                    .any(|name| name.as_str().starts_with("access-control-")),
                "{:?}",
                response.headers
            );
        }
    }

    #[tokio::test]
    async fn a_token_preflight_from_an_allowed_origin_succeeds_and_others_get_nothing() {
        let config = HttpConfig {
            cors_origins: vec!["https://app.example/".to_owned()],
            ..config()
        };
        let app = TestApp::builder().config(config).build();

        let allowed = app.send(preflight("https://app.example")).await;
        let other = app.send(preflight("https://evil.example")).await;

        assert!(allowed.status.is_success(), "{}", allowed.status);
        assert_eq!(
            allowed.header("access-control-allow-origin"),
            "https://app.example"
        );
        assert!(
            allowed
                .header("access-control-allow-methods")
                .contains("POST")
        );
        let allowed_headers = allowed
            .header("access-control-allow-headers")
            .to_ascii_lowercase();
        assert!(
            allowed_headers.contains("authorization") && allowed_headers.contains("content-type")
        );
        assert!(other.headers.get("access-control-allow-origin").is_none());
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_problem() {
        let app = TestApp::new();

        app.send(get("/nowhere"))
            .await
            .assert_problem(StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_405_problem_with_allow() {
        let app = TestApp::new();

        let response = app.send(get("/token")).await;

        response.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.header("allow"), "POST");
    }

    #[tokio::test]
    async fn a_declared_oversized_body_is_413_in_each_family_s_shape_even_where_no_body_is_read() {
        let app = TestApp::new();
        let oversized = |method: &str, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .header(CONTENT_LENGTH, BODY_LIMIT_BYTES + 1)
                .body(Body::from(vec![b'x'; BODY_LIMIT_BYTES + 1]))
                .unwrap()
        };

        let token = app.send(oversized("POST", "/token/revoke")).await;
        let health = app.send(oversized("GET", "/healthz")).await;

        token.assert_oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
        health.assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    }

    mod admission {
        use std::sync::Arc;

        use axum::Router;
        use axum::routing;
        use tokio::sync::{Notify, mpsc};
        use tower::ServiceExt as _;

        use super::*;

        /// A router whose `/hold` and `/token/hold` report entering, then wait for `release`.
        fn holding_router(
            admission: Admission,
            entered: mpsc::UnboundedSender<()>,
            release: Arc<Notify>,
        ) -> Router {
            let hold = move || {
                let entered = entered.clone();
                let release = release.clone();
                async move {
                    let _ = entered.send(());
                    release.notified().await;
                    "released"
                }
            };
            Router::new()
                .route("/hold", routing::get(hold.clone()))
                .route("/token/hold", routing::post(hold))
                .layer(axum::middleware::from_fn_with_state(admission, admit))
        }

        async fn send(router: &Router, request: Request<Body>) -> TestResponse {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            TestResponse {
                status,
                headers,
                body,
            }
        }

        fn post_hold() -> Request<Body> {
            Request::post("/token/hold").body(Body::empty()).unwrap()
        }

        #[tokio::test]
        async fn a_request_beyond_the_limit_is_shed_at_once_with_503_and_retry_after_in_its_family_s_shape()
         {
            let (entered, mut entered_rx) = mpsc::unbounded_channel();
            let release = Arc::new(Notify::new());
            let router = holding_router(
                Admission::new(1, REQUEST_TIMEOUT, clock()),
                entered,
                release.clone(),
            );
            let holder = tokio::spawn({
                let router = router.clone();
                async move { send(&router, get("/hold")).await }
            });
            entered_rx.recv().await.unwrap();

            let shed_problem = send(&router, get("/hold")).await;
            let shed_oauth = send(&router, post_hold()).await;
            release.notify_one();
            let held = holder.await.unwrap();

            shed_problem.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(shed_problem.header("retry-after"), "1");
            shed_oauth
                .assert_oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
            assert_eq!(shed_oauth.header("retry-after"), "1");
            assert_eq!(held.status, StatusCode::OK);
        }

        #[tokio::test]
        async fn a_finished_request_frees_its_slot_for_the_next() {
            let (entered, mut entered_rx) = mpsc::unbounded_channel();
            let release = Arc::new(Notify::new());
            let router = holding_router(
                Admission::new(1, REQUEST_TIMEOUT, clock()),
                entered,
                release.clone(),
            );

            for _ in 0..3 {
                let request = tokio::spawn({
                    let router = router.clone();
                    async move { send(&router, get("/hold")).await }
                });
                entered_rx.recv().await.unwrap();
                release.notify_one();

                assert_eq!(request.await.unwrap().status, StatusCode::OK);
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_request_that_outlives_the_timeout_is_answered_503_in_its_family_s_shape() {
            let (entered, _entered_rx) = mpsc::unbounded_channel();
            let router = holding_router(
                Admission::new(4, REQUEST_TIMEOUT, clock()),
                entered,
                Arc::new(Notify::new()),
            );

            let problem = send(&router, get("/hold")).await;
            let oauth = send(&router, post_hold()).await;

            problem.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(problem.header("retry-after"), "1");
            oauth.assert_oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        }

        #[tokio::test(start_paused = true)]
        async fn timed_out_requests_give_their_slots_back() {
            let (entered, mut entered_rx) = mpsc::unbounded_channel();
            let router = holding_router(
                Admission::new(1, REQUEST_TIMEOUT, clock()),
                entered,
                Arc::new(Notify::new()),
            );

            let first = send(&router, get("/hold")).await;
            let second = send(&router, get("/hold")).await;

            assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
            let mut handler_runs = 0;
            while entered_rx.try_recv().is_ok() {
                handler_runs += 1;
            }
            assert_eq!(
                handler_runs, 2,
                "the second request ran until its own timeout instead of being shed"
            );
        }
    }

    #[tokio::test]
    async fn every_response_carrying_a_token_or_user_data_says_no_store() {
        let app = TestApp::with_users().await;
        let login = app
            .send(form(
                "/token",
                &[
                    ("grant_type", "password"),
                    ("username", "admin"),
                    ("password", PASSWORD),
                ],
            ))
            .await;
        let tokens = login.json();
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        let new_user = serde_json::json!({"username": "bob", "password": PASSWORD});

        let responses = [
            (
                "refresh",
                app.send(form(
                    "/token",
                    &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
                ))
                .await,
            ),
            (
                "introspect",
                app.send(
                    crate::test_support::form_builder("/token/introspect")
                        .header(AUTHORIZATION, format!("Bearer {access}"))
                        .body(Body::from(format!("token={access}")))
                        .unwrap(),
                )
                .await,
            ),
            (
                "me",
                app.send(request(Method::GET, "/users/me", Some(&access), None))
                    .await,
            ),
            (
                "create",
                app.send(request(
                    Method::POST,
                    "/users",
                    Some(&access),
                    Some(new_user),
                ))
                .await,
            ),
            (
                "list",
                app.send(request(Method::GET, "/users", Some(&access), None))
                    .await,
            ),
            (
                "one",
                app.send(request(Method::GET, "/users/alice", Some(&access), None))
                    .await,
            ),
            (
                "patch",
                app.send(request(
                    Method::PATCH,
                    "/users/alice",
                    Some(&access),
                    Some(serde_json::json!({"full_name": "Alice"})),
                ))
                .await,
            ),
        ];

        assert_eq!(login.status, StatusCode::OK);
        assert_eq!(login.header("cache-control"), "no-store");
        for (name, response) in responses {
            assert!(response.status.is_success(), "{name}: {}", response.status);
            assert_eq!(response.header("cache-control"), "no-store", "{name}");
        }
    }
}

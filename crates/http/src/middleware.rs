//! Cross-cutting layers: the body limit in each family's shape, security headers, CORS,
//! request tracing, and problem documents for unknown routes and methods.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    STRICT_TRANSPORT_SECURITY, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::{Level, Span};

use crate::oauth_error::OAuthError;
use crate::problem::Problem;
use crate::{BODY_LIMIT_BYTES, HttpConfig};

/// How long browsers may cache a CORS preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);
/// HSTS lifetime: two years, the usual preload-list value.
const HSTS: &str = "max-age=63072000";

/// Whether `path` is a token endpoint, whose errors use the OAuth shape.
fn is_token_endpoint(path: &str) -> bool {
    path == "/token" || path.starts_with("/token/")
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
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

/// Makes the span of one request: `http.method` and `http.path`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        tracing::info_span!("http.request", http.method = %request.method(), http.path = request.uri().path())
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
    use crate::test_support::{TestApp, config, form};

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
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
}

//! authgate's HTTP adapter: the axum router, extractors, wire types, error mapping, the
//! OpenAPI document and the Swagger UI.
//!
//! This crate translates; it decides nothing. A handler turns the request into the
//! arguments of a use case from `authgate-application`, calls it, and turns the outcome into
//! a response; the only checks made here bound hostile input (body size, credential lengths). It is the only crate that knows HTTP status codes, headers, forms and JSON.
//! It never touches a database, a hash or a signature itself, and it never reads the
//! configuration: the server crate hands it an [`HttpConfig`] built once at startup.
//!
//! Errors leave through exactly three shapes, one type each: [`OAuthError`] on the token
//! endpoints (RFC 6749 §5.2), [`BearerError`] for failed bearer authentication (RFC 6750 §3)
//! and [`Problem`] (RFC 9457) on every other JSON endpoint. A protected handler states its
//! scope once, as a type ([`RequireScope<UsersRead>`](RequireScope)); the marker's
//! [`ScopeMarker::NAME`] is what its OpenAPI `security` entry lists, and a test walks the
//! generated document to prove the two agree.

mod bearer;
mod client;
mod discovery;
mod extract;
mod form;
mod health;
mod middleware;
mod oauth_error;
mod openapi;
mod problem;
mod rfc3339;
mod token;
mod users;

#[cfg(test)]
mod test_support;

use std::sync::Arc;

use authgate_application::UseCases;
use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use bearer::{
    BearerError, ProfileRead, ProfileWrite, RequireScope, ScopeMarker, TokensIntrospect, UsersRead,
    UsersWrite,
};
pub use client::{IpNetwork, IpNetworkError};
pub use oauth_error::OAuthError;
pub use openapi::openapi;
pub use problem::Problem;

/// The largest request body accepted on any endpoint (SPEC §4); larger ones get `413`.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// What the HTTP layer needs to know about the deployment, decided once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The absolute base URL of this server, e.g. `http://127.0.0.1:8080`; the `iss` of its
    /// tokens and the base of every URL in the RFC 8414 metadata.
    pub issuer: String,
    /// Whether `grant_type=password` is enabled; a disabled grant answers
    /// `unsupported_grant_type`.
    pub password_grant: bool,
    /// Whether `grant_type=refresh_token` is enabled.
    pub refresh_grant: bool,
    /// Origins allowed to call the API from a browser; empty turns CORS off entirely
    /// (no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Whether responses carry `Strict-Transport-Security` (TLS is on).
    pub hsts: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed when throttling by client address.
    pub trusted_proxies: Vec<IpNetwork>,
}

/// What every handler can reach: the use cases and the HTTP configuration.
#[derive(Clone)]
pub struct AppState {
    /// Every use case, built over the real adapters (or over fakes in tests).
    pub use_cases: Arc<UseCases>,
    /// The deployment's HTTP settings.
    pub config: Arc<HttpConfig>,
}

/// The whole HTTP service: every endpoint of SPEC §2–§4, `/openapi.json`, the Swagger UI at
/// `/docs`, and the cross-cutting layers (body limit, admission control, security headers,
/// CORS, tracing).
pub fn router(state: AppState) -> Router {
    let (api, document) = openapi::api_router().split_for_parts();
    let routes = api
        .merge(openapi::swagger_ui(document))
        .fallback(middleware::route_not_found)
        // Must come after every route: it applies to the method routers registered so far.
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(
            middleware::reject_oversized_bodies,
        ))
        // Inside CORS, so preflights cost no slot and a shed request still carries CORS headers.
        .layer(axum::middleware::from_fn_with_state(
            middleware::Admission::new(
                middleware::MAX_IN_FLIGHT_REQUESTS,
                middleware::REQUEST_TIMEOUT,
                state.use_cases.clock.clone(),
            ),
            middleware::admit,
        ));
    let routes = match middleware::cors(&state.config) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.config.clone(),
            middleware::security_headers,
        ))
        .layer(middleware::trace())
        .with_state(state)
}

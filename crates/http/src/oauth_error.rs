//! RFC 6749 §5.2 error responses: the error shape of the token endpoints.

use std::error::Error as StdError;

use axum::Json;
use axum::http::header::{CACHE_CONTROL, PRAGMA, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::log_internal;

/// A failure at `/token`, `/token/revoke` or `/token/introspect`, answered as RFC 6749 §5.2 JSON
/// with `Cache-Control: no-store`.
///
/// Invariant: descriptions are safe to show the client; internal causes are logged where
/// the error is made and never carried here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// `400 invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest(String),
    /// `400 invalid_grant`: the credentials or the refresh token are not valid.
    InvalidGrant(String),
    /// `400 invalid_scope`: the scope is unknown or exceeds what may be granted.
    InvalidScope(String),
    /// `400 unsupported_grant_type`: the grant is unknown or disabled on this server.
    UnsupportedGrantType,
    /// `413 invalid_request`: the body exceeds [`crate::BODY_LIMIT_BYTES`].
    PayloadTooLarge,
    /// `429 too_many_requests` with `Retry-After`: too many login attempts (SPEC §2 abuse limits).
    TooManyRequests {
        /// How long the client must wait.
        retry_after_seconds: u64,
    },
    /// `503 temporarily_unavailable` with `Retry-After: 1`: every hashing slot is busy.
    TemporarilyUnavailable,
    /// `500 server_error`: something failed inside; the cause is in the log.
    ServerError,
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_grant", "error_description": "invalid username or password"}))]
pub(crate) struct OAuthErrorBody {
    /// The RFC 6749 §5.2 error code, e.g. `invalid_request` or `invalid_grant`.
    error: &'static str,
    /// A human-readable explanation, when there is something safe to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error_description: Option<String>,
}

impl OAuthError {
    /// Logs `source` with what was being done and answers `500 server_error`.
    pub(crate) fn internal(doing: &str, source: &(dyn StdError + 'static)) -> Self {
        log_internal(doing, source);
        Self::ServerError
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let retry_after = match self {
            Self::TooManyRequests {
                retry_after_seconds,
            } => Some(retry_after_seconds),
            Self::TemporarilyUnavailable => Some(1),
            _ => None,
        };
        let (status, error, description) = match self {
            Self::InvalidRequest(why) => (StatusCode::BAD_REQUEST, "invalid_request", Some(why)),
            Self::InvalidGrant(why) => (StatusCode::BAD_REQUEST, "invalid_grant", Some(why)),
            Self::InvalidScope(why) => (StatusCode::BAD_REQUEST, "invalid_scope", Some(why)),
            Self::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                Some("the grant type is not supported by this server".to_owned()),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                Some("the request body must be at most 64 KiB".to_owned()),
            ),
            Self::TooManyRequests {
                retry_after_seconds,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                Some(format!(
                    "too many login attempts; retry in {retry_after_seconds} seconds"
                )),
            ),
            Self::TemporarilyUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                None,
            ),
            Self::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        let body = OAuthErrorBody {
            error,
            error_description: description,
        };
        // RFC 6749 §5.1 requires no-store on token responses; errors get it too so that no
        // cache ever keeps a response to a request that carried credentials.
        let mut response = (
            status,
            [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
            Json(body),
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttling_answers_429_with_retry_after_and_no_store() {
        let response = OAuthError::TooManyRequests {
            retry_after_seconds: 8,
        }
        .into_response();

        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "8");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "too_many_requests");
    }
}

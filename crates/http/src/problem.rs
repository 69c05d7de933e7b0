//! RFC 9457 problem details: the error shape of every JSON endpoint that is not a token endpoint.

use std::error::Error as StdError;

use authgate_application::{ChangePasswordError, UserAdminError};
use axum::Json;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of a problem document (RFC 9457 §3).
pub(crate) const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A client or server error on a JSON endpoint, answered as `application/problem+json`.
///
/// Invariant: `detail` is safe to show the client; internal causes are logged where the
/// problem is made and never put here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    retry_after_seconds: Option<u32>,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "no such user"
}))]
pub(crate) struct ProblemBody {
    /// Always `about:blank`: the status code and `detail` say everything (RFC 9457 §4.2.1).
    #[serde(rename = "type")]
    problem_type: &'static str,
    /// The reason phrase of `status`.
    title: &'static str,
    /// The HTTP status code, repeated for clients that lose it.
    status: u16,
    /// What went wrong, naming the offending field or rule.
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after_seconds: None,
        }
    }

    /// `400`: the request is malformed (bad JSON, bad query string, wrong current password).
    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// `404`: the resource or route does not exist.
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// `405`: the route exists but not with this method.
    pub(crate) fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, detail)
    }

    /// `409`: the request conflicts with the stored state.
    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// `413`: the body exceeds [`crate::BODY_LIMIT_BYTES`].
    pub(crate) fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body must be at most 64 KiB",
        )
    }

    /// `415`: the body is not of the one accepted media type.
    pub(crate) fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail)
    }

    /// `422`: the body is well-formed but a field is invalid; `detail` names the field or rule.
    pub(crate) fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// `503` with `Retry-After: 1`: every password-hashing slot is busy.
    pub(crate) fn busy() -> Self {
        Self {
            retry_after_seconds: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy; retry shortly",
            )
        }
    }

    /// `429`: too many failed attempts; retry after the given number of seconds.
    pub(crate) fn too_many_requests(retry_after_seconds: u32) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed attempts; retry later",
            )
        }
    }

    /// `500`: logs `source` with what was being done, and tells the client nothing more.
    pub(crate) fn internal(doing: &str, source: &(dyn StdError + 'static)) -> Self {
        log_internal(doing, source);
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "an internal error occurred",
        )
    }

    /// The status code this problem is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            problem_type: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<UserAdminError> for Problem {
    fn from(error: UserAdminError) -> Self {
        match error {
            UserAdminError::InvalidUsername(_)
            | UserAdminError::InvalidProfile(_)
            | UserAdminError::WeakPassword(_) => Self::unprocessable(error.to_string()),
            UserAdminError::UsernameTaken | UserAdminError::LastAdministrator => {
                Self::conflict(error.to_string())
            }
            UserAdminError::NotFound => Self::not_found(error.to_string()),
            UserAdminError::Busy => Self::busy(),
            UserAdminError::Internal(source) => {
                Self::internal("user administration", source.as_ref())
            }
        }
    }
}

impl From<ChangePasswordError> for Problem {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            ChangePasswordError::WrongPassword => Self::bad_request(error.to_string()),
            ChangePasswordError::UnknownUser => Self::not_found(error.to_string()),
            ChangePasswordError::Weak(_) => Self::unprocessable(error.to_string()),
            ChangePasswordError::Throttled { retry_after } => {
                Self::too_many_requests(u32::try_from(retry_after.as_secs()).unwrap_or(u32::MAX))
            }
            ChangePasswordError::Busy => Self::busy(),
            ChangePasswordError::Internal(source) => {
                Self::internal("changing a password", source.as_ref())
            }
        }
    }
}

/// Logs an internal failure once, with its whole chain of causes, where it is still known.
pub(crate) fn log_internal(doing: &str, source: &(dyn StdError + 'static)) {
    let mut causes = source.to_string();
    let mut next = source.source();
    while let Some(cause) = next {
        causes.push_str(": ");
        causes.push_str(&cause.to_string());
        next = cause.source();
    }
    tracing::error!(error = %causes, "{doing} failed");
}

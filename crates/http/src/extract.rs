//! Extractors for the JSON endpoints whose rejections are problem documents, never plain text.

use std::error::Error as StdError;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON request body: `415` for another media type, `400` for malformed JSON, `422` naming
/// the field for a missing, unknown or mistyped one, `413` beyond the body limit.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        // The innermost cause is serde_path_to_error's "field.path: what is wrong", which names the field.
        JsonRejection::JsonDataError(error) => Problem::unprocessable(cause(&error)),
        JsonRejection::JsonSyntaxError(error) => {
            Problem::bad_request(format!("the body is not valid JSON: {}", cause(&error)))
        }
        JsonRejection::MissingJsonContentType(_) => {
            Problem::unsupported_media_type("the request body must be application/json")
        }
        JsonRejection::BytesRejection(error) => body_problem(&error),
        _ => Problem::bad_request("the request body could not be read"),
    }
}

fn body_problem(rejection: &BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::payload_too_large()
    } else {
        Problem::bad_request("the request body could not be read")
    }
}

/// The message of the innermost cause: axum's own wrappers only add a generic prefix.
fn cause(error: &(dyn StdError + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// A path parameter; a malformed one (bad percent-encoding) is a `400` problem.
pub(crate) struct PathParam<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| {
                Problem::bad_request(format!("invalid path parameter: {}", cause(&rejection)))
            })
    }
}

/// A query string; an undecodable one (e.g. a parameter sent twice) is a `400` problem.
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| {
                Problem::bad_request(format!("invalid query string: {}", cause(&rejection)))
            })
    }
}

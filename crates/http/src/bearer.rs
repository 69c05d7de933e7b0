//! Bearer authentication (RFC 6750): the `RequireScope<S>` extractor, its scope markers and
//! the 401/403 responses with their exact `WWW-Authenticate` challenges.

use std::marker::PhantomData;

use authgate_application::{AuthenticationError, Principal};
use authgate_domain::Scope;
use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::log_internal;

/// The realm of every challenge (RFC 6750 §3).
const REALM: &str = "authgate";

/// A scope a protected handler requires, as a type, so that one declaration drives both the
/// check ([`RequireScope`]) and the documentation (`security(("oauth2" = [Marker::NAME]))`).
pub trait ScopeMarker: Send + Sync + 'static {
    /// The scope the request must carry.
    const SCOPE: Scope;
    /// The scope's wire name, usable where a `const` string is needed (OpenAPI attributes).
    const NAME: &'static str = Self::SCOPE.as_str();
}

macro_rules! scope_markers {
    ($($(#[$doc:meta])* $marker:ident => $scope:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $marker;

        impl ScopeMarker for $marker {
            const SCOPE: Scope = Scope::$scope;
        }
    )*};
}

scope_markers! {
    /// Requires `profile:read`.
    ProfileRead => ProfileRead;
    /// Requires `profile:write`.
    ProfileWrite => ProfileWrite;
    /// Requires `users:read`.
    UsersRead => UsersRead;
    /// Requires `users:write`.
    UsersWrite => UsersWrite;
    /// Requires `tokens:introspect`.
    TokensIntrospect => TokensIntrospect;
}

/// An authenticated caller holding the scope `S`; extracting it answers 401 or 403 otherwise.
///
/// Invariant: the principal's token verified, its user exists, is enabled, has not changed
/// their password since, and `principal.has_scope(S::SCOPE)`.
pub struct RequireScope<S> {
    principal: Principal,
    // `fn() -> S` keeps the extractor `Send + Sync` whatever `S` is.
    scope: PhantomData<fn() -> S>,
}

impl<S> RequireScope<S> {
    /// The authenticated caller.
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The authenticated caller, by value.
    #[must_use]
    pub fn into_principal(self) -> Principal {
        self.principal
    }
}

impl<S: ScopeMarker> FromRequestParts<AppState> for RequireScope<S> {
    type Rejection = BearerError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let principal = state
            .use_cases
            .authenticate
            .execute(token)
            .await
            .map_err(BearerError::from)?;
        if !principal.has_scope(S::SCOPE) {
            return Err(BearerError::InsufficientScope(S::SCOPE));
        }
        Ok(Self {
            principal,
            scope: PhantomData,
        })
    }
}

/// The token of the request's one `Authorization: Bearer` header (scheme case-insensitive,
/// RFC 9110 §11.1).
fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(BearerError::MissingCredentials);
    };
    let value = value
        .to_str()
        .map_err(|_| BearerError::MissingCredentials)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(BearerError::MissingCredentials)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(BearerError::MissingCredentials);
    }
    Ok(token)
}

/// Why a protected request was refused (RFC 6750 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// `401`: no bearer token was presented.
    MissingCredentials,
    /// `401 invalid_token`: the token is malformed, badly signed, expired, revoked, or its user
    /// may no longer use it; the description says which.
    InvalidToken(String),
    /// `403 insufficient_scope`: the token lacks this scope.
    InsufficientScope(Scope),
    /// `500`: authentication could not be completed; the cause is in the log.
    ServerError,
}

/// The body of a failed bearer authentication (RFC 6750 §3).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "insufficient_scope", "error_description": "this request needs the scope 'users:read'"}))]
pub(crate) struct BearerErrorBody {
    /// `unauthorized`, `invalid_token`, `insufficient_scope` or `server_error`.
    error: &'static str,
    /// What went wrong.
    error_description: String,
}

impl From<AuthenticationError> for BearerError {
    fn from(error: AuthenticationError) -> Self {
        match error {
            AuthenticationError::Format(_) | AuthenticationError::Rejected(_) => {
                Self::InvalidToken(error.to_string())
            }
            AuthenticationError::Internal(source) => {
                log_internal("bearer authentication", source.as_ref());
                Self::ServerError
            }
        }
    }
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, error, description, challenge) = match self {
            Self::MissingCredentials => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this request needs an access token: send 'Authorization: Bearer <token>'"
                    .to_owned(),
                Some(format!("Bearer realm=\"{REALM}\"")),
            ),
            Self::InvalidToken(why) => {
                let challenge = format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                    quotable(&why)
                );
                (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    why,
                    Some(challenge),
                )
            }
            Self::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this request needs the scope '{scope}'"),
                Some(format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
                )),
            ),
            Self::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "an internal error occurred".to_owned(),
                None,
            ),
        };
        let mut response = (
            status,
            Json(BearerErrorBody {
                error,
                error_description: description,
            }),
        )
            .into_response();
        if let Some(challenge) =
            challenge.and_then(|challenge| HeaderValue::try_from(challenge).ok())
        {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Keeps only the characters RFC 6750 §3 allows in a quoted `error_description`
/// (`%x20-21 / %x23-5B / %x5D-7E`): no quote, no backslash, printable ASCII.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|character| matches!(character, ' '..='~') && !matches!(character, '"' | '\\'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_scope_has_exactly_one_marker() {
        let markers = [
            ProfileRead::SCOPE,
            ProfileWrite::SCOPE,
            UsersRead::SCOPE,
            UsersWrite::SCOPE,
            TokensIntrospect::SCOPE,
        ];

        assert_eq!(markers, Scope::ALL);
        assert_eq!(UsersRead::NAME, "users:read");
    }

    #[test]
    fn descriptions_lose_characters_a_quoted_string_cannot_hold() {
        assert_eq!(quotable("a \"quoted\" \\ thing\u{e9}\n"), "a quoted  thing");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_count_as_no_credentials() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };

        assert_eq!(bearer_token(&headers("bEaReR abc.def")), Ok("abc.def"));
        assert_eq!(
            bearer_token(&headers("Basic Og==")),
            Err(BearerError::MissingCredentials)
        );
        assert_eq!(
            bearer_token(&headers("Bearer ")),
            Err(BearerError::MissingCredentials)
        );
        assert_eq!(
            bearer_token(&headers("Bearer")),
            Err(BearerError::MissingCredentials)
        );
        assert_eq!(
            bearer_token(&HeaderMap::new()),
            Err(BearerError::MissingCredentials)
        );
    }

    mod over_http {
        use axum::http::Method;

        use crate::test_support::{TestApp, form, request};

        use super::*;

        #[tokio::test]
        async fn a_request_without_credentials_gets_401_with_a_bare_challenge() {
            let app = TestApp::with_users().await;
            let basic = axum::http::Request::get("/users/me")
                .header(AUTHORIZATION, "Basic Og==")
                .body(axum::body::Body::empty())
                .unwrap();

            for response in [
                app.send(request(Method::GET, "/users/me", None, None))
                    .await,
                app.send(basic).await,
            ] {
                assert_eq!(response.status, StatusCode::UNAUTHORIZED);
                assert_eq!(
                    response.header("www-authenticate"),
                    "Bearer realm=\"authgate\""
                );
                assert_eq!(response.json()["error"], "unauthorized");
                assert!(response.json()["error_description"].is_string());
            }
        }

        #[tokio::test]
        async fn a_bad_token_gets_401_invalid_token_with_the_reason() {
            let app = TestApp::with_users().await;

            let response = app
                .send(request(
                    Method::GET,
                    "/users/me",
                    Some("forged.token"),
                    None,
                ))
                .await;

            assert_eq!(response.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                response.header("www-authenticate"),
                "Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"the token signature is invalid\""
            );
            assert_eq!(
                response.json(),
                serde_json::json!({"error": "invalid_token", "error_description": "the token signature is invalid"})
            );
        }

        #[tokio::test]
        async fn a_revoked_token_gets_401_invalid_token() {
            let app = TestApp::with_users().await;
            let token = app.token("alice", "").await;
            app.send(form("/token/revoke", &[("token", &token)])).await;

            let response = app
                .send(request(Method::GET, "/users/me", Some(&token), None))
                .await;

            assert_eq!(
                response.header("www-authenticate"),
                "Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"the token has been revoked\""
            );
        }

        #[tokio::test]
        async fn a_token_without_the_scope_gets_403_naming_the_scope() {
            let app = TestApp::with_users().await;
            let token = app.token("alice", "profile:read").await;

            let response = app
                .send(request(Method::GET, "/users", Some(&token), None))
                .await;

            assert_eq!(response.status, StatusCode::FORBIDDEN);
            assert_eq!(
                response.header("www-authenticate"),
                "Bearer realm=\"authgate\", error=\"insufficient_scope\", scope=\"users:read\""
            );
            assert_eq!(
                response.json(),
                serde_json::json!({"error": "insufficient_scope", "error_description": "this request needs the scope 'users:read'"})
            );
        }

        #[tokio::test]
        async fn a_scope_taken_from_the_user_stops_working_even_in_an_earlier_token() {
            let app = TestApp::with_users().await;
            let admin = app.token("admin", "").await;
            let alice = app.token("alice", "").await;

            let patch = serde_json::json!({"scopes": ["profile:write"]});
            app.send(request(
                Method::PATCH,
                "/users/alice",
                Some(&admin),
                Some(patch),
            ))
            .await;
            let response = app
                .send(request(Method::GET, "/users/me", Some(&alice), None))
                .await;

            assert_eq!(response.status, StatusCode::FORBIDDEN);
        }
    }
}

/// Fuzz-style properties of the `Authorization` parser: any header value is answered without a
/// panic, and only `Bearer <token>` (scheme in any case) yields a token.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn headers_with(values: &[HeaderValue]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, value.clone());
        }
        headers
    }

    /// "bearer" in any mix of cases.
    fn bearer_scheme() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<bool>(), 6).prop_map(|upper| {
            "bearer"
                .chars()
                .zip(upper)
                .map(|(letter, upper)| {
                    if upper {
                        letter.to_ascii_uppercase()
                    } else {
                        letter
                    }
                })
                .collect()
        })
    }

    /// An RFC 6750 §2.1 `b64token`.
    const B64TOKEN: &str = "[A-Za-z0-9._~+/-]{1,200}=*";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_header_value_is_answered_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let _ = bearer_token(&headers_with(&[value]));
            }
        }

        #[test]
        fn a_bearer_token_in_any_scheme_case_is_accepted_as_sent(scheme in bearer_scheme(), token in B64TOKEN) {
            let headers = headers_with(&[HeaderValue::from_str(&format!("{scheme} {token}")).unwrap()]);

            prop_assert_eq!(bearer_token(&headers), Ok(token.as_str()));
        }

        #[test]
        fn a_token_is_only_ever_taken_from_a_bearer_value(value in "[ -~\t]{0,120}") {
            let Ok(header) = HeaderValue::from_str(&value) else {
                return Ok(());
            };

            let headers = headers_with(&[header]);

            let parsed = bearer_token(&headers);

            if let Ok(token) = parsed {
                let (scheme, rest) = value.split_once(' ').unwrap();
                prop_assert!(scheme.eq_ignore_ascii_case("bearer"), "{value:?}");
                prop_assert_eq!(token, rest.trim());
                prop_assert!(!token.is_empty());
            } else {
                prop_assert_eq!(parsed, Err(BearerError::MissingCredentials));
            }
        }

        #[test]
        fn another_scheme_never_yields_a_token(scheme in "[A-Za-z]{1,12}", token in B64TOKEN) {
            prop_assume!(!scheme.eq_ignore_ascii_case("bearer"));
            let headers = headers_with(&[HeaderValue::from_str(&format!("{scheme} {token}")).unwrap()]);

            prop_assert_eq!(bearer_token(&headers), Err(BearerError::MissingCredentials));
        }

        #[test]
        fn two_authorization_headers_are_never_accepted(first in B64TOKEN, second in B64TOKEN) {
            let headers = headers_with(&[
                HeaderValue::from_str(&format!("Bearer {first}")).unwrap(),
                HeaderValue::from_str(&format!("Bearer {second}")).unwrap(),
            ]);

            prop_assert_eq!(bearer_token(&headers), Err(BearerError::MissingCredentials));
        }
    }
}

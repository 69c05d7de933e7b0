//! The token endpoints: `/token` (RFC 6749 §4.3 and §6), `/token/revoke` (RFC 7009) and
//! `/token/introspect` (RFC 7662).

use authgate_application::ports::RefreshToken;
use authgate_application::{
    ActiveToken, IssuedTokens, LoginError, LoginRequest, RefreshError, RefreshRequest, TokenKind,
    TokenTypeHint,
};
use authgate_domain::{ClientId, Password, PasswordPolicy, ScopeSet, Username};
use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::bearer::{BearerErrorBody, RequireScope, ScopeMarker, TokensIntrospect};
use crate::client::ClientAddress;
use crate::form::{self, FormParams, OAuthForm};
use crate::oauth_error::{OAuthError, OAuthErrorBody};
use crate::openapi::TAG_OAUTH;

/// A grant type this server knows (RFC 6749 §4.3 and §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum GrantType {
    /// The resource-owner password credentials grant.
    Password,
    /// The refresh-token grant.
    RefreshToken,
}

impl GrantType {
    /// The `grant_type` value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::RefreshToken => "refresh_token",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Password, Self::RefreshToken]
            .into_iter()
            .find(|grant| grant.as_str() == name)
    }

    /// The grants this deployment has enabled, in a stable order.
    pub(crate) fn enabled(state: &AppState) -> Vec<Self> {
        let config = &state.config;
        [
            (Self::Password, config.password_grant),
            (Self::RefreshToken, config.refresh_grant),
        ]
        .into_iter()
        .filter_map(|(grant, enabled)| enabled.then_some(grant))
        .collect()
    }
}

/// The parameters of `POST /token`. Parameters the grant does not use are ignored (RFC 6749 §3.1).
#[derive(ToSchema)]
pub(crate) struct TokenForm {
    /// Which grant: `password` or `refresh_token`.
    grant_type: GrantType,
    /// For `password`: the username (case-insensitive).
    #[schema(nullable = false, example = "alice")]
    username: Option<String>,
    /// For `password`: the password.
    #[schema(nullable = false, format = Password)]
    password: Option<String>,
    /// For `refresh_token`: the refresh token.
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    /// Space-delimited scopes; absent means all the user (or the refresh token's family) may have.
    #[schema(nullable = false, example = "profile:read profile:write")]
    scope: Option<String>,
    /// The client the tokens are for (`default` when absent); may instead come as the
    /// username of HTTP Basic (RFC 6749 §2.3.1), never both.
    #[schema(nullable = false)]
    client_id: Option<String>,
}

impl TokenForm {
    fn from_params(mut params: FormParams) -> Result<Self, OAuthError> {
        let grant_type = params
            .take("grant_type")
            .ok_or_else(|| missing("grant_type"))?;
        Ok(Self {
            grant_type: GrantType::parse(&grant_type).ok_or(OAuthError::UnsupportedGrantType)?,
            username: params.take("username"),
            password: params.take("password"),
            refresh_token: params.take("refresh_token"),
            scope: params.take("scope"),
            client_id: params.take("client_id"),
        })
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6IjEiLCJ0eXAiOiJhdCtqd3QifQ.e30.c2ln",
    "token_type": "bearer",
    "expires_in": 900,
    "refresh_token": "9Qf6y1Qe0q3l5XnZzv2y6m1YQ3nH3fJ0b2r7p8Xw4sU",
    "scope": "profile:read profile:write"
}))]
pub(crate) struct TokenResponse {
    /// The signed JWT access token (RFC 9068).
    access_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Lifetime of the access token, in seconds.
    expires_in: u64,
    /// The refresh token, when the refresh grant is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    /// The granted scopes, space-delimited.
    scope: String,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(tokens: IssuedTokens) -> Self {
        Self {
            access_token: tokens.access_token,
            token_type: "bearer",
            expires_in: tokens.expires_in.as_secs(),
            refresh_token: tokens.refresh_token.map(|token| token.expose().to_owned()),
            scope: tokens.scope.to_string(),
        }
    }
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        // RFC 6749 §5.1: a response carrying tokens must not be stored by any cache.
        (
            [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
            Json(self),
        )
            .into_response()
    }
}

/// Issue tokens.
///
/// The password grant trades a username and password for an access token and, when the refresh
/// grant is enabled, a refresh token. The refresh grant trades a refresh token for a new access
/// token and the next refresh token; the presented one is rotated out. An unknown username and
/// a wrong password get byte-identical answers.
#[utoipa::path(
    post,
    path = "/token",
    tag = TAG_OAUTH,
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens issued", body = TokenResponse,
            headers(("Cache-Control" = String, description = "no-store"), ("Pragma" = String, description = "no-cache"))),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `invalid_scope` or `unsupported_grant_type`",
            body = OAuthErrorBody),
        (status = 413, description = "The body exceeds 64 KiB", body = OAuthErrorBody),
        (status = 429, description = "`too_many_requests`: too many failed logins for this username or from this address; nothing was checked",
            body = OAuthErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: password hashing is at capacity", body = OAuthErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn issue_token(
    State(state): State<AppState>,
    client_address: ClientAddress,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<TokenResponse, OAuthError> {
    let form = TokenForm::from_params(params)?;
    if !GrantType::enabled(&state).contains(&form.grant_type) {
        return Err(OAuthError::UnsupportedGrantType);
    }
    match form.grant_type {
        GrantType::Password => password_grant(&state, client_address, &headers, form).await,
        GrantType::RefreshToken => refresh_grant(&state, &headers, form).await,
    }
}

async fn password_grant(
    state: &AppState,
    client_address: ClientAddress,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let username = form.username.ok_or_else(|| missing("username"))?;
    let password = form.password.ok_or_else(|| missing("password"))?;
    let client_id = client_id(headers, form.client_id)?;
    let scope = requested_scope(form.scope.as_deref())?;
    // No user can have a longer name or password, so these are refused before any hashing,
    // with exactly the answer a wrong password gets.
    if username.chars().count() > Username::MAX_LEN || password.len() > PasswordPolicy::MAX_BYTES {
        return Err(invalid_credentials());
    }
    let request = LoginRequest {
        username,
        password: Password::new(password),
        scope,
        client_id,
        client_address: client_address.0,
    };
    let tokens = state
        .use_cases
        .login
        .execute(request)
        .await
        .map_err(|error| match error {
            LoginError::InvalidCredentials => invalid_credentials(),
            LoginError::InvalidScope(why) => OAuthError::InvalidScope(why.to_string()),
            LoginError::Throttled { retry_after } => OAuthError::TooManyRequests {
                retry_after_seconds: retry_after.as_secs().max(1),
            },
            LoginError::Busy => OAuthError::TemporarilyUnavailable,
            LoginError::Internal(source) => {
                OAuthError::internal("the password grant", source.as_ref())
            }
        })?;
    Ok(tokens.into())
}

async fn refresh_grant(
    state: &AppState,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let refresh_token = form.refresh_token.ok_or_else(|| missing("refresh_token"))?;
    // The client id is validated like on the password grant, but the family already records
    // the client it was issued to, and the refresh use case takes none.
    client_id(headers, form.client_id)?;
    let scope = requested_scope(form.scope.as_deref())?;
    let request = RefreshRequest {
        refresh_token: RefreshToken::new(refresh_token),
        scope,
    };
    let tokens = state
        .use_cases
        .refresh
        .execute(request)
        .await
        .map_err(|error| match error {
            RefreshError::InvalidGrant => OAuthError::InvalidGrant(error.to_string()),
            RefreshError::InvalidScope(why) => OAuthError::InvalidScope(why.to_string()),
            RefreshError::Internal(source) => {
                OAuthError::internal("the refresh grant", source.as_ref())
            }
        })?;
    Ok(tokens.into())
}

fn missing(parameter: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("parameter '{parameter}' is required"))
}

/// The one answer for every failed password login, so none reveals which part was wrong.
fn invalid_credentials() -> OAuthError {
    OAuthError::InvalidGrant(LoginError::InvalidCredentials.to_string())
}

fn requested_scope(raw: Option<&str>) -> Result<Option<ScopeSet>, OAuthError> {
    raw.map(ScopeSet::parse)
        .transpose()
        .map_err(|why| OAuthError::InvalidScope(why.to_string()))
}

/// The client id from the body or from HTTP Basic, never both (RFC 6749 §2.3); `default` when
/// neither names one. An empty Basic username (Swagger UI sends `Basic Og==`) names none.
fn client_id(headers: &HeaderMap, from_body: Option<String>) -> Result<ClientId, OAuthError> {
    let from_header = basic_client_id(headers)?;
    let raw = match (from_body, from_header) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "send the client id either in the body or with HTTP Basic, not both".to_owned(),
            ));
        }
        (Some(id), None) | (None, Some(id)) => id,
        (None, None) => String::new(),
    };
    ClientId::parse(&raw).map_err(|why| OAuthError::InvalidRequest(why.to_string()))
}

/// The non-empty username of an `Authorization: Basic` header. The secret is ignored: clients
/// are not authenticated yet (SPEC §2).
fn basic_client_id(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let malformed = || {
        OAuthError::InvalidRequest("the Authorization header is not valid HTTP Basic".to_owned())
    };
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(malformed()),
    };
    let (scheme, credentials) = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidRequest(
            "only HTTP Basic is accepted on the token endpoint".to_owned(),
        ));
    }
    let decoded = STANDARD_PAD_INDIFFERENT
        .decode(credentials.trim())
        .map_err(|_| malformed())?;
    let (id, _secret) = decoded.split_at(
        decoded
            .iter()
            .position(|byte| *byte == b':')
            .ok_or_else(malformed)?,
    );
    // RFC 6749 §2.3.1: the id is form-encoded before it is put into the Basic credentials.
    let id = form::decode(id).map_err(|_| malformed())?;
    Ok(Some(id).filter(|id| !id.is_empty()))
}

/// The parameters of `POST /token/revoke` and `POST /token/introspect`.
#[derive(ToSchema)]
pub(crate) struct PresentedTokenForm {
    /// The token: an access token or a refresh token.
    token: String,
    /// `access_token` or `refresh_token`: which kind to try first. Other values are ignored.
    #[schema(nullable = false, example = "refresh_token")]
    token_type_hint: Option<String>,
}

impl PresentedTokenForm {
    fn from_params(mut params: FormParams) -> Result<Self, OAuthError> {
        Ok(Self {
            token: params.take("token").ok_or_else(|| missing("token"))?,
            token_type_hint: params.take("token_type_hint"),
        })
    }
}

/// Revoke a token.
///
/// A refresh token revokes its whole family; an access token is denied until it expires. The
/// answer is `200` whether or not the token was known (RFC 7009 §2.2).
#[utoipa::path(
    post,
    path = "/token/revoke",
    tag = TAG_OAUTH,
    request_body(content = PresentedTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or there was nothing to revoke"),
        (status = 400, description = "`invalid_request`: no `token`, or not a form body", body = OAuthErrorBody),
        (status = 413, description = "The body exceeds 64 KiB", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
    )
)]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    OAuthForm(params): OAuthForm,
) -> Result<StatusCode, OAuthError> {
    let form = PresentedTokenForm::from_params(params)?;
    let hint = match form.token_type_hint.as_deref() {
        Some("access_token") => Some(TokenTypeHint::AccessToken),
        Some("refresh_token") => Some(TokenTypeHint::RefreshToken),
        _ => None,
    };
    state
        .use_cases
        .revoke
        .execute(&form.token, hint)
        .await
        .map_err(|source| OAuthError::internal("revocation", source.as_ref()))?;
    Ok(StatusCode::OK)
}

/// An introspection answer (RFC 7662 §2.2): only `active` for a token that is not active.
#[derive(Serialize, ToSchema, Default)]
#[schema(example = json!({
    "active": true, "token_type": "access_token", "scope": "profile:read", "client_id": "default",
    "username": "alice", "sub": "6f1c7f9e-2d6b-4a8e-9a51-7d1f0c7f3b1a", "aud": "authgate",
    "iss": "http://127.0.0.1:8080", "exp": 1700000900, "iat": 1700000000, "jti": "0c5a3f0e4b7d4c1f"
}))]
pub(crate) struct IntrospectionResponse {
    /// Whether the token is currently valid.
    active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    token_type: Option<&'static str>,
    /// Scopes in force, space-delimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    scope: Option<String>,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// The user's login name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    username: Option<String>,
    /// The user's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sub: Option<String>,
    /// The audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    aud: Option<String>,
    /// The issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iss: Option<String>,
    /// Expiry, in seconds since the epoch (for a refresh token, the end of its family).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    exp: Option<i64>,
    /// Issue time, in seconds since the epoch (for a refresh token, the login that began its family).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iat: Option<i64>,
    /// The access token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    jti: Option<String>,
}

impl From<Option<ActiveToken>> for IntrospectionResponse {
    fn from(token: Option<ActiveToken>) -> Self {
        let Some(token) = token else {
            return Self::default();
        };
        Self {
            active: true,
            token_type: Some(match token.kind {
                TokenKind::AccessToken => "access_token",
                TokenKind::RefreshToken => "refresh_token",
            }),
            scope: Some(token.scope.to_string()),
            client_id: Some(token.client_id.to_string()),
            username: Some(token.username.to_string()),
            sub: Some(token.subject.to_string()),
            aud: Some(token.audience),
            iss: Some(token.issuer),
            exp: Some(token.expires_at.unix()),
            iat: Some(token.issued_at.unix()),
            jti: token.jwt_id,
        }
    }
}

/// Introspect a token.
///
/// Says whether an access or refresh token is currently valid and, if it is, what it carries.
/// Anything not currently valid (expired, revoked, unknown, its user disabled or its session
/// ended) answers only `{"active": false}`.
#[utoipa::path(
    post,
    path = "/token/introspect",
    tag = TAG_OAUTH,
    security(("oauth2" = [TokensIntrospect::NAME])),
    request_body(content = PresentedTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state", body = IntrospectionResponse,
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "`invalid_request`: no `token`, or not a form body", body = OAuthErrorBody),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The bearer token lacks `tokens:introspect`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 413, description = "The body exceeds 64 KiB", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
    )
)]
pub(crate) async fn introspect_token(
    State(state): State<AppState>,
    _caller: RequireScope<TokensIntrospect>,
    OAuthForm(params): OAuthForm,
) -> Result<Response, OAuthError> {
    let form = PresentedTokenForm::from_params(params)?;
    let token = state
        .use_cases
        .introspect
        .execute(&form.token)
        .await
        .map_err(|source| OAuthError::internal("introspection", source.as_ref()))?;
    Ok((
        [(CACHE_CONTROL, "no-store")],
        Json(IntrospectionResponse::from(token)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use authgate_application::ports::HashError;
    use authgate_application::testing::MockPasswordHasher;
    use axum::body::Body;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::{Method, Request};

    use super::*;
    use crate::test_support::{PASSWORD, TestApp, config, encode, form, form_builder, request};

    fn login(username: &str, password: &str) -> Request<Body> {
        form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
        )
    }

    #[tokio::test]
    async fn a_password_grant_returns_tokens_that_no_cache_may_store() {
        let app = TestApp::with_users().await;

        let response = app.send(login("Alice", PASSWORD)).await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.header("cache-control"), "no-store");
        assert_eq!(response.header("pragma"), "no-cache");
        assert_eq!(response.header("content-type"), "application/json");
        let body = response.json();
        assert!(
            body["access_token"]
                .as_str()
                .is_some_and(|token| !token.is_empty())
        );
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["refresh_token"], "rt-1");
        assert_eq!(body["scope"], "profile:read profile:write");
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_form_is_an_invalid_request() {
        let app = TestApp::with_users().await;
        let json = Request::post("/token")
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"grant_type":"password"}"#))
            .unwrap();
        let untyped = Request::post("/token")
            .body(Body::from(encode(&[("grant_type", "password")])))
            .unwrap();

        for request in [json, untyped] {
            app.send(request)
                .await
                .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
    }

    #[tokio::test]
    async fn a_parameter_sent_twice_is_an_invalid_request() {
        let app = TestApp::with_users().await;
        let body = format!(
            "{}&username=alice",
            encode(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD)
            ])
        );

        let response = app
            .send(form_builder("/token").body(Body::from(body)).unwrap())
            .await;

        let body = response.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(
            body["error_description"],
            "parameter 'username' must not be sent more than once"
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_utf8_is_an_invalid_request() {
        let app = TestApp::with_users().await;

        let response = app
            .send(
                form_builder("/token")
                    .body(Body::from("grant_type=password&username=%FFalice"))
                    .unwrap(),
            )
            .await;

        response.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn a_missing_or_empty_grant_type_is_an_invalid_request() {
        let app = TestApp::with_users().await;

        for pairs in [
            &[("username", "alice")][..],
            &[("grant_type", ""), ("username", "alice")],
        ] {
            let body = app
                .send(form("/token", pairs))
                .await
                .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            assert_eq!(
                body["error_description"],
                "parameter 'grant_type' is required"
            );
        }
    }

    #[tokio::test]
    async fn missing_credentials_are_an_invalid_request() {
        let app = TestApp::with_users().await;

        for pairs in [
            &[("grant_type", "password"), ("password", PASSWORD)][..],
            &[("grant_type", "password"), ("username", "alice")],
        ] {
            app.send(form("/token", pairs))
                .await
                .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        app.send(form("/token", &[("grant_type", "refresh_token")]))
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn an_unknown_grant_type_is_unsupported() {
        let app = TestApp::with_users().await;

        for grant in ["client_credentials", "authorization_code", "PASSWORD"] {
            app.send(form("/token", &[("grant_type", grant)]))
                .await
                .assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
    }

    #[tokio::test]
    async fn a_grant_left_out_of_the_configuration_is_unsupported() {
        let app = TestApp::builder()
            .config(crate::HttpConfig {
                password_grant: false,
                ..config()
            })
            .build();

        let response = app.send(login("alice", PASSWORD)).await;

        response.assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }

    #[tokio::test]
    async fn without_the_refresh_grant_no_refresh_token_is_issued_or_accepted() {
        let app = TestApp::builder()
            .config(crate::HttpConfig {
                refresh_grant: false,
                ..config()
            })
            .build();
        app.add_user("alice", ScopeSet::default_for_new_user())
            .await;

        let login = app.send(login("alice", PASSWORD)).await;
        let refresh = app
            .send(form(
                "/token",
                &[("grant_type", "refresh_token"), ("refresh_token", "rt-1")],
            ))
            .await;

        assert_eq!(login.status, StatusCode::OK);
        assert!(
            login.json().get("refresh_token").is_none(),
            "{}",
            login.text()
        );
        refresh.assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }

    #[tokio::test]
    async fn an_unknown_or_unallowed_scope_is_invalid_scope() {
        let app = TestApp::with_users().await;

        for scope in ["profile:read admin", "users:write"] {
            let request = form(
                "/token",
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("scope", scope),
                ],
            );
            app.send(request)
                .await
                .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
        }
    }

    #[tokio::test]
    async fn a_narrower_scope_is_granted_as_asked() {
        let app = TestApp::with_users().await;

        let request = form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", "profile:read"),
            ],
        );
        let response = app.send(request).await;

        assert_eq!(response.json()["scope"], "profile:read");
    }

    #[tokio::test]
    async fn a_wrong_password_is_invalid_grant() {
        let app = TestApp::with_users().await;

        let response = app.send(login("alice", "not the password at all")).await;

        let body = response.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        assert_eq!(body["error_description"], "invalid username or password");
    }

    #[tokio::test]
    async fn unknown_users_impossible_credentials_and_wrong_passwords_get_byte_identical_answers() {
        let app = TestApp::with_users().await;
        let too_long_name = "a".repeat(65);
        let too_long_password = "p".repeat(1025);

        let wrong_password = app.send(login("alice", "not the password at all")).await;
        let unknown_user = app.send(login("nobody", PASSWORD)).await;
        let malformed_user = app.send(login("no body!", PASSWORD)).await;
        let long_name = app.send(login(&too_long_name, PASSWORD)).await;
        let long_password = app.send(login("alice", &too_long_password)).await;

        for other in [&unknown_user, &malformed_user, &long_name, &long_password] {
            assert_eq!(other.status, wrong_password.status);
            assert_eq!(other.body, wrong_password.body);
            assert_eq!(other.headers, wrong_password.headers);
        }
    }

    #[tokio::test]
    async fn over_long_credentials_are_refused_before_any_hashing() {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().never();
        let app = TestApp::builder().hasher(hasher).build();

        let long_name = app.send(login(&"a".repeat(65), PASSWORD)).await;
        let long_password = app.send(login("alice", &"p".repeat(1025))).await;

        long_name.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        long_password.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }

    #[tokio::test]
    async fn a_busy_hasher_answers_503_with_retry_after() {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .returning(|_, _| Err(HashError::Busy));
        let app = TestApp::builder().hasher(hasher).build();

        let response = app.send(login("alice", PASSWORD)).await;

        let body =
            response.assert_oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        assert_eq!(response.header("retry-after"), "1");
        assert_eq!(
            body,
            serde_json::json!({"error": "temporarily_unavailable"})
        );
    }

    #[tokio::test]
    async fn a_failing_hasher_answers_server_error_without_details() {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_has_capacity().return_const(true);
        hasher
            .expect_verify()
            .returning(|_, _| Err(HashError::Internal("the disk is on fire".into())));
        let app = TestApp::builder().hasher(hasher).build();

        let response = app.send(login("alice", PASSWORD)).await;

        let body = response.assert_oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        assert_eq!(body, serde_json::json!({"error": "server_error"}));
    }

    /// The client id a token was issued to, read back through introspection.
    async fn client_id_of(app: &TestApp, access_token: &str) -> Value {
        let admin = app.token("admin", "tokens:introspect").await;
        let request = form_builder("/token/introspect")
            .header(AUTHORIZATION, format!("Bearer {admin}"))
            .body(Body::from(encode(&[("token", access_token)])))
            .unwrap();
        app.send(request).await.json()["client_id"].clone()
    }

    use serde_json::Value;

    fn login_with_basic(credentials: &str, extra: &[(&str, &str)]) -> Request<Body> {
        let mut pairs = vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        pairs.extend_from_slice(extra);
        form_builder("/token")
            .header(AUTHORIZATION, format!("Basic {credentials}"))
            .body(Body::from(encode(&pairs)))
            .unwrap()
    }

    #[tokio::test]
    async fn swagger_uis_empty_basic_credentials_count_as_no_client_id() {
        let app = TestApp::with_users().await;

        let response = app.send(login_with_basic("Og==", &[])).await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let access_token = response.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(client_id_of(&app, &access_token).await, "default");
    }

    #[tokio::test]
    async fn a_client_id_from_basic_or_the_body_is_copied_into_the_token() {
        let app = TestApp::with_users().await;
        let basic = STANDARD_PAD_INDIFFERENT.encode("my%20app:ignored-secret");

        let from_basic = app.send(login_with_basic(&basic, &[])).await;
        let from_body = app
            .send(form(
                "/token",
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("client_id", "cli"),
                ],
            ))
            .await;

        let from_basic = from_basic.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let from_body = from_body.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(client_id_of(&app, &from_basic).await, "my app");
        assert_eq!(client_id_of(&app, &from_body).await, "cli");
    }

    #[tokio::test]
    async fn a_client_id_in_both_the_body_and_basic_is_an_invalid_request() {
        let app = TestApp::with_users().await;
        let basic = STANDARD_PAD_INDIFFERENT.encode("web:");

        let response = app
            .send(login_with_basic(&basic, &[("client_id", "web")]))
            .await;

        response.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn malformed_client_credentials_are_an_invalid_request() {
        let app = TestApp::with_users().await;
        let no_colon = STANDARD_PAD_INDIFFERENT.encode("web");

        for credentials in ["%%%", no_colon.as_str()] {
            app.send(login_with_basic(credentials, &[]))
                .await
                .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        let bearer = form_builder("/token")
            .header(AUTHORIZATION, "Bearer x")
            .body(Body::from(encode(&[("grant_type", "password")])))
            .unwrap();
        app.send(bearer)
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        let unprintable = form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", "tab\there"),
            ],
        );
        app.send(unprintable)
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn a_refresh_grant_rotates_the_refresh_token() {
        let app = TestApp::with_users().await;
        app.send(login("alice", PASSWORD)).await;

        let response = app
            .send(form(
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "rt-1"),
                    ("scope", "profile:read"),
                ],
            ))
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.header("cache-control"), "no-store");
        let body = response.json();
        assert_eq!(body["refresh_token"], "rt-1+");
        assert_eq!(body["scope"], "profile:read");
    }

    #[tokio::test]
    async fn an_unknown_refresh_token_is_invalid_grant() {
        let app = TestApp::with_users().await;

        let response = app
            .send(form(
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "never-issued"),
                ],
            ))
            .await;

        response.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }

    #[tokio::test]
    async fn an_oversized_token_request_is_413_in_the_oauth_shape() {
        let app = TestApp::with_users().await;
        let padding = "x".repeat(crate::BODY_LIMIT_BYTES);

        let response = app
            .send(form(
                "/token",
                &[("grant_type", "password"), ("padding", &padding)],
            ))
            .await;

        response.assert_oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
    }

    #[tokio::test]
    async fn revocation_without_a_token_is_an_invalid_request() {
        let app = TestApp::with_users().await;

        let response = app
            .send(form(
                "/token/revoke",
                &[("token_type_hint", "refresh_token")],
            ))
            .await;

        response.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn revocation_answers_200_with_no_body_whether_or_not_the_token_was_known() {
        let app = TestApp::with_users().await;

        let response = app
            .send(form("/token/revoke", &[("token", "never-issued")]))
            .await;

        assert_eq!(response.status, StatusCode::OK);
        assert!(response.body.is_empty());
    }

    async fn introspect(app: &TestApp, token: &str) -> Value {
        let admin = app.token("admin", "tokens:introspect").await;
        let request = form_builder("/token/introspect")
            .header(AUTHORIZATION, format!("Bearer {admin}"))
            .body(Body::from(encode(&[("token", token)])))
            .unwrap();
        let response = app.send(request).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.header("cache-control"), "no-store");
        response.json()
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_introspects_as_inactive() {
        let app = TestApp::with_users().await;
        app.send(login("alice", PASSWORD)).await;
        let before = introspect(&app, "rt-1").await;

        app.send(form(
            "/token/revoke",
            &[("token", "rt-1"), ("token_type_hint", "refresh_token")],
        ))
        .await;

        assert_eq!(before["active"], true);
        assert_eq!(before["token_type"], "refresh_token");
        assert!(before.get("jti").is_none());
        assert_eq!(
            introspect(&app, "rt-1").await,
            serde_json::json!({"active": false})
        );
    }

    #[tokio::test]
    async fn an_access_token_introspects_with_its_claims() {
        let app = TestApp::with_users().await;
        let token = app.token("alice", "profile:read").await;

        let body = introspect(&app, &token).await;

        assert_eq!(body["active"], true);
        assert_eq!(body["token_type"], "access_token");
        assert_eq!(body["scope"], "profile:read");
        assert_eq!(body["client_id"], "default");
        assert_eq!(body["username"], "alice");
        assert_eq!(body["aud"], "authgate");
        assert_eq!(body["iss"], crate::test_support::ISSUER);
        assert_eq!(body["exp"], 1_700_000_900);
        assert_eq!(body["iat"], 1_700_000_000);
        assert!(body["sub"].as_str().is_some_and(|sub| sub.len() == 36));
        assert!(body["jti"].is_string());
    }

    #[tokio::test]
    async fn anything_unknown_introspects_as_only_inactive() {
        let app = TestApp::with_users().await;

        assert_eq!(
            introspect(&app, "garbage").await,
            serde_json::json!({"active": false})
        );
    }

    #[tokio::test]
    async fn introspection_needs_a_bearer_token_and_a_token_to_look_at() {
        let app = TestApp::with_users().await;
        let admin = app.token("admin", "tokens:introspect").await;

        let anonymous = app.send(form("/token/introspect", &[("token", "x")])).await;
        let no_token = app
            .send(request(
                Method::POST,
                "/token/introspect",
                Some(&admin),
                None,
            ))
            .await;

        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        no_token.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

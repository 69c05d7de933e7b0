//! The user endpoints: the caller's own profile and password, and user administration.

use authgate_application::ports::UserPatch;
use authgate_application::{ChangePasswordError, CreateUserRequest, ReadUsers};
use authgate_domain::{Password, PasswordPolicy, Scope, ScopeSet, User, Username};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::bearer::{
    BearerErrorBody, ProfileRead, ProfileWrite, RequireScope, ScopeMarker, UsersRead, UsersWrite,
};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::openapi::{TAG_PROFILE, TAG_USERS};
use crate::problem::{Problem, ProblemBody};
use crate::rfc3339;

/// A user as the API shows it; never a password hash.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "6f1c7f9e-2d6b-4a8e-9a51-7d1f0c7f3b1a", "username": "alice", "email": "alice@example.com",
    "full_name": "Alice Liddell", "disabled": false, "scopes": ["profile:read", "profile:write"],
    "created_at": "2023-11-14T22:13:20Z"
}))]
pub(crate) struct UserBody {
    /// Stable identifier, the `sub` of the user's tokens.
    #[schema(format = Uuid)]
    id: String,
    /// Unique login name, lower-case.
    username: String,
    /// Contact address.
    #[schema(required = true)]
    email: Option<String>,
    /// Display name.
    #[schema(required = true)]
    full_name: Option<String>,
    /// A disabled user can neither log in nor use earlier tokens.
    disabled: bool,
    /// The scopes the user may be granted.
    scopes: Vec<&'static str>,
    /// When the user was created (RFC 3339, UTC).
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.to_string(),
            email: user.profile.email,
            full_name: user.profile.full_name,
            disabled: user.disabled,
            scopes: user.scopes.names().collect(),
            created_at: rfc3339::format(user.created_at),
        }
    }
}

/// The answer to a user request: `200` with the user and `Cache-Control: no-store` (added for
/// every response by the security-headers middleware).
fn user_response(user: User) -> Json<UserBody> {
    Json(user.into())
}

/// Show the caller's own user record.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = TAG_PROFILE,
    security(("oauth2" = [ProfileRead::NAME])),
    responses(
        (status = 200, description = "The caller", body = UserBody),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `profile:read`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 500, description = "An internal error", body = BearerErrorBody),
    )
)]
pub(crate) async fn get_current_user(caller: RequireScope<ProfileRead>) -> Json<UserBody> {
    user_response(caller.into_principal().user)
}

/// A password change by the user themself.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordBody {
    /// The password in use now.
    #[schema(format = Password)]
    current_password: String,
    /// The new password; it must satisfy the password policy.
    #[schema(format = Password)]
    new_password: String,
}

/// Change the caller's own password.
///
/// Ends every earlier session: refresh tokens are revoked and access tokens issued before stop
/// working at once.
#[utoipa::path(
    put,
    path = "/users/me/password",
    tag = TAG_PROFILE,
    security(("oauth2" = [ProfileWrite::NAME])),
    request_body = ChangePasswordBody,
    responses(
        (status = 204, description = "Changed; earlier sessions have ended"),
        (status = 400, description = "Malformed JSON, or the current password is wrong",
            body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `profile:write`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 404, description = "The caller was deleted meanwhile", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds 64 KiB", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or mistyped, or the new password breaks a rule (named in `detail`)",
            body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong current passwords for this user", body = ProblemBody,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 500, description = "An internal error", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn change_own_password(
    State(state): State<AppState>,
    caller: RequireScope<ProfileWrite>,
    JsonBody(body): JsonBody<ChangePasswordBody>,
) -> Result<StatusCode, Problem> {
    // No password can be longer, so an over-long one is refused before it costs a hash.
    if body.current_password.len() > PasswordPolicy::MAX_BYTES {
        return Err(Problem::bad_request(
            ChangePasswordError::WrongPassword.to_string(),
        ));
    }
    let current = Password::new(body.current_password);
    let new = Password::new(body.new_password);
    state
        .use_cases
        .change_password
        .execute(caller.principal(), &current, new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserBody {
    /// 3 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`; upper case is lower-cased.
    #[schema(example = "alice")]
    username: String,
    /// The initial password; it must satisfy the password policy.
    #[schema(format = Password)]
    password: String,
    /// Contact address.
    #[schema(example = "alice@example.com")]
    email: Option<String>,
    /// Display name.
    full_name: Option<String>,
    /// Scopes the user may be granted; `["profile:read", "profile:write"]` when absent.
    #[schema(example = json!(["profile:read", "profile:write"]))]
    scopes: Option<Vec<String>>,
}

/// Create a user.
#[utoipa::path(
    post,
    path = "/users",
    tag = TAG_USERS,
    security(("oauth2" = [UsersWrite::NAME])),
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "Created", body = UserBody,
            headers(("Location" = String, description = "`/users/{username}`"))),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `users:write`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 409, description = "The username is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds 64 KiB", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or invalid, or the password breaks a rule (named in `detail`)",
            body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "An internal error", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    _caller: RequireScope<UsersWrite>,
    JsonBody(body): JsonBody<CreateUserBody>,
) -> Result<Response, Problem> {
    let request = CreateUserRequest {
        username: body.username,
        password: Password::new(body.password),
        email: body.email,
        full_name: body.full_name,
        scopes: body.scopes.as_deref().map(parse_scopes).transpose()?,
    };
    let user = state.use_cases.create_user.execute(request).await?;
    let location = format!("/users/{}", user.username);
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location)],
        user_response(user),
    )
        .into_response())
}

fn parse_scopes(names: &[String]) -> Result<ScopeSet, Problem> {
    names
        .iter()
        .map(|name| Scope::parse(name))
        .collect::<Result<ScopeSet, _>>()
        .map_err(|why| Problem::unprocessable(format!("scopes: {why}")))
}

/// The query of `GET /users`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListUsersParams {
    /// How many users to return, 1 to 200.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200, default = 50)]
    limit: Option<String>,
    /// Where to continue: the `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of users.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserListBody {
    /// Users in username order.
    items: Vec<UserBody>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The page size when the client asks for none.
const DEFAULT_PAGE: u32 = 50;

/// List users.
///
/// Users come in username order, a page at a time; follow `next_cursor` until it is `null`.
#[utoipa::path(
    get,
    path = "/users",
    tag = TAG_USERS,
    security(("oauth2" = [UsersRead::NAME])),
    params(ListUsersParams),
    responses(
        (status = 200, description = "One page of users", body = UserListBody),
        (status = 400, description = "The query string cannot be decoded", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `users:read`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 422, description = "`limit` or `cursor` is invalid", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "An internal error", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _caller: RequireScope<UsersRead>,
    QueryParams(params): QueryParams<ListUsersParams>,
) -> Result<Json<UserListBody>, Problem> {
    let limit = match params.limit.as_deref().filter(|limit| !limit.is_empty()) {
        None => DEFAULT_PAGE,
        Some(limit) => limit
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=ReadUsers::MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                Problem::unprocessable(format!(
                    "limit must be an integer from 1 to {}",
                    ReadUsers::MAX_PAGE
                ))
            })?,
    };
    let after = params
        .cursor
        .as_deref()
        .filter(|cursor| !cursor.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let page = state.use_cases.read_users.list(after, limit).await?;
    Ok(Json(UserListBody {
        items: page.users.into_iter().map(UserBody::from).collect(),
        next_cursor: page
            .next_after
            .map(|username| URL_SAFE_NO_PAD.encode(username.as_str())),
    }))
}

/// The cursor is the last username of the previous page, base64url-encoded so that clients
/// treat it as opaque.
fn decode_cursor(cursor: &str) -> Result<Username, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|name| Username::parse(&name).ok())
        .ok_or_else(|| {
            Problem::unprocessable("cursor must be a next_cursor returned by this endpoint")
        })
}

/// Show one user.
#[utoipa::path(
    get,
    path = "/users/{username}",
    tag = TAG_USERS,
    security(("oauth2" = [UsersRead::NAME])),
    params(("username" = String, Path, description = "The user's login name")),
    responses(
        (status = 200, description = "The user", body = UserBody),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `users:read`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "An internal error", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    _caller: RequireScope<UsersRead>,
    PathParam(username): PathParam<String>,
) -> Result<Json<UserBody>, Problem> {
    let user = state.use_cases.read_users.get(&username).await?;
    Ok(user_response(user))
}

/// A partial update of a user: absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchUserBody {
    /// Disable (`true`) or enable (`false`) the account; disabling ends its sessions.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    disabled: Option<bool>,
    /// Replace the scopes the user may be granted.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, example = json!(["profile:read", "profile:write", "users:read"]))]
    scopes: Option<Vec<String>>,
    /// Set the email; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    email: Option<Option<String>>,
    /// Set the display name; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    full_name: Option<Option<String>>,
}

/// A field that is present, whatever its value; `#[serde(default)]` makes absence `None`.
/// For a plain `T` this refuses `null`; for `Option<T>` it keeps `null` apart from absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Change a user.
///
/// Disabling takes effect on the user's next request. The last enabled user holding
/// `users:write` cannot be disabled or lose that scope.
#[utoipa::path(
    patch,
    path = "/users/{username}",
    tag = TAG_USERS,
    security(("oauth2" = [UsersWrite::NAME])),
    params(("username" = String, Path, description = "The user's login name")),
    request_body = PatchUserBody,
    responses(
        (status = 200, description = "The changed user", body = UserBody),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `users:write`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The change would leave nobody able to administer users",
            body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds 64 KiB", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A field is unknown or invalid (named in `detail`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "An internal error", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    _caller: RequireScope<UsersWrite>,
    PathParam(username): PathParam<String>,
    JsonBody(body): JsonBody<PatchUserBody>,
) -> Result<Json<UserBody>, Problem> {
    let patch = UserPatch {
        disabled: body.disabled,
        scopes: body.scopes.as_deref().map(parse_scopes).transpose()?,
        email: body.email,
        full_name: body.full_name,
    };
    let user = state
        .use_cases
        .manage_user
        .update(&username, &patch)
        .await?;
    Ok(user_response(user))
}

/// Delete a user.
///
/// Their sessions end with them. The last enabled user holding `users:write` cannot be deleted.
#[utoipa::path(
    delete,
    path = "/users/{username}",
    tag = TAG_USERS,
    security(("oauth2" = [UsersWrite::NAME])),
    params(("username" = String, Path, description = "The user's login name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid bearer token", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge"))),
        (status = 403, description = "The token lacks `users:write`", body = BearerErrorBody,
            headers(("WWW-Authenticate" = String, description = "The RFC 6750 challenge, naming the scope"))),
        (status = 404, description = "No such user", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The user is the last one able to administer users",
            body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "An internal error", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    _caller: RequireScope<UsersWrite>,
    PathParam(username): PathParam<String>,
) -> Result<StatusCode, Problem> {
    state.use_cases.manage_user.delete(&username).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::{Method, Request};
    use serde_json::json;

    use super::*;
    use crate::test_support::{PASSWORD, TestApp, request};

    async fn admin_app() -> (TestApp, String) {
        let app = TestApp::with_users().await;
        let token = app.token("admin", "").await;
        (app, token)
    }

    #[tokio::test]
    async fn the_current_user_is_shown_without_secrets_and_never_cached() {
        let app = TestApp::with_users().await;
        let token = app.token("alice", "profile:read").await;

        let response = app
            .send(request(Method::GET, "/users/me", Some(&token), None))
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.header("cache-control"), "no-store");
        let body = response.json();
        let mut fields: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "created_at",
                "disabled",
                "email",
                "full_name",
                "id",
                "scopes",
                "username"
            ]
        );
        assert_eq!(body["username"], "alice");
        assert_eq!(body["email"], Value::Null);
        assert_eq!(body["disabled"], false);
        assert_eq!(body["scopes"], json!(["profile:read", "profile:write"]));
        assert_eq!(body["created_at"], "2023-11-14T22:13:20Z");
        assert!(!response.text().contains(PASSWORD));
    }

    use serde_json::Value;

    #[tokio::test]
    async fn creating_a_user_answers_201_with_its_location() {
        let (app, token) = admin_app().await;
        let body = json!({"username": "Bob", "password": "a long and unusual passphrase", "email": "bob@example.com", "scopes": ["users:read"]});

        let response = app
            .send(request(Method::POST, "/users", Some(&token), Some(body)))
            .await;

        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        assert_eq!(response.header("location"), "/users/bob");
        let user = response.json();
        assert_eq!(user["username"], "bob");
        assert_eq!(user["email"], "bob@example.com");
        assert_eq!(user["scopes"], json!(["users:read"]));
        assert!(!response.text().contains("passphrase"));
    }

    #[tokio::test]
    async fn a_new_user_gets_the_default_scopes_when_none_are_given() {
        let (app, token) = admin_app().await;

        let response = app
            .send(request(
                Method::POST,
                "/users",
                Some(&token),
                Some(json!({"username": "bob", "password": "a long and unusual passphrase"})),
            ))
            .await;

        assert_eq!(
            response.json()["scopes"],
            json!(["profile:read", "profile:write"])
        );
    }

    #[tokio::test]
    async fn a_duplicate_username_is_a_409_problem() {
        let (app, token) = admin_app().await;

        let response = app
            .send(request(
                Method::POST,
                "/users",
                Some(&token),
                Some(json!({"username": "ALICE", "password": "a long and unusual passphrase"})),
            ))
            .await;

        response.assert_problem(StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn a_weak_password_is_a_422_naming_the_rule() {
        let (app, token) = admin_app().await;

        let response = app
            .send(request(
                Method::POST,
                "/users",
                Some(&token),
                Some(json!({"username": "bob", "password": "short"})),
            ))
            .await;

        assert_eq!(
            response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            "password must be at least 15 characters long"
        );
    }

    #[tokio::test]
    async fn invalid_fields_are_422_problems_naming_the_field() {
        let (app, token) = admin_app().await;
        let cases = [
            (
                json!({"username": "b", "password": "a long and unusual passphrase"}),
                "username",
            ),
            (
                json!({"username": "bob", "password": "a long and unusual passphrase", "email": "nope"}),
                "email",
            ),
            (
                json!({"username": "bob", "password": "a long and unusual passphrase", "scopes": ["admin"]}),
                "scopes",
            ),
            (
                json!({"username": "bob", "password": "a long and unusual passphrase", "is_admin": true}),
                "is_admin",
            ),
            (json!({"username": "bob"}), "password"),
            (
                json!({"username": 7, "password": "a long and unusual passphrase"}),
                "username",
            ),
        ];

        for (body, field) in cases {
            let response = app
                .send(request(
                    Method::POST,
                    "/users",
                    Some(&token),
                    Some(body.clone()),
                ))
                .await;

            let detail = response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
            assert!(detail.contains(field), "{body}: {detail}");
        }
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_problem() {
        let (app, token) = admin_app().await;
        let request = Request::post("/users")
            .header("authorization", format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from("{\"username\": "))
            .unwrap();

        app.send(request)
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_a_415_problem() {
        let (app, token) = admin_app().await;
        let request = Request::post("/users")
            .header("authorization", format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("username=bob"))
            .unwrap();

        app.send(request)
            .await
            .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn an_oversized_json_body_is_a_413_problem() {
        let (app, token) = admin_app().await;
        let body = json!({"username": "bob", "password": "x".repeat(crate::BODY_LIMIT_BYTES)});

        let response = app
            .send(request(Method::POST, "/users", Some(&token), Some(body)))
            .await;

        response.assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn users_are_listed_a_page_at_a_time_with_an_opaque_cursor() {
        let (app, token) = admin_app().await;
        app.add_user("carol", ScopeSet::default_for_new_user())
            .await;

        let first = app
            .send(request(Method::GET, "/users?limit=2", Some(&token), None))
            .await
            .json();
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let second = app
            .send(request(
                Method::GET,
                &format!("/users?limit=2&cursor={cursor}"),
                Some(&token),
                None,
            ))
            .await
            .json();

        let names = |page: &Value| {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|user| user["username"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&first), ["admin", "alice"]);
        assert_eq!(cursor, URL_SAFE_NO_PAD.encode("alice"));
        assert_eq!(names(&second), ["carol"]);
        assert_eq!(second["next_cursor"], Value::Null);
    }

    #[tokio::test]
    async fn a_limit_outside_1_to_200_is_a_422_naming_limit() {
        let (app, token) = admin_app().await;

        for limit in ["0", "201", "-1", "ten"] {
            let response = app
                .send(request(
                    Method::GET,
                    &format!("/users?limit={limit}"),
                    Some(&token),
                    None,
                ))
                .await;

            assert!(
                response
                    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY)
                    .contains("limit"),
                "{limit}"
            );
        }
        let maximum = app
            .send(request(Method::GET, "/users?limit=200", Some(&token), None))
            .await;
        assert_eq!(maximum.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_cursor_not_made_by_the_server_is_a_422_naming_cursor() {
        let (app, token) = admin_app().await;

        for cursor in ["!!!", "AA", &URL_SAFE_NO_PAD.encode("NOT A NAME")] {
            let response = app
                .send(request(
                    Method::GET,
                    &format!("/users?cursor={cursor}"),
                    Some(&token),
                    None,
                ))
                .await;

            assert!(
                response
                    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY)
                    .contains("cursor"),
                "{cursor}"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_user_is_a_404_problem() {
        let (app, token) = admin_app().await;

        for method in [Method::GET, Method::DELETE] {
            app.send(request(method, "/users/nobody", Some(&token), None))
                .await
                .assert_problem(StatusCode::NOT_FOUND);
        }
        let patch = app
            .send(request(
                Method::PATCH,
                "/users/nobody",
                Some(&token),
                Some(json!({"disabled": true})),
            ))
            .await;
        patch.assert_problem(StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_patch_changes_only_the_fields_it_names_and_null_clears() {
        let (app, token) = admin_app().await;
        let set = json!({"email": "alice@example.com", "full_name": "Alice Liddell", "scopes": ["profile:read"]});
        app.send(request(
            Method::PATCH,
            "/users/alice",
            Some(&token),
            Some(set),
        ))
        .await;

        let response = app
            .send(request(
                Method::PATCH,
                "/users/alice",
                Some(&token),
                Some(json!({"email": null})),
            ))
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let user = response.json();
        assert_eq!(user["email"], Value::Null);
        assert_eq!(user["full_name"], "Alice Liddell");
        assert_eq!(user["scopes"], json!(["profile:read"]));
    }

    #[tokio::test]
    async fn a_patch_with_an_unknown_or_null_field_is_a_422_naming_it() {
        let (app, token) = admin_app().await;

        for (body, field) in [
            (json!({"admin": true}), "admin"),
            (json!({"disabled": null}), "disabled"),
            (json!({"scopes": ["root"]}), "scopes"),
        ] {
            let response = app
                .send(request(
                    Method::PATCH,
                    "/users/alice",
                    Some(&token),
                    Some(body.clone()),
                ))
                .await;

            assert!(
                response
                    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY)
                    .contains(field),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn the_last_administrator_cannot_be_disabled_or_deleted() {
        let (app, token) = admin_app().await;

        let disable = app
            .send(request(
                Method::PATCH,
                "/users/admin",
                Some(&token),
                Some(json!({"disabled": true})),
            ))
            .await;
        let delete = app
            .send(request(Method::DELETE, "/users/admin", Some(&token), None))
            .await;

        disable.assert_problem(StatusCode::CONFLICT);
        delete.assert_problem(StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn a_disabled_user_s_token_stops_working_on_the_next_request() {
        let (app, token) = admin_app().await;
        let alice = app.token("alice", "").await;

        app.send(request(
            Method::PATCH,
            "/users/alice",
            Some(&token),
            Some(json!({"disabled": true})),
        ))
        .await;
        let response = app
            .send(request(Method::GET, "/users/me", Some(&alice), None))
            .await;

        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_deleted_user_is_gone() {
        let (app, token) = admin_app().await;

        let delete = app
            .send(request(Method::DELETE, "/users/alice", Some(&token), None))
            .await;
        let get = app
            .send(request(Method::GET, "/users/alice", Some(&token), None))
            .await;

        assert_eq!(delete.status, StatusCode::NO_CONTENT);
        assert!(delete.body.is_empty());
        get.assert_problem(StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn changing_the_password_answers_204_and_ends_earlier_sessions() {
        let app = TestApp::with_users().await;
        let token = app.token("alice", "").await;
        let body =
            json!({"current_password": PASSWORD, "new_password": "an entirely new passphrase"});

        let change = app
            .send(request(
                Method::PUT,
                "/users/me/password",
                Some(&token),
                Some(body),
            ))
            .await;
        let after = app
            .send(request(Method::GET, "/users/me", Some(&token), None))
            .await;

        assert_eq!(change.status, StatusCode::NO_CONTENT, "{}", change.text());
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_wrong_current_password_is_a_400_problem() {
        let app = TestApp::with_users().await;
        let token = app.token("alice", "").await;

        for current in ["not the password at all".to_owned(), "x".repeat(1025)] {
            let body =
                json!({"current_password": current, "new_password": "an entirely new passphrase"});
            let response = app
                .send(request(
                    Method::PUT,
                    "/users/me/password",
                    Some(&token),
                    Some(body),
                ))
                .await;

            assert_eq!(
                response.assert_problem(StatusCode::BAD_REQUEST),
                "the current password is wrong"
            );
        }
    }

    #[tokio::test]
    async fn a_weak_new_password_is_a_422_naming_the_rule() {
        let app = TestApp::with_users().await;
        let token = app.token("alice", "").await;
        let body =
            json!({"current_password": PASSWORD, "new_password": "my name is alice and so on"});

        let response = app
            .send(request(
                Method::PUT,
                "/users/me/password",
                Some(&token),
                Some(body),
            ))
            .await;

        assert_eq!(
            response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            "password must not contain the username"
        );
    }
}

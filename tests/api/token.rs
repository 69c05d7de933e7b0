//! `POST /token`, password grant: success and every error of SPEC §2.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    ADMIN_PASSWORD, Backend, assert_oauth_error, backend_tests, parts, spawn_app, spawn_app_with,
};

backend_tests!(password_grant_issues_a_bearer_token_with_every_allowed_scope);

async fn password_grant_issues_a_bearer_token_with_every_allowed_scope(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;

    let (status, headers, body) = parts(app.login("admin", ADMIN_PASSWORD).await).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(
        body["scope"],
        "profile:read profile:write users:read users:write tokens:introspect"
    );
    assert_eq!(
        body["access_token"]
            .as_str()
            .map(|token| token.split('.').count()),
        Some(3)
    );
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|token| token.len() >= 43)
    );
}

#[tokio::test]
async fn usernames_are_case_insensitive() {
    let app = spawn_app().await;

    let response = app.login("ADMIN", ADMIN_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_narrower_scope_can_be_requested() {
    let app = spawn_app().await;

    let body: Value = app
        .token(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("scope", "profile:read"),
        ])
        .await
        .json()
        .await
        .expect("json");

    assert_eq!(body["scope"], "profile:read");
}

#[tokio::test]
async fn unknown_and_not_allowed_scopes_are_invalid_scope() {
    let app = spawn_app().await;
    app.create_user("bob", "profile:read").await;

    for (username, password, scope) in [
        ("admin", ADMIN_PASSWORD, "profile:read superuser"),
        ("bob", crate::helpers::GOOD_PASSWORD, "users:write"),
    ] {
        let form = [
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("scope", scope),
        ];
        let (status, headers, body) = parts(app.token(&form).await).await;

        assert_oauth_error(status, &headers, &body, "invalid_scope");
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_byte_identical_answers() {
    let app = spawn_app().await;

    let unknown = app.login("nobody", "some-password-123456").await;
    let (unknown_status, unknown_headers) = (unknown.status(), unknown.headers().clone());
    let unknown_body = unknown.bytes().await.expect("body");
    let wrong = app.login("admin", "not-the-password-123").await;
    let (wrong_status, wrong_headers) = (wrong.status(), wrong.headers().clone());
    let wrong_body = wrong.bytes().await.expect("body");
    let malformed = app
        .login("x'; DROP TABLE users; --", "whatever-password")
        .await
        .bytes()
        .await
        .expect("body");

    assert_eq!(unknown_status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_status, wrong_status);
    assert_eq!(unknown_body, wrong_body);
    assert_eq!(unknown_body, malformed);
    assert_eq!(
        unknown_headers.get("content-type"),
        wrong_headers.get("content-type")
    );
    let body: Value = serde_json::from_slice(&unknown_body).expect("json");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn missing_or_empty_parameters_are_invalid_request() {
    let app = spawn_app().await;

    for form in [
        vec![("username", "admin"), ("password", ADMIN_PASSWORD)],
        vec![
            ("grant_type", ""),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ],
        vec![("grant_type", "password"), ("password", ADMIN_PASSWORD)],
        vec![("grant_type", "password"), ("username", "admin")],
        vec![
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ""),
        ],
    ] {
        let (status, headers, body) = parts(app.token(&form).await).await;

        assert_oauth_error(status, &headers, &body, "invalid_request");
    }
}

#[tokio::test]
async fn a_repeated_parameter_is_invalid_request() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=admin&username=admin&password={ADMIN_PASSWORD}"
        ))
        .send()
        .await
        .expect("request");
    let (status, headers, body) = parts(response).await;

    assert_oauth_error(status, &headers, &body, "invalid_request");
}

#[tokio::test]
async fn anything_but_a_form_body_is_invalid_request() {
    let app = spawn_app().await;

    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let mut request = app
            .client
            .post(app.url("/token"))
            .body(r#"{"grant_type":"password"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, headers, body) = parts(request.send().await.expect("request")).await;

        assert_oauth_error(status, &headers, &body, "invalid_request");
    }
}

#[tokio::test]
async fn unknown_and_disabled_grants_are_unsupported_grant_type() {
    let app = spawn_app().await;
    let only_refresh =
        spawn_app_with(Backend::Sqlite, |config| config.password_grant = false).await;

    let (status, headers, body) =
        parts(app.token(&[("grant_type", "client_credentials")]).await).await;
    assert_oauth_error(status, &headers, &body, "unsupported_grant_type");

    let (status, headers, body) = parts(only_refresh.login("admin", ADMIN_PASSWORD).await).await;
    assert_oauth_error(status, &headers, &body, "unsupported_grant_type");
}

#[tokio::test]
async fn client_id_in_both_body_and_basic_is_invalid_request() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth("web", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("client_id", "web"),
        ])
        .send()
        .await
        .expect("request");
    let (status, headers, body) = parts(response).await;

    assert_oauth_error(status, &headers, &body, "invalid_request");
}

#[tokio::test]
async fn swagger_uis_empty_basic_header_counts_as_no_client() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/token"))
        .header("authorization", "Basic Og==")
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("client_id", "swagger"),
        ])
        .send()
        .await
        .expect("request");

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in() {
    let app = spawn_app().await;
    app.create_user("carol", "profile:read").await;
    let admin = app.admin_token().await;
    app.client
        .patch(app.url("/users/carol"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .expect("request");

    let (status, headers, body) =
        parts(app.login("carol", crate::helpers::GOOD_PASSWORD).await).await;

    assert_oauth_error(status, &headers, &body, "invalid_grant");
}

#[tokio::test]
async fn oversized_fields_are_refused_before_hashing() {
    let app = spawn_app().await;
    let long_password = "p".repeat(1025);
    let long_username = "u".repeat(65);

    for (username, password) in [
        ("admin", long_password.as_str()),
        (long_username.as_str(), "some-password-123"),
    ] {
        let (status, _, body) = parts(app.login(username, password).await).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"] == "invalid_request" || body["error"] == "invalid_grant",
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=admin&password={}",
            "x".repeat(70 * 1024)
        ))
        .send()
        .await
        .expect("request");

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

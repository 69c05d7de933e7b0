//! Sessions that end: refresh rotation and reuse detection, revocation, introspection,
//! password change, and discovery metadata (issue 3).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Backend, GOOD_PASSWORD, TestApp, access_token, assert_oauth_error,
    backend_tests, parts, refresh_token, spawn_app, spawn_app_with,
};

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.token(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .await
}

async fn refresh_ok(app: &TestApp, token: &str) -> Value {
    let (status, _, body) = parts(refresh(app, token).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

backend_tests!(
    rotation_then_reuse_of_the_first_token_revokes_the_whole_family,
    concurrent_refreshes_within_the_grace_all_get_the_same_new_token,
    with_no_grace_exactly_one_of_several_concurrent_refreshes_succeeds,
    revoking_a_refresh_token_ends_its_family,
    revoking_an_access_token_denies_it_until_it_expires,
    a_password_change_ends_earlier_sessions,
    introspection_reports_active_tokens_and_nothing_about_inactive_ones,
);

async fn rotation_then_reuse_of_the_first_token_revokes_the_whole_family(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let first = refresh_token(&app.login_ok("admin", ADMIN_PASSWORD).await);
    let mut current = first.clone();
    for _ in 0..3 {
        let body = refresh_ok(&app, &current).await;
        let next = refresh_token(&body);
        assert_ne!(next, current);
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(
            app.get_with("/users/me", &access_token(&body))
                .await
                .status(),
            StatusCode::OK
        );
        current = next;
    }

    app.advance(Duration::from_secs(11));
    let (status, headers, body) = parts(refresh(&app, &first).await).await;

    assert_oauth_error(status, &headers, &body, "invalid_grant");
    let (status, headers, body) = parts(refresh(&app, &current).await).await;
    assert_oauth_error(status, &headers, &body, "invalid_grant");
}

async fn concurrent_refreshes_within_the_grace_all_get_the_same_new_token(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let token = refresh_token(&app.login_ok("admin", ADMIN_PASSWORD).await);

    let outcomes = concurrent_refreshes(&app, &token, 10).await;

    let mut successors = Vec::new();
    for (status, body) in outcomes {
        assert_eq!(status, StatusCode::OK, "{body}");
        successors.push(refresh_token(&body));
    }
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "every tab gets the same new refresh token"
    );
    refresh_ok(&app, &successors[0]).await;
}

async fn with_no_grace_exactly_one_of_several_concurrent_refreshes_succeeds(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.refresh_reuse_grace = Duration::ZERO
    })
    .await;
    let token = refresh_token(&app.login_ok("admin", ADMIN_PASSWORD).await);

    let outcomes = concurrent_refreshes(&app, &token, 10).await;

    let statuses: Vec<StatusCode> = outcomes.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::OK || *status == StatusCode::BAD_REQUEST)
    );
}

async fn revoking_a_refresh_token_ends_its_family(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let first = refresh_token(&app.login_ok("admin", ADMIN_PASSWORD).await);
    let second = refresh_token(&refresh_ok(&app, &first).await);

    let response = app
        .client
        .post(app.url("/token/revoke"))
        .form(&[("token", first.as_str())])
        .send()
        .await
        .expect("revoke");

    assert_eq!(response.status(), StatusCode::OK);
    let (status, headers, body) = parts(refresh(&app, &second).await).await;
    assert_oauth_error(status, &headers, &body, "invalid_grant");
}

async fn revoking_an_access_token_denies_it_until_it_expires(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let body = app.login_ok("admin", ADMIN_PASSWORD).await;
    let access = access_token(&body);
    let other_access = app.admin_token().await;

    let response = app
        .client
        .post(app.url("/token/revoke"))
        .form(&[
            ("token", access.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .expect("revoke");

    assert_eq!(response.status(), StatusCode::OK);
    let (status, headers, _) = parts(app.get_with("/users/me", &access).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .is_ok_and(|value| value.contains("invalid_token"))
    );
    assert_eq!(
        app.get_with("/users/me", &other_access).await.status(),
        StatusCode::OK,
        "only that token"
    );
    refresh_ok(&app, &refresh_token(&body)).await;
}

async fn a_password_change_ends_earlier_sessions(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    app.create_user("grace", "profile:read profile:write").await;
    let before = app.login_ok("grace", GOOD_PASSWORD).await;
    let new_password = "orchid-canyon-lattice-88";

    let response = app
        .client
        .put(app.url("/users/me/password"))
        .bearer_auth(access_token(&before))
        .json(&json!({"current_password": GOOD_PASSWORD, "new_password": new_password}))
        .send()
        .await
        .expect("change");

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_with("/users/me", &access_token(&before))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, headers, body) = parts(refresh(&app, &refresh_token(&before)).await).await;
    assert_oauth_error(status, &headers, &body, "invalid_grant");
    assert_eq!(
        app.login("grace", GOOD_PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    let after = app.login_ok("grace", new_password).await;
    assert_eq!(
        app.get_with("/users/me", &access_token(&after))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn introspection_reports_active_tokens_and_nothing_about_inactive_ones(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let introspector = app.admin_token().await;
    let body = app.login_ok("admin", ADMIN_PASSWORD).await;
    let introspect = |token: String| {
        let request = app
            .client
            .post(app.url("/token/introspect"))
            .bearer_auth(&introspector)
            .form(&[("token", token)]);
        async move { parts(request.send().await.expect("introspect")).await }
    };

    let (status, _, access) = introspect(access_token(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(access["active"], true);
    assert_eq!(access["token_type"], "access_token");
    assert_eq!(access["username"], "admin");
    assert_eq!(access["client_id"], "default");
    assert_eq!(access["aud"], "authgate");
    assert_eq!(access["iss"], app.base);
    assert!(
        access["jti"].is_string()
            && access["exp"].is_i64()
            && access["iat"].is_i64()
            && access["sub"].is_string()
    );

    let (_, _, refresh_info) = introspect(refresh_token(&body)).await;
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["token_type"], "refresh_token");

    for inactive in ["garbage".to_owned(), String::new() + "a.b.c"] {
        let (status, _, answer) = introspect(inactive).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({"active": false}));
    }
    app.client
        .post(app.url("/token/revoke"))
        .form(&[("token", refresh_token(&body))])
        .send()
        .await
        .expect("revoke");
    let (_, _, revoked) = introspect(refresh_token(&body)).await;
    assert_eq!(revoked, json!({"active": false}));
}

#[tokio::test]
async fn introspection_needs_its_scope() {
    let app = spawn_app().await;
    let limited = access_token(
        &app.token(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("scope", "profile:read"),
        ])
        .await
        .json::<Value>()
        .await
        .expect("json"),
    );

    let response = app
        .client
        .post(app.url("/token/introspect"))
        .bearer_auth(&limited)
        .form(&[("token", &limited)])
        .send()
        .await
        .expect("introspect");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="authgate", error="insufficient_scope", scope="tokens:introspect""#
    );
}

#[tokio::test]
async fn revocation_needs_a_token_but_never_reveals_whether_it_was_known() {
    let app = spawn_app().await;

    let missing = app
        .client
        .post(app.url("/token/revoke"))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .expect("revoke");
    let unknown = app
        .client
        .post(app.url("/token/revoke"))
        .form(&[("token", "never-issued")])
        .send()
        .await
        .expect("revoke");

    let (status, headers, body) = parts(missing).await;
    assert_oauth_error(status, &headers, &body, "invalid_request");
    assert_eq!(unknown.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_narrower_scope_on_refresh_narrows_and_a_wider_one_is_refused() {
    let app = spawn_app().await;
    let form = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("scope", "profile:read users:read"),
    ];
    let body: Value = app.token(&form).await.json().await.expect("json");
    let token = refresh_token(&body);

    let narrowed: Value = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &token),
            ("scope", "profile:read"),
        ])
        .await
        .json()
        .await
        .expect("json");
    let (status, headers, wider) = parts(
        app.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token(&narrowed)),
            ("scope", "users:write"),
        ])
        .await,
    )
    .await;

    assert_eq!(narrowed["scope"], "profile:read");
    assert_oauth_error(status, &headers, &wider, "invalid_scope");
}

#[tokio::test]
async fn wrong_current_password_and_weak_new_passwords_are_problems() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let change = |current: &str, new: &str| {
        app.client
            .put(app.url("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };

    let (status, headers, body) = parts(
        change("wrong-password-entirely", "orchid-canyon-lattice-88")
            .await
            .expect("change"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");

    for weak in [
        "short",
        "password-of-admin-user",
        "correcthorsebatterystaple",
    ] {
        let (status, _, body) = parts(change(ADMIN_PASSWORD, weak).await.expect("change")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{weak}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("password")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn metadata_describes_the_server_with_absolute_urls() {
    let app = spawn_app().await;

    let (status, _, metadata) = parts(
        app.client
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .expect("metadata"),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["issuer"], app.base);
    assert_eq!(metadata["token_endpoint"], app.url("/token"));
    assert_eq!(metadata["revocation_endpoint"], app.url("/token/revoke"));
    assert_eq!(
        metadata["introspection_endpoint"],
        app.url("/token/introspect")
    );
    assert_eq!(metadata["jwks_uri"], app.url("/.well-known/jwks.json"));
    assert_eq!(metadata["service_documentation"], app.url("/docs"));
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["password", "refresh_token"])
    );
    assert_eq!(metadata["response_types_supported"], json!([]));
    assert_eq!(
        metadata["scopes_supported"].as_array().map(Vec::len),
        Some(5)
    );
    assert!(metadata["token_endpoint_auth_methods_supported"].is_array());
}

#[tokio::test]
async fn without_the_refresh_grant_no_refresh_token_is_issued() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.refresh_grant = false).await;

    let body = app.login_ok("admin", ADMIN_PASSWORD).await;
    let (status, headers, error) = parts(refresh(&app, "anything").await).await;

    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_oauth_error(status, &headers, &error, "unsupported_grant_type");
}

/// Fires `count` refreshes of `token` at once, each on its own connection and task.
async fn concurrent_refreshes(
    app: &TestApp,
    token: &str,
    count: usize,
) -> Vec<(StatusCode, Value)> {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/token");
            let token = token.to_owned();
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                (status, response.json::<Value>().await.expect("json"))
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(count);
    for handle in handles {
        outcomes.push(handle.await.expect("task"));
    }
    outcomes
}

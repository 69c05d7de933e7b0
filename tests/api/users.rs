//! User administration over HTTP and least-privilege scope checks (issue 4).

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Backend, GOOD_PASSWORD, TestApp, access_token, backend_tests, parts, spawn_app,
    spawn_app_with,
};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    parts(request.send().await.expect("request")).await
}

#[track_caller]
fn assert_problem(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    expected: StatusCode,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

backend_tests!(
    the_full_crud_cycle_works_with_every_error_shape,
    pagination_visits_every_user_once_while_users_are_added,
    the_last_administrator_cannot_be_removed
);

async fn the_full_crud_cycle_works_with_every_error_shape(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let admin = app.admin_token().await;

    let (status, headers, created) = send(
        &app,
        Method::POST,
        "/users",
        &admin,
        Some(json!({"username": "Heidi", "password": GOOD_PASSWORD, "email": "heidi@example.com", "full_name": "Heidi H"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(headers["location"], "/users/heidi");
    assert_eq!(created["username"], "heidi");
    assert_eq!(created["scopes"], json!(["profile:read", "profile:write"]));
    assert_eq!(created["disabled"], false);
    assert!(
        created["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());

    let (status, headers, body) = send(
        &app,
        Method::POST,
        "/users",
        &admin,
        Some(json!({"username": "HEIDI", "password": GOOD_PASSWORD})),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);

    let (status, _, fetched) = send(&app, Method::GET, "/users/heidi", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);

    let (status, _, patched) = send(
        &app,
        Method::PATCH,
        "/users/heidi",
        &admin,
        Some(
            json!({"scopes": ["profile:read", "users:read"], "email": null, "full_name": "Heidi"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["scopes"], json!(["profile:read", "users:read"]));
    assert_eq!(patched["email"], Value::Null);
    assert_eq!(patched["full_name"], "Heidi");

    let (status, headers, body) = send(
        &app,
        Method::PATCH,
        "/users/heidi",
        &admin,
        Some(json!({"is_admin": true})),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("is_admin")),
        "{body}"
    );
    let (status, headers, body) = send(
        &app,
        Method::PATCH,
        "/users/heidi",
        &admin,
        Some(json!({"scopes": ["root"]})),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, headers, body) = send(
        &app,
        Method::PATCH,
        "/users/heidi",
        &admin,
        Some(json!({"email": "not-an-email"})),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("email")),
        "{body}"
    );

    let (status, _, _) = send(&app, Method::DELETE, "/users/heidi", &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let (status, headers, body) = send(&app, method, "/users/heidi", &admin, None).await;
        assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    }
    let (status, headers, body) = send(
        &app,
        Method::PATCH,
        "/users/heidi",
        &admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
}

async fn pagination_visits_every_user_once_while_users_are_added(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let admin = app.admin_token().await;
    let mut expected: HashSet<String> = HashSet::from(["admin".to_owned()]);
    for index in 0..120 {
        let username = format!("user{index:03}");
        let (status, _, body) = send(
            &app,
            Method::POST,
            "/users",
            &admin,
            Some(json!({"username": username, "password": GOOD_PASSWORD})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        expected.insert(username);
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/users?limit=25&cursor={cursor}"),
            None => "/users?limit=25".to_owned(),
        };
        let (status, _, page) = send(&app, Method::GET, &path, &admin, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 25);
        seen.extend(
            items
                .iter()
                .map(|user| user["username"].as_str().expect("username").to_owned()),
        );
        // Concurrent inserts, before and after the cursor, must not disturb the walk.
        for name in [format!("aaa-late{added}"), format!("zzz-late{added}")] {
            send(
                &app,
                Method::POST,
                "/users",
                &admin,
                Some(json!({"username": name, "password": GOOD_PASSWORD})),
            )
            .await;
        }
        added += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no user is visited twice");
    assert!(
        expected.is_subset(&unique),
        "every user that existed throughout is visited"
    );
    let (status, headers, body) = send(&app, Method::GET, "/users?limit=0", &admin, None).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, headers, body) = send(&app, Method::GET, "/users?limit=201", &admin, None).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, default_page) = send(&app, Method::GET, "/users", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(default_page["items"].as_array().map(Vec::len), Some(50));
}

async fn the_last_administrator_cannot_be_removed(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let admin = app.admin_token().await;

    for (method, body) in [
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::PATCH, Some(json!({"scopes": ["profile:read"]}))),
        (Method::DELETE, None),
    ] {
        let (status, headers, problem) = send(&app, method, "/users/admin", &admin, body).await;
        assert_problem(status, &headers, &problem, StatusCode::CONFLICT);
    }

    let (status, _, _) = send(
        &app,
        Method::POST,
        "/users",
        &admin,
        Some(json!({"username": "ivan", "password": GOOD_PASSWORD, "scopes": ["users:write", "users:read", "profile:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = send(
        &app,
        Method::PATCH,
        "/users/admin",
        &admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another administrator exists now");
}

#[tokio::test]
async fn a_disabled_users_live_token_fails_on_the_very_next_request() {
    let app = spawn_app().await;
    app.create_user("judy", "profile:read").await;
    let body = app.login_ok("judy", GOOD_PASSWORD).await;
    let token = access_token(&body);
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::OK
    );
    let admin = app.admin_token().await;

    let (status, _, _) = send(
        &app,
        Method::PATCH,
        "/users/judy",
        &admin,
        Some(json!({"disabled": true})),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
        ])
        .await;
    assert_eq!(refresh.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_admin_operation_needs_its_scope() {
    let app = spawn_app().await;
    let form = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("scope", "profile:read profile:write"),
    ];
    let profile_only = access_token(&app.token(&form).await.json::<Value>().await.expect("json"));

    for (method, path, body, scope) in [
        (
            Method::POST,
            "/users",
            Some(json!({"username": "kim", "password": GOOD_PASSWORD})),
            "users:write",
        ),
        (Method::GET, "/users", None, "users:read"),
        (Method::GET, "/users/admin", None, "users:read"),
        (
            Method::PATCH,
            "/users/admin",
            Some(json!({"full_name": "x"})),
            "users:write",
        ),
        (Method::DELETE, "/users/admin", None, "users:write"),
    ] {
        let (status, headers, _) = send(&app, method.clone(), path, &profile_only, body).await;

        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            headers["www-authenticate"],
            format!(r#"Bearer realm="authgate", error="insufficient_scope", scope="{scope}""#)
                .as_str()
        );
    }
}

#[tokio::test]
async fn malformed_bodies_get_problem_details() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let post = |content_type: &'static str, body: String| {
        app.client
            .post(app.url("/users"))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let (status, headers, body) = parts(
        post("application/json", "{not json".into())
            .await
            .expect("request"),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    let (status, headers, body) =
        parts(post("text/plain", "{}".into()).await.expect("request")).await;
    assert_problem(status, &headers, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, headers, body) = parts(
        post("application/json", json!({"username": "x"}).to_string())
            .await
            .expect("request"),
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let huge =
        json!({"username": "big", "password": GOOD_PASSWORD, "full_name": "x".repeat(70 * 1024)})
            .to_string();
    let (status, headers, body) =
        parts(post("application/json", huge).await.expect("request")).await;
    assert_problem(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let (status, _, _) = parts(post("application/json", nested).await.expect("request")).await;
    assert!(status.is_client_error(), "{status}");
    for (username, password, rule) in [
        ("ab", GOOD_PASSWORD, "username"),
        ("bad name", GOOD_PASSWORD, "username"),
        ("lena", "short", "at least 15"),
        ("lena", "lena-is-my-name-and-long", "username"),
        ("lena", "password1234", "at least"),
    ] {
        let (status, headers, body) = parts(
            post(
                "application/json",
                json!({"username": username, "password": password}).to_string(),
            )
            .await
            .expect("request"),
        )
        .await;
        assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(rule)),
            "{rule}: {body}"
        );
    }
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        StatusCode::OK
    );
}

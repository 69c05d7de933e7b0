//! Hostile input (issue 6): bytes no honest client sends, sent over raw TCP. Every answer is
//! a 4xx in the endpoint's error shape, never a 5xx, and the service stays healthy after.
//!
//! What hyper does before the router sees anything: a header value with a control byte (NUL,
//! a bare CR) or a malformed request line or header name is answered `400` by hyper itself,
//! with an empty body, and the connection closes. Header values with bytes above 0x7F reach
//! the app, which treats them as absent or invalid. The request head (request line and every
//! header) may fill hyper's read buffer, about 408 KiB (8 KiB + 100 × 4 KiB), and hold at most
//! 100 fields; beyond either hyper answers `431`. So a 100 KB `Authorization` header does
//! reach the app, and is refused there: access tokens over 8 KiB are malformed on sight.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, GOOD_PASSWORD, TestApp, spawn_app};
use crate::raw::{self, Exchange, RawResponse};

/// The request body limit of SPEC §4.
const BODY_LIMIT: usize = 64 * 1024;

const FORM: &[u8] = b"Content-Type: application/x-www-form-urlencoded";
const JSON: &[u8] = b"Content-Type: application/json";

fn address(app: &TestApp) -> &str {
    app.base.trim_start_matches("http://")
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Authorization: Bearer {token}").into_bytes()
}

/// Asserts a response (not a dropped connection) that is not a server error.
#[track_caller]
fn no_server_error(exchange: Exchange, what: &str) -> RawResponse {
    let response = exchange.response();
    assert!(
        response.status < 500,
        "{what}: server error {}",
        response.describe()
    );
    response
}

/// Asserts an RFC 6749 §5.2 error with this status and code.
#[track_caller]
fn assert_oauth(response: &RawResponse, status: u16, error: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.describe());
    assert_eq!(response.json()["error"], error, "{what}");
    assert_eq!(response.header("cache-control"), Some("no-store"), "{what}");
}

/// Asserts an RFC 9457 problem document with this status.
#[track_caller]
fn assert_problem(response: &RawResponse, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.describe());
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(response.json()["status"], status, "{what}");
}

/// A token-endpoint form `POST` of raw bytes.
async fn post_form(app: &TestApp, path: &str, body: &[u8]) -> RawResponse {
    let exchange = raw::send(address(app), &raw::request("POST", path, &[FORM], body)).await;
    no_server_error(exchange, &String::from_utf8_lossy(body))
}

/// A JSON request of raw bytes, authenticated with `token`.
async fn send_json(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> RawResponse {
    let exchange = raw::send(
        address(app),
        &raw::request(method, path, &[JSON, &bearer(token)], body),
    )
    .await;
    no_server_error(
        exchange,
        &String::from_utf8_lossy(&body[..body.len().min(80)]),
    )
}

/// The whole answer to a failed password login, for byte comparisons: status, every header
/// but `date`, and the body.
async fn login_answer(
    app: &TestApp,
    username: &str,
    password: &str,
) -> (StatusCode, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let response = app.login(username, password).await;
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

#[tokio::test]
async fn non_utf8_and_nul_bytes_in_form_fields_are_client_errors() {
    let app = spawn_app().await;
    let wrong_password = post_form(
        &app,
        "/token",
        b"grant_type=password&username=admin&password=not-the-password-123",
    )
    .await;

    let not_utf8: [&[u8]; 5] = [
        b"grant_type=password&username=admin&password=%FF%FE",
        b"grant_type=password&username=admin&password=\xff\xfe",
        b"grant_type=password&%C0%80=1&username=admin&password=x",
        b"grant_type=\xc3&username=admin&password=x",
        b"grant_type=refresh_token&refresh_token=%ED%A0%80",
    ];
    let nul: [&[u8]; 4] = [
        b"grant_type=password&username=ad%00min&password=some-password-123",
        b"grant_type=password&username=admin&password=pass%00word-123456",
        b"grant_type=password&username=admin\x00&password=some-password-123",
        b"grant_type=password&username=%00&password=%00",
    ];

    for body in not_utf8 {
        let response = post_form(&app, "/token", body).await;
        assert_oauth(
            &response,
            400,
            "invalid_request",
            &String::from_utf8_lossy(body),
        );
    }
    for body in nul {
        let response = post_form(&app, "/token", body).await;
        assert_oauth(
            &response,
            400,
            "invalid_grant",
            &String::from_utf8_lossy(body),
        );
        assert_eq!(response.body, wrong_password.body, "like a wrong password");
    }
    let revoke = post_form(&app, "/token/revoke", b"token=%FF").await;
    assert_oauth(&revoke, 400, "invalid_request", "revoke");
    let refresh = post_form(
        &app,
        "/token",
        b"grant_type=refresh_token&refresh_token=a%00b",
    )
    .await;
    assert_oauth(&refresh, 400, "invalid_grant", "refresh");
}

#[tokio::test]
async fn non_utf8_and_nul_bytes_in_json_bodies_are_client_errors() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let user = |username: &str| {
        format!(r#"{{"username":"{username}","password":"{GOOD_PASSWORD}"}}"#).into_bytes()
    };
    let mut raw_byte = user("bob");
    raw_byte.insert(15, 0xFF);

    let malformed: [(&str, Vec<u8>); 4] = [
        ("a raw 0xFF in a string", raw_byte),
        ("a lone surrogate", user(r"bob\ud800")),
        (
            "a NUL between tokens",
            b"{\"username\":\"bob\"\x00}".to_vec(),
        ),
        ("not JSON at all", b"\xff\xfe\x00\x01".to_vec()),
    ];
    for (what, body) in malformed {
        let response = send_json(&app, "POST", "/users", &token, &body).await;
        assert_problem(&response, 400, what);
    }
    let nul_name = send_json(&app, "POST", "/users", &token, &user(r"bob\u0000")).await;
    assert_problem(&nul_name, 422, "a NUL in the username");
    let password_change = send_json(
        &app,
        "PUT",
        "/users/me/password",
        &token,
        b"{\"current_password\":\"\xff\",\"new_password\":\"x\"}",
    )
    .await;
    assert_problem(&password_change, 400, "a raw 0xFF in a password");
}

#[tokio::test]
async fn non_utf8_and_nul_bytes_in_headers_are_client_errors() {
    let app = spawn_app().await;
    let login = b"grant_type=password&username=admin&password=not-the-password-123";
    let send = |target: &'static str, headers: Vec<Vec<u8>>, body: &'static [u8]| {
        let address = address(&app).to_owned();
        async move {
            let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
            let method = if body.is_empty() { "GET" } else { "POST" };
            raw::send(&address, &raw::request(method, target, &headers, body)).await
        }
    };

    let obs_text_bearer = no_server_error(
        send(
            "/users/me",
            vec![b"Authorization: Bearer \xff\xfe\xfd".to_vec()],
            b"",
        )
        .await,
        "bearer of bytes above 0x7F",
    );
    let obs_text_content_type = no_server_error(
        send(
            "/token",
            vec![b"Content-Type: application/x-www-form-urlencoded\xff".to_vec()],
            login,
        )
        .await,
        "content type with a byte above 0x7F",
    );
    let basic_not_utf8 = no_server_error(
        send(
            "/token",
            vec![FORM.to_vec(), b"Authorization: Basic //46c2VjcmV0".to_vec()],
            login,
        )
        .await,
        "Basic credentials that decode to non-UTF-8",
    );
    let nul_value = send(
        "/users/me",
        vec![b"Authorization: Bearer ab\x00cd".to_vec()],
        b"",
    )
    .await;
    let nul_name = send("/healthz", vec![b"X-Ev\x00il: 1".to_vec()], b"").await;
    let bare_cr = send("/healthz", vec![b"X-Evil: a\rb".to_vec()], b"").await;

    assert_eq!(
        obs_text_bearer.status,
        401,
        "{}",
        obs_text_bearer.describe()
    );
    assert_eq!(obs_text_bearer.json()["error"], "unauthorized");
    assert_oauth(
        &obs_text_content_type,
        400,
        "invalid_request",
        "content type",
    );
    assert_oauth(&basic_not_utf8, 400, "invalid_request", "Basic");
    for (what, exchange) in [
        ("NUL in a value", nul_value),
        ("NUL in a name", nul_name),
        ("bare CR", bare_cr),
    ] {
        assert_eq!(
            exchange.status(),
            Some(400),
            "{what}: hyper refuses it: {exchange:?}"
        );
    }
}

#[tokio::test]
async fn over_long_credentials_are_answered_exactly_like_a_wrong_password() {
    let app = spawn_app().await;
    let wrong = login_answer(&app, "admin", "not-the-password-123").await;
    let username_65 = "u".repeat(65);
    let username_huge = "u".repeat(10_000);
    let password_1025 = "p".repeat(1025);
    // 342 characters, but 1026 bytes: the limit is on bytes.
    let password_multibyte = "€".repeat(342);

    let answers = [
        (
            "65-byte username",
            login_answer(&app, &username_65, "some-password-123").await,
        ),
        (
            "10 000-byte username",
            login_answer(&app, &username_huge, "some-password-123").await,
        ),
        (
            "1025-byte password",
            login_answer(&app, "admin", &password_1025).await,
        ),
        (
            "1026-byte password of 342 characters",
            login_answer(&app, "admin", &password_multibyte).await,
        ),
    ];

    assert_eq!(wrong.0, StatusCode::BAD_REQUEST);
    for (what, answer) in answers {
        assert_eq!(answer, wrong, "{what}");
    }
    app.login_ok("admin", ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_413_whether_declared_or_chunked() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let auth = bearer(&token);
    // A well-formed form of exactly `size` bytes.
    let form = |size: usize| {
        let prefix = b"grant_type=password&username=admin&password=";
        let mut body = prefix.to_vec();
        body.resize(size, b'p');
        body
    };
    let json = |size: usize| {
        let mut body = br#"{"username":"bob","password":""#.to_vec();
        body.resize(size - 2, b'p');
        body.extend_from_slice(br#""}"#);
        body
    };
    let over = BODY_LIMIT + 1;
    let exchange = |request: Vec<u8>| {
        let address = address(&app).to_owned();
        async move { raw::send(&address, &request).await }
    };

    let token_declared = exchange(raw::request("POST", "/token", &[FORM], &form(over))).await;
    let token_chunked = exchange(raw::chunked_request(
        "POST",
        "/token",
        &[FORM],
        &form(over),
        4096,
    ))
    .await;
    let users_declared =
        exchange(raw::request("POST", "/users", &[JSON, &auth], &json(over))).await;
    let users_chunked = exchange(raw::chunked_request(
        "POST",
        "/users",
        &[JSON, &auth],
        &json(over),
        1000,
    ))
    .await;
    let health_declared = exchange(raw::request("GET", "/healthz", &[], &form(over))).await;
    let at_the_limit = exchange(raw::request("POST", "/token", &[FORM], &form(BODY_LIMIT))).await;

    for (what, exchange) in [("declared", token_declared), ("chunked", token_chunked)] {
        let response = no_server_error(exchange, what);
        assert_oauth(&response, 413, "invalid_request", what);
    }
    for (what, exchange) in [
        ("declared JSON", users_declared),
        ("chunked JSON", users_chunked),
        ("a body where none is read", health_declared),
    ] {
        assert_problem(&no_server_error(exchange, what), 413, what);
    }
    // Exactly 64 KiB is read and judged: here, a password too long to be anyone's.
    let at_the_limit = no_server_error(at_the_limit, "at the limit");
    assert_oauth(&at_the_limit, 400, "invalid_grant", "exactly 64 KiB");
}

#[tokio::test]
async fn deeply_nested_huge_and_odd_json_is_a_client_error() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let depth = 25_000;
    let nested_arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let nested_objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let many_fields = format!(
        "{{{}\"username\":\"bob\",\"password\":\"{GOOD_PASSWORD}\"}}",
        (0..4_000)
            .map(|index| format!("\"f{index}\":{index},"))
            .collect::<String>()
    );
    let long_name = format!(
        r#"{{"username":"bob","password":"{GOOD_PASSWORD}","full_name":"{}"}}"#,
        "x".repeat(60_000)
    );
    let long_number = format!(r#"{{"username":1{}}}"#, "0".repeat(60_000));
    let duplicate_keys =
        format!(r#"{{"username":"bob","username":"eve","password":"{GOOD_PASSWORD}"}}"#);

    // Typed bodies refuse nesting at the first value of the wrong type (422), and
    // serde_json's recursion limit of 128 would stop it anyway (400): no stack is at risk.
    let cases: [(&str, &[u8], &[u16]); 9] = [
        (
            "25 000 nested arrays",
            nested_arrays.as_bytes(),
            &[400, 422],
        ),
        (
            "10 000 nested objects",
            nested_objects.as_bytes(),
            &[400, 422],
        ),
        ("4 000 unknown fields", many_fields.as_bytes(), &[422]),
        ("a 60 000-character full name", long_name.as_bytes(), &[422]),
        ("a 60 000-digit number", long_number.as_bytes(), &[400, 422]),
        ("a duplicated key", duplicate_keys.as_bytes(), &[400, 422]),
        ("an array", b"[]", &[422]),
        ("null", b"null", &[422]),
        ("nothing", b"", &[400]),
    ];
    for (what, body, expected) in cases {
        let response = send_json(&app, "POST", "/users", &token, body).await;
        assert!(
            expected.contains(&response.status),
            "{what}: {}",
            response.describe()
        );
        assert_problem(&response, response.status, what);
    }
    let nested_field = format!(
        r#"{{"full_name":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let patch = send_json(
        &app,
        "PATCH",
        "/users/admin",
        &token,
        nested_field.as_bytes(),
    )
    .await;
    assert!(
        [400, 422].contains(&patch.status),
        "nested arrays in a PATCH field: {}",
        patch.describe()
    );
}

#[tokio::test]
async fn repeated_form_parameters_are_invalid_requests() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let bodies: [(&str, &[u8]); 5] = [
        (
            "/token",
            b"grant_type=password&grant_type=password&username=admin&password=x",
        ),
        (
            "/token",
            b"grant_type=password&username=admin&username=eve&password=x",
        ),
        (
            "/token",
            b"grant_type=password&username=admin&password=a&password=b",
        ),
        (
            "/token",
            b"gr%61nt_type=password&grant_type=password&username=admin&password=x",
        ),
        ("/token/revoke", b"token=a&token=b"),
    ];

    for (path, body) in bodies {
        let response = post_form(&app, path, body).await;
        assert_oauth(
            &response,
            400,
            "invalid_request",
            &String::from_utf8_lossy(body),
        );
        assert!(
            response.json()["error_description"]
                .as_str()
                .is_some_and(|why| why.contains("more than once")),
            "{}",
            response.describe()
        );
    }
    let introspect = no_server_error(
        raw::send(
            address(&app),
            &raw::request(
                "POST",
                "/token/introspect",
                &[FORM, &bearer(&token)],
                b"token=a&token=b",
            ),
        )
        .await,
        "introspect",
    );
    assert_oauth(&introspect, 400, "invalid_request", "introspect");
}

#[tokio::test]
async fn oversized_headers_are_client_errors() {
    let app = spawn_app().await;
    let hundred_kb = "A".repeat(100 * 1024);
    let send = |target: &'static str, headers: Vec<Vec<u8>>, body: &'static [u8]| {
        let address = address(&app).to_owned();
        async move {
            let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
            let method = if body.is_empty() { "GET" } else { "POST" };
            raw::send(&address, &raw::request(method, target, &headers, body)).await
        }
    };
    let login = b"grant_type=password&username=admin&password=not-the-password-123";

    let huge_bearer = no_server_error(
        send("/users/me", vec![bearer(&hundred_kb)], b"").await,
        "bearer",
    );
    let huge_basic = no_server_error(
        send(
            "/token",
            vec![
                FORM.to_vec(),
                format!("Authorization: Basic {hundred_kb}").into_bytes(),
            ],
            login,
        )
        .await,
        "basic",
    );
    let huge_introspection_bearer = no_server_error(
        send(
            "/token/introspect",
            vec![FORM.to_vec(), bearer(&hundred_kb)],
            b"token=x",
        )
        .await,
        "introspection bearer",
    );
    let huge_unrelated = no_server_error(
        send(
            "/healthz",
            vec![format!("X-Padding: {hundred_kb}").into_bytes()],
            b"",
        )
        .await,
        "an unrelated header",
    );
    let beyond_buffer = send(
        "/healthz",
        vec![format!("X-Padding: {}", "A".repeat(500 * 1024)).into_bytes()],
        b"",
    )
    .await;
    let too_many = send(
        "/healthz",
        (0..150)
            .map(|index| format!("X-Field-{index}: {index}").into_bytes())
            .collect(),
        b"",
    )
    .await;

    assert_eq!(huge_bearer.status, 401, "{}", huge_bearer.describe());
    assert_eq!(huge_bearer.json()["error"], "invalid_token");
    assert_oauth(&huge_basic, 400, "invalid_request", "a 100 KB Basic header");
    assert_eq!(huge_introspection_bearer.status, 401);
    assert_eq!(
        huge_unrelated.status, 200,
        "under hyper's limit and ignored"
    );
    for (what, exchange) in [
        ("a 500 KB header", beyond_buffer),
        ("150 header fields", too_many),
    ] {
        // hyper answers 431 and closes; if the close resets the connection before the
        // answer is read, there is no answer at all, which is still not a server error.
        assert!(
            matches!(exchange.status(), Some(431) | None),
            "{what}: {exchange:?}"
        );
    }
}

#[tokio::test]
async fn sql_looking_usernames_and_passwords_are_just_wrong_credentials() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let wrong = login_answer(&app, "nobody", "not-the-password-123").await;
    let usernames = [
        "admin' --",
        "' OR '1'='1",
        "admin\"; DROP TABLE users; --",
        "admin' UNION SELECT password_hash FROM users --",
        "%' OR username LIKE '%",
    ];
    let sql_password = "' OR '1'='1' -- spelled out long enough";

    for username in usernames {
        assert_eq!(
            login_answer(&app, username, ADMIN_PASSWORD).await,
            wrong,
            "{username}"
        );
    }
    for password in ["' OR 1=1 --", "x' OR password_hash LIKE '%"] {
        assert_eq!(
            login_answer(&app, "admin", password).await,
            wrong,
            "{password}"
        );
    }
    let created = app
        .client
        .post(app.url("/users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"username": "robert.tables", "password": sql_password}))
        .send()
        .await
        .expect("create");
    let refused = app
        .client
        .post(app.url("/users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"username": "robert'); DROP TABLE users;--", "password": GOOD_PASSWORD}))
        .send()
        .await
        .expect("create");
    let lookup = app
        .get_with("/users/%27%20OR%20%271%27%3D%271", &token)
        .await;
    let cursor = app
        .get_with("/users?cursor=%27%20OR%201%3D1%20--&limit=1", &token)
        .await;

    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(lookup.status().is_client_error(), "{}", lookup.status());
    assert!(cursor.status().is_client_error(), "{}", cursor.status());
    app.login_ok("robert.tables", sql_password).await;
    let users: Value = app
        .get_with("/users", &token)
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|user| user["username"].as_str())
        .collect();
    assert_eq!(names, ["admin", "robert.tables"], "the table is intact");
}

/// A small deterministic generator (splitmix64), so a failing barrage can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).expect("bound")).expect("index")
    }

    fn pick<'a, T: ?Sized>(&mut self, choices: &[&'a T]) -> &'a T {
        choices[self.below(choices.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let length = self.below(max + 1);
        (0..length).map(|_| self.next().to_le_bytes()[0]).collect()
    }

    /// Mostly printable text with the odd hostile byte.
    fn text(&mut self, max: usize) -> Vec<u8> {
        let length = self.below(max + 1);
        (0..length)
            .map(|_| match self.below(20) {
                0 => 0x00,
                1 => 0xFF,
                2 => b'%',
                3 => b'&',
                4 => b'=',
                _ => b' ' + u8::try_from(self.below(95)).expect("printable"),
            })
            .collect()
    }

    /// Header-safe text: printable, with the odd byte above 0x7F, which hyper passes on.
    fn header_text(&mut self, max: usize) -> Vec<u8> {
        let length = self.below(max + 1);
        (0..length)
            .map(|_| match self.below(30) {
                0 => 0xFF,
                1 => 0x80,
                _ => b' ' + u8::try_from(self.below(95)).expect("printable"),
            })
            .collect()
    }

    /// One malformed (or merely odd) request.
    fn request(&mut self, token: &str) -> Vec<u8> {
        let method = self.pick(&[
            "POST",
            "POST",
            "POST",
            "GET",
            "GET",
            "PUT",
            "PATCH",
            "DELETE",
            "OPTIONS",
            "HEAD",
            "TRACE",
            "G\x01T",
            "POST POST",
        ]);
        let path = self.pick(&[
            "/token",
            "/token/revoke",
            "/token/introspect",
            "/users",
            "/users/me",
            "/users/me/password",
            "/users/admin",
            "/healthz",
            "/readyz",
            "/.well-known/jwks.json",
            "/.well-known/oauth-authorization-server",
            "/openapi.json",
            "/docs",
            "/nowhere",
            "*",
            "http://authgate.test/token",
            "/users/%FF%00",
            "/../../etc/passwd",
            "/token?grant_type=password",
        ]);
        let mut target = path.to_owned();
        if self.below(4) == 0 {
            target.push('?');
            target.extend(self.text(40).iter().map(|byte| format!("%{byte:02X}")));
        }
        let mut headers: Vec<Vec<u8>> = Vec::new();
        for _ in 0..self.below(4) {
            let header = match self.below(10) {
                0 | 1 => FORM.to_vec(),
                2 => JSON.to_vec(),
                3 => [b"Content-Type: ".as_slice(), &self.header_text(30)].concat(),
                4 => bearer(token),
                5 => [b"Authorization: Bearer ".as_slice(), &self.header_text(200)].concat(),
                6 => [b"Authorization: Basic ".as_slice(), &self.header_text(60)].concat(),
                7 => [b"X-Forwarded-For: ".as_slice(), &self.header_text(30)].concat(),
                8 => b"Content-Length: 5".to_vec(),
                // Now and then a header no parser should accept: control bytes in it.
                _ => [b"X-Odd: ".as_slice(), &self.text(50)].concat(),
            };
            headers.push(header);
        }
        let body = match self.below(5) {
            0 => Vec::new(),
            1 => self.bytes(2048),
            2 => [
                b"grant_type=password&username=".as_slice(),
                &self.text(20),
                b"&password=",
                &self.text(40),
            ]
            .concat(),
            3 => [
                b"{\"username\":\"".as_slice(),
                &self.text(30),
                b"\",\"password\":",
                &self.text(30),
                b"}",
            ]
            .concat(),
            _ => self.text(500),
        };
        let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        if self.below(6) == 0 {
            raw::chunked_request(method, &target, &headers, &body, 1 + self.below(64))
        } else {
            raw::request(method, &target, &headers, &body)
        }
    }
}

#[tokio::test]
async fn a_barrage_of_malformed_requests_leaves_the_service_healthy() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mut random = Random(0x6175_7468_6761_7465);
    let mut answered = 0;

    for index in 0..400 {
        let request = random.request(&token);

        let exchange = raw::send(address(&app), &request).await;

        if let Exchange::Response(response) = &exchange {
            answered += 1;
            assert!(
                response.status < 500,
                "request {index} got {}: {:?}",
                response.describe(),
                String::from_utf8_lossy(&request[..request.len().min(300)])
            );
        }
    }
    // Failed logins in the barrage count against the address and username budgets; let the
    // windows pass before the final login.
    app.advance(Duration::from_secs(3600));
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");

    assert!(
        answered > 300,
        "most requests got an HTTP answer: {answered}"
    );
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
    app.login_ok("admin", ADMIN_PASSWORD).await;
}

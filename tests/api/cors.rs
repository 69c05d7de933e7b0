//! CORS (issue 6) through the real binary: off unless `--cors-origins` names an origin, and
//! then only for exactly the origins named.

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Response, StatusCode};

use crate::helpers::{ADMIN_PASSWORD, Backend, TempDatabase};
use crate::process::{Server, command};

const ALLOWED: &str = "https://app.example";

async fn preflight(client: &Client, server: &Server, origin: &str) -> Response {
    client
        .request(Method::OPTIONS, server.url("/token"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .expect("preflight")
}

async fn login_from(client: &Client, server: &Server, origin: &str) -> Response {
    client
        .post(server.url("/token"))
        .header("origin", origin)
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .expect("login")
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn without_cors_origins_no_response_carries_cors_headers() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let server = Server::start(command(&db), &[]);
    let client = Client::new();

    let preflight = preflight(&client, &server, ALLOWED).await;
    let login = login_from(&client, &server, ALLOWED).await;

    assert!(
        cors_headers(preflight.headers()).is_empty(),
        "{:?}",
        preflight.headers()
    );
    assert_eq!(login.status(), StatusCode::OK);
    assert!(
        cors_headers(login.headers()).is_empty(),
        "{:?}",
        login.headers()
    );
}

#[tokio::test]
async fn with_cors_origins_a_token_preflight_succeeds_only_for_a_listed_origin() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let server = Server::start(
        command(&db),
        &[
            "--cors-origins",
            "https://app.example,https://admin.example",
        ],
    );
    let client = Client::new();

    let allowed = preflight(&client, &server, ALLOWED).await;
    let other = preflight(&client, &server, "https://evil.example").await;
    let lookalike = preflight(&client, &server, "https://app.example.evil.example").await;
    let login = login_from(&client, &server, ALLOWED).await;
    let foreign_login = login_from(&client, &server, "https://evil.example").await;

    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), ALLOWED);
    assert!(header(headers, "access-control-allow-methods").contains("POST"));
    let allowed_headers = header(headers, "access-control-allow-headers").to_ascii_lowercase();
    assert!(
        allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert_eq!(header(headers, "access-control-max-age"), "600");
    assert!(
        header(headers, "vary")
            .to_ascii_lowercase()
            .contains("origin"),
        "caches must not serve one origin's answer to another: {headers:?}"
    );
    for response in [&other, &lookalike] {
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{:?}",
            response.headers()
        );
    }
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(
        header(login.headers(), "access-control-allow-origin"),
        ALLOWED
    );
    assert_eq!(
        foreign_login.status(),
        StatusCode::OK,
        "CORS is no authentication"
    );
    assert!(
        foreign_login
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

//! Bearer authentication of `GET /users/me`: success and every failure of SPEC §3.

use std::time::Duration;

use authgate::Secret;
use authgate_application::ports::SigningAlgorithm;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, Backend, TestApp, access_token, backend_tests, parts, spawn_app, spawn_app_with,
};

const HS256_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

backend_tests!(a_valid_token_reads_the_current_user);

async fn a_valid_token_reads_the_current_user(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let token = app.admin_token().await;

    let (status, headers, body) = parts(app.get_with("/users/me", &token).await).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["username"], "admin");
    assert_eq!(body["disabled"], false);
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
    );
    assert!(body.get("password_hash").is_none() && body.get("password").is_none());
}

#[track_caller]
fn assert_invalid_token(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let challenge = headers["www-authenticate"].to_str().expect("ascii");
    assert!(
        challenge
            .starts_with(r#"Bearer realm="authgate", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    assert_eq!(body["error"], "invalid_token");
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    parts(app.get_with("/users/me", token).await).await
}

fn segments(token: &str) -> (String, String, String) {
    let mut parts = token.split('.').map(str::to_owned);
    (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    )
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
}

fn encode_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let signing_input = format!("{}.{}", encode_segment(header), encode_segment(claims));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn no_credentials_get_a_bare_bearer_challenge() {
    let app = spawn_app().await;

    for authorization in [
        None,
        Some("Basic YWRtaW46eA=="),
        Some("Bearer"),
        Some("Bearer "),
    ] {
        let mut request = app.client.get(app.url("/users/me"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let (status, headers, body) = parts(request.send().await.expect("request")).await;

        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            headers["www-authenticate"], r#"Bearer realm="authgate""#,
            "{authorization:?}"
        );
        assert_eq!(body["error"], "unauthorized");
    }
}

#[tokio::test]
async fn garbage_tokens_are_invalid_token() {
    let app = spawn_app().await;
    let huge = "a".repeat(100 * 1024);

    for token in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9.e30.",
        "....",
        huge.as_str(),
    ] {
        let (status, headers, body) = me(&app, token).await;

        assert_invalid_token(status, &headers, &body);
    }
}

#[tokio::test]
async fn a_tampered_signature_or_payload_is_rejected() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (header, payload, signature) = segments(&token);
    let mut signature_bytes = URL_SAFE_NO_PAD.decode(&signature).expect("base64url");
    signature_bytes[0] ^= 1;
    let mut claims = decode_segment(&payload);
    claims["username"] = json!("mallory");

    let bad_signature = format!(
        "{header}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(signature_bytes)
    );
    let bad_payload = format!("{header}.{}.{signature}", encode_segment(&claims));

    for token in [bad_signature, bad_payload] {
        let (status, headers, body) = me(&app, &token).await;
        assert_invalid_token(status, &headers, &body);
    }
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (header, payload, _) = segments(&token);
    let mut unsigned = decode_segment(&header);
    unsigned["alg"] = json!("none");

    for candidate in [
        format!("{}.{payload}.", encode_segment(&unsigned)),
        format!("{}.{payload}", encode_segment(&unsigned)),
    ] {
        let (status, headers, body) = me(&app, &candidate).await;
        assert_invalid_token(status, &headers, &body);
    }
}

#[tokio::test]
async fn hs256_signed_with_the_eddsa_public_key_is_rejected() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (header, payload, _) = segments(&token);
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let x = jwks["keys"][0]["x"].as_str().expect("Ed25519 x").to_owned();
    let mut confused = decode_segment(&header);
    confused["alg"] = json!("HS256");
    let claims = decode_segment(&payload);

    for secret in [URL_SAFE_NO_PAD.decode(&x).expect("x"), x.into_bytes()] {
        let forged = hs256(&confused, &claims, &secret);
        let (status, headers, body) = me(&app, &forged).await;
        assert_invalid_token(status, &headers, &body);
    }
}

#[tokio::test]
async fn an_expired_token_is_rejected_after_the_leeway() {
    let app = spawn_app().await;
    let token = app.admin_token().await;

    app.advance(Duration::from_secs(15 * 60 + 29));
    assert_eq!(me(&app, &token).await.0, StatusCode::OK);
    app.advance(Duration::from_secs(2));
    let (status, headers, body) = me(&app, &token).await;

    assert_invalid_token(status, &headers, &body);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .is_ok_and(|value| value.contains("expired"))
    );
}

#[tokio::test]
async fn tokens_for_another_issuer_or_audience_are_rejected() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let database_url = app.db.url.clone();
    let other_issuer = spawn_app_with(Backend::Sqlite, |config| {
        config.database_url = database_url.clone();
        config.issuer = Some("https://elsewhere.example".into());
    })
    .await;
    let other_audience = spawn_app_with(Backend::Sqlite, |config| {
        config.database_url = database_url.clone();
        config.issuer = Some(app.base.clone());
        config.audience = "another-api".into();
    })
    .await;

    for (other, reason) in [(&other_issuer, "issuer"), (&other_audience, "audience")] {
        let (status, headers, body) = me(other, &token).await;

        assert_invalid_token(status, &headers, &body);
        assert!(
            headers["www-authenticate"]
                .to_str()
                .is_ok_and(|value| value.contains(reason)),
            "{reason}"
        );
    }
}

async fn hs256_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |config| {
        config.signing_alg = SigningAlgorithm::Hs256;
        config.jwt_secret = Some(Secret::new(HS256_SECRET.into()));
    })
    .await
}

#[tokio::test]
async fn hs256_tokens_work_when_configured() {
    let app = hs256_app().await;
    let token = app.admin_token().await;

    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");

    assert_eq!(me(&app, &token).await.0, StatusCode::OK);
    assert_eq!(decode_segment(&segments(&token).0)["alg"], "HS256");
    assert_eq!(
        jwks["keys"],
        json!([]),
        "the HMAC secret is never published"
    );
}

#[tokio::test]
async fn a_token_that_is_not_typed_as_an_access_token_is_rejected() {
    let app = hs256_app().await;
    let token = app.admin_token().await;
    let (header, payload, _) = segments(&token);
    let claims = decode_segment(&payload);

    for typ in [json!("JWT"), json!("id_token+jwt"), Value::Null] {
        let mut header = decode_segment(&header);
        header["typ"] = typ.clone();
        let forged = hs256(&header, &claims, HS256_SECRET.as_bytes());
        let (status, headers, body) = me(&app, &forged).await;
        assert_invalid_token(status, &headers, &body);
    }
    let mut accepted = decode_segment(&header);
    accepted["typ"] = json!("application/at+jwt");
    assert_eq!(
        me(&app, &hs256(&accepted, &claims, HS256_SECRET.as_bytes()))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forged_claims_with_the_right_key_are_still_judged() {
    let app = hs256_app().await;
    let token = app.admin_token().await;
    let (header, payload, _) = segments(&token);
    let header = decode_segment(&header);
    let claims = decode_segment(&payload);

    for (claim, value) in [
        ("iss", json!("https://evil.example")),
        ("aud", json!("other")),
        ("exp", json!(1_000)),
    ] {
        let mut forged_claims = claims.clone();
        forged_claims[claim] = value;
        let forged = hs256(&header, &forged_claims, HS256_SECRET.as_bytes());

        let (status, headers, body) = me(&app, &forged).await;

        assert_invalid_token(status, &headers, &body);
    }
}

#[tokio::test]
async fn a_token_without_the_required_scope_is_403() {
    let app = spawn_app().await;
    let body: Value = app
        .token(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("scope", "users:read"),
        ])
        .await
        .json()
        .await
        .expect("json");

    let (status, headers, body) = me(&app, &access_token(&body)).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="authgate", error="insufficient_scope", scope="profile:read""#
    );
    assert_eq!(body["error"], "insufficient_scope");
}

#[tokio::test]
async fn the_server_stays_healthy_after_hostile_requests() {
    let app = spawn_app().await;
    let token = app.admin_token().await;

    for authorization in [
        "Bearer \u{0}",
        "Bearer a b c",
        "bEaReR x.y.z",
        "Bearer .....",
    ] {
        let response = app
            .client
            .get(app.url("/users/me"))
            .header("authorization", authorization)
            .send()
            .await;
        if let Ok(response) = response {
            assert!(response.status().is_client_error(), "{authorization:?}");
        }
    }

    assert_eq!(me(&app, &token).await.0, StatusCode::OK);
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

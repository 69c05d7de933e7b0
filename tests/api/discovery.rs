//! Key publication: tokens verify with an independent Ed25519 implementation using only the JWKS.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, backend_tests, spawn_app_with};

backend_tests!(an_access_token_verifies_against_the_published_jwks);

async fn an_access_token_verifies_against_the_published_jwks(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let token = app.admin_token().await;

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: Value = response.json().await.expect("json");
    let (signing_input, signature) = token.rsplit_once('.').expect("compact JWS");
    let (header, payload) = signing_input.split_once('.').expect("header and payload");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .expect("the token's kid is published");

    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["use"], &jwk["alg"]),
        (
            &"OKP".into(),
            &"Ed25519".into(),
            &"sig".into(),
            &"EdDSA".into()
        )
    );
    assert!(
        jwk.get("d").is_none(),
        "no private key material is published"
    );
    let public_key: [u8; 32] = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().expect("x"))
        .expect("b64")
        .try_into()
        .expect("32 bytes");
    let signature =
        Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).expect("b64")).expect("64 bytes");
    VerifyingKey::from_bytes(&public_key)
        .expect("valid point")
        .verify(signing_input.as_bytes(), &signature)
        .expect("the signature verifies independently");
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["aud"], "authgate");
    assert_eq!(claims["username"], "admin");
    assert_eq!(claims["client_id"], "default");
    assert!(uuid::Uuid::parse_str(claims["sub"].as_str().expect("sub")).is_ok());
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(exp, iat)| exp - iat),
        Some(900)
    );
}

#[tokio::test]
async fn rs256_keys_are_published_as_rsa_jwks() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.signing_alg = authgate_application::ports::SigningAlgorithm::Rs256;
    })
    .await;
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
    let key = &jwks["keys"][0];

    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert!(key["n"].as_str().is_some_and(|n| n.len() > 300) && key["e"] == "AQAB");
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn two_instances_on_one_database_share_the_signing_key() {
    let first = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let url = first.db.url.clone();
    let second = spawn_app_with(Backend::Sqlite, |config| {
        config.database_url = url;
        config.issuer = Some(first.base.clone());
    })
    .await;

    let token = first.admin_token().await;

    assert_eq!(
        second.get_with("/users/me", &token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn liveness_and_readiness_answer() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;

    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");

    assert_eq!(health, serde_json::json!({"status": "ok"}));
    assert_eq!(ready.status(), StatusCode::OK);
}

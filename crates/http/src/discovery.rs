//! Discovery documents: RFC 8414 authorization-server metadata and the RFC 7517 key set.

use authgate_application::ports::{PublicJwk, PublicKeyParams};
use authgate_domain::Scope;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::openapi::TAG_DISCOVERY;
use crate::token::GrantType;

/// RFC 8414 §2 authorization-server metadata.
#[derive(Serialize, ToSchema)]
pub(crate) struct ServerMetadata {
    /// This server's issuer identifier, the `iss` of its tokens.
    issuer: String,
    /// `POST` here for tokens.
    token_endpoint: String,
    /// `POST` here to revoke a token (RFC 7009).
    revocation_endpoint: String,
    /// `POST` here to introspect a token (RFC 7662), with a bearer token holding `tokens:introspect`.
    introspection_endpoint: String,
    /// The public keys that verify access tokens.
    jwks_uri: String,
    /// The grants enabled on this server.
    grant_types_supported: Vec<&'static str>,
    /// Empty: there is no authorization endpoint.
    response_types_supported: Vec<&'static str>,
    /// Every scope of the catalogue.
    scopes_supported: Vec<&'static str>,
    /// `none`: clients send a client id but are not authenticated.
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `none`, as for the token endpoint.
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Human-readable documentation: the Swagger UI.
    service_documentation: String,
}

/// Describe this authorization server.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = TAG_DISCOVERY,
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata))
)]
pub(crate) async fn get_server_metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    let issuer = state.config.issuer.clone();
    let base = issuer.trim_end_matches('/');
    Json(ServerMetadata {
        token_endpoint: format!("{base}/token"),
        revocation_endpoint: format!("{base}/token/revoke"),
        introspection_endpoint: format!("{base}/token/introspect"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        service_documentation: format!("{base}/docs"),
        grant_types_supported: GrantType::enabled(&state)
            .into_iter()
            .map(GrantType::as_str)
            .collect(),
        response_types_supported: Vec::new(),
        scopes_supported: Scope::ALL.iter().map(|scope| scope.as_str()).collect(),
        token_endpoint_auth_methods_supported: vec!["none"],
        revocation_endpoint_auth_methods_supported: vec!["none"],
        issuer,
    })
}

/// An RFC 7517 JSON Web Key Set.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeySet {
    /// The keys; empty when tokens are signed with a shared secret (HS256).
    keys: Vec<PublicKey>,
}

/// One public signing key: `OKP`/`Ed25519` (RFC 8037) or `RSA` (RFC 7518 §6.3).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "1", "use": "sig", "alg": "EdDSA"}))]
pub(crate) struct PublicKey {
    /// Key type: `OKP` or `RSA`.
    kty: &'static str,
    /// Curve, for `OKP`: `Ed25519`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    crv: Option<&'static str>,
    /// The Ed25519 public key, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    x: Option<String>,
    /// The RSA modulus, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    n: Option<String>,
    /// The RSA public exponent, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    e: Option<String>,
    /// Key id, the `kid` header of the tokens it verifies.
    kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    key_use: &'static str,
    /// `EdDSA` or `RS256`.
    alg: &'static str,
}

impl From<PublicJwk> for PublicKey {
    fn from(jwk: PublicJwk) -> Self {
        let (kty, crv, x, n, e) = match jwk.key {
            PublicKeyParams::Ed25519 { x } => ("OKP", Some("Ed25519"), Some(x), None, None),
            PublicKeyParams::Rsa { n, e } => ("RSA", None, None, Some(n), Some(e)),
        };
        Self {
            kty,
            crv,
            x,
            n,
            e,
            kid: jwk.kid,
            key_use: "sig",
            alg: jwk.algorithm.as_str(),
        }
    }
}

/// List the public keys that verify access tokens.
///
/// Keys rotated out stay listed until the tokens they signed have expired.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = TAG_DISCOVERY,
    responses((status = 200, description = "RFC 7517 key set", body = KeySet))
)]
pub(crate) async fn get_key_set(State(state): State<AppState>) -> Json<KeySet> {
    let keys = state.use_cases.publish_keys.execute().await;
    Json(KeySet {
        keys: keys.into_iter().map(PublicKey::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use authgate_application::ports::SigningAlgorithm;
    use authgate_application::testing::MockTokenSigner;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::HttpConfig;
    use crate::test_support::{ISSUER, TestApp, config};

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn metadata_builds_absolute_urls_from_the_issuer_and_lists_the_enabled_grants() {
        let app = TestApp::builder()
            .config(HttpConfig {
                refresh_grant: false,
                ..config()
            })
            .build();

        let response = app
            .send(get("/.well-known/oauth-authorization-server"))
            .await;

        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.json(),
            json!({
                "issuer": ISSUER,
                "token_endpoint": format!("{ISSUER}/token"),
                "revocation_endpoint": format!("{ISSUER}/token/revoke"),
                "introspection_endpoint": format!("{ISSUER}/token/introspect"),
                "jwks_uri": format!("{ISSUER}/.well-known/jwks.json"),
                "grant_types_supported": ["password"],
                "response_types_supported": [],
                "scopes_supported": ["profile:read", "profile:write", "users:read", "users:write", "tokens:introspect"],
                "token_endpoint_auth_methods_supported": ["none"],
                "revocation_endpoint_auth_methods_supported": ["none"],
                "service_documentation": format!("{ISSUER}/docs"),
            })
        );
    }

    #[tokio::test]
    async fn the_key_set_publishes_each_key_with_its_type_use_and_algorithm() {
        let mut signer = MockTokenSigner::new();
        signer.expect_public_keys().returning(|| {
            vec![
                PublicJwk {
                    kid: "ed".into(),
                    algorithm: SigningAlgorithm::EdDsa,
                    key: PublicKeyParams::Ed25519 { x: "eX".into() },
                },
                PublicJwk {
                    kid: "rsa".into(),
                    algorithm: SigningAlgorithm::Rs256,
                    key: PublicKeyParams::Rsa {
                        n: "nN".into(),
                        e: "AQAB".into(),
                    },
                },
            ]
        });
        let app = TestApp::builder().signer(signer).build();

        let response = app.send(get("/.well-known/jwks.json")).await;

        assert_eq!(
            response.json(),
            json!({"keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": "eX", "kid": "ed", "use": "sig", "alg": "EdDSA"},
                {"kty": "RSA", "n": "nN", "e": "AQAB", "kid": "rsa", "use": "sig", "alg": "RS256"},
            ]})
        );
    }

    #[tokio::test]
    async fn a_shared_secret_publishes_an_empty_key_set() {
        let app = TestApp::new();

        let response = app.send(get("/.well-known/jwks.json")).await;

        assert_eq!(response.json(), json!({"keys": []}));
    }
}

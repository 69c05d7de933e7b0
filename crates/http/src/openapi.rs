//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes, and the
//! Swagger UI that renders it at `/docs`.

use authgate_domain::Scope;
use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{SwaggerUi, oauth};

use crate::{AppState, discovery, health, token, users};

/// The name of the security scheme every protected operation refers to, as in
/// `security(("oauth2" = [UsersRead::NAME]))` (the attribute needs the literal).
pub(crate) const OAUTH2_SCHEME: &str = "oauth2";
/// Where the document is served.
pub(crate) const OPENAPI_PATH: &str = "/openapi.json";
/// Where the Swagger UI is served.
pub(crate) const DOCS_PATH: &str = "/docs";

/// Tag of the token endpoints.
pub(crate) const TAG_OAUTH: &str = "oauth";
/// Tag of the caller's own profile.
pub(crate) const TAG_PROFILE: &str = "profile";
/// Tag of user administration.
pub(crate) const TAG_USERS: &str = "users";
/// Tag of discovery documents.
pub(crate) const TAG_DISCOVERY: &str = "discovery";
/// Tag of operational probes.
pub(crate) const TAG_OPERATIONS: &str = "operations";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "authgate",
        description = "An OAuth 2.0 authorization server: trade a username and password for a short-lived \
                       JWT access token and a rotating refresh token, then call bearer-protected endpoints."
    ),
    modifiers(&PasswordFlow),
    tags(
        (name = TAG_OAUTH, description = "Issue, revoke and introspect tokens (RFC 6749, 7009, 7662)"),
        (name = TAG_PROFILE, description = "The caller's own user record and password"),
        (name = TAG_USERS, description = "User administration"),
        (name = TAG_DISCOVERY, description = "Authorization-server metadata and signing keys (RFC 8414, 7517)"),
        (name = TAG_OPERATIONS, description = "Liveness and readiness probes"),
    )
)]
struct ApiDoc;

/// Adds the `oauth2` security scheme: the password flow against `/token`, offering every scope
/// of the catalogue with its description.
struct PasswordFlow;

impl Modify for PasswordFlow {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scopes =
            Scopes::from_iter(Scope::ALL.map(|scope| (scope.as_str(), scope.description())));
        let scheme = OAuth2::with_description(
            [Flow::Password(Password::new("/token", scopes))],
            "The resource-owner password grant; send the access token as `Authorization: Bearer <token>`.",
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(OAUTH2_SCHEME, SecurityScheme::OAuth2(scheme));
    }
}

/// Every documented endpoint, registered once for both the router and the document.
pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(token::issue_token))
        .routes(routes!(token::revoke_token))
        .routes(routes!(token::introspect_token))
        .routes(routes!(discovery::get_server_metadata))
        .routes(routes!(discovery::get_key_set))
        .routes(routes!(users::get_current_user))
        .routes(routes!(users::change_own_password))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(health::get_liveness))
        .routes(routes!(health::get_readiness))
}

/// The OpenAPI document, exactly as served at `/openapi.json`.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// The Swagger UI at `/docs`, serving `document` at `/openapi.json`.
///
/// Its Authorize dialog runs the password flow of the `oauth2` scheme against `/token`. No
/// scope is preselected, so a login without ticking any gets all the user may have; no client
/// id is set, so the UI sends `Authorization: Basic Og==`, which the token endpoint reads as none.
pub(crate) fn swagger_ui(document: utoipa::openapi::OpenApi) -> SwaggerUi {
    SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, document)
        .oauth(oauth::Config::new().app_name("authgate"))
}

#[cfg(test)]
mod tests {
    use authgate_domain::ScopeSet;
    use axum::body::Body;
    use axum::http::header::AUTHORIZATION;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;

    use super::*;
    use crate::test_support::TestApp;

    /// Every operation of the document: method, path and the operation object.
    fn operations() -> Vec<(Method, String, Value)> {
        let document = serde_json::to_value(openapi()).unwrap();
        let mut operations = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                operations.push((method, path.clone(), operation.clone()));
            }
        }
        operations
    }

    /// The scopes an operation documents as required, if it is protected.
    fn documented_scopes(operation: &Value) -> Option<Vec<String>> {
        let security = operation.get("security")?.as_array().unwrap();
        assert_eq!(security.len(), 1, "one security requirement per operation");
        let scopes = security[0][OAUTH2_SCHEME]
            .as_array()
            .expect("the oauth2 scheme");
        Some(
            scopes
                .iter()
                .map(|scope| scope.as_str().unwrap().to_owned())
                .collect(),
        )
    }

    /// A concrete request for a documented path, with an empty body: scope checks run before
    /// any body is read.
    fn call(method: &Method, path: &str, token: Option<&str>) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path.replace("{username}", "alice"));
        if let Some(token) = token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn every_documented_scope_is_the_scope_enforced() {
        let app = TestApp::with_users().await;
        let mut protected = 0;

        for (method, path, operation) in operations() {
            let Some(scopes) = documented_scopes(&operation) else {
                continue;
            };
            assert_eq!(scopes.len(), 1, "{method} {path} documents one scope");
            let required = Scope::parse(&scopes[0]).unwrap();
            let everything_else: ScopeSet = Scope::ALL
                .into_iter()
                .filter(|scope| *scope != required)
                .collect();
            let without = app.token("admin", &everything_else.to_string()).await;
            let with_only = app.token("admin", required.as_str()).await;

            let refused = app.send(call(&method, &path, Some(&without))).await;
            let admitted = app.send(call(&method, &path, Some(&with_only))).await;

            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "{method} {path} without {required}: {}",
                refused.text()
            );
            assert_eq!(
                refused.header("www-authenticate"),
                format!(
                    "Bearer realm=\"authgate\", error=\"insufficient_scope\", scope=\"{required}\""
                ),
                "{method} {path}"
            );
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&admitted.status),
                "{method} {path} with only {required} got {}: {}",
                admitted.status,
                admitted.text()
            );
            protected += 1;
        }

        assert_eq!(protected, 8, "every protected operation was checked");
    }

    #[tokio::test]
    async fn operations_documented_without_security_never_ask_for_credentials() {
        let app = TestApp::with_users().await;

        for (method, path, operation) in operations()
            .into_iter()
            .filter(|(_, _, operation)| documented_scopes(operation).is_none())
        {
            let response = app.send(call(&method, &path, None)).await;

            assert_ne!(response.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(
                response.headers.get("www-authenticate").is_none(),
                "{method} {path}"
            );
            assert!(
                operation["responses"].get("401").is_none(),
                "{method} {path} documents a 401"
            );
        }
    }

    #[test]
    fn every_operation_documents_the_failures_that_apply_to_it() {
        for (method, path, operation) in operations() {
            let responses = operation["responses"].as_object().unwrap();
            let documents = |status: &str| responses.contains_key(status);
            if documented_scopes(&operation).is_some() {
                assert!(
                    documents("401") && documents("403"),
                    "{method} {path}: 401 and 403"
                );
            }
            if let Some(body) = operation.get("requestBody") {
                assert!(documents("413"), "{method} {path}: 413");
                if body["content"].get("application/json").is_some() {
                    assert!(
                        documents("400") && documents("415") && documents("422"),
                        "{method} {path}: 400, 415, 422"
                    );
                }
            }
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path}: a success"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_a_password_flow_offering_every_scope() {
        let document = serde_json::to_value(openapi()).unwrap();

        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["title"], "authgate");
        let flow = &document["components"]["securitySchemes"][OAUTH2_SCHEME]["flows"]["password"];
        assert_eq!(flow["tokenUrl"], "/token");
        for scope in Scope::ALL {
            assert_eq!(flow["scopes"][scope.as_str()], scope.description());
        }
        assert_eq!(flow["scopes"].as_object().unwrap().len(), Scope::ALL.len());
    }

    #[tokio::test]
    async fn the_served_document_is_the_generated_one() {
        let app = TestApp::new();

        let response = app
            .send(Request::get(OPENAPI_PATH).body(Body::empty()).unwrap())
            .await;

        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.json(), serde_json::to_value(openapi()).unwrap());
    }

    #[tokio::test]
    async fn the_swagger_ui_is_served_from_the_binary_and_points_at_the_document() {
        let app = TestApp::new();

        let index = app
            .send(Request::get("/docs/").body(Body::empty()).unwrap())
            .await;
        let initializer = app
            .send(
                Request::get("/docs/swagger-initializer.js")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_eq!(index.status, StatusCode::OK);
        assert!(index.header("content-type").starts_with("text/html"));
        assert_eq!(initializer.status, StatusCode::OK);
        assert!(
            initializer.text().contains(OPENAPI_PATH),
            "{}",
            initializer.text()
        );
        assert!(
            initializer.text().contains("initOAuth"),
            "{}",
            initializer.text()
        );
    }
}

//! The OpenAPI document and the Swagger UI, served from the binary.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi");
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.expect("json");
    let committed: Value = serde_json::from_str(include_str!("../../openapi.json"))
        .expect("the committed openapi.json is JSON");

    assert_eq!(
        served, committed,
        "run `cargo xtask openapi` to refresh openapi.json"
    );
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1"))
    );
    let flows = &served["components"]["securitySchemes"]["oauth2"]["flows"]["password"];
    assert_eq!(flows["tokenUrl"], "/token");
    for scope in [
        "profile:read",
        "profile:write",
        "users:read",
        "users:write",
        "tokens:introspect",
    ] {
        assert!(flows["scopes"][scope].is_string(), "{scope} is documented");
    }
    assert!(served["paths"]["/users/me"]["get"]["security"].is_array());
}

#[tokio::test]
async fn swagger_ui_and_its_assets_are_served_from_the_binary() {
    let app = spawn_app().await;

    let page = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");

    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.client.get(app.url(asset)).send().await.expect("asset");
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(!response.bytes().await.expect("body").is_empty(), "{asset}");
    }
    let redirect = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert!(redirect.status().is_success() || redirect.status().is_redirection());
}

//! Liveness and readiness probes for orchestrators.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::openapi::TAG_OPERATIONS;
use crate::problem::log_internal;

/// How long readiness waits for the database before answering `503` (SPEC §4).
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// `ok`, `ready` or `unavailable`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Report that the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = TAG_OPERATIONS,
    responses((status = 200, description = "Alive", body = HealthBody, example = json!({"status": "ok"})))
)]
pub(crate) async fn get_liveness() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

/// Report whether the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = TAG_OPERATIONS,
    responses(
        (status = 200, description = "Ready to serve", body = HealthBody, example = json!({"status": "ready"})),
        (status = 503, description = "The database did not answer within 2 s", body = HealthBody,
            example = json!({"status": "unavailable"})),
    )
)]
pub(crate) async fn get_readiness(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    match tokio::time::timeout(READINESS_TIMEOUT, state.use_cases.health.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(HealthBody { status: "ready" })),
        Ok(Err(error)) => {
            log_internal("the readiness probe", &error);
            unavailable()
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READINESS_TIMEOUT.as_millis(),
                "the readiness probe timed out"
            );
            unavailable()
        }
    }
}

fn unavailable() -> (StatusCode, Json<HealthBody>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(HealthBody {
            status: "unavailable",
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use authgate_application::ports::{HealthProbe, RepositoryError};
    use authgate_application::testing::InMemoryHealthProbe;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::json;

    use super::*;
    use crate::test_support::TestApp;

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    /// A database that never answers.
    struct HangingProbe;

    #[async_trait]
    impl HealthProbe for HangingProbe {
        async fn ping(&self) -> Result<(), RepositoryError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn liveness_is_ok() {
        let response = TestApp::new().send(get("/healthz")).await;

        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.json(), json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn readiness_follows_the_database() {
        let probe = Arc::new(InMemoryHealthProbe::new());
        let app = TestApp::builder().health(probe.clone()).build();

        let ready = app.send(get("/readyz")).await;
        probe.set_available(false);
        let down = app.send(get("/readyz")).await;

        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.json(), json!({"status": "ready"}));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.json(), json!({"status": "unavailable"}));
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_gives_up_on_a_silent_database_after_two_seconds() {
        let app = TestApp::builder().health(Arc::new(HangingProbe)).build();
        let started = tokio::time::Instant::now();

        let response = app.send(get("/readyz")).await;

        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), READINESS_TIMEOUT);
    }
}

//! Holding under attack (issue 6): per-username backoff, the per-address budget, throttled
//! password changes, rehash on login, and a login storm against few hashing slots.

use std::sync::Arc;
use std::time::Duration;

use authgate::{App, Argon2Config, Config, Overrides, SystemClock};
use authgate_application::ports::Clock as _;
use authgate_application::testing::FixedClock;
use reqwest::header::HeaderMap;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::helpers::{
    ADMIN_PASSWORD, Backend, GOOD_PASSWORD, TestApp, access_token, assert_oauth_error,
    backend_tests, parts, spawn_app, spawn_app_with, test_config,
};

/// A wrong password that is long enough to look plausible.
const WRONG_PASSWORD: &str = "not-the-password-at-all";

/// The `Retry-After` header in whole seconds, if present and numeric.
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get("retry-after")?.to_str().ok()?.parse().ok()
}

/// Asserts a token-endpoint `429 too_many_requests` that asks to wait `seconds`.
#[track_caller]
fn assert_too_many_requests(status: StatusCode, headers: &HeaderMap, body: &Value, seconds: u64) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_requests", "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(retry_after(headers), Some(seconds), "{headers:?}");
}

/// Asserts the `400 invalid_grant` of a wrong password that was actually checked.
#[track_caller]
fn assert_invalid_grant(status: StatusCode, headers: &HeaderMap, body: &Value) {
    assert_oauth_error(status, headers, body, "invalid_grant");
}

/// Creates `username` with [`GOOD_PASSWORD`] and the profile scopes, asserting success.
async fn create_user(app: &TestApp, username: &str) {
    let response = app
        .create_user(username, "profile:read profile:write")
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "creating {username}"
    );
}

/// Fails `count` logins of `username`, asserting that each was checked and refused.
async fn fail_logins(app: &TestApp, username: &str, count: usize) {
    for _ in 0..count {
        let (status, headers, body) = parts(app.login(username, WRONG_PASSWORD).await).await;
        assert_invalid_grant(status, &headers, &body);
    }
}

backend_tests!(
    after_five_failures_even_the_right_password_is_refused_with_429,
    each_further_failure_doubles_the_wait,
    a_success_resets_the_failure_count,
    fifty_failures_a_minute_from_one_address_block_every_username_until_the_window_ends,
    a_login_rehashes_a_password_stored_under_older_argon2_parameters,
);

async fn after_five_failures_even_the_right_password_is_refused_with_429(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    create_user(&app, "bob").await;
    fail_logins(&app, "bob", 5).await;

    let (status, headers, body) = parts(app.login("bob", GOOD_PASSWORD).await).await;

    assert_too_many_requests(status, &headers, &body, 1);
    let other = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "other usernames are unaffected"
    );
}

async fn each_further_failure_doubles_the_wait(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    create_user(&app, "bob").await;
    fail_logins(&app, "bob", 5).await;
    let mut waits = Vec::new();

    for _ in 0..4 {
        let (status, headers, body) = parts(app.login("bob", WRONG_PASSWORD).await).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let wait = retry_after(&headers).expect("Retry-After");
        waits.push(wait);
        app.advance(Duration::from_secs(wait));
        fail_logins(&app, "bob", 1).await;
    }

    assert_eq!(waits, [1, 2, 4, 8]);
    let (status, headers, body) = parts(app.login("bob", GOOD_PASSWORD).await).await;
    assert_too_many_requests(status, &headers, &body, 16);
}

async fn a_success_resets_the_failure_count(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    create_user(&app, "bob").await;
    fail_logins(&app, "bob", 5).await;
    app.advance(Duration::from_secs(1));

    let response = app.login("bob", GOOD_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    fail_logins(&app, "bob", 5).await;
    let (status, headers, body) = parts(app.login("bob", GOOD_PASSWORD).await).await;
    assert_too_many_requests(status, &headers, &body, 1);
}

async fn fifty_failures_a_minute_from_one_address_block_every_username_until_the_window_ends(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |_| {}).await;
    for index in 0..50 {
        fail_logins(&app, &format!("guess{index}"), 1).await;
    }

    let (status, headers, body) = parts(app.login("fresh-name", WRONG_PASSWORD).await).await;
    let (admin_status, admin_headers, admin_body) =
        parts(app.login("admin", ADMIN_PASSWORD).await).await;

    assert_too_many_requests(status, &headers, &body, 60);
    assert_too_many_requests(admin_status, &admin_headers, &admin_body, 60);
    app.advance(Duration::from_secs(60));
    fail_logins(&app, "fresh-name", 1).await;
    assert_eq!(
        app.login("admin", ADMIN_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_current_passwords_on_a_password_change_count_toward_the_username_limit() {
    let app = spawn_app().await;
    create_user(&app, "bob").await;
    let token = access_token(&app.login_ok("bob", GOOD_PASSWORD).await);
    let change = |current: &'static str| {
        app.client
            .put(app.url("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": current, "new_password": "orchid-canyon-lattice-88"}))
            .send()
    };
    for _ in 0..5 {
        let (status, headers, body) = parts(change(WRONG_PASSWORD).await.expect("change")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(headers["content-type"], "application/problem+json");
    }

    let (status, headers, body) = parts(change(GOOD_PASSWORD).await.expect("change")).await;

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(retry_after(&headers), Some(1));
    assert_eq!(body["status"], 429);
    let (status, headers, body) = parts(app.login("bob", GOOD_PASSWORD).await).await;
    assert_too_many_requests(status, &headers, &body, 1);
}

/// A second authgate in this process, on the database of an existing [`TestApp`].
struct SecondInstance {
    base: String,
    client: Client,
    _shutdown: oneshot::Sender<()>,
}

impl SecondInstance {
    /// Starts authgate on `database_url` with the test configuration changed by `adjust`.
    async fn start(database_url: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut config = test_config(addr, database_url.to_owned());
        adjust(&mut config);
        let clock = Arc::new(FixedClock::at_unix(SystemClock.now().unix()));
        let app = App::build(config, Overrides::clock(clock))
            .await
            .expect("the second instance builds");
        let (shutdown, stopped) = oneshot::channel();
        tokio::spawn(app.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            client: Client::new(),
            _shutdown: shutdown,
        }
    }

    async fn login(&self, username: &str, password: &str) -> Response {
        self.client
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .expect("request")
    }
}

/// The PHC string stored for `username`, read straight from the database.
async fn stored_password_hash(database_url: &str, username: &str) -> String {
    use sqlx::Connection as _;
    // Both dialects take `$1` for the first bind parameter.
    let query = "SELECT password_hash FROM users WHERE username = $1";
    if database_url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("open the SQLite database");
        sqlx::query_scalar(query)
            .bind(username)
            .fetch_one(&mut connection)
            .await
            .expect("the user's hash")
    } else {
        let mut connection = sqlx::PgConnection::connect(database_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query_scalar(query)
            .bind(username)
            .fetch_one(&mut connection)
            .await
            .expect("the user's hash")
    }
}

async fn a_login_rehashes_a_password_stored_under_older_argon2_parameters(backend: Backend) {
    let old = spawn_app_with(backend, |config| {
        config.argon2 = Argon2Config {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        }
    })
    .await;
    create_user(&old, "carol").await;
    let before = stored_password_hash(&old.db.url, "carol").await;
    let upgraded = SecondInstance::start(&old.db.url, |config| {
        config.argon2 = Argon2Config {
            memory_kib: 512,
            iterations: 2,
            parallelism: 1,
        }
    })
    .await;

    let response = upgraded.login("carol", GOOD_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(before.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
    let after = stored_password_hash(&old.db.url, "carol").await;
    assert!(after.starts_with("$argon2id$v=19$m=512,t=2,p=1$"));
    assert_eq!(
        upgraded.login("carol", GOOD_PASSWORD).await.status(),
        StatusCode::OK,
        "the password still works"
    );
    assert_eq!(
        stored_password_hash(&old.db.url, "carol").await,
        after,
        "an up-to-date hash is not rewritten"
    );
}

/// Concurrent password logins in the storm: enough to fill every slot and queue place many
/// times over.
const STORM_LOGINS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_gets_only_documented_answers_and_never_blocks_bearer_endpoints() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.argon2 = Argon2Config {
            memory_kib: 4096,
            iterations: 2,
            parallelism: 1,
        };
        config.max_concurrent_hashes = 1;
        // Loopback is the proxy, so `X-Forwarded-For` spreads the storm over many client
        // addresses and the per-address budget does not stop it before the hasher does.
        config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("network")];
    })
    .await;
    create_user(&app, "bob").await;
    let token = app.admin_token().await;
    let mut storm = JoinSet::new();
    for index in 0..STORM_LOGINS {
        let (username, password) = match index % 4 {
            0 => ("admin".to_owned(), ADMIN_PASSWORD),
            1 => ("bob".to_owned(), GOOD_PASSWORD),
            2 => ("bob".to_owned(), WRONG_PASSWORD),
            _ => (format!("nobody{index}"), WRONG_PASSWORD),
        };
        let forwarded_for = if index % 2 == 0 {
            format!("198.51.100.{}", index % 200)
        } else {
            format!("2001:db8::{:x}", index % 200)
        };
        let request = app
            .client
            .post(app.url("/token"))
            .header("x-forwarded-for", forwarded_for)
            .form(&[
                ("grant_type", "password"),
                ("username", username.as_str()),
                ("password", password),
            ]);
        storm.spawn(async move {
            let response = request.send().await.expect("request");
            (response.status(), retry_after(response.headers()))
        });
    }

    let mut during = Vec::new();
    for _ in 0..20 {
        during.push(app.get_with("/users/me", &token).await.status());
    }
    let mut answers = Vec::new();
    while let Some(answer) = storm.join_next().await {
        answers.push(answer.expect("the request task finished"));
    }

    assert!(
        during.iter().all(|status| *status == StatusCode::OK),
        "{during:?}"
    );
    assert_eq!(answers.len(), STORM_LOGINS);
    for (status, retry_after) in &answers {
        assert!(
            [
                StatusCode::OK,
                StatusCode::BAD_REQUEST,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(status),
            "{status}"
        );
        if *status == StatusCode::SERVICE_UNAVAILABLE || *status == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry_after.is_some(), "{status} without Retry-After");
        }
    }
    let count = |wanted: StatusCode| {
        answers
            .iter()
            .filter(|(status, _)| *status == wanted)
            .count()
    };
    eprintln!(
        "login storm: {} ok, {} invalid, {} throttled, {} busy",
        count(StatusCode::OK),
        count(StatusCode::BAD_REQUEST),
        count(StatusCode::TOO_MANY_REQUESTS),
        count(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::OK
    );
}

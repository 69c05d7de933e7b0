//! Automatic signing-key rotation (issue 6): instances sharing a database replace a due key
//! exactly once between them, and tokens signed before the rotation keep working.

use std::sync::Arc;
use std::time::Duration;

use authgate::{App, Overrides, Services};
use authgate_application::ports::Clock;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::{
    ADMIN_PASSWORD, Backend, TestApp, access_token, backend_tests, spawn_app_with, test_config,
};

/// The key age at which the instances under test rotate.
const ROTATION_INTERVAL: Duration = Duration::from_secs(60);
/// Their maintenance tick, instead of a minute of real time.
const RELOAD_INTERVAL: Duration = Duration::from_millis(100);
/// How long the rotation may take to show on both instances: many ticks, so that only a
/// broken rotation, not a slow machine, runs out of it.
const ROTATION_DEADLINE: Duration = Duration::from_secs(10);

backend_tests!(two_instances_rotate_a_due_signing_key_exactly_once);

/// The settings both instances share: a fast rotation, and one issuer rather than each
/// instance's own listen address, so that either accepts the other's tokens.
fn with_fast_rotation(config: &mut authgate::Config) {
    config.key_rotation_interval = ROTATION_INTERVAL;
    config.key_reload_interval = RELOAD_INTERVAL;
    config.issuer = Some("http://authgate.test".to_owned());
}

/// A second in-process instance on `first`'s database, reading `first`'s clock.
struct SecondInstance {
    base: String,
    /// Dropping it stops the instance.
    _shutdown: oneshot::Sender<()>,
}

async fn spawn_second_instance(first: &TestApp) -> SecondInstance {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut config = test_config(addr, first.db.url.clone());
    with_fast_rotation(&mut config);
    let clock: Arc<dyn Clock> = first.clock.clone();
    let app = App::build(config, Overrides::clock(clock))
        .await
        .expect("the second instance builds");
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    SecondInstance {
        base: format!("http://{addr}"),
        _shutdown: shutdown,
    }
}

async fn two_instances_rotate_a_due_signing_key_exactly_once(backend: Backend) {
    let first = spawn_app_with(backend, with_fast_rotation).await;
    let second = spawn_second_instance(&first).await;
    let bases = [first.base.clone(), second.base.clone()];
    let client = Client::new();
    let old_token = access_token(&login(&client, &bases[0]).await);
    let old_kid = kid(&old_token);
    for base in &bases {
        assert_eq!(published_kids(&client, base).await, [old_kid.as_str()]);
    }

    first.advance(ROTATION_INTERVAL + Duration::from_secs(1));
    let rotated = wait_until_every_instance_publishes_two_keys(&client, &bases).await;

    let new_kid = rotated
        .iter()
        .find(|kid| **kid != old_kid)
        .expect("a new key is published")
        .clone();
    assert!(rotated.contains(&old_kid), "the old key stays published");
    assert_eq!(
        stored_key_count(&first).await,
        (2, 1),
        "one rotation: two keys, one of them retired"
    );
    for base in &bases {
        let new_token = access_token(&login(&client, base).await);
        assert_eq!(kid(&new_token), new_kid, "{base} signs with the new key");
        for other in &bases {
            assert_eq!(me(&client, other, &new_token).await, StatusCode::OK);
            assert_eq!(
                me(&client, other, &old_token).await,
                StatusCode::OK,
                "a token from before the rotation verifies on {other}"
            );
        }
    }
}

/// Polls both instances' JWKS until each publishes two keys, and returns their `kid`s, which
/// must agree. Fails after [`ROTATION_DEADLINE`], or as soon as an instance publishes more.
async fn wait_until_every_instance_publishes_two_keys(
    client: &Client,
    bases: &[String; 2],
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + ROTATION_DEADLINE;
    loop {
        let mut published = Vec::with_capacity(bases.len());
        for base in bases {
            let kids = published_kids(client, base).await;
            assert!(kids.len() <= 2, "{base} publishes {kids:?}: rotated twice");
            published.push(kids);
        }
        if published.iter().all(|kids| kids.len() == 2) {
            assert_eq!(published[0], published[1], "both publish the same keys");
            return published.swap_remove(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rotation within {ROTATION_DEADLINE:?}: {published:?}"
        );
        tokio::time::sleep(RELOAD_INTERVAL).await;
    }
}

/// How many signing keys the shared database holds, and how many of them are retired.
async fn stored_key_count(app: &TestApp) -> (usize, usize) {
    let config = test_config(
        "127.0.0.1:0".parse().expect("an address"),
        app.db.url.clone(),
    );
    let clock: Arc<dyn Clock> = app.clock.clone();
    let services = Services::open(&config, Overrides::clock(clock))
        .await
        .expect("the database opens");
    let keys = services.keys.list().await.expect("the keys are listed");
    services.database.close().await;
    let retired = keys.iter().filter(|key| key.retired_at.is_some()).count();
    (keys.len(), retired)
}

async fn login(client: &Client, base: &str) -> Value {
    let response = client
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK, "login on {base}");
    response.json().await.expect("json")
}

async fn me(client: &Client, base: &str, token: &str) -> StatusCode {
    client
        .get(format!("{base}/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .status()
}

/// The `kid`s in an instance's JWKS, in the order published.
async fn published_kids(client: &Client, base: &str) -> Vec<String> {
    let jwks: Value = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("a key list")
        .iter()
        .map(|key| key["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

/// The `kid` in a JWT's header.
#[track_caller]
fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("a header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    header["kid"].as_str().expect("a kid").to_owned()
}

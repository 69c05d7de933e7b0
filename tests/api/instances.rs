//! Several real `authgate` processes on one database (issue 5), and the process lifecycle.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, Backend, TempDatabase};

const BINARY: &str = env!("CARGO_BIN_EXE_authgate-blackbox");

/// A running `authgate serve` process, killed on drop.
struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(database_url: &str, extra_env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env("DATABASE_URL", database_url)
        .env("AUTHGATE_ARGON2_MEMORY_KIB", "256")
        .env("AUTHGATE_ARGON2_ITERATIONS", "1")
        .env("AUTHGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("AUTHGATE_ISSUER", "http://authgate.test")
        .env("AUTHGATE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command
}

/// Starts `authgate serve` and waits for its banner to learn the port.
fn start(database_url: &str, extra_env: &[(&str, &str)]) -> (Instance, Vec<String>) {
    let mut child = command(database_url, extra_env)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stderr);
    let mut base = None;
    // The banner ends with the Swagger UI address, after the listen address.
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("stderr is readable");
        assert!(read > 0, "authgate exited before listening: {lines:?}");
        lines.push(line.trim_end().to_owned());
        if let Some(address) = line.trim_end().strip_prefix("authgate listening on ") {
            base = Some(address.to_owned());
        }
        if line.starts_with("Swagger UI: ") {
            break;
        }
    }
    let base = base.expect("the listen address is printed before the Swagger UI address");
    // Keep draining stderr so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    (Instance { child, base }, lines)
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
    assert_eq!(response.status(), StatusCode::OK);
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

async fn refresh(client: &Client, base: &str, token: &str) -> (StatusCode, Value) {
    let response = client
        .post(format!("{base}/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("refresh");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {value}"))
        .to_owned()
}

#[tokio::test]
async fn serve_prints_its_addresses_and_stops_cleanly_on_sigterm() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let (mut instance, banner) = start(&db.url, &[("AUTHGATE_ADMIN_PASSWORD", "")]);
    let client = Client::new();

    assert_eq!(
        client
            .get(format!("{}/healthz", instance.base))
            .send()
            .await
            .expect("healthz")
            .status(),
        StatusCode::OK
    );
    let banner = banner.join("\n");
    assert!(banner.contains("generated password"), "{banner}");
    assert!(banner.contains("/docs"), "{banner}");

    let killed = Command::new("kill")
        .args(["-TERM", &instance.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(exit) = instance.child.try_wait().expect("wait") {
            status = Some(exit);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "exits 0 after SIGTERM"
    );
}

#[tokio::test]
async fn two_processes_on_postgres_behave_as_one_service() {
    let Some(backend) = Backend::postgres("two_processes_on_postgres_behave_as_one_service") else {
        return;
    };
    two_processes_behave_as_one_service(backend).await;
}

#[tokio::test]
async fn two_processes_on_sqlite_behave_as_one_service() {
    two_processes_behave_as_one_service(Backend::Sqlite).await;
}

async fn two_processes_behave_as_one_service(backend: Backend) {
    let db = TempDatabase::create(&backend).await;
    // Both start together on the empty database: one administrator, one signing key.
    let ((a, _), (b, _)) = std::thread::scope(|scope| {
        let first = scope.spawn(|| start(&db.url, &[]));
        let second = scope.spawn(|| start(&db.url, &[]));
        (
            first.join().expect("first starts"),
            second.join().expect("second starts"),
        )
    });
    let client = Client::new();

    // A token from A works on B.
    let tokens = login(&client, &a.base).await;
    assert_eq!(
        me(&client, &b.base, &text(&tokens, "access_token")).await,
        StatusCode::OK
    );

    // Refresh rotated on A and reused on B (after the grace) is detected.
    let (status, rotated) = refresh(&client, &a.base, &text(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, replay) = refresh(&client, &b.base, &text(&tokens, "refresh_token")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "within the grace B answers like A did"
    );
    assert_eq!(
        text(&replay, "refresh_token"),
        text(&rotated, "refresh_token")
    );

    // Revocation on A is honoured on B.
    let fresh = login(&client, &a.base).await;
    let revoked = client
        .post(format!("{}/token/revoke", a.base))
        .form(&[("token", text(&fresh, "access_token"))])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        me(&client, &b.base, &text(&fresh, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );

    // Exactly one administrator was bootstrapped.
    let admin = text(&login(&client, &b.base).await, "access_token");
    let users: Value = client
        .get(format!("{}/users", b.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(users["items"].as_array().map(Vec::len), Some(1), "{users}");
    let jwks: Value = client
        .get(format!("{}/.well-known/jwks.json", a.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let jwks_b: Value = client
        .get(format!("{}/.well-known/jwks.json", b.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    assert_eq!(jwks, jwks_b);
}

#[tokio::test]
async fn after_keys_rotate_new_tokens_verify_on_every_instance() {
    let backend = Backend::postgres("after_keys_rotate_new_tokens_verify_on_every_instance")
        .unwrap_or(Backend::Sqlite);
    let db = TempDatabase::create(&backend).await;
    let (a, _) = start(&db.url, &[]);
    let (b, _) = start(&db.url, &[]);
    let client = Client::new();
    let old = text(&login(&client, &a.base).await, "access_token");

    let rotated = command(&db.url, &[])
        .args(["keys", "rotate"])
        .stderr(Stdio::piped())
        .output()
        .expect("keys rotate");
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let listed = command(&db.url, &[])
        .args(["keys", "list"])
        .stdout(Stdio::piped())
        .output()
        .expect("keys list");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        3,
        "a header and two keys"
    );
    // A third instance signs with the new key at once; A and B learn it on the unknown kid.
    let (c, _) = start(&db.url, &[]);
    let new = text(&login(&client, &c.base).await, "access_token");

    for instance in [&a, &b, &c] {
        assert_eq!(
            me(&client, &instance.base, &new).await,
            StatusCode::OK,
            "new key on {}",
            instance.base
        );
        assert_eq!(
            me(&client, &instance.base, &old).await,
            StatusCode::OK,
            "old key on {}",
            instance.base
        );
    }
    let jwks: Value = client
        .get(format!("{}/.well-known/jwks.json", c.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(
        jwks["keys"].as_array().map(Vec::len),
        Some(2),
        "the retired key stays published: {jwks}"
    );
}

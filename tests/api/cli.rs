//! The `authgate` binary as an operator uses it: user administration, then a login.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;

use crate::helpers::{Backend, TempDatabase, spawn_app_with};

const BINARY: &str = env!("CARGO_BIN_EXE_authgate-blackbox");

fn authgate(database_url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("AUTHGATE_ARGON2_MEMORY_KIB", "256")
        .env("AUTHGATE_ARGON2_ITERATIONS", "1")
        .env("AUTHGATE_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("the binary finishes")
}

#[tokio::test]
async fn a_user_added_on_the_command_line_can_log_in() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let password = "granite-lantern-orchard-7";

    let added = authgate(
        &db.url,
        &[
            "user",
            "add",
            "Dave",
            "--scope",
            "profile:read",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(!String::from_utf8_lossy(&added.stderr).contains(password));
    let listed = authgate(&db.url, &["user", "list"], None);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("dave"));

    let url = db.url.clone();
    let app = spawn_app_with(Backend::Sqlite, |config| config.database_url = url).await;
    let body = app.login_ok("dave", password).await;

    assert_eq!(body["scope"], "profile:read");
}

#[tokio::test]
async fn set_password_disable_enable_and_delete_work_from_the_command_line() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let first = "granite-lantern-orchard-7";
    let second = "copper-meadow-whistle-19";
    assert!(
        authgate(
            &db.url,
            &["user", "add", "erin", "--password-stdin"],
            Some(first)
        )
        .status
        .success()
    );

    let changed = authgate(
        &db.url,
        &["user", "set-password", "erin", "--password-stdin"],
        Some(&format!("{second}\r\n")),
    );
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let url = db.url.clone();
    let app = spawn_app_with(Backend::Sqlite, |config| config.database_url = url).await;
    assert_eq!(
        app.login("erin", first).await.status(),
        StatusCode::BAD_REQUEST
    );
    app.login_ok("erin", second).await;

    assert!(
        authgate(&db.url, &["user", "disable", "erin"], None)
            .status
            .success()
    );
    assert_eq!(
        app.login("erin", second).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert!(
        authgate(&db.url, &["user", "enable", "erin"], None)
            .status
            .success()
    );
    app.login_ok("erin", second).await;
    assert!(
        authgate(&db.url, &["user", "delete", "erin"], None)
            .status
            .success()
    );
    assert_eq!(
        app.login("erin", second).await.status(),
        StatusCode::BAD_REQUEST
    );
}

/// The server caches bearer lookups (SQLite); a change made by another process must still
/// hold on the very next request once the command has returned.
#[tokio::test]
async fn command_line_changes_hold_on_the_running_server_s_next_bearer_request() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let password = "granite-lantern-orchard-7";
    let added = authgate(
        &db.url,
        &["user", "add", "frank", "--password-stdin"],
        Some(password),
    );
    assert!(added.status.success());
    let url = db.url.clone();
    let app = spawn_app_with(Backend::Sqlite, |config| config.database_url = url).await;
    let token = crate::helpers::access_token(&app.login_ok("frank", password).await);
    // Twice, so that the second answer comes from the cache.
    for _ in 0..2 {
        assert_eq!(
            app.get_with("/users/me", &token).await.status(),
            StatusCode::OK
        );
    }

    assert!(
        authgate(&db.url, &["user", "disable", "frank"], None)
            .status
            .success()
    );
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        authgate(&db.url, &["user", "enable", "frank"], None)
            .status
            .success()
    );
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::OK
    );

    let changed = authgate(
        &db.url,
        &["user", "set-password", "frank", "--password-stdin"],
        Some("copper-meadow-whistle-19"),
    );
    assert!(changed.status.success());
    assert_eq!(
        app.get_with("/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn weak_passwords_and_bad_usage_fail_with_the_documented_exit_codes() {
    let db = TempDatabase::create(&Backend::Sqlite).await;

    let weak = authgate(
        &db.url,
        &["user", "add", "frank", "--password-stdin"],
        Some("short"),
    );
    let usage = authgate(&db.url, &["user", "add"], None);
    let no_password = authgate(&db.url, &["user", "add", "frank"], None);

    assert_eq!(weak.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 15 characters"));
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(
        no_password.status.code(),
        Some(1),
        "no terminal and no --password-stdin"
    );
}

#[tokio::test]
async fn openapi_prints_the_document_and_migrate_succeeds() {
    let db = TempDatabase::create(&Backend::Sqlite).await;

    let openapi = authgate(&db.url, &["openapi"], None);
    let migrate = authgate(&db.url, &["migrate"], None);

    assert!(openapi.status.success());
    let document: serde_json::Value =
        serde_json::from_slice(&openapi.stdout).expect("JSON on stdout");
    assert_eq!(document["info"]["title"], "authgate");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
}

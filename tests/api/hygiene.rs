//! Secret hygiene (issue 6): the real binary logging at `trace` in JSON never writes a
//! password, a password hash, a refresh token, an access token or key material, whatever
//! happens: good and bad logins, refreshes, a grace-period replay, reuse, revocation,
//! introspection, a password change and a forged bearer token.
//!
//! `AUTHGATE_ADMIN_PASSWORD` is set, so the bootstrap banner names the variable instead of
//! printing a generated password (SPEC §1 prints that one once, by design); no line of the
//! captured output is excluded from the check.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::helpers::{ADMIN_PASSWORD, Backend, TempDatabase};
use crate::process::{Server, command};

const WRONG_ADMIN_PASSWORD: &str = "wrong-admin-guess-Zq81x";
const UNKNOWN_USER_PASSWORD: &str = "password-of-nobody-Kx42m";
const ALICE_FIRST_PASSWORD: &str = "first-copper-lantern-R7v2";
const ALICE_SECOND_PASSWORD: &str = "second-granite-meadow-W3p9";

/// Everything secret the test saw or stored, each with a name for the failure message.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, secret: impl Into<String>) {
        let secret = secret.into();
        assert!(secret.len() >= 8, "too short to search for reliably");
        self.0.push((what.into(), secret));
    }

    /// An access token: the whole JWT and its signature on their own.
    fn access_token(&mut self, what: &str, token: &str) {
        let signature = token.rsplit('.').next().expect("a JWT");
        self.add(format!("{what} (access token)"), token);
        self.add(format!("{what} (access token signature)"), signature);
    }

    /// Both tokens of a token response.
    fn tokens(&mut self, what: &str, body: &Value) {
        self.access_token(what, text(body, "access_token"));
        self.add(
            format!("{what} (refresh token)"),
            text(body, "refresh_token"),
        );
    }

    /// A PHC password hash: the whole string and its hash part.
    fn password_hash(&mut self, what: &str, phc: &str) {
        let hash = phc.rsplit('$').next().expect("a PHC string");
        self.add(format!("{what} (password hash)"), phc);
        self.add(format!("{what} (hash part)"), hash);
    }

    /// Key material in the encodings a careless log line would use.
    fn key_material(&mut self, what: &str, bytes: &[u8]) {
        let decimal = bytes[..12]
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        self.add(format!("{what} (hex)"), hex);
        self.add(format!("{what} (base64)"), STANDARD.encode(bytes));
        self.add(format!("{what} (base64url)"), URL_SAFE_NO_PAD.encode(bytes));
        self.add(format!("{what} (Debug bytes)"), decimal);
    }
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
}

/// The test's HTTP client, bound to one server.
struct Session<'a> {
    client: Client,
    server: &'a Server,
}

impl Session<'_> {
    async fn form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(self.server.url(path)).form(form);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body = response.text().await.expect("body");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
            None,
        )
        .await
    }

    async fn login_ok(&self, username: &str, password: &str) -> Value {
        let (status, body) = self.login(username, password).await;
        assert_eq!(status, StatusCode::OK, "login of {username}: {body}");
        body
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
            None,
        )
        .await
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> StatusCode {
        let mut request = self
            .client
            .request(method, self.server.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request").status()
    }
}

/// Every password hash in the database, by username.
async fn password_hashes(db: &TempDatabase) -> Vec<(String, String)> {
    let mut connection = sqlx::SqliteConnection::connect(&db.url)
        .await
        .expect("open the database");
    let hashes = sqlx::query_as::<_, (String, String)>("SELECT username, password_hash FROM users")
        .fetch_all(&mut connection)
        .await
        .expect("read hashes");
    let _ = connection.close().await;
    hashes
}

/// The signing keys' secret part and the server secrets.
async fn key_material(db: &TempDatabase) -> Vec<(String, Vec<u8>)> {
    let mut connection = sqlx::SqliteConnection::connect(&db.url)
        .await
        .expect("open the database");
    let mut material =
        sqlx::query_as::<_, (String, Vec<u8>)>("SELECT kid, private_key FROM signing_keys")
            .fetch_all(&mut connection)
            .await
            .expect("read keys");
    // An Ed25519 PKCS#8 v1 document ends with the 32-byte seed, the secret itself.
    for (_, der) in &mut material {
        *der = der[der.len().saturating_sub(32)..].to_vec();
    }
    material.extend(
        sqlx::query_as::<_, (String, Vec<u8>)>("SELECT name, value FROM server_secrets")
            .fetch_all(&mut connection)
            .await
            .expect("read secrets"),
    );
    let _ = connection.close().await;
    material
}

#[tokio::test]
async fn trace_logs_never_contain_passwords_hashes_tokens_or_keys() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let mut server_command = command(&db);
    server_command.env("RUST_LOG", "trace");
    let server = Server::start(server_command, &[]);
    let session = Session {
        client: Client::new(),
        server: &server,
    };
    let mut secrets = Secrets::default();
    for password in [
        ADMIN_PASSWORD,
        WRONG_ADMIN_PASSWORD,
        UNKNOWN_USER_PASSWORD,
        ALICE_FIRST_PASSWORD,
        ALICE_SECOND_PASSWORD,
    ] {
        secrets.add("a password", password);
    }

    // Logins, good and bad; a user created over HTTP.
    let admin = session.login_ok("admin", ADMIN_PASSWORD).await;
    secrets.tokens("admin's login", &admin);
    let admin_token = text(&admin, "access_token");
    assert_eq!(
        session.login("admin", WRONG_ADMIN_PASSWORD).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        session.login("nobody", UNKNOWN_USER_PASSWORD).await.0,
        StatusCode::BAD_REQUEST
    );
    let created = session
        .json(
            reqwest::Method::POST,
            "/users",
            admin_token,
            Some(json!({"username": "alice", "password": ALICE_FIRST_PASSWORD})),
        )
        .await;
    assert_eq!(created, StatusCode::CREATED);
    for (username, hash) in password_hashes(&db).await {
        secrets.password_hash(&format!("{username}'s first"), &hash);
    }
    let alice = session.login_ok("alice", ALICE_FIRST_PASSWORD).await;
    secrets.tokens("alice's login", &alice);

    // A refresh, its replay within the grace period, then revocation and reuse.
    let (status, refreshed) = session.refresh(text(&alice, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    secrets.tokens("the refresh", &refreshed);
    let (status, replayed) = session.refresh(text(&alice, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    secrets.tokens("the replayed refresh", &replayed);
    let (status, introspected) = session
        .form(
            "/token/introspect",
            &[("token", text(&refreshed, "access_token"))],
            Some(admin_token),
        )
        .await;
    assert_eq!(
        (status, &introspected["active"]),
        (StatusCode::OK, &json!(true))
    );
    let (status, _) = session
        .form(
            "/token/introspect",
            &[("token", text(&refreshed, "refresh_token"))],
            Some(admin_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = session
        .form(
            "/token/revoke",
            &[
                ("token", text(&refreshed, "refresh_token")),
                ("token_type_hint", "refresh_token"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = session
        .form(
            "/token/revoke",
            &[("token", text(&replayed, "access_token"))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        session.refresh(text(&refreshed, "refresh_token")).await.0,
        StatusCode::BAD_REQUEST
    );

    // A password change, and the logins around it.
    let before_change = session.login_ok("alice", ALICE_FIRST_PASSWORD).await;
    secrets.tokens("alice's second login", &before_change);
    let changed = session
        .json(
            reqwest::Method::PUT,
            "/users/me/password",
            text(&before_change, "access_token"),
            Some(json!({"current_password": ALICE_FIRST_PASSWORD, "new_password": ALICE_SECOND_PASSWORD})),
        )
        .await;
    assert_eq!(changed, StatusCode::NO_CONTENT);
    assert_eq!(
        session.login("alice", ALICE_FIRST_PASSWORD).await.0,
        StatusCode::BAD_REQUEST
    );
    let after_change = session.login_ok("alice", ALICE_SECOND_PASSWORD).await;
    secrets.tokens("alice's login after the change", &after_change);
    let after_token = text(&after_change, "access_token");
    let me = session
        .json(reqwest::Method::GET, "/users/me", after_token, None)
        .await;
    assert_eq!(me, StatusCode::OK);
    // A forged token: the real one with its signature cut short.
    let forged = &after_token[..after_token.len() - 4];
    let me_forged = session
        .json(reqwest::Method::GET, "/users/me", forged, None)
        .await;
    assert_eq!(me_forged, StatusCode::UNAUTHORIZED);

    let (status, output) = server.stop().await;
    for (username, hash) in password_hashes(&db).await {
        secrets.password_hash(&format!("{username}'s last"), &hash);
    }
    for (name, material) in key_material(&db).await {
        secrets.key_material(&format!("key material '{name}'"), &material);
    }

    assert_eq!(status.code(), Some(0), "exits 0 after SIGTERM");
    assert!(
        output.contains(r#""level":"TRACE""#),
        "trace logging was on, so the check below means something"
    );
    assert!(
        output.contains("password grant succeeded"),
        "the log stream was captured"
    );
    let leaks: Vec<&str> = secrets
        .0
        .iter()
        .filter(|(_, secret)| output.contains(secret.as_str()))
        .map(|(what, _)| what.as_str())
        .collect();
    assert!(leaks.is_empty(), "the output contains: {leaks:?}");
}

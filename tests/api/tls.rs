//! HTTPS (issue 6): the real binary with `--tls-cert`/`--tls-key`, spoken to through rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::helpers::{ADMIN_PASSWORD, Backend, TempDatabase};
use crate::process::{Server, command, fail_to_start};
use crate::raw::{self, Exchange, RawResponse};

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files.
struct TestCertificate {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl TestCertificate {
    fn generate() -> Self {
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, generated.cert.pem()).expect("write cert");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
        Self {
            _dir: dir,
            cert,
            key,
            der: generated.cert.der().to_vec(),
        }
    }

    fn args(&self) -> [String; 4] {
        [
            "--tls-cert".to_owned(),
            path(&self.cert),
            "--tls-key".to_owned(),
            path(&self.key),
        ]
    }

    /// A TLS connector that trusts exactly this certificate, on rustls' ring provider.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone().into()).expect("trust anchor");
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

fn path(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

async fn start(certificate: &TestCertificate) -> (Server, TempDatabase) {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let args = certificate.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(command(&db), &args), db)
}

async fn connect(server: &Server, certificate: &TestCertificate) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.address())
        .await
        .expect("TCP connect");
    certificate
        .connector()
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

async fn https(server: &Server, certificate: &TestCertificate, request: &[u8]) -> RawResponse {
    raw::exchange(connect(server, certificate).await, request)
        .await
        .response()
}

#[tokio::test]
async fn with_a_certificate_the_service_speaks_https_and_sends_hsts() {
    let certificate = TestCertificate::generate();
    let (server, _db) = start(&certificate).await;

    let health = https(
        &server,
        &certificate,
        &raw::request("GET", "/healthz", &[], b""),
    )
    .await;
    let metadata = https(
        &server,
        &certificate,
        &raw::request("GET", "/.well-known/oauth-authorization-server", &[], b""),
    )
    .await;
    let login = https(
        &server,
        &certificate,
        &raw::request(
            "POST",
            "/token",
            &[b"Content-Type: application/x-www-form-urlencoded"],
            format!("grant_type=password&username=admin&password={ADMIN_PASSWORD}").as_bytes(),
        ),
    )
    .await;

    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    assert_eq!(health.status, 200, "{}", health.describe());
    assert_eq!(
        health.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(
        metadata.json()["issuer"],
        server.base.as_str(),
        "the issuer defaults to https:// with TLS"
    );
    assert_eq!(login.status, 200, "{}", login.describe());
    assert!(login.json()["access_token"].is_string());
    assert_eq!(login.header("cache-control"), Some("no-store"));
    assert!(login.header("strict-transport-security").is_some());
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let certificate = TestCertificate::generate();
    let (server, _db) = start(&certificate).await;

    let plain = raw::send(server.address(), &raw::request("GET", "/healthz", &[], b"")).await;
    let after = https(
        &server,
        &certificate,
        &raw::request("GET", "/healthz", &[], b""),
    )
    .await;

    assert!(
        matches!(&plain, Exchange::Closed(bytes) if !bytes.starts_with(b"HTTP/")),
        "{plain:?}"
    );
    assert_eq!(after.status, 200, "the failed handshake harmed nobody else");
}

#[tokio::test]
async fn clients_that_stall_their_handshake_do_not_hold_up_others() {
    let certificate = TestCertificate::generate();
    let (server, _db) = start(&certificate).await;
    // Connected, then silent: each holds a handshake open until the server's 10 s timeout.
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(
            TcpStream::connect(server.address())
                .await
                .expect("TCP connect"),
        );
    }

    // Were handshakes done on the accept loop, this request would wait behind the five
    // stalled ones, 10 s each. The bound is a liveness check far from both outcomes, not a
    // performance measurement.
    let served = tokio::time::timeout(
        Duration::from_secs(8),
        https(
            &server,
            &certificate,
            &raw::request("GET", "/healthz", &[], b""),
        ),
    )
    .await;

    assert_eq!(
        served.map(|response| response.status).ok(),
        Some(200),
        "a stalled handshake blocked another client"
    );
    drop(stalled);
}

#[tokio::test]
async fn a_missing_or_invalid_certificate_stops_startup_with_a_clear_message() {
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nowhere.crt");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").expect("write");
    let certificate = TestCertificate::generate();
    let other = TestCertificate::generate();

    let (missing_code, missing_message) = fail_to_start(
        command(&db),
        &[
            "--tls-cert",
            &path(&missing),
            "--tls-key",
            &path(&certificate.key),
        ],
    )
    .await;
    let (garbage_code, garbage_message) = fail_to_start(
        command(&db),
        &[
            "--tls-cert",
            &path(&garbage),
            "--tls-key",
            &path(&certificate.key),
        ],
    )
    .await;
    let (no_key_code, no_key_message) = fail_to_start(
        command(&db),
        &[
            "--tls-cert",
            &path(&certificate.cert),
            "--tls-key",
            &path(&garbage),
        ],
    )
    .await;
    let (mismatch_code, mismatch_message) = fail_to_start(
        command(&db),
        &[
            "--tls-cert",
            &path(&certificate.cert),
            "--tls-key",
            &path(&other.key),
        ],
    )
    .await;

    assert_eq!(missing_code, Some(1), "{missing_message}");
    assert!(
        missing_message.contains("nowhere.crt") && missing_message.contains("--tls-cert"),
        "{missing_message}"
    );
    assert_eq!(garbage_code, Some(1), "{garbage_message}");
    assert!(
        garbage_message.contains("garbage.pem")
            && garbage_message.contains("holds no PEM certificate"),
        "{garbage_message}"
    );
    assert_eq!(no_key_code, Some(1), "{no_key_message}");
    assert!(
        no_key_message.contains("holds no PEM private key"),
        "{no_key_message}"
    );
    assert_eq!(mismatch_code, Some(1), "{mismatch_message}");
    assert!(
        mismatch_message.contains("cannot be used together"),
        "{mismatch_message}"
    );
    let key_pem = std::fs::read_to_string(&other.key).expect("key");
    let key_body = key_pem.lines().nth(1).expect("a base64 line");
    assert!(
        !mismatch_message.contains(key_body),
        "the key never appears in a message"
    );
}

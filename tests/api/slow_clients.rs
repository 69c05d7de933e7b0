//! Slow clients (issue 6): connections that stall before sending a whole request head, or sit
//! idle between requests, are closed by the server's header-read timeout (10 s), while other
//! clients are served; and neither kind holds up shutdown.
//!
//! These tests wait for the real timeout, so every wait is bounded well beyond it; the exact
//! limits (header-read timeout, connection cap, lifetime, shutdown grace) are pinned in
//! paused time by the tests in `crates/server/src/app.rs`.

use std::time::Duration;

use authgate::{App, Overrides};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::{ADMIN_PASSWORD, Backend, TempDatabase, spawn_app, test_config};

/// How long a test waits for the server to close a stalled connection or to stop: the 10 s
/// header-read timeout (or shutdown grace) with ample room for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(25);
/// How often the trickling client sends one more header line.
const TRICKLE_INTERVAL: Duration = Duration::from_secs(1);

/// `host:port` of an app's base URL.
fn address(base: &str) -> &str {
    base.strip_prefix("http://").unwrap_or(base)
}

/// Reads until the server closes `stream` (EOF or reset), failing the test after
/// [`PATIENCE`]; returns what the server sent before closing.
async fn closed_by_server(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 1024];
    let read_to_close = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_to_close)
        .await
        .unwrap_or_else(|_| panic!("the server kept {what} open for {PATIENCE:?}"));
    received
}

/// Sends an incomplete request head, then one more header line every
/// [`TRICKLE_INTERVAL`] (progress that never completes the head) until the server closes
/// the connection, failing the test after [`PATIENCE`]. Returns what the server sent.
async fn trickle_until_closed(mut stream: TcpStream) -> Vec<u8> {
    stream
        .write_all(b"POST /token HTTP/1.1\r\nHost: authgate.test\r\n")
        .await
        .expect("write the first line");
    let mut received = Vec::new();
    let mut buffer = [0_u8; 1024];
    let trickle = async {
        let mut ticks = tokio::time::interval(TRICKLE_INTERVAL);
        loop {
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(read) => received.extend_from_slice(&buffer[..read]),
                },
                _ = ticks.tick() => {
                    // A write error means the server has already closed; the read says so next.
                    let _ = stream.write_all(b"X-Slow: 1\r\n").await;
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, trickle)
        .await
        .expect("the server closes a trickling connection");
    received
}

/// Asserts the server closed a stalled connection without an answer, or with `408`.
#[track_caller]
fn assert_closed_without_answer_or_408(received: &[u8], what: &str) {
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
        "{what}: {:?}",
        String::from_utf8_lossy(received)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stalled_before_a_whole_request_head_are_closed_while_others_are_served() {
    let app = spawn_app().await;
    let address = address(&app.base).to_owned();
    let trickling = tokio::spawn(trickle_until_closed(
        TcpStream::connect(&address).await.expect("connect"),
    ));
    let mut silent = TcpStream::connect(&address).await.expect("connect");
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: authgate.test\r\n\r\n")
        .await
        .expect("write");
    let mut first_response = [0_u8; 12];
    idle.read_exact(&mut first_response)
        .await
        .expect("a response on the keep-alive connection");

    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request")
        .status();
    let tokens = app.login_ok("admin", ADMIN_PASSWORD).await;
    let trickled = trickling.await.expect("the trickling client finishes");
    let silent_received = closed_by_server(&mut silent, "a silent connection").await;
    let idle_received = closed_by_server(&mut idle, "an idle keep-alive connection").await;
    let after = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request")
        .status();

    assert_eq!(health, StatusCode::OK, "served while others stalled");
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert_eq!(&first_response, b"HTTP/1.1 200");
    assert_closed_without_answer_or_408(&trickled, "a trickled request head");
    assert_closed_without_answer_or_408(&silent_received, "a silent connection");
    // The rest of the first response may arrive before the close; nothing after it may.
    assert!(
        !String::from_utf8_lossy(&idle_received).contains("HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&idle_received)
    );
    assert_eq!(after, StatusCode::OK, "still serving afterwards");
}

/// An app on SQLite whose `serve` task the test holds, with the sender that stops it.
async fn spawn_stoppable_app() -> (
    String,
    oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
    TempDatabase,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let db = TempDatabase::create(&Backend::Sqlite).await;
    let app = App::build(test_config(addr, db.url.clone()), Overrides::default())
        .await
        .expect("app builds");
    let (stop, stopped) = oneshot::channel();
    let serving = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr.to_string(), stop, serving, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_stalled_connections_do_not_hold_up_shutdown() {
    let (address, stop, serving, _db) = spawn_stoppable_app().await;
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: authgate.test\r\n\r\n")
        .await
        .expect("write");
    let mut first_response = [0_u8; 12];
    idle.read_exact(&mut first_response)
        .await
        .expect("a response on the keep-alive connection");
    let mut stalled = TcpStream::connect(&address).await.expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: auth")
        .await
        .expect("write");

    stop.send(()).expect("the server runs");
    let stopped = tokio::time::timeout(PATIENCE, serving).await;
    let idle_received = closed_by_server(&mut idle, "an idle connection after shutdown").await;
    let stalled_received =
        closed_by_server(&mut stalled, "a stalled connection after shutdown").await;
    let reconnect = TcpStream::connect(&address).await;

    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "serve did not return Ok within {PATIENCE:?}: {stopped:?}"
    );
    assert_eq!(&first_response, b"HTTP/1.1 200");
    assert!(
        !String::from_utf8_lossy(&idle_received).contains("HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&idle_received)
    );
    assert_closed_without_answer_or_408(&stalled_received, "a stalled request head");
    assert!(
        reconnect.is_err(),
        "the listening socket is closed once serve returns"
    );
}

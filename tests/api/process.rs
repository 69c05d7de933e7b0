//! The real `authgate serve` as a child process whose whole stdout and stderr are kept.

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::helpers::{ADMIN_PASSWORD, TempDatabase};

const BINARY: &str = env!("CARGO_BIN_EXE_authgate-blackbox");
/// How long a test waits for the process to print its banner, or to exit.
const PATIENCE: Duration = Duration::from_secs(60);

/// `authgate-blackbox` with the settings every process test shares: the test database, cheap
/// Argon2, a known administrator password (so no generated password is ever printed), JSON
/// logs, and `RUST_LOG` unset unless a test sets it.
pub fn command(db: &TempDatabase) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env("DATABASE_URL", &db.url)
        .env("AUTHGATE_ARGON2_MEMORY_KIB", "256")
        .env("AUTHGATE_ARGON2_ITERATIONS", "1")
        .env("AUTHGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("AUTHGATE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running `authgate serve`, killed on drop if a test did not stop it.
pub struct Server {
    /// `None` once stopped.
    child: Option<Child>,
    /// What the banner says it listens on, e.g. `https://127.0.0.1:41234`.
    pub base: String,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Copies everything `pipe` produces into `output`, and each complete line into `lines`.
fn drain(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<Vec<u8>>>,
    lines: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while let Ok(read) = reader.read_until(b'\n', &mut line) {
            if read == 0 {
                break;
            }
            output
                .lock()
                .expect("the output lock")
                .extend_from_slice(&line);
            let _ = lines.send(String::from_utf8_lossy(&line).trim_end().to_owned());
            line.clear();
        }
    })
}

impl Server {
    /// Runs `authgate serve --listen 127.0.0.1:0 ARGS` and waits for its listen address.
    pub fn start(mut command: Command, args: &[&str]) -> Self {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .spawn()
            .expect("the binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (lines, banner) = mpsc::channel();
        let readers = vec![
            drain(
                child.stdout.take().expect("stdout"),
                output.clone(),
                lines.clone(),
            ),
            drain(child.stderr.take().expect("stderr"), output.clone(), lines),
        ];
        let base = loop {
            let Ok(line) = banner.recv_timeout(PATIENCE) else {
                let _ = child.kill();
                panic!(
                    "authgate printed no listen address: {}",
                    String::from_utf8_lossy(&output.lock().expect("the output lock"))
                );
            };
            if let Some(address) = line.strip_prefix("authgate listening on ") {
                break address.to_owned();
            }
        };
        Self {
            child: Some(child),
            base,
            output,
            readers,
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `host:port` the server listens on.
    pub fn address(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, address)| address)
    }

    /// Sends SIGTERM, waits for the exit, and returns it with everything printed on stdout
    /// and stderr.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        let child = self.child.take().expect("running");
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(signalled.success(), "SIGTERM was delivered");
        let status = wait(child).await;
        for reader in self.readers.drain(..) {
            reader.join().expect("the output reader finishes");
        }
        let output =
            String::from_utf8_lossy(&self.output.lock().expect("the output lock")).into_owned();
        (status, output)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit on a blocking thread, so the runtime keeps serving meanwhile.
async fn wait(mut child: Child) -> ExitStatus {
    let waiting = tokio::task::spawn_blocking(move || child.wait());
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("authgate exits in time")
        .expect("the waiting thread finishes")
        .expect("wait")
}

/// Runs `authgate serve ARGS` expecting it to fail at startup; returns its exit code and stderr.
pub async fn fail_to_start(mut command: Command, args: &[&str]) -> (Option<i32>, String) {
    let child = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .spawn()
        .expect("the binary starts");
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("authgate exits in time")
        .expect("the waiting thread finishes")
        .expect("wait");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

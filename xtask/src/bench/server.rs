//! The `authgate` process under test: a scratch directory for its SQLite database and logs,
//! the process itself (killed when dropped, also on error and panic), its CLI, and its
//! memory high-water mark.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long the server may take to print its banner.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the banner file is re-read while waiting.
const STARTUP_POLL: Duration = Duration::from_millis(50);
/// The line that names the listen address (SPEC §1, printed to stderr).
const BANNER: &str = "authgate listening on http://";

/// A directory removed, with everything in it, when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory under the system temporary directory.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created.
    pub fn create(tag: u128) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("authgate-bench-{}-{tag:x}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("bench: could not remove {}: {error}", self.path.display());
        }
    }
}

/// How to run the binary: its path, the database and the bootstrap password.
#[derive(Debug, Clone)]
pub struct Binary {
    /// The release binary.
    pub path: PathBuf,
    /// `sqlite://…` in the scratch directory.
    pub database_url: String,
    /// `AUTHGATE_ADMIN_PASSWORD`.
    pub admin_password: String,
}

impl Binary {
    /// A command with every SPEC default: any `AUTHGATE_*`, `DATABASE_URL` or `RUST_LOG`
    /// inherited from the caller's environment is removed, so that the measured server
    /// always runs the default Argon2 parameters, hashing slots and log level.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("AUTHGATE_") || name_text == "DATABASE_URL" {
                command.env_remove(&name);
            }
        }
        command
            .env_remove("RUST_LOG")
            .env("DATABASE_URL", &self.database_url)
            .env("AUTHGATE_ADMIN_PASSWORD", &self.admin_password)
            .stdin(Stdio::null());
        command
    }

    /// `authgate user add NAME --password-stdin`.
    ///
    /// # Errors
    ///
    /// When the command fails.
    pub fn add_user(&self, name: &str, password: &str) -> anyhow::Result<()> {
        let mut child = self
            .command()
            .args(["user", "add", name, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `authgate user add`")?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{password}").context("writing the password to stdin")?;
        }
        let output = child
            .wait_with_output()
            .context("waiting for `authgate user add`")?;
        if !output.status.success() {
            bail!(
                "`authgate user add {name}` failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Starts `authgate serve --listen 127.0.0.1:0` and waits for its banner. Its stdout
    /// (the JSON log at the default `info` level) and stderr go to files in `logs`, so the
    /// server never blocks on a pipe and the load generator spends nothing draining it.
    ///
    /// # Errors
    ///
    /// When the process cannot start, exits early, or prints no banner in time.
    pub fn serve(&self, logs: &Path) -> anyhow::Result<Server> {
        let stdout_path = logs.join("server.log");
        let stderr_path = logs.join("server.err");
        let stdout = File::create(&stdout_path).context("creating the server log")?;
        let stderr = File::create(&stderr_path).context("creating the server stderr file")?;
        let child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))?;
        // From here on the guard kills the process whatever happens.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_path,
        };
        server.addr = server.wait_for_banner()?;
        Ok(server)
    }
}

/// A running `authgate serve`, killed and reaped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    stderr_path: PathBuf,
}

impl Server {
    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_banner(&mut self) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            if let Some(address) = text
                .lines()
                .find_map(|line| line.trim_end().strip_prefix(BANNER))
            {
                return address
                    .parse()
                    .with_context(|| format!("parsing the listen address {address:?}"));
            }
            if let Some(status) = self.child.try_wait().context("polling the server")? {
                bail!(
                    "authgate exited with {status} before listening: {}",
                    text.trim()
                );
            }
            std::thread::sleep(STARTUP_POLL);
        }
        bail!("authgate printed no banner within {STARTUP_TIMEOUT:?}")
    }

    /// Fails when the process has exited (a crash under load).
    ///
    /// # Errors
    ///
    /// When it exited, with the tail of its stderr.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("polling the server")? {
            let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            bail!(
                "authgate exited with {status} during the benchmark: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Starts a new peak-RSS measurement (writes `5` to `/proc/PID/clear_refs`, which resets
    /// `VmHWM` to the current RSS). Returns `false` when the kernel refuses, in which case
    /// peaks are cumulative since the server started.
    #[must_use]
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// The peak resident set size since start or the last reset (`VmHWM`), in MiB.
    ///
    /// # Errors
    ///
    /// When `/proc/PID/status` cannot be read or has no `VmHWM` line.
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        self.status_mib("VmHWM:")
    }

    /// The resident set size now (`VmRSS`), in MiB.
    ///
    /// # Errors
    ///
    /// When `/proc/PID/status` cannot be read or has no `VmRSS` line.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        self.status_mib("VmRSS:")
    }

    /// A `kB` field of `/proc/PID/status`, in MiB.
    fn status_mib(&self, field: &str) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in {path}"))?;
        Ok(kib / 1024.0)
    }
}

/// The CPU time the process `pid` has used so far, user and system, all threads, in seconds
/// (`utime` + `stime` of `/proc/PID/stat`, in the kernel's fixed 100 Hz `USER_HZ` ticks).
///
/// # Errors
///
/// When `/proc/PID/stat` cannot be read or parsed.
pub fn cpu_seconds_of(pid: u32) -> anyhow::Result<f64> {
    const USER_HZ: f64 = 100.0;
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may contain spaces; the fields after it start at `state`
    // (field 3), so `utime` (14) and `stime` (15) are the 12th and 13th after the `)`.
    let ticks: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2))
        .into_iter()
        .flatten()
        .map(|field| {
            field
                .parse::<f64>()
                .with_context(|| format!("parsing {path}"))
        })
        .sum::<anyhow::Result<f64>>()?;
    Ok(ticks / USER_HZ)
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: nothing on this throwaway server needs a graceful stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

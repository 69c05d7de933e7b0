//! Structured logging with tracing: pretty on a terminal, JSON otherwise; level from RUST_LOG.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `serve` logs to stdout at `info` by default; the
/// administrative commands log warnings only, to stderr, so their output stays clean.
pub fn init(format: Option<LogFormat>, serving: bool) {
    let default_level = if serving { "info" } else { "warn" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let terminal = if serving {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let format = format.unwrap_or(if terminal {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only if a subscriber exists already, which is harmless.
    let _ = match (format, serving) {
        (LogFormat::Json, true) => builder.json().with_writer(std::io::stdout).try_init(),
        (LogFormat::Json, false) => builder.json().with_writer(std::io::stderr).try_init(),
        (LogFormat::Pretty, true) => builder.with_writer(std::io::stdout).try_init(),
        (LogFormat::Pretty, false) => builder.with_writer(std::io::stderr).try_init(),
    };
}

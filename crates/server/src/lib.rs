//! The authgate binary as a library: configuration, wiring and the command line.
//!
//! `main.rs` only parses the command line and calls [`commands::run`], so the black-box
//! tests can start exactly what `authgate serve` starts through [`App::build`]. This is the
//! only crate that knows every other crate and the only one that reads configuration.

mod adapters;
mod app;
pub mod commands;
pub mod config;
pub mod logging;
pub mod tls;

pub use adapters::{RandomIds, SystemClock};
pub use app::{App, BootstrapReport, Overrides, Services};
pub use config::{Argon2Config, Cli, Config, Secret};

//! Project automation, the cargo-xtask way: `cargo xtask ci | openapi [--check] | tidy | bench`.
//!
//! Deliberately dependency-light: it shells out to cargo rather than linking the project,
//! so `cargo xtask` builds in seconds. The only heavier part is `bench`, whose load
//! generator needs an HTTP client (hyper) and whose ceiling needs Argon2.

mod bench;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

const USAGE: &str =
    "usage: cargo xtask <ci | openapi [--check] | tidy | bench [--quick] [--criterion]>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("openapi") => openapi(args.iter().any(|arg| arg == "--check")),
        Some("tidy") => tidy::run(&root()),
        Some("bench") => {
            let flags = &args[1..];
            if let Some(unknown) = flags
                .iter()
                .find(|flag| !matches!(flag.as_str(), "--quick" | "--criterion"))
            {
                eprintln!("xtask bench: unknown flag {unknown}");
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            let quick = flags.iter().any(|flag| flag == "--quick");
            if flags.iter().any(|flag| flag == "--criterion") {
                criterion(quick)
            } else {
                bench::run(bench::Options { quick })
            }
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> anyhow::Result<()> {
    eprintln!("$ {command:?}");
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// What `.ci/run` runs, in the same order: a green `cargo xtask ci` means a green CI.
fn ci() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--locked"]);
    run(test)?;
    tidy::run(&root())?;
    openapi(true)?;
    bench::run(bench::Options { quick: true })
}

/// Writes the generated OpenAPI document to `openapi.json`, or with `check` fails when the
/// committed file differs from what the code generates.
fn openapi(check: bool) -> anyhow::Result<()> {
    let output = cargo()
        .args([
            "run",
            "--quiet",
            "--locked",
            "--package",
            "authgate",
            "--",
            "openapi",
        ])
        .output()
        .context("running `authgate openapi`")?;
    if !output.status.success() {
        bail!(
            "`authgate openapi` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let generated = String::from_utf8(output.stdout).context("the document is UTF-8")?;
    let path = root().join("openapi.json");
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            bail!("openapi.json is stale: run `cargo xtask openapi` and commit the result");
        }
        eprintln!("openapi.json is up to date");
    } else {
        std::fs::write(&path, generated).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `cargo xtask bench --criterion`: the criterion micro-benchmarks of the hot pure paths.
fn criterion(quick: bool) -> anyhow::Result<()> {
    let mut criterion = cargo();
    criterion.args(["bench", "--locked", "--workspace"]);
    if quick {
        criterion.args(["--", "--quick"]);
    }
    run(criterion)
}

//! `cargo xtask tidy`: the conventions a compiler cannot check (STYLE §2, §6).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Crates and the dependencies they must never have (STYLE §2).
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "authgate-domain",
        &[
            "tokio",
            "async-trait",
            "sqlx",
            "axum",
            "serde",
            "utoipa",
            "argon2",
            "jsonwebtoken",
        ],
    ),
    (
        "authgate-application",
        &["sqlx", "axum", "argon2", "jsonwebtoken", "utoipa"],
    ),
    (
        "authgate-persistence",
        &[
            "axum",
            "authgate-crypto",
            "argon2",
            "jsonwebtoken",
            "utoipa",
        ],
    ),
    (
        "authgate-crypto",
        &["axum", "authgate-persistence", "sqlx", "utoipa"],
    ),
    (
        "authgate-http",
        &[
            "authgate-persistence",
            "authgate-crypto",
            "sqlx",
            "argon2",
            "jsonwebtoken",
        ],
    ),
];

/// Runs every check and reports all failures at once.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = module_docs(root)?;
    problems.extend(dependency_rule(root)?);
    if problems.is_empty() {
        eprintln!("tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

/// Every Rust file under `crates/`, `xtask/` and `tests/` opens with a `//!` line.
fn module_docs(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for folder in ["crates", "xtask", "tests"] {
        collect_rust_files(&root.join(folder), &mut files)?;
    }
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{} does not open with a `//!` module doc",
                file.display()
            ));
        }
    }
    Ok(problems)
}

fn collect_rust_files(folder: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            collect_rust_files(&path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// `cargo tree` of each inner crate mentions none of its forbidden dependencies.
fn dependency_rule(root: &Path) -> anyhow::Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut problems = Vec::new();
    for (package, forbidden) in FORBIDDEN {
        let output = Command::new(&cargo)
            .current_dir(root)
            .args([
                "tree",
                "--offline",
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
                "--package",
                package,
            ])
            .output()
            .with_context(|| format!("running cargo tree for {package}"))?;
        if !output.status.success() {
            bail!(
                "cargo tree -p {package} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        for dependency in *forbidden {
            let found = tree
                .lines()
                .any(|line| line.split_whitespace().next() == Some(dependency));
            if found {
                problems.push(format!(
                    "{package} depends on {dependency} (STYLE §2 forbids it)"
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workspace_is_tidy() {
        super::run(&crate::root()).expect("cargo xtask tidy passes");
    }
}

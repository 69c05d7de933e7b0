//! Configuration: the clap command line with environment fallbacks (SPEC §1), turned once,
//! at startup, into typed values.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use authgate_application::ports::SigningAlgorithm;
use authgate_domain::PasswordPolicy;
use authgate_http::IpNetwork;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// authgate: an OAuth 2.0 authorization and resource server.
#[derive(Debug, Parser)]
#[command(name = "authgate", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every command.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// The subcommands of SPEC §1.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `authgate user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin or a no-echo prompt, never argv.
    Add {
        /// Username (3–64 characters of a-z, 0-9, '.', '_', '-'; stored lower-cased).
        name: String,
        /// An allowed scope; repeat for several (default: profile:read profile:write).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long)]
        full_name: Option<String>,
        /// Read the password from standard input (one trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password, ending their sessions.
    SetPassword {
        /// Username.
        name: String,
        /// Read the password from standard input (one trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: no logins, and their tokens stop working at once.
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Username.
        name: String,
    },
    /// Delete a user.
    Delete {
        /// Username.
        name: String,
    },
    /// List users.
    List,
}

/// `authgate keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new active signing key for the configured algorithm; the previous one keeps
    /// verifying until its tokens expire.
    Rotate,
    /// List signing keys.
    List,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// The settings flags; each falls back to the environment variable of SPEC §1.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "AUTHGATE_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,
    /// Database URL: sqlite://PATH (created if missing) or postgres://…
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://authgate.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Maximum database connections per instance.
    #[arg(
        long,
        env = "AUTHGATE_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,
    /// Token issuer (`iss`); default http://<listen address> (https:// with TLS).
    #[arg(long, env = "AUTHGATE_ISSUER", global = true)]
    pub issuer: Option<String>,
    /// Token audience (`aud`).
    #[arg(
        long,
        env = "AUTHGATE_AUDIENCE",
        default_value = "authgate",
        global = true
    )]
    pub audience: String,
    /// Access-token lifetime (humantime, e.g. 15m).
    #[arg(long, env = "AUTHGATE_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub access_token_ttl: Duration,
    /// Absolute lifetime of a refresh-token family.
    #[arg(long, env = "AUTHGATE_REFRESH_TOKEN_TTL", default_value = "14d", value_parser = humantime::parse_duration, global = true)]
    pub refresh_token_ttl: Duration,
    /// JWS algorithm: EdDSA, RS256, or HS256 (needs AUTHGATE_JWT_SECRET of at least 32 bytes).
    #[arg(long, env = "AUTHGATE_SIGNING_ALG", default_value = "EdDSA", value_parser = parse_signing_alg, global = true)]
    pub signing_alg: SigningAlgorithm,
    /// Enabled grant types, comma-separated.
    #[arg(
        long,
        env = "AUTHGATE_GRANT_TYPES",
        default_value = "password,refresh_token",
        value_delimiter = ',',
        global = true
    )]
    pub grant_types: Vec<String>,
    /// How long a rotated refresh token still answers with the same successor.
    #[arg(long, env = "AUTHGATE_REFRESH_REUSE_GRACE", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub refresh_reuse_grace: Duration,
    /// Minimum password length in characters (at least 8).
    #[arg(long, env = "AUTHGATE_PASSWORD_MIN_LENGTH", default_value_t = PasswordPolicy::DEFAULT_MIN_LENGTH, global = true)]
    pub password_min_length: usize,
    /// Argon2id memory cost in KiB.
    #[arg(
        long,
        env = "AUTHGATE_ARGON2_MEMORY_KIB",
        default_value_t = 19_456,
        global = true
    )]
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    #[arg(
        long,
        env = "AUTHGATE_ARGON2_ITERATIONS",
        default_value_t = 2,
        global = true
    )]
    pub argon2_iterations: u32,
    /// Argon2id parallelism.
    #[arg(
        long,
        env = "AUTHGATE_ARGON2_PARALLELISM",
        default_value_t = 1,
        global = true
    )]
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (default: number of CPUs).
    #[arg(long, env = "AUTHGATE_MAX_CONCURRENT_HASHES", global = true)]
    pub max_concurrent_hashes: Option<usize>,
    /// Allowed CORS origins, comma-separated (default: CORS off).
    #[arg(
        long,
        env = "AUTHGATE_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,
    /// Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client address.
    #[arg(
        long,
        env = "AUTHGATE_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "AUTHGATE_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "AUTHGATE_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format; default pretty on a terminal, else json. Level from RUST_LOG.
    #[arg(long, env = "AUTHGATE_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// How old the active EdDSA or RS256 signing key may get before a new one replaces it
    /// (humantime, at least 1m); the old key keeps verifying until its tokens expire.
    #[arg(long, env = "AUTHGATE_KEY_ROTATION_INTERVAL", default_value = "30d", value_parser = humantime::parse_duration, global = true)]
    pub key_rotation_interval: Duration,
}

fn parse_signing_alg(raw: &str) -> Result<SigningAlgorithm, String> {
    SigningAlgorithm::parse(raw)
        .ok_or_else(|| format!("unsupported signing algorithm '{raw}'; use EdDSA, RS256 or HS256"))
}

/// A secret read from the environment. `Debug` is redacted and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// The validated configuration every command runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Pool size.
    pub db_max_connections: u32,
    /// Explicit issuer, if configured.
    pub issuer: Option<String>,
    /// Token audience.
    pub audience: String,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh-family lifetime.
    pub refresh_token_ttl: Duration,
    /// Signing algorithm.
    pub signing_alg: SigningAlgorithm,
    /// The HS256 secret (`AUTHGATE_JWT_SECRET`), environment only.
    pub jwt_secret: Option<Secret>,
    /// Password grant enabled.
    pub password_grant: bool,
    /// Refresh grant enabled.
    pub refresh_grant: bool,
    /// Refresh reuse grace.
    pub refresh_reuse_grace: Duration,
    /// Password policy.
    pub password_policy: PasswordPolicy,
    /// Argon2id parameters.
    pub argon2: Argon2Config,
    /// Concurrent hashes.
    pub max_concurrent_hashes: usize,
    /// CORS origins.
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNetwork>,
    /// TLS certificate and key paths.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bootstrap administrator password (`AUTHGATE_ADMIN_PASSWORD`), environment only.
    pub admin_password: Option<Secret>,
    /// The age at which the active signing key is replaced (EdDSA and RS256 only).
    pub key_rotation_interval: Duration,
    /// How often each instance rotates a due signing key and re-reads the keys, so that it
    /// signs with a key rotated elsewhere within this bound. Not a flag: tests shorten it.
    /// At most a minute, the slack the signer keeps retired keys verifying for
    /// (`authgate_crypto`'s `RETENTION_SLACK`) so that a token signed by an instance that has
    /// not yet noticed a rotation still verifies for its whole lifetime.
    pub key_reload_interval: Duration,
}

/// The default and longest [`Config::key_reload_interval`].
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest `--key-rotation-interval`: one key-reload tick, since a due key is only
/// noticed on a tick.
const MIN_KEY_ROTATION_INTERVAL: Duration = KEY_RELOAD_INTERVAL;

impl Config {
    /// The issuer: the configured one, or `http(s)://<listen address>`.
    #[must_use]
    pub fn issuer(&self) -> String {
        match &self.issuer {
            Some(issuer) => issuer.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    /// A configuration with every SPEC default, for tests and tools.
    #[must_use]
    pub fn defaults(listen: SocketAddr, database_url: String) -> Self {
        Self {
            listen,
            database_url,
            db_max_connections: 10,
            issuer: None,
            audience: "authgate".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(14 * 86_400),
            signing_alg: SigningAlgorithm::EdDsa,
            jwt_secret: None,
            password_grant: true,
            refresh_grant: true,
            refresh_reuse_grace: Duration::from_secs(10),
            password_policy: PasswordPolicy::default(),
            argon2: Argon2Config {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1,
            },
            max_concurrent_hashes: default_hash_slots(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
            admin_password: None,
            key_rotation_interval: Duration::from_secs(30 * 86_400),
            key_reload_interval: KEY_RELOAD_INTERVAL,
        }
    }
}

fn default_hash_slots() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl SettingsArgs {
    /// Validates the flags and reads the secrets that only come from the environment.
    ///
    /// # Errors
    ///
    /// A message naming the offending setting.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut password_grant = false;
        let mut refresh_grant = false;
        for grant in self
            .grant_types
            .iter()
            .map(|grant| grant.trim())
            .filter(|grant| !grant.is_empty())
        {
            match grant {
                "password" => password_grant = true,
                "refresh_token" => refresh_grant = true,
                other => bail!(
                    "--grant-types: unsupported grant type '{other}'; use password and/or refresh_token"
                ),
            }
        }
        let password_policy = PasswordPolicy::new(self.password_min_length).with_context(|| {
            format!(
                "--password-min-length must be at least {} characters",
                PasswordPolicy::FLOOR
            )
        })?;
        let jwt_secret = env_secret("AUTHGATE_JWT_SECRET");
        if self.signing_alg == SigningAlgorithm::Hs256 {
            match &jwt_secret {
                Some(secret) if secret.expose().len() >= 32 => {}
                _ => {
                    bail!("--signing-alg HS256 needs AUTHGATE_JWT_SECRET set to at least 32 bytes")
                }
            }
        }
        if self.access_token_ttl < Duration::from_secs(1)
            || self.refresh_token_ttl < Duration::from_secs(1)
        {
            bail!("token lifetimes must be at least one second");
        }
        if self.db_max_connections == 0 {
            bail!("--db-max-connections must be at least 1");
        }
        if self.key_rotation_interval < MIN_KEY_ROTATION_INTERVAL {
            bail!("--key-rotation-interval must be at least 1m");
        }
        if let Some(issuer) = &self.issuer
            && !(issuer.starts_with("https://") || issuer.starts_with("http://"))
        {
            bail!("--issuer must be an absolute http(s) URL");
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|proxy| !proxy.trim().is_empty())
            .map(|proxy| proxy.parse::<IpNetwork>())
            .collect::<Result<Vec<_>, _>>()
            .context("--trusted-proxies")?;
        let max_concurrent_hashes = self
            .max_concurrent_hashes
            .unwrap_or_else(default_hash_slots);
        if max_concurrent_hashes == 0 {
            bail!("--max-concurrent-hashes must be at least 1");
        }
        Ok(Config {
            listen: self.listen,
            database_url: self.database_url,
            db_max_connections: self.db_max_connections,
            issuer: self.issuer,
            audience: self.audience,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            signing_alg: self.signing_alg,
            jwt_secret,
            password_grant,
            refresh_grant,
            refresh_reuse_grace: self.refresh_reuse_grace,
            password_policy,
            argon2: Argon2Config {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                parallelism: self.argon2_parallelism,
            },
            max_concurrent_hashes,
            cors_origins: self
                .cors_origins
                .into_iter()
                .filter(|origin| !origin.is_empty())
                .collect(),
            trusted_proxies,
            tls: self.tls_cert.zip(self.tls_key),
            admin_password: env_secret("AUTHGATE_ADMIN_PASSWORD"),
            key_rotation_interval: self.key_rotation_interval,
            key_reload_interval: KEY_RELOAD_INTERVAL,
        })
    }
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("authgate").chain(args.iter().copied()))
    }

    #[test]
    fn no_arguments_means_serve_with_the_spec_defaults() {
        let cli = parse(&[]).expect("parses");
        let config = cli.settings.into_config().expect("valid");

        assert!(cli.command.is_none());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.issuer(), "http://127.0.0.1:8080");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(14 * 86_400));
        assert_eq!(config.signing_alg, SigningAlgorithm::EdDsa);
        assert!(config.password_grant && config.refresh_grant);
        assert_eq!(config.password_policy.min_length(), 15);
    }

    #[test]
    fn settings_are_accepted_after_the_subcommand() {
        let cli = parse(&["user", "list", "--database-url", "sqlite://x.db"]).expect("parses");

        assert_eq!(cli.settings.database_url, "sqlite://x.db");
    }

    #[test]
    fn bad_settings_are_named() {
        let short = parse(&["--password-min-length", "7"])
            .expect("parses")
            .settings
            .into_config();
        let grants = parse(&["--grant-types", "password,implicit"])
            .expect("parses")
            .settings
            .into_config();

        assert!(short.is_err_and(|error| error.to_string().contains("--password-min-length")));
        assert!(grants.is_err_and(|error| error.to_string().contains("implicit")));
        assert!(parse(&["--signing-alg", "none"]).is_err());
        assert!(parse(&["--access-token-ttl", "soon"]).is_err());
    }

    #[test]
    fn a_grant_can_be_switched_off() {
        let config = parse(&["--grant-types", "refresh_token"])
            .expect("parses")
            .settings
            .into_config()
            .expect("valid");

        assert!(!config.password_grant);
        assert!(config.refresh_grant);
    }

    #[test]
    fn signing_keys_rotate_every_thirty_days_unless_told_otherwise() {
        let default = parse(&[]).expect("parses").settings.into_config();
        let twelve_hours = parse(&["--key-rotation-interval", "12h"])
            .expect("parses")
            .settings
            .into_config();
        let too_often = parse(&["--key-rotation-interval", "30s"])
            .expect("parses")
            .settings
            .into_config();

        let default = default.expect("valid");
        assert_eq!(
            default.key_rotation_interval,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(default.key_reload_interval, Duration::from_secs(60));
        assert_eq!(
            twelve_hours.expect("valid").key_rotation_interval,
            Duration::from_secs(12 * 3600)
        );
        assert!(
            too_often.is_err_and(|error| error.to_string().contains("--key-rotation-interval"))
        );
        assert!(parse(&["--key-rotation-interval", "monthly"]).is_err());
        assert_eq!(
            Config::defaults(default.listen, default.database_url).key_rotation_interval,
            Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}

//! The subcommands: serve, migrate, openapi, user and keys administration.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use authgate_application::ports::UserPatch;
use authgate_application::{CreateUserRequest, UserAdminError};
use authgate_domain::{Password, ScopeSet, Username};
use authgate_persistence::{Database, PoolOptions};
use tokio::net::TcpListener;

use crate::app::{App, Overrides, Services};
use crate::config::{Command, Config, KeysCommand, UserCommand};

/// Runs `command` (`serve` when `None`).
///
/// # Errors
///
/// Whatever the command failed on, with context; `main` prints it and exits 1.
pub async fn run(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    match command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Openapi => {
            let document = authgate_http::openapi()
                .to_pretty_json()
                .context("rendering the OpenAPI document")?;
            println!("{document}");
            Ok(())
        }
        Command::User(command) => user(command, &config).await,
        Command::Keys(command) => keys(command, &config).await,
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    // Read the certificate and key before anything else, so a bad file fails startup at once
    // with a message naming it, before the database is touched.
    let tls = config
        .tls
        .as_ref()
        .map(|(cert, key)| crate::tls::load_server_config(cert, key))
        .transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    // With port 0 the kernel picks the port; the issuer must name the real one.
    config.listen = listener.local_addr().context("reading the bound address")?;
    let app = App::build(config.clone(), Overrides::default()).await?;

    let base = config.issuer();
    if let Some(bootstrap) = &app.bootstrap {
        match &bootstrap.generated_password {
            // Printed once, to stderr, never to the log stream (SPEC §1).
            Some(password) => eprintln!(
                "Created the administrator '{}' with the generated password: {}\nStore it now; it is not shown again.",
                bootstrap.username,
                password.expose()
            ),
            None => eprintln!(
                "Created the administrator '{}' with the password from AUTHGATE_ADMIN_PASSWORD.",
                bootstrap.username
            ),
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("authgate listening on {scheme}://{}", config.listen);
    eprintln!("Swagger UI: {base}/docs");
    tracing::info!(listen = %config.listen, issuer = %base, tls = tls.is_some(), "authgate started");

    match tls {
        Some(tls) => app.serve_tls(listener, tls, shutdown_signal()).await?,
        None => app.serve(listener, shutdown_signal()).await?,
    }
    tracing::info!("authgate stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let options = PoolOptions {
        max_connections: 1,
        ..PoolOptions::default()
    };
    let database = Database::connect(&config.database_url, options)
        .await
        .context("connecting to the database")?;
    database
        .migrate()
        .await
        .context("applying database migrations")?;
    database.close().await;
    eprintln!("migrations applied");
    Ok(())
}

async fn user(command: UserCommand, config: &Config) -> anyhow::Result<()> {
    let services = Services::open(config, Overrides::default()).await?;
    let use_cases = &services.use_cases;
    let result = match command {
        UserCommand::Add {
            name,
            scopes,
            email,
            full_name,
            password_stdin,
        } => {
            let scopes = if scopes.is_empty() {
                None
            } else {
                Some(ScopeSet::parse(&scopes.join(" ")).context("--scope")?)
            };
            let password = read_password(password_stdin, true)?;
            let request = CreateUserRequest {
                username: name,
                password,
                email,
                full_name,
                scopes,
            };
            let user = use_cases
                .create_user
                .execute(request)
                .await
                .map_err(admin_error)?;
            eprintln!(
                "created user '{}' ({}) with scopes: {}",
                user.username, user.id, user.scopes
            );
            Ok(())
        }
        UserCommand::SetPassword {
            name,
            password_stdin,
        } => {
            let username = Username::parse(&name).context("username")?;
            let password = read_password(password_stdin, true)?;
            use_cases
                .change_password
                .execute_as_operator(&username, password)
                .await
                .map_err(anyhow::Error::from)?;
            eprintln!("password of '{username}' changed; their sessions have ended");
            Ok(())
        }
        UserCommand::Disable { name } => set_disabled(&services, &name, true).await,
        UserCommand::Enable { name } => set_disabled(&services, &name, false).await,
        UserCommand::Delete { name } => {
            use_cases
                .manage_user
                .delete(&name)
                .await
                .map_err(admin_error)?;
            eprintln!("deleted user '{name}'");
            Ok(())
        }
        UserCommand::List => list_users(&services).await,
    };
    services.database.close().await;
    result
}

async fn set_disabled(services: &Services, name: &str, disabled: bool) -> anyhow::Result<()> {
    let patch = UserPatch {
        disabled: Some(disabled),
        ..UserPatch::default()
    };
    let user = services
        .use_cases
        .manage_user
        .update(name, &patch)
        .await
        .map_err(admin_error)?;
    eprintln!(
        "user '{}' {}",
        user.username,
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

async fn list_users(services: &Services) -> anyhow::Result<()> {
    println!("{:<36}  {:<24}  {:<8}  scopes", "id", "username", "status");
    let mut after = None;
    loop {
        let page = services
            .use_cases
            .read_users
            .list(after, 200)
            .await
            .map_err(admin_error)?;
        for user in &page.users {
            let status = if user.disabled { "disabled" } else { "enabled" };
            println!(
                "{:<36}  {:<24}  {status:<8}  {}",
                user.id, user.username, user.scopes
            );
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

async fn keys(command: KeysCommand, config: &Config) -> anyhow::Result<()> {
    let services = Services::open(config, Overrides::default()).await?;
    let result = match command {
        KeysCommand::Rotate => {
            let now = services.clock.now();
            let key = authgate_crypto::generate_key(config.signing_alg, now)
                .context("generating a signing key")?;
            services
                .keys
                .rotate(&key)
                .await
                .context("storing the new signing key")?;
            eprintln!(
                "new {} signing key {} is active; every instance signs with it within a minute",
                config.signing_alg.as_str(),
                key.kid
            );
            Ok(())
        }
        KeysCommand::List => {
            let keys = services.keys.list().await.context("listing signing keys")?;
            println!("{:<44}  {:<6}  {:<20}  retired", "kid", "alg", "created");
            for key in keys {
                let retired = key
                    .retired_at
                    .map_or_else(|| "-".to_owned(), |at| rfc3339(at.unix()));
                println!(
                    "{:<44}  {:<6}  {:<20}  {retired}",
                    key.kid,
                    key.algorithm.as_str(),
                    rfc3339(key.created_at.unix())
                );
            }
            Ok(())
        }
    };
    services.database.close().await;
    result
}

fn rfc3339(unix: i64) -> String {
    let seconds = u64::try_from(unix).unwrap_or(0);
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
    .to_string()
}

fn admin_error(error: UserAdminError) -> anyhow::Error {
    match error {
        UserAdminError::Internal(source) => {
            anyhow::anyhow!(source).context("user administration failed")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// Reads a password from stdin (`--password-stdin`, one trailing newline stripped) or a
/// no-echo prompt. Never from argv, so it cannot show up in `ps` or shell history.
fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<Password> {
    if from_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from stdin")?;
        let password = input
            .strip_suffix("\r\n")
            .or_else(|| input.strip_suffix('\n'))
            .unwrap_or(&input)
            .to_owned();
        if password.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(Password::new(password));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to prompt on; pipe the password with --password-stdin");
    }
    let password = rpassword::prompt_password("Password: ").context("reading the password")?;
    if confirm {
        let again =
            rpassword::prompt_password("Repeat password: ").context("reading the password")?;
        if again != password {
            bail!("the passwords do not match");
        }
    }
    Ok(Password::new(password))
}

//! `authgate`: parse the command line, then hand over to the library.

use std::process::ExitCode;

use authgate::Cli;
use authgate::config::Command;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 inside `parse`, as clap does.
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    authgate::logging::init(cli.settings.log_format, serving);
    let config = match cli.settings.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("authgate: {error:#}");
            return ExitCode::from(2);
        }
    };
    match authgate::commands::run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("authgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

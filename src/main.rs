//! `imchannel`: sets up logging, reads the command line and the config, runs what was asked.

use std::process::ExitCode;

use clap::Parser;
use imchannel::cli::{Cli, Command};
use imchannel::config::Settings;
use imchannel::{sandbox, startup::Application};

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("imchannel: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Sandbox => sandbox::run(&settings)
            .await
            .map_err(|error| error.to_string()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("imchannel: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let bind = settings.server.bind.clone();
    let application = Application::build(settings)
        .await
        .map_err(|error| error.to_string())?;
    log::info!(
        "[IMCHANNEL] [serve] listening on {bind} (port {})",
        application.port()
    );
    application
        .run_until_stopped()
        .await
        .map_err(|error| error.to_string())
}

//! The command line (DESIGN.md §7).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// imchannel: the gateway between CTLive and the Infobip WhatsApp channel.
#[derive(Debug, Parser)]
#[command(name = "imchannel", version, about)]
pub struct Cli {
    /// What to run; `serve` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The configuration file (environment variables IMCHANNEL__SECTION__KEY override it).
    #[arg(long, global = true, default_value = "config.toml")]
    pub config: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gateway.
    Serve,
    /// Runs stand-ins for Infobip and CTLive on the addresses the config names, printing what
    /// they receive.
    Sandbox,
}

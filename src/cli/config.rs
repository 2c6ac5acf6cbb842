//! `neuron config show`: print the effective configuration.

use super::flags::ConfigArgs;
use clap::{Args, Subcommand};

/// `neuron config` options.
#[derive(Debug, Args)]
pub struct ConfigArgsCommand {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults, then --config file, then flags) as YAML.
    Show,
}

/// Runs a `neuron config` subcommand.
pub fn run(command: &ConfigCommand, args: &ConfigArgs) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => {
            print!("{}", args.load()?.to_yaml());
            Ok(())
        }
    }
}

//! `neuron config show`: print the effective configuration.

use clap::{Args, Subcommand};
use neuron::config::{Config, ConfigArgs};

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
            print!("{}", Config::load(args)?.to_yaml());
            Ok(())
        }
    }
}

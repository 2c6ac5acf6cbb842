//! `neuron scripts …`: the shipped scripts embedded in the binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use neuron::script::shipped;

/// `neuron scripts` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScriptsCommand {
    /// Copy the shipped scripts into DIR for editing; run with `--scripts.root DIR` to
    /// overlay the shipped set with them (hot reload watches DIR).
    Eject {
        /// Where to write tasks/, personas/, tools/ and scripts/.
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Print where the shipped scripts are materialised (a read-only script root).
    Path,
}

/// Runs a `scripts` subcommand.
pub fn run(command: ScriptsCommand) -> anyhow::Result<()> {
    match command {
        ScriptsCommand::Eject { dir, force } => {
            let written = shipped::eject(&dir, force)
                .with_context(|| format!("ejecting the shipped scripts into {}", dir.display()))?;
            println!(
                "wrote {} scripts (version {}) under {}",
                written.len(),
                shipped::version(),
                dir.display()
            );
        }
        ScriptsCommand::Path => println!("{}", shipped::root()?.display()),
    }
    Ok(())
}

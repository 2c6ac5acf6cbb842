//! `neuron scripts …`: the script set a neuron runs — every live script and the root it
//! comes from, and the shipped scripts embedded in the binary (copy them out, find them).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use neuron::script::{ReloadStatus, shipped};

use super::flags::ConfigArgs;

/// `neuron scripts`: the subcommand (the roots come from `--scripts.root` and
/// `--scripts.no_shipped`).
#[derive(Debug, Args)]
pub struct ScriptsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ScriptsCommand,
}

/// `neuron scripts` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScriptsCommand {
    /// List every live script (tasks, personas, tools, miner strategies, validator
    /// hooks): kind, file, the root it comes from (`shipped` or a `--scripts.root`
    /// directory) and last load status.
    List,
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
pub fn run(command: ScriptsCommand, config: &ConfigArgs) -> anyhow::Result<()> {
    match command {
        ScriptsCommand::List => list(config),
        ScriptsCommand::Eject { dir, force } => {
            let written = shipped::eject(&dir, force)
                .with_context(|| format!("ejecting the shipped scripts into {}", dir.display()))?;
            println!(
                "wrote {} scripts (version {}) under {}",
                written.len(),
                shipped::version(),
                dir.display()
            );
            Ok(())
        }
        ScriptsCommand::Path => {
            println!("{}", shipped::root()?.display());
            Ok(())
        }
    }
}

fn list(config: &ConfigArgs) -> anyhow::Result<()> {
    let config = config.load()?;
    let host = neuron::prompting::script_host(&config).context("loading the scripts")?;
    let origin = Origin::new();
    println!("{:<10} {:<34} {:<10} status", "kind", "file", "from");
    for row in host.listing() {
        let kind = row.script.as_ref().map_or("-", |s| s.kind);
        println!(
            "{kind:<10} {:<34} {:<10} {}",
            row.rel.display(),
            origin.of(&row.root),
            status(&row.status)
        );
    }
    Ok(())
}

/// Names the root a live script comes from: `shipped` for the materialised shipped
/// set, else the operator's root directory.
pub struct Origin {
    shipped: Option<PathBuf>,
}

impl Origin {
    /// Finds the shipped set's root (when it can be materialised).
    pub fn new() -> Self {
        Self {
            shipped: shipped::root()
                .ok()
                .and_then(|root| root.canonicalize().ok()),
        }
    }

    /// `shipped`, or the canonical `root` itself.
    pub fn of(&self, root: &Path) -> String {
        if self.shipped.as_deref() == Some(root) {
            "shipped".to_string()
        } else {
            root.display().to_string()
        }
    }
}

/// A script's last load status as `list` prints it.
pub fn status(status: &ReloadStatus) -> String {
    match status {
        ReloadStatus::Ok => "ok".to_string(),
        ReloadStatus::Rejected(msg) => format!("REJECTED: {msg}"),
    }
}

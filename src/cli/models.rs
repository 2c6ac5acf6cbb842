//! `neuron models fetch|list|path`: artifact resolution from the command line.

use anyhow::Result;
use clap::Subcommand;
use neuron::models::{ArtifactKind, Resolver};

/// Model and dataset artifacts.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Fetch artifacts (all known ids when none is given) into $NEURON_HOME/models.
    Fetch {
        /// Artifact ids.
        ids: Vec<String>,
    },
    /// List known artifacts, their sources and whether they are installed.
    List,
    /// Print the local path of an artifact, fetching it if needed.
    Path {
        /// Artifact id (or an existing path).
        id: String,
    },
}

/// Runs a `models` subcommand.
pub fn run(cmd: ModelsCommand) -> Result<()> {
    let resolver = Resolver::default();
    match cmd {
        ModelsCommand::Fetch { ids } => {
            let ids = if ids.is_empty() {
                resolver.specs().iter().map(|s| s.id.clone()).collect()
            } else {
                ids
            };
            for id in ids {
                let (path, origin) = resolver.resolve_with_origin(&id)?;
                println!("{id}\t{origin}\t{}", path.display());
            }
        }
        ModelsCommand::List => {
            for spec in resolver.specs() {
                let kind = match spec.kind {
                    ArtifactKind::File => "file",
                    ArtifactKind::Directory => "dir",
                };
                let state = resolver
                    .installed(&spec.id)
                    .map_or_else(|| "not installed".to_string(), |p| p.display().to_string());
                let mut sources = Vec::new();
                if let Some(hub) = &spec.hub {
                    sources.push(format!("hf:{}@{}", hub.repo, hub.revision));
                }
                if let Some(wheel) = &spec.wheel {
                    sources.push(format!("pip:{}", wheel.requirement));
                }
                println!("{}\t{kind}\t{}", spec.id, spec.description);
                println!("\tsources: {}", sources.join(", "));
                println!("\tlocal: {state}");
            }
        }
        ModelsCommand::Path { id } => println!("{}", resolver.resolve(&id)?.display()),
    }
    Ok(())
}

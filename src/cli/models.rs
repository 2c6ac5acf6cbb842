//! `neuron models fetch|list|path|export`: artifact resolution from the command line.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use neuron::llm::{ExportDType, export_safetensors};
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
    /// Dequantise a llama GGUF into a Hugging Face safetensors directory (to run it
    /// unquantised, e.g. in bf16 on a GPU).
    Export {
        /// Model id or path of a .gguf file.
        model: String,
        /// Output directory (created).
        #[arg(long)]
        to: PathBuf,
        /// Weight type.
        #[arg(long, value_enum, default_value = "bf16")]
        dtype: ExportDType,
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
        ModelsCommand::Export { model, to, dtype } => {
            let gguf = resolver.resolve(&model)?;
            export_safetensors(&gguf, &to, dtype)?;
            println!("{}", to.display());
        }
    }
    Ok(())
}

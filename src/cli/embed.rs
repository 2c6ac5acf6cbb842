//! `neuron embed`: sentence embeddings from the command line.

use anyhow::{Result, bail};
use clap::Args;
use neuron::embed::{Embedder, cosine};
use neuron::llm::DeviceSpec;
use neuron::models::Resolver;

/// Arguments of `neuron embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
    /// Embedding model id or directory.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    model: String,
    /// cpu, cuda:N or metal (GPU needs a build with `--features cuda|metal`).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Print the cosine similarity of each text to the first instead of the vectors.
    #[arg(long)]
    cosine: bool,
}

/// Runs `neuron embed`: one JSON line per text.
pub fn run(args: EmbedArgs) -> Result<()> {
    if args.cosine && args.texts.len() < 2 {
        bail!("--cosine needs at least two texts");
    }
    let dir = Resolver::default().resolve(&args.model)?;
    let embedder = Embedder::load(&dir, &args.device.open()?)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts)?;
    for (text, v) in texts.iter().zip(&vectors) {
        let line = if args.cosine {
            serde_json::json!({ "text": text, "cosine_to_first": cosine(&vectors[0], v) })
        } else {
            serde_json::json!({ "text": text, "embedding": v })
        };
        println!("{line}");
    }
    Ok(())
}

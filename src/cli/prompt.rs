//! `neuron prompt` (the SDK's `bt.prompt`): ask the miners of a subnet one question
//! and print the best answer, or every answer.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Table;
use neuron::chain::subtensor::SignerRole;
use neuron::net::{Dendrite, DendriteOptions};
use neuron::prompting::prompt::{self, Answer, Targets};

use super::flags::{self, ConfigArgs, open_chain};

/// Options of `neuron prompt`.
#[derive(Debug, Args)]
pub struct PromptArgs {
    /// The prompt, sent as one user message.
    prompt: String,
    /// Ask these uids (comma-separated) instead of the top miners.
    #[arg(long, value_delimiter = ',', conflicts_with = "top")]
    uids: Vec<u16>,
    /// Ask the K serving miners with the highest incentive.
    #[arg(long, value_name = "K", default_value_t = 5)]
    top: usize,
    /// Print every answer with its uid, status and latency, not just the best.
    #[arg(long)]
    all: bool,
    /// Seconds each miner has to answer (default: `--neuron.timeout`).
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
}

/// Runs `neuron prompt`.
pub fn run(args: &PromptArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    let timeout = args.timeout.unwrap_or(config.neuron.timeout);
    if !(timeout.is_finite() && timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds, got {timeout}");
    }
    let keypair = flags::signer(&config.wallet, SignerRole::Hotkey, None)?;
    let caller = keypair.ss58();
    let targets = if args.uids.is_empty() {
        Targets::Top(args.top)
    } else {
        Targets::Uids(args.uids.clone())
    };
    let answers = tokio::runtime::Runtime::new()?.block_on(async {
        let chain = open_chain(&config).await?;
        let metagraph = chain
            .metagraph(config.netuid)
            .await
            .with_context(|| format!("reading the metagraph of netuid {}", config.netuid))?;
        let uids = prompt::select(&metagraph, &targets, &caller)?;
        let dendrite = Dendrite::new(keypair)
            .context("dendrite")?
            .with_options(DendriteOptions::from(&config.dendrite));
        let answers = prompt::ask(
            &dendrite,
            &metagraph,
            &uids,
            &args.prompt,
            Duration::from_secs_f64(timeout),
        )
        .await?;
        anyhow::Ok(answers)
    })?;
    if args.all {
        println!("{}", table(&answers));
    }
    match prompt::best(&answers) {
        Some(best) if !args.all => {
            eprintln!(
                "uid {} (incentive {:.4}) answered in {:.3} s",
                best.uid,
                best.incentive,
                best.latency.as_secs_f64()
            );
            println!("{}", best.completion);
            Ok(())
        }
        Some(_) => Ok(()),
        None => {
            let failures: Vec<String> = answers
                .iter()
                .map(|a| format!("uid {}: {} {}", a.uid, a.status_code, a.status_message))
                .collect();
            bail!("no miner answered:\n  {}", failures.join("\n  "))
        }
    }
}

fn table(answers: &[Answer]) -> Table {
    let mut table = Table::new();
    table.set_header(["uid", "incentive", "status", "latency (s)", "completion"]);
    for a in answers {
        let status = if a.status_code == 200 {
            "200".to_string()
        } else {
            format!("{} {}", a.status_code, a.status_message)
        };
        table.add_row([
            a.uid.to_string(),
            format!("{:.4}", a.incentive),
            status,
            format!("{:.3}", a.latency.as_secs_f64()),
            a.completion.clone(),
        ]);
    }
    table
}

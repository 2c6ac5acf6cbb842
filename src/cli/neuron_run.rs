//! `neuron validator` and `neuron miner`: the long-running neurons.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use neuron::chain::subtensor::SignerRole;
use neuron::config::Config;
use neuron::prompting::miner::{MinerSetup, require_strategy, serve_miner};
use neuron::prompting::script_host;
use neuron::prompting::validator::{Validator, require_challenge_scripts};
use neuron::script::{ScriptHost, Watcher};

use super::flags::{self, ConfigArgs, open_chain};
use super::stop_signal;

/// Options of `neuron miner` (everything else is configuration).
#[derive(Debug, Args)]
pub struct MinerArgs {}

/// Options of `neuron validator`.
#[derive(Debug, Args)]
pub struct ValidatorArgs {
    /// Stop after this many steps (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    steps: Option<u64>,
}

fn scripts_with_reload(config: &Config) -> anyhow::Result<(ScriptHost, Watcher)> {
    let scripts = script_host(config).context("loading scripts")?;
    let watcher = scripts
        .watch(Duration::from_millis(100))
        .context("watching scripts for changes")?;
    Ok((scripts, watcher))
}

/// Runs the validator loop.
pub fn validator(args: &ValidatorArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    // The scripts first: a validator that could only idle fails before asking for a
    // password or reaching the chain.
    let (scripts, _watcher) = scripts_with_reload(&config)?;
    require_challenge_scripts(&config, &scripts)?;
    let hotkey = flags::signer(&config.wallet, SignerRole::Hotkey, None)?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let chain = open_chain(&config).await?;
        let mut validator = Validator::new(config, chain, hotkey, scripts)?;
        // The first signal lets the step in flight finish and saves it; a second one
        // stops at once (every finished step is saved already).
        let stop = async {
            match stop_signal().await {
                Ok(()) => tracing::info!(
                    "stopping validator after the step in flight (signal again to stop now)"
                ),
                Err(err) => {
                    tracing::warn!("cannot listen for SIGTERM or Ctrl-C: {err}");
                    std::future::pending().await
                }
            }
        };
        let again = async {
            if stop_signal().await.is_ok() {
                let _ = stop_signal().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = validator.run_until(args.steps, stop, |result| {
                if let Ok(event) = result {
                    tracing::info!(step = event.step, task = %event.task, miners = event.responses.len(), "step done");
                }
            }) => {}
            () = again => tracing::info!("stopping validator now; the state of the last finished step is saved"),
        }
        anyhow::Ok(())
    })
}

/// Serves the miner axon until Ctrl-C or SIGTERM, announcing it on chain.
pub fn miner(config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    // The strategy first: a miner that could not answer fails before asking for a
    // password or reaching the chain.
    let (scripts, _watcher) = scripts_with_reload(&config)?;
    require_strategy(&scripts, &config.neuron.strategy)?;
    let hotkey = flags::signer(&config.wallet, SignerRole::Hotkey, None)?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let chain = open_chain(&config).await?;
        let setup = MinerSetup::from_config(&config, chain, hotkey, scripts)?;
        let miner = serve_miner(setup).await?;
        tracing::info!(addr = %miner.local_addr(), strategy = %config.neuron.strategy, "miner serving");
        stop_signal().await?;
        tracing::info!("stopping miner, draining requests");
        miner.shutdown().await;
        anyhow::Ok(())
    })
}

//! `neuron validator` and `neuron miner`: the long-running neurons.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use neuron::chain::Chain;
use neuron::chain::subtensor::SignerRole;
use neuron::config::{Config, SubtensorConfig, WalletConfig};
use neuron::prompting::miner::{MinerSetup, require_strategy, serve_miner};
use neuron::prompting::script_host;
use neuron::prompting::validator::{Validator, require_challenge_scripts};
use neuron::script::{ScriptHost, Watcher};
use neuron::wallet::Keypair;

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

/// Fails unless `hotkey` is registered on the configured subnet, saying how to register
/// it: a neuron that is not registered could only idle (no validator queries a miner
/// that is not in the metagraph, and a validator's steps all fail).
async fn require_registered(
    chain: &dyn Chain,
    config: &Config,
    hotkey: &Keypair,
) -> anyhow::Result<()> {
    let netuid = config.netuid;
    let metagraph = chain
        .metagraph(netuid)
        .await
        .with_context(|| format!("reading the metagraph of netuid {netuid}"))?;
    if metagraph.uid_of(&hotkey.ss58()).is_none() {
        let (wallet, chain) = (&config.wallet, &config.subtensor);
        let mut register = format!(
            "neuron chain register --netuid {netuid} --wallet.name {} --wallet.hotkey {}",
            wallet.name, wallet.hotkey
        );
        if wallet.path != WalletConfig::default().path {
            register.push_str(&format!(" --wallet.path {}", wallet.path));
        }
        if chain.network != SubtensorConfig::default().network {
            register.push_str(&format!(" --subtensor.network {}", chain.network));
        }
        if let Some(endpoint) = &chain.chain_endpoint {
            register.push_str(&format!(" --subtensor.chain_endpoint {endpoint}"));
        }
        if let Some(db) = &chain.db_path {
            register.push_str(&format!(" --subtensor.db_path {}", db.display()));
        }
        anyhow::bail!(
            "hotkey {} is not registered on netuid {netuid}; register it with `{register}`",
            hotkey.ss58()
        );
    }
    Ok(())
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
        require_registered(chain.as_ref(), &config, &hotkey).await?;
        let mut validator = Validator::new(config, chain, hotkey, scripts)?;
        let api = validator.serve_api().await?;
        if let Some(api) = &api {
            eprintln!("API serving on http://{}/v1", api.local_addr());
        }
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
        require_registered(chain.as_ref(), &config, &hotkey).await?;
        let setup = MinerSetup::from_config(&config, chain, hotkey, scripts)?;
        let miner = serve_miner(setup).await?;
        tracing::info!(addr = %miner.local_addr(), strategy = %config.neuron.strategy, "miner serving");
        stop_signal().await?;
        tracing::info!("stopping miner, draining requests");
        miner.shutdown().await;
        anyhow::Ok(())
    })
}

//! `neuron validator` and `neuron miner`: the long-running neurons.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use neuron::chain::AxonServe;
use neuron::chain::subtensor::SignerRole;
use neuron::config::Config;
use neuron::net::{Axon, AxonConfig, Dendrite, VERSION_AS_INT};
use neuron::prompting::miner::MinerHandler;
use neuron::prompting::script_host;
use neuron::prompting::validator::Validator;
use neuron::script::{NeuronLink, ScriptHost, Watcher};

use super::flags::{self, ConfigArgs, open_chain};

/// Options of `neuron miner` (everything else is configuration).
#[derive(Debug, Args)]
pub struct MinerArgs {}

/// Options of `neuron validator`.
#[derive(Debug, Args)]
pub struct ValidatorArgs {
    /// Stop after this many steps (default: run until Ctrl-C).
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
    let hotkey = flags::signer(&config.wallet, SignerRole::Hotkey, None)?;
    let (scripts, _watcher) = scripts_with_reload(&config)?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let chain = open_chain(&config).await?;
        let mut validator = Validator::new(config, chain, hotkey, scripts)?;
        tokio::select! {
            _ = validator.run(args.steps, |result| {
                if let Ok(event) = result {
                    tracing::info!(step = event.step, task = %event.task, miners = event.responses.len(), "step done");
                }
            }) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("stopping validator"),
        }
        anyhow::Ok(())
    })
}

/// Serves the miner axon until Ctrl-C, announcing it on chain.
pub fn miner(config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    let hotkey = flags::signer(&config.wallet, SignerRole::Hotkey, None)?;
    let (scripts, _watcher) = scripts_with_reload(&config)?;
    scripts
        .strategy(&config.neuron.strategy)
        .with_context(|| format!("strategy scripts/miners/{}.rhai", config.neuron.strategy))?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let chain = open_chain(&config).await?;
        let link = NeuronLink::new(
            Arc::clone(&chain),
            config.netuid,
            Dendrite::new(hotkey.clone())?,
        );
        let handler = Arc::new(
            MinerHandler::new(
                scripts,
                config.neuron.strategy.clone(),
                config.blacklist.clone(),
            )
            .with_link(link),
        );
        let refresh = handler.spawn_metagraph_refresh(Arc::clone(&chain), config.netuid);
        let bind: SocketAddr = format!("{}:{}", config.axon.ip, config.axon.port)
            .parse()
            .context("axon address")?;
        let axon_config = AxonConfig {
            bind,
            external_ip: config.axon.external_ip.clone(),
            max_body_bytes: config.axon.max_body_bytes,
            max_in_flight_per_ip: config.axon.max_concurrent_per_ip,
            ..AxonConfig::default()
        };
        let axon = Axon::serve(axon_config, hotkey.clone(), handler).await?;
        if !config.neuron.axon_off {
            let info = axon.info();
            chain
                .serve_axon(
                    &hotkey,
                    config.netuid,
                    &AxonServe {
                        version: VERSION_AS_INT as u32,
                        ip: info.ip.parse().context("external ip")?,
                        port: config.axon.external_port.unwrap_or(info.port),
                        protocol: 4,
                    },
                )
                .await?;
        }
        tracing::info!(addr = %axon.local_addr(), strategy = %config.neuron.strategy, "miner serving");
        tokio::signal::ctrl_c().await?;
        tracing::info!("stopping miner, draining requests");
        refresh.abort();
        axon.shutdown().await;
        anyhow::Ok(())
    })
}

//! `neuron local`: a whole subnet on one machine. An embedded chain with fast blocks,
//! one or more validators and several miners with different strategy scripts, real
//! HTTP on 127.0.0.1 and real models; at the end a report and a plot.
//!
//! Keys are development keys derived from URIs (`//neuron-local//miner3`), never
//! wallet files: this is a demo and test bed, not a place for real funds.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::miner::MinerHandler;
use super::validator::{StepEvent, Validator, ValidatorError};
use crate::chain::sim::{SimChain, SimConfig};
use crate::chain::{AxonServe, Chain, ChainError, Hyperparameters, RAO_PER_TAO, proportion};
use crate::config::{BlacklistConfig, Config};
use crate::net::{Axon, AxonConfig, Dendrite};
use crate::script::{NeuronLink, ScriptHost};
use crate::wallet::{Keypair, WalletError};

/// Errors setting up or running a local subnet.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The embedded chain refused something.
    #[error("local chain: {0}")]
    Chain(#[from] ChainError),
    /// A development key could not be derived.
    #[error("dev key: {0}")]
    Key(#[from] WalletError),
    /// A miner axon could not start.
    #[error("miner axon: {0}")]
    Axon(String),
    /// The validator could not start.
    #[error("validator: {0}")]
    Validator(#[from] ValidatorError),
    /// The report could not be written.
    #[error("report {path}: {message}")]
    Report {
        /// Where.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Directory for the chain file, validator state and reports.
    pub data_dir: PathBuf,
    /// Number of miners.
    pub miners: usize,
    /// Strategy scripts, assigned to miners round-robin.
    pub strategies: Vec<String>,
    /// Number of validators.
    pub validators: usize,
    /// Validator steps to run (per validator).
    pub steps: u64,
    /// Base seed of every validator's step RNG.
    pub seed: u64,
    /// Block time of the embedded chain.
    pub block_time: Duration,
    /// Base configuration (models, timeouts, tasks, scripts root).
    pub config: Config,
}

/// The strategies `neuron local` runs by default, best expected first.
pub const DEFAULT_STRATEGIES: [&str; 5] = ["llm", "wiki_agent", "echo", "phrase", "weak"];

/// One miner of the local subnet.
#[derive(Debug, Clone, Serialize)]
pub struct LocalMiner {
    /// Its uid.
    pub uid: u16,
    /// Its strategy script.
    pub strategy: String,
    /// Its hotkey SS58.
    pub hotkey: String,
    /// Its axon address.
    pub addr: SocketAddr,
}

/// Per-miner numbers after a step, for the live view and the report.
#[derive(Debug, Clone, Serialize)]
pub struct MinerRow {
    /// Uid.
    pub uid: u16,
    /// Strategy script.
    pub strategy: String,
    /// Reward in the last step it was queried (None before its first).
    pub last_reward: Option<f64>,
    /// Moving score (first validator).
    pub score: f64,
    /// Incentive after the last epoch (0..1).
    pub incentive: f64,
}

/// A snapshot after one step, handed to the progress callback.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Validator index.
    pub validator: usize,
    /// The step's event, or its error text.
    pub step: Result<StepEvent, String>,
    /// Current per-miner table.
    pub miners: Vec<MinerRow>,
    /// Current block.
    pub block: u64,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct LocalReport {
    /// Miners of the subnet.
    pub miners: Vec<LocalMiner>,
    /// Final per-miner rows.
    pub final_rows: Vec<MinerRow>,
    /// Events of every successful step, in order.
    pub events: Vec<StepEvent>,
    /// Per-step score history: one entry per step, one score per miner (miner order).
    pub score_history: Vec<Vec<f64>>,
    /// Incentive history: (step, incentive per miner) after each epoch seen.
    pub incentive_history: Vec<(usize, Vec<f64>)>,
    /// Steps that failed, with their error.
    pub failures: Vec<String>,
    /// Epochs the chain ran during the run.
    pub epochs: u64,
}

/// Hyperparameters of the demo subnet: short tempo so epochs happen within a run.
pub fn demo_hyperparameters() -> Hyperparameters {
    Hyperparameters {
        tempo: 10,
        immunity_period: 1000,
        min_allowed_weights: 1,
        weights_rate_limit: 1,
        max_allowed_validators: 8,
        serving_rate_limit: 0,
        burn: RAO_PER_TAO,
        ..Hyperparameters::default()
    }
}

fn key(role: &str) -> Result<Keypair, LocalError> {
    Ok(Keypair::from_uri(&format!("//neuron-local//{role}"))?)
}

/// Registers `hotkey` on `netuid` (burning from `coldkey`) unless it already is;
/// returns its uid.
async fn ensure_registered(
    chain: &SimChain,
    coldkey: &Keypair,
    netuid: u16,
    hotkey: &Keypair,
) -> Result<u16, LocalError> {
    let metagraph = chain.metagraph(netuid).await?;
    if let Some(uid) = metagraph.uid_of(&hotkey.ss58()) {
        return Ok(uid);
    }
    Ok(chain
        .burned_register(coldkey, netuid, &hotkey.ss58())
        .await?)
}

/// A miner serving on 127.0.0.1: its axon and the task keeping its metagraph view fresh.
pub struct ServedMiner {
    /// Who it is and where it serves.
    pub miner: LocalMiner,
    axon: Axon,
    refresh: tokio::task::JoinHandle<()>,
}

impl ServedMiner {
    /// Stops the metagraph refresh and drains the axon.
    pub async fn shutdown(self) {
        self.refresh.abort();
        self.axon.shutdown().await;
    }
}

/// Registers `hotkey` on `netuid` (burning from `coldkey`) unless it already is, starts
/// an axon on 127.0.0.1 answering with the `strategy` script, and announces it on chain.
pub async fn serve_miner(
    chain: &SimChain,
    coldkey: &Keypair,
    netuid: u16,
    hotkey: &Keypair,
    strategy: &str,
    scripts: &ScriptHost,
    blacklist: &BlacklistConfig,
) -> Result<ServedMiner, LocalError> {
    let shared: Arc<dyn Chain> = Arc::new(chain.clone());
    let uid = ensure_registered(chain, coldkey, netuid, hotkey).await?;
    let dendrite = Dendrite::new(hotkey.clone()).map_err(|e| LocalError::Axon(e.to_string()))?;
    let handler =
        Arc::new(
            MinerHandler::new(scripts.clone(), strategy, blacklist.clone())
                .with_link(NeuronLink::new(Arc::clone(&shared), netuid, dendrite)),
        );
    handler.set_metagraph(shared.metagraph(netuid).await?);
    let refresh = handler.spawn_metagraph_refresh(Arc::clone(&shared), netuid);
    let config = AxonConfig {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        ..AxonConfig::default()
    };
    let axon = Axon::serve(config, hotkey.clone(), handler)
        .await
        .map_err(|e| LocalError::Axon(e.to_string()))?;
    let addr = axon.local_addr();
    shared
        .serve_axon(
            hotkey,
            netuid,
            &AxonServe {
                version: crate::net::VERSION_AS_INT as u32,
                ip: addr.ip(),
                port: addr.port(),
                protocol: 4,
            },
        )
        .await?;
    Ok(ServedMiner {
        miner: LocalMiner {
            uid,
            strategy: strategy.to_string(),
            hotkey: hotkey.ss58(),
            addr,
        },
        axon,
        refresh,
    })
}

/// Opens or creates the chain file and the demo subnet; returns the chain and netuid.
pub async fn open_chain(
    data_dir: &Path,
    block_time: Duration,
    owner: &Keypair,
) -> Result<(SimChain, u16), LocalError> {
    let path = data_dir.join("chain.sqlite");
    let chain = if path.exists() {
        SimChain::open(&path)?
    } else {
        std::fs::create_dir_all(data_dir).map_err(|e| ChainError::Storage(e.to_string()))?;
        SimChain::create(&path, SimConfig { block_time })?
    };
    let netuid = match chain.status().await?.subnets.first() {
        Some(&netuid) => netuid,
        None => {
            chain
                .create_subnet(&owner.ss58(), demo_hyperparameters())
                .await?
        }
    };
    Ok((chain, netuid))
}

/// Runs a local subnet: registers and serves the miners, runs the validators'
/// steps, calls `on_progress` after every step, and returns the report data.
pub async fn run(
    options: &LocalOptions,
    scripts: ScriptHost,
    mut on_progress: impl FnMut(&Progress),
) -> Result<LocalReport, LocalError> {
    let owner = key("owner")?;
    let (chain, netuid) = open_chain(&options.data_dir, options.block_time, &owner).await?;
    chain.faucet(&owner.ss58(), 1_000_000 * RAO_PER_TAO).await?;
    let shared: Arc<dyn Chain> = Arc::new(chain.clone());

    // Validators: register and stake (for a permit) before the miners start, so the
    // miners' first metagraph view already knows them.
    let mut validator_keys = Vec::new();
    for index in 0..options.validators.max(1) {
        let hotkey = key(&format!("validator{index}"))?;
        ensure_registered(&chain, &owner, netuid, &hotkey).await?;
        chain
            .add_stake(&owner, &hotkey.ss58(), netuid, 10_000 * RAO_PER_TAO)
            .await?;
        validator_keys.push(hotkey);
    }

    // Miners: register, start an axon each on loopback, announce it on chain.
    let mut served = Vec::new();
    for index in 0..options.miners {
        let strategy = &options.strategies[index % options.strategies.len()];
        let hotkey = key(&format!("miner{index}"))?;
        served.push(
            serve_miner(
                &chain,
                &owner,
                netuid,
                &hotkey,
                strategy,
                &scripts,
                &options.config.blacklist,
            )
            .await?,
        );
    }
    let miners: Vec<LocalMiner> = served.iter().map(|m| m.miner.clone()).collect();

    let mut validators = Vec::new();
    for (index, hotkey) in validator_keys.into_iter().enumerate() {
        let mut config = options.config.clone();
        config.netuid = netuid;
        config.neuron.seed = Some(options.seed.wrapping_add(index as u64 * 1_000_003));
        config.neuron.full_path = Some(options.data_dir.join(format!("validator{index}")));
        config.neuron.sample_size = config.neuron.sample_size.min(options.miners.max(1));
        validators.push(Validator::new(
            config,
            Arc::clone(&shared),
            hotkey,
            scripts.clone(),
        )?);
    }
    // The first epoch hands out validator permits (one epoch per block at most: when
    // the subnet's tempo brought one due at this very block, that one did it).
    tokio::time::sleep(chain.block_time()).await;
    match chain.run_epoch_now(netuid).await {
        Ok(_) | Err(ChainError::InvalidInput(_)) => {}
        Err(err) => return Err(err.into()),
    }

    let mut report = LocalReport {
        miners: miners.clone(),
        final_rows: Vec::new(),
        events: Vec::new(),
        score_history: Vec::new(),
        incentive_history: Vec::new(),
        failures: Vec::new(),
        epochs: 0,
    };
    let epochs_before = chain.epoch_status(netuid).await?.epochs;
    let mut last_rewards: BTreeMap<u16, f64> = BTreeMap::new();
    let mut last_epochs = epochs_before;
    for _ in 0..options.steps {
        for (index, validator) in validators.iter_mut().enumerate() {
            let result = validator.step().await;
            let metagraph = shared.metagraph(netuid).await?;
            let epochs = chain.epoch_status(netuid).await?.epochs;
            if let (0, Ok(event)) = (index, &result) {
                for response in &event.responses {
                    last_rewards.insert(response.uid, response.reward);
                }
            }
            let scores = &validator.state().scores;
            let rows: Vec<MinerRow> = miners
                .iter()
                .map(|m| MinerRow {
                    uid: m.uid,
                    strategy: m.strategy.clone(),
                    last_reward: last_rewards.get(&m.uid).copied(),
                    score: scores.get(usize::from(m.uid)).copied().unwrap_or(0.0),
                    incentive: proportion(metagraph.neurons[usize::from(m.uid)].incentive),
                })
                .collect();
            if index == 0 {
                report
                    .score_history
                    .push(rows.iter().map(|r| r.score).collect());
                if epochs != last_epochs {
                    last_epochs = epochs;
                    report.incentive_history.push((
                        report.score_history.len(),
                        rows.iter().map(|r| r.incentive).collect(),
                    ));
                }
            }
            let progress = Progress {
                validator: index,
                step: result.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
                miners: rows.clone(),
                block: metagraph.block,
            };
            on_progress(&progress);
            match result {
                Ok(event) => report.events.push(event),
                Err(err) => report.failures.push(err.to_string()),
            }
            report.final_rows = rows;
        }
    }
    report.epochs = chain.epoch_status(netuid).await?.epochs - epochs_before;
    for miner in served {
        miner.shutdown().await;
    }
    Ok(report)
}

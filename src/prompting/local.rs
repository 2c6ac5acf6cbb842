//! `neuron local`: a whole subnet on one machine. An embedded chain with fast blocks,
//! one or more validators and several miners with different strategy scripts, real
//! HTTP on 127.0.0.1 and real models; at the end a report and a plot.
//!
//! Keys are development keys derived from URIs (`//neuron-local//miner3`), never
//! wallet files: this is a demo and test bed, not a place for real funds.
//!
//! [`LocalSubnet`] is the set-up shared by `neuron local`, the tests and the benches:
//! the embedded chain and its subnet, staked validators and miners serving on
//! 127.0.0.1.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::events::StepEvent;
use super::miner::{MinerError, MinerSetup, ServedMiner, serve_miner};
use super::validator::{Validator, ValidatorError};
use crate::chain::sim::{SimChain, SimConfig};
use crate::chain::{Chain, ChainError, Hyperparameters, RAO_PER_TAO, proportion};
use crate::config::{BlacklistConfig, Config};
use crate::net::{AxonOptions, DendriteOptions};
use crate::script::ScriptHost;
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
    /// A miner could not start.
    #[error("miner: {0}")]
    Miner(#[from] MinerError),
    /// The validator could not start.
    #[error("validator: {0}")]
    Validator(#[from] ValidatorError),
    /// The API could not start.
    #[error("api: {0}")]
    Api(#[from] super::organic::OrganicError),
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

/// Stake of the first validator (TAO); validator `i` of `n` gets `(n − i)/n` of it, so
/// several validators have different stakes and Yuma weighs their votes differently.
pub const VALIDATOR_STAKE_TAO: u64 = 30_000;

/// The stake (rao) of validator `index` of `count`.
pub fn validator_stake(index: usize, count: usize) -> u64 {
    let count = count.max(1) as u64;
    VALIDATOR_STAKE_TAO * RAO_PER_TAO * (count - index as u64) / count
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

/// Per-validator numbers after an epoch: what Yuma made of its weights.
#[derive(Debug, Clone, Serialize)]
pub struct ValidatorRow {
    /// Validator index (`validator0`, `validator1`, …).
    pub index: usize,
    /// Its uid.
    pub uid: u16,
    /// Its stake (TAO).
    pub stake_tao: f64,
    /// Validator trust after the last epoch (0..1): the share of its weights that
    /// survived consensus clipping.
    pub vtrust: f64,
    /// Dividends after the last epoch (0..1): its share of the validators' emission.
    pub dividends: f64,
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
    /// Epochs the chain has run since the run started.
    pub epochs: u64,
    /// Steps done so far (all validators), this one included.
    pub done: u64,
    /// Steps the run will do in all.
    pub total: u64,
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
    /// Validators of the subnet, after the last step.
    pub validators: Vec<ValidatorRow>,
    /// Validator history: (step, (vtrust, dividends) per validator) after each epoch.
    pub validator_history: Vec<(usize, Vec<(f64, f64)>)>,
    /// Steps that failed, with their error.
    pub failures: Vec<String>,
    /// Epochs the chain ran during the run.
    pub epochs: u64,
    /// Wall-clock seconds of the steps (set-up excluded).
    pub steps_s: f64,
}

impl LocalReport {
    /// Steps (failed ones included) per minute of [`LocalReport::steps_s`].
    pub fn steps_per_min(&self) -> f64 {
        let steps = (self.events.len() + self.failures.len()) as f64;
        if self.steps_s > 0.0 {
            steps * 60.0 / self.steps_s
        } else {
            0.0
        }
    }

    /// Seconds the successful steps spent generating, querying and scoring, summed.
    pub fn phase_totals(&self) -> PhaseTotals {
        self.events
            .iter()
            .fold(PhaseTotals::default(), |total, e| PhaseTotals {
                generate_s: total.generate_s + e.generate_s,
                query_s: total.query_s + e.query_s,
                score_s: total.score_s + e.score_s,
            })
    }
}

/// Where the steps' time went, summed over steps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTotals {
    /// Generating the task, reference and challenge.
    pub generate_s: f64,
    /// Asking the miners.
    pub query_s: f64,
    /// Scoring their answers.
    pub score_s: f64,
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

/// A subnet on the embedded chain, all on this machine: the chain file, the subnet,
/// its owner (who funds, registers and stakes for everyone) and the miners it serves on
/// 127.0.0.1.
pub struct LocalSubnet {
    chain: SimChain,
    netuid: u16,
    owner: Keypair,
    miners: Vec<(LocalMiner, ServedMiner)>,
}

impl LocalSubnet {
    /// Opens `data_dir/chain.sqlite` (created with `block_time` when absent) and its
    /// first subnet (created by `owner` with `hyperparameters` when there is none), and
    /// funds the owner with `funds` rao.
    pub async fn open(
        data_dir: &Path,
        block_time: Duration,
        owner: Keypair,
        hyperparameters: Hyperparameters,
        funds: u64,
    ) -> Result<Self, LocalError> {
        let path = data_dir.join("chain.sqlite");
        let chain = if path.exists() {
            SimChain::open(&path)?
        } else {
            std::fs::create_dir_all(data_dir).map_err(|e| ChainError::Storage(e.to_string()))?;
            SimChain::create(&path, SimConfig { block_time })?
        };
        let netuid = match chain.status().await?.subnets.first() {
            Some(&netuid) => netuid,
            None => chain.create_subnet(&owner.ss58(), hyperparameters).await?,
        };
        chain.faucet(&owner.ss58(), funds).await?;
        Ok(Self {
            chain,
            netuid,
            owner,
            miners: Vec::new(),
        })
    }

    /// The embedded chain.
    pub fn chain(&self) -> &SimChain {
        &self.chain
    }

    /// The subnet.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    /// The miners served so far, in the order they were started.
    pub fn miners(&self) -> Vec<LocalMiner> {
        self.miners.iter().map(|(miner, _)| miner.clone()).collect()
    }

    /// Registers `hotkey` (burning from the owner) unless it already is; returns its
    /// uid.
    pub async fn register(&self, hotkey: &Keypair) -> Result<u16, LocalError> {
        let metagraph = self.chain.metagraph(self.netuid).await?;
        if let Some(uid) = metagraph.uid_of(&hotkey.ss58()) {
            return Ok(uid);
        }
        Ok(self
            .chain
            .burned_register(&self.owner, self.netuid, &hotkey.ss58())
            .await?)
    }

    /// Registers `hotkey` and stakes `stake` rao on it from the owner, so the next epoch
    /// gives it a validator permit ([`Self::hand_out_permits`]); returns its uid.
    pub async fn add_validator(&self, hotkey: &Keypair, stake: u64) -> Result<u16, LocalError> {
        let uid = self.register(hotkey).await?;
        self.chain
            .add_stake(&self.owner, &hotkey.ss58(), self.netuid, stake)
            .await?;
        Ok(uid)
    }

    /// Registers `hotkey` and serves a miner with the `strategy` script on a free port
    /// of 127.0.0.1, announced on chain ([`serve_miner`]).
    pub async fn serve_miner(
        &mut self,
        hotkey: &Keypair,
        strategy: &str,
        scripts: &ScriptHost,
        blacklist: &BlacklistConfig,
    ) -> Result<LocalMiner, LocalError> {
        let uid = self.register(hotkey).await?;
        let served = serve_miner(MinerSetup {
            chain: Arc::new(self.chain.clone()),
            netuid: self.netuid,
            hotkey: hotkey.clone(),
            scripts: scripts.clone(),
            strategy: strategy.to_string(),
            blacklist: blacklist.clone(),
            axon: AxonOptions {
                bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                ..AxonOptions::default()
            },
            announce: true,
            external_port: None,
            dendrite: DendriteOptions::default(),
        })
        .await?;
        let miner = LocalMiner {
            uid,
            strategy: strategy.to_string(),
            hotkey: hotkey.ss58(),
            addr: served.local_addr(),
        };
        self.miners.push((miner.clone(), served));
        Ok(miner)
    }

    /// Waits one block and runs an epoch, which hands the staked validators their
    /// permits (an epoch the subnet's tempo already ran in this block does it too).
    pub async fn hand_out_permits(&self) -> Result<(), LocalError> {
        tokio::time::sleep(self.chain.block_time()).await;
        match self.chain.run_epoch_now(self.netuid).await {
            Ok(_) | Err(ChainError::InvalidInput(_)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Stops every miner (metagraph refresh, then the axon drained).
    pub async fn shutdown(self) {
        for (_, served) in self.miners {
            served.shutdown().await;
        }
    }
}

/// Runs a local subnet: registers and serves the miners, runs the validators'
/// steps, calls `on_progress` after every step, and returns the report data.
pub async fn run(
    options: &LocalOptions,
    scripts: ScriptHost,
    mut on_progress: impl FnMut(&Progress),
) -> Result<LocalReport, LocalError> {
    // `--commit-reveal v2|v4`: the subnet runs commit-reveal of that version and the
    // validators (commit_reveal v2 or v4 in their config) commit accordingly.
    let params = demo_hyperparameters().with_commit_reveal(options.config.neuron.commit_reveal);
    let mut subnet = LocalSubnet::open(
        &options.data_dir,
        options.block_time,
        key("owner")?,
        params,
        1_000_000 * RAO_PER_TAO,
    )
    .await?;
    let (chain, netuid) = (subnet.chain().clone(), subnet.netuid());
    let shared: Arc<dyn Chain> = Arc::new(chain.clone());

    // Validators: register and stake (for a permit) before the miners start, so the
    // miners' first metagraph view already knows them.
    let count = options.validators.max(1);
    let mut validator_keys = Vec::new();
    let mut validator_uids = Vec::new();
    for index in 0..count {
        let hotkey = key(&format!("validator{index}"))?;
        let uid = subnet
            .add_validator(&hotkey, validator_stake(index, count))
            .await?;
        validator_keys.push(hotkey);
        validator_uids.push(uid);
    }

    // Miners: register, start an axon each on loopback, announce it on chain.
    for index in 0..options.miners {
        let strategy = &options.strategies[index % options.strategies.len()];
        let hotkey = key(&format!("miner{index}"))?;
        subnet
            .serve_miner(&hotkey, strategy, &scripts, &options.config.blacklist)
            .await?;
    }
    let miners = subnet.miners();

    let mut validators = Vec::new();
    for (index, hotkey) in validator_keys.into_iter().enumerate() {
        let mut config = options.config.clone();
        config.netuid = netuid;
        config.neuron.seed = Some(options.seed.wrapping_add(index as u64 * 1_000_003));
        config.neuron.full_path = Some(options.data_dir.join(format!("validator{index}")));
        config.neuron.sample_size = config.neuron.sample_size.min(options.miners.max(1));
        if index > 0 {
            // One API: the first validator's (`--api.port`).
            config.api.port = None;
        }
        validators.push(Validator::new(
            config,
            Arc::clone(&shared),
            hotkey,
            scripts.clone(),
        )?);
    }
    // The first epoch hands out validator permits.
    subnet.hand_out_permits().await?;
    // `--api.port`: the first validator's API serves while the steps run.
    let _api = validators[0].serve_api().await?;

    let mut report = LocalReport {
        miners: miners.clone(),
        final_rows: Vec::new(),
        events: Vec::new(),
        score_history: Vec::new(),
        incentive_history: Vec::new(),
        validators: Vec::new(),
        validator_history: Vec::new(),
        failures: Vec::new(),
        epochs: 0,
        steps_s: 0.0,
    };
    let started = std::time::Instant::now();
    let total = options.steps * count as u64;
    let epochs_before = chain.epoch_status(netuid).await?.epochs;
    let mut last_rewards: BTreeMap<u16, f64> = BTreeMap::new();
    let mut last_epochs = epochs_before;
    let mut done = 0;
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
            let validator_rows: Vec<ValidatorRow> = validator_uids
                .iter()
                .enumerate()
                .map(|(index, &uid)| {
                    let neuron = &metagraph.neurons[usize::from(uid)];
                    ValidatorRow {
                        index,
                        uid,
                        stake_tao: neuron.stake as f64 / RAO_PER_TAO as f64,
                        vtrust: proportion(neuron.validator_trust),
                        dividends: proportion(neuron.dividends),
                    }
                })
                .collect();
            if index == 0 {
                report
                    .score_history
                    .push(rows.iter().map(|r| r.score).collect());
            }
            if epochs != last_epochs {
                last_epochs = epochs;
                let step = report.score_history.len();
                report
                    .incentive_history
                    .push((step, rows.iter().map(|r| r.incentive).collect()));
                report.validator_history.push((
                    step,
                    validator_rows
                        .iter()
                        .map(|v| (v.vtrust, v.dividends))
                        .collect(),
                ));
            }
            done += 1;
            let progress = Progress {
                validator: index,
                step: result.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
                miners: rows.clone(),
                block: metagraph.block,
                epochs: epochs - epochs_before,
                done,
                total,
            };
            on_progress(&progress);
            match result {
                Ok(event) => report.events.push(event),
                Err(err) => report.failures.push(err.to_string()),
            }
            report.final_rows = rows;
            report.validators = validator_rows;
        }
    }
    report.steps_s = started.elapsed().as_secs_f64();
    report.epochs = chain.epoch_status(netuid).await?.epochs - epochs_before;
    subnet.shutdown().await;
    Ok(report)
}

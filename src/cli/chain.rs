//! `neuron chain ...`: inspect a chain, register, serve, stake, transfer, set weights and
//! commitments on the embedded local chain (`local-sim`) or on subtensor (`finney`,
//! `test`, `local`, a URL); create the local chain and run its epochs.
//!
//! The chain-generic commands go through the `Chain` trait, so they behave the same on
//! both. The chain (`--subtensor.*`) and the keys (`--wallet.*`) come from the
//! configuration as for every command (`--config` and flags, see `flags`): the hotkey
//! signs weights, serving and commitments, the coldkey registration, staking and
//! transfers. `--coldkey-uri`/`--hotkey-uri` replace them with development keys.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use std::sync::Arc;

use neuron::chain::commit_reveal::{self, CommitRevealError, RevealReport, RevealStore, Revealed};
use neuron::chain::sim::{SimChain, SimConfig};
use neuron::chain::subtensor::{SignerRole, SubtensorChain};
use neuron::chain::weights::{CommitRevealMode, WeightSetter, WeightsOutcome, WeightsPlan};
use neuron::chain::{
    AxonServe, Chain, Hyperparameters, LOCAL_SIM, Metagraph, Network, PendingCommit, RAO_PER_TAO,
    connect, proportion,
};
use neuron::config::{NeuronConfig, WalletConfig};
use neuron::wallet::Keypair;

use super::flags::{self, ChainWalletArgs, KeyUris, open_subtensor};

/// Options shared by every `neuron chain` command.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// `--config`, the chain (`--subtensor.*`) and the wallet (`--wallet.*`).
    #[command(flatten)]
    config: ChainWalletArgs,
    #[command(flatten)]
    uris: KeyUris,
    #[command(subcommand)]
    command: ChainCommand,
}

/// Which keys sign: the configured wallet's, or development secret URIs.
struct Keys {
    wallet: WalletConfig,
    uris: KeyUris,
}

impl Keys {
    fn signer(&self, role: SignerRole) -> Result<Keypair> {
        flags::signer(&self.wallet, role, self.uris.get(role))
    }

    fn address(&self, role: SignerRole) -> Result<String> {
        flags::address(&self.wallet, role, self.uris.get(role))
    }
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// Create a local chain file with one subnet (netuid 1). Local chain only.
    Init {
        /// Seconds per block.
        #[arg(long, default_value_t = 12.0)]
        block_time: f64,
        /// Replace an existing chain file.
        #[arg(long)]
        force: bool,
        /// Subnet owner address (default: //Alice).
        #[arg(long)]
        owner: Option<String>,
        /// Subnet hyperparameters.
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Network, block height and runtime (subtensor); subnets, epochs and value
    /// bookkeeping (local chain).
    Status,
    /// Credit TAO to an address. Local chain only.
    Faucet {
        /// Address to credit (default: the coldkey's).
        #[arg(long)]
        address: Option<String>,
        /// Amount in TAO.
        #[arg(long)]
        amount: f64,
    },
    /// Show the epoch schedule; with --now run an epoch at the current block. Local
    /// chain only.
    Epoch {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Run an epoch now.
        #[arg(long)]
        now: bool,
    },
    #[command(flatten)]
    Generic(GenericCommand),
}

/// The commands every chain supports, run through the `Chain` trait.
#[derive(Debug, Subcommand)]
enum GenericCommand {
    /// Print a subnet's neurons (like `btcli subnet metagraph`).
    Metagraph {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
    },
    /// Print a subnet's hyperparameters.
    Hyperparameters {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
    },
    /// Burned registration of the hotkey, paid and signed by the coldkey.
    Register {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
    },
    /// Publish the hotkey's axon endpoint (signed by the hotkey).
    Serve {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// IP address.
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
        /// Port.
        #[arg(long)]
        port: u16,
        /// Software version (major*10^6 + minor*10^3 + patch).
        #[arg(long, default_value_t = 10_005_000)]
        version: u32,
    },
    /// Add or remove stake on the hotkey (signed by the coldkey).
    Stake {
        /// `add` or `remove`.
        #[arg(value_parser = ["add", "remove"])]
        action: String,
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Amount in TAO (for `remove` on subtensor: in the subnet's alpha).
        #[arg(long)]
        amount: f64,
    },
    /// Transfer TAO from the coldkey to an address (signed by the coldkey).
    Transfer {
        /// Destination address (SS58).
        #[arg(long)]
        dest: String,
        /// Amount in TAO.
        #[arg(long)]
        amount: f64,
    },
    /// Set the hotkey's weights (floats, normalised like the SDK) after the SDK's checks.
    /// On a subnet with commit-reveal they are committed instead: timelocked (v4, the
    /// chain reveals them) or hashed (v2, reveal with `reveal`).
    Weights {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Target uids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        uids: Vec<u16>,
        /// Weights, comma-separated, one per uid.
        #[arg(long, value_delimiter = ',', required = true)]
        weights: Vec<f32>,
        /// Weights version key.
        #[arg(long, default_value_t = 0)]
        version_key: u64,
        /// auto (follow the subnet), off, v2 or v4 (default: the config's
        /// neuron.commit_reveal).
        #[arg(long = "neuron.commit_reveal")]
        commit_reveal: Option<CommitRevealMode>,
        /// Subnet mechanism (default: the config's neuron.mechid).
        #[arg(long = "neuron.mechid")]
        mechid: Option<u8>,
        /// Print what would be submitted (call, call data, v4 reveal round); sign and
        /// submit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reveal the hotkey's commit-reveal v2 commits whose reveal window is open.
    Reveal {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
    },
    /// Publish the hotkey's commitment (with --data) or list the subnet's commitments.
    Commit {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Text to commit (at most 128 bytes).
        #[arg(long)]
        data: Option<String>,
    },
}

impl ChainCommand {
    /// Why this command cannot run on subtensor, for commands of the local chain.
    fn local_only(&self) -> Option<&'static str> {
        match self {
            Self::Init { .. } => Some(
                "`init` creates the embedded local chain file; a subtensor network already exists",
            ),
            Self::Faucet { .. } => Some(
                "`faucet` mints TAO on the embedded local chain; on subtensor TAO comes from a \
                 transfer",
            ),
            Self::Epoch { .. } => Some(
                "`epoch` runs the embedded chain's Yuma epochs; a subtensor node runs its own \
                 every tempo blocks",
            ),
            _ => None,
        }
    }
}

/// Hyperparameters settable at `init` (defaults as `Hyperparameters::default()`).
#[derive(Debug, Args)]
struct ParamArgs {
    /// Blocks between epochs.
    #[arg(long)]
    tempo: Option<u16>,
    /// Subnet capacity.
    #[arg(long)]
    max_uids: Option<u16>,
    /// Blocks a new registration is immune from pruning.
    #[arg(long)]
    immunity_period: Option<u16>,
    /// Blocks between weight updates of one hotkey.
    #[arg(long)]
    weights_rate_limit: Option<u64>,
    /// Minimum number of weights.
    #[arg(long)]
    min_allowed_weights: Option<u16>,
    /// Validator permits.
    #[arg(long)]
    max_validators: Option<u16>,
    /// Blocks between axon updates of one hotkey.
    #[arg(long)]
    serving_rate_limit: Option<u64>,
    /// Activity cutoff (blocks).
    #[arg(long)]
    activity_cutoff: Option<u16>,
    /// Registration burn (TAO).
    #[arg(long)]
    burn: Option<f64>,
    /// Turn commit-reveal on: `v2` (hash commits revealed by the hotkey) or `v4`
    /// (timelocked commits revealed by the chain's beacon).
    #[arg(long, value_parser = parse_commit_reveal_version)]
    commit_reveal: Option<CommitRevealMode>,
    /// Epochs between a commit and its reveal.
    #[arg(long)]
    reveal_period: Option<u64>,
}

impl ParamArgs {
    fn apply(&self, mut p: Hyperparameters) -> Result<Hyperparameters> {
        p.tempo = self.tempo.unwrap_or(p.tempo);
        p.max_allowed_uids = self.max_uids.unwrap_or(p.max_allowed_uids);
        p.immunity_period = self.immunity_period.unwrap_or(p.immunity_period);
        p.weights_rate_limit = self.weights_rate_limit.unwrap_or(p.weights_rate_limit);
        p.min_allowed_weights = self.min_allowed_weights.unwrap_or(p.min_allowed_weights);
        p.max_allowed_validators = self.max_validators.unwrap_or(p.max_allowed_validators);
        p.serving_rate_limit = self.serving_rate_limit.unwrap_or(p.serving_rate_limit);
        p.activity_cutoff = self.activity_cutoff.unwrap_or(p.activity_cutoff);
        if let Some(burn) = self.burn {
            p.burn = tao_to_rao(burn)?;
        }
        if let Some(mode) = self.commit_reveal {
            p = p.with_commit_reveal(mode);
        }
        p.commit_reveal_period = self.reveal_period.unwrap_or(p.commit_reveal_period);
        Ok(p)
    }
}

/// `v2` or `v4`: the commit-reveal versions a subnet can run.
fn parse_commit_reveal_version(s: &str) -> Result<CommitRevealMode, String> {
    match s.parse()? {
        mode @ (CommitRevealMode::V2 | CommitRevealMode::V4) => Ok(mode),
        _ => Err(format!("a subnet runs commit-reveal v2 or v4, not {s:?}")),
    }
}

fn tao_to_rao(tao: f64) -> Result<u64> {
    if !tao.is_finite() || tao < 0.0 || tao * RAO_PER_TAO as f64 > i64::MAX as f64 {
        bail!("amount must be a non-negative number of TAO, got {tao}");
    }
    Ok((tao * RAO_PER_TAO as f64).round() as u64)
}

fn tao(rao: u64) -> String {
    format!("{:.4}", rao as f64 / RAO_PER_TAO as f64)
}

/// Runs `neuron chain ...`.
pub async fn run(args: ChainArgs) -> Result<()> {
    let ChainArgs {
        config,
        uris,
        command,
    } = args;
    let config = config.load()?;
    let keys = Keys {
        wallet: config.wallet.clone(),
        uris,
    };
    let neuron = &config.neuron;
    match connect::network(&config.subtensor)? {
        Network::LocalSim => {
            run_local(connect::db_path(&config.subtensor), &keys, neuron, command).await
        }
        Network::Subtensor { name, endpoint } => {
            if let Some(why) = command.local_only() {
                bail!(
                    "not available on subtensor network {name:?}: {why}. Use \
                     `--subtensor.network {LOCAL_SIM}` for the embedded chain"
                );
            }
            let chain = Arc::new(open_subtensor(&name, &endpoint).await?);
            run_subtensor(chain, &keys, neuron, command).await
        }
    }
}

/// The local-chain commands, then the generic ones on the local chain.
async fn run_local(
    path: PathBuf,
    keys: &Keys,
    neuron: &NeuronConfig,
    command: ChainCommand,
) -> Result<()> {
    let local = match &command {
        ChainCommand::Init {
            block_time,
            force,
            owner,
            params,
        } => return init_local(&path, *block_time, *force, owner.as_deref(), params).await,
        _ => SimChain::open(&path)?,
    };
    match command {
        ChainCommand::Status => {
            let status = local.status().await?;
            println!("network    {LOCAL_SIM} ({})", path.display());
            println!(
                "block      {} ({:?} per block)",
                status.block, status.block_time
            );
            println!(
                "issuance   {} τ (balances + stakes: {} τ{})",
                tao(status.issuance),
                tao(status.accounted),
                if status.issuance == status.accounted {
                    ""
                } else {
                    ", MISMATCH"
                }
            );
            for netuid in status.subnets {
                let epoch = local.epoch_status(netuid).await?;
                let p = local.hyperparameters(netuid).await?;
                let n = local.metagraph(netuid).await?.neurons.len();
                println!(
                    "subnet {netuid}: {n}/{} uids, tempo {}, {} epochs, last at {}, next at {}",
                    p.max_allowed_uids,
                    p.tempo,
                    epoch.epochs,
                    epoch.last_epoch_block,
                    epoch.next_epoch_block
                );
            }
        }
        ChainCommand::Faucet { address, amount } => {
            let address = match address {
                Some(a) => a,
                None => keys.address(SignerRole::Coldkey)?,
            };
            local.faucet(&address, tao_to_rao(amount)?).await?;
            println!(
                "{address}: balance {} τ",
                tao(local.balance(&address).await?)
            );
        }
        ChainCommand::Epoch { netuid, now } => {
            if now {
                let block = local.run_epoch_now(netuid).await?;
                println!("ran an epoch of subnet {netuid} at block {block}");
            }
            let e = local.epoch_status(netuid).await?;
            println!(
                "subnet {netuid}: {} epochs, last at block {}, next at block {} (now {})",
                e.epochs,
                e.last_epoch_block,
                e.next_epoch_block,
                local.current_block().await?
            );
        }
        ChainCommand::Generic(command) => {
            run_generic(Arc::new(local), None, keys, neuron, command).await?
        }
        ChainCommand::Init { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn init_local(
    path: &std::path::Path,
    block_time: f64,
    force: bool,
    owner: Option<&str>,
    params: &ParamArgs,
) -> Result<()> {
    if !block_time.is_finite() || block_time <= 0.0 {
        bail!("--block-time must be a positive number of seconds");
    }
    if force {
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                std::fs::remove_file(&file)
                    .with_context(|| format!("remove {}", file.display()))?;
            }
        }
    }
    let config = SimConfig {
        block_time: Duration::from_secs_f64(block_time),
    };
    let chain = SimChain::create(path, config)?;
    let owner = match owner {
        Some(owner) => owner.to_string(),
        None => Keypair::from_uri("//Alice")?.ss58(),
    };
    let netuid = chain
        .create_subnet(&owner, params.apply(Hyperparameters::default())?)
        .await?;
    println!(
        "created local chain {} ({block_time}s blocks), subnet {netuid} owned by {owner}",
        path.display(),
    );
    Ok(())
}

/// Subtensor: status, then the generic commands.
async fn run_subtensor(
    chain: Arc<SubtensorChain>,
    keys: &Keys,
    neuron: &NeuronConfig,
    command: ChainCommand,
) -> Result<()> {
    match command {
        ChainCommand::Status => {
            println!("network    {}", chain.network());
            println!("endpoint   {}", chain.endpoint());
            println!("block      {} (finalized)", chain.current_block().await?);
            println!("runtime    spec version {}", chain.spec_version().await?);
        }
        ChainCommand::Generic(command) => {
            let node = Arc::clone(&chain);
            run_generic(chain, Some(&node), keys, neuron, command).await?
        }
        ChainCommand::Init { .. } | ChainCommand::Faucet { .. } | ChainCommand::Epoch { .. } => {
            unreachable!("local-only commands are refused before connecting")
        }
    }
    Ok(())
}

/// The commands every chain supports, through the `Chain` trait (`node`: the same chain
/// when it is a subtensor node, for the call data of `weights --dry-run`).
async fn run_generic(
    chain: Arc<dyn Chain>,
    node: Option<&SubtensorChain>,
    keys: &Keys,
    neuron: &NeuronConfig,
    command: GenericCommand,
) -> Result<()> {
    match command {
        GenericCommand::Metagraph { netuid } => {
            let mg = chain.metagraph(netuid).await?;
            println!("{}", metagraph_table(&mg));
            print_pending_commits(&chain.pending_commits(netuid).await?);
        }
        GenericCommand::Hyperparameters { netuid } => {
            let p = chain.hyperparameters(netuid).await?;
            let text = serde_yaml::to_string(&p).context("hyperparameters as YAML")?;
            print!("subnet {netuid} on {}\n{text}", chain.network());
        }
        GenericCommand::Register { netuid } => {
            let hotkey = keys.address(SignerRole::Hotkey)?;
            let coldkey = keys.signer(SignerRole::Coldkey)?;
            let uid = chain.burned_register(&coldkey, netuid, &hotkey).await?;
            println!("registered {hotkey} on subnet {netuid} as uid {uid}");
        }
        GenericCommand::Serve {
            netuid,
            ip,
            port,
            version,
        } => {
            let axon = AxonServe {
                version,
                ip,
                port,
                protocol: 4,
            };
            let hotkey = keys.signer(SignerRole::Hotkey)?;
            let r = chain.serve_axon(&hotkey, netuid, &axon).await?;
            println!("serving {ip}:{port} on subnet {netuid} (block {})", r.block);
        }
        GenericCommand::Stake {
            action,
            netuid,
            amount,
        } => {
            let hotkey = keys.address(SignerRole::Hotkey)?;
            let coldkey = keys.signer(SignerRole::Coldkey)?;
            let rao = tao_to_rao(amount)?;
            if action == "add" {
                chain.add_stake(&coldkey, &hotkey, netuid, rao).await?;
            } else {
                chain.remove_stake(&coldkey, &hotkey, netuid, rao).await?;
            }
            println!(
                "{action} {} τ stake on {hotkey} (subnet {netuid})",
                tao(rao)
            );
        }
        GenericCommand::Transfer { dest, amount } => {
            let coldkey = keys.signer(SignerRole::Coldkey)?;
            let rao = tao_to_rao(amount)?;
            let r = chain.transfer(&coldkey, &dest, rao).await?;
            println!("transferred {} τ to {dest} (block {})", tao(rao), r.block);
        }
        GenericCommand::Weights {
            netuid,
            uids,
            weights,
            version_key,
            commit_reveal,
            mechid,
            dry_run,
        } => {
            let hotkey = keys.signer(SignerRole::Hotkey)?;
            let setter = WeightSetter::new(Arc::clone(&chain), Arc::new(hotkey), netuid)
                .with_mode(commit_reveal.unwrap_or(neuron.commit_reveal))
                .with_mechid(mechid.unwrap_or(neuron.mechid));
            let plan = setter.plan(&uids, &weights, version_key).await?;
            if dry_run {
                print_plan(&plan, node).await?;
            } else {
                print_outcome(netuid, &setter.submit(plan).await?);
            }
        }
        GenericCommand::Reveal { netuid } => {
            reveal_weights(chain.as_ref(), &keys.signer(SignerRole::Hotkey)?, netuid).await?;
        }
        GenericCommand::Commit { netuid, data } => match data {
            Some(data) => {
                let hotkey = keys.signer(SignerRole::Hotkey)?;
                let r = chain
                    .set_commitment(&hotkey, netuid, data.as_bytes())
                    .await?;
                println!("committed at block {}", r.block);
            }
            None => {
                for c in chain.commitments(netuid).await? {
                    println!(
                        "uid {:>4}  block {:>8}  {}  {}",
                        c.uid,
                        c.block,
                        c.hotkey,
                        String::from_utf8_lossy(&c.data)
                    );
                }
            }
        },
    }
    Ok(())
}

/// Prints what `weights --dry-run` would submit.
async fn print_plan(plan: &WeightsPlan, node: Option<&SubtensorChain>) -> Result<()> {
    println!("mode       {}", plan.mode);
    println!(
        "call       {}.{} (signed by the hotkey)",
        plan.call.pallet(),
        plan.call.name()
    );
    println!(
        "weights    uids {:?} values {:?}",
        plan.weights.uids, plan.weights.values
    );
    match node {
        Some(node) => println!(
            "call data  0x{}",
            hex::encode(node.call_data(&plan.call).await?)
        ),
        None => println!("call data  (the embedded chain takes the call without SCALE encoding)"),
    }
    if let Some(reveal) = &plan.reveal {
        println!("salt       {:?}", reveal.salt);
    }
    if let Some((commit, round)) = &plan.timelocked {
        println!("reveal round {round} ({} ciphertext bytes)", commit.len());
    }
    println!("dry run: nothing was signed or submitted");
    Ok(())
}

/// Says what a weight update did.
fn print_outcome(netuid: u16, outcome: &WeightsOutcome) {
    match outcome {
        WeightsOutcome::Set { receipt, weights } => println!(
            "weights set at block {}: uids {:?} values {:?}",
            receipt.block, weights.uids, weights.values
        ),
        WeightsOutcome::Committed { committed, weights } => println!(
            "weights committed at block {} (commit-reveal v2): uids {:?} values {:?}. They \
             count once revealed: run `neuron chain reveal --netuid {netuid}` between blocks \
             {} and {} (the reveal is kept in {})",
            committed.receipt.block,
            weights.uids,
            weights.values,
            committed.window.start(),
            committed.window.end(),
            committed.path.display()
        ),
        WeightsOutcome::Timelocked {
            receipt,
            reveal_round,
            weights,
        } => println!(
            "weights committed at block {} (commit-reveal v4, timelocked to round \
             {reveal_round}): uids {:?} values {:?}; the chain reveals them itself",
            receipt.block, weights.uids, weights.values
        ),
    }
}

/// Lists the commits waiting on chain for their reveal.
fn print_pending_commits(pending: &[PendingCommit]) {
    if pending.is_empty() {
        return;
    }
    println!("pending commits:");
    for c in pending {
        match c.version {
            4 => println!(
                "  {}  v4 committed at block {}, revealed at beacon round {}",
                c.hotkey, c.commit_block, c.reveal_round
            ),
            v => println!(
                "  {}  v{v} committed at block {}, awaiting the hotkey's reveal",
                c.hotkey, c.commit_block
            ),
        }
    }
}

/// Reveals this hotkey's pending commits whose window is open
/// (`chain::commit_reveal::reveal_pending`) and prints what it did.
async fn reveal_weights(chain: &dyn Chain, hotkey: &Keypair, netuid: u16) -> Result<()> {
    let store = RevealStore::in_neuron_home();
    let report = match commit_reveal::reveal_pending(chain, hotkey, netuid, &store).await {
        Ok(report) => report,
        Err(e @ CommitRevealError::NothingPending { .. }) => {
            bail!("{e}; commit with `neuron chain weights` first")
        }
        Err(CommitRevealError::Reveal { done, source }) => {
            print_reveals(&done);
            return Err(anyhow::Error::new(source).context("revealing weights"));
        }
        Err(e) => return Err(e.into()),
    };
    print_reveals(&report);
    let block = report.block;
    match (report.revealed.len(), report.next_window) {
        (0, Some(from)) => {
            bail!("too early to reveal: the next reveal window opens at block {from} (now {block})")
        }
        (0, None) => bail!(
            "nothing to reveal: {} expired commit(s) dropped",
            report.expired.len()
        ),
        _ => Ok(()),
    }
}

fn print_reveals(report: &RevealReport) {
    for expired in &report.expired {
        eprintln!(
            "the commit of block {} expired: its reveal window ended at block {} (now {})",
            expired.commit_block,
            expired.window.end(),
            report.block
        );
    }
    for (dropped, reason) in &report.unknown {
        eprintln!(
            "dropped the commit of block {}: the chain does not hold it ({reason})",
            dropped.commit_block
        );
    }
    for Revealed { pending, receipt } in &report.revealed {
        println!(
            "revealed the weights committed at block {} (block {}): uids {:?} values {:?}",
            pending.commit_block, receipt.block, pending.reveal.uids, pending.reveal.values
        );
    }
}

/// A btcli-like metagraph table.
fn metagraph_table(mg: &Metagraph) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "UID",
        "STAKE(τ)",
        "TRUST",
        "CONSENSUS",
        "INCENTIVE",
        "DIVIDENDS",
        "EMISSION(ρ)",
        "VTRUST",
        "VAL",
        "UPDATED",
        "ACTIVE",
        "AXON",
        "HOTKEY",
        "COLDKEY",
    ]);
    for n in &mg.neurons {
        let axon = n
            .axon
            .as_ref()
            .map_or_else(|| "none".to_string(), |a| format!("{}:{}", a.ip, a.port));
        table.add_row(vec![
            n.uid.to_string(),
            tao(n.stake),
            format!("{:.5}", proportion(n.trust)),
            format!("{:.5}", proportion(n.consensus)),
            format!("{:.5}", proportion(n.incentive)),
            format!("{:.5}", proportion(n.dividends)),
            n.emission.to_string(),
            format!("{:.5}", proportion(n.validator_trust)),
            if n.validator_permit { "*" } else { "" }.to_string(),
            mg.block.saturating_sub(n.last_update).to_string(),
            if n.active { "1" } else { "0" }.to_string(),
            axon,
            n.hotkey.chars().take(10).collect(),
            n.coldkey.chars().take(10).collect(),
        ]);
    }
    table
}

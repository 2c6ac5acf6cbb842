//! `neuron chain ...`: create and inspect the local chain, register, serve, stake, set
//! weights, commit and run epochs.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use neuron::chain::local::{LocalChain, LocalConfig};
use neuron::chain::{
    AxonServe, Chain, Hyperparameters, LOCAL_SIM, Metagraph, RAO_PER_TAO, Signer,
    normalize_weights, proportion, uri_keypair,
};
use subxt_signer::sr25519::Keypair;

/// Options shared by every `neuron chain` command.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// Chain to use; `local-sim` is the embedded local chain.
    #[arg(long = "subtensor.network", default_value = LOCAL_SIM, global = true)]
    network: String,
    /// Local chain file (default `$NEURON_HOME/chain/local-sim.sqlite`).
    #[arg(long = "chain.file", env = "NEURON_CHAIN_FILE", global = true)]
    chain_file: Option<PathBuf>,
    #[command(subcommand)]
    command: ChainCommand,
}

/// Which keys sign, as secret URIs (`//Alice`, `<mnemonic>//hard/soft`).
#[derive(Debug, Args)]
struct KeyArgs {
    /// Coldkey secret URI.
    #[arg(long, default_value = "//Alice")]
    coldkey_uri: String,
    /// Hotkey secret URI.
    #[arg(long, default_value = "//Alice//hot")]
    hotkey_uri: String,
}

impl KeyArgs {
    fn coldkey(&self) -> Result<Keypair> {
        uri_keypair(&self.coldkey_uri).context("--coldkey-uri")
    }

    fn hotkey(&self) -> Result<Keypair> {
        uri_keypair(&self.hotkey_uri).context("--hotkey-uri")
    }

    fn hotkey_address(&self) -> Result<String> {
        Ok(self.hotkey()?.ss58())
    }
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// Create a local chain file with one subnet (netuid 1).
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
    /// Block height, subnets, epochs and value bookkeeping.
    Status,
    /// Print a subnet's neurons (like `btcli subnet metagraph`).
    Metagraph {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
    },
    /// Credit TAO to an address (local chain only).
    Faucet {
        /// Address to credit (default: the coldkey's).
        #[arg(long)]
        address: Option<String>,
        /// Amount in TAO.
        #[arg(long)]
        amount: f64,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Burned registration of the hotkey, paid by the coldkey.
    Register {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Publish the hotkey's axon endpoint.
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
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Add or remove stake on the hotkey from the coldkey.
    Stake {
        /// `add` or `remove`.
        #[arg(value_parser = ["add", "remove"])]
        action: String,
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Amount in TAO.
        #[arg(long)]
        amount: f64,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Set the hotkey's weights (floats, max-normalised like the SDK).
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
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Publish the hotkey's commitment (with --data) or list the subnet's commitments.
    Commit {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Text to commit (at most 128 bytes).
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Show the epoch schedule; with --now run an epoch at the current block.
    Epoch {
        /// Subnet.
        #[arg(long, default_value_t = 1)]
        netuid: u16,
        /// Run an epoch now.
        #[arg(long)]
        now: bool,
    },
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
        Ok(p)
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
    if args.network != LOCAL_SIM {
        bail!(
            "network {:?}: `neuron chain` drives the local chain (`--subtensor.network {LOCAL_SIM}`)",
            args.network
        );
    }
    let path = args.chain_file.unwrap_or_else(LocalChain::default_path);
    if let ChainCommand::Init {
        block_time,
        force,
        owner,
        params,
    } = &args.command
    {
        if !block_time.is_finite() || *block_time <= 0.0 {
            bail!("--block-time must be a positive number of seconds");
        }
        if *force {
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                if file.exists() {
                    std::fs::remove_file(&file)
                        .with_context(|| format!("remove {}", file.display()))?;
                }
            }
        }
        let config = LocalConfig {
            block_time: Duration::from_secs_f64(*block_time),
        };
        let chain = LocalChain::create(&path, config)?;
        let owner = match owner {
            Some(owner) => owner.clone(),
            None => uri_keypair("//Alice")?.ss58(),
        };
        let netuid = chain
            .create_subnet(&owner, params.apply(Hyperparameters::default())?)
            .await?;
        println!(
            "created local chain {} ({}s blocks), subnet {netuid} owned by {owner}",
            path.display(),
            block_time
        );
        return Ok(());
    }
    let local = LocalChain::open(&path)?;
    let chain: Arc<dyn Chain> = Arc::new(local.clone());
    match args.command {
        ChainCommand::Init { .. } => unreachable!("handled above"),
        ChainCommand::Status => {
            let status = local.status().await?;
            println!("network    {}", chain.network());
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
                let p = chain.hyperparameters(netuid).await?;
                let n = chain.metagraph(netuid).await?.neurons.len();
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
        ChainCommand::Metagraph { netuid } => {
            let mg = chain.metagraph(netuid).await?;
            println!("{}", metagraph_table(&mg));
        }
        ChainCommand::Faucet {
            address,
            amount,
            keys,
        } => {
            let address = match address {
                Some(a) => a,
                None => keys.coldkey()?.ss58(),
            };
            local.faucet(&address, tao_to_rao(amount)?).await?;
            println!(
                "{address}: balance {} τ",
                tao(local.balance(&address).await?)
            );
        }
        ChainCommand::Register { netuid, keys } => {
            let coldkey = keys.coldkey()?;
            let hotkey = keys.hotkey_address()?;
            let uid = chain.burned_register(&coldkey, netuid, &hotkey).await?;
            println!("registered {hotkey} on subnet {netuid} as uid {uid}");
        }
        ChainCommand::Serve {
            netuid,
            ip,
            port,
            version,
            keys,
        } => {
            let axon = AxonServe {
                version,
                ip,
                port,
                protocol: 4,
            };
            let r = chain.serve_axon(&keys.hotkey()?, netuid, &axon).await?;
            println!("serving {ip}:{port} on subnet {netuid} (block {})", r.block);
        }
        ChainCommand::Stake {
            action,
            netuid,
            amount,
            keys,
        } => {
            let (coldkey, hotkey) = (keys.coldkey()?, keys.hotkey_address()?);
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
        ChainCommand::Weights {
            netuid,
            uids,
            weights,
            version_key,
            keys,
        } => {
            let (uids, values) = normalize_weights(&uids, &weights)?;
            let r = chain
                .set_weights(&keys.hotkey()?, netuid, &uids, &values, version_key)
                .await?;
            println!(
                "weights set at block {}: uids {uids:?} values {values:?}",
                r.block
            );
        }
        ChainCommand::Commit { netuid, data, keys } => match data {
            Some(data) => {
                let r = chain
                    .set_commitment(&keys.hotkey()?, netuid, data.as_bytes())
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
                chain.current_block().await?
            );
        }
    }
    Ok(())
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

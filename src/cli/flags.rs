//! The configuration flags: clap declarations of every `--dotted.path` flag that sets a
//! key of [`Config`], grouped as chain (`--subtensor.*`), wallet (`--wallet.*`) and
//! neuron flags (`--netuid`, `--neuron.*`, `--axon.*`, `--blacklist.*`, `--scripts.*`),
//! plus `--config`. Every subcommand chooses its chain and wallet through these groups
//! and [`Config`], and signs with the keys [`signer`] loads; the chain opens with
//! [`open_chain`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use neuron::chain::subtensor::{SignerRole, SubtensorChain};
use neuron::chain::weights::CommitRevealMode;
use neuron::chain::{Chain, Network, connect};
use neuron::config::{Config, WalletConfig};
use neuron::llm::DeviceSpec;
use neuron::net::{AuthScheme, Transport};
use neuron::wallet::{Keypair, Password, Wallet, WalletError, password_env_var, role_name};

/// One `(dotted path, value)` a flag sets.
type Override = (&'static str, serde_yaml::Value);

/// A group of configuration flags on a command line.
trait FlagGroup {
    /// Appends `(dotted path, value)` for every flag of the group given.
    fn push_overrides(&self, out: &mut Vec<Override>);
}

/// Declares a group of configuration flags: each maps a typed `--dotted.path` flag
/// onto the configuration tree.
macro_rules! config_flags {
    ($(#[$sattr:meta])* $name:ident {
        $( $(#[$attr:meta])* $field:ident : $ty:ty => $path:literal, $doc:literal; )*
    }) => {
        $(#[$sattr])*
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            $(
                #[doc = $doc]
                #[arg(long = $path, global = true)]
                $(#[$attr])*
                pub $field: Option<$ty>,
            )*
        }

        impl FlagGroup for $name {
            fn push_overrides(&self, out: &mut Vec<Override>) {
                $(
                    if let Some(value) = &self.$field {
                        out.push(($path, serde_yaml::to_value(value).expect("flag values serialise")));
                    }
                )*
            }
        }

        impl $name {
            /// Every dotted path a flag of the group sets.
            #[cfg(test)]
            fn flag_paths() -> &'static [&'static str] {
                &[$($path),*]
            }
        }
    };
}

config_flags! {
    /// Which chain: `--subtensor.*`.
    SubtensorFlags {
        subtensor_network: String => "subtensor.network", "Chain: local-sim (the embedded chain), finney, test, local, archive or a ws:// URL.";
        subtensor_chain_endpoint: String => "subtensor.chain_endpoint", "Subtensor endpoint URL; overrides the network's own (and selects subtensor).";
        subtensor_db_path: PathBuf => "subtensor.db_path", "SQLite file of the embedded chain (default $NEURON_HOME/chain/local-sim.sqlite).";
    }
}

config_flags! {
    /// Which wallet: `--wallet.*`, named and defaulted as in the SDK and btcli.
    WalletFlags {
        wallet_name: String => "wallet.name", "Wallet name.";
        wallet_hotkey: String => "wallet.hotkey", "Hotkey name.";
        wallet_path: String => "wallet.path", "Wallets directory (default ~/.bittensor/wallets).";
    }
}

config_flags! {
    /// Neuron behaviour: `--netuid`, `--neuron.*`, `--axon.*`, `--dendrite.*`,
    /// `--blacklist.*`, `--scripts.*`, `--api.*`.
    NeuronFlags {
        netuid: u16 => "netuid", "Subnet uid.";
        #[arg(alias = "device")]
        neuron_device: DeviceSpec => "neuron.device", "Inference device of every model: cpu, cuda:N or metal (GPU needs a build with --features cuda|metal).";
        neuron_epoch_length: u64 => "neuron.epoch_length", "Blocks between weight settings.";
        neuron_timeout: f64 => "neuron.timeout", "Seconds a miner has to answer.";
        neuron_sample_size: usize => "neuron.sample_size", "Miners queried per step.";
        neuron_moving_average_alpha: f64 => "neuron.moving_average_alpha", "Alpha of the score moving average.";
        neuron_decay_alpha: f64 => "neuron.decay_alpha", "Score decay per step.";
        neuron_disable_set_weights: bool => "neuron.disable_set_weights", "Never set weights.";
        neuron_axon_off: bool => "neuron.axon_off", "Do not serve an axon.";
        neuron_vpermit_tao_limit: f64 => "neuron.vpermit_tao_limit", "Skip permitted validators above this stake.";
        neuron_query_unique_coldkeys: bool => "neuron.query_unique_coldkeys", "One uid per coldkey per step.";
        neuron_query_unique_ips: bool => "neuron.query_unique_ips", "One uid per IP per step.";
        neuron_num_concurrent_forwards: usize => "neuron.num_concurrent_forwards", "Steps run at once.";
        #[arg(num_args = 1.., value_delimiter = ',')]
        neuron_tasks: Vec<String> => "neuron.tasks", "Task names to sample.";
        #[arg(num_args = 1.., value_delimiter = ',')]
        neuron_task_p: Vec<f64> => "neuron.task_p", "Task probabilities, in the order of --neuron.tasks.";
        neuron_model_id: String => "neuron.model_id", "Chat model id or path.";
        neuron_llm_max_batch: usize => "neuron.llm_max_batch", "Chat requests decoded together (continuous batching).";
        neuron_llm_endpoint: String => "neuron.llm_endpoint", "OpenAI-compatible server running the chat model instead of the embedded engine (http://host:port).";
        neuron_llm_model: String => "neuron.llm_model", "Model name sent to --neuron.llm_endpoint (default: --neuron.model_id).";
        neuron_llm_api_key_env: String => "neuron.llm_api_key_env", "Environment variable holding the inference servers' API key (sent as a Bearer token).";
        neuron_embed_endpoint: String => "neuron.embed_endpoint", "OpenAI-compatible server whose /v1/embeddings replaces the embedded embedder.";
        neuron_embed_model: String => "neuron.embed_model", "Model name sent to --neuron.embed_endpoint (default: --neuron.embed_model_id).";
        neuron_embed_model_id: String => "neuron.embed_model_id", "Embedding model id or path.";
        neuron_max_tokens: usize => "neuron.max_tokens", "Token limit for generations.";
        neuron_temperature: f64 => "neuron.temperature", "Miner sampling temperature.";
        neuron_top_k: usize => "neuron.top_k", "Miner top-k.";
        neuron_top_p: f64 => "neuron.top_p", "Miner top-p.";
        neuron_system_prompt: String => "neuron.system_prompt", "Miner system prompt.";
        neuron_strategy: String => "neuron.strategy", "Miner strategy script (scripts/miners/NAME.rhai).";
        neuron_persona: String => "neuron.persona", "Persona script (personas/NAME.rhai) of the challenges.";
        neuron_events_retention_bytes: u64 => "neuron.events_retention_bytes", "Rotate events log past this size.";
        neuron_dont_save_events: bool => "neuron.dont_save_events", "Do not write the events log.";
        neuron_full_path: PathBuf => "neuron.full_path", "State directory.";
        neuron_seed: u64 => "neuron.seed", "Base seed of the step RNG.";
        neuron_version_key: u64 => "neuron.version_key", "Weights version key.";
        neuron_commit_reveal: CommitRevealMode => "neuron.commit_reveal", "How weights go to the chain: auto (follow the subnet: timelocked v4 when commit-reveal is on), off, v2 or v4.";
        neuron_mechid: u8 => "neuron.mechid", "Subnet mechanism the weights are for (default 0).";
        neuron_transport: Transport => "neuron.transport", "Wire validators ask miners over: synapse (default), synapse-stream, btauth-openai or epistula-openai.";
        neuron_quorum: usize => "neuron.quorum", "Return from a query once this many miners answered (0: wait for all).";
        axon_ip: String => "axon.ip", "Axon bind address.";
        axon_port: u16 => "axon.port", "Axon port.";
        axon_external_ip: String => "axon.external_ip", "Address announced on chain.";
        axon_external_port: u16 => "axon.external_port", "Port announced on chain.";
        axon_max_body_bytes: usize => "axon.max_body_bytes", "Largest request body accepted.";
        axon_max_concurrent_per_ip: usize => "axon.max_concurrent_per_ip", "In-flight requests per client IP.";
        axon_max_connections_per_ip: usize => "axon.max_connections_per_ip", "Open connections per client IP.";
        axon_first_byte_timeout_ms: u64 => "axon.first_byte_timeout_ms", "Close a new connection that sends nothing for this long (ms).";
        axon_keep_alive_timeout_ms: u64 => "axon.keep_alive_timeout_ms", "Close a connection whose next request headers take longer (ms).";
        axon_body_read_timeout_ms: u64 => "axon.body_read_timeout_ms", "Deadline for a request body (ms).";
        axon_max_request_timeout_ms: u64 => "axon.max_request_timeout_ms", "Most a request's claimed timeout counts for (ms).";
        #[arg(num_args = 1.., value_delimiter = ',')]
        axon_auth: Vec<AuthScheme> => "axon.auth", "Authentication schemes accepted: synapse, btauth, epistula (default all).";
        dendrite_max_response_bytes: usize => "dendrite.max_response_bytes", "Largest miner response read.";
        dendrite_max_completion_bytes: usize => "dendrite.max_completion_bytes", "Longest completion kept for scoring.";
        blacklist_force_validator_permit: bool => "blacklist.force_validator_permit", "Only serve validators.";
        blacklist_allow_non_registered: bool => "blacklist.allow_non_registered", "Serve unregistered callers.";
        #[arg(num_args = 1.., value_delimiter = ',')]
        blacklist_allowlist: Vec<String> => "blacklist.allowlist", "Hotkeys always served.";
        #[arg(env = "NEURON_SCRIPTS", value_name = "DIR")]
        scripts_root: Vec<PathBuf> => "scripts.root", "Script root overlaying the shipped scripts (tasks/, personas/, tools/, scripts/); repeatable, later wins.";
        scripts_no_shipped: bool => "scripts.no_shipped", "Load only the --scripts.root roots, not the shipped scripts.";
        #[arg(num_args = 1.., value_delimiter = ',')]
        scripts_http_allowlist: Vec<String> => "scripts.http_allowlist", "Hosts scripts may reach.";
        scripts_hook_timeout_ms: u64 => "scripts.hook_timeout_ms", "Wall-clock limit per hook call (ms).";
        scripts_max_operations: u64 => "scripts.max_operations", "Rhai operations per hook call.";
        scripts_max_memory_mb: usize => "scripts.max_memory_mb", "Heap a hook call may hold (MiB).";
        scripts_max_string_bytes: usize => "scripts.max_string_bytes", "Longest string a hook may return or a module keep (bytes).";
        scripts_max_array_len: usize => "scripts.max_array_len", "Most elements of an array or BLOB a hook returns or a module keeps.";
        scripts_max_map_len: usize => "scripts.max_map_len", "Most entries of a map a hook returns or a module keeps.";
        scripts_max_log_lines: usize => "scripts.max_log_lines", "Lines a hook call may print or log.";
        scripts_live_tools: bool => "scripts.live_tools", "Use live web APIs instead of offline corpora.";
        api_port: u16 => "api.port", "Serve the OpenAI-compatible API on this port (validator, local; off when not given).";
        api_host: String => "api.host", "Address the API binds (default 127.0.0.1).";
        api_keys_db: PathBuf => "api.keys_db", "API key store (default $NEURON_HOME/api_keys.sqlite).";
        api_sample_size: usize => "api.sample_size", "Miners asked per API request.";
        api_max_body_bytes: usize => "api.max_body_bytes", "Largest API request body.";
        #[arg(num_args = 1.., value_delimiter = ',')]
        api_models: Vec<String> => "api.models", "Model names the API serves (default: --neuron.model_id).";
        api_log_prompts: bool => "api.log_prompts", "Log organic prompts and answers in the organic events.";
        api_organic_scoring: bool => "api.organic_scoring", "Score organic answers (false: answer only).";
        api_organic_task: String => "api.organic_task", "Task whose rewards score organic answers.";
        api_organic_share: f64 => "api.organic_share", "Most the organic scores weigh in the weights (0 to 0.5).";
    }
}

/// The chain flags with the deprecated name of `--subtensor.db_path`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainFlags {
    #[command(flatten)]
    flags: SubtensorFlags,
    /// Deprecated name of --subtensor.db_path (removed in the next release).
    #[arg(
        long = "chain.file",
        alias = "chain-db",
        env = "NEURON_CHAIN_FILE",
        global = true,
        hide = true
    )]
    chain_file: Option<PathBuf>,
}

/// The chain overrides; `--chain.file` (or `NEURON_CHAIN_FILE`) sets
/// `subtensor.db_path` with a warning, unless `--subtensor.db_path` is given, which
/// wins.
impl FlagGroup for ChainFlags {
    fn push_overrides(&self, out: &mut Vec<Override>) {
        if let Some(file) = &self.chain_file {
            if self.flags.subtensor_db_path.is_some() {
                tracing::warn!(
                    "--chain.file / NEURON_CHAIN_FILE is deprecated and ignored here: \
                     --subtensor.db_path is given and wins"
                );
            } else {
                tracing::warn!(
                    "--chain.file / NEURON_CHAIN_FILE is deprecated: use --subtensor.db_path \
                     (the YAML key subtensor.db_path)"
                );
                out.push((
                    "subtensor.db_path",
                    serde_yaml::to_value(file).expect("paths serialise"),
                ));
            }
        }
        self.flags.push_overrides(out);
    }
}

/// `--scripts DIR`, the deprecated name of `--scripts.root` (`neuron task` and `neuron
/// replay` took it): one script root overlaying the shipped scripts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScriptsAlias {
    /// Deprecated name of --scripts.root (removed in the next release).
    #[arg(long = "scripts", global = true, hide = true, value_name = "DIR")]
    scripts: Option<PathBuf>,
}

/// Sets `scripts.root` with a warning; the neuron flags come after it, so
/// `--scripts.root`, when given, wins.
impl FlagGroup for ScriptsAlias {
    fn push_overrides(&self, out: &mut Vec<Override>) {
        if let Some(dir) = &self.scripts {
            tracing::warn!(
                "--scripts is deprecated: use --scripts.root (the YAML key scripts.root), which \
                 overlays the shipped scripts; --scripts.root wins when both are given"
            );
            out.push((
                "scripts.root",
                serde_yaml::to_value([dir]).expect("paths serialise"),
            ));
        }
    }
}

/// `--config`: the YAML configuration file the flags override.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFile {
    /// YAML configuration file; flags override its values.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigFile {
    /// Loads the configuration: defaults, the file, then the flags of `groups`.
    fn load(&self, groups: &[&dyn FlagGroup]) -> anyhow::Result<Config> {
        let mut overrides = Vec::new();
        for group in groups {
            group.push_overrides(&mut overrides);
        }
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }
}

/// Every configuration flag: the neuron commands (`validator`, `miner`, `local`,
/// `prompt`, `replay`, `config`, `task`, `finetune`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(flatten)]
    pub chain: ChainFlags,
    #[command(flatten)]
    pub wallet: WalletFlags,
    #[command(flatten)]
    pub neuron: NeuronFlags,
    #[command(flatten)]
    pub scripts_alias: ScriptsAlias,
}

impl ConfigArgs {
    /// The effective configuration: defaults, then `--config`, then flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        self.file
            .load(&[&self.chain, &self.wallet, &self.scripts_alias, &self.neuron])
    }
}

/// `--config` with the chain and wallet flags (`neuron chain`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainWalletArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(flatten)]
    pub chain: ChainFlags,
    #[command(flatten)]
    pub wallet: WalletFlags,
}

impl ChainWalletArgs {
    /// The effective configuration: defaults, then `--config`, then flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        self.file.load(&[&self.chain, &self.wallet])
    }
}

/// `--config` with the wallet flags (`neuron wallet`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WalletConfigArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(flatten)]
    pub wallet: WalletFlags,
}

impl WalletConfigArgs {
    /// The effective configuration: defaults, then `--config`, then flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        self.file.load(&[&self.wallet])
    }
}

/// Development keys that replace the wallet's: `--coldkey-uri`, `--hotkey-uri`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyUris {
    /// Sign with this secret URI instead of the wallet's coldkey (a development key such
    /// as //Alice, or `<mnemonic>//hard/soft`).
    #[arg(long, global = true, value_name = "URI")]
    pub coldkey_uri: Option<String>,
    /// Sign with this secret URI instead of the wallet's hotkey.
    #[arg(long, global = true, value_name = "URI")]
    pub hotkey_uri: Option<String>,
}

impl KeyUris {
    /// The URI given for `role`, if any.
    pub fn get(&self, role: SignerRole) -> Option<&str> {
        match role {
            SignerRole::Coldkey => self.coldkey_uri.as_deref(),
            SignerRole::Hotkey => self.hotkey_uri.as_deref(),
        }
    }
}

/// The key that signs as `role` (see [`Wallet::signer`]): `uri` when given, else the
/// configured wallet's, unlocked with its `BT_PW_...` variable or a password prompt.
/// Errors say how to create a missing key or unlock an encrypted one.
pub fn signer(
    wallet: &WalletConfig,
    role: SignerRole,
    uri: Option<&str>,
) -> anyhow::Result<Keypair> {
    let selected = Wallet::from_config(wallet);
    selected
        .signer(role, uri, &Password::EnvOrPrompt)
        .map_err(|error| match error {
            _ if uri.is_some() => uri_error(role, error),
            WalletError::MissingKey { .. } => missing_key(wallet, role, error),
            _ => {
                let file = selected.key_file(role);
                anyhow::Error::new(error).context(format!(
                    "unlocking the {} {} (set {} or enter its password at the prompt)",
                    role_name(role),
                    file.path().display(),
                    password_env_var(file.path())
                ))
            }
        })
}

/// The SS58 address of the key for `role` (see [`Wallet::address`]), without
/// unlocking anything.
pub fn address(
    wallet: &WalletConfig,
    role: SignerRole,
    uri: Option<&str>,
) -> anyhow::Result<String> {
    Wallet::from_config(wallet)
        .address(role, uri)
        .map_err(|error| match error {
            _ if uri.is_some() => uri_error(role, error),
            WalletError::MissingKey { .. } => missing_key(wallet, role, error),
            other => other.into(),
        })
}

/// A bad development key, named by its flag.
fn uri_error(role: SignerRole, error: WalletError) -> anyhow::Error {
    anyhow::Error::new(error).context(format!("--{}-uri", role_name(role)))
}

/// A missing key file, with how to create one or sign otherwise.
fn missing_key(wallet: &WalletConfig, role: SignerRole, error: WalletError) -> anyhow::Error {
    let name = role_name(role);
    let mut create = format!("neuron wallet new-{name} --wallet.name {}", wallet.name);
    if role == SignerRole::Hotkey {
        create.push_str(&format!(" --wallet.hotkey {}", wallet.hotkey));
    }
    if wallet.path != WalletConfig::default().path {
        create.push_str(&format!(" --wallet.path {}", wallet.path));
    }
    anyhow::anyhow!(
        "{error}. Create one with `{create}` (or regenerate it with `neuron wallet \
         regen-{name}`), choose another wallet with --wallet.name/--wallet.hotkey/--wallet.path, \
         or sign with a development key: --{name}-uri //Alice"
    )
}

/// Opens the chain `config` names (see [`connect::open`]); a subtensor node that cannot
/// be reached is named with the flags that choose it.
pub async fn open_chain(config: &Config) -> anyhow::Result<Arc<dyn Chain>> {
    match connect::network(&config.subtensor)? {
        Network::LocalSim => Ok(connect::open(&config.subtensor).await?),
        Network::Subtensor { name, endpoint } => {
            Ok(Arc::new(open_subtensor(&name, &endpoint).await?))
        }
    }
}

/// Connects to a subtensor node; failures name the flags that choose it.
pub async fn open_subtensor(name: &str, endpoint: &str) -> anyhow::Result<SubtensorChain> {
    connect::subtensor(name, endpoint).await.with_context(|| {
        format!(
            "subtensor network {name:?} at {endpoint} is not reachable \
             (check --subtensor.network / --subtensor.chain_endpoint)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[&str]) -> Result<ConfigArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("neuron").chain(args.iter().copied()))
            .map(|cli| cli.config)
    }

    #[test]
    fn every_flag_names_a_key_of_the_default_tree() {
        let tree = serde_yaml::to_value(Config::default()).unwrap();
        let groups = [
            SubtensorFlags::flag_paths(),
            WalletFlags::flag_paths(),
            NeuronFlags::flag_paths(),
        ];
        for path in groups.concat() {
            let mut node = &tree;
            for key in path.split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("flag --{path} has no config key"));
            }
        }
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("neuron.yaml");
        std::fs::write(
            &file,
            "netuid: 7\nneuron:\n  sample_size: 5\n  timeout: 3.5\nwallet:\n  name: alice\n",
        )
        .unwrap();
        let args = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--neuron.sample_size",
            "9",
            "--neuron.tasks",
            "qa",
            "math",
            "--neuron.task_p",
            "0.25,0.75",
            "--wallet.hotkey",
            "h1",
            "--subtensor.network",
            "finney",
            "--neuron.device",
            "cpu",
        ])
        .expect("flags parse");
        let config = args.load().unwrap();
        assert_eq!(config.netuid, 7);
        assert_eq!(config.neuron.sample_size, 9, "flag beats file");
        assert_eq!(config.neuron.timeout, 3.5, "file beats default");
        assert_eq!(config.wallet.name, "alice");
        assert_eq!(config.wallet.hotkey, "h1");
        assert_eq!(config.subtensor.network, "finney");
        assert_eq!(config.neuron.tasks, vec!["qa", "math"]);
        assert_eq!(config.neuron.task_p, vec![0.25, 0.75]);
        assert_eq!(config.neuron.device, DeviceSpec::Cpu);
    }

    #[test]
    fn chain_file_is_a_deprecated_name_of_db_path() {
        let old = parse(&["--chain.file", "/tmp/old.sqlite"])
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(
            old.subtensor.db_path,
            Some(PathBuf::from("/tmp/old.sqlite"))
        );
        let alias = parse(&["--chain-db", "/tmp/old.sqlite"])
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(
            alias.subtensor.db_path,
            Some(PathBuf::from("/tmp/old.sqlite"))
        );
        let new = parse(&["--subtensor.db_path", "/tmp/new.sqlite"])
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(
            new.subtensor.db_path,
            Some(PathBuf::from("/tmp/new.sqlite"))
        );
        let both = parse(&[
            "--chain.file",
            "/tmp/old.sqlite",
            "--subtensor.db_path",
            "/tmp/new.sqlite",
        ])
        .unwrap()
        .load()
        .unwrap();
        assert_eq!(
            both.subtensor.db_path,
            Some(PathBuf::from("/tmp/new.sqlite")),
            "the new flag wins"
        );
    }

    #[test]
    fn scripts_is_a_deprecated_name_of_scripts_root() {
        let old = parse(&["--scripts", "/tmp/old"]).unwrap().load().unwrap();
        assert_eq!(old.scripts.root, [PathBuf::from("/tmp/old")]);
        let both = parse(&["--scripts", "/tmp/old", "--scripts.root", "/tmp/new"])
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(
            both.scripts.root,
            [PathBuf::from("/tmp/new")],
            "the new flag wins"
        );
    }

    #[test]
    fn device_flag_is_parsed_once_by_device_spec() {
        assert!(parse(&["--neuron.device", "tpu"]).is_err());
        assert!(parse(&["--device", "cpu"]).is_ok(), "--device is an alias");
        if !cfg!(feature = "cuda") {
            let err = parse(&["--neuron.device", "cuda:0"])
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("cargo build --release --features cuda"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_key_errors_say_how_to_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = WalletConfig {
            name: "vali".into(),
            hotkey: "h".into(),
            path: dir.path().display().to_string(),
        };
        let err = format!(
            "{:#}",
            signer(&wallet, SignerRole::Hotkey, None).unwrap_err()
        );
        assert!(
            err.contains(&format!(
                "neuron wallet new-hotkey --wallet.name vali --wallet.hotkey h --wallet.path {}",
                dir.path().display()
            )),
            "{err}"
        );
        assert!(err.contains("--hotkey-uri //Alice"), "{err}");
        assert!(err.contains("hotkeys/h"), "{err}");
        let dev = signer(&wallet, SignerRole::Coldkey, Some("//Alice")).unwrap();
        assert_eq!(dev.ss58(), Keypair::from_uri("//Alice").unwrap().ss58());
    }
}

//! Configuration: one YAML file (`--config`) plus command-line flags that mirror SN1
//! and btcli (`--netuid`, `--neuron.sample_size`, `--wallet.name`, ...).
//!
//! Precedence, lowest first: built-in defaults, the YAML file, then flags. Every flag
//! is a dotted path into the same tree the YAML file uses, so anything settable on the
//! command line can live in the file and vice versa. Unknown keys are rejected.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Errors while loading or merging configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The YAML file or the merged tree is not a valid configuration.
    #[error("invalid configuration{}: {source}", origin.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Invalid {
        /// File the tree came from, if any.
        origin: Option<PathBuf>,
        /// What serde rejected (names the key and, for files, the line).
        source: serde_yaml::Error,
    },
    /// A flag path does not lead into a mapping (e.g. `netuid.x`).
    #[error("flag --{0} does not name a configuration key")]
    BadPath(String),
}

/// The whole effective configuration of a neuron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Subnet this neuron works on.
    pub netuid: u16,
    /// Which chain to talk to.
    pub subtensor: SubtensorConfig,
    /// Which keys sign.
    pub wallet: WalletConfig,
    /// Validator and miner behaviour (SN1's `--neuron.*`).
    pub neuron: NeuronConfig,
    /// The axon server.
    pub axon: AxonConfig,
    /// Miner request filtering.
    pub blacklist: BlacklistConfig,
    /// Where scripts live and what they may reach.
    pub scripts: ScriptsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            netuid: 1,
            subtensor: SubtensorConfig::default(),
            wallet: WalletConfig::default(),
            neuron: NeuronConfig::default(),
            axon: AxonConfig::default(),
            blacklist: BlacklistConfig::default(),
            scripts: ScriptsConfig::default(),
        }
    }
}

/// Chain connection (`--subtensor.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubtensorConfig {
    /// `local-sim` (embedded chain), `finney`, `test`, `local`, or a ws:// URL.
    pub network: String,
    /// Explicit endpoint; overrides the one implied by `network`.
    pub chain_endpoint: Option<String>,
    /// Block time of the embedded chain, in seconds.
    pub block_time: f64,
    /// SQLite file of the embedded chain (default: `$NEURON_HOME/chain/local-sim.sqlite`).
    pub db_path: Option<PathBuf>,
}

impl Default for SubtensorConfig {
    fn default() -> Self {
        Self {
            network: "local-sim".into(),
            chain_endpoint: None,
            block_time: 12.0,
            db_path: None,
        }
    }
}

/// Wallet location (`--wallet.*`), as in the Python SDK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalletConfig {
    /// Wallet (coldkey) name.
    pub name: String,
    /// Hotkey name inside the wallet.
    pub hotkey: String,
    /// Directory holding wallets; `~` expands to the home directory.
    pub path: String,
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            hotkey: "default".into(),
            path: "~/.bittensor/wallets".into(),
        }
    }
}

/// Neuron behaviour (`--neuron.*`); defaults are SN1 v1.3's where SN1 has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuronConfig {
    /// Inference device: `cpu`, `cuda:N` or `metal`.
    pub device: String,
    /// Blocks between weight settings.
    pub epoch_length: u64,
    /// Seconds a miner has to answer.
    pub timeout: f64,
    /// Miners queried per step.
    pub sample_size: usize,
    /// α of the score moving average.
    pub moving_average_alpha: f64,
    /// Subtracted from every score after each update (floored at 0).
    pub decay_alpha: f64,
    /// Never set weights (dry runs).
    pub disable_set_weights: bool,
    /// Do not serve an axon.
    pub axon_off: bool,
    /// Validators with a permit and more stake than this (TAO) are not queried.
    pub vpermit_tao_limit: f64,
    /// Query at most one uid per coldkey.
    pub query_unique_coldkeys: bool,
    /// Query at most one uid per IP.
    pub query_unique_ips: bool,
    /// Validator steps that may run at once.
    pub num_concurrent_forwards: usize,
    /// Task names to sample from; empty means every task script found.
    pub tasks: Vec<String>,
    /// Sampling probabilities matching `tasks`; empty means the scripts' `WEIGHT`s.
    pub task_p: Vec<f64>,
    /// Chat model id (see `neuron models list`) or a local path.
    pub model_id: String,
    /// Sentence-embedding model id or local path.
    pub embed_model_id: String,
    /// Token limit for generations.
    pub max_tokens: usize,
    /// Sampling temperature for the miner's LLM.
    pub temperature: f64,
    /// Top-k for the miner's LLM.
    pub top_k: usize,
    /// Top-p for the miner's LLM.
    pub top_p: f64,
    /// System prompt of the miner's LLM strategy.
    pub system_prompt: String,
    /// Miner strategy script name under `scripts/miners/`.
    pub strategy: String,
    /// Persona script (under `personas/`) that turns a task's query into a challenge.
    pub persona: String,
    /// Rotate the events log once it exceeds this many bytes.
    pub events_retention_bytes: u64,
    /// Do not write the events log.
    pub dont_save_events: bool,
    /// State directory (default: `$NEURON_HOME/neurons/WALLET/HOTKEY/netuidN`).
    pub full_path: Option<PathBuf>,
    /// Base seed of the step RNG; random when unset.
    pub seed: Option<u64>,
    /// Weights version key sent with `set_weights`.
    pub version_key: u64,
}

impl Default for NeuronConfig {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            epoch_length: 100,
            timeout: 10.0,
            sample_size: 50,
            moving_average_alpha: 0.1,
            decay_alpha: 0.001,
            disable_set_weights: false,
            axon_off: false,
            vpermit_tao_limit: 4096.0,
            query_unique_coldkeys: false,
            query_unique_ips: false,
            num_concurrent_forwards: 1,
            tasks: Vec::new(),
            task_p: Vec::new(),
            model_id: "smollm2-135m-instruct".into(),
            embed_model_id: "all-minilm-l6-v2".into(),
            max_tokens: 256,
            temperature: 0.7,
            top_k: 50,
            top_p: 0.95,
            system_prompt:
                "You are a helpful AI assistant. You answer questions accurately and concisely."
                    .into(),
            strategy: "llm".into(),
            persona: "human".into(),
            events_retention_bytes: 2 * 1024 * 1024 * 1024,
            dont_save_events: false,
            full_path: None,
            seed: None,
            version_key: crate::SPEC_VERSION,
        }
    }
}

/// Axon server (`--axon.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AxonConfig {
    /// Address to bind.
    pub ip: String,
    /// Port to bind.
    pub port: u16,
    /// Address announced on chain (default: `ip`).
    pub external_ip: Option<String>,
    /// Port announced on chain (default: `port`).
    pub external_port: Option<u16>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Requests in flight allowed per client IP.
    pub max_concurrent_per_ip: usize,
}

impl Default for AxonConfig {
    fn default() -> Self {
        Self {
            ip: "0.0.0.0".into(),
            port: 8091,
            external_ip: None,
            external_port: None,
            max_body_bytes: 1024 * 1024,
            max_concurrent_per_ip: 64,
        }
    }
}

/// Miner request filtering (`--blacklist.*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlacklistConfig {
    /// Reject callers without a validator permit (enforced, unlike SN1).
    pub force_validator_permit: bool,
    /// Accept callers that are not registered on the subnet.
    pub allow_non_registered: bool,
    /// Hotkeys always accepted, registered or not.
    pub allowlist: Vec<String>,
}

/// Script locations and sandbox reach (`--scripts.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptsConfig {
    /// Directory holding `tasks/`, `personas/`, `tools/` and `scripts/`.
    pub root: PathBuf,
    /// Hosts scripts may reach through `http`.
    pub http_allowlist: Vec<String>,
    /// Wall-clock limit of one hook call, in milliseconds.
    pub hook_timeout_ms: u64,
    /// Use live web APIs (Wikipedia, StackExchange) instead of offline corpora.
    pub live_tools: bool,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("."),
            http_allowlist: vec!["en.wikipedia.org".into(), "api.stackexchange.com".into()],
            hook_timeout_ms: 120_000,
            live_tools: false,
        }
    }
}

/// Declares the command-line flags once: each maps a typed `--dotted.path` flag onto
/// the configuration tree.
macro_rules! config_flags {
    ($( $(#[$attr:meta])* $field:ident : $ty:ty => $path:literal, $doc:literal; )*) => {
        /// Configuration flags shared by every neuron command (`--config` plus overrides).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ConfigArgs {
            /// YAML configuration file; flags override its values.
            #[arg(long, global = true)]
            pub config: Option<PathBuf>,
            $(
                #[doc = $doc]
                #[arg(long = $path, global = true)]
                $(#[$attr])*
                pub $field: Option<$ty>,
            )*
        }

        impl ConfigArgs {
            /// `(dotted path, value)` for every flag given on the command line.
            fn overrides(&self) -> Vec<(&'static str, serde_yaml::Value)> {
                let mut out = Vec::new();
                $(
                    if let Some(value) = &self.$field {
                        out.push(($path, serde_yaml::to_value(value).expect("flag values serialise")));
                    }
                )*
                out
            }

            /// Every dotted path a flag can set (used to check flags against the tree).
            pub fn flag_paths() -> &'static [&'static str] {
                &[$($path),*]
            }
        }
    };
}

config_flags! {
    netuid: u16 => "netuid", "Subnet uid.";
    subtensor_network: String => "subtensor.network", "Chain: local-sim, finney, test, local or a ws:// URL.";
    subtensor_chain_endpoint: String => "subtensor.chain_endpoint", "Explicit chain endpoint URL.";
    subtensor_block_time: f64 => "subtensor.block_time", "Block time of the embedded chain (s).";
    subtensor_db_path: PathBuf => "subtensor.db_path", "SQLite file of the embedded chain.";
    wallet_name: String => "wallet.name", "Wallet name.";
    wallet_hotkey: String => "wallet.hotkey", "Hotkey name.";
    wallet_path: String => "wallet.path", "Wallets directory.";
    neuron_device: String => "neuron.device", "Inference device: cpu, cuda:N or metal.";
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
    axon_ip: String => "axon.ip", "Axon bind address.";
    axon_port: u16 => "axon.port", "Axon port.";
    axon_external_ip: String => "axon.external_ip", "Address announced on chain.";
    axon_external_port: u16 => "axon.external_port", "Port announced on chain.";
    axon_max_body_bytes: usize => "axon.max_body_bytes", "Largest request body accepted.";
    axon_max_concurrent_per_ip: usize => "axon.max_concurrent_per_ip", "In-flight requests per client IP.";
    blacklist_force_validator_permit: bool => "blacklist.force_validator_permit", "Only serve validators.";
    blacklist_allow_non_registered: bool => "blacklist.allow_non_registered", "Serve unregistered callers.";
    #[arg(num_args = 1.., value_delimiter = ',')]
    blacklist_allowlist: Vec<String> => "blacklist.allowlist", "Hotkeys always served.";
    scripts_root: PathBuf => "scripts.root", "Directory with tasks/, personas/, tools/, scripts/.";
    #[arg(num_args = 1.., value_delimiter = ',')]
    scripts_http_allowlist: Vec<String> => "scripts.http_allowlist", "Hosts scripts may reach.";
    scripts_hook_timeout_ms: u64 => "scripts.hook_timeout_ms", "Wall-clock limit per hook call (ms).";
    scripts_live_tools: bool => "scripts.live_tools", "Use live web APIs instead of offline corpora.";
}

impl Config {
    /// Loads the effective configuration: defaults, then `args.config`, then flags.
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut tree = serde_yaml::to_value(Config::default()).expect("defaults serialise");
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|source| ConfigError::Invalid {
                    origin: Some(path.clone()),
                    source,
                })?;
            // Validate the file on its own first so errors name the file and line.
            serde_yaml::from_value::<Config>(file.clone()).map_err(|source| {
                ConfigError::Invalid {
                    origin: Some(path.clone()),
                    source,
                }
            })?;
            merge(&mut tree, file);
        }
        for (path, value) in args.overrides() {
            set_path(&mut tree, path, value)?;
        }
        serde_yaml::from_value(tree).map_err(|source| ConfigError::Invalid {
            origin: None,
            source,
        })
    }

    /// The effective configuration as YAML (what `neuron config show` prints).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("config serialises")
    }

    /// The wallets directory (a leading `~` is expanded by [`crate::wallet::Wallet`]).
    pub fn wallet_dir(&self) -> PathBuf {
        PathBuf::from(&self.wallet.path)
    }

    /// The neuron's state directory (scores, events).
    pub fn state_dir(&self) -> PathBuf {
        self.neuron.full_path.clone().unwrap_or_else(|| {
            crate::home::neuron_home()
                .join("neurons")
                .join(&self.wallet.name)
                .join(&self.wallet.hotkey)
                .join(format!("netuid{}", self.netuid))
        })
    }

    /// The embedded chain's database file.
    pub fn chain_db_path(&self) -> PathBuf {
        self.subtensor
            .db_path
            .clone()
            .unwrap_or_else(crate::chain::sim::SimChain::default_path)
    }
}

/// Deep-merges `overlay` into `base`: mappings merge key by key, anything else replaces.
fn merge(base: &mut serde_yaml::Value, overlay: serde_yaml::Value) {
    match (base, overlay) {
        (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Sets `tree[a][b]... = value` for the dotted `path`.
fn set_path(
    tree: &mut serde_yaml::Value,
    path: &str,
    value: serde_yaml::Value,
) -> Result<(), ConfigError> {
    let mut node = tree;
    for key in path.split('.') {
        let map = node
            .as_mapping_mut()
            .ok_or_else(|| ConfigError::BadPath(path.to_string()))?;
        node = map
            .entry(serde_yaml::Value::String(key.to_string()))
            .or_insert(serde_yaml::Value::Null);
    }
    *node = value;
    Ok(())
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

    fn parse(args: &[&str]) -> ConfigArgs {
        Cli::try_parse_from(std::iter::once("neuron").chain(args.iter().copied()))
            .expect("flags parse")
            .config
    }

    #[test]
    fn every_flag_names_a_key_of_the_default_tree() {
        let tree = serde_yaml::to_value(Config::default()).unwrap();
        for path in ConfigArgs::flag_paths() {
            let mut node = &tree;
            for key in path.split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("flag --{path} has no config key"));
            }
        }
    }

    #[test]
    fn defaults_follow_sn1() {
        let config = Config::load(&ConfigArgs::default()).unwrap();
        assert_eq!(config.netuid, 1);
        assert_eq!(config.neuron.sample_size, 50);
        assert_eq!(config.neuron.moving_average_alpha, 0.1);
        assert_eq!(config.neuron.decay_alpha, 0.001);
        assert_eq!(config.neuron.epoch_length, 100);
        assert_eq!(config.neuron.timeout, 10.0);
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
        ]);
        let config = Config::load(&args).unwrap();
        assert_eq!(config.netuid, 7);
        assert_eq!(config.neuron.sample_size, 9, "flag beats file");
        assert_eq!(config.neuron.timeout, 3.5, "file beats default");
        assert_eq!(config.wallet.name, "alice");
        assert_eq!(config.wallet.hotkey, "default");
        assert_eq!(config.neuron.tasks, vec!["qa", "math"]);
        assert_eq!(config.neuron.task_p, vec![0.25, 0.75]);
    }

    #[test]
    fn unknown_key_in_file_is_rejected_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "neuron:\n  sample_sise: 5\n").unwrap();
        let err = Config::load(&parse(&["--config", file.to_str().unwrap()])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sample_sise"), "{text}");
        assert!(text.contains("bad.yaml"), "{text}");
    }

    #[test]
    fn wrong_type_in_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "neuron:\n  sample_size: many\n").unwrap();
        assert!(matches!(
            Config::load(&parse(&["--config", file.to_str().unwrap()])),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::load(&parse(&["--config", "/nonexistent/neuron.yaml"])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn yaml_round_trips() {
        let config = Config::default();
        let back: Config = serde_yaml::from_str(&config.to_yaml()).unwrap();
        assert_eq!(back, config);
    }
}

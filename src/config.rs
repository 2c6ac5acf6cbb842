//! Configuration: the types and defaults of the configuration tree, loading it from one
//! YAML file, and applying `(dotted path, value)` overrides (the command-line flags that
//! mirror SN1 and btcli, `--netuid`, `--neuron.sample_size`, `--wallet.name`, ..., which
//! `cli::flags` declares).
//!
//! Precedence, lowest first: built-in defaults, the YAML file, then overrides. Every
//! override is a dotted path into the same tree the YAML file uses, so anything settable
//! on the command line can live in the file and vice versa. Unknown keys are rejected.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::llm::DeviceSpec;

mod choices;

pub use choices::{AuthScheme, CommitRevealMode, Transport};

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
    /// An override path does not lead into a mapping (e.g. `netuid.x`).
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
    /// The dendrite (the client that queries axons).
    pub dendrite: DendriteConfig,
    /// Miner request filtering.
    pub blacklist: BlacklistConfig,
    /// Where scripts live and what they may reach.
    pub scripts: ScriptsConfig,
    /// The validator's OpenAI-compatible API (`--api.*`).
    pub api: ApiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            netuid: 1,
            subtensor: SubtensorConfig::default(),
            wallet: WalletConfig::default(),
            neuron: NeuronConfig::default(),
            axon: AxonConfig::default(),
            dendrite: DendriteConfig::default(),
            blacklist: BlacklistConfig::default(),
            scripts: ScriptsConfig::default(),
            api: ApiConfig::default(),
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
    /// SQLite file of the embedded chain (default: `$NEURON_HOME/chain/local-sim.sqlite`).
    pub db_path: Option<PathBuf>,
}

impl Default for SubtensorConfig {
    fn default() -> Self {
        Self {
            network: "local-sim".into(),
            chain_endpoint: None,
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
    /// Inference device of every model the neuron loads: `cpu`, `cuda:N` or `metal`.
    pub device: DeviceSpec,
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
    /// Most chat requests the model decodes together (continuous batching); more wait.
    pub llm_max_batch: usize,
    /// Base URL of an OpenAI-compatible server that runs the chat model instead of the
    /// embedded engine (`http://host:port`); unset: embedded.
    pub llm_endpoint: Option<String>,
    /// Model name sent to `llm_endpoint` (default: `model_id`).
    pub llm_model: Option<String>,
    /// Environment variable holding the API key of `llm_endpoint` and
    /// `embed_endpoint` (sent as a Bearer token; the key never goes in the config).
    pub llm_api_key_env: Option<String>,
    /// Base URL of an OpenAI-compatible server whose `/v1/embeddings` replaces the
    /// embedded embedder; unset: embedded.
    pub embed_endpoint: Option<String>,
    /// Model name sent to `embed_endpoint` (default: `embed_model_id`).
    pub embed_model: Option<String>,
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
    /// How weights go to the chain: `auto` (follow the subnet: timelocked v4 when it has
    /// commit-reveal on, else plain), `off`, `v2` or `v4`.
    pub commit_reveal: CommitRevealMode,
    /// Mechanism of the subnet the weights are for (0: the main one).
    pub mechid: u8,
    /// The wire validators ask miners over: `synapse`, `synapse-stream`,
    /// `btauth-openai` or `epistula-openai`.
    pub transport: Transport,
    /// Return from a query once this many miners answered (0: wait for all).
    pub quorum: usize,
}

impl Default for NeuronConfig {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
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
            llm_max_batch: 8,
            llm_endpoint: None,
            llm_model: None,
            llm_api_key_env: None,
            embed_endpoint: None,
            embed_model: None,
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
            commit_reveal: CommitRevealMode::Auto,
            mechid: 0,
            transport: Transport::Synapse,
            quorum: 0,
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
    /// Requests in flight allowed per client address (IPv4, or IPv6 /64).
    pub max_concurrent_per_ip: usize,
    /// Open connections allowed per client address (IPv4, or IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Milliseconds a new connection may take to send its first byte.
    pub first_byte_timeout_ms: u64,
    /// Milliseconds a connection may wait for a request's complete headers (an idle
    /// kept-alive connection is closed after this).
    pub keep_alive_timeout_ms: u64,
    /// Milliseconds a verified request's body may take to arrive.
    pub body_read_timeout_ms: u64,
    /// Most milliseconds a request's claimed timeout counts for (freshness window,
    /// priority-queue wait).
    pub max_request_timeout_ms: u64,
    /// Authentication schemes accepted (`synapse`, `btauth`, `epistula`; default all).
    pub auth: Vec<AuthScheme>,
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
            max_connections_per_ip: 128,
            first_byte_timeout_ms: 5_000,
            keep_alive_timeout_ms: 15_000,
            body_read_timeout_ms: 10_000,
            max_request_timeout_ms: 60_000,
            auth: AuthScheme::ALL.to_vec(),
        }
    }
}

/// The validator's OpenAI-compatible API (`--api.*`, docs/api.md): off unless a port
/// is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Port to serve on; `None`: no API.
    pub port: Option<u16>,
    /// Address to bind (loopback unless said otherwise).
    pub host: String,
    /// The key store (default `$NEURON_HOME/api_keys.sqlite`).
    pub keys_db: Option<PathBuf>,
    /// Miners asked per request (by incentive, among those reporting the model or task
    /// available).
    pub sample_size: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Model names served (`GET /v1/models`); empty: the validator's `neuron.model_id`.
    pub models: Vec<String>,
    /// Log each organic request's prompt and answers in the organic events.
    pub log_prompts: bool,
    /// Score organic answers (off: the API answers, nothing is scored or logged).
    pub organic_scoring: bool,
    /// The task whose rewards score organic answers against the validator's own.
    pub organic_task: String,
    /// The most the organic scores weigh in a miner's weight (0 to 0.5).
    pub organic_share: f64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            port: None,
            host: "127.0.0.1".into(),
            keys_db: None,
            sample_size: 5,
            max_body_bytes: 256 * 1024,
            models: Vec::new(),
            log_prompts: false,
            organic_scoring: true,
            organic_task: "generic_instruction".into(),
            organic_share: 0.1,
        }
    }
}

impl ApiConfig {
    /// The key store file.
    pub fn keys_path(&self) -> PathBuf {
        self.keys_db
            .clone()
            .unwrap_or_else(|| crate::home::neuron_home().join("api_keys.sqlite"))
    }
}

/// Dendrite limits (`--dendrite.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DendriteConfig {
    /// Largest response body read from a miner, in bytes (cut off while it streams in).
    pub max_response_bytes: usize,
    /// Longest completion kept for scoring, in bytes.
    pub max_completion_bytes: usize,
}

impl Default for DendriteConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: 1024 * 1024,
            max_completion_bytes: crate::score::MAX_SCORED_BYTES,
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
    /// The operator's script roots, each holding `tasks/`, `personas/`, `tools/` and/or
    /// `scripts/`, overlaying the shipped scripts in order (a later root's file replaces
    /// an earlier one's at the same path). YAML: one path or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub root: Vec<PathBuf>,
    /// Leave the shipped scripts out: only the operator's roots are loaded.
    pub no_shipped: bool,
    /// Hosts scripts may reach through `http`.
    pub http_allowlist: Vec<String>,
    /// Wall-clock limit of one hook call, in milliseconds.
    pub hook_timeout_ms: u64,
    /// Rhai operations one hook call may run.
    pub max_operations: u64,
    /// Heap one hook call may hold beyond what its thread held when it started, in MiB.
    pub max_memory_mb: usize,
    /// Longest string a hook may return or a module keep, in bytes.
    pub max_string_bytes: usize,
    /// Most elements of an array or BLOB a hook may return or a module keep.
    pub max_array_len: usize,
    /// Most entries of an object map a hook may return or a module keep.
    pub max_map_len: usize,
    /// Lines one hook call may `print` or `log::*`; each cut at 2,048 bytes.
    pub max_log_lines: usize,
    /// Use live web APIs (Wikipedia, StackExchange) instead of offline corpora.
    pub live_tools: bool,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        Self {
            root: Vec::new(),
            no_shipped: false,
            http_allowlist: vec!["en.wikipedia.org".into(), "api.stackexchange.com".into()],
            hook_timeout_ms: 120_000,
            max_operations: 50_000_000,
            max_memory_mb: 256,
            max_string_bytes: 4 * 1024 * 1024,
            max_array_len: 200_000,
            max_map_len: 20_000,
            max_log_lines: 200,
            live_tools: false,
        }
    }
}

/// A list given as one value or a sequence.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(path) => vec![path],
        OneOrMany::Many(paths) => paths,
    })
}

impl Config {
    /// Loads the effective configuration: defaults, then the YAML `file`, then each
    /// `(dotted path, value)` of `overrides` in order (a later one wins).
    pub fn load(
        file: Option<&Path>,
        overrides: &[(&str, serde_yaml::Value)],
    ) -> Result<Self, ConfigError> {
        let mut tree = serde_yaml::to_value(Config::default()).expect("defaults serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let file: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|source| ConfigError::Invalid {
                    origin: Some(path.to_path_buf()),
                    source,
                })?;
            // Validate the file on its own first so errors name the file and line.
            serde_yaml::from_value::<Config>(file.clone()).map_err(|source| {
                ConfigError::Invalid {
                    origin: Some(path.to_path_buf()),
                    source,
                }
            })?;
            merge(&mut tree, file);
        }
        for (path, value) in overrides {
            set_path(&mut tree, path, value.clone())?;
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

    fn value<T: Serialize>(v: T) -> serde_yaml::Value {
        serde_yaml::to_value(v).unwrap()
    }

    #[test]
    fn script_roots_are_one_path_or_a_list_and_a_flag_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("neuron.yaml");
        std::fs::write(&file, "scripts:\n  root: /srv/mine\n").unwrap();
        let one = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(one.scripts.root, [PathBuf::from("/srv/mine")]);
        std::fs::write(&file, "scripts:\n  root: [/a, /b]\n").unwrap();
        let many = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(
            many.scripts.root,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let flag = Config::load(Some(&file), &[("scripts.root", value(vec!["/c"]))]).unwrap();
        assert_eq!(flag.scripts.root, [PathBuf::from("/c")]);
        assert!(Config::default().scripts.root.is_empty());
    }

    #[test]
    fn defaults_follow_sn1() {
        let config = Config::load(None, &[]).unwrap();
        assert_eq!(config.netuid, 1);
        assert_eq!(config.neuron.sample_size, 50);
        assert_eq!(config.neuron.moving_average_alpha, 0.1);
        assert_eq!(config.neuron.decay_alpha, 0.001);
        assert_eq!(config.neuron.epoch_length, 100);
        assert_eq!(config.neuron.timeout, 10.0);
        assert_eq!(config.neuron.device, DeviceSpec::Cpu);
    }

    #[test]
    fn file_then_overrides_replace_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("neuron.yaml");
        std::fs::write(
            &file,
            "netuid: 7\nneuron:\n  sample_size: 5\n  timeout: 3.5\nwallet:\n  name: alice\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            &[
                ("neuron.sample_size", value(9)),
                ("neuron.tasks", value(["qa", "math"])),
                ("neuron.sample_size", value(11)),
            ],
        )
        .unwrap();
        assert_eq!(config.netuid, 7);
        assert_eq!(
            config.neuron.sample_size, 11,
            "override beats file, last wins"
        );
        assert_eq!(config.neuron.timeout, 3.5, "file beats default");
        assert_eq!(config.wallet.name, "alice");
        assert_eq!(config.wallet.hotkey, "default");
        assert_eq!(config.neuron.tasks, vec!["qa", "math"]);
    }

    #[test]
    fn unknown_key_in_file_is_rejected_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "neuron:\n  sample_sise: 5\n").unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err();
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
            Config::load(Some(&file), &[]),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn a_device_this_build_lacks_is_rejected_in_the_file() {
        if cfg!(feature = "cuda") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpu.yaml");
        std::fs::write(&file, "neuron:\n  device: cuda:0\n").unwrap();
        let text = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(
            text.contains("cargo build --release --features cuda"),
            "{text}"
        );
        assert!(text.contains("gpu.yaml"), "{text}");
    }

    #[test]
    fn override_into_a_scalar_is_a_bad_path() {
        let err = Config::load(None, &[("netuid.x", value(1))]).unwrap_err();
        assert!(matches!(err, ConfigError::BadPath(p) if p == "netuid.x"));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::load(Some(Path::new("/nonexistent/neuron.yaml")), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn yaml_round_trips() {
        let config = Config::default();
        let back: Config = serde_yaml::from_str(&config.to_yaml()).unwrap();
        assert_eq!(back, config);
    }
}

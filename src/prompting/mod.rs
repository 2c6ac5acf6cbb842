//! SN1 (prompting): the neuron loops: the challenge path, validator state and the step
//! record, the validator step, the miner service, `neuron local` orchestration,
//! `neuron prompt` and `neuron replay`; plus the set-up they share (script services and
//! host) built from a [`Config`]. The chain comes from [`crate::chain::connect::open`].

pub mod challenge;
pub mod contract;
pub mod events;
pub mod hooks;
pub mod local;
pub mod miner;
pub mod organic;
pub mod prompt;
pub mod replay;
pub mod report;
pub mod state;
pub mod uids;
pub mod validator;

use crate::config::Config;
use crate::inference::RemoteConfig;
use crate::models::Resolver;
use crate::script::{self, HostConfig, Limits, ModelSettings, ScriptError, ScriptHost, Services};
use crate::services::{HttpConfig, SourceTree};

/// Aborts a background task when dropped (also when the future owning it is), unless
/// detached first.
pub(crate) struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Guards `task`.
    pub(crate) fn new(task: tokio::task::JoinHandle<()>) -> Self {
        Self(Some(task))
    }

    /// Lets the task run on when this is dropped.
    pub(crate) fn detach(&mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The services scripts use, as configured: the chat and embedding models
/// (`neuron.model_id`, `neuron.embed_model_id`, loaded on first use on `neuron.device`,
/// or the servers `neuron.llm_endpoint`/`neuron.embed_endpoint` name) and the HTTP
/// allowlist (`scripts.http_allowlist`).
pub fn services(config: &Config) -> Services {
    let neuron = &config.neuron;
    let remote = |endpoint: &Option<String>, model: &Option<String>, id: &String| {
        endpoint.as_ref().map(|endpoint| RemoteConfig {
            api_key_env: neuron.llm_api_key_env.clone(),
            ..RemoteConfig::new(endpoint, model.as_ref().unwrap_or(id))
        })
    };
    let ids = ModelSettings {
        llm: neuron.model_id.clone(),
        embedder: neuron.embed_model_id.clone(),
        device: neuron.device,
        llm_max_batch: neuron.llm_max_batch,
        llm_remote: remote(&neuron.llm_endpoint, &neuron.llm_model, &neuron.model_id),
        embed_remote: remote(
            &neuron.embed_endpoint,
            &neuron.embed_model,
            &neuron.embed_model_id,
        ),
        ..ModelSettings::default()
    };
    let http = HttpConfig {
        allow_hosts: config.scripts.http_allowlist.clone(),
        ..HttpConfig::default()
    };
    Services::with_resolver(Resolver::default(), &ids, http, SourceTree::default_roots())
}

/// The script host over the configured roots (the shipped scripts overlaid by
/// `scripts.root`, see [`host_config`]) under SN1's contracts
/// ([`contract::PromptingContracts`]), with the configured [`services`].
pub fn script_host(config: &Config) -> Result<ScriptHost, ScriptError> {
    ScriptHost::new(
        host_config(config)?,
        services(config),
        contract::PromptingContracts,
    )
}

/// The host set-up a [`Config`] asks for: the roots ([`script::configured_roots`]), the
/// hook time limit and the values scripts read from `ctx.config`. Scripts read the generation
/// settings (`max_tokens`, `temperature`, `top_k`, `top_p`, `system_prompt`),
/// `wiki_mode` (`offline` or `live`) and the validator's `sample_size`,
/// `moving_average_alpha`, `decay_alpha`, `vpermit_tao_limit`, `query_unique_coldkeys` and
/// `query_unique_ips` from `ctx.config`.
pub fn host_config(config: &Config) -> Result<HostConfig, ScriptError> {
    let mut host = HostConfig::overlay(script::configured_roots(&config.scripts)?);
    host.limits = Limits::from(&config.scripts);
    let mode = if config.scripts.live_tools {
        "live"
    } else {
        "offline"
    };
    let neuron = &config.neuron;
    for (key, value) in [
        ("wiki_mode", rhai::Dynamic::from(mode.to_string())),
        (
            "max_tokens",
            rhai::Dynamic::from(neuron.max_tokens as rhai::INT),
        ),
        ("temperature", rhai::Dynamic::from(neuron.temperature)),
        ("top_k", rhai::Dynamic::from(neuron.top_k as rhai::INT)),
        ("top_p", rhai::Dynamic::from(neuron.top_p)),
        (
            "system_prompt",
            rhai::Dynamic::from(neuron.system_prompt.clone()),
        ),
        (
            "sample_size",
            rhai::Dynamic::from(neuron.sample_size as rhai::INT),
        ),
        (
            "moving_average_alpha",
            rhai::Dynamic::from(neuron.moving_average_alpha),
        ),
        ("decay_alpha", rhai::Dynamic::from(neuron.decay_alpha)),
        (
            "vpermit_tao_limit",
            rhai::Dynamic::from(neuron.vpermit_tao_limit),
        ),
        (
            "query_unique_coldkeys",
            rhai::Dynamic::from(neuron.query_unique_coldkeys),
        ),
        (
            "query_unique_ips",
            rhai::Dynamic::from(neuron.query_unique_ips),
        ),
    ] {
        host.config.insert(key.into(), value);
    }
    Ok(host)
}

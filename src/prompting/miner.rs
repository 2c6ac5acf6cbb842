//! The SN1 miner: an axon whose hooks are a strategy script's `forward`, `blacklist`
//! and `priority`, over a periodically refreshed metagraph. [`serve_miner`] assembles
//! and starts one (used by `neuron miner`, `neuron local`, tests and benches).
//!
//! Defaults when the script defines no hook: blacklist rejects hotkeys not registered
//! on the subnet (unless `--blacklist.allow_non_registered` or listed in
//! `--blacklist.allowlist`) and, with `--blacklist.force_validator_permit`, callers
//! without a validator permit (enforced, unlike SN1); priority is the caller's stake.
//! The strategy is looked up by name on every request, so hot reloads apply at once.
//!
//! The miner also serves SN1 v2's OpenAI-style `POST /v1/chat/completions` (signed with
//! btauth/1 or Epistula) through the same `forward` hook: the conversation arrives as
//! `roles`/`messages`, the request's `seed`, `temperature`, `top_p`, `max_tokens` (or
//! SN1's `sampling_parameters`) and logprobs override the script's sampling options
//! for every `llm::` call it makes, and the model's text streams to the caller as it
//! is generated (a strategy that answers without the model sends its answer as one
//! piece). SN1 v1's `StreamPromptingSynapse`
//! is answered the same way, its completion's raw text streamed chunk by chunk.
//! `POST /availability` is unsigned: the strategy's `availability(ctx)` hook when it
//! defines one, else SN1's inference task (what every strategy serves).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rhai::{Dynamic, Map};

use super::contract::PromptingLookups;
use super::hooks::PromptingHooks;
use crate::chain::{AxonServe, Chain, ChainError, Metagraph, NeuronInfo, RAO_PER_TAO};
use crate::config::{BlacklistConfig, Config};
use crate::llm::FinishReason;
use crate::net::openai::{Availability, ChatCompletionRequest, ChatEvent, ChatFinish};
use crate::net::{
    Axon, AxonHandler, AxonInfo, AxonOptions, ChatStream, Dendrite, DendriteOptions, Forwarded,
    HandlerError, NetError, PromptingSynapse, StreamPromptingSynapse, Synapse, SynapseSchema,
    VERSION_AS_INT,
};
use crate::script::{ChatScope, Ctx, NeuronLink, SamplingOverrides, ScriptError, ScriptHost};
use crate::wallet::Keypair;

/// How often the miner re-reads the metagraph for its blacklist and priority.
pub const METAGRAPH_REFRESH: Duration = Duration::from_secs(12);

/// Errors starting a miner.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    /// The strategy script is missing or broken.
    #[error("strategy scripts/miners/{strategy}.rhai: {source}")]
    Strategy {
        /// The strategy name.
        strategy: String,
        /// Why it cannot be used.
        source: ScriptError,
    },
    /// The chain refused or could not be reached (metagraph read, `serve_axon`).
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The axon could not start (or the miner's dendrite could not be built).
    #[error("axon: {0}")]
    Net(#[from] NetError),
    /// The bind or announced address is not an IP address and port.
    #[error("axon address {0:?} is not IP:PORT")]
    Address(String),
}

/// Everything a miner is made of.
pub struct MinerSetup {
    /// The chain it reads the metagraph from and announces its axon on.
    pub chain: Arc<dyn Chain>,
    /// Its subnet.
    pub netuid: u16,
    /// Its hotkey (signs answers; announces the axon).
    pub hotkey: Keypair,
    /// The script host holding the strategy.
    pub scripts: ScriptHost,
    /// Strategy script name (`scripts/miners/NAME.rhai`).
    pub strategy: String,
    /// Default request filtering.
    pub blacklist: BlacklistConfig,
    /// Where and how the axon serves.
    pub axon: AxonOptions,
    /// Whether to announce the axon on chain (`serve_axon`).
    pub announce: bool,
    /// Port announced instead of the bound one (behind a port mapping).
    pub external_port: Option<u16>,
    /// Caps of the dendrite the strategy queries other axons with (`dendrite::query`).
    pub dendrite: DendriteOptions,
}

impl MinerSetup {
    /// The miner the config describes (`--neuron.strategy`, `--blacklist.*`,
    /// `--axon.*`, `--neuron.axon_off`), over `chain`.
    pub fn from_config(
        config: &Config,
        chain: Arc<dyn Chain>,
        hotkey: Keypair,
        scripts: ScriptHost,
    ) -> Result<Self, MinerError> {
        let address = format!("{}:{}", config.axon.ip, config.axon.port);
        let bind: SocketAddr = address.parse().map_err(|_| MinerError::Address(address))?;
        Ok(Self {
            chain,
            netuid: config.netuid,
            hotkey,
            scripts,
            strategy: config.neuron.strategy.clone(),
            blacklist: config.blacklist.clone(),
            axon: AxonOptions {
                bind,
                external_ip: config.axon.external_ip.clone(),
                max_body_bytes: config.axon.max_body_bytes,
                max_in_flight_per_ip: config.axon.max_concurrent_per_ip,
                max_connections_per_ip: config.axon.max_connections_per_ip,
                first_byte_timeout: Duration::from_millis(config.axon.first_byte_timeout_ms),
                keep_alive_timeout: Duration::from_millis(config.axon.keep_alive_timeout_ms),
                body_read_timeout: Duration::from_millis(config.axon.body_read_timeout_ms),
                max_request_timeout: Duration::from_millis(config.axon.max_request_timeout_ms),
                auth: config.axon.auth.clone(),
                ..AxonOptions::default()
            },
            announce: !config.neuron.axon_off,
            external_port: config.axon.external_port,
            dendrite: DendriteOptions::from(&config.dendrite),
        })
    }
}

/// A serving miner: its axon and the task keeping its metagraph view fresh.
pub struct ServedMiner {
    axon: Axon,
    refresh: tokio::task::JoinHandle<()>,
}

impl ServedMiner {
    /// The address the axon is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.axon.local_addr()
    }

    /// The axon as dendrites address it.
    pub fn info(&self) -> AxonInfo {
        self.axon.info()
    }

    /// Stops the metagraph refresh and drains the axon.
    pub async fn shutdown(self) {
        self.refresh.abort();
        self.axon.shutdown().await;
    }
}

/// Checks that `scripts` has the live strategy script `strategy` a miner serves with
/// (`scripts/miners/<strategy>.rhai`): a miner never starts unable to answer.
pub fn require_strategy(scripts: &ScriptHost, strategy: &str) -> Result<(), MinerError> {
    scripts
        .strategy(strategy)
        .map(drop)
        .map_err(|source| MinerError::Strategy {
            strategy: strategy.to_string(),
            source,
        })
}

/// Starts a miner: checks its strategy script, reads the metagraph, serves the axon
/// (the handler lends the miner's chain and dendrite to its strategy), keeps the
/// metagraph fresh every [`METAGRAPH_REFRESH`] and, when `announce` is set, announces
/// the axon on chain.
pub async fn serve_miner(setup: MinerSetup) -> Result<ServedMiner, MinerError> {
    let MinerSetup {
        chain,
        netuid,
        hotkey,
        scripts,
        strategy,
        blacklist,
        axon,
        announce,
        external_port,
        dendrite,
    } = setup;
    require_strategy(&scripts, &strategy)?;
    let link = NeuronLink::new(
        Arc::clone(&chain),
        netuid,
        Dendrite::new(hotkey.clone())?.with_options(dendrite),
    );
    let handler = Arc::new(MinerHandler::new(scripts, strategy, blacklist).with_link(link));
    handler.set_metagraph(chain.metagraph(netuid).await?);
    let refresh = handler.spawn_metagraph_refresh(Arc::clone(&chain), netuid);
    let axon = match Axon::serve(axon, hotkey.clone(), handler).await {
        Ok(axon) => axon,
        Err(err) => {
            refresh.abort();
            return Err(err.into());
        }
    };
    let served = ServedMiner { axon, refresh };
    if announce {
        let info = served.info();
        let announced = match info.ip.parse() {
            Ok(ip) => chain
                .serve_axon(
                    &hotkey,
                    netuid,
                    &AxonServe {
                        version: VERSION_AS_INT as u32,
                        ip,
                        port: external_port.unwrap_or(info.port),
                        protocol: 4,
                    },
                )
                .await
                .map_err(MinerError::from),
            Err(_) => Err(MinerError::Address(info.ip)),
        };
        if let Err(err) = announced {
            served.shutdown().await;
            return Err(err);
        }
    }
    Ok(served)
}

/// The script-driven axon handler of a miner.
pub struct MinerHandler {
    scripts: ScriptHost,
    strategy: String,
    blacklist: BlacklistConfig,
    metagraph: Arc<RwLock<Option<Metagraph>>>,
    link: Option<NeuronLink>,
}

impl MinerHandler {
    /// A handler running strategy `scripts/miners/STRATEGY.rhai` from `scripts`.
    pub fn new(
        scripts: ScriptHost,
        strategy: impl Into<String>,
        blacklist: BlacklistConfig,
    ) -> Self {
        Self {
            scripts,
            strategy: strategy.into(),
            blacklist,
            metagraph: Arc::new(RwLock::new(None)),
            link: None,
        }
    }

    /// The same handler lending `link` (this miner's chain and dendrite) to its
    /// strategy's `chain` and `dendrite` modules, e.g. for a proxy strategy.
    pub fn with_link(mut self, link: NeuronLink) -> Self {
        self.link = Some(link);
        self
    }

    /// A hook context seeded with `seed`, with this miner's link if it has one.
    fn ctx(&self, scripts: &ScriptHost, seed: u64) -> Ctx {
        let ctx = scripts.ctx(seed, 0);
        match &self.link {
            Some(link) => ctx.with_link(link.clone()),
            None => ctx,
        }
    }

    /// Replaces the metagraph view used by the default blacklist and priority.
    pub fn set_metagraph(&self, metagraph: Metagraph) {
        *self.metagraph.write().unwrap_or_else(|p| p.into_inner()) = Some(metagraph);
    }

    /// Keeps the metagraph view fresh from `chain` every [`METAGRAPH_REFRESH`] until the
    /// returned task is aborted. Read failures keep the previous view (logged).
    pub fn spawn_metagraph_refresh(
        self: &Arc<Self>,
        chain: Arc<dyn Chain>,
        netuid: u16,
    ) -> tokio::task::JoinHandle<()> {
        let handler = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match chain.metagraph(netuid).await {
                    Ok(metagraph) => handler.set_metagraph(metagraph),
                    Err(err) => tracing::warn!("miner: metagraph refresh failed: {err}"),
                }
                tokio::time::sleep(METAGRAPH_REFRESH).await;
            }
        })
    }

    fn caller(&self, request: &Synapse) -> (String, Option<NeuronInfo>) {
        let hotkey = request.dendrite.hotkey.clone().unwrap_or_default();
        let neuron = self
            .metagraph
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|m| m.neurons.iter().find(|n| n.hotkey == hotkey).cloned());
        (hotkey, neuron)
    }

    /// The request as scripts see it: caller hotkey, uid, stake, permit, synapse name.
    fn request_map(request: &Synapse, hotkey: &str, neuron: Option<&NeuronInfo>) -> Map {
        let mut map = Map::new();
        map.insert("hotkey".into(), hotkey.into());
        map.insert("synapse".into(), request.name().into());
        map.insert("registered".into(), neuron.is_some().into());
        map.insert(
            "uid".into(),
            neuron.map_or(Dynamic::UNIT, |n| Dynamic::from(i64::from(n.uid))),
        );
        map.insert("stake".into(), Dynamic::from(neuron.map_or(0.0, stake_tao)));
        map.insert(
            "validator_permit".into(),
            neuron.is_some_and(|n| n.validator_permit).into(),
        );
        map
    }

    fn default_blacklist(&self, hotkey: &str, neuron: Option<&NeuronInfo>) -> Option<String> {
        if self.blacklist.allowlist.iter().any(|h| h == hotkey) {
            return None;
        }
        match neuron {
            None if !self.blacklist.allow_non_registered => Some("Unrecognized hotkey".into()),
            Some(n) if self.blacklist.force_validator_permit && !n.validator_permit => {
                Some("Non-validator hotkey".into())
            }
            _ => None,
        }
    }

    /// Runs `call` on a blocking thread with the scripts and a context seeded with
    /// `seed`.
    async fn blocking<T: Send + 'static>(
        &self,
        seed: u64,
        call: impl FnOnce(ScriptHost, Ctx) -> T + Send + 'static,
    ) -> Result<T, HandlerError> {
        let scripts = self.scripts.clone();
        let ctx = self.ctx(&scripts, seed);
        tokio::task::spawn_blocking(move || call(scripts, ctx))
            .await
            .map_err(|e| HandlerError(format!("script worker: {e}")))
    }
}

impl MinerHandler {
    /// Runs the strategy's `forward` on `map` with a streaming scope: the model's text
    /// goes out as it is generated (a strategy answering without the model sends its
    /// answer as one piece), then how the answer ended.
    fn forward_streaming(&self, map: Map, seed: u64, overrides: SamplingOverrides) -> ChatStream {
        let (text_tx, mut text_rx) = tokio::sync::mpsc::unbounded_channel();
        let scope = Arc::new(ChatScope {
            overrides,
            stream: text_tx,
            last: Mutex::new(None),
        });
        let scripts = self.scripts.clone();
        let ctx = self.ctx(&scripts, seed).with_chat(scope.clone());
        let strategy = self.strategy.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            let script = scripts.strategy(&strategy)?;
            scripts.forward(&script, &ctx, map)
        });
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut streamed = false;
            let outcome = loop {
                tokio::select! {
                    Some(piece) = text_rx.recv() => {
                        streamed = true;
                        let _ = events.send(Ok(ChatEvent::Delta(piece)));
                    }
                    done = &mut job => break done,
                }
            };
            while let Ok(piece) = text_rx.try_recv() {
                streamed = true;
                let _ = events.send(Ok(ChatEvent::Delta(piece)));
            }
            let event = match outcome {
                Ok(Ok(completion)) => {
                    if !streamed && !completion.is_empty() {
                        let _ = events.send(Ok(ChatEvent::Delta(completion)));
                    }
                    let last = scope.last.lock().unwrap_or_else(|p| p.into_inner()).take();
                    Ok(ChatEvent::Finished(chat_finish(last)))
                }
                Ok(Err(e)) => Err(HandlerError(e.to_string())),
                Err(e) => Err(HandlerError(format!("script worker: {e}"))),
            };
            let _ = events.send(event);
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        Box::pin(stream)
    }
}

/// The reason a caller is given when the blacklist script fails on its request.
const BLACKLIST_FAILED: &str = "blacklist check failed";

/// A seed derived from the conversation, so the same question gets the same answer
/// (reproducible runs, and no free retries for a validator re-asking).
fn message_seed(messages: &[String]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for message in messages {
        hasher.update((message.len() as u64).to_le_bytes());
        hasher.update(message.as_bytes());
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

fn stake_tao(neuron: &NeuronInfo) -> f64 {
    neuron.stake as f64 / RAO_PER_TAO as f64
}

#[async_trait::async_trait]
impl AxonHandler for MinerHandler {
    fn synapses(&self) -> Vec<SynapseSchema> {
        vec![PromptingSynapse::schema(), StreamPromptingSynapse::schema()]
    }

    async fn blacklist(&self, request: &Synapse) -> Option<String> {
        let (hotkey, neuron) = self.caller(request);
        if let Some(reason) = self.default_blacklist(&hotkey, neuron.as_ref()) {
            return Some(reason);
        }
        let map = Self::request_map(request, &hotkey, neuron.as_ref());
        let strategy = self.strategy.clone();
        let verdict = self
            .blocking(rand::random(), move |scripts, ctx| {
                let script = scripts.strategy(&strategy)?;
                scripts.blacklist(&script, &ctx, map)
            })
            .await;
        // The caller is not authenticated yet: the script's file, line and message
        // stay in the log, the caller learns only that it was refused.
        match verdict {
            Ok(Ok(Some((true, reason)))) => Some(reason),
            Ok(Ok(_)) => None,
            Ok(Err(err)) => {
                tracing::warn!(hotkey = %hotkey, "blacklist script failed: {err}");
                Some(BLACKLIST_FAILED.into())
            }
            Err(err) => {
                tracing::warn!(hotkey = %hotkey, "blacklist script failed: {}", err.0);
                Some(BLACKLIST_FAILED.into())
            }
        }
    }

    async fn priority(&self, request: &Synapse) -> f64 {
        let (hotkey, neuron) = self.caller(request);
        let default = neuron.as_ref().map_or(0.0, stake_tao);
        let map = Self::request_map(request, &hotkey, neuron.as_ref());
        let strategy = self.strategy.clone();
        let scripted = self
            .blocking(rand::random(), move |scripts, ctx| {
                let script = scripts.strategy(&strategy)?;
                scripts.priority(&script, &ctx, map)
            })
            .await;
        match scripted {
            Ok(Ok(Some(priority))) => priority,
            Ok(Err(err)) => {
                tracing::warn!("priority script failed, using stake: {err}");
                default
            }
            _ => default,
        }
    }

    async fn forward(&self, synapse: Synapse) -> Result<Forwarded, HandlerError> {
        let prompt = PromptingSynapse::from_synapse(&synapse)
            .map_err(|e| HandlerError(format!("not a PromptingSynapse: {e}")))?;
        let map = forward_map(&prompt.roles, &prompt.messages, &synapse);
        let seed = message_seed(&prompt.messages);
        if synapse.schema().streaming {
            // SN1 v1 streaming: the completion's raw text, chunk by chunk.
            let chunks = self
                .forward_streaming(map, seed, SamplingOverrides::default())
                .filter_map(|event| async move {
                    match event {
                        Ok(ChatEvent::Delta(text)) => Some(Ok(Bytes::from(text))),
                        Ok(ChatEvent::Finished(_)) => None,
                        Err(e) => Some(Err(e)),
                    }
                });
            return Ok(Forwarded::Stream {
                headers_from: synapse,
                chunks: Box::pin(chunks),
            });
        }
        let strategy = self.strategy.clone();
        let completion = self
            .blocking(seed, move |scripts, ctx| {
                let script = scripts.strategy(&strategy)?;
                scripts.forward(&script, &ctx, map)
            })
            .await?
            .map_err(|e| HandlerError(e.to_string()))?;
        let mut answer = synapse;
        answer
            .set("completion", serde_json::Value::String(completion))
            .map_err(|e| HandlerError(e.to_string()))?;
        Ok(Forwarded::Synapse(answer))
    }

    fn serves_chat(&self) -> bool {
        true
    }

    async fn chat_completions(
        &self,
        caller: &Synapse,
        request: ChatCompletionRequest,
    ) -> Result<ChatStream, HandlerError> {
        let (roles, messages): (Vec<String>, Vec<String>) = request
            .chat_messages()
            .into_iter()
            .map(|m| (m.role, m.content))
            .unzip();
        let overrides = SamplingOverrides::of_request(&request);
        let seed = request.seed.unwrap_or_else(|| message_seed(&messages));
        let mut map = forward_map(&roles, &messages, caller);
        for (key, value) in [("task", request.task), ("model", request.model)] {
            map.insert(key.into(), value.map_or(Dynamic::UNIT, Dynamic::from));
        }
        Ok(self.forward_streaming(map, seed, overrides))
    }

    async fn availability(&self) -> Option<serde_json::Value> {
        let strategy = self.strategy.clone();
        let scripted = self
            .blocking(rand::random(), move |scripts, ctx| {
                let script = scripts.strategy(&strategy)?;
                scripts.availability(&script, &ctx)
            })
            .await;
        let availability = match scripted {
            Ok(Ok(Some(availability))) => availability,
            Ok(Ok(None)) => served_availability(&self.scripts),
            Ok(Err(err)) => {
                tracing::warn!("availability script failed, answering the default: {err}");
                served_availability(&self.scripts)
            }
            Err(err) => {
                tracing::warn!(
                    "availability script failed, answering the default: {}",
                    err.0
                );
                served_availability(&self.scripts)
            }
        };
        Some(serde_json::to_value(availability).expect("availability serialises"))
    }
}

/// What a strategy without an `availability` hook serves: SN1's inference task (every
/// strategy answers chat requests through `forward`) with the neuron's chat model.
fn served_availability(scripts: &ScriptHost) -> Availability {
    Availability {
        task_availabilities: [("InferenceTask".to_string(), true)].into(),
        llm_model_availabilities: [(scripts.services().llm_id.clone(), true)].into(),
    }
}

/// The request as a strategy's `forward` sees it: roles, messages, caller hotkey and
/// timeout.
fn forward_map(roles: &[String], messages: &[String], request: &Synapse) -> Map {
    let strings = |items: &[String]| -> Dynamic {
        items
            .iter()
            .map(|s| Dynamic::from(s.clone()))
            .collect::<rhai::Array>()
            .into()
    };
    let mut map = Map::new();
    map.insert("roles".into(), strings(roles));
    map.insert("messages".into(), strings(messages));
    map.insert(
        "hotkey".into(),
        request.dendrite.hotkey.clone().unwrap_or_default().into(),
    );
    map.insert("timeout".into(), Dynamic::from_float(request.timeout));
    map
}

/// How a chat answer ended: the last generation's, or `stop` when the strategy
/// answered without the model.
fn chat_finish(last: Option<crate::llm::Generation>) -> ChatFinish {
    match last {
        Some(g) => ChatFinish {
            finish_reason: if g.finish_reason == FinishReason::Length {
                "length"
            } else {
                "stop"
            }
            .into(),
            logprobs: g.logprobs,
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.completion_tokens,
        },
        None => ChatFinish {
            finish_reason: "stop".into(),
            ..ChatFinish::default()
        },
    }
}

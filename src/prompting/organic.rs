//! Organic traffic: the subnet behind the validator's OpenAI-compatible API
//! (`crate::api`). [`OrganicRouter`] answers each chat request with miners: the
//! body's `uids`, else the `--api.sample_size` serving miners with the highest
//! incentive among those whose `POST /availability` reports the model or SN1's
//! inference task available (polled at most once a minute). All are asked at once
//! through the dendrite over `--neuron.transport`; the first to produce text is
//! streamed to the client while the others are collected until their deadline. A
//! client that goes away cancels every query (and the scoring) of its request.
//!
//! The collected answers are then scored through the synthetic steps' reward path
//! (`PromptingHooks::reward`). When the client asked for the validator's own model
//! over an OpenAI transport, the miners get the request with a seed, a token limit and
//! top-10 logprobs fixed, SN1 v2's `InferenceTask`, and the `inference` task's reward
//! checks their tokens against the validator's regeneration (verified inference).
//! Otherwise the `--api.organic_task` task's rewards score them against the
//! validator's own answer to the same conversation. Both are logged as organic events
//! (`STATE_DIR/organic/events.jsonl`; prompt, reference and completions only with
//! `--api.log_prompts`) and handed to the validator, which folds them into its
//! organic scores at its next step (`ValidatorState::update_organic`; their share of
//! the weights is capped, see `docs/scoring.md`). Scoring runs one request at a time
//! with a few waiting; past that a request is answered but not scored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::AbortOnDrop;
use super::contract::PromptingLookups;
use super::events::{EventLog, ResponseEvent};
use super::hooks::{Answer, PromptingHooks, TaskInstance};
use crate::api::{
    ApiOptions, ApiServer, BackendError, ChatBackend, ChatQuery, ChatReply, KeyStore,
};
use crate::chain::{Chain, Metagraph};
use crate::config::{ApiConfig, Config};
use crate::llm::{ChatMessage, RequestOptions, SamplingParams};
use crate::net::openai::{AVAILABILITY_PATH, Availability, ChatCompletionRequest};
use crate::net::{AxonInfo, DendritePool, MinerAnswer, PromptingSynapse, Transport};
use crate::score::inference::TOP_LOGPROBS;
use crate::script::{SamplingOverrides, ScriptHost};

/// How long a metagraph read serves requests.
const METAGRAPH_TTL: Duration = Duration::from_secs(12);
/// How long a round of availability answers serves requests.
const AVAILABILITY_TTL: Duration = Duration::from_secs(60);
/// Deadline of one miner's availability answer.
const AVAILABILITY_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest availability answer read.
const AVAILABILITY_MAX_BYTES: usize = 64 * 1024;
/// Requests whose scoring may wait behind the one being scored.
const SCORING_QUEUE: usize = 4;
/// Scored requests waiting for the validator's next step.
pub const ORGANIC_INBOX: usize = 1024;
/// Most uids a body may name.
pub const MAX_BODY_UIDS: usize = 64;
/// SN1's name of the chat task in `/availability`.
const INFERENCE_TASK: &str = "InferenceTask";
/// The task whose reward verifies organic answers (the shipped `tasks/inference.rhai`).
const VERIFIED_TASK: &str = "inference";

/// One scored request's rewards, for the validator: `(uid, hotkey, reward)`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganicRewards(pub Vec<(u16, String, f64)>);

/// One organic request, as logged in `organic/events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrganicEvent {
    /// Unix seconds when the request arrived.
    pub time: f64,
    /// The API key's name.
    pub key: String,
    /// The model asked for.
    pub model: String,
    /// The miner streamed to the client.
    pub winner: Option<u16>,
    /// The conversation's last message (with `--api.log_prompts` only).
    pub prompt: Option<String>,
    /// The validator's own answer (with `--api.log_prompts` only).
    pub reference: Option<String>,
    /// Every miner asked (completions empty unless `--api.log_prompts`).
    pub responses: Vec<ResponseEvent>,
    /// Why the request was not scored, if it was not.
    pub unscored: Option<String>,
    /// The task whose reward scored the answers: `inference` when they were verified.
    #[serde(default)]
    pub task: String,
}

/// What the router needs from the validator it serves.
pub struct OrganicSetup {
    /// The configuration (`api.*`, `neuron.timeout`, `neuron.transport`, …).
    pub config: Config,
    /// The chain (metagraph reads).
    pub chain: Arc<dyn Chain>,
    /// The validator's dendrite sessions.
    pub dendrite: DendritePool,
    /// The scripts (the organic task's rewards; the chat model).
    pub scripts: ScriptHost,
    /// Where scored requests go.
    pub inbox: mpsc::Sender<OrganicRewards>,
}

/// The [`ChatBackend`] of a validator's API. Cheap to clone.
#[derive(Clone)]
pub struct OrganicRouter {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    chain: Arc<dyn Chain>,
    dendrite: DendritePool,
    scripts: ScriptHost,
    inbox: mpsc::Sender<OrganicRewards>,
    models: Vec<String>,
    http: reqwest::Client,
    metagraph: Mutex<Option<(Instant, Arc<Metagraph>)>>,
    availability: Mutex<Option<(Instant, HashMap<String, Availability>)>>,
    events: Option<std::sync::Mutex<EventLog>>,
    scoring_slots: Arc<Semaphore>,
    scoring: Mutex<()>,
    requests: AtomicU64,
}

/// Errors starting the router.
#[derive(Debug, thiserror::Error)]
pub enum OrganicError {
    /// The organic event log could not be opened.
    #[error(transparent)]
    Events(#[from] super::events::EventsError),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
    /// The key store could not be opened.
    #[error(transparent)]
    Keys(#[from] crate::api::KeyError),
    /// The API's address could not be bound.
    #[error("API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Serves the API `api` describes (`--api.host`, `--api.port`, `--api.keys_db`,
/// `--api.max_body_bytes`) with `router` behind it.
pub async fn serve_api(api: &ApiConfig, router: OrganicRouter) -> Result<ApiServer, OrganicError> {
    let keys = Arc::new(KeyStore::open(&api.keys_path())?);
    let addr = format!("{}:{}", api.host, api.port.unwrap_or(0));
    let bind = tokio::net::lookup_host(&addr)
        .await
        .and_then(|mut found| {
            found
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))
        })
        .map_err(|source| OrganicError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let options = ApiOptions {
        bind,
        max_body_bytes: api.max_body_bytes,
        ..ApiOptions::default()
    };
    ApiServer::serve(options, keys, Arc::new(router))
        .await
        .map_err(|source| OrganicError::Bind { addr, source })
}

impl OrganicRouter {
    /// A router for the validator `setup` describes.
    pub fn new(setup: OrganicSetup) -> Result<Self, OrganicError> {
        let config = setup.config;
        let models = if config.api.models.is_empty() {
            vec![config.neuron.model_id.clone()]
        } else {
            config.api.models.clone()
        };
        let events = if config.neuron.dont_save_events {
            None
        } else {
            let dir = config.state_dir().join("organic");
            let log = EventLog::open(&dir, config.neuron.events_retention_bytes, 3)?;
            Some(std::sync::Mutex::new(log))
        };
        let http = reqwest::Client::builder()
            .timeout(AVAILABILITY_TIMEOUT)
            .build()
            .map_err(|e| OrganicError::Client(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                chain: setup.chain,
                dendrite: setup.dendrite,
                scripts: setup.scripts,
                inbox: setup.inbox,
                models,
                http,
                metagraph: Mutex::new(None),
                availability: Mutex::new(None),
                events,
                scoring_slots: Arc::new(Semaphore::new(SCORING_QUEUE + 1)),
                scoring: Mutex::new(()),
                requests: AtomicU64::new(0),
            }),
        })
    }
}

/// What a miner's query reports to the request.
enum Event {
    /// Miner `i` sent text.
    Text(usize, String),
    /// Miner `i`'s query ended, with this status and message.
    Done(usize, u16, String),
}

/// What the miners of one request are asked, and how their answers are scored.
struct Asked {
    /// The chat request (sent whole over an OpenAI transport).
    request: ChatCompletionRequest,
    /// Whether the answers are checked as verified inference.
    verified: bool,
    /// The request's conversation (what a synapse carries; the scoring task's query).
    messages: Vec<ChatMessage>,
}

impl Asked {
    /// The task whose reward scores the answers: [`VERIFIED_TASK`] when verified, else
    /// `organic_task` (`--api.organic_task`).
    fn task<'a>(&self, organic_task: &'a str) -> &'a str {
        if self.verified {
            VERIFIED_TASK
        } else {
            organic_task
        }
    }
}

#[async_trait::async_trait]
impl ChatBackend for OrganicRouter {
    fn models(&self) -> Vec<String> {
        self.inner.models.clone()
    }

    async fn chat(&self, query: ChatQuery) -> Result<ChatReply, BackendError> {
        let inner = &self.inner;
        let metagraph = inner.metagraph().await?;
        let uids = match &query.uids {
            Some(uids) => inner.named_uids(&metagraph, uids)?,
            None => inner.top_available(&metagraph, &query.model).await?,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Arc::clone(inner).route(metagraph, uids.clone(), query, tx));
        let guard = AbortOnDrop::new(task);
        let mut failures = Vec::new();
        let winner = loop {
            match rx.recv().await {
                Some(Event::Text(i, text)) if !text.is_empty() => break Some((i, text)),
                Some(Event::Text(..)) => {}
                Some(Event::Done(i, code, message)) => {
                    failures.push(format!("uid {}: {code} {message}", uids[i]));
                    if failures.len() == uids.len() {
                        break None;
                    }
                }
                None => break None,
            }
        };
        let Some((winner, first)) = winner else {
            // Every query is over; the task goes on to score (and log) the failures, as
            // a synthetic step would.
            let mut guard = guard;
            guard.detach();
            return Err(BackendError::Unavailable(format!(
                "no miner answered ({} asked): {}",
                uids.len(),
                failures.join("; ")
            )));
        };
        let follow = (rx, guard);
        let rest = futures::stream::unfold(follow, move |(mut rx, mut guard)| async move {
            loop {
                match rx.recv().await {
                    Some(Event::Text(i, text)) if i == winner => return Some((text, (rx, guard))),
                    Some(Event::Done(i, ..)) if i == winner => {
                        // The answer is complete: the others go on to their deadline and
                        // the scoring, whatever the client does now.
                        guard.detach();
                        return None;
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
        });
        Ok(ChatReply {
            source: format!("uid {}", uids[winner]),
            first,
            rest: rest.boxed(),
        })
    }
}

impl Inner {
    /// The metagraph, read at most every [`METAGRAPH_TTL`].
    async fn metagraph(&self) -> Result<Arc<Metagraph>, BackendError> {
        let mut cached = self.metagraph.lock().await;
        if let Some((at, graph)) = cached.as_ref()
            && at.elapsed() < METAGRAPH_TTL
        {
            return Ok(Arc::clone(graph));
        }
        match self.chain.metagraph(self.config.netuid).await {
            Ok(graph) => {
                let graph = Arc::new(graph);
                *cached = Some((Instant::now(), Arc::clone(&graph)));
                Ok(graph)
            }
            Err(err) => match cached.as_ref() {
                Some((_, graph)) => Ok(Arc::clone(graph)),
                None => Err(BackendError::Unavailable(format!(
                    "the chain cannot be read: {err}"
                ))),
            },
        }
    }

    /// The uids a body named: each registered and serving, at most [`MAX_BODY_UIDS`].
    fn named_uids(&self, metagraph: &Metagraph, uids: &[u16]) -> Result<Vec<u16>, BackendError> {
        if uids.is_empty() || uids.len() > MAX_BODY_UIDS {
            return Err(BackendError::BadRequest(format!(
                "'uids' must name 1 to {MAX_BODY_UIDS} miners"
            )));
        }
        let mut out = Vec::new();
        for &uid in uids {
            let Some(neuron) = metagraph.neurons.get(usize::from(uid)) else {
                return Err(BackendError::BadRequest(format!(
                    "uid {uid} is not on netuid {} ({} uids)",
                    metagraph.netuid,
                    metagraph.neurons.len()
                )));
            };
            if neuron.axon.is_none() {
                return Err(BackendError::BadRequest(format!(
                    "uid {uid} serves no axon"
                )));
            }
            if !out.contains(&uid) {
                out.push(uid);
            }
        }
        Ok(out)
    }

    /// The `api.sample_size` serving miners with the highest incentive (lowest uid on
    /// ties) among those reporting `model` or the inference task available.
    async fn top_available(
        &self,
        metagraph: &Metagraph,
        model: &str,
    ) -> Result<Vec<u16>, BackendError> {
        let me = self.dendrite.hotkey().to_string();
        let mut serving: Vec<_> = metagraph
            .neurons
            .iter()
            .filter(|n| n.axon.is_some() && n.hotkey != me)
            .collect();
        serving.sort_by(|a, b| b.incentive.cmp(&a.incentive).then(a.uid.cmp(&b.uid)));
        let table = self.availability(metagraph).await;
        let picked: Vec<u16> = serving
            .iter()
            .filter(|n| {
                table.get(&n.hotkey).is_some_and(|a| {
                    a.llm_model_availabilities.get(model) == Some(&true)
                        || a.task_availabilities.get(INFERENCE_TASK) == Some(&true)
                })
            })
            .take(self.config.api.sample_size.max(1))
            .map(|n| n.uid)
            .collect();
        if picked.is_empty() {
            return Err(BackendError::Unavailable(format!(
                "no miner reports the model `{model}` or the inference task available \
                 ({} serving miners asked)",
                serving.len()
            )));
        }
        Ok(picked)
    }

    /// Every serving miner's availability by hotkey, polled at most every
    /// [`AVAILABILITY_TTL`] (a miner that does not answer in time serves nothing).
    async fn availability(&self, metagraph: &Metagraph) -> HashMap<String, Availability> {
        let mut cached = self.availability.lock().await;
        if let Some((at, table)) = cached.as_ref()
            && at.elapsed() < AVAILABILITY_TTL
        {
            return table.clone();
        }
        let asks = metagraph
            .neurons
            .iter()
            .filter(|n| n.axon.is_some())
            .map(|n| async move {
                let axon = AxonInfo::of_neuron(n);
                let url = format!("http://{}:{}{AVAILABILITY_PATH}", axon.ip, axon.port);
                (n.hotkey.clone(), self.poll_availability(&url).await)
            });
        let table: HashMap<String, Availability> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|(hotkey, a)| Some((hotkey, a?)))
            .collect();
        *cached = Some((Instant::now(), table.clone()));
        table
    }

    async fn poll_availability(&self, url: &str) -> Option<Availability> {
        let mut resp = self.http.post(url).body("{}").send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.ok()? {
            body.extend_from_slice(&chunk);
            if body.len() > AVAILABILITY_MAX_BYTES {
                return None;
            }
        }
        serde_json::from_slice(&body).ok()
    }

    /// Asks every miner of `uids`, reporting text and ends on `tx`; then scores.
    async fn route(
        self: Arc<Self>,
        metagraph: Arc<Metagraph>,
        uids: Vec<u16>,
        query: ChatQuery,
        tx: mpsc::UnboundedSender<Event>,
    ) {
        let time = crate::net::now_ns() as f64 / 1e9;
        let asked = self.miner_request(&query);
        let prompt = PromptingSynapse {
            roles: asked.messages.iter().map(|m| m.role.clone()).collect(),
            messages: asked.messages.iter().map(|m| m.content.clone()).collect(),
            completion: String::new(),
        };
        let session = self.dendrite.session();
        let timeout = Duration::from_secs_f64(self.config.neuron.timeout);
        let transport: Transport = self.config.neuron.transport;
        let asks = uids.iter().enumerate().map(|(i, &uid)| {
            let axon = AxonInfo::of_neuron(&metagraph.neurons[usize::from(uid)]);
            let (tx, session, prompt, request) = (tx.clone(), &session, &prompt, &asked.request);
            async move {
                let on_text = {
                    let tx = tx.clone();
                    move |text: &str| {
                        let _ = tx.send(Event::Text(i, text.to_string()));
                    }
                };
                // An OpenAI transport carries the client's request whole (seed,
                // sampling, token limit); a synapse carries the conversation only.
                let answer = if transport.is_openai() {
                    session
                        .ask_chat_one(&axon, request, transport, timeout, on_text)
                        .await
                } else {
                    session
                        .ask_one(&axon, prompt, transport, timeout, on_text)
                        .await
                };
                let _ = tx.send(Event::Done(
                    i,
                    answer.status_code,
                    answer.status_message.clone(),
                ));
                answer
            }
        });
        let answers = futures::future::join_all(asks).await;
        drop(tx);
        if !self.config.api.organic_scoring {
            return;
        }
        let winner = answers.iter().position(MinerAnswer::is_success);
        self.score(time, &query, &metagraph, &uids, winner, &asked, answers)
            .await;
    }

    /// What the miners are asked: the client's request; when the validator can check
    /// the answers (its own model asked, over an OpenAI transport, with the `inference`
    /// task loaded), with a seed (the client's or a random one), a token limit (the
    /// client's, at most `--neuron.max_tokens`) and top-10 logprobs fixed, as SN1 v2's
    /// `InferenceTask` asks.
    fn miner_request(&self, query: &ChatQuery) -> Asked {
        let transport = self.config.neuron.transport;
        let verified = self.config.api.organic_scoring
            && transport.is_openai()
            && query.model == self.scripts.services().llm_id
            && self.scripts.task(VERIFIED_TASK).is_ok();
        let mut request = query.request.clone();
        if verified {
            let cap = self.config.neuron.max_tokens;
            request.seed = Some(request.seed.unwrap_or_else(|| rand::random::<u32>().into()));
            request.max_tokens = Some(request.sampling_max_tokens().map_or(cap, |n| n.min(cap)));
            request.logprobs = Some(true);
            request.top_logprobs = Some(TOP_LOGPROBS);
            request.task = Some(INFERENCE_TASK.into());
        }
        let messages = request.chat_messages();
        Asked {
            request,
            verified,
            messages,
        }
    }

    /// Scores the answers against the validator's own, logs the event and hands the
    /// rewards to the validator.
    #[allow(clippy::too_many_arguments)]
    async fn score(
        &self,
        time: f64,
        query: &ChatQuery,
        metagraph: &Metagraph,
        uids: &[u16],
        winner: Option<usize>,
        asked: &Asked,
        answers: Vec<MinerAnswer>,
    ) {
        let log_prompts = self.config.api.log_prompts;
        let messages = &asked.messages;
        let mut event = OrganicEvent {
            time,
            key: query.key.clone(),
            model: query.model.clone(),
            winner: winner.map(|i| uids[i]),
            prompt: log_prompts.then(|| {
                messages
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default()
            }),
            reference: None,
            responses: uids
                .iter()
                .zip(&answers)
                .map(|(&uid, a)| ResponseEvent {
                    uid,
                    hotkey: metagraph.neurons[usize::from(uid)].hotkey.clone(),
                    completion: if log_prompts {
                        a.completion.clone()
                    } else {
                        String::new()
                    },
                    status_code: a.status_code,
                    status_message: a.status_message.clone(),
                    latency_s: a.latency.as_secs_f64(),
                    reward: 0.0,
                    components: Vec::new(),
                    logprobs: Vec::new(),
                })
                .collect(),
            unscored: None,
            task: asked.task(&self.config.api.organic_task).into(),
        };
        let scored = match self.scoring_slots.clone().try_acquire_owned() {
            Ok(_slot) => {
                let _one = self.scoring.lock().await;
                let answers = answers.into_iter().map(|mut a| Answer::take_from(&mut a));
                self.rewards(asked, answers.collect()).await
            }
            Err(_) => Err("scoring is busy (too many organic requests waiting)".into()),
        };
        match scored {
            Ok((reference, rewards)) => {
                event.reference = log_prompts.then_some(reference);
                for (response, reward) in event.responses.iter_mut().zip(rewards) {
                    response.reward = reward.total;
                    response.components = reward.components;
                }
                let rewards = event
                    .responses
                    .iter()
                    .map(|r| (r.uid, r.hotkey.clone(), r.reward))
                    .collect();
                if self.inbox.try_send(OrganicRewards(rewards)).is_err() {
                    event.unscored = Some("the validator's organic inbox is full".into());
                }
            }
            Err(reason) => {
                tracing::warn!("organic request not scored: {reason}");
                event.unscored = Some(reason);
            }
        }
        if let Some(events) = &self.events
            && let Err(err) = events.lock().expect("organic events lock").append(&event)
        {
            tracing::warn!("organic event not logged: {err}");
        }
    }

    /// The validator's own answer to the request and each completion's reward against
    /// it: verified against its regeneration with the request's parameters, or through
    /// the organic task's reward path.
    async fn rewards(
        &self,
        asked: &Asked,
        answers: Vec<Answer>,
    ) -> Result<(String, Vec<crate::score::Breakdown>), String> {
        let params = if asked.verified {
            let mut params = SamplingParams::default();
            SamplingOverrides::of_request(&asked.request).apply(&mut params);
            params
        } else {
            SamplingParams {
                max_tokens: self.config.neuron.max_tokens,
                ..SamplingParams::default()
            }
        };
        let task_name = asked.task(&self.config.api.organic_task).to_string();
        let verified = asked.verified;
        let scripts = self.scripts.clone();
        let messages = asked.messages.clone();
        let query = messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let step = self.requests.fetch_add(1, Ordering::Relaxed);
        // The chat backend blocks (it may be a remote server), as do the task's hooks.
        let (reference, rewards) = tokio::task::spawn_blocking(move || {
            let max_tokens = params.max_tokens;
            let generation = scripts
                .services()
                .llm
                .get()?
                .chat_blocking_with(messages, params, RequestOptions::default())
                .map_err(|e| format!("the validator's own answer: {e}"))?;
            let reference = generation.text.clone();
            let task = scripts.task(&task_name).map_err(|e| e.to_string())?;
            let mut fields = rhai::Map::new();
            fields.insert("query".into(), query.clone().into());
            fields.insert("reference".into(), reference.clone().into());
            if verified {
                // What `tasks/inference.rhai`'s `generate` keeps for its reward.
                let logprobs = rhai::serde::to_dynamic(&generation.logprobs)
                    .map_err(|e| format!("the validator's logprobs: {e}"))?;
                let mut made = rhai::Map::new();
                made.insert("text".into(), reference.clone().into());
                made.insert("logprobs".into(), logprobs);
                fields.insert("generation".into(), made.into());
                fields.insert("max_tokens".into(), (max_tokens as rhai::INT).into());
            }
            let instance = TaskInstance {
                task: task.name(),
                query: query.clone(),
                reference: reference.clone(),
                fields,
            };
            let ctx = scripts.ctx(rand::random(), step);
            let rewards = scripts
                .reward(&task, &ctx, &instance, &query, &answers)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((reference, rewards))
        })
        .await
        .map_err(|e| format!("scoring worker: {e}"))??;
        Ok((reference, rewards))
    }
}

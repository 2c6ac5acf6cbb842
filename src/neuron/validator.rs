//! The SN1 validator: each step picks a task script, generates a query and reference,
//! turns the query into a persona's challenge, queries a sample of miners through the
//! dendrite, scores their completions with the task's rewards, updates the moving
//! scores and, every epoch, sets weights on the chain.
//!
//! Scripts decide *what* to ask and how to score it; this module owns the loop, the
//! state, signing and the chain. A failing script, a hanging miner or an unreachable
//! chain fails (and logs) one step, never the loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::events::{EventLog, EventLogError};
use super::state::{StateError, ValidatorState};
use super::uids::{UidFilter, select_uids};
use crate::chain::{Chain, ChainError, Metagraph, normalize_weights};
use crate::config::Config;
use crate::net::{AxonInfo, Dendrite, PromptingSynapse};
use crate::score::{Breakdown, Component};
use crate::script::{Script, ScriptError, ScriptHost, TaskInstance};
use crate::wallet::Keypair;

/// Persona script used to turn queries into challenges.
pub const PERSONA_SCRIPT: &str = "human";

/// Errors that fail one validator step (the loop logs them and goes on).
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    /// A task or persona script failed.
    #[error("script: {0}")]
    Script(#[from] ScriptError),
    /// The chain refused or could not be reached.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// State could not be saved.
    #[error(transparent)]
    State(#[from] StateError),
    /// The event log could not be written.
    #[error(transparent)]
    Events(#[from] EventLogError),
    /// No task script is live.
    #[error("no task script is live under {0}")]
    NoTasks(PathBuf),
    /// This validator's hotkey is not registered on the subnet.
    #[error("hotkey {0} is not registered on netuid {1}")]
    NotRegistered(String, u16),
    /// A blocking script call panicked or was cancelled.
    #[error("script worker: {0}")]
    Worker(String),
}

/// One miner's answer in a step, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEvent {
    /// Queried uid.
    pub uid: u16,
    /// Its hotkey at query time.
    pub hotkey: String,
    /// The completion (empty on failure).
    pub completion: String,
    /// Final status code (200 success; 408 timeout; 503 unreachable; ...).
    pub status_code: u16,
    /// Status message.
    pub status_message: String,
    /// Seconds from sending to answer.
    pub latency_s: f64,
    /// Final reward.
    pub reward: f64,
    /// Each reward and penalty component behind `reward`.
    pub components: Vec<Component>,
}

/// Everything about one step: one line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepEvent {
    /// Step number.
    pub step: u64,
    /// Block at the start of the step.
    pub block: u64,
    /// Seed of the step's RNG (replays the task generation).
    pub seed: u64,
    /// Task name.
    pub task: String,
    /// The persona map.
    pub persona: serde_json::Value,
    /// The task's query.
    pub query: String,
    /// The challenge sent to miners.
    pub challenge: String,
    /// The reference answer.
    pub reference: String,
    /// Everything else the task generated (context, topic, ...).
    pub task_fields: serde_json::Value,
    /// One entry per queried miner.
    pub responses: Vec<ResponseEvent>,
    /// Seconds spent generating the task and challenge.
    pub generate_s: f64,
    /// Seconds spent in the dendrite query.
    pub query_s: f64,
    /// Seconds spent scoring.
    pub score_s: f64,
    /// Block at which weights were set after this step, if they were.
    pub weights_set_at: Option<u64>,
}

/// A running validator.
pub struct Validator {
    config: Config,
    chain: Arc<dyn Chain>,
    hotkey: Arc<Keypair>,
    dendrite: Dendrite,
    scripts: ScriptHost,
    state: ValidatorState,
    state_path: PathBuf,
    events: Option<EventLog>,
    base_seed: u64,
}

impl Validator {
    /// Builds a validator from its parts, loading persisted state from the config's
    /// state directory (a fresh state when none exists).
    pub fn new(
        config: Config,
        chain: Arc<dyn Chain>,
        hotkey: Keypair,
        scripts: ScriptHost,
    ) -> Result<Self, ValidatorError> {
        let state_dir = config.state_dir();
        let state_path = state_dir.join("state.json");
        let state = ValidatorState::load(&state_path)?;
        let events = if config.neuron.dont_save_events {
            None
        } else {
            Some(EventLog::open(
                &state_dir,
                config.neuron.events_retention_bytes,
                3,
            )?)
        };
        let base_seed = config.neuron.seed.unwrap_or_else(rand::random);
        let dendrite = Dendrite::new(hotkey.clone())
            .map_err(|e| ValidatorError::Worker(format!("dendrite: {e}")))?;
        Ok(Self {
            config,
            chain,
            hotkey: Arc::new(hotkey),
            dendrite,
            scripts,
            state,
            state_path,
            events,
            base_seed,
        })
    }

    /// The persisted state (scores, step, last weights block).
    pub fn state(&self) -> &ValidatorState {
        &self.state
    }

    /// Runs `steps` steps (forever when `None`) until `stop` resolves; step errors are
    /// logged and the loop goes on. Returns the events of the successful steps.
    pub async fn run(
        &mut self,
        steps: Option<u64>,
        mut on_step: impl FnMut(&Result<StepEvent, ValidatorError>),
    ) {
        let mut done = 0;
        while steps.is_none_or(|n| done < n) {
            let result = self.step().await;
            if let Err(err) = &result {
                tracing::warn!(step = self.state.step, "validator step failed: {err}");
            }
            on_step(&result);
            done += 1;
        }
    }

    /// One validator step. State is saved before it returns, whatever happened after
    /// the miners were scored.
    pub async fn step(&mut self) -> Result<StepEvent, ValidatorError> {
        let step = self.state.step;
        let seed = self.base_seed.wrapping_add(step);
        let netuid = self.config.netuid;
        let metagraph = self.chain.metagraph(netuid).await?;
        let my_hotkey = self.hotkey.ss58();
        let self_uid = metagraph
            .uid_of(&my_hotkey)
            .ok_or_else(|| ValidatorError::NotRegistered(my_hotkey.clone(), netuid))?;
        let hotkeys: Vec<String> = metagraph.neurons.iter().map(|n| n.hotkey.clone()).collect();
        self.state.sync_hotkeys(&hotkeys);

        // Task, persona and challenge: script work, on a blocking thread.
        let started = Instant::now();
        let scripts = self.scripts.clone();
        let task_weights = self.task_weights();
        let (task_script, instance, persona, challenge) =
            tokio::task::spawn_blocking(move || -> Result<_, ValidatorError> {
                let ctx = scripts.ctx(seed, step);
                let task = scripts
                    .pick_task(&ctx, &task_weights)
                    .ok_or_else(|| ValidatorError::NoTasks(scripts.root().to_path_buf()))?;
                let instance = scripts.generate(&task, &ctx)?;
                let persona_script = scripts.persona_script(PERSONA_SCRIPT)?;
                let persona = scripts.persona(&persona_script, &ctx)?;
                let challenge = scripts.challenge(&persona_script, &ctx, &instance, &persona)?;
                Ok((task, instance, persona, challenge))
            })
            .await
            .map_err(|e| ValidatorError::Worker(e.to_string()))??;
        let generate_s = started.elapsed().as_secs_f64();

        // Query a sample of miners.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let filter = UidFilter {
            self_uid: Some(self_uid),
            vpermit_tao_limit: self.config.neuron.vpermit_tao_limit,
            unique_coldkeys: self.config.neuron.query_unique_coldkeys,
            unique_ips: self.config.neuron.query_unique_ips,
        };
        let uids = select_uids(
            &metagraph,
            &filter,
            self.config.neuron.sample_size,
            &mut rng,
        );
        let axons: Vec<AxonInfo> = uids.iter().map(|&uid| axon_of(&metagraph, uid)).collect();
        let synapse = PromptingSynapse {
            roles: vec!["user".into()],
            messages: vec![challenge.clone()],
            completion: String::new(),
        }
        .to_synapse(Arc::new(PromptingSynapse::schema()))
        .map_err(|e| ValidatorError::Worker(format!("synapse: {e}")))?;
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(self.config.neuron.timeout);
        let responses = self.dendrite.query(&axons, &synapse, timeout).await;
        let query_s = started.elapsed().as_secs_f64();

        // Score.
        let completions: Vec<String> = responses
            .iter()
            .map(|r| {
                if r.is_success() {
                    PromptingSynapse::from_synapse(&r.synapse)
                        .map(|s| s.completion)
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .collect();
        let started = Instant::now();
        let scripts = self.scripts.clone();
        let reward_instance = instance.clone();
        let reward_challenge = challenge.clone();
        let reward_completions = completions.clone();
        let breakdowns = tokio::task::spawn_blocking(move || {
            score_completions(
                &scripts,
                &task_script,
                seed,
                step,
                &reward_instance,
                &reward_challenge,
                &reward_completions,
            )
        })
        .await
        .map_err(|e| ValidatorError::Worker(e.to_string()))??;
        let score_s = started.elapsed().as_secs_f64();
        let rewards: Vec<f64> = breakdowns.iter().map(|b| b.total).collect();
        self.state.update_scores(
            &uids,
            &rewards,
            self.config.neuron.moving_average_alpha,
            self.config.neuron.decay_alpha,
        );
        self.state.step += 1;

        let weights_set_at = self.maybe_set_weights(&metagraph, self_uid).await;
        self.state.save(&self.state_path)?;

        let event = StepEvent {
            step,
            block: metagraph.block,
            seed,
            task: instance.task.clone(),
            persona: to_json(&persona),
            query: instance.query.clone(),
            challenge,
            reference: instance.reference.clone(),
            task_fields: to_json(&instance.fields),
            responses: uids
                .iter()
                .zip(responses)
                .zip(completions)
                .zip(breakdowns)
                .map(
                    |(((&uid, response), completion), breakdown)| ResponseEvent {
                        uid,
                        hotkey: metagraph.neurons[usize::from(uid)].hotkey.clone(),
                        completion,
                        status_code: response.status_code,
                        status_message: response.status_message,
                        latency_s: response.latency.as_secs_f64(),
                        reward: breakdown.total,
                        components: breakdown.components,
                    },
                )
                .collect(),
            generate_s,
            query_s,
            score_s,
            weights_set_at,
        };
        if let Some(events) = &mut self.events {
            events.append(&event)?;
        }
        Ok(event)
    }

    /// Task-name → probability overrides from `--neuron.tasks`/`--neuron.task_p`.
    fn task_weights(&self) -> BTreeMap<String, f64> {
        let neuron = &self.config.neuron;
        if neuron.tasks.is_empty() {
            return BTreeMap::new();
        }
        // Listed tasks get their probability (1 when no task_p is given); every other
        // task is switched off, as SN1 does for tasks not in --neuron.tasks.
        let mut weights: BTreeMap<String, f64> = self
            .scripts
            .tasks()
            .iter()
            .map(|t| (t.name(), 0.0))
            .collect();
        for (i, name) in neuron.tasks.iter().enumerate() {
            weights.insert(name.clone(), neuron.task_p.get(i).copied().unwrap_or(1.0));
        }
        weights
    }

    /// Sets weights when an epoch has passed since the last setting and this hotkey
    /// holds a permit; returns the block when they were set. Failures are logged (the
    /// next step tries again), never fatal.
    async fn maybe_set_weights(&mut self, metagraph: &Metagraph, self_uid: u16) -> Option<u64> {
        let neuron = &self.config.neuron;
        let due = metagraph
            .block
            .saturating_sub(self.state.last_weights_block)
            > neuron.epoch_length
            || self.state.last_weights_block == 0;
        let permitted = metagraph.neurons[usize::from(self_uid)].validator_permit;
        if neuron.disable_set_weights || !due || !permitted {
            return None;
        }
        let weights: Vec<f32> = self
            .state
            .normalized_weights()
            .into_iter()
            .map(|w| w as f32)
            .collect();
        let (uids, values) =
            match normalize_weights(&(0..weights.len() as u16).collect::<Vec<_>>(), &weights) {
                Ok(pair) if !pair.0.is_empty() => pair,
                Ok(_) => return None,
                Err(err) => {
                    tracing::warn!("weights not set: {err}");
                    return None;
                }
            };
        match self
            .chain
            .set_weights(
                self.hotkey.as_ref(),
                self.config.netuid,
                &uids,
                &values,
                neuron.version_key,
            )
            .await
        {
            Ok(receipt) => {
                tracing::info!(block = receipt.block, uids = uids.len(), "weights set");
                self.state.last_weights_block = receipt.block;
                Some(receipt.block)
            }
            Err(err) => {
                tracing::warn!("setting weights failed: {err}");
                None
            }
        }
    }
}

/// Scores one step's completions with the task's current script, in the step's seeded
/// context (`seed`, `step`): its `reward` hook, else its `REWARDS`/`PENALTIES`. Every
/// validator step is scored here, and `neuron replay` re-scores recorded steps with it.
pub fn score_completions(
    scripts: &ScriptHost,
    task: &Script,
    seed: u64,
    step: u64,
    instance: &TaskInstance,
    challenge: &str,
    completions: &[String],
) -> Result<Vec<Breakdown>, ScriptError> {
    let ctx = scripts.ctx(seed, step);
    scripts.reward(task, &ctx, instance, challenge, completions)
}

/// The dendrite target for `uid` (its served axon, or an unroutable one that fails
/// with 503 like the SDK's).
pub(crate) fn axon_of(metagraph: &Metagraph, uid: u16) -> AxonInfo {
    let neuron = &metagraph.neurons[usize::from(uid)];
    match &neuron.axon {
        Some(axon) => AxonInfo::new(axon.ip.to_string(), axon.port, neuron.hotkey.clone()),
        None => AxonInfo::new("0.0.0.0", 0, neuron.hotkey.clone()),
    }
}

/// A script map as JSON for the event log.
fn to_json(map: &rhai::Map) -> serde_json::Value {
    rhai::serde::from_dynamic(&rhai::Dynamic::from_map(map.clone()))
        .unwrap_or(serde_json::Value::Null)
}

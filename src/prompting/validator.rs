//! The SN1 validator: each step makes a challenge ([`Challenge::make`]: a task script
//! generates a query and reference, the `--neuron.persona` script turns the query into
//! a challenge), queries a sample of miners through the
//! dendrite over `--neuron.transport` (`Dendrite::ask`: a total deadline per miner,
//! optionally returning at `--neuron.quorum` answers), scores their completions with the task's rewards, updates the moving
//! scores and, every epoch, sets weights on the chain.
//!
//! Scripts decide *what* to ask and how to score it; this module owns the loop, the
//! state, signing and the chain. A failing script, a hanging miner or an unreachable
//! chain fails (and logs) one step, never the loop.
//!
//! `scripts/validator.rhai` may replace two defaults: `select_uids(ctx, metagraph, k)`
//! (which miners a step queries; default [`select_uids`]) and `update_scores(ctx,
//! scores, rewards)` (default [`ValidatorState::update_scores`]; both applied by
//! [`ValidatorState::apply_rewards`], which `neuron replay` uses too). What a hook
//! returns is checked; a hook that fails or returns something invalid is logged and the
//! default is used for that step.
//!
//! `--neuron.num_concurrent_forwards N` runs N steps at once (task generation, queries
//! and scoring overlap, as SN1's concurrent forwards do); their score updates are then
//! applied one after the other in step order and the state is saved once, atomically,
//! for the whole batch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rhai::Array;
use tracing::warn;

use super::AbortOnDrop;
use super::challenge::{Challenge, ChallengeError, TaskChoice};
use super::contract::{PromptingLookups, PromptingScript};
use super::events::{EventLog, EventsError, ResponseEvent, StepEvent};
use super::hooks::{Answer, PromptingHooks};
use super::organic::{ORGANIC_INBOX, OrganicError, OrganicRewards, OrganicRouter, OrganicSetup};
use super::state::{ScoreUpdate, StateError, ValidatorState, hook_answer};
use super::uids::{UidFilter, select_uids};
use crate::chain::commit_reveal::RevealStore;
use crate::chain::weights::{REVEAL_POLL, WeightSetter, WeightsError};
use crate::chain::{Chain, ChainError, Metagraph};
use crate::config::Config;
use crate::net::{AskOptions, AxonInfo, Dendrite, DendriteOptions, DendritePool, PromptingSynapse};
use crate::script::{Ctx, NeuronLink, ScriptError, ScriptHost, metagraph_rows};
use crate::wallet::Keypair;

/// Pause of [`Validator::run`] after a batch whose every step failed (a chain down at
/// start, a broken task rotation), so the loop retries without spinning.
pub const FAILED_BATCH_PAUSE: Duration = Duration::from_secs(1);

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
    Events(#[from] EventsError),
    /// No task script is live.
    #[error("no task script is live under the script roots {0:?}")]
    NoTasks(Vec<PathBuf>),
    /// This validator's hotkey is not registered on the subnet.
    #[error("hotkey {0} is not registered on netuid {1}")]
    NotRegistered(String, u16),
    /// A blocking script call panicked or was cancelled.
    #[error("script worker: {0}")]
    Worker(String),
    /// The step ran but the state after it could not be saved.
    #[error("step {step} not persisted: {reason}")]
    NotPersisted {
        /// The step.
        step: u64,
        /// Why saving failed.
        reason: String,
    },
}

impl From<ChallengeError> for ValidatorError {
    fn from(err: ChallengeError) -> Self {
        match err {
            ChallengeError::Script(err) => Self::Script(err),
            ChallengeError::NoTasks(root) => Self::NoTasks(root),
        }
    }
}

/// Checks that `scripts` can make challenges as `config` asks: at least one live task,
/// each task `neuron.tasks` names live, and the `neuron.persona` persona live.
pub fn require_challenge_scripts(
    config: &Config,
    scripts: &ScriptHost,
) -> Result<(), ValidatorError> {
    if scripts.tasks().is_empty() {
        return Err(ValidatorError::NoTasks(scripts.roots().to_vec()));
    }
    for name in &config.neuron.tasks {
        scripts.task(name)?;
    }
    scripts.persona_script(&config.neuron.persona)?;
    Ok(())
}

/// A running validator.
pub struct Validator {
    config: Config,
    chain: Arc<dyn Chain>,
    hotkey: Arc<Keypair>,
    /// Dendrite sessions, one per concurrent step (shared with the scripts' link).
    dendrite: DendritePool,
    link: NeuronLink,
    scripts: ScriptHost,
    state: ValidatorState,
    state_path: PathBuf,
    events: Option<EventLog>,
    base_seed: u64,
    /// The last metagraph read from the chain, used while the chain is unreachable.
    metagraph: Option<Arc<Metagraph>>,
    /// `metagraph` as script rows (`ctx.metagraph`), built once per metagraph read.
    metagraph_rows: Arc<Array>,
    /// Sets (or commits and reveals) the weights; v2 reveals kept in `STATE_DIR/reveals`.
    weights: WeightSetter,
    /// Sends kept v2 reveals every [`REVEAL_POLL`] from the first step on, so they land
    /// in their windows however long steps take, and also between the steps of
    /// `neuron local`'s other validators.
    reveals: Option<AbortOnDrop>,
    /// Scored organic requests from this validator's API ([`Validator::organic_router`]),
    /// folded into the organic scores at each step.
    organic: Option<tokio::sync::mpsc::Receiver<OrganicRewards>>,
}

impl Validator {
    /// Builds a validator from its parts, loading persisted state from the config's
    /// state directory (a fresh state when none exists). Fails when the scripts cannot
    /// make a challenge (see [`require_challenge_scripts`]): a validator never idles.
    pub fn new(
        config: Config,
        chain: Arc<dyn Chain>,
        hotkey: Keypair,
        scripts: ScriptHost,
    ) -> Result<Self, ValidatorError> {
        require_challenge_scripts(&config, &scripts)?;
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
        let dendrite = DendritePool::from(
            Dendrite::new(hotkey.clone())
                .map_err(|e| ValidatorError::Worker(format!("dendrite: {e}")))?
                .with_options(DendriteOptions::from(&config.dendrite)),
        );
        let link = NeuronLink::new(Arc::clone(&chain), config.netuid, dendrite.clone());
        let hotkey = Arc::new(hotkey);
        let weights = WeightSetter::new(Arc::clone(&chain), hotkey.clone(), config.netuid)
            .with_mechid(config.neuron.mechid)
            .with_mode(config.neuron.commit_reveal)
            .with_sdk_processing()
            .with_store(RevealStore::new(state_dir.join("reveals")));
        Ok(Self {
            config,
            chain,
            hotkey,
            dendrite,
            link,
            scripts,
            state,
            state_path,
            events,
            base_seed,
            metagraph: None,
            metagraph_rows: Arc::default(),
            weights,
            reveals: None,
            organic: None,
        })
    }

    /// The backend of this validator's API (`crate::api`): it asks miners with this
    /// validator's dendrite and hotkey, and the organic rewards it scores reach this
    /// validator's state at its next step (a second call replaces the first's inbox).
    pub fn organic_router(&mut self) -> Result<OrganicRouter, OrganicError> {
        let (inbox, rewards) = tokio::sync::mpsc::channel(ORGANIC_INBOX);
        let router = OrganicRouter::new(OrganicSetup {
            config: self.config.clone(),
            chain: Arc::clone(&self.chain),
            dendrite: self.dendrite.clone(),
            scripts: self.scripts.clone(),
            inbox,
        })?;
        self.organic = Some(rewards);
        Ok(router)
    }

    /// Serves this validator's API when `--api.port` is set ([`super::organic::serve_api`]
    /// over [`Validator::organic_router`]); `None` when it is not.
    pub async fn serve_api(&mut self) -> Result<Option<crate::api::ApiServer>, OrganicError> {
        if self.config.api.port.is_none() {
            return Ok(None);
        }
        let router = self.organic_router()?;
        let api = self.config.api.clone();
        Ok(Some(super::organic::serve_api(&api, router).await?))
    }

    /// Folds every scored organic request waiting into the organic scores, outside a
    /// step (each step does it too): reads the metagraph first, so that the scores
    /// belong to the current hotkeys; returns how many requests there were.
    pub async fn absorb_organic(&mut self) -> Result<usize, ValidatorError> {
        self.sync_metagraph().await?;
        Ok(self.fold_organic())
    }

    /// Folds the waiting organic rewards into the organic scores (moving average with
    /// `--neuron.moving_average_alpha`); returns how many requests there were.
    fn fold_organic(&mut self) -> usize {
        let Some(inbox) = &mut self.organic else {
            return 0;
        };
        let alpha = self.config.neuron.moving_average_alpha;
        let mut n = 0;
        while let Ok(OrganicRewards(rewards)) = inbox.try_recv() {
            self.state.update_organic(&rewards, alpha);
            n += 1;
        }
        n
    }

    /// The persisted state (scores, step, last weights block).
    pub fn state(&self) -> &ValidatorState {
        &self.state
    }

    /// Runs `steps` steps (forever when `None`), `--neuron.num_concurrent_forwards` at
    /// a time, calling `on_step` with each step's outcome in step order. Step errors
    /// are logged and the loop goes on (after [`FAILED_BATCH_PAUSE`] when a whole batch
    /// failed).
    pub async fn run(
        &mut self,
        steps: Option<u64>,
        on_step: impl FnMut(&Result<StepEvent, ValidatorError>),
    ) {
        self.run_until(steps, std::future::pending(), on_step).await;
    }

    /// [`Validator::run`], stopping early once `stop` resolves (SIGTERM, Ctrl-C): the
    /// batch in flight finishes — its miners' answers are awaited and scored, weights set
    /// when due, the state and events saved — and no new batch starts.
    pub async fn run_until(
        &mut self,
        steps: Option<u64>,
        stop: impl Future<Output = ()>,
        mut on_step: impl FnMut(&Result<StepEvent, ValidatorError>),
    ) {
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        let concurrent = self.config.neuron.num_concurrent_forwards.max(1) as u64;
        let mut done = 0;
        while !stopping && steps.is_none_or(|n| done < n) {
            let batch = steps.map_or(concurrent, |n| concurrent.min(n - done));
            let results = {
                let mut running = std::pin::pin!(self.step_batch(batch as usize));
                tokio::select! {
                    results = &mut running => results,
                    () = &mut stop => {
                        stopping = true;
                        tracing::info!("stopping: finishing the step in flight");
                        running.await
                    }
                }
            };
            let all_failed = results.iter().all(Result::is_err);
            for result in results {
                on_step(&result);
                done += 1;
            }
            if all_failed && !stopping && steps.is_none_or(|n| done < n) {
                tokio::select! {
                    () = tokio::time::sleep(FAILED_BATCH_PAUSE) => {}
                    () = &mut stop => stopping = true,
                }
            }
        }
    }

    /// One validator step (a batch of one).
    pub async fn step(&mut self) -> Result<StepEvent, ValidatorError> {
        self.step_batch(1)
            .await
            .pop()
            .expect("a batch has at least one step")
    }

    /// Runs up to `n` steps at once over one metagraph, then applies their score
    /// updates in step order, sets weights when due and saves the state; returns one
    /// outcome per step run, in order. Every step counts, failed or not, so a script
    /// failing on one seed does not fail the same step forever. When the batch cannot
    /// start (no metagraph, not registered) it is one failed step.
    pub async fn step_batch(&mut self, n: usize) -> Vec<Result<StepEvent, ValidatorError>> {
        if self.reveals.is_none() {
            let weights = self.weights.clone();
            self.reveals = Some(AbortOnDrop::new(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REVEAL_POLL).await;
                    if let Err(err) = weights.reveal_due().await {
                        warn!("revealing weights failed (kept for the next try): {err}");
                    }
                }
            })));
        }
        let first = self.state.step;
        let (metagraph, self_uid) = match self.sync_metagraph().await {
            Ok(pair) => pair,
            Err(err) => {
                warn!(step = first, "validator step failed: {err}");
                self.state.step += 1;
                if let Err(save) = self.state.save(&self.state_path) {
                    warn!("{save}");
                }
                return vec![Err(err)];
            }
        };
        let steps = first..first + n.max(1) as u64;
        let outcomes = futures::future::join_all(
            steps
                .clone()
                .map(|step| self.forward(step, &metagraph, self_uid)),
        )
        .await;
        let mut results = Vec::with_capacity(outcomes.len());
        for (step, outcome) in steps.zip(outcomes) {
            self.state.step = step + 1;
            match &outcome {
                Ok(event) => self.update_scores(event).await,
                Err(err) => warn!(step, "validator step failed: {err}"),
            }
            results.push(outcome);
        }
        self.fold_organic();
        let weights_set_at = self.maybe_set_weights(&metagraph, self_uid).await;
        if let Err(err) = self.state.save(&self.state_path) {
            warn!("{err}");
            let reason = err.to_string();
            return results
                .into_iter()
                .map(|r| {
                    r.and_then(|event| {
                        Err(ValidatorError::NotPersisted {
                            step: event.step,
                            reason: reason.clone(),
                        })
                    })
                })
                .collect();
        }
        if let Some(Ok(last)) = results.iter_mut().rev().find(|r| r.is_ok()) {
            last.weights_set_at = weights_set_at;
        }
        if let Some(events) = &mut self.events {
            for result in &mut results {
                if let Ok(event) = result
                    && let Err(err) = events.append(event)
                {
                    *result = Err(err.into());
                }
            }
        }
        results
    }

    /// Reads the metagraph (keeping the last good one while the chain is unreachable),
    /// finds this validator's uid and aligns the score table with the hotkeys.
    async fn sync_metagraph(&mut self) -> Result<(Arc<Metagraph>, u16), ValidatorError> {
        let netuid = self.config.netuid;
        let metagraph = match self.chain.metagraph(netuid).await {
            Ok(metagraph) => {
                let metagraph = Arc::new(metagraph);
                self.metagraph_rows = Arc::new(metagraph_rows(&metagraph));
                self.metagraph = Some(Arc::clone(&metagraph));
                metagraph
            }
            // Only an unreachable chain falls back; any other error is the chain's answer.
            Err(err @ (ChainError::Connection(_) | ChainError::Timeout { .. })) => {
                match &self.metagraph {
                    Some(last) => {
                        warn!(
                            block = last.block,
                            "chain unreachable, scoring with the last metagraph: {err}"
                        );
                        Arc::clone(last)
                    }
                    None => return Err(err.into()),
                }
            }
            Err(err) => return Err(err.into()),
        };
        let my_hotkey = self.hotkey.ss58();
        let self_uid = metagraph
            .uid_of(&my_hotkey)
            .ok_or(ValidatorError::NotRegistered(my_hotkey, netuid))?;
        let hotkeys: Vec<String> = metagraph.neurons.iter().map(|n| n.hotkey.clone()).collect();
        self.state.sync_hotkeys(&hotkeys);
        Ok((metagraph, self_uid))
    }

    /// Runs `work` on a blocking thread with the scripts and the context of `step`
    /// (seeded, lending this validator's chain and dendrite to the script modules, with
    /// the step's metagraph rows as `ctx.metagraph`: during a batch they are those of
    /// the metagraph [`Validator::sync_metagraph`] returned for it).
    async fn with_scripts<T: Send + 'static>(
        &self,
        step: u64,
        work: impl FnOnce(&ScriptHost, &Ctx) -> T + Send + 'static,
    ) -> Result<T, ValidatorError> {
        let scripts = self.scripts.clone();
        let ctx = scripts
            .ctx(self.seed(step), step)
            .with_link(self.link.clone())
            .with_metagraph(Arc::clone(&self.metagraph_rows));
        tokio::task::spawn_blocking(move || work(&scripts, &ctx))
            .await
            .map_err(|e| ValidatorError::Worker(e.to_string()))
    }

    /// Step `step`'s seed: the first word of ChaCha8 stream `step` under the base seed,
    /// so the steps of two base seeds share nothing (with `base + step`, base seed 2
    /// repeated 19 of the 20 steps of base seed 1).
    fn seed(&self, step: u64) -> u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(self.base_seed);
        rng.set_stream(step);
        rng.next_u64()
    }

    /// Everything of step `step` up to its rewards: task, persona and challenge, the
    /// uids to query, the dendrite query and the scoring. Touches no state.
    async fn forward(
        &self,
        step: u64,
        metagraph: &Arc<Metagraph>,
        self_uid: u16,
    ) -> Result<StepEvent, ValidatorError> {
        let started = Instant::now();
        let choice = TaskChoice::Weighted(self.task_weights());
        let persona = self.config.neuron.persona.clone();
        let challenge = self
            .with_scripts(step, move |scripts, ctx| {
                Challenge::make(scripts, ctx, choice, &persona)
            })
            .await??;
        let generate_s = started.elapsed().as_secs_f64();

        let uids = self.select_uids(step, metagraph, self_uid).await;
        let axons: Vec<AxonInfo> = uids
            .iter()
            .map(|&uid| AxonInfo::of_neuron(&metagraph.neurons[usize::from(uid)]))
            .collect();
        let prompt = PromptingSynapse {
            roles: vec!["user".into()],
            messages: vec![challenge.text.clone()],
            completion: String::new(),
        };
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(self.config.neuron.timeout);
        let options = AskOptions {
            transport: self.config.neuron.transport,
            timeout,
            quorum: self.config.neuron.quorum,
        };
        let session = self.dendrite.session();
        let asked = match &challenge.request {
            Some(request) => session.ask_chat(&axons, request, &options).await,
            None => session.ask(&axons, &prompt, &options).await,
        };
        let (responses, answers): (Vec<_>, Vec<Answer>) = asked
            .into_iter()
            .map(|mut answer| {
                let scored = Answer::take_from(&mut answer);
                (answer, scored)
            })
            .unzip();
        let query_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let (scored, reward_answers) = (challenge.clone(), answers.clone());
        let breakdowns = self
            .with_scripts(step, move |scripts, ctx| {
                scripts.reward(
                    &scored.task,
                    ctx,
                    &scored.instance,
                    &scored.text,
                    &reward_answers,
                )
            })
            .await??;
        let score_s = started.elapsed().as_secs_f64();

        Ok(StepEvent {
            step,
            block: metagraph.block,
            seed: self.seed(step),
            persona: challenge.persona_json(),
            task_fields: challenge.fields_json(),
            task: challenge.instance.task,
            query: challenge.instance.query,
            reference: challenge.instance.reference,
            challenge: challenge.text,
            responses: uids
                .iter()
                .zip(responses)
                .zip(answers)
                .zip(breakdowns)
                .map(|(((&uid, response), answer), breakdown)| ResponseEvent {
                    uid,
                    hotkey: metagraph.neurons[usize::from(uid)].hotkey.clone(),
                    completion: answer.completion,
                    status_code: response.status_code,
                    status_message: response.status_message,
                    latency_s: answer.latency_s,
                    logprobs: answer.logprobs,
                    reward: breakdown.total,
                    components: breakdown.components,
                })
                .collect(),
            generate_s,
            query_s,
            score_s,
            weights_set_at: None,
        })
    }

    /// The uids step `step` queries: the `select_uids` hook's when it defines one and
    /// its answer is valid, else SN1's sampling ([`select_uids`]) seeded by the step.
    async fn select_uids(&self, step: u64, metagraph: &Arc<Metagraph>, self_uid: u16) -> Vec<u16> {
        let k = self.config.neuron.sample_size;
        if let Some(script) = self
            .scripts
            .validator_hooks()
            .filter(|s| s.hooks().select_uids)
        {
            let graph = Arc::clone(metagraph);
            let hooked = self
                .with_scripts(step, move |scripts, ctx| {
                    scripts.select_uids(&script, ctx, &graph, k)
                })
                .await;
            let answer = hooked.and_then(|answer| answer.map_err(ValidatorError::from));
            if let Some(uids) = hook_answer("select_uids", step, answer) {
                return uids;
            }
        }
        let filter = UidFilter {
            self_uid: Some(self_uid),
            vpermit_tao_limit: self.config.neuron.vpermit_tao_limit,
            unique_coldkeys: self.config.neuron.query_unique_coldkeys,
            unique_ips: self.config.neuron.query_unique_ips,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed(step));
        select_uids(metagraph, &filter, k, &mut rng)
    }

    /// Folds a scored step into the moving scores ([`ValidatorState::apply_rewards`],
    /// in the step's context, on a blocking thread).
    async fn update_scores(&mut self, event: &StepEvent) {
        let (uids, rewards) = (event.uids(), event.rewards());
        let neuron = &self.config.neuron;
        let default = ScoreUpdate {
            alpha: neuron.moving_average_alpha,
            decay: neuron.decay_alpha,
        };
        let mut state = self.state.clone();
        let (hook_uids, hook_rewards) = (uids.clone(), rewards.clone());
        match self
            .with_scripts(event.step, move |scripts, ctx| {
                state.apply_rewards(scripts, ctx, &hook_uids, &hook_rewards, default);
                state
            })
            .await
        {
            Ok(state) => self.state = state,
            Err(err) => {
                hook_answer::<(), _>("update_scores", event.step, Err(err));
                self.state
                    .update_scores(&uids, &rewards, default.alpha, default.decay);
            }
        }
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

    /// Reveals kept commit-reveal v2 weights whose window is open, then sets weights
    /// (through [`WeightSetter`]: plain, v2 or v4 as the subnet asks) when an epoch has
    /// passed since the last setting and this hotkey holds a permit; returns the block
    /// when they were set or committed. Failures are logged (the next step tries
    /// again), never fatal.
    async fn maybe_set_weights(&mut self, metagraph: &Metagraph, self_uid: u16) -> Option<u64> {
        if let Err(err) = self.weights.reveal_due().await {
            warn!("revealing weights failed (kept for the next step): {err}");
        }
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
            .blended_weights(self.config.api.organic_share)
            .into_iter()
            .map(|w| w as f32)
            .collect();
        let uids: Vec<u16> = (0..weights.len() as u16).collect();
        match self.weights.set(&uids, &weights, neuron.version_key).await {
            Ok(outcome) => {
                let block = outcome.block();
                tracing::info!(block, "weights set");
                self.state.last_weights_block = block;
                Some(block)
            }
            Err(WeightsError::NoWeights) => None,
            Err(err) => {
                warn!("setting weights failed: {err}");
                None
            }
        }
    }
}

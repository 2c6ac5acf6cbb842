//! The validator loop: read commitments, retrieve models, evaluate one competition per
//! round, keep per-uid moving averages and set weights on the chain on cadence.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chain::commit_reveal::RevealStore;
use crate::chain::weights::{CommitRevealMode, WeightSetter};
use crate::chain::{Chain, Signer};

use super::data::{Pair, batches};
use super::eval::{Candidate, Evaluator, ModelScore};
use super::policy::Policy;
use super::store::ModelStore;
use super::{FinetuneError, ModelId};

/// Every commitment on `netuid` with its parsed model id (or why it does not parse).
pub async fn read_models(
    chain: &dyn Chain,
    netuid: u16,
) -> Result<Vec<(u16, u64, Result<ModelId, FinetuneError>)>, FinetuneError> {
    Ok(chain
        .commitments(netuid)
        .await?
        .into_iter()
        .map(|c| {
            let id = std::str::from_utf8(&c.data)
                .map_err(|_| FinetuneError::BadModelId {
                    id: format!("{} bytes", c.data.len()),
                    reason: "commitment is not UTF-8".into(),
                })
                .and_then(ModelId::parse);
            (c.uid, c.block, id)
        })
        .collect())
}

/// Persistent validator state (JSON at [`FinetuneConfig::state_path`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinetuneState {
    /// Rounds completed.
    pub step: u64,
    /// Moving-average weight per uid.
    pub weights: BTreeMap<u16, f64>,
    /// Block of the last successful `set_weights`.
    pub last_set_block: Option<u64>,
    /// Next evaluation pair to use.
    pub data_offset: usize,
}

/// How the validator runs.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// Subnet.
    pub netuid: u16,
    /// Where the state is kept between runs.
    pub state_path: PathBuf,
    /// Evaluation pairs.
    pub pairs: Vec<Pair>,
    /// `version_key` for `set_weights`.
    pub version_key: u64,
}

/// What one round did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// Round number.
    pub step: u64,
    /// Chain block at the start of the round.
    pub block: u64,
    /// Competition evaluated.
    pub competition: String,
    /// Scores of the models in that competition.
    pub scores: Vec<ModelScore>,
    /// Moving-average weights after the round.
    pub weights: BTreeMap<u16, f64>,
    /// Block at which weights were set this round, if they were.
    pub weights_set_at: Option<u64>,
    /// Why setting weights failed, if it did.
    pub weights_error: Option<String>,
    /// Cached models evicted.
    pub evicted: Vec<PathBuf>,
}

/// The finetuning validator.
pub struct FinetuneValidator {
    chain: Arc<dyn Chain>,
    /// Sets the weights (plain, v2 or v4 as the subnet asks); v2 reveals are kept in
    /// `reveals/` beside the state file.
    weights: WeightSetter,
    policy: Arc<dyn Policy>,
    store: ModelStore,
    evaluator: Evaluator,
    config: FinetuneConfig,
    state: FinetuneState,
}

impl FinetuneValidator {
    /// A validator; loads its state from `config.state_path` when present.
    pub fn new(
        chain: Arc<dyn Chain>,
        signer: Arc<dyn Signer>,
        policy: Arc<dyn Policy>,
        store: ModelStore,
        evaluator: Evaluator,
        config: FinetuneConfig,
    ) -> Result<Self, FinetuneError> {
        let state = match std::fs::read_to_string(&config.state_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| FinetuneError::Data {
                path: config.state_path.display().to_string(),
                reason: format!("bad validator state: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FinetuneState::default(),
            Err(source) => {
                return Err(FinetuneError::Io {
                    path: config.state_path.clone(),
                    source,
                });
            }
        };
        let reveals = config
            .state_path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("reveals");
        let weights = WeightSetter::new(Arc::clone(&chain), signer, config.netuid)
            .with_store(RevealStore::new(reveals));
        Ok(Self {
            chain,
            weights,
            policy,
            store,
            evaluator,
            config,
            state,
        })
    }

    /// The current state.
    pub fn state(&self) -> &FinetuneState {
        &self.state
    }

    /// One round: the competition `step % competitions` is evaluated.
    pub async fn round(&mut self) -> Result<RoundReport, FinetuneError> {
        let settings = self.policy.settings()?;
        let competitions = self.policy.competitions()?;
        let n_comps = competitions.len() as f64;
        let competition =
            competitions[(self.state.step % competitions.len() as u64) as usize].clone();
        let block = self.chain.current_block().await?;
        let models = read_models(self.chain.as_ref(), self.config.netuid).await?;
        let mut committed = Vec::new();
        let mut entries = Vec::new();
        for (uid, at, id) in models {
            match id {
                Ok(id) => {
                    committed.push(id.clone());
                    let comp = id
                        .competition_id
                        .clone()
                        .unwrap_or_else(|| settings.default_competition.clone());
                    if comp == competition.id {
                        entries.push((uid, at, id));
                    }
                }
                Err(e) => tracing::info!(uid, error = %e, "ignoring commitment"),
            }
        }
        let store = self.store.clone();
        let comp = competition.clone();
        let candidates: Vec<Candidate> = tokio::task::spawn_blocking(move || {
            entries
                .into_iter()
                .map(|(uid, block, id)| {
                    let path = store.retrieve(&id, &comp).map_err(|e| e.to_string());
                    Candidate {
                        uid,
                        id,
                        block,
                        path,
                    }
                })
                .collect()
        })
        .await
        .map_err(|e| FinetuneError::Policy(format!("retrieval task failed: {e}")))?;

        let size = settings.pairs_per_batch.max(1);
        let round_batches = batches(
            &self.config.pairs,
            settings.batches_per_round,
            size,
            self.state.data_offset,
        );
        self.state.data_offset =
            (self.state.data_offset + round_batches.len() * size) % self.config.pairs.len().max(1);
        let (evaluator, policy) = (self.evaluator.clone(), self.policy.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            evaluator.evaluate(&candidates, &round_batches, policy.as_ref(), block)
        })
        .await
        .map_err(|e| FinetuneError::Policy(format!("evaluation task failed: {e}")))??;

        // Scale this competition's weights to its share (times the number of
        // competitions, since each round updates every uid's average), then average.
        let total: f64 = outcome.scores.iter().map(|s| s.weight).sum();
        let scale = if total > 0.0 {
            n_comps * competition.reward_share / total
        } else {
            0.0
        };
        let mut fresh: BTreeMap<u16, f64> = outcome
            .scores
            .iter()
            .map(|s| (s.uid, s.weight * scale))
            .collect();
        for uid in self.state.weights.keys() {
            fresh.entry(*uid).or_insert(0.0);
        }
        let mut weights = BTreeMap::new();
        for (uid, new) in fresh {
            let old = self.state.weights.get(&uid).copied().unwrap_or(0.0);
            let avg = self.policy.moving_average(old, new)?;
            weights.insert(uid, if avg.is_finite() { avg.max(0.0) } else { 0.0 });
        }
        self.state.weights = weights.clone();

        let evicted = match self.store.evict(&committed) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cache eviction failed");
                Vec::new()
            }
        };

        if let Err(e) = self.weights.reveal_due().await {
            tracing::warn!(error = %e, "revealing weights failed (kept for the next round)");
        }
        let due = self
            .state
            .last_set_block
            .is_none_or(|last| block >= last + settings.weights_cadence_blocks);
        let (mut weights_set_at, mut weights_error) = (None, None);
        if due {
            match self.set_weights().await {
                Ok(at) => {
                    self.state.last_set_block = Some(at);
                    weights_set_at = Some(at);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "set_weights failed");
                    weights_error = Some(e.to_string());
                }
            }
        }
        let report = RoundReport {
            step: self.state.step,
            block,
            competition: competition.id,
            scores: outcome.scores,
            weights,
            weights_set_at,
            weights_error,
            evicted,
        };
        self.state.step += 1;
        self.save()?;
        Ok(report)
    }

    /// The same validator with weights sent as `mode` asks, on mechanism `mechid`
    /// (`--neuron.commit_reveal`, `--neuron.mechid`).
    pub fn with_weight_setting(self, mode: CommitRevealMode, mechid: u8) -> Self {
        Self {
            weights: self.weights.with_mode(mode).with_mechid(mechid),
            ..self
        }
    }

    async fn set_weights(&self) -> Result<u64, FinetuneError> {
        let (uids, values): (Vec<u16>, Vec<f64>) = self
            .state
            .weights
            .iter()
            .filter(|(_, w)| **w > 0.0)
            .map(|(u, w)| (*u, *w))
            .unzip();
        if uids.is_empty() {
            return Err(FinetuneError::Policy("no positive weights to set".into()));
        }
        let weights: Vec<f32> = values.iter().map(|&w| w as f32).collect();
        let outcome = self
            .weights
            .set(&uids, &weights, self.config.version_key)
            .await?;
        Ok(outcome.block())
    }

    fn save(&self) -> Result<(), FinetuneError> {
        let io = |source| FinetuneError::Io {
            path: self.config.state_path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&self.state).expect("state serialises");
        crate::fsutil::write_atomic(&self.config.state_path, text.as_bytes(), 0o644).map_err(io)
    }
}

//! The one way a neuron sets weights: [`WeightSetter`], used by the SN1 validator, the
//! finetuning validator and `neuron chain weights`.
//!
//! Each update first runs [`preflight`] (what the bittensor SDK 11 checks before it
//! submits, each failure a typed [`WeightsError`] saying what to do), then submits by the
//! subnet's commit-reveal setting, read at every update (operator override
//! [`CommitRevealMode`], `--neuron.commit_reveal`):
//! - off: `set_weights` (`set_mechanism_weights` for a mechanism other than 0);
//! - v2: `commit_weights` with the SDK's blake2 hash, the reveal kept in the durable
//!   [`RevealStore`] and sent by [`WeightSetter::reveal_due`] inside its window (also
//!   after a restart: the store is on disk);
//! - v4: the payload timelock-encrypted to the chain's beacon for the round the SDK
//!   picks ([`timelock::reveal_round`]), sent with `commit_timelocked_mechanism_weights`;
//!   the chain reveals it.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parity_scale_codec::Encode;
use thiserror::Error;

use super::commit_reveal::{self, CommitRevealError, Committed, RevealReport, RevealStore};
use super::subtensor::{SubtensorCall, WeightsReveal};
use super::timelock::{self, TimelockError, WeightsPayload};
pub use crate::config::CommitRevealMode;

use super::{Chain, ChainError, Hyperparameters, Metagraph, Signer, TxReceipt, max_upscale, yuma};

impl Hyperparameters {
    /// Commit-reveal turned on at `mode`'s version (`v2` or `v4`); `auto` and `off`
    /// leave the parameters as they are.
    pub fn with_commit_reveal(mut self, mode: CommitRevealMode) -> Self {
        let version = match mode {
            CommitRevealMode::V2 => 2,
            CommitRevealMode::V4 => 4,
            CommitRevealMode::Auto | CommitRevealMode::Off => return self,
        };
        self.commit_reveal_weights_enabled = true;
        self.commit_reveal_version = version;
        self
    }
}

/// Why weights were not set. Every message says what to do about it.
#[derive(Debug, Error)]
pub enum WeightsError {
    /// Unequal `uids` and `weights`.
    #[error("{uids} uids but {weights} weights: pass one weight per uid")]
    LengthMismatch {
        /// Uids given.
        uids: usize,
        /// Weights given.
        weights: usize,
    },
    /// A negative or non-finite weight.
    #[error("weight {0} is not a finite non-negative number: fix the scores")]
    InvalidWeight(f32),
    /// Nothing non-zero to set.
    #[error("every weight is zero: nothing to set until some miner scores")]
    NoWeights,
    /// The hotkey has no uid on the subnet.
    #[error(
        "hotkey {hotkey} is not registered on subnet {netuid}: register it (`neuron chain \
         register --netuid {netuid}`) before setting weights"
    )]
    NotRegistered {
        /// Hotkey SS58.
        hotkey: String,
        /// Subnet.
        netuid: u16,
    },
    /// Non-self weights from a uid without a validator permit.
    #[error(
        "uid {uid} has no validator permit on subnet {netuid} (the top {max_validators} by \
         stake get one at each epoch): add stake, or set only a self-weight"
    )]
    NoValidatorPermit {
        /// Our uid.
        uid: u16,
        /// Subnet.
        netuid: u16,
        /// Permits per epoch.
        max_validators: u16,
    },
    /// Our version key is below the subnet's `weights_version_key`.
    #[error(
        "version key {ours} is below subnet {netuid}'s weights_version_key {required}: \
         upgrade the validator or raise --neuron.version_key"
    )]
    BadVersionKey {
        /// Ours.
        ours: u64,
        /// The subnet's minimum.
        required: u64,
        /// Subnet.
        netuid: u16,
    },
    /// The last update is more recent than the weights rate limit.
    #[error(
        "uid {uid} set weights at block {last_update} and subnet {netuid} allows one update \
         per {limit} blocks: wait until block {next}"
    )]
    RateLimited {
        /// Our uid.
        uid: u16,
        /// Subnet.
        netuid: u16,
        /// Block of the last update.
        last_update: u64,
        /// `weights_rate_limit`.
        limit: u64,
        /// First block allowed.
        next: u64,
    },
    /// More weights than uids on the subnet.
    #[error("{len} weights for subnet {netuid} of {n} uids: drop the extra uids")]
    TooManyWeights {
        /// Weights given.
        len: usize,
        /// Subnet size.
        n: usize,
        /// Subnet.
        netuid: u16,
    },
    /// A uid appears twice.
    #[error("uid {0} appears more than once: merge its weights")]
    DuplicateUid(u16),
    /// A uid beyond the subnet.
    #[error("uid {uid} does not exist on subnet {netuid} ({n} uids): refresh the metagraph")]
    UnknownUid {
        /// The uid.
        uid: u16,
        /// Subnet size.
        n: usize,
        /// Subnet.
        netuid: u16,
    },
    /// Fewer non-zero weights than `MinAllowedWeights` (clamped to the subnet size).
    #[error(
        "{have} non-zero weights but subnet {netuid} requires at least {need} \
         (min_allowed_weights): score more miners before setting weights"
    )]
    TooFewWeights {
        /// Non-zero weights.
        have: usize,
        /// Required.
        need: usize,
        /// Subnet.
        netuid: u16,
    },
    /// v2 or v4 was asked for on a subnet with commit-reveal off.
    #[error(
        "subnet {netuid} has commit-reveal off, but --neuron.commit_reveal {mode} asks for \
         it: use auto or off"
    )]
    CommitRevealOff {
        /// Subnet.
        netuid: u16,
        /// The mode asked for.
        mode: CommitRevealMode,
    },
    /// Plain weights were asked for on a subnet with commit-reveal on.
    #[error(
        "subnet {netuid} requires commit-reveal, so --neuron.commit_reveal off cannot set \
         weights there: use auto, v2 or v4"
    )]
    CommitRevealRequired {
        /// Subnet.
        netuid: u16,
    },
    /// The chain refused or could not be reached.
    #[error("the chain did not take the weights: {0}")]
    Chain(#[from] ChainError),
    /// The v2 commit or its store failed.
    #[error(transparent)]
    CommitReveal(#[from] CommitRevealError),
    /// Timelock encryption failed.
    #[error(transparent)]
    Timelock(#[from] TimelockError),
}

/// Weights that passed [`preflight`], ready to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWeights {
    /// Our uid.
    pub uid: u16,
    /// Destination uids (non-zero weights only).
    pub uids: Vec<u16>,
    /// Clipped, u16-quantised weights (max-upscaled to 65535).
    pub values: Vec<u16>,
}

/// The checks the SDK runs before submitting weights, against the metagraph and
/// hyperparameters just read: registered, version key, rate limit (only for plain
/// weights, as the chain checks it), at most n uids, no duplicates, known uids, validator
/// permit (a self-weight alone is exempt), then the weights normalised, clipped to
/// `max_weight_limit`, u16-quantised, and at least `min(min_allowed_weights, n)` of them.
pub fn preflight(
    metagraph: &Metagraph,
    params: &Hyperparameters,
    hotkey: &str,
    uids: &[u16],
    weights: &[f32],
    version_key: u64,
    plain: bool,
) -> Result<PreparedWeights, WeightsError> {
    let netuid = metagraph.netuid;
    if uids.len() != weights.len() {
        return Err(WeightsError::LengthMismatch {
            uids: uids.len(),
            weights: weights.len(),
        });
    }
    if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(WeightsError::InvalidWeight(*bad));
    }
    let uid = metagraph
        .uid_of(hotkey)
        .ok_or_else(|| WeightsError::NotRegistered {
            hotkey: hotkey.to_string(),
            netuid,
        })?;
    if params.weights_version_key != 0 && version_key < params.weights_version_key {
        return Err(WeightsError::BadVersionKey {
            ours: version_key,
            required: params.weights_version_key,
            netuid,
        });
    }
    let me = &metagraph.neurons[usize::from(uid)];
    let next = me.last_update + params.weights_rate_limit;
    if plain && me.last_update != 0 && metagraph.block < next {
        return Err(WeightsError::RateLimited {
            uid,
            netuid,
            last_update: me.last_update,
            limit: params.weights_rate_limit,
            next,
        });
    }
    let n = metagraph.neurons.len();
    if uids.len() > n {
        return Err(WeightsError::TooManyWeights {
            len: uids.len(),
            n,
            netuid,
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(uids.len());
    if let Some(dup) = uids.iter().find(|u| !seen.insert(**u)) {
        return Err(WeightsError::DuplicateUid(*dup));
    }
    if let Some(bad) = uids.iter().find(|u| usize::from(**u) >= n) {
        return Err(WeightsError::UnknownUid {
            uid: *bad,
            n,
            netuid,
        });
    }
    let (uids, values) = quantise(uids, weights, params.max_weight_limit);
    if uids.is_empty() {
        return Err(WeightsError::NoWeights);
    }
    let self_weight = uids == [uid];
    if !self_weight && !me.validator_permit {
        return Err(WeightsError::NoValidatorPermit {
            uid,
            netuid,
            max_validators: params.max_allowed_validators,
        });
    }
    let need = usize::from(params.min_allowed_weights).min(n);
    if !self_weight && uids.len() < need {
        return Err(WeightsError::TooFewWeights {
            have: uids.len(),
            need,
            netuid,
        });
    }
    Ok(PreparedWeights { uid, uids, values })
}

/// The weights a validator built on the SDK sends for `weights` (one per uid of the
/// subnet), as `process_weights_for_netuid` makes them (without quantile exclusion):
/// all zero (or a subnet smaller than `min_allowed`) becomes uniform; fewer non-zero
/// weights than `min_allowed` are kept and every uid is lifted by 1e-5, so the set meets
/// the chain's minimum; otherwise the weights are returned as they are (clipping to
/// `MaxWeightsLimit` and quantising follow in the checks).
pub fn process_weights_like_sdk(weights: &[f32], min_allowed: usize) -> Vec<f32> {
    let n = weights.len();
    let non_zero = weights.iter().filter(|w| **w > 0.0).count();
    if non_zero == 0 || n < min_allowed {
        return vec![1.0 / n.max(1) as f32; n];
    }
    if non_zero < min_allowed {
        let lifted: Vec<f32> = weights.iter().map(|w| w.max(0.0) + 1e-5).collect();
        let total: f32 = lifted.iter().sum();
        return lifted.into_iter().map(|w| w / total).collect();
    }
    weights.to_vec()
}

/// Drops zero weights, clips the shares to `max_weight_limit / 65535` (the SDK's
/// `normalize_max_weight`: the largest shares are lowered to one cap so that the rest
/// sum up to the remainder) and quantises to u16 by max-upscaling with Python rounding.
fn quantise(uids: &[u16], weights: &[f32], max_weight_limit: u16) -> (Vec<u16>, Vec<u16>) {
    let pairs: Vec<(u16, f64)> = uids
        .iter()
        .zip(weights)
        .map(|(&u, &w)| (u, f64::from(w)))
        .filter(|(_, w)| *w > 0.0)
        .collect();
    let limit = f64::from(max_weight_limit) / f64::from(u16::MAX);
    let shares = clip_shares(&pairs.iter().map(|p| p.1).collect::<Vec<_>>(), limit);
    let uids: Vec<u16> = pairs.iter().map(|p| p.0).collect();
    max_upscale(&uids, &shares)
}

/// Positive weights as shares of their sum, with no share above `limit` (when the limit
/// can be met at all; below 1/n every share becomes 1/n).
fn clip_shares(weights: &[f64], limit: f64) -> Vec<f64> {
    let sum: f64 = weights.iter().sum();
    let n = weights.len();
    if n == 0 || sum <= 0.0 {
        return weights.to_vec();
    }
    let shares: Vec<f64> = weights.iter().map(|w| w / sum).collect();
    if limit >= 1.0 || shares.iter().all(|s| *s <= limit) {
        return shares;
    }
    if limit * n as f64 <= 1.0 {
        return vec![1.0 / n as f64; n];
    }
    let mut sorted = weights.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut rest = sum;
    let mut cap = sorted[0];
    for k in 1..=n {
        rest -= sorted[k - 1];
        let clipped = k as f64 * limit;
        if clipped >= 1.0 {
            break;
        }
        let c = limit * rest / (1.0 - clipped);
        let below = sorted.get(k).copied().unwrap_or(0.0);
        if c >= below && c <= sorted[k - 1] {
            cap = c;
            break;
        }
    }
    let clipped: Vec<f64> = weights.iter().map(|w| w.min(cap)).collect();
    let total: f64 = clipped.iter().sum();
    clipped.into_iter().map(|w| w / total).collect()
}

/// What a weight update will submit: the checked weights, how, and the call.
#[derive(Debug, Clone)]
pub struct WeightsPlan {
    /// Plain (`Off`), `V2` or `V4`: the mode resolved against the subnet.
    pub mode: CommitRevealMode,
    /// The checked weights.
    pub weights: PreparedWeights,
    /// The extrinsic, as subtensor would receive it.
    pub call: SubtensorCall,
    /// v2: what the later reveal sends (salt included).
    pub reveal: Option<WeightsReveal>,
    /// v4: the timelock ciphertext and the beacon round that opens it.
    pub timelocked: Option<(Vec<u8>, u64)>,
    /// The weights version key.
    pub version_key: u64,
}

/// What one weight update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsOutcome {
    /// Plain weights set.
    Set {
        /// Where.
        receipt: TxReceipt,
        /// What.
        weights: PreparedWeights,
    },
    /// A v2 commit made; its reveal is kept for its window.
    Committed {
        /// The commit, its window and store file.
        committed: Committed,
        /// What.
        weights: PreparedWeights,
    },
    /// A v4 timelocked commit made; the chain reveals it at `reveal_round`.
    Timelocked {
        /// Where.
        receipt: TxReceipt,
        /// The beacon round that opens it.
        reveal_round: u64,
        /// What.
        weights: PreparedWeights,
    },
}

impl WeightsOutcome {
    /// The block that included the update.
    pub fn block(&self) -> u64 {
        match self {
            Self::Set { receipt, .. } | Self::Timelocked { receipt, .. } => receipt.block,
            Self::Committed { committed, .. } => committed.receipt.block,
        }
    }
}

/// How often a running validator looks for v2 reveals whose window has opened.
pub const REVEAL_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A hotkey's weight setting on one subnet mechanism.
#[derive(Clone)]
pub struct WeightSetter {
    chain: Arc<dyn Chain>,
    hotkey: Arc<dyn Signer>,
    netuid: u16,
    mechid: u8,
    mode: CommitRevealMode,
    store: RevealStore,
    /// Process the weights as a validator built on the SDK does first
    /// ([`process_weights_like_sdk`]).
    sdk_processing: bool,
    /// Held while revealing: clones (a validator's steps and its reveal ticker) never
    /// reveal the same commit twice or write the store at once.
    reveal_lock: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for WeightSetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightSetter")
            .field("netuid", &self.netuid)
            .field("mechid", &self.mechid)
            .field("mode", &self.mode)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl WeightSetter {
    /// Weights of `hotkey` on mechanism 0 of `netuid`, commit-reveal `auto`, reveals kept
    /// in `$NEURON_HOME/chain/reveals`.
    pub fn new(chain: Arc<dyn Chain>, hotkey: Arc<dyn Signer>, netuid: u16) -> Self {
        Self {
            chain,
            hotkey,
            netuid,
            mechid: 0,
            mode: CommitRevealMode::Auto,
            store: RevealStore::in_neuron_home(),
            sdk_processing: false,
            reveal_lock: Arc::default(),
        }
    }

    /// The same, on mechanism `mechid`.
    pub fn with_mechid(self, mechid: u8) -> Self {
        Self { mechid, ..self }
    }

    /// The same, with commit-reveal `mode`.
    pub fn with_mode(self, mode: CommitRevealMode) -> Self {
        Self { mode, ..self }
    }

    /// The same, processing the weights as the SDK's `process_weights_for_netuid` does
    /// before the checks ([`process_weights_like_sdk`]), as SN1's validators do.
    pub fn with_sdk_processing(self) -> Self {
        Self {
            sdk_processing: true,
            ..self
        }
    }

    /// The same, keeping v2 reveals in `store`.
    pub fn with_store(self, store: RevealStore) -> Self {
        Self { store, ..self }
    }

    /// How weights go to the chain given the subnet's hyperparameters: `Off` (plain),
    /// `V2` or `V4`. `auto` follows the chain's `commit_reveal_version`.
    fn resolve(&self, params: &Hyperparameters) -> Result<CommitRevealMode, WeightsError> {
        let netuid = self.netuid;
        match (self.mode, params.commit_reveal_weights_enabled) {
            (CommitRevealMode::Auto, true) if params.commit_reveal_version == 2 => {
                Ok(CommitRevealMode::V2)
            }
            (CommitRevealMode::Auto, true) => Ok(CommitRevealMode::V4),
            (CommitRevealMode::Auto | CommitRevealMode::Off, false) => Ok(CommitRevealMode::Off),
            (CommitRevealMode::Off, true) => Err(WeightsError::CommitRevealRequired { netuid }),
            (mode, false) => Err(WeightsError::CommitRevealOff { netuid, mode }),
            (mode, true) => Ok(mode),
        }
    }

    /// Reads the subnet, runs [`preflight`] and builds what [`Self::submit`] sends
    /// (`uids[i]` gets `weights[i]`, any non-negative scale): the v2 salt, or the v4
    /// ciphertext and reveal round. Submits nothing (`--dry-run` prints it).
    pub async fn plan(
        &self,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<WeightsPlan, WeightsError> {
        let (netuid, mechid) = (self.netuid, self.mechid);
        let params = self.chain.hyperparameters(netuid).await?;
        let mode = self.resolve(&params)?;
        let metagraph = self.chain.metagraph(netuid).await?;
        let n = metagraph.neurons.len();
        let processed;
        let (uids, weights) = if self.sdk_processing {
            if weights.len() != uids.len() {
                return Err(WeightsError::LengthMismatch {
                    uids: uids.len(),
                    weights: weights.len(),
                });
            }
            let mut dense = vec![0.0; n];
            for (&uid, &w) in uids.iter().zip(weights) {
                let slot = dense.get_mut(usize::from(uid));
                *slot.ok_or(WeightsError::UnknownUid { uid, n, netuid })? = w;
            }
            let min_allowed = usize::from(params.min_allowed_weights);
            processed = (
                (0..n as u16).collect::<Vec<_>>(),
                process_weights_like_sdk(&dense, min_allowed),
            );
            (&processed.0[..], &processed.1[..])
        } else {
            (uids, weights)
        };
        let weights = preflight(
            &metagraph,
            &params,
            &self.hotkey.ss58(),
            uids,
            weights,
            version_key,
            mode == CommitRevealMode::Off,
        )?;
        let (uids, values) = (weights.uids.clone(), weights.values.clone());
        let mut plan = WeightsPlan {
            mode,
            call: SubtensorCall::set_mechanism_weights(netuid, mechid, &uids, &values, version_key),
            weights,
            reveal: None,
            timelocked: None,
            version_key,
        };
        match mode {
            CommitRevealMode::V2 => {
                let reveal =
                    WeightsReveal::with_random_salt(netuid, mechid, uids, values, version_key);
                let hash = reveal.commit_hash(self.hotkey.public());
                plan.call = if mechid == 0 {
                    SubtensorCall::commit_weights(netuid, hash)
                } else {
                    SubtensorCall::commit_mechanism_weights(netuid, mechid, hash)
                };
                plan.reveal = Some(reveal);
            }
            CommitRevealMode::V4 => {
                let (commit, round) = self.timelocked(&params, uids, values, version_key).await?;
                plan.call = SubtensorCall::commit_timelocked_mechanism_weights(
                    netuid, mechid, &commit, round,
                );
                plan.timelocked = Some((commit, round));
            }
            CommitRevealMode::Off if mechid == 0 => {
                plan.call = SubtensorCall::set_weights(netuid, &uids, &values, version_key);
            }
            CommitRevealMode::Off | CommitRevealMode::Auto => {}
        }
        Ok(plan)
    }

    /// Submits a [`Self::plan`]: plain weights, the v2 commit (its reveal kept in the
    /// store first), or the v4 timelocked commit.
    pub async fn submit(&self, plan: WeightsPlan) -> Result<WeightsOutcome, WeightsError> {
        let (netuid, mechid) = (self.netuid, self.mechid);
        let hotkey = self.hotkey.as_ref();
        let WeightsPlan {
            weights,
            reveal,
            timelocked,
            version_key,
            ..
        } = plan;
        if let Some(reveal) = reveal {
            let committed =
                commit_reveal::commit(self.chain.as_ref(), hotkey, &reveal, &self.store).await?;
            tracing::info!(
                netuid,
                block = committed.receipt.block,
                reveal_from = committed.window.start(),
                reveal_until = committed.window.end(),
                "weights committed (commit-reveal v2)"
            );
            return Ok(WeightsOutcome::Committed { committed, weights });
        }
        if let Some((commit, reveal_round)) = timelocked {
            let receipt = self
                .chain
                .commit_timelocked_weights(hotkey, netuid, mechid, &commit, reveal_round)
                .await?;
            tracing::info!(
                netuid,
                block = receipt.block,
                reveal_round,
                "weights committed (commit-reveal v4, timelocked)"
            );
            return Ok(WeightsOutcome::Timelocked {
                receipt,
                reveal_round,
                weights,
            });
        }
        let receipt = self
            .chain
            .set_mechanism_weights(
                hotkey,
                netuid,
                mechid,
                &weights.uids,
                &weights.values,
                version_key,
            )
            .await?;
        Ok(WeightsOutcome::Set { receipt, weights })
    }

    /// Checks and submits weights ([`Self::plan`] then [`Self::submit`]).
    pub async fn set(
        &self,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<WeightsOutcome, WeightsError> {
        let plan = self.plan(uids, weights, version_key).await?;
        self.submit(plan).await
    }

    /// The timelocked commit of the weights and its reveal round, as the SDK makes them.
    async fn timelocked(
        &self,
        params: &Hyperparameters,
        uids: Vec<u16>,
        values: Vec<u16>,
        version_key: u64,
    ) -> Result<(Vec<u8>, u64), WeightsError> {
        let schedule = self.chain.epoch_schedule(self.netuid).await?;
        let beacon = self.chain.beacon().await?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let round = timelock::reveal_round(
            &beacon.beacon,
            &schedule,
            params.commit_reveal_period,
            beacon.block_time_ms,
            now_ms,
        )?;
        let payload = WeightsPayload {
            hotkey: self.hotkey.public().to_vec(),
            uids,
            values,
            version_key,
        };
        Ok((beacon.beacon.encrypt(round, &payload.encode())?, round))
    }

    /// Reveals the kept v2 commits whose window is open now; `None` when none are kept
    /// for this chain. A validator calls it every step and, while it runs, every
    /// [`REVEAL_POLL`], so reveals land in their windows however long a step takes, also
    /// after a restart.
    pub async fn reveal_due(&self) -> Result<Option<RevealReport>, WeightsError> {
        let _revealing = self.reveal_lock.lock().await;
        let hotkey = self.hotkey.as_ref();
        match commit_reveal::reveal_pending(self.chain.as_ref(), hotkey, self.netuid, &self.store)
            .await
        {
            Ok(report) => {
                for expired in &report.expired {
                    tracing::warn!(
                        netuid = self.netuid,
                        commit_block = expired.commit_block,
                        window_end = expired.window.end(),
                        now = report.block,
                        "reveal window missed: the commit expired unrevealed; the weights \
                         will be committed again at the next update"
                    );
                }
                for (dropped, reason) in &report.unknown {
                    tracing::warn!(
                        netuid = self.netuid,
                        commit_block = dropped.commit_block,
                        "dropping a kept reveal the chain does not hold: {reason}"
                    );
                }
                for revealed in &report.revealed {
                    tracing::info!(
                        netuid = self.netuid,
                        commit_block = revealed.pending.commit_block,
                        block = revealed.receipt.block,
                        "weights revealed (commit-reveal v2)"
                    );
                }
                Ok(Some(report))
            }
            Err(CommitRevealError::NothingPending { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether the upscaled `values` meet the chain's `max_weight_limit` check.
pub fn within_max_weight(values: &[u16], max_weight_limit: u16) -> bool {
    max_weight_limit == u16::MAX || yuma::check_vec_max_limited(values, max_weight_limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::NeuronInfo;

    const ME: &str = "me";

    fn metagraph(n: u16, permit: bool, last_update: u64) -> Metagraph {
        Metagraph {
            netuid: 3,
            block: 1000,
            neurons: (0..n)
                .map(|uid| NeuronInfo {
                    uid,
                    hotkey: if uid == 0 {
                        ME.into()
                    } else {
                        format!("hk{uid}")
                    },
                    validator_permit: permit,
                    last_update: if uid == 0 { last_update } else { 0 },
                    active: true,
                    ..NeuronInfo::default()
                })
                .collect(),
        }
    }

    fn params() -> Hyperparameters {
        Hyperparameters {
            min_allowed_weights: 2,
            weights_rate_limit: 100,
            weights_version_key: 5,
            ..Hyperparameters::default()
        }
    }

    fn check(mg: &Metagraph, uids: &[u16], w: &[f32]) -> Result<PreparedWeights, WeightsError> {
        preflight(mg, &params(), ME, uids, w, 5, true)
    }

    #[test]
    fn sdk_processing_lifts_too_few_weights_and_makes_zero_uniform() {
        assert_eq!(process_weights_like_sdk(&[0.0; 4], 2), vec![0.25; 4]);
        assert_eq!(process_weights_like_sdk(&[0.5, 0.0], 4), vec![0.5; 2]);
        let kept = process_weights_like_sdk(&[0.2, 0.8, 0.0], 2);
        assert_eq!(kept, vec![0.2, 0.8, 0.0]);
        let lifted = process_weights_like_sdk(&[1.0, 0.0, 0.0, 0.0], 3);
        assert!(lifted.iter().all(|w| *w > 0.0), "{lifted:?}");
        assert!((lifted.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(lifted[0] > 0.99, "{lifted:?}");
        // After the checks' quantisation every uid keeps a non-zero value.
        let uids: Vec<u16> = (0..4).collect();
        let (sent, values) = quantise(&uids, &lifted, u16::MAX);
        assert_eq!(sent.len(), 4, "{values:?}");
    }

    #[test]
    fn preflight_passes_good_weights_and_quantises_them() {
        let ok = check(&metagraph(4, true, 0), &[1, 2, 3], &[0.5, 1.0, 0.0]).unwrap();
        assert_eq!(
            (ok.uid, ok.uids, ok.values),
            (0, vec![1, 2], vec![32768, 65535])
        );
    }

    #[test]
    fn preflight_names_each_failure() {
        let mg = metagraph(4, true, 0);
        let err = |r: Result<PreparedWeights, WeightsError>| r.unwrap_err();
        assert!(matches!(
            err(preflight(&mg, &params(), "stranger", &[1], &[1.0], 5, true)),
            WeightsError::NotRegistered { .. }
        ));
        assert!(matches!(
            err(preflight(&mg, &params(), ME, &[1, 2], &[1.0, 1.0], 4, true)),
            WeightsError::BadVersionKey { required: 5, .. }
        ));
        let limited = err(check(&metagraph(4, true, 950), &[1, 2], &[1.0, 1.0]));
        assert!(
            matches!(limited, WeightsError::RateLimited { next: 1050, .. }),
            "{limited}"
        );
        assert!(limited.to_string().contains("wait until block 1050"));
        // Commits are rate limited by the chain, not here.
        assert!(
            preflight(
                &metagraph(4, true, 950),
                &params(),
                ME,
                &[1, 2],
                &[1.0, 1.0],
                5,
                false
            )
            .is_ok()
        );
        assert!(matches!(
            err(check(&mg, &[1, 1], &[1.0, 1.0])),
            WeightsError::DuplicateUid(1)
        ));
        assert!(matches!(
            err(check(&mg, &[1, 9], &[1.0, 1.0])),
            WeightsError::UnknownUid { uid: 9, .. }
        ));
        assert!(matches!(
            err(check(&mg, &[0, 1, 2, 3, 0], &[1.0; 5])),
            WeightsError::TooManyWeights { .. }
        ));
        assert!(matches!(
            err(check(&mg, &[1], &[1.0])),
            WeightsError::TooFewWeights { need: 2, .. }
        ));
        assert!(matches!(
            err(check(&mg, &[1, 2], &[0.0, 0.0])),
            WeightsError::NoWeights
        ));
        assert!(matches!(
            err(check(&mg, &[1, 2], &[f32::NAN, 1.0])),
            WeightsError::InvalidWeight(_)
        ));
        assert!(matches!(
            err(check(&mg, &[1, 2], &[-0.1, 0.5])),
            WeightsError::InvalidWeight(_)
        ));
        assert!(matches!(
            err(check(&mg, &[1, 2], &[1.0])),
            WeightsError::LengthMismatch { .. }
        ));
        let no_permit = metagraph(4, false, 0);
        assert!(matches!(
            err(check(&no_permit, &[1, 2], &[1.0, 1.0])),
            WeightsError::NoValidatorPermit { uid: 0, .. }
        ));
        // A self-weight alone needs no permit and no minimum count.
        assert!(check(&no_permit, &[0], &[1.0]).is_ok());
    }

    #[test]
    fn clipping_caps_the_largest_share_at_the_limit() {
        let shares = clip_shares(&[8.0, 1.0, 1.0], 0.5);
        assert!((shares[0] - 0.5).abs() < 1e-12, "{shares:?}");
        assert!((shares[1] - 0.25).abs() < 1e-12);
        // The quantised vector passes the chain's check.
        let limit = (0.5 * 65535.0) as u16;
        let (_, values) = quantise(&[0, 1, 2], &[8.0, 1.0, 1.0], limit);
        assert!(within_max_weight(&values, limit), "{values:?}");
        assert!(!within_max_weight(&[65535, 100, 100], limit));
        // A limit below 1/n makes the shares equal.
        assert_eq!(clip_shares(&[3.0, 1.0], 0.4), vec![0.5, 0.5]);
    }

    #[test]
    fn modes_parse_and_print() {
        for name in CommitRevealMode::NAMES {
            assert_eq!(name.parse::<CommitRevealMode>().unwrap().to_string(), name);
        }
        assert!(
            "v3".parse::<CommitRevealMode>()
                .unwrap_err()
                .contains("auto, off, v2, v4")
        );
    }
}

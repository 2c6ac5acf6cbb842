//! The chain: one object-safe [`Chain`] trait that validators, miners and the
//! evaluator use (as `Arc<dyn Chain>`), its row types, and typed errors.
//!
//! Two implementations: `sim::SimChain` (the simulated chain embedded in the process,
//! network `local-sim`: a SQLite file with Yuma Consensus epochs, see `yuma`) and
//! `subtensor::SubtensorChain` (a real subtensor node through subxt; network `local` is
//! one on 127.0.0.1). `weights` is the one way a neuron sets weights: it checks them as
//! the chain will, then sets them plainly or with commit-reveal (`commit_reveal` keeps
//! v2 reveals on disk until they are revealed; `timelock` encrypts v4 commits to a
//! drand-style beacon).
//!
//! [`connect::open`] opens the chain a configuration names.
//!
//! Signers are anything implementing [`Signer`] (our wallet keypairs do). Which key
//! signs what follows subtensor: the **hotkey** signs `set_weights`, `serve_axon` and
//! `set_commitment`; the **coldkey** signs `burned_register`, `add_stake`,
//! `remove_stake` and `transfer`.

pub mod commit_reveal;
pub mod connect;
pub mod sim;
pub mod subtensor;
pub mod timelock;
pub mod weights;
pub mod yuma;

use std::net::IpAddr;
use std::ops::RangeInclusive;

use async_trait::async_trait;
use thiserror::Error;

/// Rao per TAO (1 TAO = 10^9 rao).
pub const RAO_PER_TAO: u64 = 1_000_000_000;

/// Network name of the embedded local chain.
pub const LOCAL_SIM: &str = "local-sim";

/// The chain that `--subtensor.network` and `--subtensor.chain_endpoint` select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// The embedded local chain (`local-sim`), a SQLite file.
    LocalSim,
    /// A subtensor node.
    Subtensor {
        /// The network as named (`finney`, `test`, `local`, a URL, ...).
        name: String,
        /// The WebSocket URL to reach it.
        endpoint: String,
    },
}

impl Network {
    /// `local-sim` without an endpoint is the embedded chain; anything else is subtensor,
    /// at `endpoint` when given (it overrides the network's own URL; with the default
    /// name `local-sim` it also names the network), else at the URL of the network name
    /// (see [`subtensor::NETWORKS`]). An unknown name is an
    /// [`ChainError::InvalidInput`] naming every accepted value.
    pub fn select(network: &str, endpoint: Option<&str>) -> Result<Self, ChainError> {
        match (network, endpoint) {
            (LOCAL_SIM, None) => Ok(Self::LocalSim),
            (_, Some(url)) => Ok(Self::Subtensor {
                // The default network name says nothing about a node given by URL.
                name: if network == LOCAL_SIM { url } else { network }.to_string(),
                endpoint: subtensor::resolve_endpoint(url)?,
            }),
            (_, None) => match subtensor::resolve_endpoint(network) {
                Ok(endpoint) => Ok(Self::Subtensor {
                    name: network.to_string(),
                    endpoint,
                }),
                Err(_) => Err(ChainError::InvalidInput(format!(
                    "unknown network {network:?}: use {LOCAL_SIM} (the embedded chain), {}, or a \
                     ws:// / wss:// URL",
                    subtensor::NETWORKS.map(|(name, _)| name).join(", ")
                ))),
            },
        }
    }
}

/// A key that can sign chain transactions. The wallet's keypairs implement it.
pub trait Signer: Send + Sync {
    /// SS58 address (format 42) of the public key; the account id on chain.
    fn ss58(&self) -> String;
    /// The 32-byte sr25519 public key.
    fn public(&self) -> [u8; 32];
    /// An sr25519 signature (signing context `substrate`) over `message`; fails for a
    /// key without its secret.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], ChainError>;
}

/// The operations a neuron needs from a chain. Object safe; use as `Arc<dyn Chain>`.
///
/// Every write returns once the transaction is included (the local chain commits
/// synchronously; subtensor waits for inclusion or finalization per its config, with a
/// timeout that surfaces as [`ChainError::Timeout`]).
#[async_trait]
pub trait Chain: Send + Sync {
    /// Human-readable network name (`local-sim`, `finney`, a URL, ...).
    fn network(&self) -> String;

    /// The current block height.
    async fn current_block(&self) -> Result<u64, ChainError>;

    /// All neurons of subnet `netuid`, ordered by uid.
    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError>;

    /// The subnet's hyperparameters.
    async fn hyperparameters(&self, netuid: u16) -> Result<Hyperparameters, ChainError>;

    /// Sets `hotkey`'s weights on `netuid`: `uids[i]` gets `weights[i]` (u16, as from
    /// [`normalize_weights`]). Signed by the hotkey.
    async fn set_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<TxReceipt, ChainError>;

    /// Publishes `hotkey`'s axon endpoint on `netuid`. Signed by the hotkey.
    async fn serve_axon(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        axon: &AxonServe,
    ) -> Result<TxReceipt, ChainError>;

    /// Registers `hotkey` (SS58) on `netuid` by burning the registration cost from the
    /// coldkey's balance; returns the uid it got. Signed by the coldkey.
    async fn burned_register(
        &self,
        coldkey: &dyn Signer,
        netuid: u16,
        hotkey: &str,
    ) -> Result<u16, ChainError>;

    /// Moves `amount` rao from the coldkey's balance to stake on `hotkey` (SS58) in
    /// `netuid`. Signed by the coldkey.
    async fn add_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError>;

    /// Moves `amount` of stake on `hotkey` (SS58) in `netuid` back to the coldkey's
    /// balance. Signed by the coldkey.
    async fn remove_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError>;

    /// Transfers `amount` rao from the coldkey to `dest` (SS58). Signed by the coldkey.
    async fn transfer(
        &self,
        coldkey: &dyn Signer,
        dest: &str,
        amount: u64,
    ) -> Result<TxReceipt, ChainError>;

    /// Publishes `data` (at most [`MAX_COMMITMENT_BYTES`]) as `hotkey`'s commitment on
    /// `netuid`, replacing any earlier one. Signed by the hotkey.
    async fn set_commitment(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<TxReceipt, ChainError>;

    /// The commitments of the registered neurons of `netuid`, ordered by uid.
    async fn commitments(&self, netuid: u16) -> Result<Vec<Commitment>, ChainError>;

    /// Sets weights of mechanism `mechid` of `netuid` (`set_mechanism_weights`; mechanism
    /// 0 is plain `set_weights`). Signed by the hotkey.
    async fn set_mechanism_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<TxReceipt, ChainError> {
        if mechid != 0 {
            return Err(unsupported(self, "mechanisms other than 0"));
        }
        self.set_weights(hotkey, netuid, uids, weights, version_key)
            .await
    }

    /// The epoch state of `netuid` now: what commit-reveal windows and timelock reveal
    /// rounds are computed from.
    async fn epoch_schedule(&self, netuid: u16) -> Result<timelock::EpochSchedule, ChainError> {
        let _ = netuid;
        Err(unsupported(self, "commit-reveal"))
    }

    /// The beacon this chain reveals timelocked (v4) commits with, and its block time.
    async fn beacon(&self) -> Result<ChainBeacon, ChainError> {
        Err(unsupported(self, "timelocked commits"))
    }

    /// The blocks in which the chain accepts the reveal of a commit-reveal v2 commit
    /// included at `commit_block`, from the subnet's hyperparameters and epoch schedule
    /// read before committing (default: the epoch `reveal_period` epochs after the
    /// commit's, on `schedule`).
    fn reveal_window(
        &self,
        netuid: u16,
        params: &Hyperparameters,
        schedule: &timelock::EpochSchedule,
        commit_block: u64,
    ) -> RangeInclusive<u64> {
        let _ = netuid;
        schedule.window_of(commit_block, params.commit_reveal_period)
    }

    /// Commits the hash of weights (commit-reveal v2, `commit_weights` or
    /// `commit_mechanism_weights`). Signed by the hotkey.
    async fn commit_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit_hash: [u8; 32],
    ) -> Result<TxReceipt, ChainError> {
        let _ = (hotkey, netuid, mechid, commit_hash);
        Err(unsupported(self, "commit-reveal v2"))
    }

    /// Reveals weights committed with [`Chain::commit_weights`]. Signed by the hotkey.
    async fn reveal_weights(
        &self,
        hotkey: &dyn Signer,
        reveal: &subtensor::WeightsReveal,
    ) -> Result<TxReceipt, ChainError> {
        let _ = (hotkey, reveal);
        Err(unsupported(self, "commit-reveal v2"))
    }

    /// Commits timelock-encrypted weights (commit-reveal v4,
    /// `commit_timelocked_mechanism_weights` with `commit_reveal_version` 4); the chain
    /// reveals them itself at `reveal_round` of its beacon. Signed by the hotkey.
    async fn commit_timelocked_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit: &[u8],
        reveal_round: u64,
    ) -> Result<TxReceipt, ChainError> {
        let _ = (hotkey, netuid, mechid, commit, reveal_round);
        Err(unsupported(self, "timelocked commits"))
    }

    /// The commits of `netuid` not yet revealed, per hotkey (where the chain lists them).
    async fn pending_commits(&self, netuid: u16) -> Result<Vec<PendingCommit>, ChainError> {
        let _ = netuid;
        Ok(Vec::new())
    }
}

fn unsupported<C: Chain + ?Sized>(chain: &C, what: &str) -> ChainError {
    ChainError::Rejected {
        error: "Unsupported".into(),
        reason: format!("{} does not support {what}", chain.network()),
    }
}

/// The beacon of a chain's timelocked commits and the chain's block time, the inputs of
/// the reveal round ([`timelock::reveal_round`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBeacon {
    /// The beacon.
    pub beacon: timelock::Beacon,
    /// Time per block, in milliseconds.
    pub block_time_ms: u64,
}

/// A weights commit waiting on chain for its reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommit {
    /// Committing hotkey SS58.
    pub hotkey: String,
    /// Block that included the commit.
    pub commit_block: u64,
    /// `2` for a hash commit (revealed by the hotkey), `4` for a timelocked one.
    pub version: u8,
    /// Beacon round of a timelocked commit (0 for v2).
    pub reveal_round: u64,
}

/// Largest commitment payload: one `Raw` field of the Commitments pallet (128 bytes).
pub const MAX_COMMITMENT_BYTES: usize = 128;

/// Where a transaction landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxReceipt {
    /// Block that includes the transaction.
    pub block: u64,
    /// Extrinsic hash (hex with `0x`), where the chain has one.
    pub hash: Option<String>,
}

/// An axon endpoint as served on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxonServe {
    /// Software version (`major*10^6 + minor*10^3 + patch` in the SDK).
    pub version: u32,
    /// IP address (v4 or v6).
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
    /// Protocol byte; the SDK sends 4.
    pub protocol: u8,
}

/// One neuron (uid) of a subnet. u16 scores are the chain's raw values: divide by
/// 65535 for a proportion ([`proportion`]). The default is an empty row (uid 0, no keys,
/// nothing served), for building rows field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeuronInfo {
    /// Position in the subnet.
    pub uid: u16,
    /// Hotkey SS58.
    pub hotkey: String,
    /// Owning coldkey SS58.
    pub coldkey: String,
    /// Stake on the hotkey in this subnet (rao).
    pub stake: u64,
    /// Trust (u16; always 0 at subtensor HEAD, kept for older chains).
    pub trust: u16,
    /// Validator trust (u16): sum of the validator's clipped weights.
    pub validator_trust: u16,
    /// Consensus weight (u16): stake-weighted median of the weights it received.
    pub consensus: u16,
    /// Incentive (u16): the miner's share.
    pub incentive: u16,
    /// Dividends (u16): the validator's share.
    pub dividends: u16,
    /// Emission of the last epoch (rao).
    pub emission: u64,
    /// Whether it may set non-self weights.
    pub validator_permit: bool,
    /// Block of its last weights update.
    pub last_update: u64,
    /// Block it registered at.
    pub block_at_registration: u64,
    /// Active in the last epoch (set weights within the activity cutoff).
    pub active: bool,
    /// Served axon, `None` when not serving.
    pub axon: Option<AxonServe>,
    /// Block the axon was served at (0 when not serving).
    pub axon_block: u64,
}

/// A subnet's neurons at a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metagraph {
    /// Subnet id.
    pub netuid: u16,
    /// Block the metagraph was read at.
    pub block: u64,
    /// Neurons ordered by uid (`neurons[i].uid == i`).
    pub neurons: Vec<NeuronInfo>,
}

impl Metagraph {
    /// The uid of `hotkey` (SS58), if registered.
    pub fn uid_of(&self, hotkey: &str) -> Option<u16> {
        self.neurons
            .iter()
            .find(|n| n.hotkey == hotkey)
            .map(|n| n.uid)
    }
}

/// A u16 chain score as a proportion in [0, 1] (value / 65535), as the SDK shows it.
pub fn proportion(value: u16) -> f64 {
    f64::from(value) / f64::from(u16::MAX)
}

/// Subnet hyperparameters (names as in subtensor's `SubnetHyperparams`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hyperparameters {
    /// Blocks between epochs.
    pub tempo: u16,
    /// Blocks after registration during which a uid cannot be pruned.
    pub immunity_period: u16,
    /// Subnet capacity.
    pub max_allowed_uids: u16,
    /// Minimum number of weights per `set_weights` (clamped to the subnet size).
    pub min_allowed_weights: u16,
    /// Maximum normalised weight as u16 (65535 = no limit).
    pub max_weight_limit: u16,
    /// Blocks between two weight updates of one hotkey.
    pub weights_rate_limit: u64,
    /// Consensus majority as u16 (32767 ≈ 0.5).
    pub kappa: u16,
    /// Bonds EMA factor in millionths (900000 → α = 0.1).
    pub bonds_moving_average: u64,
    /// Bonds penalty as u16 (65535 = bonds follow clipped weights).
    pub bonds_penalty: u16,
    /// Blocks after the last weights update within which a validator counts as active.
    pub activity_cutoff: u16,
    /// Validator permits per epoch (top-k by stake).
    pub max_allowed_validators: u16,
    /// Minimum `version_key` for `set_weights` (0 = any).
    pub weights_version_key: u64,
    /// Whether weights must go through commit-reveal (then `set_weights` is refused).
    pub commit_reveal_weights_enabled: bool,
    /// Epochs between a commit and its reveal (`RevealPeriodEpochs`).
    #[serde(default = "default_reveal_period")]
    pub commit_reveal_period: u64,
    /// The commit-reveal version the chain expects (`CommitRevealWeightsVersion`): 4 for
    /// timelocked commits (subtensor today), 2 for hash commits revealed by the hotkey.
    /// `--neuron.commit_reveal auto` follows it.
    #[serde(default = "default_commit_reveal_version")]
    pub commit_reveal_version: u16,
    /// Registration burn cost (rao).
    pub burn: u64,
    /// Blocks between two `serve_axon` of one hotkey.
    pub serving_rate_limit: u64,
}

impl Default for Hyperparameters {
    /// subtensor HEAD defaults (see docs/chain.md), except commit-reveal off so plain
    /// `set_weights` works on a fresh local subnet.
    fn default() -> Self {
        Self {
            tempo: 360,
            immunity_period: 4096,
            max_allowed_uids: 256,
            min_allowed_weights: 1024,
            max_weight_limit: u16::MAX,
            weights_rate_limit: 100,
            kappa: 32767,
            bonds_moving_average: 900_000,
            bonds_penalty: u16::MAX,
            activity_cutoff: 5000,
            max_allowed_validators: 128,
            weights_version_key: 0,
            commit_reveal_weights_enabled: false,
            commit_reveal_period: default_reveal_period(),
            commit_reveal_version: default_commit_reveal_version(),
            burn: RAO_PER_TAO,
            serving_rate_limit: 50,
        }
    }
}

fn default_reveal_period() -> u64 {
    1
}

fn default_commit_reveal_version() -> u16 {
    subtensor::COMMIT_REVEAL_VERSION
}

/// A neuron's published commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    /// Uid of the committing hotkey.
    pub uid: u16,
    /// Hotkey SS58.
    pub hotkey: String,
    /// Committed bytes.
    pub data: Vec<u8>,
    /// Block the commitment was made at.
    pub block: u64,
}

/// Errors from a chain. Refusals by the chain carry the chain's error name (`error`,
/// e.g. `SettingWeightsTooFast`) and its reason.
#[derive(Debug, Error)]
pub enum ChainError {
    /// A rate limit (weights, serving, registrations, staking) refused the call.
    #[error("rate limited ({error}): {reason}")]
    RateLimited { error: String, reason: String },
    /// The hotkey is not registered where the call needs it.
    #[error("not registered ({error}): {reason}")]
    NotRegistered { error: String, reason: String },
    /// The hotkey is already registered on the subnet.
    #[error("already registered ({error}): {reason}")]
    AlreadyRegistered { error: String, reason: String },
    /// Non-self weights from a uid without a validator permit.
    #[error("no validator permit ({error}): {reason}")]
    NoValidatorPermit { error: String, reason: String },
    /// `version_key` below the subnet's weights version key.
    #[error("bad version key ({error}): {reason}")]
    BadVersionKey { error: String, reason: String },
    /// The weight vectors break a chain rule (lengths, duplicates, unknown uids, ...).
    #[error("invalid weights ({error}): {reason}")]
    InvalidWeights { error: String, reason: String },
    /// The subnet requires commit-reveal, so plain `set_weights` is refused.
    #[error("commit-reveal is enabled ({error}): {reason}")]
    CommitRevealEnabled { error: String, reason: String },
    /// Not enough balance or stake for the operation.
    #[error("insufficient funds ({error}): {reason}")]
    InsufficientFunds { error: String, reason: String },
    /// The subnet does not exist.
    #[error("no such subnet ({error}): {reason}")]
    SubnetNotFound { error: String, reason: String },
    /// Any other refusal by the chain.
    #[error("rejected by the chain ({error}): {reason}")]
    Rejected { error: String, reason: String },
    /// The transaction or request did not complete in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// The chain could not be reached.
    #[error("connection: {0}")]
    Connection(String),
    /// Local state could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
    /// Bad arguments caught before reaching the chain (addresses, sizes, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A chain response could not be decoded.
    #[error("decode: {0}")]
    Decode(String),
}

impl ChainError {
    /// Maps a subtensor dispatch error (its name, e.g. `SettingWeightsTooFast`, as in
    /// `pallets/subtensor/src/macros/errors.rs`) and reason to the typed variant.
    pub fn from_dispatch(error: &str, reason: impl Into<String>) -> Self {
        let (error, reason) = (error.to_string(), reason.into());
        match error.as_str() {
            "SettingWeightsTooFast"
            | "ServingRateLimitExceeded"
            | "TooManyRegistrationsThisBlock"
            | "TooManyRegistrationsThisInterval"
            | "StakingRateLimitExceeded"
            | "TxRateLimitExceeded"
            | "CommittingWeightsTooFast" => Self::RateLimited { error, reason },
            "HotKeyNotRegisteredInSubNet"
            | "HotKeyNotRegisteredInNetwork"
            | "HotKeyAccountNotExists" => Self::NotRegistered { error, reason },
            "HotKeyAlreadyRegisteredInSubNet" => Self::AlreadyRegistered { error, reason },
            "NeuronNoValidatorPermit" => Self::NoValidatorPermit { error, reason },
            "IncorrectWeightVersionKey" => Self::BadVersionKey { error, reason },
            "WeightVecNotEqualSize"
            | "DuplicateUids"
            | "UidVecContainInvalidOne"
            | "WeightVecLengthIsLow"
            | "UidsLengthExceedUidsInSubNet"
            | "MaxWeightExceeded"
            | "CanNotSetRootNetworkWeights" => Self::InvalidWeights { error, reason },
            "CommitRevealEnabled" => Self::CommitRevealEnabled { error, reason },
            "NotEnoughBalanceToStake"
            | "NotEnoughStake"
            | "NotEnoughStakeToWithdraw"
            | "NotEnoughStakeToSetWeights"
            | "InsufficientBalance"
            | "BalanceWithdrawalError"
            | "AmountTooLow" => Self::InsufficientFunds { error, reason },
            "SubnetNotExists" | "MechanismDoesNotExist" => Self::SubnetNotFound { error, reason },
            _ => Self::Rejected { error, reason },
        }
    }

    /// The chain's error name, for refusals by the chain.
    pub fn chain_error(&self) -> Option<&str> {
        match self {
            Self::RateLimited { error, .. }
            | Self::NotRegistered { error, .. }
            | Self::AlreadyRegistered { error, .. }
            | Self::NoValidatorPermit { error, .. }
            | Self::BadVersionKey { error, .. }
            | Self::InvalidWeights { error, .. }
            | Self::CommitRevealEnabled { error, .. }
            | Self::InsufficientFunds { error, .. }
            | Self::SubnetNotFound { error, .. }
            | Self::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The SDK's `convert_weights_and_uids_for_emit`: max-normalises float weights to u16
/// (`round(w / max(w) * 65535)`, Python rounding: half to even) and drops zeros.
///
/// Returns `(uids, weights)` ready for [`Chain::set_weights`]. All-zero weights give two
/// empty vectors. Negative or non-finite weights and unequal lengths are errors.
pub fn normalize_weights(
    uids: &[u16],
    weights: &[f32],
) -> Result<(Vec<u16>, Vec<u16>), ChainError> {
    if uids.len() != weights.len() {
        return Err(ChainError::InvalidInput(format!(
            "{} uids but {} weights",
            uids.len(),
            weights.len()
        )));
    }
    if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(ChainError::InvalidInput(format!(
            "weights must be finite and non-negative, got {bad}"
        )));
    }
    let weights: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
    Ok(max_upscale(uids, &weights))
}

/// The quantisation step of [`normalize_weights`] on checked, non-negative weights:
/// `round(w / max(w) * 65535)` with Python rounding, zeros dropped; all zero gives two
/// empty vectors.
pub(crate) fn max_upscale(uids: &[u16], weights: &[f64]) -> (Vec<u16>, Vec<u16>) {
    let max = weights.iter().copied().fold(0.0, f64::max);
    if max == 0.0 {
        return (Vec::new(), Vec::new());
    }
    let mut out = (
        Vec::with_capacity(uids.len()),
        Vec::with_capacity(uids.len()),
    );
    for (&uid, &w) in uids.iter().zip(weights) {
        let value = (w / max * f64::from(u16::MAX)).round_ties_even() as u16;
        if value != 0 {
            out.0.push(uid);
            out.1.push(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_weights_max_upscales_and_drops_zeros() {
        let (uids, weights) = normalize_weights(&[0, 1, 2, 3], &[0.5, 1.0, 0.0, 0.25]).unwrap();
        assert_eq!(uids, vec![0, 1, 3]);
        assert_eq!(weights, vec![32768, 65535, 16384]);
    }

    #[test]
    fn normalize_weights_rounds_half_to_even_like_python() {
        // 1/131070 * 65535 = 0.5 exactly → Python round() gives 0, so the uid is dropped.
        let (uids, weights) = normalize_weights(&[7, 8], &[1.0, 131_070.0]).unwrap();
        assert_eq!(uids, vec![8]);
        assert_eq!(weights, vec![65535]);
        // 3/131070 * 65535 = 1.5 → 2.
        let (_, weights) = normalize_weights(&[7, 8], &[3.0, 131_070.0]).unwrap();
        assert_eq!(weights, vec![2, 65535]);
    }

    #[test]
    fn normalize_weights_all_zero_is_empty() {
        assert_eq!(
            normalize_weights(&[1, 2], &[0.0, 0.0]).unwrap(),
            (vec![], vec![])
        );
    }

    #[test]
    fn normalize_weights_rejects_bad_input() {
        assert!(matches!(
            normalize_weights(&[1], &[0.5, 0.5]),
            Err(ChainError::InvalidInput(_))
        ));
        assert!(matches!(
            normalize_weights(&[1, 2], &[-0.1, 0.5]),
            Err(ChainError::InvalidInput(_))
        ));
        assert!(matches!(
            normalize_weights(&[1, 2], &[f32::NAN, 0.5]),
            Err(ChainError::InvalidInput(_))
        ));
    }

    #[test]
    fn networks_select_the_local_chain_or_a_subtensor_endpoint() {
        assert_eq!(Network::select(LOCAL_SIM, None).unwrap(), Network::LocalSim);
        assert_eq!(
            Network::select("finney", None).unwrap(),
            Network::Subtensor {
                name: "finney".into(),
                endpoint: "wss://entrypoint-finney.opentensor.ai:443".into()
            }
        );
        // An explicit endpoint wins over the name, even over local-sim (then it names
        // the network too).
        for (name, shown) in [("finney", "finney"), (LOCAL_SIM, "ws://10.0.0.1:9944")] {
            assert_eq!(
                Network::select(name, Some("ws://10.0.0.1:9944")).unwrap(),
                Network::Subtensor {
                    name: shown.into(),
                    endpoint: "ws://10.0.0.1:9944".into()
                }
            );
        }
        let err = Network::select("mainnet", None).unwrap_err().to_string();
        for word in [
            "\"mainnet\"",
            LOCAL_SIM,
            "finney",
            "test",
            "archive",
            "local",
            "ws://",
        ] {
            assert!(err.contains(word), "{word}: {err}");
        }
        assert!(matches!(
            Network::select("finney", Some("http://x:9944")),
            Err(ChainError::InvalidInput(_))
        ));
    }

    #[test]
    fn dispatch_errors_map_to_typed_variants() {
        assert!(matches!(
            ChainError::from_dispatch("SettingWeightsTooFast", "x"),
            ChainError::RateLimited { .. }
        ));
        assert!(matches!(
            ChainError::from_dispatch("IncorrectWeightVersionKey", "x"),
            ChainError::BadVersionKey { .. }
        ));
        let other = ChainError::from_dispatch("SomethingNew", "because");
        assert_eq!(other.chain_error(), Some("SomethingNew"));
        assert!(other.to_string().contains("because"));
    }
}

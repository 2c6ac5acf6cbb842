//! A real subtensor node through subxt: [`SubtensorChain`] implements [`Chain`].
//!
//! Everything goes through subxt's dynamic API with the runtime metadata the node serves
//! at connect time (and again after a runtime upgrade, keyed by spec version), so a
//! runtime upgrade needs no rebuild. The metagraph comes from
//! `NeuronInfoRuntimeApi_get_neurons_lite` (both the current typed result and the early
//! 2024 `Vec<u8>`-wrapped one, see [`neurons`]); hyperparameters, registration blocks
//! and commitments from storage. Extrinsics are built in [`calls`] and signed by the key
//! the chain expects (hotkey for weights, serving and commitments; coldkey for
//! registration, staking and transfers).
//!
//! By concern: `connection` (connecting, reconnecting, submitting and waiting),
//! `storage` (storage and runtime-API reads), `value` (dynamic-value and account
//! helpers); this file holds [`SubtensorChain`]'s API and its [`Chain`] implementation.
//!
//! When the node goes away, the failing call returns [`ChainError::Connection`] and the
//! next call reconnects, with exponential backoff between failed attempts, so a
//! validator keeps scoring meanwhile and sets weights once the node is back.

pub mod calls;
mod connection;
pub mod neurons;
mod storage;
mod value;

use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use subxt::{OnlineClient, SubstrateConfig};
use tokio::sync::Mutex;

use crate::chain::timelock::{Beacon, EpochSchedule};
use crate::chain::{
    AxonServe, Chain, ChainBeacon, ChainError, Commitment, Hyperparameters, Metagraph, Signer,
    TxReceipt,
};
pub use calls::{
    COMMIT_REVEAL_VERSION, SignerRole, SubtensorCall, WeightsReveal, epoch_index, mechanism_index,
    reveal_window, weights_commit_hash,
};
use connection::ConnState;
pub use connection::{SubtensorOptions, WaitFor};
pub use neurons::{NeuronInfoLite, NeuronsLiteForm, decode_neurons_lite};
pub use value::{parse_account, ss58};

/// Subtensor's block time.
pub const BLOCK_TIME: Duration = Duration::from_secs(12);

/// The subxt client type used throughout.
type Api = OnlineClient<SubstrateConfig>;
/// A subxt client pinned at one block.
type ApiAt = subxt::client::OnlineClientAtBlock<SubstrateConfig>;

/// Named networks and their endpoints (bittensor SDK values).
pub const NETWORKS: [(&str, &str); 4] = [
    ("finney", "wss://entrypoint-finney.opentensor.ai:443"),
    ("test", "wss://test.finney.opentensor.ai:443"),
    ("archive", "wss://archive.chain.opentensor.ai:443"),
    ("local", "ws://127.0.0.1:9944"),
];

/// The WebSocket endpoint for a network name (`finney`, `test`, `archive`, `local`) or a
/// `ws://`/`wss://` URL given as is.
pub fn resolve_endpoint(network: &str) -> Result<String, ChainError> {
    if let Some((_, url)) = NETWORKS.iter().find(|(name, _)| *name == network) {
        return Ok((*url).to_string());
    }
    if network.starts_with("ws://") || network.starts_with("wss://") {
        return Ok(network.to_string());
    }
    Err(ChainError::InvalidInput(format!(
        "unknown subtensor network {network:?}: use finney, test, archive, local or a ws:// / wss:// URL"
    )))
}

/// A subtensor node reached over WebSocket JSON-RPC with subxt.
pub struct SubtensorChain {
    network: String,
    endpoint: String,
    options: SubtensorOptions,
    state: Mutex<ConnState>,
}

impl std::fmt::Debug for SubtensorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubtensorChain")
            .field("network", &self.network)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl SubtensorChain {
    /// The WebSocket URL in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The runtime's spec version at the latest finalized block.
    pub async fn spec_version(&self) -> Result<u32, ChainError> {
        self.read(|at| async move { Ok(at.spec_version()) }).await
    }

    /// The SCALE call data of `call` for the runtime the node runs now (what
    /// `--dry-run` prints).
    pub async fn call_data(&self, call: &SubtensorCall) -> Result<Vec<u8>, ChainError> {
        self.read(move |at| {
            let call = call.clone();
            async move { call.call_data(&at.metadata()) }
        })
        .await
    }

    /// Whether `netuid` requires commit-reveal for weights (`CommitRevealWeightsEnabled`).
    pub async fn commit_reveal_enabled(&self, netuid: u16) -> Result<bool, ChainError> {
        self.read(move |at| storage::read_commit_reveal_enabled(at, netuid))
            .await
    }
}

#[async_trait]
impl Chain for SubtensorChain {
    fn network(&self) -> String {
        self.network.clone()
    }

    async fn current_block(&self) -> Result<u64, ChainError> {
        self.read(|at| async move { Ok(at.block_number()) }).await
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.read(move |at| storage::read_metagraph(at, netuid))
            .await
    }

    async fn hyperparameters(&self, netuid: u16) -> Result<Hyperparameters, ChainError> {
        self.read(move |at| storage::read_hyperparameters(at, netuid))
            .await
    }

    async fn set_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<TxReceipt, ChainError> {
        if uids.len() != weights.len() {
            return Err(ChainError::InvalidInput(format!(
                "{} uids but {} weights",
                uids.len(),
                weights.len()
            )));
        }
        if self.commit_reveal_enabled(netuid).await? {
            return Err(ChainError::CommitRevealEnabled {
                error: "CommitRevealWeightsEnabled".into(),
                reason: format!(
                    "subnet {netuid} requires commit-reveal, so the chain refuses set_weights; \
                     set weights through chain::weights (--neuron.commit_reveal auto, v2 or v4)"
                ),
            });
        }
        let call = SubtensorCall::set_weights(netuid, uids, weights, version_key);
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    async fn serve_axon(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        axon: &AxonServe,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::serve_axon(netuid, axon);
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    async fn burned_register(
        &self,
        coldkey: &dyn Signer,
        netuid: u16,
        hotkey: &str,
    ) -> Result<u16, ChainError> {
        let hotkey_id = parse_account(hotkey)?;
        let call = SubtensorCall::burned_register(netuid, hotkey_id);
        let done = self.submit(&call, coldkey).await?;
        storage::read_uid(&done.at, netuid, hotkey_id)
            .await?
            .ok_or_else(|| {
                ChainError::Decode(format!(
                    "registration of {hotkey} succeeded but Uids({netuid}, hotkey) is empty at block {}",
                    done.receipt.block
                ))
            })
    }

    async fn add_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::add_stake(parse_account(hotkey)?, netuid, amount);
        Ok(self.submit(&call, coldkey).await?.receipt)
    }

    async fn remove_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::remove_stake(parse_account(hotkey)?, netuid, amount);
        Ok(self.submit(&call, coldkey).await?.receipt)
    }

    async fn transfer(
        &self,
        coldkey: &dyn Signer,
        dest: &str,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::transfer(parse_account(dest)?, amount);
        Ok(self.submit(&call, coldkey).await?.receipt)
    }

    async fn set_commitment(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::set_commitment(netuid, data)?;
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<Commitment>, ChainError> {
        self.read(move |at| storage::read_commitments(at, netuid))
            .await
    }

    async fn set_mechanism_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<TxReceipt, ChainError> {
        if mechid == 0 {
            return self
                .set_weights(hotkey, netuid, uids, weights, version_key)
                .await;
        }
        let call = SubtensorCall::set_mechanism_weights(netuid, mechid, uids, weights, version_key);
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    async fn epoch_schedule(&self, netuid: u16) -> Result<EpochSchedule, ChainError> {
        self.read(move |at| storage::read_epoch_schedule(at, netuid))
            .await
    }

    async fn beacon(&self) -> Result<ChainBeacon, ChainError> {
        Ok(ChainBeacon {
            beacon: Beacon::quicknet(),
            block_time_ms: BLOCK_TIME.as_millis() as u64,
        })
    }

    /// Subtensor's commit-reveal v2 window: the epoch `get_epoch_index(commit_block) +
    /// RevealPeriodEpochs` ([`calls::reveal_window`]).
    fn reveal_window(
        &self,
        netuid: u16,
        params: &Hyperparameters,
        _schedule: &EpochSchedule,
        commit_block: u64,
    ) -> RangeInclusive<u64> {
        calls::reveal_window(
            netuid,
            u64::from(params.tempo),
            params.commit_reveal_period,
            commit_block,
        )
    }

    async fn commit_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit_hash: [u8; 32],
    ) -> Result<TxReceipt, ChainError> {
        let call = if mechid == 0 {
            SubtensorCall::commit_weights(netuid, commit_hash)
        } else {
            SubtensorCall::commit_mechanism_weights(netuid, mechid, commit_hash)
        };
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    async fn reveal_weights(
        &self,
        hotkey: &dyn Signer,
        reveal: &WeightsReveal,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::reveal_weights(reveal);
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    async fn commit_timelocked_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit: &[u8],
        reveal_round: u64,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::commit_timelocked_mechanism_weights(
            netuid,
            mechid,
            commit,
            reveal_round,
        );
        Ok(self.submit(&call, hotkey).await?.receipt)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_by_name_or_url() {
        assert_eq!(resolve_endpoint("local").unwrap(), "ws://127.0.0.1:9944");
        assert_eq!(
            resolve_endpoint("finney").unwrap(),
            "wss://entrypoint-finney.opentensor.ai:443"
        );
        assert_eq!(
            resolve_endpoint("ws://10.0.0.1:9944").unwrap(),
            "ws://10.0.0.1:9944"
        );
        let err = resolve_endpoint("mainnet").unwrap_err();
        assert!(matches!(err, ChainError::InvalidInput(_)), "{err}");
        assert!(matches!(
            resolve_endpoint("http://x:9944"),
            Err(ChainError::InvalidInput(_))
        ));
    }
}

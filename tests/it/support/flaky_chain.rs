//! The one fault-injecting chain for tests: [`FlakyChain`] wraps any [`Chain`] and
//! fails reads and/or weight updates (plain weights, commits and reveals) with
//! [`ChainError::Connection`] while a switch is set, the way a node that went away does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use std::ops::RangeInclusive;

use neuron::chain::subtensor::WeightsReveal;
use neuron::chain::timelock::EpochSchedule;
use neuron::chain::{
    AxonServe, Chain, ChainBeacon, ChainError, Commitment, Hyperparameters, Metagraph,
    PendingCommit, Signer, TxReceipt,
};

/// A chain behind two switches that make reads and/or `set_weights` fail as a
/// disconnected node does; every other call goes straight through.
pub struct FlakyChain {
    inner: Arc<dyn Chain>,
    /// When set, `current_block`, `metagraph`, `hyperparameters`, `epoch_schedule`,
    /// `beacon` and `pending_commits` fail.
    pub reads_down: AtomicBool,
    /// When set, `set_weights`, `commit_weights`, `reveal_weights` and
    /// `commit_timelocked_weights` fail.
    pub writes_down: AtomicBool,
}

impl FlakyChain {
    /// `inner` with both switches off.
    pub fn new(inner: Arc<dyn Chain>) -> Self {
        Self {
            inner,
            reads_down: AtomicBool::new(false),
            writes_down: AtomicBool::new(false),
        }
    }

    fn check(&self, down: &AtomicBool) -> Result<(), ChainError> {
        if down.load(Ordering::SeqCst) {
            Err(ChainError::Connection("node unreachable".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Chain for FlakyChain {
    fn network(&self) -> String {
        self.inner.network()
    }
    async fn current_block(&self) -> Result<u64, ChainError> {
        self.check(&self.reads_down)?;
        self.inner.current_block().await
    }
    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.check(&self.reads_down)?;
        self.inner.metagraph(netuid).await
    }
    async fn hyperparameters(&self, netuid: u16) -> Result<Hyperparameters, ChainError> {
        self.check(&self.reads_down)?;
        self.inner.hyperparameters(netuid).await
    }
    async fn set_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> Result<TxReceipt, ChainError> {
        self.check(&self.writes_down)?;
        self.inner
            .set_weights(hotkey, netuid, uids, weights, version_key)
            .await
    }
    async fn serve_axon(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        axon: &AxonServe,
    ) -> Result<TxReceipt, ChainError> {
        self.inner.serve_axon(hotkey, netuid, axon).await
    }
    async fn burned_register(
        &self,
        coldkey: &dyn Signer,
        netuid: u16,
        hotkey: &str,
    ) -> Result<u16, ChainError> {
        self.inner.burned_register(coldkey, netuid, hotkey).await
    }
    async fn add_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        self.inner.add_stake(coldkey, hotkey, netuid, amount).await
    }
    async fn remove_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        self.inner
            .remove_stake(coldkey, hotkey, netuid, amount)
            .await
    }
    async fn transfer(
        &self,
        coldkey: &dyn Signer,
        dest: &str,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        self.inner.transfer(coldkey, dest, amount).await
    }
    async fn set_commitment(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<TxReceipt, ChainError> {
        self.inner.set_commitment(hotkey, netuid, data).await
    }
    async fn commitments(&self, netuid: u16) -> Result<Vec<Commitment>, ChainError> {
        self.inner.commitments(netuid).await
    }
    async fn epoch_schedule(&self, netuid: u16) -> Result<EpochSchedule, ChainError> {
        self.check(&self.reads_down)?;
        self.inner.epoch_schedule(netuid).await
    }
    async fn beacon(&self) -> Result<ChainBeacon, ChainError> {
        self.check(&self.reads_down)?;
        self.inner.beacon().await
    }
    fn reveal_window(
        &self,
        netuid: u16,
        params: &Hyperparameters,
        schedule: &EpochSchedule,
        commit_block: u64,
    ) -> RangeInclusive<u64> {
        self.inner
            .reveal_window(netuid, params, schedule, commit_block)
    }
    async fn commit_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit_hash: [u8; 32],
    ) -> Result<TxReceipt, ChainError> {
        self.check(&self.writes_down)?;
        self.inner
            .commit_weights(hotkey, netuid, mechid, commit_hash)
            .await
    }
    async fn reveal_weights(
        &self,
        hotkey: &dyn Signer,
        reveal: &WeightsReveal,
    ) -> Result<TxReceipt, ChainError> {
        self.check(&self.writes_down)?;
        self.inner.reveal_weights(hotkey, reveal).await
    }
    async fn commit_timelocked_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit: &[u8],
        reveal_round: u64,
    ) -> Result<TxReceipt, ChainError> {
        self.check(&self.writes_down)?;
        self.inner
            .commit_timelocked_weights(hotkey, netuid, mechid, commit, reveal_round)
            .await
    }
    async fn pending_commits(&self, netuid: u16) -> Result<Vec<PendingCommit>, ChainError> {
        self.check(&self.reads_down)?;
        self.inner.pending_commits(netuid).await
    }
}

//! The simulated chain (network `local-sim`), embedded in the process: [`SimChain`], its
//! public API and its [`Chain`] implementation. All state lives in one SQLite file (WAL),
//! shared by every process that opens it; each call is one `BEGIN IMMEDIATE`
//! transaction, so processes serialise on the file lock and a killed process leaves no
//! partial state.
//!
//! Block height is wall-clock time since genesis divided by the block time (stored in
//! the file, so all processes agree). Yuma Consensus epochs run lazily: every
//! transaction first runs the epochs whose boundary (`last_epoch_block + tempo`) has
//! passed, at their boundary block, before applying its own change — the same order as
//! subtensor, where the epoch runs at the start of its block.
//!
//! By concern: `store` (the SQLite schema and row reads/writes), `pallet` (the rules of
//! each extrinsic), `epoch` (epochs and emission). Differences from subtensor are listed
//! in docs/chain.md (loopback axons allowed, one flat emission of 1 TAO per block per
//! subnet, no owner cut, no registration limits per block, one mechanism per subnet).
//!
//! Commit-reveal runs as on subtensor: v2 hash commits revealed by the hotkey in the
//! epoch `commit_reveal_period` epochs later, and v4 timelocked commits revealed by the
//! chain itself once its own beacon (a BLS key kept in the file, one round per block,
//! the drand quicknet scheme) has signed their round.

mod epoch;
mod pallet;
mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::subtensor::WeightsReveal;
use super::timelock::{Beacon, EpochSchedule};
use super::{
    AxonServe, Chain, ChainBeacon, ChainError, Commitment, Hyperparameters, Metagraph,
    PendingCommit, Signer, TxReceipt,
};

pub use epoch::BLOCK_EMISSION;
pub use pallet::{MAX_TIMELOCKED_COMMIT_BYTES, MAX_UIDS, MAX_UNREVEALED_COMMITS};

/// Settings fixed when a simulated chain file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Wall-clock time per block.
    pub block_time: Duration,
}

impl Default for SimConfig {
    /// 12 s blocks, like subtensor.
    fn default() -> Self {
        Self {
            block_time: Duration::from_secs(12),
        }
    }
}

/// Bookkeeping totals of a simulated chain, to check that no value was created or lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStatus {
    /// Current block.
    pub block: u64,
    /// Block time.
    pub block_time: Duration,
    /// Subnet ids.
    pub subnets: Vec<u16>,
    /// Faucet drips + emissions − burns (rao).
    pub issuance: u64,
    /// Sum of all balances and stakes (rao); equals `issuance` in a consistent file.
    pub accounted: u64,
}

/// Epoch schedule of one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochStatus {
    /// Block of the last epoch (the creation block before the first).
    pub last_epoch_block: u64,
    /// Block of the next epoch.
    pub next_epoch_block: u64,
    /// Epochs run so far.
    pub epochs: u64,
}

/// The simulated chain. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct SimChain {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    genesis_ms: u64,
    block_time_ms: u64,
}

impl SimChain {
    /// Default chain file: `$NEURON_HOME/chain/local-sim.sqlite`.
    pub fn default_path() -> PathBuf {
        crate::home::neuron_home()
            .join("chain")
            .join("local-sim.sqlite")
    }

    /// Creates a new chain file at `path` (genesis = now). Fails if one exists there.
    pub fn create(path: &Path, config: SimConfig) -> Result<Self, ChainError> {
        let block_time_ms = u64::try_from(config.block_time.as_millis())
            .ok()
            .filter(|&ms| ms > 0)
            .ok_or_else(|| {
                ChainError::InvalidInput(format!(
                    "block time must be at least 1 ms, got {:?}",
                    config.block_time
                ))
            })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ChainError::Storage(format!("create {}: {e}", dir.display())))?;
        }
        let mut conn = store::connect(path)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store::init_genesis(&tx, path, now_ms(), block_time_ms)?;
        tx.commit()?;
        Self::from_conn(path, conn)
    }

    /// Opens an existing chain file.
    pub fn open(path: &Path) -> Result<Self, ChainError> {
        if !path.exists() {
            return Err(ChainError::InvalidInput(format!(
                "no local chain at {} (create one with `neuron chain init`)",
                path.display()
            )));
        }
        Self::from_conn(path, store::connect(path)?)
    }

    fn from_conn(path: &Path, conn: Connection) -> Result<Self, ChainError> {
        let (genesis_ms, block_time_ms) = store::read_genesis(&conn, path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                genesis_ms,
                block_time_ms: block_time_ms.max(1),
            }),
        })
    }

    /// Path of the chain file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Time per block.
    pub fn block_time(&self) -> Duration {
        Duration::from_millis(self.inner.block_time_ms)
    }

    /// Creates a subnet owned by `owner` (SS58) with `params`; returns its netuid.
    pub async fn create_subnet(
        &self,
        owner: &str,
        params: Hyperparameters,
    ) -> Result<u16, ChainError> {
        let owner = owner.to_string();
        self.transact(move |tx, block| pallet::create_subnet(tx, block, &owner, &params))
            .await
    }

    /// Replaces the hyperparameters of `netuid` (the simulated chain's sudo).
    pub async fn set_hyperparameters(
        &self,
        netuid: u16,
        params: Hyperparameters,
    ) -> Result<(), ChainError> {
        self.transact(move |tx, _| pallet::set_hyperparameters(tx, netuid, &params))
            .await
    }

    /// Credits `amount` rao to `address` (SS58) out of thin air.
    pub async fn faucet(&self, address: &str, amount: u64) -> Result<TxReceipt, ChainError> {
        let address = address.to_string();
        self.transact(move |tx, block| pallet::faucet(tx, block, &address, amount))
            .await
    }

    /// Free balance of `address` (rao).
    pub async fn balance(&self, address: &str) -> Result<u64, ChainError> {
        let address = address.to_string();
        self.transact(move |tx, _| store::balance_of(tx, &address))
            .await
    }

    /// Runs an epoch of `netuid` now (like an owner's epoch trigger); the schedule
    /// continues `tempo` blocks after it. Returns the block it ran at.
    pub async fn run_epoch_now(&self, netuid: u16) -> Result<u64, ChainError> {
        self.transact(move |tx, block| epoch::run_now(tx, netuid, block))
            .await
    }

    /// When `netuid` last ran an epoch and when it runs the next.
    pub async fn epoch_status(&self, netuid: u16) -> Result<EpochStatus, ChainError> {
        self.transact(move |tx, _| {
            let s = store::load_subnet(tx, netuid)?;
            Ok(EpochStatus {
                last_epoch_block: s.last_epoch_block,
                next_epoch_block: s.last_epoch_block + u64::from(s.params.tempo),
                epochs: s.epochs,
            })
        })
        .await
    }

    /// Block, subnets and the value bookkeeping of the whole chain.
    pub async fn status(&self) -> Result<SimStatus, ChainError> {
        let block_time = self.block_time();
        self.transact(move |tx, block| {
            Ok(SimStatus {
                block,
                block_time,
                subnets: store::netuids(tx)?,
                issuance: store::issuance(tx)?,
                accounted: store::accounted(tx)?,
            })
        })
        .await
    }

    /// Runs `f` in one immediate transaction after catching up on epochs.
    async fn transact<T, F>(&self, f: F) -> Result<T, ChainError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, u64) -> Result<T, ChainError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let block = inner.block_now();
            pallet::reveal_timelocked(&tx, block)?;
            epoch::catch_up(&tx, block)?;
            let out = f(&tx, block)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| ChainError::Storage(format!("chain task failed: {e}")))?
        .map_err(|e| store::in_file(&self.inner.path, e))
    }
}

impl Inner {
    fn block_now(&self) -> u64 {
        now_ms().saturating_sub(self.genesis_ms) / self.block_time_ms
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[async_trait]
impl Chain for SimChain {
    fn network(&self) -> String {
        format!("{} ({})", super::LOCAL_SIM, self.inner.path.display())
    }

    async fn current_block(&self) -> Result<u64, ChainError> {
        Ok(self.inner.block_now())
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.transact(move |tx, block| {
            store::load_subnet(tx, netuid)?;
            Ok(Metagraph {
                netuid,
                block,
                neurons: store::load_neurons(tx, netuid)?,
            })
        })
        .await
    }

    async fn hyperparameters(&self, netuid: u16) -> Result<Hyperparameters, ChainError> {
        self.transact(move |tx, _| Ok(store::load_subnet(tx, netuid)?.params))
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
        let (hotkey, uids, values) = (hotkey.ss58(), uids.to_vec(), weights.to_vec());
        self.transact(move |tx, block| {
            pallet::set_weights(tx, block, &hotkey, netuid, &uids, &values, version_key)
        })
        .await
    }

    async fn serve_axon(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        axon: &AxonServe,
    ) -> Result<TxReceipt, ChainError> {
        let (hotkey, axon) = (hotkey.ss58(), axon.clone());
        self.transact(move |tx, block| pallet::serve_axon(tx, block, &hotkey, netuid, &axon))
            .await
    }

    async fn burned_register(
        &self,
        coldkey: &dyn Signer,
        netuid: u16,
        hotkey: &str,
    ) -> Result<u16, ChainError> {
        let (coldkey, hotkey) = (coldkey.ss58(), hotkey.to_string());
        self.transact(move |tx, block| {
            pallet::burned_register(tx, block, &coldkey, netuid, &hotkey)
        })
        .await
    }

    async fn add_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        let (coldkey, hotkey) = (coldkey.ss58(), hotkey.to_string());
        self.transact(move |tx, block| {
            pallet::add_stake(tx, block, &coldkey, &hotkey, netuid, amount)
        })
        .await
    }

    async fn remove_stake(
        &self,
        coldkey: &dyn Signer,
        hotkey: &str,
        netuid: u16,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        let (coldkey, hotkey) = (coldkey.ss58(), hotkey.to_string());
        self.transact(move |tx, block| {
            pallet::remove_stake(tx, block, &coldkey, &hotkey, netuid, amount)
        })
        .await
    }

    async fn transfer(
        &self,
        coldkey: &dyn Signer,
        dest: &str,
        amount: u64,
    ) -> Result<TxReceipt, ChainError> {
        let (coldkey, dest) = (coldkey.ss58(), dest.to_string());
        self.transact(move |tx, block| pallet::transfer(tx, block, &coldkey, &dest, amount))
            .await
    }

    async fn set_commitment(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<TxReceipt, ChainError> {
        let (hotkey, data) = (hotkey.ss58(), data.to_vec());
        self.transact(move |tx, block| pallet::set_commitment(tx, block, &hotkey, netuid, &data))
            .await
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<Commitment>, ChainError> {
        self.transact(move |tx, _| {
            store::load_subnet(tx, netuid)?;
            store::load_commitments(tx, netuid)
        })
        .await
    }

    async fn epoch_schedule(&self, netuid: u16) -> Result<EpochSchedule, ChainError> {
        self.transact(move |tx, block| {
            let s = store::load_subnet(tx, netuid)?;
            Ok(EpochSchedule {
                last_epoch_block: s.last_epoch_block,
                pending_epoch_at: 0,
                epoch_index: s.epochs,
                tempo: u64::from(s.params.tempo),
                blocks_since_last_step: block.saturating_sub(s.last_epoch_block),
                current_block: block,
            })
        })
        .await
    }

    async fn beacon(&self) -> Result<ChainBeacon, ChainError> {
        let (genesis_ms, block_time_ms) = (self.inner.genesis_ms, self.inner.block_time_ms);
        self.transact(move |tx, _| {
            Ok(ChainBeacon {
                beacon: Beacon {
                    public_key: pallet::beacon_key(tx)?.public_key(),
                    genesis_ms,
                    period_ms: block_time_ms,
                },
                block_time_ms,
            })
        })
        .await
    }

    async fn commit_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit_hash: [u8; 32],
    ) -> Result<TxReceipt, ChainError> {
        let hotkey = hotkey.ss58();
        self.transact(move |tx, block| {
            pallet::commit_weights(tx, block, &hotkey, netuid, mechid, commit_hash)
        })
        .await
    }

    async fn reveal_weights(
        &self,
        hotkey: &dyn Signer,
        reveal: &WeightsReveal,
    ) -> Result<TxReceipt, ChainError> {
        let (hotkey, reveal) = (hotkey.ss58(), reveal.clone());
        self.transact(move |tx, block| pallet::reveal_weights(tx, block, &hotkey, &reveal))
            .await
    }

    async fn commit_timelocked_weights(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        mechid: u8,
        commit: &[u8],
        reveal_round: u64,
    ) -> Result<TxReceipt, ChainError> {
        let (hotkey, commit) = (hotkey.ss58(), commit.to_vec());
        self.transact(move |tx, block| {
            pallet::commit_timelocked(tx, block, &hotkey, netuid, mechid, &commit, reveal_round)
        })
        .await
    }

    async fn pending_commits(&self, netuid: u16) -> Result<Vec<PendingCommit>, ChainError> {
        self.transact(move |tx, _| {
            store::load_subnet(tx, netuid)?;
            Ok(store::commits_on(tx, netuid)?
                .into_iter()
                .map(|c| PendingCommit {
                    hotkey: c.hotkey,
                    commit_block: c.commit_block,
                    version: c.version,
                    reveal_round: c.reveal_round,
                })
                .collect())
        })
        .await
    }
}

//! The embedded local chain (`local-sim`): all state in one SQLite file (WAL), shared
//! by every process that opens it; each call is one `BEGIN IMMEDIATE` transaction, so
//! processes serialise on the file lock and a killed process leaves no partial state.
//!
//! Block height is wall-clock time since genesis divided by the block time (stored in
//! the file, so all processes agree). Yuma Consensus epochs run lazily: every
//! transaction first runs the epochs whose boundary (`last_epoch_block + tempo`) has
//! passed, at their boundary block, before applying its own change — the same order as
//! subtensor, where the epoch runs at the start of its block.
//!
//! Differences from subtensor are listed in docs/chain.md (loopback axons allowed, one
//! flat emission of 1 TAO per block per subnet, no owner cut, no registration limits
//! per block, commit-reveal refused rather than emulated).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::yuma::{self, EpochInput};
use super::{
    AxonServe, Chain, ChainError, Commitment, Hyperparameters, MAX_COMMITMENT_BYTES, Metagraph,
    NeuronInfo, RAO_PER_TAO, Signer, TxReceipt,
};

/// Emission per block per subnet (rao), distributed at each epoch.
pub const BLOCK_EMISSION: u64 = RAO_PER_TAO;

/// Largest subnet the local chain accepts (keeps fixed-point row sums in range).
pub const MAX_UIDS: u16 = 4096;

/// Most epochs one catch-up runs per subnet; older pending epochs are skipped (logged).
const MAX_CATCH_UP_EPOCHS: u64 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
CREATE TABLE IF NOT EXISTS owners (hotkey TEXT PRIMARY KEY, coldkey TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subnets (
    netuid INTEGER PRIMARY KEY, owner TEXT NOT NULL, params TEXT NOT NULL,
    created_block INTEGER NOT NULL, last_epoch_block INTEGER NOT NULL,
    epochs INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL,
    block_at_registration INTEGER NOT NULL, last_update INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, validator_permit INTEGER NOT NULL DEFAULT 0,
    stake_weight INTEGER NOT NULL DEFAULT 0, consensus INTEGER NOT NULL DEFAULT 0,
    incentive INTEGER NOT NULL DEFAULT 0, dividends INTEGER NOT NULL DEFAULT 0,
    validator_trust INTEGER NOT NULL DEFAULT 0, emission INTEGER NOT NULL DEFAULT 0,
    weights BLOB NOT NULL DEFAULT x'', bonds BLOB NOT NULL DEFAULT x'',
    axon_version INTEGER, axon_ip TEXT, axon_port INTEGER, axon_protocol INTEGER,
    axon_block INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
CREATE TABLE IF NOT EXISTS stakes (
    hotkey TEXT NOT NULL, coldkey TEXT NOT NULL, netuid INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0), PRIMARY KEY (hotkey, coldkey, netuid));
CREATE TABLE IF NOT EXISTS commitments (
    netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, data BLOB NOT NULL,
    block INTEGER NOT NULL, PRIMARY KEY (netuid, hotkey));
";

/// Settings fixed when a local chain file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalConfig {
    /// Wall-clock time per block.
    pub block_time: Duration,
}

impl Default for LocalConfig {
    /// 12 s blocks, like subtensor.
    fn default() -> Self {
        Self {
            block_time: Duration::from_secs(12),
        }
    }
}

/// Bookkeeping totals of a local chain, to check that no value was created or lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStatus {
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

/// The embedded local chain. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct LocalChain {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    genesis_ms: u64,
    block_time_ms: u64,
}

impl LocalChain {
    /// Default chain file: `$NEURON_HOME/chain/local-sim.sqlite`.
    pub fn default_path() -> PathBuf {
        crate::home::neuron_home()
            .join("chain")
            .join("local-sim.sqlite")
    }

    /// Creates a new chain file at `path` (genesis = now). Fails if one exists there.
    pub fn create(path: &Path, config: LocalConfig) -> Result<Self, ChainError> {
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
        let mut conn = connect(path)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        if get_meta(&tx, "genesis_ms")?.is_some() {
            return Err(ChainError::InvalidInput(format!(
                "a local chain already exists at {}",
                path.display()
            )));
        }
        let genesis_ms = now_ms();
        set_meta(&tx, "genesis_ms", genesis_ms)?;
        set_meta(&tx, "block_time_ms", block_time_ms)?;
        set_meta(&tx, "issuance", 0)?;
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
        Self::from_conn(path, connect(path)?)
    }

    fn from_conn(path: &Path, conn: Connection) -> Result<Self, ChainError> {
        let genesis_ms = get_meta(&conn, "genesis_ms")?;
        let block_time_ms = get_meta(&conn, "block_time_ms")?;
        let (Some(genesis_ms), Some(block_time_ms)) = (genesis_ms, block_time_ms) else {
            return Err(ChainError::Storage(format!(
                "{} is not a local chain file (no genesis)",
                path.display()
            )));
        };
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
        validate_params(&params)?;
        let owner = owner.to_string();
        self.transact(move |tx, block| {
            let netuid: u16 = tx.query_row(
                "SELECT COALESCE(MAX(netuid), 0) + 1 FROM subnets",
                [],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO subnets (netuid, owner, params, created_block, last_epoch_block)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![netuid, owner, to_json(&params)?, to_i64(block)?],
            )?;
            Ok(netuid)
        })
        .await
    }

    /// Replaces the hyperparameters of `netuid` (the local chain's sudo).
    pub async fn set_hyperparameters(
        &self,
        netuid: u16,
        params: Hyperparameters,
    ) -> Result<(), ChainError> {
        validate_params(&params)?;
        self.transact(move |tx, _| {
            let n = subnet_size(tx, netuid)?;
            if n > params.max_allowed_uids {
                return Err(ChainError::InvalidInput(format!(
                    "subnet {netuid} has {n} uids, more than max_allowed_uids {}",
                    params.max_allowed_uids
                )));
            }
            tx.execute(
                "UPDATE subnets SET params = ?2 WHERE netuid = ?1",
                params![netuid, to_json(&params)?],
            )?;
            Ok(())
        })
        .await
    }

    /// Credits `amount` rao to `address` (SS58) out of thin air.
    pub async fn faucet(&self, address: &str, amount: u64) -> Result<TxReceipt, ChainError> {
        let address = address.to_string();
        self.transact(move |tx, block| {
            credit(tx, &address, amount)?;
            add_issuance(tx, amount, true)?;
            Ok(receipt(block))
        })
        .await
    }

    /// Free balance of `address` (rao).
    pub async fn balance(&self, address: &str) -> Result<u64, ChainError> {
        let address = address.to_string();
        self.transact(move |tx, _| balance_of(tx, &address)).await
    }

    /// Runs an epoch of `netuid` now (like an owner's epoch trigger); the schedule
    /// continues `tempo` blocks after it. Returns the block it ran at.
    pub async fn run_epoch_now(&self, netuid: u16) -> Result<u64, ChainError> {
        self.transact(move |tx, block| {
            let subnet = load_subnet(tx, netuid)?;
            if subnet.last_epoch_block >= block {
                return Err(ChainError::InvalidInput(format!(
                    "subnet {netuid} already ran an epoch at block {block}; wait for the next block"
                )));
            }
            run_epoch(tx, netuid, &subnet, block)?;
            Ok(block)
        })
        .await
    }

    /// When `netuid` last ran an epoch and when it runs the next.
    pub async fn epoch_status(&self, netuid: u16) -> Result<EpochStatus, ChainError> {
        self.transact(move |tx, _| {
            let s = load_subnet(tx, netuid)?;
            Ok(EpochStatus {
                last_epoch_block: s.last_epoch_block,
                next_epoch_block: s.last_epoch_block + u64::from(s.params.tempo),
                epochs: s.epochs,
            })
        })
        .await
    }

    /// Block, subnets and the value bookkeeping of the whole chain.
    pub async fn status(&self) -> Result<LocalStatus, ChainError> {
        let block_time = self.block_time();
        self.transact(move |tx, block| {
            let mut stmt = tx.prepare("SELECT netuid FROM subnets ORDER BY netuid")?;
            let subnets = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<u16>, _>>()?;
            let balances: i64 =
                tx.query_row("SELECT COALESCE(SUM(balance), 0) FROM accounts", [], |r| {
                    r.get(0)
                })?;
            let stakes: i64 =
                tx.query_row("SELECT COALESCE(SUM(amount), 0) FROM stakes", [], |r| {
                    r.get(0)
                })?;
            Ok(LocalStatus {
                block,
                block_time,
                subnets,
                issuance: get_meta(tx, "issuance")?.unwrap_or(0),
                accounted: balances as u64 + stakes as u64,
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
            catch_up(&tx, block)?;
            let out = f(&tx, block)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| ChainError::Storage(format!("chain task failed: {e}")))?
    }
}

impl Inner {
    fn block_now(&self) -> u64 {
        now_ms().saturating_sub(self.genesis_ms) / self.block_time_ms
    }
}

#[async_trait]
impl Chain for LocalChain {
    fn network(&self) -> String {
        format!("{} ({})", super::LOCAL_SIM, self.inner.path.display())
    }

    async fn current_block(&self) -> Result<u64, ChainError> {
        Ok(self.inner.block_now())
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.transact(move |tx, block| {
            load_subnet(tx, netuid)?;
            Ok(Metagraph {
                netuid,
                block,
                neurons: load_neurons(tx, netuid)?,
            })
        })
        .await
    }

    async fn hyperparameters(&self, netuid: u16) -> Result<Hyperparameters, ChainError> {
        self.transact(move |tx, _| Ok(load_subnet(tx, netuid)?.params))
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
            set_weights_tx(tx, block, &hotkey, netuid, &uids, &values, version_key)
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
        self.transact(move |tx, block| {
            let subnet = load_subnet(tx, netuid)?;
            let Some(uid) = uid_of(tx, netuid, &hotkey)? else {
                return Err(ChainError::from_dispatch(
                    "HotKeyNotRegisteredInNetwork",
                    format!("hotkey {hotkey} is not registered on subnet {netuid}"),
                ));
            };
            if axon.ip.is_unspecified() {
                return Err(ChainError::from_dispatch(
                    "InvalidIpAddress",
                    format!("{} is not a servable address", axon.ip),
                ));
            }
            let last: i64 = tx.query_row(
                "SELECT axon_block FROM neurons WHERE netuid = ?1 AND uid = ?2",
                params![netuid, uid],
                |r| r.get(0),
            )?;
            let last = last as u64;
            if last != 0 && block.saturating_sub(last) < subnet.params.serving_rate_limit {
                return Err(ChainError::from_dispatch(
                    "ServingRateLimitExceeded",
                    format!(
                        "served at block {last}, now {block}; serving rate limit is {} blocks",
                        subnet.params.serving_rate_limit
                    ),
                ));
            }
            if axon.port == 0 {
                return Err(ChainError::from_dispatch("InvalidPort", "port 0"));
            }
            tx.execute(
                "UPDATE neurons SET axon_version = ?3, axon_ip = ?4, axon_port = ?5,
                 axon_protocol = ?6, axon_block = ?7 WHERE netuid = ?1 AND uid = ?2",
                params![
                    netuid,
                    uid,
                    axon.version,
                    axon.ip.to_string(),
                    axon.port,
                    axon.protocol,
                    to_i64(block)?
                ],
            )?;
            Ok(receipt(block))
        })
        .await
    }

    async fn burned_register(
        &self,
        coldkey: &dyn Signer,
        netuid: u16,
        hotkey: &str,
    ) -> Result<u16, ChainError> {
        let (coldkey, hotkey) = (coldkey.ss58(), hotkey.to_string());
        self.transact(move |tx, block| register_tx(tx, block, &coldkey, netuid, &hotkey))
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
            load_subnet(tx, netuid)?;
            if owner_of(tx, &hotkey)?.is_none() {
                return Err(ChainError::from_dispatch(
                    "HotKeyAccountNotExists",
                    format!("hotkey {hotkey} has never registered"),
                ));
            }
            if amount == 0 {
                return Err(ChainError::from_dispatch(
                    "AmountTooLow",
                    "stake amount is 0",
                ));
            }
            debit(tx, &coldkey, amount, "NotEnoughBalanceToStake")?;
            change_stake(tx, &hotkey, &coldkey, netuid, i128::from(amount))?;
            Ok(receipt(block))
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
            load_subnet(tx, netuid)?;
            if amount == 0 {
                return Err(ChainError::from_dispatch(
                    "AmountTooLow",
                    "unstake amount is 0",
                ));
            }
            let have = stake_of(tx, &hotkey, &coldkey, netuid)?;
            if have < amount {
                return Err(ChainError::from_dispatch(
                    "NotEnoughStakeToWithdraw",
                    format!("{coldkey} has {have} rao staked on {hotkey}, asked for {amount}"),
                ));
            }
            change_stake(tx, &hotkey, &coldkey, netuid, -i128::from(amount))?;
            credit(tx, &coldkey, amount)?;
            Ok(receipt(block))
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
        if dest.is_empty() {
            return Err(ChainError::InvalidInput("empty destination address".into()));
        }
        self.transact(move |tx, block| {
            debit(tx, &coldkey, amount, "InsufficientBalance")?;
            credit(tx, &dest, amount)?;
            Ok(receipt(block))
        })
        .await
    }

    async fn set_commitment(
        &self,
        hotkey: &dyn Signer,
        netuid: u16,
        data: &[u8],
    ) -> Result<TxReceipt, ChainError> {
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::InvalidInput(format!(
                "commitment is {} bytes, at most {MAX_COMMITMENT_BYTES} allowed",
                data.len()
            )));
        }
        let (hotkey, data) = (hotkey.ss58(), data.to_vec());
        self.transact(move |tx, block| {
            load_subnet(tx, netuid)?;
            if uid_of(tx, netuid, &hotkey)?.is_none() {
                return Err(ChainError::from_dispatch(
                    "AccountNotAllowedCommit",
                    format!("hotkey {hotkey} is not registered on subnet {netuid}"),
                ));
            }
            tx.execute(
                "INSERT INTO commitments (netuid, hotkey, data, block) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (netuid, hotkey) DO UPDATE SET data = ?3, block = ?4",
                params![netuid, hotkey, data, to_i64(block)?],
            )?;
            Ok(receipt(block))
        })
        .await
    }

    async fn commitments(&self, netuid: u16) -> Result<Vec<Commitment>, ChainError> {
        self.transact(move |tx, _| {
            load_subnet(tx, netuid)?;
            let mut stmt = tx.prepare(
                "SELECT n.uid, n.hotkey, c.data, c.block FROM commitments c
                 JOIN neurons n ON n.netuid = c.netuid AND n.hotkey = c.hotkey
                 WHERE c.netuid = ?1 ORDER BY n.uid",
            )?;
            let rows = stmt
                .query_map([netuid], |r| {
                    Ok(Commitment {
                        uid: r.get(0)?,
                        hotkey: r.get(1)?,
                        data: r.get(2)?,
                        block: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

impl From<rusqlite::Error> for ChainError {
    fn from(e: rusqlite::Error) -> Self {
        ChainError::Storage(e.to_string())
    }
}

fn connect(path: &Path) -> Result<Connection, ChainError> {
    let conn = Connection::open(path)
        .map_err(|e| ChainError::Storage(format!("open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn receipt(block: u64) -> TxReceipt {
    TxReceipt { block, hash: None }
}

fn to_i64(x: u64) -> Result<i64, ChainError> {
    i64::try_from(x).map_err(|_| ChainError::InvalidInput(format!("{x} is too large")))
}

fn to_json(params: &Hyperparameters) -> Result<String, ChainError> {
    serde_json::to_string(params).map_err(|e| ChainError::Storage(e.to_string()))
}

fn validate_params(p: &Hyperparameters) -> Result<(), ChainError> {
    if p.tempo == 0 {
        return Err(ChainError::InvalidInput("tempo must be at least 1".into()));
    }
    if p.max_allowed_uids == 0 || p.max_allowed_uids > MAX_UIDS {
        return Err(ChainError::InvalidInput(format!(
            "max_allowed_uids must be 1..={MAX_UIDS}, got {}",
            p.max_allowed_uids
        )));
    }
    if p.bonds_moving_average > 1_000_000 {
        return Err(ChainError::InvalidInput(format!(
            "bonds_moving_average is in millionths (at most 1000000), got {}",
            p.bonds_moving_average
        )));
    }
    Ok(())
}

fn get_meta(conn: &Connection, key: &str) -> Result<Option<u64>, ChainError> {
    let v: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?;
    Ok(v.map(|v| v as u64))
}

fn set_meta(conn: &Connection, key: &str, value: u64) -> Result<(), ChainError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, to_i64(value)?],
    )?;
    Ok(())
}

fn add_issuance(tx: &Transaction<'_>, amount: u64, mint: bool) -> Result<(), ChainError> {
    let now = get_meta(tx, "issuance")?.unwrap_or(0);
    let next = if mint {
        now.checked_add(amount)
    } else {
        now.checked_sub(amount)
    };
    let next = next
        .filter(|&v| v <= i64::MAX as u64)
        .ok_or_else(|| ChainError::InvalidInput(format!("issuance would overflow by {amount}")))?;
    set_meta(tx, "issuance", next)
}

fn balance_of(tx: &Transaction<'_>, address: &str) -> Result<u64, ChainError> {
    let b: Option<i64> = tx
        .query_row(
            "SELECT balance FROM accounts WHERE address = ?1",
            [address],
            |r| r.get(0),
        )
        .optional()?;
    Ok(b.unwrap_or(0) as u64)
}

fn credit(tx: &Transaction<'_>, address: &str, amount: u64) -> Result<(), ChainError> {
    let next = balance_of(tx, address)?
        .checked_add(amount)
        .filter(|&v| v <= i64::MAX as u64)
        .ok_or_else(|| ChainError::InvalidInput(format!("balance of {address} would overflow")))?;
    tx.execute(
        "INSERT INTO accounts (address, balance) VALUES (?1, ?2)
         ON CONFLICT (address) DO UPDATE SET balance = ?2",
        params![address, next as i64],
    )?;
    Ok(())
}

fn debit(tx: &Transaction<'_>, address: &str, amount: u64, error: &str) -> Result<(), ChainError> {
    let have = balance_of(tx, address)?;
    if have < amount {
        return Err(ChainError::from_dispatch(
            error,
            format!("{address} has {have} rao, needs {amount}"),
        ));
    }
    tx.execute(
        "UPDATE accounts SET balance = ?2 WHERE address = ?1",
        params![address, (have - amount) as i64],
    )?;
    Ok(())
}

fn owner_of(tx: &Transaction<'_>, hotkey: &str) -> Result<Option<String>, ChainError> {
    Ok(tx
        .query_row(
            "SELECT coldkey FROM owners WHERE hotkey = ?1",
            [hotkey],
            |r| r.get(0),
        )
        .optional()?)
}

fn stake_of(
    tx: &Transaction<'_>,
    hotkey: &str,
    coldkey: &str,
    netuid: u16,
) -> Result<u64, ChainError> {
    let s: Option<i64> = tx
        .query_row(
            "SELECT amount FROM stakes WHERE hotkey = ?1 AND coldkey = ?2 AND netuid = ?3",
            params![hotkey, coldkey, netuid],
            |r| r.get(0),
        )
        .optional()?;
    Ok(s.unwrap_or(0) as u64)
}

fn change_stake(
    tx: &Transaction<'_>,
    hotkey: &str,
    coldkey: &str,
    netuid: u16,
    delta: i128,
) -> Result<(), ChainError> {
    let next = i128::from(stake_of(tx, hotkey, coldkey, netuid)?) + delta;
    let next = i64::try_from(next)
        .ok()
        .filter(|&v| v >= 0)
        .ok_or_else(|| ChainError::InvalidInput(format!("stake on {hotkey} would overflow")))?;
    tx.execute(
        "INSERT INTO stakes (hotkey, coldkey, netuid, amount) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (hotkey, coldkey, netuid) DO UPDATE SET amount = ?4",
        params![hotkey, coldkey, netuid, next],
    )?;
    Ok(())
}

struct Subnet {
    params: Hyperparameters,
    last_epoch_block: u64,
    epochs: u64,
}

fn load_subnet(tx: &Transaction<'_>, netuid: u16) -> Result<Subnet, ChainError> {
    let row: Option<(String, i64, i64)> = tx
        .query_row(
            "SELECT params, last_epoch_block, epochs FROM subnets WHERE netuid = ?1",
            [netuid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((params, last, epochs)) = row else {
        return Err(ChainError::from_dispatch(
            "SubnetNotExists",
            format!("subnet {netuid} does not exist"),
        ));
    };
    Ok(Subnet {
        params: serde_json::from_str(&params)
            .map_err(|e| ChainError::Storage(format!("subnet {netuid} params: {e}")))?,
        last_epoch_block: last as u64,
        epochs: epochs as u64,
    })
}

fn subnet_size(tx: &Transaction<'_>, netuid: u16) -> Result<u16, ChainError> {
    Ok(tx.query_row(
        "SELECT COUNT(*) FROM neurons WHERE netuid = ?1",
        [netuid],
        |r| r.get(0),
    )?)
}

fn uid_of(tx: &Transaction<'_>, netuid: u16, hotkey: &str) -> Result<Option<u16>, ChainError> {
    Ok(tx
        .query_row(
            "SELECT uid FROM neurons WHERE netuid = ?1 AND hotkey = ?2",
            params![netuid, hotkey],
            |r| r.get(0),
        )
        .optional()?)
}

/// Encodes sparse `(uid, value)` pairs as little-endian u16 pairs.
fn encode_pairs(pairs: &[(u16, u16)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
        .collect()
}

fn decode_pairs(bytes: &[u8]) -> Vec<(u16, u16)> {
    bytes
        .chunks_exact(4)
        .map(|c| {
            (
                u16::from_le_bytes([c[0], c[1]]),
                u16::from_le_bytes([c[2], c[3]]),
            )
        })
        .collect()
}

/// One neuron row with the epoch inputs the metagraph does not show.
struct Row {
    info: NeuronInfo,
    weights: Vec<(u16, u16)>,
    bonds: Vec<(u16, u16)>,
}

fn load_rows(tx: &Transaction<'_>, netuid: u16) -> Result<Vec<Row>, ChainError> {
    let mut stmt = tx.prepare(
        "SELECT n.uid, n.hotkey, COALESCE(o.coldkey, ''),
                (SELECT COALESCE(SUM(s.amount), 0) FROM stakes s
                  WHERE s.hotkey = n.hotkey AND s.netuid = n.netuid),
                n.validator_trust, n.consensus, n.incentive, n.dividends, n.emission,
                n.validator_permit, n.last_update, n.block_at_registration, n.active,
                n.axon_version, n.axon_ip, n.axon_port, n.axon_protocol, n.axon_block,
                n.weights, n.bonds
         FROM neurons n LEFT JOIN owners o ON o.hotkey = n.hotkey
         WHERE n.netuid = ?1 ORDER BY n.uid",
    )?;
    let rows = stmt
        .query_map([netuid], |r| {
            let ip: Option<String> = r.get(14)?;
            let axon = match (
                r.get::<_, Option<u32>>(13)?,
                ip,
                r.get::<_, Option<u16>>(15)?,
            ) {
                (Some(version), Some(ip), Some(port)) => {
                    ip.parse::<IpAddr>().ok().map(|ip| (version, ip, port))
                }
                _ => None,
            };
            let protocol: Option<u8> = r.get(16)?;
            Ok(Row {
                info: NeuronInfo {
                    uid: r.get(0)?,
                    hotkey: r.get(1)?,
                    coldkey: r.get(2)?,
                    stake: r.get::<_, i64>(3)? as u64,
                    trust: 0,
                    validator_trust: r.get(4)?,
                    consensus: r.get(5)?,
                    incentive: r.get(6)?,
                    dividends: r.get(7)?,
                    emission: r.get::<_, i64>(8)? as u64,
                    validator_permit: r.get(9)?,
                    last_update: r.get::<_, i64>(10)? as u64,
                    block_at_registration: r.get::<_, i64>(11)? as u64,
                    active: r.get(12)?,
                    axon: axon.map(|(version, ip, port)| AxonServe {
                        version,
                        ip,
                        port,
                        protocol: protocol.unwrap_or(4),
                    }),
                    axon_block: r.get::<_, i64>(17)? as u64,
                },
                weights: decode_pairs(&r.get::<_, Vec<u8>>(18)?),
                bonds: decode_pairs(&r.get::<_, Vec<u8>>(19)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn load_neurons(tx: &Transaction<'_>, netuid: u16) -> Result<Vec<NeuronInfo>, ChainError> {
    Ok(load_rows(tx, netuid)?.into_iter().map(|r| r.info).collect())
}

/// Runs every epoch whose boundary is at or before `block`, oldest first.
fn catch_up(tx: &Transaction<'_>, block: u64) -> Result<(), ChainError> {
    let mut stmt = tx.prepare("SELECT netuid FROM subnets ORDER BY netuid")?;
    let netuids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<u16>, _>>()?;
    drop(stmt);
    for netuid in netuids {
        let mut subnet = load_subnet(tx, netuid)?;
        let tempo = u64::from(subnet.params.tempo);
        let pending = block.saturating_sub(subnet.last_epoch_block) / tempo;
        if pending > MAX_CATCH_UP_EPOCHS {
            let skipped = pending - MAX_CATCH_UP_EPOCHS;
            tracing::warn!(netuid, skipped, "chain was idle long; skipping old epochs");
            subnet.last_epoch_block += skipped * tempo;
        }
        while subnet.last_epoch_block + tempo <= block {
            let at = subnet.last_epoch_block + tempo;
            run_epoch(tx, netuid, &subnet, at)?;
            subnet = load_subnet(tx, netuid)?;
        }
    }
    Ok(())
}

/// Runs one Yuma epoch of `netuid` at block `at` and persists its outputs.
fn run_epoch(
    tx: &Transaction<'_>,
    netuid: u16,
    subnet: &Subnet,
    at: u64,
) -> Result<(), ChainError> {
    let rows = load_rows(tx, netuid)?;
    let p = &subnet.params;
    let emission = at
        .saturating_sub(subnet.last_epoch_block)
        .saturating_mul(BLOCK_EMISSION);
    let input = EpochInput {
        block: at,
        tempo: u64::from(p.tempo),
        last_epoch_block: subnet.last_epoch_block,
        activity_cutoff: u64::from(p.activity_cutoff),
        last_update: rows.iter().map(|r| r.info.last_update).collect(),
        block_at_registration: rows.iter().map(|r| r.info.block_at_registration).collect(),
        stake: rows.iter().map(|r| r.info.stake).collect(),
        stake_threshold: 0,
        validator_permit: rows.iter().map(|r| r.info.validator_permit).collect(),
        max_allowed_validators: p.max_allowed_validators,
        owner_uid: None,
        weights: rows.iter().map(|r| r.weights.clone()).collect(),
        bonds: rows.iter().map(|r| r.bonds.clone()).collect(),
        kappa: p.kappa,
        bonds_penalty: p.bonds_penalty,
        bonds_moving_average: p.bonds_moving_average,
        emission,
    };
    let out = yuma::epoch(&input);
    let mut update = tx.prepare(
        "UPDATE neurons SET active = ?3, stake_weight = ?4, consensus = ?5, incentive = ?6,
         dividends = ?7, validator_trust = ?8, validator_permit = ?9, emission = ?10, bonds = ?11
         WHERE netuid = ?1 AND uid = ?2",
    )?;
    let mut emitted = 0u64;
    for (i, row) in rows.iter().enumerate() {
        update.execute(params![
            netuid,
            row.info.uid,
            out.active[i],
            out.stake_weight[i],
            out.consensus[i],
            out.incentive[i],
            out.dividends[i],
            out.validator_trust[i],
            out.validator_permit[i],
            to_i64(out.emission[i])?,
            encode_pairs(&out.bonds[i]),
        ])?;
        let reward = out.server_emission[i].saturating_add(out.validator_emission[i]);
        if reward > 0 && !row.info.coldkey.is_empty() {
            change_stake(
                tx,
                &row.info.hotkey,
                &row.info.coldkey,
                netuid,
                i128::from(reward),
            )?;
            emitted = emitted.saturating_add(reward);
        }
    }
    add_issuance(tx, emitted, true)?;
    tx.execute(
        "UPDATE subnets SET last_epoch_block = ?2, epochs = epochs + 1 WHERE netuid = ?1",
        params![netuid, to_i64(at)?],
    )?;
    tracing::debug!(netuid, block = at, emitted, "epoch");
    Ok(())
}

fn register_tx(
    tx: &Transaction<'_>,
    block: u64,
    coldkey: &str,
    netuid: u16,
    hotkey: &str,
) -> Result<u16, ChainError> {
    if hotkey.is_empty() {
        return Err(ChainError::InvalidInput("empty hotkey address".into()));
    }
    let subnet = load_subnet(tx, netuid)?;
    if uid_of(tx, netuid, hotkey)?.is_some() {
        return Err(ChainError::from_dispatch(
            "HotKeyAlreadyRegisteredInSubNet",
            format!("hotkey {hotkey} is already registered on subnet {netuid}"),
        ));
    }
    match owner_of(tx, hotkey)? {
        Some(owner) if owner != coldkey => {
            return Err(ChainError::from_dispatch(
                "NonAssociatedColdKey",
                format!("hotkey {hotkey} belongs to coldkey {owner}, not {coldkey}"),
            ));
        }
        Some(_) => {}
        None => {
            tx.execute(
                "INSERT INTO owners (hotkey, coldkey) VALUES (?1, ?2)",
                params![hotkey, coldkey],
            )?;
        }
    }
    let burn = subnet.params.burn;
    debit(tx, coldkey, burn, "NotEnoughBalanceToStake")?;
    add_issuance(tx, burn, false)?;
    let n = subnet_size(tx, netuid)?;
    let b = to_i64(block)?;
    let uid = if n < subnet.params.max_allowed_uids {
        tx.execute(
            "INSERT INTO neurons (netuid, uid, hotkey, block_at_registration, last_update)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![netuid, n, hotkey, b],
        )?;
        n
    } else {
        let uid = neuron_to_prune(tx, netuid, block, subnet.params.immunity_period)?;
        replace_neuron(tx, netuid, uid, hotkey, b)?;
        uid
    };
    tracing::info!(netuid, uid, hotkey, "registered");
    Ok(uid)
}

/// subtensor's `get_neuron_to_prune`: the lowest emission among non-immune uids (ties:
/// earlier registration, then lower uid); if every uid is immune, the lowest immune one.
fn neuron_to_prune(
    tx: &Transaction<'_>,
    netuid: u16,
    block: u64,
    immunity_period: u16,
) -> Result<u16, ChainError> {
    let mut stmt =
        tx.prepare("SELECT uid, emission, block_at_registration FROM neurons WHERE netuid = ?1")?;
    let mut non_immune: Option<(u64, u64, u16)> = None;
    let mut immune: Option<(u64, u64, u16)> = None;
    let rows = stmt.query_map([netuid], |r| {
        Ok((
            r.get::<_, u16>(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    for row in rows {
        let (uid, emission, reg) = row?;
        let key = (emission, reg, uid);
        let best = if block.saturating_sub(reg) < u64::from(immunity_period) {
            &mut immune
        } else {
            &mut non_immune
        };
        if best.is_none_or(|b| key < b) {
            *best = Some(key);
        }
    }
    non_immune
        .or(immune)
        .map(|(_, _, uid)| uid)
        .ok_or_else(|| ChainError::from_dispatch("NoNeuronIdAvailable", "subnet is empty"))
}

/// subtensor's `replace_neuron` + `clear_neuron`: the uid gets the new hotkey with fresh
/// scores, weights and bonds, and other validators' weights on it are zeroed.
fn replace_neuron(
    tx: &Transaction<'_>,
    netuid: u16,
    uid: u16,
    hotkey: &str,
    block: i64,
) -> Result<(), ChainError> {
    let old: String = tx.query_row(
        "SELECT hotkey FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
        |r| r.get(0),
    )?;
    tracing::info!(
        netuid,
        uid,
        pruned = old,
        "pruning uid for a new registration"
    );
    tx.execute(
        "DELETE FROM commitments WHERE netuid = ?1 AND hotkey = ?2",
        params![netuid, old],
    )?;
    tx.execute(
        "DELETE FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
    )?;
    tx.execute(
        "INSERT INTO neurons (netuid, uid, hotkey, block_at_registration, last_update)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![netuid, uid, hotkey, block],
    )?;
    let mut stmt = tx.prepare("SELECT uid, weights FROM neurons WHERE netuid = ?1")?;
    let rows = stmt
        .query_map([netuid], |r| {
            Ok((r.get::<_, u16>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (other, blob) in rows {
        let mut pairs = decode_pairs(&blob);
        if pairs.iter().any(|(j, _)| *j == uid) {
            pairs
                .iter_mut()
                .filter(|(j, _)| *j == uid)
                .for_each(|(_, w)| *w = 0);
            tx.execute(
                "UPDATE neurons SET weights = ?3 WHERE netuid = ?1 AND uid = ?2",
                params![netuid, other, encode_pairs(&pairs)],
            )?;
        }
    }
    Ok(())
}

/// `set_weights` with subtensor's checks in subtensor's order (`internal_set_weights`).
fn set_weights_tx(
    tx: &Transaction<'_>,
    block: u64,
    hotkey: &str,
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
) -> Result<TxReceipt, ChainError> {
    let reject = |error: &str, reason: String| Err(ChainError::from_dispatch(error, reason));
    let subnet = load_subnet(tx, netuid)?;
    let p = &subnet.params;
    if p.commit_reveal_weights_enabled {
        return reject(
            "CommitRevealEnabled",
            format!("subnet {netuid} requires commit-reveal; plain set_weights is refused"),
        );
    }
    if uids.len() != values.len() {
        return reject(
            "WeightVecNotEqualSize",
            format!("{} uids but {} values", uids.len(), values.len()),
        );
    }
    let n = subnet_size(tx, netuid)?;
    if uids.len() > usize::from(n) {
        return reject(
            "UidsLengthExceedUidsInSubNet",
            format!("{} uids for a subnet of {n}", uids.len()),
        );
    }
    let Some(uid) = uid_of(tx, netuid, hotkey)? else {
        return reject(
            "HotKeyNotRegisteredInSubNet",
            format!("hotkey {hotkey} is not registered on subnet {netuid}"),
        );
    };
    if p.weights_version_key != 0 && version_key < p.weights_version_key {
        return reject(
            "IncorrectWeightVersionKey",
            format!(
                "version key {version_key} is below the subnet's {}",
                p.weights_version_key
            ),
        );
    }
    let (last_update, permit): (i64, bool) = tx.query_row(
        "SELECT last_update, validator_permit FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last_update = last_update as u64;
    if last_update != 0 && block.saturating_sub(last_update) < p.weights_rate_limit {
        return reject(
            "SettingWeightsTooFast",
            format!(
                "uid {uid} set weights at block {last_update}, now {block}; rate limit is {} blocks",
                p.weights_rate_limit
            ),
        );
    }
    let self_weight = values.len() == 1 && uids.first() == Some(&uid);
    if !self_weight && !permit {
        return reject(
            "NeuronNoValidatorPermit",
            format!("uid {uid} has no validator permit and may only set a self-weight"),
        );
    }
    let mut seen = std::collections::HashSet::with_capacity(uids.len());
    if let Some(dup) = uids.iter().find(|u| !seen.insert(**u)) {
        return reject("DuplicateUids", format!("uid {dup} appears more than once"));
    }
    if let Some(bad) = uids.iter().find(|u| **u >= n) {
        return reject(
            "UidVecContainInvalidOne",
            format!("uid {bad} does not exist (subnet has {n} uids)"),
        );
    }
    let min_allowed = usize::from(p.min_allowed_weights.min(n));
    if !self_weight && values.len() < min_allowed {
        return reject(
            "WeightVecLengthIsLow",
            format!("{} weights, at least {min_allowed} required", values.len()),
        );
    }
    let upscaled = yuma::vec_u16_max_upscale_to_u16(values);
    if !self_weight
        && p.max_weight_limit != u16::MAX
        && !yuma::check_vec_max_limited(&upscaled, p.max_weight_limit)
    {
        return reject(
            "MaxWeightExceeded",
            format!(
                "largest normalised weight exceeds the limit {}/65535",
                p.max_weight_limit
            ),
        );
    }
    let pairs: Vec<(u16, u16)> = uids.iter().copied().zip(upscaled).collect();
    tx.execute(
        "UPDATE neurons SET weights = ?3, last_update = ?4 WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid, encode_pairs(&pairs), to_i64(block)?],
    )?;
    Ok(receipt(block))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![(0, 65535), (4095, 1), (7, 0)];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)), pairs);
    }
}

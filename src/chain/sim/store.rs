//! The SQLite file of the simulated chain: its schema, the genesis record, and every row
//! read and write the pallet rules and the epoch make. All SQL of the simulated chain is
//! here; the callers pass the open transaction.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::chain::yuma::EpochOutput;
use crate::chain::{AxonServe, ChainError, Commitment, Hyperparameters, NeuronInfo};

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

/// Tables added after the first chain files: created on open when missing.
const COMMIT_REVEAL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS weight_commits (
    id INTEGER PRIMARY KEY AUTOINCREMENT, netuid INTEGER NOT NULL, hotkey TEXT NOT NULL,
    version INTEGER NOT NULL, commit_block INTEGER NOT NULL, commit_epoch INTEGER NOT NULL,
    hash BLOB, reveal_round INTEGER NOT NULL DEFAULT 0, ciphertext BLOB);
CREATE TABLE IF NOT EXISTS beacon (id INTEGER PRIMARY KEY CHECK (id = 0), secret BLOB NOT NULL);
";

impl From<rusqlite::Error> for ChainError {
    /// SQLite's message with its result code (`disk I/O error (SystemIoFailure, code
    /// 778)`); [`in_file`] adds which file.
    fn from(e: rusqlite::Error) -> Self {
        ChainError::Storage(match &e {
            rusqlite::Error::SqliteFailure(code, _) => {
                format!("{e} ({:?}, code {})", code.code, code.extended_code)
            }
            _ => e.to_string(),
        })
    }
}

/// `e` with the chain file `path` named, when it is a storage error (the others already
/// say what they are about).
pub(super) fn in_file(path: &Path, e: ChainError) -> ChainError {
    match e {
        ChainError::Storage(cause) => {
            ChainError::Storage(format!("chain file {}: {cause}", path.display()))
        }
        other => other,
    }
}

/// Opens (or creates) the SQLite file with WAL and a 30 s busy timeout.
pub(super) fn connect(path: &Path) -> Result<Connection, ChainError> {
    let setup = || -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(COMMIT_REVEAL_SCHEMA)?;
        Ok(conn)
    };
    setup().map_err(|e| in_file(path, e.into()))
}

/// Creates the schema and records the genesis; fails if the file already has one.
pub(super) fn init_genesis(
    tx: &Transaction<'_>,
    path: &Path,
    genesis_ms: u64,
    block_time_ms: u64,
) -> Result<(), ChainError> {
    tx.execute_batch(SCHEMA)?;
    if get_meta(tx, "genesis_ms")?.is_some() {
        return Err(ChainError::InvalidInput(format!(
            "a local chain already exists at {}",
            path.display()
        )));
    }
    set_meta(tx, "genesis_ms", genesis_ms)?;
    set_meta(tx, "block_time_ms", block_time_ms)?;
    set_meta(tx, "issuance", 0)
}

/// The genesis time and block time (ms) of a chain file.
pub(super) fn read_genesis(conn: &Connection, path: &Path) -> Result<(u64, u64), ChainError> {
    let genesis_ms = get_meta(conn, "genesis_ms").map_err(|e| in_file(path, e))?;
    let block_time_ms = get_meta(conn, "block_time_ms").map_err(|e| in_file(path, e))?;
    match (genesis_ms, block_time_ms) {
        (Some(genesis_ms), Some(block_time_ms)) => Ok((genesis_ms, block_time_ms)),
        _ => Err(ChainError::Storage(format!(
            "{} is not a local chain file (no genesis)",
            path.display()
        ))),
    }
}

/// A u64 as SQLite's i64; values past `i64::MAX` are an input error.
fn to_i64(x: u64) -> Result<i64, ChainError> {
    i64::try_from(x).map_err(|_| ChainError::InvalidInput(format!("{x} is too large")))
}

fn to_json(params: &Hyperparameters) -> Result<String, ChainError> {
    serde_json::to_string(params).map_err(|e| ChainError::Storage(e.to_string()))
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

/// Total issuance (faucet drips + emissions − burns, rao).
pub(super) fn issuance(tx: &Transaction<'_>) -> Result<u64, ChainError> {
    Ok(get_meta(tx, "issuance")?.unwrap_or(0))
}

/// Adds `amount` to the issuance (`mint`) or removes it (a burn).
pub(super) fn add_issuance(
    tx: &Transaction<'_>,
    amount: u64,
    mint: bool,
) -> Result<(), ChainError> {
    let now = issuance(tx)?;
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

/// Sum of all balances and stakes (rao).
pub(super) fn accounted(tx: &Transaction<'_>) -> Result<u64, ChainError> {
    let balances: i64 =
        tx.query_row("SELECT COALESCE(SUM(balance), 0) FROM accounts", [], |r| {
            r.get(0)
        })?;
    let stakes: i64 = tx.query_row("SELECT COALESCE(SUM(amount), 0) FROM stakes", [], |r| {
        r.get(0)
    })?;
    Ok(balances as u64 + stakes as u64)
}

/// Free balance of `address` (rao).
pub(super) fn balance_of(tx: &Transaction<'_>, address: &str) -> Result<u64, ChainError> {
    let b: Option<i64> = tx
        .query_row(
            "SELECT balance FROM accounts WHERE address = ?1",
            [address],
            |r| r.get(0),
        )
        .optional()?;
    Ok(b.unwrap_or(0) as u64)
}

/// Adds `amount` to the balance of `address`.
pub(super) fn credit(tx: &Transaction<'_>, address: &str, amount: u64) -> Result<(), ChainError> {
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

/// Takes `amount` from the balance of `address`; too little is the dispatch `error`.
pub(super) fn debit(
    tx: &Transaction<'_>,
    address: &str,
    amount: u64,
    error: &str,
) -> Result<(), ChainError> {
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

/// The coldkey owning `hotkey`, once it has registered anywhere.
pub(super) fn owner_of(tx: &Transaction<'_>, hotkey: &str) -> Result<Option<String>, ChainError> {
    Ok(tx
        .query_row(
            "SELECT coldkey FROM owners WHERE hotkey = ?1",
            [hotkey],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records `coldkey` as the owner of `hotkey`.
pub(super) fn insert_owner(
    tx: &Transaction<'_>,
    hotkey: &str,
    coldkey: &str,
) -> Result<(), ChainError> {
    tx.execute(
        "INSERT INTO owners (hotkey, coldkey) VALUES (?1, ?2)",
        params![hotkey, coldkey],
    )?;
    Ok(())
}

/// Stake of `coldkey` on `hotkey` in `netuid` (rao).
pub(super) fn stake_of(
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

/// Changes the stake of `coldkey` on `hotkey` in `netuid` by `delta` rao.
pub(super) fn change_stake(
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

/// A subnet row: its hyperparameters and epoch schedule.
pub(super) struct Subnet {
    pub(super) params: Hyperparameters,
    pub(super) last_epoch_block: u64,
    pub(super) epochs: u64,
}

/// The subnet `netuid`; a missing one is the dispatch error `SubnetNotExists`.
pub(super) fn load_subnet(tx: &Transaction<'_>, netuid: u16) -> Result<Subnet, ChainError> {
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

/// All subnet ids, ascending.
pub(super) fn netuids(tx: &Transaction<'_>) -> Result<Vec<u16>, ChainError> {
    let mut stmt = tx.prepare("SELECT netuid FROM subnets ORDER BY netuid")?;
    let netuids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<u16>, _>>()?;
    Ok(netuids)
}

/// Adds a subnet (the next free netuid) created at `block`; returns its netuid.
pub(super) fn insert_subnet(
    tx: &Transaction<'_>,
    owner: &str,
    params: &Hyperparameters,
    block: u64,
) -> Result<u16, ChainError> {
    let netuid: u16 = tx.query_row(
        "SELECT COALESCE(MAX(netuid), 0) + 1 FROM subnets",
        [],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO subnets (netuid, owner, params, created_block, last_epoch_block)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![netuid, owner, to_json(params)?, to_i64(block)?],
    )?;
    Ok(netuid)
}

/// Replaces the hyperparameters of `netuid`.
pub(super) fn update_params(
    tx: &Transaction<'_>,
    netuid: u16,
    params: &Hyperparameters,
) -> Result<(), ChainError> {
    tx.execute(
        "UPDATE subnets SET params = ?2 WHERE netuid = ?1",
        params![netuid, to_json(params)?],
    )?;
    Ok(())
}

/// Records an epoch of `netuid` at block `at`.
pub(super) fn mark_epoch(tx: &Transaction<'_>, netuid: u16, at: u64) -> Result<(), ChainError> {
    tx.execute(
        "UPDATE subnets SET last_epoch_block = ?2, epochs = epochs + 1 WHERE netuid = ?1",
        params![netuid, to_i64(at)?],
    )?;
    Ok(())
}

/// Number of uids in `netuid`.
pub(super) fn subnet_size(tx: &Transaction<'_>, netuid: u16) -> Result<u16, ChainError> {
    Ok(tx.query_row(
        "SELECT COUNT(*) FROM neurons WHERE netuid = ?1",
        [netuid],
        |r| r.get(0),
    )?)
}

/// The uid of `hotkey` in `netuid`, if registered.
pub(super) fn uid_of(
    tx: &Transaction<'_>,
    netuid: u16,
    hotkey: &str,
) -> Result<Option<u16>, ChainError> {
    Ok(tx
        .query_row(
            "SELECT uid FROM neurons WHERE netuid = ?1 AND hotkey = ?2",
            params![netuid, hotkey],
            |r| r.get(0),
        )
        .optional()?)
}

/// The hotkey at `uid` of `netuid`.
pub(super) fn hotkey_at(tx: &Transaction<'_>, netuid: u16, uid: u16) -> Result<String, ChainError> {
    Ok(tx.query_row(
        "SELECT hotkey FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
        |r| r.get(0),
    )?)
}

/// A fresh neuron row for `hotkey` at `uid`, registered (and last updated) at `block`.
pub(super) fn insert_neuron(
    tx: &Transaction<'_>,
    netuid: u16,
    uid: u16,
    hotkey: &str,
    block: u64,
) -> Result<(), ChainError> {
    tx.execute(
        "INSERT INTO neurons (netuid, uid, hotkey, block_at_registration, last_update)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![netuid, uid, hotkey, to_i64(block)?],
    )?;
    Ok(())
}

/// Deletes the neuron row at `uid` of `netuid`.
pub(super) fn delete_neuron(tx: &Transaction<'_>, netuid: u16, uid: u16) -> Result<(), ChainError> {
    tx.execute(
        "DELETE FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
    )?;
    Ok(())
}

/// `(uid, emission, block_at_registration)` of every neuron of `netuid`.
pub(super) fn prune_candidates(
    tx: &Transaction<'_>,
    netuid: u16,
) -> Result<Vec<(u16, u64, u64)>, ChainError> {
    let mut stmt =
        tx.prepare("SELECT uid, emission, block_at_registration FROM neurons WHERE netuid = ?1")?;
    let rows = stmt
        .query_map([netuid], |r| {
            Ok((
                r.get::<_, u16>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The last weights update and the validator permit of `uid` in `netuid`.
pub(super) fn weights_state(
    tx: &Transaction<'_>,
    netuid: u16,
    uid: u16,
) -> Result<(u64, bool), ChainError> {
    let (last_update, permit): (i64, bool) = tx.query_row(
        "SELECT last_update, validator_permit FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((last_update as u64, permit))
}

/// The weights row of every neuron of `netuid`: `(uid, pairs)`.
pub(super) fn all_weights(
    tx: &Transaction<'_>,
    netuid: u16,
) -> Result<Vec<(u16, Pairs)>, ChainError> {
    let mut stmt = tx.prepare("SELECT uid, weights FROM neurons WHERE netuid = ?1")?;
    let rows = stmt
        .query_map([netuid], |r| {
            Ok((r.get::<_, u16>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(uid, blob)| (uid, decode_pairs(&blob)))
        .collect())
}

/// Replaces the weights of `uid`; with `updated_at`, also its last weights update.
pub(super) fn write_weights(
    tx: &Transaction<'_>,
    netuid: u16,
    uid: u16,
    pairs: &[(u16, u16)],
    updated_at: Option<u64>,
) -> Result<(), ChainError> {
    match updated_at {
        Some(block) => tx.execute(
            "UPDATE neurons SET weights = ?3, last_update = ?4 WHERE netuid = ?1 AND uid = ?2",
            params![netuid, uid, encode_pairs(pairs), to_i64(block)?],
        )?,
        None => tx.execute(
            "UPDATE neurons SET weights = ?3 WHERE netuid = ?1 AND uid = ?2",
            params![netuid, uid, encode_pairs(pairs)],
        )?,
    };
    Ok(())
}

/// Block of the last `serve_axon` of `uid` (0 when never served).
pub(super) fn axon_block(tx: &Transaction<'_>, netuid: u16, uid: u16) -> Result<u64, ChainError> {
    let last: i64 = tx.query_row(
        "SELECT axon_block FROM neurons WHERE netuid = ?1 AND uid = ?2",
        params![netuid, uid],
        |r| r.get(0),
    )?;
    Ok(last as u64)
}

/// Stores the axon of `uid`, served at `block`.
pub(super) fn write_axon(
    tx: &Transaction<'_>,
    netuid: u16,
    uid: u16,
    axon: &AxonServe,
    block: u64,
) -> Result<(), ChainError> {
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
    Ok(())
}

/// Stores `hotkey`'s commitment on `netuid`, replacing an earlier one.
pub(super) fn upsert_commitment(
    tx: &Transaction<'_>,
    netuid: u16,
    hotkey: &str,
    data: &[u8],
    block: u64,
) -> Result<(), ChainError> {
    tx.execute(
        "INSERT INTO commitments (netuid, hotkey, data, block) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (netuid, hotkey) DO UPDATE SET data = ?3, block = ?4",
        params![netuid, hotkey, data, to_i64(block)?],
    )?;
    Ok(())
}

/// Deletes `hotkey`'s commitment on `netuid`.
pub(super) fn delete_commitment(
    tx: &Transaction<'_>,
    netuid: u16,
    hotkey: &str,
) -> Result<(), ChainError> {
    tx.execute(
        "DELETE FROM commitments WHERE netuid = ?1 AND hotkey = ?2",
        params![netuid, hotkey],
    )?;
    Ok(())
}

/// The commitments of the registered neurons of `netuid`, ordered by uid.
pub(super) fn load_commitments(
    tx: &Transaction<'_>,
    netuid: u16,
) -> Result<Vec<Commitment>, ChainError> {
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
}

/// A sparse row of `(uid, value)` pairs (weights or bonds).
pub(super) type Pairs = Vec<(u16, u16)>;

/// Encodes sparse `(uid, value)` pairs as little-endian u16 pairs.
fn encode_pairs(pairs: &[(u16, u16)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
        .collect()
}

fn decode_pairs(bytes: &[u8]) -> Pairs {
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
pub(super) struct Row {
    pub(super) info: NeuronInfo,
    pub(super) weights: Pairs,
    pub(super) bonds: Pairs,
}

/// Every neuron row of `netuid`, ordered by uid.
pub(super) fn load_rows(tx: &Transaction<'_>, netuid: u16) -> Result<Vec<Row>, ChainError> {
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

/// The neurons of `netuid` as the metagraph shows them, ordered by uid.
pub(super) fn load_neurons(
    tx: &Transaction<'_>,
    netuid: u16,
) -> Result<Vec<NeuronInfo>, ChainError> {
    Ok(load_rows(tx, netuid)?.into_iter().map(|r| r.info).collect())
}

/// Stores the outputs of an epoch for `rows` (in the order the epoch saw them).
pub(super) fn write_epoch_outputs(
    tx: &Transaction<'_>,
    netuid: u16,
    rows: &[Row],
    out: &EpochOutput,
) -> Result<(), ChainError> {
    let mut update = tx.prepare(
        "UPDATE neurons SET active = ?3, stake_weight = ?4, consensus = ?5, incentive = ?6,
         dividends = ?7, validator_trust = ?8, validator_permit = ?9, emission = ?10, bonds = ?11
         WHERE netuid = ?1 AND uid = ?2",
    )?;
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
    }
    Ok(())
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

/// A weights commit kept on the simulated chain until its reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WeightCommit {
    /// Row id.
    pub(super) id: i64,
    /// Subnet.
    pub(super) netuid: u16,
    /// Committing hotkey SS58.
    pub(super) hotkey: String,
    /// 2 (hash, revealed by the hotkey) or 4 (timelocked, revealed by the chain).
    pub(super) version: u8,
    /// Block that included it.
    pub(super) commit_block: u64,
    /// The subnet's epoch counter at that block.
    pub(super) commit_epoch: u64,
    /// v2: the commit hash.
    pub(super) hash: Option<Vec<u8>>,
    /// v4: the beacon round that opens it.
    pub(super) reveal_round: u64,
    /// v4: the timelock ciphertext.
    pub(super) ciphertext: Option<Vec<u8>>,
}

/// Stores a commit; returns its id.
pub(super) fn insert_commit(tx: &Transaction<'_>, c: &WeightCommit) -> Result<i64, ChainError> {
    tx.execute(
        "INSERT INTO weight_commits
             (netuid, hotkey, version, commit_block, commit_epoch, hash, reveal_round, ciphertext)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            c.netuid,
            c.hotkey,
            c.version,
            to_i64(c.commit_block)?,
            to_i64(c.commit_epoch)?,
            c.hash,
            to_i64(c.reveal_round)?,
            c.ciphertext
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Removes a commit.
pub(super) fn delete_commit(tx: &Transaction<'_>, id: i64) -> Result<(), ChainError> {
    tx.execute("DELETE FROM weight_commits WHERE id = ?1", [id])?;
    Ok(())
}

/// The commits matching `filter` (an SQL condition on `weight_commits` with `?1`, `?2`
/// bound to `a`, `b`), oldest first.
fn commits_where(
    tx: &Transaction<'_>,
    filter: &str,
    a: i64,
    b: &str,
) -> Result<Vec<WeightCommit>, ChainError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT id, netuid, hotkey, version, commit_block, commit_epoch, hash, reveal_round,
                ciphertext
         FROM weight_commits WHERE {filter} ORDER BY id"
    ))?;
    let rows = stmt
        .query_map(params![a, b], |r| {
            Ok(WeightCommit {
                id: r.get(0)?,
                netuid: r.get(1)?,
                hotkey: r.get(2)?,
                version: r.get(3)?,
                commit_block: r.get::<_, i64>(4)? as u64,
                commit_epoch: r.get::<_, i64>(5)? as u64,
                hash: r.get(6)?,
                reveal_round: r.get::<_, i64>(7)? as u64,
                ciphertext: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The commits of `hotkey` on `netuid`, oldest first.
pub(super) fn commits_of(
    tx: &Transaction<'_>,
    netuid: u16,
    hotkey: &str,
) -> Result<Vec<WeightCommit>, ChainError> {
    commits_where(tx, "netuid = ?1 AND hotkey = ?2", i64::from(netuid), hotkey)
}

/// Every commit on `netuid`, oldest first.
pub(super) fn commits_on(
    tx: &Transaction<'_>,
    netuid: u16,
) -> Result<Vec<WeightCommit>, ChainError> {
    commits_where(tx, "netuid = ?1 AND ?2 = ''", i64::from(netuid), "")
}

/// The timelocked commits whose round is at or before `round`, oldest first.
pub(super) fn timelocked_due(
    tx: &Transaction<'_>,
    round: u64,
) -> Result<Vec<WeightCommit>, ChainError> {
    commits_where(
        tx,
        "version = 4 AND reveal_round <= ?1 AND ?2 = ''",
        to_i64(round)?,
        "",
    )
}

/// The chain's beacon secret key, made on first use.
pub(super) fn beacon_secret(tx: &Transaction<'_>) -> Result<Vec<u8>, ChainError> {
    let existing: Option<Vec<u8>> = tx
        .query_row("SELECT secret FROM beacon WHERE id = 0", [], |r| r.get(0))
        .optional()?;
    match existing {
        Some(secret) => Ok(secret),
        None => {
            let secret = crate::chain::timelock::BeaconKey::generate().to_bytes();
            tx.execute("INSERT INTO beacon (id, secret) VALUES (0, ?1)", [&secret])?;
            Ok(secret)
        }
    }
}

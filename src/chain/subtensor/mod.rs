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
//! When the node goes away, the failing call returns [`ChainError::Connection`] and the
//! next call reconnects, with exponential backoff between failed attempts, so a
//! validator keeps scoring meanwhile and sets weights once the node is back.

pub mod calls;
pub mod neurons;

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parity_scale_codec::Encode;
use subxt::dynamic::Value;
use subxt::error::{DispatchError, TransactionEventsError};
use subxt::ext::scale_value::{Composite, Primitive, ValueDef};
use subxt::rpcs::RpcClient;
use subxt::rpcs::client::{JsonrpseeRpcClient, jsonrpsee_client};
use subxt::tx::TransactionStatus;
use subxt::utils::{AccountId32, MultiSignature};
use subxt::{OnlineClient, SubstrateConfig};
use tokio::sync::Mutex;

use crate::chain::{
    AxonServe, Chain, ChainError, Commitment, Hyperparameters, Metagraph, NeuronInfo, Signer,
    TxReceipt,
};
pub use calls::{
    SignerRole, SubtensorCall, WeightsReveal, epoch_index, reveal_window, weights_commit_hash,
};
pub use neurons::{NeuronInfoLite, NeuronsLiteForm, decode_neurons_lite};

/// The subxt client type used throughout.
type Api = OnlineClient<SubstrateConfig>;
/// A subxt client pinned at one block.
type ApiAt = subxt::client::OnlineClientAtBlock<SubstrateConfig>;

const SUBTENSOR: &str = "SubtensorModule";

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

/// How far a transaction must get before a write returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Included in a best block.
    Inclusion,
    /// Included in a finalized block.
    Finalization,
}

/// Tunables of a [`SubtensorChain`].
#[derive(Debug, Clone)]
pub struct SubtensorOptions {
    /// What a write waits for.
    pub wait_for: WaitFor,
    /// Limit on waiting for a transaction to reach `wait_for` (and on connecting).
    pub tx_timeout: Duration,
    /// Limit on one read (connect, metagraph, storage).
    pub request_timeout: Duration,
    /// Wait after the first failed (re)connection attempt; doubled per failure.
    pub backoff_initial: Duration,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
}

impl Default for SubtensorOptions {
    fn default() -> Self {
        Self {
            wait_for: WaitFor::Inclusion,
            tx_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// One live connection: subxt's client and the WebSocket client under it (kept to see
/// whether the socket is still up after a failure).
#[derive(Clone)]
struct Connection {
    api: Api,
    socket: Arc<JsonrpseeRpcClient>,
}

#[derive(Default)]
struct ConnState {
    current: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
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
    /// Connects to `network` (a name from [`NETWORKS`] or a URL); `endpoint` overrides
    /// the URL (`--subtensor.chain_endpoint`). Fetches the runtime metadata before
    /// returning, so a node that is not a usable subtensor fails here.
    pub async fn connect(
        network: &str,
        endpoint: Option<&str>,
        options: SubtensorOptions,
    ) -> Result<Self, ChainError> {
        let endpoint = match endpoint {
            Some(url) => resolve_endpoint(url)?,
            None => resolve_endpoint(network)?,
        };
        let conn = match tokio::time::timeout(options.request_timeout, open(&endpoint)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(reason)) => {
                return Err(ChainError::Connection(format!(
                    "cannot connect to subtensor at {endpoint}: {reason}"
                )));
            }
            Err(_) => {
                return Err(ChainError::Timeout {
                    what: format!("subtensor at {endpoint} to answer"),
                    seconds: options.request_timeout.as_secs_f64().ceil() as u64,
                });
            }
        };
        Ok(Self {
            network: network.to_string(),
            endpoint,
            options,
            state: Mutex::new(ConnState {
                current: Some(conn),
                ..ConnState::default()
            }),
        })
    }

    /// The WebSocket URL in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The runtime's spec version at the latest finalized block.
    pub async fn spec_version(&self) -> Result<u32, ChainError> {
        self.read(|at| async move { Ok(at.spec_version()) }).await
    }

    /// Whether `netuid` requires commit-reveal for weights (`CommitRevealWeightsEnabled`).
    pub async fn commit_reveal_enabled(&self, netuid: u16) -> Result<bool, ChainError> {
        self.read(move |at| async move {
            ensure_subnet(&at, netuid).await?;
            let value = fetch_subnet_value(&at, "CommitRevealWeightsEnabled", netuid).await?;
            value_bool(&value).ok_or_else(|| decode_err("CommitRevealWeightsEnabled", &value))
        })
        .await
    }

    /// The blocks in which weights committed at `commit_block` on `netuid` can be
    /// revealed (see [`calls::reveal_window`]), from the subnet's `Tempo` and
    /// `RevealPeriodEpochs`.
    pub async fn reveal_window(
        &self,
        netuid: u16,
        commit_block: u64,
    ) -> Result<RangeInclusive<u64>, ChainError> {
        self.read(move |at| async move {
            ensure_subnet(&at, netuid).await?;
            let tempo = fetch_subnet_u64(&at, "Tempo", netuid).await?;
            let period = fetch_subnet_u64(&at, "RevealPeriodEpochs", netuid).await?;
            Ok(calls::reveal_window(netuid, tempo, period, commit_block))
        })
        .await
    }

    /// Commits weights with commit-reveal v2 (`commit_weights` with the blake2 hash of
    /// `reveal`), signed by the hotkey. Keep `reveal` and send it with
    /// [`Self::reveal_weights`] in the reveal epoch.
    pub async fn commit_weights(
        &self,
        hotkey: &dyn Signer,
        reveal: &WeightsReveal,
    ) -> Result<TxReceipt, ChainError> {
        let hash = reveal.commit_hash(hotkey.public());
        let call = SubtensorCall::commit_weights(reveal.netuid, hash);
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    /// Reveals weights committed with [`Self::commit_weights`], signed by the hotkey.
    pub async fn reveal_weights(
        &self,
        hotkey: &dyn Signer,
        reveal: &WeightsReveal,
    ) -> Result<TxReceipt, ChainError> {
        let call = SubtensorCall::reveal_weights(reveal);
        Ok(self.submit(&call, hotkey).await?.receipt)
    }

    /// The current connection, (re)connecting if there is none and the backoff allows.
    async fn connection(&self) -> Result<Connection, ChainError> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.current {
            return Ok(conn.clone());
        }
        if let Some(at) = state.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(ChainError::Connection(format!(
                    "{} unreachable after {} attempt(s); next attempt in {:.1} s",
                    self.endpoint,
                    state.failures,
                    (at - now).as_secs_f64()
                )));
            }
        }
        match tokio::time::timeout(self.options.request_timeout, open(&self.endpoint)).await {
            Ok(Ok(conn)) => {
                if state.failures > 0 {
                    tracing::info!(endpoint = %self.endpoint, "reconnected to subtensor");
                }
                state.failures = 0;
                state.retry_at = None;
                state.current = Some(conn.clone());
                Ok(conn)
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(e)) => e,
                    _ => format!("no answer within {:?}", self.options.request_timeout),
                };
                state.failures += 1;
                let exp = state.failures.saturating_sub(1).min(16);
                let wait = self
                    .options
                    .backoff_initial
                    .saturating_mul(1u32 << exp)
                    .min(self.options.backoff_max);
                state.retry_at = Some(Instant::now() + wait);
                tracing::warn!(endpoint = %self.endpoint, attempt = state.failures, retry_in = ?wait, %reason, "subtensor connection failed");
                Err(ChainError::Connection(format!(
                    "{}: {reason} (attempt {}; next in {:.1} s)",
                    self.endpoint,
                    state.failures,
                    wait.as_secs_f64()
                )))
            }
        }
    }

    /// After a failed call: forget the connection if its socket is closed, so the next
    /// call reconnects. Returns whether it was dropped.
    async fn check_socket(&self, conn: &Connection) -> bool {
        if conn.socket.is_connected() {
            return false;
        }
        let mut state = self.state.lock().await;
        if let Some(current) = &state.current
            && Arc::ptr_eq(&current.socket, &conn.socket)
        {
            tracing::warn!(endpoint = %self.endpoint, "subtensor connection lost; will reconnect");
            state.current = None;
        }
        true
    }

    /// Runs a read at the latest finalized block; on a lost connection, reconnects once
    /// and retries (reads are idempotent).
    async fn read<R, F, Fut>(&self, op: F) -> Result<R, ChainError>
    where
        F: Fn(ApiAt) -> Fut,
        Fut: Future<Output = Result<R, ChainError>>,
    {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let attempt = async {
                let at = conn.api.at_current_block().await.map_err(rpc_err)?;
                op(at).await
            };
            let result = match tokio::time::timeout(self.options.request_timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(ChainError::Timeout {
                    what: "a subtensor read".into(),
                    seconds: self.options.request_timeout.as_secs_f64().ceil() as u64,
                }),
            };
            match result {
                Err(e) if self.check_socket(&conn).await && !retried => {
                    tracing::debug!(error = %e, "retrying read after reconnect");
                    retried = true;
                }
                Err(e) if !conn.socket.is_connected() => {
                    return Err(ChainError::Connection(format!("{}: {e}", self.endpoint)));
                }
                other => return other,
            }
        }
    }

    /// Signs `call` with `signer`, submits it and waits for `wait_for`. Dispatch failures
    /// come back as typed [`ChainError`]s with the chain's error name and docs. Not
    /// retried: a lost connection is reported, and the next call reconnects.
    async fn submit(
        &self,
        call: &SubtensorCall,
        signer: &dyn Signer,
    ) -> Result<Submitted, ChainError> {
        tracing::debug!(
            call = %format!("{}.{}", call.pallet(), call.name()),
            signer = %signer.ss58(),
            role = ?call.signer(),
            "submitting"
        );
        let conn = self.connection().await?;
        let seconds = self.options.tx_timeout.as_secs_f64().ceil() as u64;
        let work = submit_on(&conn.api, call, signer, self.options.wait_for);
        let result = match tokio::time::timeout(self.options.tx_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ChainError::Timeout {
                what: format!(
                    "{}.{} to be {}",
                    call.pallet(),
                    call.name(),
                    self.wait_word()
                ),
                seconds,
            }),
        };
        if result.is_err() && self.check_socket(&conn).await {
            return result.map_err(|e| match e {
                ChainError::Connection(_) => e,
                other => ChainError::Connection(format!(
                    "{}: lost during {}.{}: {other}",
                    self.endpoint,
                    call.pallet(),
                    call.name()
                )),
            });
        }
        result
    }

    fn wait_word(&self) -> &'static str {
        match self.options.wait_for {
            WaitFor::Inclusion => "included",
            WaitFor::Finalization => "finalized",
        }
    }
}

/// Opens the WebSocket and fetches the runtime metadata (at the latest finalized block).
async fn open(endpoint: &str) -> Result<Connection, String> {
    let socket = Arc::new(
        jsonrpsee_client(endpoint)
            .await
            .map_err(|e| e.to_string())?,
    );
    let api = Api::from_rpc_client(RpcClient::new(socket.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let at = api.at_current_block().await.map_err(|e| e.to_string())?;
    tracing::info!(
        endpoint,
        spec_version = at.spec_version(),
        block = at.block_number(),
        "connected to subtensor"
    );
    Ok(Connection { api, socket })
}

/// A transaction that reached the wanted state, with a client at its block.
struct Submitted {
    receipt: TxReceipt,
    at: ApiAt,
}

async fn submit_on(
    api: &Api,
    call: &SubtensorCall,
    signer: &dyn Signer,
    wait_for: WaitFor,
) -> Result<Submitted, ChainError> {
    let at = api.at_current_block().await.map_err(rpc_err)?;
    // Sign outside subxt: our signer is fallible (a public-only key cannot sign).
    let account = AccountId32(signer.public());
    let payload = call.payload();
    let refused = |e: subxt::error::ExtrinsicError| ChainError::Rejected {
        error: "InvalidTransaction".into(),
        reason: format!("{}.{} refused by the node: {e}", call.pallet(), call.name()),
    };
    let mut signable = at
        .tx()
        .create_signable(&payload, &account, Default::default())
        .await
        .map_err(rpc_err)?;
    let signer_payload = signable
        .signer_payload()
        .map_err(|e| ChainError::InvalidInput(format!("{}.{}: {e}", call.pallet(), call.name())))?;
    let signature = MultiSignature::Sr25519(signer.sign(&signer_payload)?);
    let mut progress = signable
        .sign_with_account_and_signature(&account, &signature)
        .map_err(refused)?
        .submit_and_watch()
        .await
        .map_err(refused)?;
    while let Some(status) = progress.next().await {
        let status = status.map_err(rpc_err)?;
        let in_block = match status {
            TransactionStatus::InBestBlock(b) if wait_for == WaitFor::Inclusion => b,
            TransactionStatus::InFinalizedBlock(b) => b,
            TransactionStatus::Invalid { message } => {
                return Err(ChainError::Rejected {
                    error: "Invalid".into(),
                    reason: message,
                });
            }
            TransactionStatus::Dropped { message } => {
                return Err(ChainError::Rejected {
                    error: "Dropped".into(),
                    reason: message,
                });
            }
            TransactionStatus::Error { message } => return Err(ChainError::Connection(message)),
            _ => continue,
        };
        in_block.wait_for_success().await.map_err(events_err)?;
        let at = in_block.at().await.map_err(rpc_err)?;
        let receipt = TxReceipt {
            block: at.block_number(),
            hash: Some(format!("0x{}", hex::encode(in_block.extrinsic_hash()))),
        };
        tracing::info!(call = %format!("{}.{}", call.pallet(), call.name()), block = receipt.block, "transaction succeeded");
        return Ok(Submitted { receipt, at });
    }
    Err(ChainError::Connection(
        "transaction status stream ended before the transaction was included".into(),
    ))
}

fn rpc_err(e: impl std::fmt::Display) -> ChainError {
    ChainError::Connection(e.to_string())
}

fn events_err(e: TransactionEventsError) -> ChainError {
    match e {
        TransactionEventsError::ExtrinsicFailed(DispatchError::Module(module)) => {
            match module.details() {
                Ok(details) => ChainError::from_dispatch(
                    &details.variant.name,
                    format!(
                        "{}.{}: {}",
                        details.pallet.name(),
                        details.variant.name,
                        details.variant.docs.join(" ")
                    ),
                ),
                Err(_) => ChainError::Rejected {
                    error: format!(
                        "Module({}, {})",
                        module.pallet_index(),
                        module.error_index()
                    ),
                    reason: "pallet error not described by the metadata".into(),
                },
            }
        }
        TransactionEventsError::ExtrinsicFailed(other) => ChainError::Rejected {
            error: format!("{other:?}"),
            reason: other.to_string(),
        },
        other => ChainError::Decode(other.to_string()),
    }
}

fn decode_err(what: &str, value: &Value) -> ChainError {
    ChainError::Decode(format!("unexpected value for {what}: {value}"))
}

/// Parses an SS58 address into its 32-byte account id.
pub fn parse_account(ss58: &str) -> Result<[u8; 32], ChainError> {
    AccountId32::from_str(ss58)
        .map(|a| a.0)
        .map_err(|e| ChainError::InvalidInput(format!("bad SS58 address {ss58:?}: {e}")))
}

/// The SS58 address (format 42) of a 32-byte account id.
pub fn ss58(account: [u8; 32]) -> String {
    AccountId32(account).to_string()
}

/// Unwraps single-field composites (`NetUid(u16)`, `TaoCurrency(u64)`, ...) to the
/// primitive inside.
fn unwrap_newtype(value: &Value) -> &Value {
    match &value.value {
        ValueDef::Composite(c) if c.len() == 1 => {
            unwrap_newtype(c.values().next().unwrap_or(value))
        }
        _ => value,
    }
}

fn value_u128(value: &Value) -> Option<u128> {
    match &unwrap_newtype(value).value {
        ValueDef::Primitive(Primitive::U128(v)) => Some(*v),
        _ => None,
    }
}

fn value_bool(value: &Value) -> Option<bool> {
    match &unwrap_newtype(value).value {
        ValueDef::Primitive(Primitive::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// The items of a sequence, looking through newtype wrappers such as `BoundedVec`.
fn seq_items(value: &Value) -> Option<Vec<&Value>> {
    match &value.value {
        ValueDef::Composite(c) => {
            let items: Vec<&Value> = c.values().collect();
            match items.as_slice() {
                [inner] if matches!(inner.value, ValueDef::Composite(_)) => seq_items(inner),
                _ => Some(items),
            }
        }
        _ => None,
    }
}

/// Bytes of a sequence/array of u8 values (possibly newtype-wrapped).
fn value_bytes(value: &Value) -> Option<Vec<u8>> {
    seq_items(value)?
        .into_iter()
        .map(|v| match &v.value {
            ValueDef::Primitive(Primitive::U128(b)) => u8::try_from(*b).ok(),
            _ => None,
        })
        .collect()
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match &value.value {
        ValueDef::Composite(Composite::Named(fields)) => {
            fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
        }
        _ => None,
    }
}

/// Reads `SubtensorModule.<entry>(netuid)` (default when unset) as a dynamic value.
async fn fetch_subnet_value(at: &ApiAt, entry: &str, netuid: u16) -> Result<Value, ChainError> {
    let addr = subxt::dynamic::storage::<(u16,), Value>(SUBTENSOR, entry);
    let value = at
        .storage()
        .fetch(addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}({netuid}): {e}")))?;
    value
        .decode()
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}({netuid}): {e}")))
}

async fn fetch_subnet_u64(at: &ApiAt, entry: &str, netuid: u16) -> Result<u64, ChainError> {
    let value = fetch_subnet_value(at, entry, netuid).await?;
    value_u128(&value)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| decode_err(entry, &value))
}

async fn fetch_subnet_u16(at: &ApiAt, entry: &str, netuid: u16) -> Result<u16, ChainError> {
    let v = fetch_subnet_u64(at, entry, netuid).await?;
    u16::try_from(v).map_err(|_| ChainError::Decode(format!("{entry}({netuid}) = {v} exceeds u16")))
}

/// Fails with [`ChainError::SubnetNotFound`] unless `NetworksAdded(netuid)` is set.
async fn ensure_subnet(at: &ApiAt, netuid: u16) -> Result<(), ChainError> {
    let value = fetch_subnet_value(at, "NetworksAdded", netuid).await?;
    match value_bool(&value) {
        Some(true) => Ok(()),
        Some(false) => Err(ChainError::SubnetNotFound {
            error: "SubnetNotExists".into(),
            reason: format!("subnet {netuid} does not exist on this chain"),
        }),
        None => Err(decode_err("NetworksAdded", &value)),
    }
}

/// `(uid → value)` of a double map keyed `(netuid, uid)`, e.g. `BlockAtRegistration`.
async fn uid_map_u64(
    at: &ApiAt,
    entry: &str,
    netuid: u16,
) -> Result<HashMap<u16, u64>, ChainError> {
    let addr = subxt::dynamic::storage::<(u16, u16), Value>(SUBTENSOR, entry);
    let mut entries = at
        .storage()
        .iter(addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("{SUBTENSOR}.{entry}({netuid}, *): {e}")))?;
    let mut out = HashMap::new();
    while let Some(kv) = entries.next().await {
        let kv = kv.map_err(|e| ChainError::Decode(format!("{entry}: {e}")))?;
        let (_, uid) = kv
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::Decode(format!("{entry} key: {e}")))?;
        let value = kv
            .value()
            .decode()
            .map_err(|e| ChainError::Decode(format!("{entry} value: {e}")))?;
        let v = value_u128(&value)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| decode_err(entry, &value))?;
        out.insert(uid, v);
    }
    Ok(out)
}

async fn read_metagraph(at: ApiAt, netuid: u16) -> Result<Metagraph, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let form = NeuronsLiteForm::from_metadata(at.metadata_ref())?;
    let bytes = at
        .runtime_apis()
        .call_raw(
            &format!("{}_{}", neurons::NEURON_INFO_API, neurons::GET_NEURONS_LITE),
            Some(&netuid.encode()),
        )
        .await
        .map_err(rpc_err)?;
    let lite = decode_neurons_lite(&bytes, form)?;
    let registered_at = uid_map_u64(&at, "BlockAtRegistration", netuid).await?;
    let mut neurons: Vec<NeuronInfo> = lite
        .into_iter()
        .map(|n| {
            let axon = n.axon_info.ip_addr().map(|ip| AxonServe {
                version: n.axon_info.version,
                ip,
                port: n.axon_info.port,
                protocol: n.axon_info.protocol,
            });
            NeuronInfo {
                uid: n.uid,
                hotkey: ss58(n.hotkey),
                coldkey: ss58(n.coldkey),
                stake: n.total_stake(),
                trust: n.trust,
                validator_trust: n.validator_trust,
                consensus: n.consensus,
                incentive: n.incentive,
                dividends: n.dividends,
                emission: n.emission,
                validator_permit: n.validator_permit,
                last_update: n.last_update,
                block_at_registration: registered_at.get(&n.uid).copied().unwrap_or(0),
                active: n.active,
                axon_block: if axon.is_some() { n.axon_info.block } else { 0 },
                axon,
            }
        })
        .collect();
    neurons.sort_by_key(|n| n.uid);
    Ok(Metagraph {
        netuid,
        block: at.block_number(),
        neurons,
    })
}

async fn read_hyperparameters(at: ApiAt, netuid: u16) -> Result<Hyperparameters, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let cr = fetch_subnet_value(&at, "CommitRevealWeightsEnabled", netuid).await?;
    Ok(Hyperparameters {
        tempo: fetch_subnet_u16(&at, "Tempo", netuid).await?,
        immunity_period: fetch_subnet_u16(&at, "ImmunityPeriod", netuid).await?,
        max_allowed_uids: fetch_subnet_u16(&at, "MaxAllowedUids", netuid).await?,
        min_allowed_weights: fetch_subnet_u16(&at, "MinAllowedWeights", netuid).await?,
        max_weight_limit: fetch_subnet_u16(&at, "MaxWeightsLimit", netuid).await?,
        weights_rate_limit: fetch_subnet_u64(&at, "WeightsSetRateLimit", netuid).await?,
        kappa: fetch_subnet_u16(&at, "Kappa", netuid).await?,
        bonds_moving_average: fetch_subnet_u64(&at, "BondsMovingAverage", netuid).await?,
        bonds_penalty: fetch_subnet_u16(&at, "BondsPenalty", netuid).await?,
        activity_cutoff: fetch_subnet_u16(&at, "ActivityCutoff", netuid).await?,
        max_allowed_validators: fetch_subnet_u16(&at, "MaxAllowedValidators", netuid).await?,
        weights_version_key: fetch_subnet_u64(&at, "WeightsVersionKey", netuid).await?,
        commit_reveal_weights_enabled: value_bool(&cr)
            .ok_or_else(|| decode_err("CommitRevealWeightsEnabled", &cr))?,
        burn: fetch_subnet_u64(&at, "Burn", netuid).await?,
        serving_rate_limit: fetch_subnet_u64(&at, "ServingRateLimit", netuid).await?,
    })
}

/// The bytes of a commitment's first field: `Raw*`/`BigRaw` data, or the 32 bytes of a
/// hash variant; `None` for an empty field.
fn commitment_bytes(data: &Value) -> Option<Vec<u8>> {
    match &data.value {
        ValueDef::Variant(v) if v.name == "None" => None,
        ValueDef::Variant(v) => v.values.values().next().and_then(value_bytes),
        _ => None,
    }
}

async fn read_commitments(at: ApiAt, netuid: u16) -> Result<Vec<Commitment>, ChainError> {
    ensure_subnet(&at, netuid).await?;
    let uids_addr = subxt::dynamic::storage::<(u16, [u8; 32]), Value>(SUBTENSOR, "Uids");
    let mut uid_of = HashMap::new();
    let mut entries = at
        .storage()
        .iter(uids_addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("Uids({netuid}, *): {e}")))?;
    while let Some(kv) = entries.next().await {
        let kv = kv.map_err(|e| ChainError::Decode(format!("Uids: {e}")))?;
        let (_, hotkey) = kv
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::Decode(format!("Uids key: {e}")))?;
        let value = kv
            .value()
            .decode()
            .map_err(|e| ChainError::Decode(format!("Uids value: {e}")))?;
        let uid = value_u128(&value)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| decode_err("Uids", &value))?;
        uid_of.insert(hotkey, uid);
    }

    let addr = subxt::dynamic::storage::<(u16, [u8; 32]), Value>("Commitments", "CommitmentOf");
    let mut entries = at
        .storage()
        .iter(addr, (netuid,))
        .await
        .map_err(|e| ChainError::Decode(format!("CommitmentOf({netuid}, *): {e}")))?;
    let mut out = Vec::new();
    while let Some(kv) = entries.next().await {
        let kv = kv.map_err(|e| ChainError::Decode(format!("CommitmentOf: {e}")))?;
        let (_, account) = kv
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::Decode(format!("CommitmentOf key: {e}")))?;
        let Some(&uid) = uid_of.get(&account) else {
            continue;
        };
        let value = kv
            .value()
            .decode()
            .map_err(|e| ChainError::Decode(format!("CommitmentOf value: {e}")))?;
        let block = field(&value, "block")
            .and_then(value_u128)
            .and_then(|b| u64::try_from(b).ok())
            .ok_or_else(|| decode_err("CommitmentOf.block", &value))?;
        let first = field(&value, "info")
            .and_then(|info| field(info, "fields"))
            .and_then(seq_items)
            .and_then(|items| items.first().map(|v| (*v).clone()));
        out.push(Commitment {
            uid,
            hotkey: ss58(account),
            data: first
                .as_ref()
                .and_then(commitment_bytes)
                .unwrap_or_default(),
            block,
        });
    }
    out.sort_by_key(|c| c.uid);
    Ok(out)
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
        self.read(move |at| read_metagraph(at, netuid)).await
    }

    async fn hyperparameters(&self, netuid: u16) -> Result<Hyperparameters, ChainError> {
        self.read(move |at| read_hyperparameters(at, netuid)).await
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
                     commit the weights first (SubtensorChain::commit_weights, CR v2) and reveal \
                     them in the reveal epoch"
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
        let addr = subxt::dynamic::storage::<(u16, [u8; 32]), Value>(SUBTENSOR, "Uids");
        let value = done
            .at
            .storage()
            .try_fetch(addr, (netuid, hotkey_id))
            .await
            .map_err(rpc_err)?
            .ok_or_else(|| {
                ChainError::Decode(format!(
                    "registration of {hotkey} succeeded but Uids({netuid}, hotkey) is empty at block {}",
                    done.receipt.block
                ))
            })?
            .decode()
            .map_err(|e| ChainError::Decode(format!("Uids value: {e}")))?;
        value_u128(&value)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| decode_err("Uids", &value))
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
        self.read(move |at| read_commitments(at, netuid)).await
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

    #[test]
    fn ss58_round_trips_and_rejects_garbage() {
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        let id = parse_account(alice).unwrap();
        assert_eq!(ss58(id), alice);
        assert!(matches!(
            parse_account("not-an-address"),
            Err(ChainError::InvalidInput(_))
        ));
    }

    #[test]
    fn newtypes_unwrap_to_primitives() {
        let wrapped = Value::unnamed_composite([Value::u128(42)]);
        assert_eq!(value_u128(&wrapped), Some(42));
        assert_eq!(value_bool(&Value::bool(true)), Some(true));
        assert_eq!(value_bytes(&Value::from_bytes(b"ab")), Some(b"ab".to_vec()));
        // A one-byte array and a BoundedVec-wrapped one keep their bytes.
        assert_eq!(value_bytes(&Value::from_bytes(b"a")), Some(b"a".to_vec()));
        let bounded = Value::unnamed_composite([Value::from_bytes(b"xyz")]);
        assert_eq!(value_bytes(&bounded), Some(b"xyz".to_vec()));
        assert_eq!(value_u128(&Value::bool(true)), None);
    }
}

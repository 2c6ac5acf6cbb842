//! The connection to a subtensor node: connecting (with a timeout), reconnecting with
//! exponential backoff after the socket drops, running reads at the latest finalized
//! block (retried once after a reconnect), and signing, submitting and watching
//! extrinsics until they are included or finalized ([`WaitFor`]), with dispatch errors
//! mapped to typed [`ChainError`]s.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use subxt::error::{DispatchError, TransactionEventsError};
use subxt::rpcs::RpcClient;
use subxt::rpcs::client::{JsonrpseeRpcClient, jsonrpsee_client};
use subxt::tx::TransactionStatus;
use subxt::utils::{AccountId32, MultiSignature};
use tokio::sync::Mutex;

use super::{Api, ApiAt, SubtensorCall, SubtensorChain, resolve_endpoint};
use crate::chain::{ChainError, Signer, TxReceipt};

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
pub(super) struct Connection {
    api: Api,
    socket: Arc<JsonrpseeRpcClient>,
}

#[derive(Default)]
pub(super) struct ConnState {
    current: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
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

    /// The current connection, (re)connecting if there is none and the backoff allows.
    pub(super) async fn connection(&self) -> Result<Connection, ChainError> {
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
    pub(super) async fn read<R, F, Fut>(&self, op: F) -> Result<R, ChainError>
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
    pub(super) async fn submit(
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
pub(super) struct Submitted {
    pub(super) receipt: TxReceipt,
    pub(super) at: ApiAt,
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

pub(super) fn rpc_err(e: impl std::fmt::Display) -> ChainError {
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

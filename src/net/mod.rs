//! The bittensor wire protocols: the Synapse protocol (SDK v7.2–v10.x: synapse types,
//! the axon (server) and dendrite (client), request signing and nonce rules), the
//! signed-request schemes of bittensor 11 (`btauth/1`) and SN1 v2 (Epistula v2)
//! ([`auth`]), which the same axon port accepts, the OpenAI-style chat routes
//! ([`openai`]), and the transports a validator asks miners over ([`Transport`],
//! [`Dendrite::ask`]). See `docs/wire.md`.

pub mod auth;
mod axon;
mod dendrite;
mod metrics;
pub mod openai;
mod pyrepr;
mod synapse;
mod transport;

use std::time::{SystemTime, UNIX_EPOCH};

pub use auth::AuthScheme;
pub use axon::{
    Axon, AxonHandler, AxonOptions, ChatStream, Forwarded, HandlerError, NonceError, NonceTracker,
};
pub use dendrite::{
    Dendrite, DendriteOptions, DendritePool, DendriteResponse, DendriteStream, PooledSession,
};
pub use pyrepr::{float_repr, py_repr, py_str};
pub use synapse::{
    DEFAULT_TIMEOUT, Field, FieldType, PromptingSynapse, StreamPromptingSynapse, Synapse,
    SynapseSchema, TerminalInfo, base_schema,
};
pub use transport::{AskOptions, MinerAnswer, Transport};

/// The SDK version we speak, as `version_as_int` (10.5.0 → 10005000).
pub const VERSION_AS_INT: i64 = 10_005_000;
/// The freshness allowance added to a request's timeout (`ALLOWED_DELTA`, 4 s).
pub const ALLOWED_DELTA_NS: i64 = 4_000_000_000;

/// Errors of the wire-protocol layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A synapse schema is invalid.
    #[error("synapse schema: {0}")]
    Schema(String),
    /// A field value does not fit its declared type.
    #[error("synapse field: {0}")]
    Field(String),
    /// Headers or a body could not be parsed into a synapse.
    #[error("parse: {0}")]
    Parse(String),
    /// Binding or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
    /// A signing key is missing its secret.
    #[error(transparent)]
    Wallet(#[from] crate::wallet::WalletError),
}

/// Where an axon is served, as the chain's `AxonInfo` records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AxonInfo {
    /// IP address (textual).
    pub ip: String,
    /// Port.
    pub port: u16,
    /// The axon's hotkey (SS58); requests are signed to it.
    pub hotkey: String,
    /// The owning coldkey (SS58), when known.
    #[serde(default)]
    pub coldkey: String,
    /// The axon's SDK version int.
    #[serde(default)]
    pub version: i64,
}

impl AxonInfo {
    /// An axon at `ip:port` with `hotkey`.
    pub fn new(ip: impl Into<String>, port: u16, hotkey: impl Into<String>) -> Self {
        Self {
            ip: ip.into(),
            port,
            hotkey: hotkey.into(),
            coldkey: String::new(),
            version: VERSION_AS_INT,
        }
    }

    /// The axon `neuron` serves on chain, or an unroutable one (IP 0, port 0) that a
    /// dendrite answers with 503, like the SDK's, when it serves none.
    pub fn of_neuron(neuron: &crate::chain::NeuronInfo) -> Self {
        match &neuron.axon {
            Some(axon) => Self::new(axon.ip.to_string(), axon.port, neuron.hotkey.clone()),
            None => Self::new("0.0.0.0", 0, neuron.hotkey.clone()),
        }
    }

    /// Whether the axon is serving (the chain uses IP 0 for "not serving").
    pub fn is_serving(&self) -> bool {
        !self.ip.is_empty() && self.ip != "0.0.0.0" && self.ip != "0"
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch (`time.time_ns()`).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The message a dendrite signs: `{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}`.
pub fn signing_message(
    nonce: i64,
    dendrite: &str,
    axon: &str,
    uuid: &str,
    body_hash: &str,
) -> String {
    format!("{nonce}.{dendrite}.{axon}.{uuid}.{body_hash}")
}

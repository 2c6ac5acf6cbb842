//! The OpenAI-compatible API a validator offers to people and programs (`--api.port`):
//! `POST /v1/chat/completions` (streamed or not), `GET /v1/models`, `GET /health`,
//! with bearer keys ([`keys`]), per-key limits ([`limits`]) and OpenAI-style error
//! JSON ([`server`]). What answers a chat request is a [`ChatBackend`]: the subnet's
//! is `prompting::organic` (miners chosen by incentive, the first good answer
//! streamed, every answer scored as organic traffic). See `docs/api.md`.

pub mod keys;
pub mod limits;
pub mod server;

use futures::stream::BoxStream;

use crate::net::openai::ChatCompletionRequest;

pub use keys::{KeyError, KeyInfo, KeyStore};
pub use server::{ApiOptions, ApiServer};

/// One admitted chat request, as a backend gets it.
#[derive(Debug, Clone)]
pub struct ChatQuery {
    /// The name of the key that asked.
    pub key: String,
    /// The model asked for (one of [`ChatBackend::models`]).
    pub model: String,
    /// The request as sent (its `messages` checked non-empty, each a known role).
    pub request: ChatCompletionRequest,
    /// The uids the body named (`"uids": [..]`), if it named any.
    pub uids: Option<Vec<u16>>,
}

/// A backend's answer: who answers, its first piece of text (non-empty) and the rest
/// as it comes. Dropping `rest` before its end cancels the work behind it.
pub struct ChatReply {
    /// Who answers (e.g. `uid 3`), sent as the `x-neuron-miner` header.
    pub source: String,
    /// The first text.
    pub first: String,
    /// The following text, in pieces.
    pub rest: BoxStream<'static, String>,
}

/// Why a backend could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The request cannot be served as asked (400).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing could answer (503), and why.
    #[error("{0}")]
    Unavailable(String),
}

/// What answers the API's chat requests.
#[async_trait::async_trait]
pub trait ChatBackend: Send + Sync {
    /// The model names served (`GET /v1/models`); the first is the default.
    fn models(&self) -> Vec<String>;

    /// Answers `query`: returns once the first text exists (or nothing will).
    async fn chat(&self, query: ChatQuery) -> Result<ChatReply, BackendError>;
}

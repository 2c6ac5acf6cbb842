//! Where the chat model and the sentence embedder run: in this process (candle's
//! [`LlmService`] and [`Embedder`], the default) or on an OpenAI-compatible inference
//! server ([`remote`]: vLLM, SGLang, TGI, llama.cpp's server). Task scripts, miner
//! strategies and the validator's scoring reach both through [`ChatBackend`] and
//! [`EmbedBackend`] and do not know which one answers.

pub mod remote;

pub use remote::{RemoteClient, RemoteConfig, RemoteError};

use crate::embed::{EmbedError, Embedder};
use crate::llm::{ChatMessage, Generation, LlmError, LlmService, RequestOptions, SamplingParams};

/// Why a backend request failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The embedded chat model failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The embedded embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The inference server failed (the message names its URL).
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// The chat model: embedded, or a server's.
#[derive(Debug)]
pub enum ChatBackend {
    /// candle, in this process.
    Embedded(LlmService),
    /// An OpenAI-compatible server.
    Remote(RemoteClient),
}

impl ChatBackend {
    /// Generates a reply to `messages`, blocking: within `options.timeout`, its text
    /// sent to `options.stream` as it is produced; seed, sampling and logprobs as
    /// `params` asks (a server passes on those it supports).
    pub fn chat_blocking_with(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        options: RequestOptions,
    ) -> Result<Generation, BackendError> {
        match self {
            Self::Embedded(service) => Ok(service.chat_blocking_with(messages, params, options)?),
            Self::Remote(client) => Ok(client.chat(&messages, &params, &options)?),
        }
    }
}

/// The sentence embedder: embedded, or a server's `/v1/embeddings`.
pub enum EmbedBackend {
    /// candle, in this process.
    Embedded(Box<Embedder>),
    /// An OpenAI-compatible server.
    Remote(RemoteClient),
}

impl std::fmt::Debug for EmbedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded(embedder) => write!(f, "Embedded({} dimensions)", embedder.dim()),
            Self::Remote(client) => f.debug_tuple("Remote").field(client).finish(),
        }
    }
}

impl EmbedBackend {
    /// One vector per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        match self {
            Self::Embedded(embedder) => Ok(embedder.embed(texts)?),
            Self::Remote(client) => Ok(client.embed(texts)?),
        }
    }
}

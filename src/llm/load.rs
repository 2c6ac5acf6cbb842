//! Concurrent load, timed from the client's side: `concurrency` streaming chat requests
//! started together, each with its own prompt, against [`LlmService`] in-process
//! ([`engine_request`]) or any OpenAI-compatible server (llama.cpp's `llama-server`,
//! vLLM) over HTTP (`net::openai::timed_chat_stream`). One driver measures both, so
//! their figures compare: time to first token, per-request decode rate, and aggregate
//! tokens per second of wall time.

use std::future::Future;
use std::time::Instant;

use super::{ChatMessage, LlmError, LlmService, RequestOptions, SamplingParams};

/// One request's timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// Seconds from sending the request to its first piece of text.
    pub first_token_s: f64,
    /// Seconds from sending it to its last piece.
    pub total_s: f64,
    /// Completion tokens.
    pub tokens: usize,
}

impl Timed {
    /// Tokens per second after the first one arrived.
    pub fn decode_tok_s(&self) -> f64 {
        let decoding = self.total_s - self.first_token_s;
        if self.tokens < 2 || decoding <= 0.0 {
            return 0.0;
        }
        (self.tokens - 1) as f64 / decoding
    }
}

/// One concurrency level: requests started together, and the wall time until the last
/// one ended.
#[derive(Debug, Clone)]
pub struct Level {
    /// Requests in flight together.
    pub concurrency: usize,
    /// Seconds from the start to the end of the last request.
    pub wall_s: f64,
    /// Each request's timings.
    pub requests: Vec<Timed>,
}

impl Level {
    /// Completion tokens of all requests per second of wall time.
    pub fn aggregate_tok_s(&self) -> f64 {
        let tokens: usize = self.requests.iter().map(|r| r.tokens).sum();
        tokens as f64 / self.wall_s
    }
}

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine refused or failed a request.
    #[error(transparent)]
    Engine(#[from] LlmError),
    /// The server could not be reached or answered badly.
    #[error("server {url}: {reason}")]
    Server {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A request's task panicked or was cancelled.
    #[error("request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The messages of request `i` of a level: `prompt` behind a per-request tag, so no two
/// requests share a prompt (a server's prompt cache cannot skip work one did).
pub fn request_messages(prompt: &str, i: usize) -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", format!("(Request {i}.) {prompt}"))]
}

/// Starts `concurrency` requests together (`request(i)` makes request `i`) and waits
/// for all.
pub async fn run_level<F, Fut>(concurrency: usize, request: F) -> Result<Level, LoadError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Timed, LoadError>> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency).map(|i| tokio::spawn(request(i))).collect();
    let mut requests = Vec::with_capacity(concurrency);
    for handle in handles {
        let timed = handle.await??;
        requests.push(timed);
    }
    Ok(Level {
        concurrency,
        wall_s: started.elapsed().as_secs_f64(),
        requests,
    })
}

/// One streaming request to `service`, timed.
pub async fn engine_request(
    service: LlmService,
    messages: Vec<ChatMessage>,
    params: SamplingParams,
) -> Result<Timed, LoadError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let sent = Instant::now();
    let first = tokio::spawn(async move {
        while let Some(piece) = rx.recv().await {
            if !piece.is_empty() {
                return Some(sent.elapsed());
            }
        }
        None
    });
    let options = RequestOptions {
        stream: Some(tx),
        ..RequestOptions::default()
    };
    let generation = service.chat_with(messages, params, options).await?;
    let total = sent.elapsed();
    let first = first.await.ok().flatten().unwrap_or(total);
    Ok(Timed {
        first_token_s: first.as_secs_f64(),
        total_s: total.as_secs_f64(),
        tokens: generation.completion_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_timings() {
        let timed = Timed {
            first_token_s: 0.5,
            total_s: 2.5,
            tokens: 41,
        };
        assert_eq!(timed.decode_tok_s(), 20.0);
        let level = Level {
            concurrency: 2,
            wall_s: 4.0,
            requests: vec![timed.clone(), timed],
        };
        assert_eq!(level.aggregate_tok_s(), 20.5);
    }
}

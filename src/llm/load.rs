//! Concurrent load, timed from the client's side: `concurrency` streaming chat requests
//! started together, each with its own prompt, against [`LlmService`] in-process or any
//! OpenAI-compatible server (llama.cpp's `llama-server`, llama-cpp-python's server,
//! vLLM) over HTTP. One driver measures both, so their figures compare: time to first
//! token, per-request decode rate, and aggregate tokens per second of wall time.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

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
        let timed = handle.await.map_err(|e| LoadError::Server {
            url: "(in-process)".into(),
            reason: format!("request task failed: {e}"),
        })??;
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

/// One streaming `POST {base_url}/v1/chat/completions`, greedy, timed. Tokens are the
/// usage the server reports at the end, else the content chunks it sent.
pub async fn server_request(
    client: reqwest::Client,
    base_url: String,
    messages: Vec<ChatMessage>,
    max_tokens: usize,
) -> Result<Timed, LoadError> {
    let url = format!("{}/v1/chat/completions", base_url.trim_end_matches('/'));
    let fail = |reason: String| LoadError::Server {
        url: url.clone(),
        reason,
    };
    let body = json!({
        "model": "default",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let sent = Instant::now();
    let response = client
        .post(&url)
        .json(&body)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("status {}", response.status())));
    }
    let mut stream = response.bytes_stream();
    let (mut buffer, mut first, mut chunks, mut usage) = (Vec::new(), None, 0, None);
    while let Some(bytes) = stream.next().await {
        buffer.extend_from_slice(&bytes.map_err(|e| fail(e.to_string()))?);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value =
                serde_json::from_str(data).map_err(|e| fail(format!("bad chunk: {e}")))?;
            let content = chunk["choices"][0]["delta"]["content"].as_str();
            if content.is_some_and(|c| !c.is_empty()) {
                first.get_or_insert_with(|| sent.elapsed());
                chunks += 1;
            }
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                usage = Some(n as usize);
            }
        }
    }
    let total = sent.elapsed();
    Ok(Timed {
        first_token_s: first.unwrap_or(total).as_secs_f64(),
        total_s: total.as_secs_f64(),
        tokens: usage.unwrap_or(chunks),
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

//! The client of an OpenAI-compatible inference server (vLLM, SGLang, TGI, llama.cpp's
//! server): `POST /v1/chat/completions`, always streamed (the text reaches a
//! [`RequestOptions::stream`] as the server sends it, and a stalled server is noticed
//! between chunks), and `POST /v1/embeddings`. Synchronous: script hooks call it from
//! their blocking threads. Every request runs under one deadline; a request the
//! server never started (refused, reset before the answer, 429 or 5xx) is retried a
//! bounded number of times with exponential backoff; a stream that breaks off is an
//! error, not retried (its text may already have been passed on). Every error names
//! the URL. The API key goes out as `Authorization: Bearer` and is never printed.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::llm::{
    ChatMessage, FinishReason, Generation, RequestOptions, SamplingParams, TokenLogprob,
};
use crate::net::openai::{CHAT_COMPLETIONS_PATH, STREAM_DONE, SseDecoder};

/// The embeddings route.
pub const EMBEDDINGS_PATH: &str = "/v1/embeddings";

/// Largest reply read from the server (a whole chat stream, or one embeddings answer).
pub const MAX_REPLY_BYTES: u64 = 32 * 1024 * 1024;

/// How long connecting may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most characters of an error reply quoted in an error.
const QUOTED_ERROR_CHARS: usize = 300;

/// Where a remote backend is and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Base URL (`http://host:port`, optionally ending in `/v1`).
    pub endpoint: String,
    /// The `model` sent with every request.
    pub model: String,
    /// The environment variable holding the API key, sent as `Authorization: Bearer`
    /// (read when the client is made; the key itself is never stored in a config).
    pub api_key_env: Option<String>,
    /// Deadline of a request that brings none of its own.
    pub timeout: Duration,
    /// Attempts per request (the first included) while the server is not answering.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one.
    pub backoff: Duration,
}

impl RemoteConfig {
    /// `endpoint` serving `model`, with no key, a 120 s deadline and 3 attempts 250 ms
    /// apart (doubling).
    pub fn new(endpoint: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            model: model.into(),
            api_key_env: None,
            timeout: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_millis(250),
        }
    }

    /// The full URL of `path` (`/v1/...`) under the endpoint; a base already ending
    /// in `/v1` is not doubled.
    pub fn url(&self, path: &str) -> String {
        let base = self.endpoint.trim_end_matches('/');
        match (base.strip_suffix("/v1"), path.strip_prefix("/v1")) {
            (Some(_), Some(rest)) => format!("{base}{rest}"),
            _ => format!("{base}{path}"),
        }
    }
}

/// What went wrong talking to an inference server; every variant names the URL (or
/// the missing key's variable).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The variable named to hold the API key is not set.
    #[error("the API key variable `{var}` for {url} is not set (or not UTF-8)")]
    MissingKey {
        /// The variable.
        var: String,
        /// The endpoint the key is for.
        url: String,
    },
    /// The endpoint is not an http(s) URL.
    #[error("inference endpoint `{url}` is not an http:// or https:// URL")]
    BadEndpoint {
        /// The endpoint given.
        url: String,
    },
    /// No attempt got an answer (refused, reset, 429 or 5xx each time).
    #[error("inference server {url} is not answering ({attempts} attempts): {reason}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        reason: String,
    },
    /// The server refused the request (a 4xx other than 429).
    #[error("inference server {url} refused the request with status {status}: {body}")]
    Refused {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of its reply.
        body: String,
    },
    /// The answer broke off or is not what the OpenAI API promises.
    #[error("inference server {url}: {reason}")]
    BadReply {
        /// The request URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request ran past its deadline.
    #[error("inference server {url}: no complete answer within {timeout:?}")]
    Timeout {
        /// The request URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// A client of one OpenAI-compatible server; cheap to share between threads.
pub struct RemoteClient {
    config: RemoteConfig,
    agent: ureq::Agent,
    api_key: Option<String>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("config", &self.config)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// Why one attempt failed: worth another try, or final.
enum Attempt {
    Retry(String),
    Fail(RemoteError),
}

impl RemoteClient {
    /// A client of the server `config` names (checked to be an http(s) URL), with the
    /// API key read from the variable `config.api_key_env` names.
    pub fn new(config: RemoteConfig) -> Result<Self, RemoteError> {
        let endpoint = config.endpoint.to_ascii_lowercase();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(RemoteError::BadEndpoint {
                url: config.endpoint,
            });
        }
        let api_key = match &config.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| RemoteError::MissingKey {
                var: var.clone(),
                url: config.endpoint.clone(),
            })?),
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .redirects(0)
            .user_agent(concat!("neuron/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            config,
            agent,
            api_key,
        })
    }

    /// Its settings.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// POSTs `body` to `path`, retrying while the server is not answering, and returns
    /// the successful response with the URL and the request's deadline.
    fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(ureq::Response, String, Instant), RemoteError> {
        let url = self.config.url(path);
        let deadline = Instant::now() + timeout;
        let attempts = self.config.attempts.max(1);
        let mut backoff = self.config.backoff;
        let mut reason = String::new();
        for attempt in 1..=attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RemoteError::Timeout { url, timeout });
            }
            let mut request = self.agent.post(&url).timeout(left);
            if let Some(key) = &self.api_key {
                request = request.set("Authorization", &format!("Bearer {key}"));
            }
            match classify(&url, request.send_json(body)) {
                Ok(response) => return Ok((response, url, deadline)),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => reason = why,
            }
            if attempt < attempts {
                tracing::warn!(%url, attempt, %reason, "inference server not answering; retrying");
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(backoff.min(left));
                backoff = backoff.saturating_mul(2);
            }
        }
        Err(RemoteError::Unreachable {
            url,
            attempts,
            reason,
        })
    }

    /// One chat completion, streamed: pieces of text go to `options.stream` as they
    /// arrive; the seed, sampling parameters, stop strings and logprobs are passed
    /// through (servers that do not know a parameter ignore it).
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        options: &RequestOptions,
    ) -> Result<Generation, RemoteError> {
        let timeout = options.timeout.unwrap_or(self.config.timeout);
        let body = chat_body(&self.config.model, messages, params);
        let sent = Instant::now();
        let (response, url, deadline) = self.post(CHAT_COMPLETIONS_PATH, &body, timeout)?;
        let broke_off = |reason: String| {
            if Instant::now() >= deadline {
                RemoteError::Timeout {
                    url: url.clone(),
                    timeout,
                }
            } else {
                RemoteError::BadReply {
                    url: url.clone(),
                    reason,
                }
            }
        };
        let mut reader = response.into_reader().take(MAX_REPLY_BYTES);
        let (mut sse, mut reply) = (SseDecoder::default(), StreamReply::default());
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = None;
        while !reply.done {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                // The answer was complete; only the end of the stream is missing.
                Err(_) if reply.finish.is_some() => break,
                Err(e) => return Err(broke_off(format!("the stream broke off: {e}"))),
            };
            if n == 0 {
                break;
            }
            for data in sse.push(&buf[..n]) {
                let piece = reply.read(&data).map_err(broke_off)?;
                if !piece.is_empty() {
                    first.get_or_insert_with(|| sent.elapsed());
                    if let Some(stream) = &options.stream {
                        let _ = stream.send(piece);
                    }
                }
            }
        }
        let finish = match reply.finish {
            Some(finish) => finish,
            None if reply.done => FinishReason::Eos,
            None => {
                return Err(broke_off(
                    "the stream ended before the answer was complete".into(),
                ));
            }
        };
        let total = sent.elapsed();
        let first = first.unwrap_or(total);
        Ok(Generation {
            completion_tokens: reply.completion_tokens.unwrap_or(reply.chunks),
            prompt_tokens: reply.prompt_tokens.unwrap_or(0),
            text: reply.text,
            finish_reason: finish,
            prompt_secs: first.as_secs_f64(),
            decode_secs: (total - first).as_secs_f64(),
            logprobs: reply.logprobs,
        })
    }

    /// Embeds `texts` (one vector per text, in order) through `/v1/embeddings`.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, RemoteError> {
        let body = json!({"model": self.config.model, "input": texts});
        let (response, url, _) = self.post(EMBEDDINGS_PATH, &body, self.config.timeout)?;
        let bad = |reason: String| RemoteError::BadReply {
            url: url.clone(),
            reason,
        };
        let reply: EmbeddingsReply =
            serde_json::from_reader(response.into_reader().take(MAX_REPLY_BYTES))
                .map_err(|e| bad(format!("not an embeddings answer: {e}")))?;
        let mut data = reply.data;
        if data.len() != texts.len() {
            return Err(bad(format!(
                "{} embeddings for {} texts",
                data.len(),
                texts.len()
            )));
        }
        data.sort_by_key(|d| d.index);
        if data.iter().enumerate().any(|(i, d)| d.index != i) {
            return Err(bad("embedding indices are not 0..n".into()));
        }
        Ok(data.into_iter().map(|d| d.embedding).collect())
    }
}

#[derive(serde::Deserialize)]
struct EmbeddingsReply {
    data: Vec<EmbeddingItem>,
}

#[derive(serde::Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// Sorts a response (or the failure to get one) into success, retry or final error.
fn classify(
    url: &str,
    result: Result<ureq::Response, ureq::Error>,
) -> Result<ureq::Response, Attempt> {
    match result {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, response)) => {
            let mut body = String::new();
            let _ = response
                .into_reader()
                .take(64 * 1024)
                .read_to_string(&mut body);
            let body: String = body.trim().chars().take(QUOTED_ERROR_CHARS).collect();
            if status == 429 || status >= 500 {
                Err(Attempt::Retry(format!("status {status}: {body}")))
            } else {
                Err(Attempt::Fail(RemoteError::Refused {
                    url: url.into(),
                    status,
                    body,
                }))
            }
        }
        Err(ureq::Error::Transport(t)) => Err(Attempt::Retry(t.to_string())),
    }
}

/// The JSON of a streamed chat request with `params`.
fn chat_body(model: &str, messages: &[ChatMessage], params: &SamplingParams) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "seed": params.seed,
    });
    if let Some(k) = params.top_k {
        body["top_k"] = k.into();
    }
    if let Some(p) = params.top_p {
        body["top_p"] = p.into();
    }
    if params.repeat_penalty != 1.0 {
        // llama.cpp's name and vLLM's.
        body["repeat_penalty"] = params.repeat_penalty.into();
        body["repetition_penalty"] = params.repeat_penalty.into();
    }
    if !params.stop.is_empty() {
        body["stop"] = json!(params.stop);
    }
    if let Some(k) = params.logprobs {
        body["logprobs"] = true.into();
        body["top_logprobs"] = k.into();
    }
    body
}

/// What a chat stream has said so far.
#[derive(Default)]
struct StreamReply {
    text: String,
    chunks: usize,
    finish: Option<FinishReason>,
    logprobs: Vec<TokenLogprob>,
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
    /// `[DONE]` was read.
    done: bool,
}

impl StreamReply {
    /// Takes one SSE `data`; returns its text.
    fn read(&mut self, data: &str) -> Result<String, String> {
        if data.trim() == STREAM_DONE {
            self.done = true;
            return Ok(String::new());
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) => return Err("the stream carried a chunk that is not JSON".into()),
        };
        if let Some(message) = chunk["error"]["message"].as_str() {
            let message: String = message.chars().take(QUOTED_ERROR_CHARS).collect();
            return Err(format!("error mid-stream: {message}"));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let count = |k: &str| usage[k].as_u64().map(|n| n as usize);
            self.prompt_tokens = count("prompt_tokens").or(self.prompt_tokens);
            self.completion_tokens = count("completion_tokens").or(self.completion_tokens);
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok(String::new());
        };
        if let Some(content) = choice["logprobs"]["content"].as_array() {
            self.logprobs
                .extend(content.iter().filter_map(token_logprob));
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(match reason {
                "length" => FinishReason::Length,
                _ => FinishReason::Eos,
            });
        }
        let text = choice["delta"]["content"].as_str().unwrap_or_default();
        if !text.is_empty() {
            self.chunks += 1;
            self.text.push_str(text);
        }
        Ok(text.to_string())
    }
}

/// One entry of OpenAI's `logprobs.content`.
fn token_logprob(entry: &Value) -> Option<TokenLogprob> {
    let pair = |e: &Value| {
        Some((
            e["token"].as_str()?.to_string(),
            e["logprob"].as_f64()? as f32,
        ))
    };
    let (token, logprob) = pair(entry)?;
    let top = entry["top_logprobs"]
        .as_array()
        .map(|list| list.iter().filter_map(pair).collect())
        .unwrap_or_default();
    Some(TokenLogprob {
        token,
        logprob,
        top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_or_without_v1() {
        let c = |e: &str| RemoteConfig::new(e, "m").url(CHAT_COMPLETIONS_PATH);
        assert_eq!(
            c("http://h:1"),
            "http://h:1/v1/chat/completions".to_string()
        );
        assert_eq!(c("http://h:1/v1/"), "http://h:1/v1/chat/completions");
        assert!(matches!(
            RemoteClient::new(RemoteConfig::new("ftp://h", "m")),
            Err(RemoteError::BadEndpoint { .. })
        ));
        let mut config = RemoteConfig::new("http://h", "m");
        config.api_key_env = Some("NEURON_UNSET_VARIABLE_FOR_THIS_TEST".into());
        let err = RemoteClient::new(config).unwrap_err().to_string();
        assert!(
            err.contains("NEURON_UNSET_VARIABLE_FOR_THIS_TEST") && err.contains("http://h"),
            "{err}"
        );
    }

    #[test]
    fn a_stream_is_read_into_a_generation() {
        let mut reply = StreamReply::default();
        let chunks = [
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[{"delta":{"content":"Pa"},"logprobs":{"content":[{"token":"Pa","logprob":-0.5,"top_logprobs":[{"token":"Pa","logprob":-0.5},{"token":"Lo","logprob":-1.5}]}]}}]}"#,
            r#"{"choices":[{"delta":{"content":"ris"},"finish_reason":"length"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}"#,
        ];
        let texts: Vec<String> = chunks.iter().map(|c| reply.read(c).unwrap()).collect();
        assert_eq!(texts, ["", "Pa", "ris", ""]);
        assert_eq!(reply.text, "Paris");
        assert_eq!(reply.finish, Some(FinishReason::Length));
        assert_eq!(
            (reply.prompt_tokens, reply.completion_tokens),
            (Some(7), Some(2))
        );
        assert_eq!(reply.logprobs[0].top[1], ("Lo".to_string(), -1.5));
        assert!(!reply.done);
        reply.read("[DONE]").unwrap();
        assert!(reply.done);
        assert!(reply.read("{not json").is_err());
        assert!(reply.read(r#"{"error":{"message":"boom"}}"#).is_err());
    }

    #[test]
    fn sampling_parameters_go_out_as_openai_fields() {
        let params = SamplingParams {
            seed: 9,
            top_k: Some(40),
            logprobs: Some(2),
            stop: vec!["\n".into()],
            ..SamplingParams::default()
        };
        let body = chat_body("m", &[ChatMessage::new("user", "hi")], &params);
        assert_eq!(body["seed"], 9);
        assert_eq!(body["top_k"], 40);
        assert_eq!(
            (body["logprobs"].clone(), body["top_logprobs"].clone()),
            (json!(true), json!(2))
        );
        assert_eq!(body["stop"], json!(["\n"]));
        assert!(body.get("repeat_penalty").is_none() && body.get("top_p").is_none());
    }
}

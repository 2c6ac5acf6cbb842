//! The OpenAI-style miner routes SN1 v2 validators call: `POST /v1/chat/completions`
//! (signed with btauth/1 or Epistula; `stream: true` answers Server-Sent Events
//! `data: {chunk}` lines ending with `data: [DONE]`, otherwise one
//! `chat.completion` JSON) and the unsigned `POST /availability`. The request and reply
//! types and their JSON live here; the axon routes, the handler answers with
//! [`ChatEvent`]s. The client side (`net::transport`) sends the same request type and
//! reads the stream back with [`SseDecoder`] and [`read_chunk`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::llm::load::{LoadError, Timed};
use crate::llm::{ChatMessage, TokenLogprob};

/// The chat route.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// The availability route.
pub const AVAILABILITY_PATH: &str = "/availability";

/// The `POST /availability` answer, as SN1 v2 validators poll it: which tasks and which
/// models the miner serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Availability {
    /// Task name (SN1's class names, e.g. `InferenceTask`) → served.
    #[serde(default)]
    pub task_availabilities: std::collections::BTreeMap<String, bool>,
    /// Model name → served.
    #[serde(default)]
    pub llm_model_availabilities: std::collections::BTreeMap<String, bool>,
}

/// A `POST /v1/chat/completions` request (fields we do not use are ignored; unset
/// options are left out when sent).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChatCompletionRequest {
    /// The model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<RequestMessage>,
    /// Answer as Server-Sent Events.
    #[serde(default)]
    pub stream: bool,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Return the chosen tokens' log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// With `logprobs`, this many alternatives per position (0–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<usize>,
    /// SN1 v2's sampling block (the top-level fields win over it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_parameters: Option<SamplingParameters>,
    /// SN1 v2's task name (`InferenceTask` for verified inference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// SN1 v2's `sampling_parameters` (other fields, e.g. `repetition_penalty`, are not
/// applied).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SamplingParameters {
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Keep only the `k` most likely tokens (0 or absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// `false`: greedy decoding (temperature 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_sample: Option<bool>,
}

/// One message of a request: a role and its content (a string, or a list of parts
/// whose `text` parts are joined).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RequestMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The content as sent.
    #[serde(default)]
    pub content: Value,
}

impl ChatCompletionRequest {
    /// A streamed request for the conversation `roles`/`messages` (parallel lists).
    pub fn streamed(roles: &[String], messages: &[String]) -> Self {
        Self {
            messages: roles
                .iter()
                .zip(messages)
                .map(|(role, content)| RequestMessage {
                    role: role.clone(),
                    content: Value::String(content.clone()),
                })
                .collect(),
            stream: true,
            ..Self::default()
        }
    }

    /// The conversation as chat messages.
    pub fn chat_messages(&self) -> Vec<ChatMessage> {
        self.messages
            .iter()
            .map(|m| {
                let text = match &m.content {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(""),
                    _ => String::new(),
                };
                ChatMessage::new(m.role.clone(), text)
            })
            .collect()
    }

    /// The temperature asked for: `temperature`, else `sampling_parameters`' (0 when it
    /// says `do_sample: false`).
    pub fn sampling_temperature(&self) -> Option<f64> {
        let block = self.sampling_parameters.as_ref();
        let greedy = block.and_then(|p| p.do_sample) == Some(false);
        self.temperature
            .or_else(|| greedy.then_some(0.0))
            .or_else(|| block.and_then(|p| p.temperature))
    }

    /// The nucleus mass asked for: `top_p`, else `sampling_parameters`'.
    pub fn sampling_top_p(&self) -> Option<f64> {
        let block = self.sampling_parameters.as_ref();
        self.top_p.or_else(|| block.and_then(|p| p.top_p))
    }

    /// The top-k asked for in `sampling_parameters` (OpenAI's request has none; 0 means
    /// no cut, as in Hugging Face's `generate`).
    pub fn sampling_top_k(&self) -> Option<usize> {
        let block = self.sampling_parameters.as_ref();
        block.and_then(|p| p.top_k).filter(|&k| k > 0)
    }

    /// The token limit asked for: `max_tokens`, else `sampling_parameters`'
    /// `max_new_tokens`.
    pub fn sampling_max_tokens(&self) -> Option<usize> {
        let block = self.sampling_parameters.as_ref();
        self.max_tokens
            .or_else(|| block.and_then(|p| p.max_new_tokens))
    }

    /// How many alternatives per token the request wants, if it wants logprobs.
    pub fn logprobs_wanted(&self) -> Option<usize> {
        self.logprobs
            .unwrap_or(false)
            .then(|| self.top_logprobs.unwrap_or(0))
    }
}

/// What a handler produces while answering a chat request.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// Generated text, sent as soon as it exists.
    Delta(String),
    /// The end of the answer.
    Finished(ChatFinish),
}

/// How an answer ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatFinish {
    /// `stop` or `length`.
    pub finish_reason: String,
    /// Per-token logprobs, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
}

/// The identity of one reply: its id, creation time and model.
#[derive(Debug, Clone)]
pub struct ReplyId {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model named in the request (or `neuron`).
    pub model: String,
}

impl ReplyId {
    /// A fresh id for a reply to `request`.
    pub fn new(request: &ChatCompletionRequest) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: (crate::net::now_ns() / 1_000_000_000).max(0) as u64,
            model: request.model.clone().unwrap_or_else(|| "neuron".into()),
        }
    }

    /// One SSE event `data: {chat.completion.chunk}\n\n`.
    pub fn sse_chunk(&self, delta: Value, logprobs: Option<Value>, finish: Option<&str>) -> Bytes {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish,
            }],
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    /// The whole answer as one `chat.completion`.
    pub fn completion(&self, text: &str, finish: &ChatFinish, with_logprobs: bool) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": with_logprobs.then(|| logprobs_json(&finish.logprobs)),
                "finish_reason": finish.finish_reason,
            }],
            "usage": {
                "prompt_tokens": finish.prompt_tokens,
                "completion_tokens": finish.completion_tokens,
                "total_tokens": finish.prompt_tokens + finish.completion_tokens,
            },
        })
    }
}

/// The stream's last event.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// OpenAI's `logprobs` object: `{"content": [{token, logprob, bytes, top_logprobs}]}`.
pub fn logprobs_json(tokens: &[TokenLogprob]) -> Value {
    let entry = |token: &str, logprob: f32| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(&t.token, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|(tok, lp)| entry(tok, *lp)).collect();
            e
        })
        .collect();
    json!({ "content": content })
}

/// Splits a Server-Sent Events byte stream into the `data` of its events (the
/// `data:` lines of one event joined by `\n`; comments and other fields skipped),
/// whatever the chunking of the bytes.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
}

impl SseDecoder {
    /// Takes `bytes`; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, gap)) = event_end(&self.buffer) {
            let event: Vec<u8> = self.buffer.drain(..end + gap).take(end).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

/// Where the first event of `buffer` ends and how long the blank line after it is.
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    (0..buffer.len()).find_map(|i| {
        let rest = &buffer[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if rest.starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
}

/// What one SSE `data` of a chat stream says.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamData {
    /// A `chat.completion.chunk`: its first choice's `delta.content` (empty for role or
    /// logprob chunks) and the tokens with logprobs of its `logprobs.content` (none when
    /// absent or `null`).
    Chunk {
        /// The text.
        text: String,
        /// The tokens with logprobs.
        logprobs: Vec<TokenLogprob>,
    },
    /// `[DONE]`: the end of the stream.
    Done,
}

/// Why one SSE `data` of a chat stream could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamDataError {
    /// Neither `[DONE]` nor JSON with a first choice.
    #[error("not a chat completion chunk")]
    NotAChunk,
    /// The first choice's `logprobs` are not OpenAI's shape.
    #[error("malformed logprobs")]
    Logprobs,
}

/// The SSE `data` that ends a chat stream.
pub const STREAM_DONE: &str = "[DONE]";

/// A chunk's `logprobs` as OpenAI writes them (`content: [{token, logprob,
/// top_logprobs: [{token, logprob}]}]`).
#[derive(Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireToken>>,
}

#[derive(Deserialize)]
struct WireToken {
    token: String,
    logprob: f32,
    #[serde(default)]
    top_logprobs: Vec<WireAlternative>,
}

#[derive(Deserialize)]
struct WireAlternative {
    token: String,
    logprob: f32,
}

/// Reads one SSE `data` of a chat stream (parsed once): `[DONE]`, or a chunk's text and
/// tokens with logprobs.
pub fn read_chunk(data: &str) -> Result<StreamData, StreamDataError> {
    if data.trim() == STREAM_DONE {
        return Ok(StreamData::Done);
    }
    let mut chunk: Value = serde_json::from_str(data).map_err(|_| StreamDataError::NotAChunk)?;
    let choice = chunk
        .get_mut("choices")
        .and_then(|c| c.get_mut(0))
        .ok_or(StreamDataError::NotAChunk)?;
    let text = choice["delta"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let logprobs = match choice.get_mut("logprobs").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(logprobs) => serde_json::from_value::<WireLogprobs>(logprobs)
            .map_err(|_| StreamDataError::Logprobs)?
            .content
            .unwrap_or_default()
            .into_iter()
            .map(|t| TokenLogprob {
                token: t.token,
                logprob: t.logprob,
                top: t
                    .top_logprobs
                    .into_iter()
                    .map(|a| (a.token, a.logprob))
                    .collect(),
            })
            .collect(),
    };
    Ok(StreamData::Chunk { text, logprobs })
}

/// One streaming greedy chat request to an OpenAI-compatible server at `base_url`
/// (`POST {base_url}/v1/chat/completions`, unsigned), timed from the client's side for
/// `neuron bench llm --compare-server`. Tokens are the usage the server reports at the
/// end, else the content chunks it sent.
pub async fn timed_chat_stream(
    client: reqwest::Client,
    base_url: String,
    messages: Vec<ChatMessage>,
    max_tokens: usize,
) -> Result<Timed, LoadError> {
    let url = format!("{}{CHAT_COMPLETIONS_PATH}", base_url.trim_end_matches('/'));
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
    let sent = std::time::Instant::now();
    let response = client
        .post(&url)
        .json(&body)
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("status {}", response.status())));
    }
    let mut stream = response.bytes_stream();
    let (mut sse, mut first, mut chunks, mut usage) = (SseDecoder::default(), None, 0, None);
    while let Some(bytes) = futures::StreamExt::next(&mut stream).await {
        for data in sse.push(&bytes.map_err(|e| fail(e.to_string()))?) {
            // Parsed here rather than by `read_chunk`: the usage comes in a chunk of
            // no choices.
            let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                usage = Some(n as usize);
            }
            if chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
            {
                first.get_or_insert_with(|| sent.elapsed());
                chunks += 1;
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
    fn requests_parse_leniently_and_chunks_are_sse() {
        let r: ChatCompletionRequest = serde_json::from_str(
            r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                "stream": true, "seed": 3, "logprobs": true, "top_logprobs": 2, "task": "InferenceTask"}"#,
        )
        .unwrap();
        assert_eq!(r.chat_messages(), vec![ChatMessage::new("user", "ab")]);
        assert_eq!(r.logprobs_wanted(), Some(2));
        assert_eq!(
            (r.sampling_temperature(), r.sampling_max_tokens()),
            (None, None)
        );
        let sn1: ChatCompletionRequest = serde_json::from_str(
            r#"{"messages": [], "max_tokens": 9, "sampling_parameters":
                {"temperature": 0.7, "top_p": 0.9, "top_k": 50, "max_new_tokens": 64, "do_sample": true}}"#,
        )
        .unwrap();
        assert_eq!(sn1.sampling_temperature(), Some(0.7));
        assert_eq!(sn1.sampling_top_p(), Some(0.9));
        assert_eq!(sn1.sampling_top_k(), Some(50));
        assert_eq!(
            sn1.sampling_max_tokens(),
            Some(9),
            "the top-level field wins"
        );
        let greedy: ChatCompletionRequest = serde_json::from_str(
            r#"{"messages": [], "sampling_parameters": {"temperature": 0.7, "do_sample": false}}"#,
        )
        .unwrap();
        assert_eq!(greedy.sampling_temperature(), Some(0.0));
        let id = ReplyId::new(&r);
        let chunk = id.sse_chunk(json!({"content": "x"}), None, None);
        let text = std::str::from_utf8(&chunk).unwrap();
        assert!(
            text.starts_with("data: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text[6..]).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], "x");
        assert_eq!(v["model"], "m");
    }

    #[test]
    fn logprobs_read_back_what_the_miner_writes_and_malformed_ones_are_refused() {
        let tokens = vec![TokenLogprob {
            token: "Pa".into(),
            logprob: -0.25,
            top: vec![("Pa".into(), -0.25), ("Lon".into(), -1.5)],
        }];
        let id = ReplyId::new(&ChatCompletionRequest::default());
        let chunk = id.sse_chunk(json!({}), Some(logprobs_json(&tokens)), None);
        let data = std::str::from_utf8(&chunk).unwrap().trim_end();
        let data = data.strip_prefix("data: ").unwrap();
        let chunk = |text: &str, logprobs: Vec<TokenLogprob>| StreamData::Chunk {
            text: text.into(),
            logprobs,
        };
        assert_eq!(read_chunk(data), Ok(chunk("", tokens)));
        let plain = id.sse_chunk(json!({"content": "x"}), None, None);
        let plain = std::str::from_utf8(&plain).unwrap().trim_end();
        assert_eq!(read_chunk(&plain[6..]), Ok(chunk("x", Vec::new())));
        assert_eq!(read_chunk("[DONE]"), Ok(StreamData::Done));
        for bad in [
            r#"{"choices": [{"logprobs": {"content": [{"token": 1, "logprob": 0}]}}]}"#,
            r#"{"choices": [{"logprobs": {"content": [{"token": "a"}]}}]}"#,
            r#"{"choices": [{"logprobs": "yes"}]}"#,
        ] {
            assert_eq!(read_chunk(bad), Err(StreamDataError::Logprobs), "{bad}");
        }
        for bad in [r#"{"choices": []}"#, r#"{"nope": 1}"#, "not json"] {
            assert_eq!(read_chunk(bad), Err(StreamDataError::NotAChunk), "{bad}");
        }
    }

    #[test]
    fn sse_events_are_read_across_chunk_boundaries() {
        let r = ChatCompletionRequest::streamed(&["user".into()], &["hi".into()]);
        let sent = serde_json::to_value(&r).unwrap();
        assert_eq!(
            sent,
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": true})
        );
        let id = ReplyId::new(&r);
        let mut wire = id
            .sse_chunk(json!({"role": "assistant", "content": ""}), None, None)
            .to_vec();
        wire.extend_from_slice(&id.sse_chunk(json!({"content": "Pa"}), None, None));
        wire.extend_from_slice(b": a comment\r\n\r\n");
        wire.extend_from_slice(&id.sse_chunk(json!({"content": "ris"}), None, None));
        wire.extend_from_slice(SSE_DONE);
        let mut decoder = SseDecoder::default();
        let mut read = Vec::new();
        for piece in wire.chunks(7) {
            for data in decoder.push(piece) {
                read.push(read_chunk(&data).unwrap());
            }
        }
        let text = |t: &str| StreamData::Chunk {
            text: t.into(),
            logprobs: Vec::new(),
        };
        assert_eq!(
            read,
            vec![text(""), text("Pa"), text("ris"), StreamData::Done]
        );
    }
}

//! The OpenAI-style miner routes SN1 v2 validators call: `POST /v1/chat/completions`
//! (signed with btauth/1 or Epistula; `stream: true` answers Server-Sent Events
//! `data: {chunk}` lines ending with `data: [DONE]`, otherwise one
//! `chat.completion` JSON) and the unsigned `POST /availability`. The request and reply
//! types and their JSON live here; the axon routes, the handler answers with
//! [`ChatEvent`]s.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::llm::{ChatMessage, TokenLogprob};

/// The chat route.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// The availability route.
pub const AVAILABILITY_PATH: &str = "/availability";

/// A `POST /v1/chat/completions` request (fields we do not use, such as SN1's `task`,
/// are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<RequestMessage>,
    /// Answer as Server-Sent Events.
    #[serde(default)]
    pub stream: bool,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Token limit.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Return the chosen tokens' log-probabilities.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs`, this many alternatives per position (0–20).
    #[serde(default)]
    pub top_logprobs: Option<usize>,
}

/// One message of a request: a role and its content (a string, or a list of parts
/// whose `text` parts are joined).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The content as sent.
    #[serde(default)]
    pub content: Value,
}

impl ChatCompletionRequest {
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
}

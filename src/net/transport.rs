//! How a validator asks miners for a completion, over the transport a subnet speaks
//! (`--neuron.transport`):
//!
//! - `synapse`: an SDK-10 `PromptingSynapse`, answered with one JSON synapse;
//! - `synapse-stream`: SN1 v1's `StreamPromptingSynapse` (Synapse headers), answered
//!   with the completion's raw text in chunks;
//! - `btauth-openai` / `epistula-openai`: SN1 v2's `POST /v1/chat/completions` with
//!   `stream: true`, signed with btauth/1 or Epistula v2, answered with SSE chunks.
//!
//! Whatever the transport, each miner has one total deadline (sending, waiting and every
//! chunk together, never reset per chunk: 408 when it passes), its completion is cut
//! at `max_completion_bytes` (reading stops there; the answer keeps its 200),
//! `max_response_bytes` bounds the raw bytes read (413), and every attempt is signed
//! anew (a fresh nonce; for Epistula a fresh uuid too). [`Dendrite::ask`] queries many
//! miners at once and may return as soon as a quorum of them answered.
//!
//! [`Dendrite::ask_chat`] sends a whole chat request instead (SN1 v2's inference task:
//! model, seed, sampling parameters, top-k logprobs); it always goes over an OpenAI
//! transport ([`Transport::openai`]), and each answer carries the tokens and top-k
//! logprobs the miner streamed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::dendrite::{
    ChunkError, ChunkLimit, ReadError, error_message, map_client_error, read_capped,
};
use super::openai::{
    CHAT_COMPLETIONS_PATH, ChatCompletionRequest, SseDecoder, StreamData, StreamDataError,
};
use super::{AuthScheme, AxonInfo, Dendrite, PromptingSynapse, StreamPromptingSynapse};
use super::{float_repr, openai};
use crate::llm::TokenLogprob;

pub use crate::config::Transport;

/// How [`Dendrite::ask`] queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AskOptions {
    /// The wire.
    pub transport: Transport,
    /// Each miner's total deadline.
    pub timeout: Duration,
    /// Return once this many miners answered successfully (0: wait for all); the
    /// miners not awaited then are answered 408.
    pub quorum: usize,
}

/// One miner's answer to [`Dendrite::ask`].
#[derive(Debug, Clone, PartialEq)]
pub struct MinerAnswer {
    /// The axon asked.
    pub axon: AxonInfo,
    /// 200, the axon's error status, or the SDK's client-side code (408 deadline, 413
    /// oversized, 422 unreadable, 503 unreachable, …).
    pub status_code: u16,
    /// What the status means.
    pub status_message: String,
    /// From sending to the answer's end.
    pub latency: Duration,
    /// The completion, cut at `max_completion_bytes` (empty unless the status is 200).
    pub completion: String,
    /// The tokens and their top alternatives the miner streamed (OpenAI transports,
    /// when the request asked for logprobs; empty otherwise or unless the status is 200).
    pub logprobs: Vec<TokenLogprob>,
}

impl MinerAnswer {
    /// Whether the miner answered 200 with a non-empty completion.
    pub fn is_success(&self) -> bool {
        self.status_code == 200 && !self.completion.is_empty()
    }
}

/// A completion as it arrives: cut at a byte limit, text passed on as soon as it is
/// whole UTF-8.
struct Collector<F> {
    text: String,
    pending: Vec<u8>,
    max_bytes: usize,
    full: bool,
    on_text: F,
}

impl<F: FnMut(&str)> Collector<F> {
    fn new(max_bytes: usize, on_text: F) -> Self {
        Self {
            text: String::new(),
            pending: Vec::new(),
            max_bytes,
            full: false,
            on_text,
        }
    }

    /// Adds text, up to the limit (then the collector is full).
    fn push_str(&mut self, piece: &str) {
        if self.full {
            return;
        }
        let room = self.max_bytes - self.text.len();
        let cut = piece.floor_char_boundary(room);
        if cut < piece.len() {
            self.full = true;
        }
        if cut > 0 {
            (self.on_text)(&piece[..cut]);
            self.text.push_str(&piece[..cut]);
        }
    }

    /// Adds raw bytes: the complete characters now, a split one once it is whole
    /// (invalid bytes become U+FFFD).
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    let text = text.to_string();
                    self.pending.clear();
                    self.push_str(&text);
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    let Some(bad) = e.error_len() else {
                        let head: Vec<u8> = self.pending.drain(..valid).collect();
                        self.push_str(std::str::from_utf8(&head).expect("valid prefix"));
                        return;
                    };
                    let head: Vec<u8> = self.pending.drain(..valid + bad).collect();
                    self.push_str(&String::from_utf8_lossy(&head));
                }
            }
        }
    }

    /// Flushes an unfinished character (as U+FFFD) and returns the text.
    fn finish(mut self) -> String {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.push_str(&String::from_utf8_lossy(&rest));
        }
        self.text
    }
}

/// A failed query: its status code and message.
type Failure = (u16, String);

/// What one query sends: a prompt (shaped by the transport) or a whole chat request.
#[derive(Clone, Copy)]
enum Query<'a> {
    Prompt(&'a PromptingSynapse),
    Chat(&'a ChatCompletionRequest),
}

fn timeout_message(timeout: Duration) -> String {
    format!(
        "Request timeout after {} seconds",
        float_repr(timeout.as_secs_f64())
    )
}

impl Dendrite {
    /// Asks every axon for a completion of `prompt` over `options.transport`, in
    /// parallel, each under its own total deadline; one answer per axon, in order. With
    /// a quorum, returns once that many answered successfully: the others are dropped
    /// and answered 408.
    pub async fn ask(
        &self,
        axons: &[AxonInfo],
        prompt: &PromptingSynapse,
        options: &AskOptions,
    ) -> Vec<MinerAnswer> {
        self.ask_all(axons, Query::Prompt(prompt), options).await
    }

    /// [`Dendrite::ask`] with a whole chat request (sent with `stream: true`), over
    /// `options.transport` when it is an OpenAI one, else btauth-openai
    /// ([`Transport::openai`]); each answer carries the streamed logprobs.
    pub async fn ask_chat(
        &self,
        axons: &[AxonInfo],
        request: &ChatCompletionRequest,
        options: &AskOptions,
    ) -> Vec<MinerAnswer> {
        let options = AskOptions {
            transport: options.transport.openai(),
            ..*options
        };
        self.ask_all(axons, Query::Chat(request), &options).await
    }

    async fn ask_all(
        &self,
        axons: &[AxonInfo],
        query: Query<'_>,
        options: &AskOptions,
    ) -> Vec<MinerAnswer> {
        let start = Instant::now();
        let mut pending: FuturesUnordered<_> = axons
            .iter()
            .enumerate()
            .map(|(i, axon)| async move {
                let answer = self
                    .ask_query(axon, query, options.transport, options.timeout, |_| {})
                    .await;
                (i, answer)
            })
            .collect();
        let mut answers: Vec<Option<MinerAnswer>> = vec![None; axons.len()];
        let mut successes = 0;
        while let Some((i, answer)) = pending.next().await {
            successes += usize::from(answer.is_success());
            answers[i] = Some(answer);
            if options.quorum > 0 && successes >= options.quorum {
                break;
            }
        }
        drop(pending);
        let waited = start.elapsed();
        answers
            .into_iter()
            .zip(axons)
            .map(|(answer, axon)| {
                answer.unwrap_or_else(|| MinerAnswer {
                    axon: axon.clone(),
                    status_code: 408,
                    status_message: format!(
                        "Not awaited: a quorum of {} answers arrived after {} seconds",
                        options.quorum,
                        float_repr(waited.as_secs_f64())
                    ),
                    latency: waited,
                    completion: String::new(),
                    logprobs: Vec::new(),
                })
            })
            .collect()
    }

    /// Asks one axon for a completion of `prompt` over `transport` within `timeout` in
    /// all, passing the text to `on_text` as it arrives (once, whole, for `synapse`).
    /// The synapse transports sign with this dendrite's scheme ([`Dendrite::with_auth`]:
    /// SDK-10 headers unless set), the OpenAI ones with theirs.
    pub async fn ask_one(
        &self,
        axon: &AxonInfo,
        prompt: &PromptingSynapse,
        transport: Transport,
        timeout: Duration,
        on_text: impl FnMut(&str) + Send,
    ) -> MinerAnswer {
        self.ask_query(axon, Query::Prompt(prompt), transport, timeout, on_text)
            .await
    }

    /// [`Dendrite::ask_one`] with a whole chat request (its seed, sampling and logprobs
    /// sent as they are), over `transport` when it is an OpenAI one, else btauth-openai
    /// ([`Transport::openai`]).
    pub async fn ask_chat_one(
        &self,
        axon: &AxonInfo,
        request: &ChatCompletionRequest,
        transport: Transport,
        timeout: Duration,
        on_text: impl FnMut(&str) + Send,
    ) -> MinerAnswer {
        self.ask_query(
            axon,
            Query::Chat(request),
            transport.openai(),
            timeout,
            on_text,
        )
        .await
    }

    async fn ask_query(
        &self,
        axon: &AxonInfo,
        query: Query<'_>,
        transport: Transport,
        timeout: Duration,
        on_text: impl FnMut(&str) + Send,
    ) -> MinerAnswer {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut text = Collector::new(self.options().max_completion_bytes, on_text);
        let mut logprobs = Vec::new();
        let asked = async {
            let scheme = match transport {
                Transport::BtauthOpenai => AuthScheme::Btauth,
                Transport::EpistulaOpenai => AuthScheme::Epistula,
                Transport::Synapse | Transport::SynapseStream => {
                    let Query::Prompt(prompt) = query else {
                        return Err((500, "a chat request needs an OpenAI transport".into()));
                    };
                    return if transport == Transport::Synapse {
                        self.ask_synapse(axon, prompt, timeout, &mut text).await
                    } else {
                        self.ask_synapse_stream(axon, prompt, timeout, &mut text)
                            .await
                    };
                }
            };
            let request = match query {
                Query::Prompt(prompt) => {
                    ChatCompletionRequest::streamed(&prompt.roles, &prompt.messages)
                }
                Query::Chat(request) => ChatCompletionRequest {
                    stream: true,
                    ..request.clone()
                },
            };
            let read = (&mut text, &mut logprobs);
            self.ask_openai(axon, &request, scheme, timeout, deadline, read)
                .await
        };
        let outcome = tokio::time::timeout_at(deadline, asked)
            .await
            .unwrap_or_else(|_| Err((408, timeout_message(timeout))));
        let completion = text.finish();
        let (status_code, status_message, completion, logprobs) = match outcome {
            Ok(()) => (200, "Success".to_string(), completion, logprobs),
            Err((code, message)) => (code, message, String::new(), Vec::new()),
        };
        MinerAnswer {
            axon: axon.clone(),
            status_code,
            status_message,
            latency: start.elapsed(),
            completion,
            logprobs,
        }
    }

    async fn ask_synapse<F: FnMut(&str)>(
        &self,
        axon: &AxonInfo,
        prompt: &PromptingSynapse,
        timeout: Duration,
        text: &mut Collector<F>,
    ) -> Result<(), Failure> {
        let answered = self
            .prompt(std::slice::from_ref(axon), prompt, timeout)
            .await
            .map_err(|e| (500, e.to_string()))?;
        let (response, completion) = answered.into_iter().next().expect("one axon asked");
        if !response.is_success() {
            return Err((response.status_code, response.status_message));
        }
        text.push_str(&completion);
        Ok(())
    }

    async fn ask_synapse_stream<F: FnMut(&str)>(
        &self,
        axon: &AxonInfo,
        prompt: &PromptingSynapse,
        timeout: Duration,
        text: &mut Collector<F>,
    ) -> Result<(), Failure> {
        let synapse = prompt
            .to_synapse(Arc::new(StreamPromptingSynapse::schema()))
            .map_err(|e| (500, e.to_string()))?;
        let mut stream = self
            .stream(axon, &synapse, timeout)
            .await
            .map_err(|r| (r.status_code, r.status_message))?;
        while let Some(chunk) = stream.chunks.next().await {
            text.push_bytes(&chunk?);
            if text.full {
                break;
            }
        }
        Ok(())
    }

    /// Sends `request` and reads its SSE stream: the text into the collector, the
    /// logprobs of every chunk into the list.
    async fn ask_openai<F: FnMut(&str)>(
        &self,
        axon: &AxonInfo,
        request: &ChatCompletionRequest,
        scheme: AuthScheme,
        timeout: Duration,
        deadline: tokio::time::Instant,
        (text, logprobs): (&mut Collector<F>, &mut Vec<TokenLogprob>),
    ) -> Result<(), Failure> {
        let body = serde_json::to_vec(request).expect("a chat request serialises");
        let headers = self
            .auth_headers(
                scheme,
                CHAT_COMPLETIONS_PATH,
                &axon.hotkey,
                &body,
                self.next_nonce(),
            )
            .map_err(|e| (500, e.to_string()))?;
        let url = format!("http://{}:{}{CHAT_COMPLETIONS_PATH}", axon.ip, axon.port);
        let name = CHAT_COMPLETIONS_PATH.trim_start_matches('/');
        let resp = self
            .client()
            .post(&url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| map_client_error(&e, axon, name, timeout))?;
        let status = resp.status().as_u16();
        let max_bytes = self.options().max_response_bytes;
        if status != 200 {
            let message = match read_capped(resp, max_bytes).await {
                Ok(body) => error_message(&body)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
                Err(ReadError::TooLarge) => self.too_large_message(),
                Err(ReadError::Http(e)) => map_client_error(&e, axon, name, timeout).1,
            };
            return Err((status, message));
        }
        let limit = ChunkLimit {
            deadline,
            max_bytes,
            too_large: self.too_large_message(),
        };
        let mut chunks = Box::pin(limit.apply(resp.bytes_stream()));
        let mut decoder = SseDecoder::default();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| match e {
                ChunkError::Http(e) => map_client_error(&e, axon, name, timeout),
                ChunkError::Deadline => (408, timeout_message(timeout)),
                ChunkError::TooLarge(message) => (413, message),
            })?;
            for data in decoder.push(&chunk) {
                match openai::read_chunk(&data) {
                    Ok(StreamData::Chunk {
                        text: piece,
                        logprobs: tokens,
                    }) => {
                        text.push_str(&piece);
                        logprobs.extend(tokens);
                    }
                    Ok(StreamData::Done) => return Ok(()),
                    Err(StreamDataError::NotAChunk) => {
                        return Err((422, "Failed to parse response".into()));
                    }
                    Err(StreamDataError::Logprobs) => {
                        return Err((422, "Failed to parse logprobs".into()));
                    }
                }
                if text.full {
                    return Ok(());
                }
            }
        }
        Err((
            503,
            "Server disconnected before the end of the stream".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_by_name() {
        for t in Transport::ALL {
            assert_eq!(t.name().parse::<Transport>(), Ok(t));
            let yaml = serde_json::to_string(&t).unwrap();
            assert_eq!(yaml, format!("\"{}\"", t.name()));
        }
        let err = "openai".parse::<Transport>().unwrap_err();
        assert!(err.contains("btauth-openai"), "{err}");
        // A chat request (verified inference) needs an OpenAI wire.
        let openai = Transport::ALL.map(Transport::openai);
        assert_eq!(
            openai,
            [
                Transport::BtauthOpenai,
                Transport::BtauthOpenai,
                Transport::BtauthOpenai,
                Transport::EpistulaOpenai
            ]
        );
    }

    #[test]
    fn the_collector_cuts_at_the_limit_and_joins_split_characters() {
        let mut seen = Vec::new();
        let mut c = Collector::new(8, |s: &str| seen.push(s.to_string()));
        c.push_bytes(&"é".as_bytes()[..1]);
        c.push_bytes(&"é".as_bytes()[1..]);
        c.push_bytes(b"ab\xffc");
        assert!(!c.full);
        c.push_str("dé");
        assert!(c.full, "10 bytes would pass the limit of 8");
        c.push_str("more");
        let text = c.finish();
        assert_eq!(text, "éab\u{fffd}c");
        assert_eq!(seen.concat(), text);
    }
}

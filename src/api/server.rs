//! The API's HTTP server (hyper, HTTP/1.1, as the axon): routing, bearer-key checks,
//! per-key limits, the body cap and the OpenAI wire formats, request and reply. Every
//! failure is an OpenAI-style error object `{"error": {"message", "type", "param",
//! "code"}}` with its status: 401 (no, wrong or revoked key), 429 (over a limit, with
//! `Retry-After`), 400 (malformed body, unknown model, bad uids), 413 (body over
//! `max_body_bytes`), 404 (no such route), 503 (no miner answered, and why).
//!
//! A streamed answer is Server-Sent Events: a role chunk, the content chunks as the
//! backend yields them, a chunk with `finish_reason`, then `data: [DONE]`. A client
//! that goes away drops the body, and with it the backend's stream (which cancels the
//! work behind it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::limits::{Limits, RateLimiter, estimate_tokens};
use super::{BackendError, ChatBackend, ChatQuery, KeyStore};
use crate::net::openai::{
    CHAT_COMPLETIONS_PATH, ChatCompletionRequest, ChatFinish, ReplyId, SSE_DONE,
};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The header naming who answered.
pub const SOURCE_HEADER: &str = "x-neuron-miner";

/// Where and how the API serves.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Address to bind (`--api.host`, `--api.port`).
    pub bind: SocketAddr,
    /// Largest request body (413 past it).
    pub max_body_bytes: usize,
    /// Connections served at once (more wait in the accept queue).
    pub max_connections: usize,
    /// Deadline for a request's headers and for its body.
    pub read_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_body_bytes: 256 * 1024,
            max_connections: 512,
            read_timeout: Duration::from_secs(10),
        }
    }
}

struct State {
    options: ApiOptions,
    keys: Arc<KeyStore>,
    limiter: Arc<RateLimiter>,
    backend: Arc<dyn ChatBackend>,
}

/// A running API. Dropping it stops accepting; [`ApiServer::shutdown`] waits for the
/// accept loop to end.
pub struct ApiServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Binds `options.bind` and serves `backend` to the holders of `keys`.
    pub async fn serve(
        options: ApiOptions,
        keys: Arc<KeyStore>,
        backend: Arc<dyn ChatBackend>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(options.bind).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(State {
            options,
            keys,
            limiter: Arc::default(),
            backend,
        });
        let (shutdown, rx) = watch::channel(false);
        tracing::info!(addr = %local_addr, "API serving");
        let task = tokio::spawn(accept_loop(listener, state, rx));
        Ok(Self {
            local_addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes the open connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(state.options.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = stop.changed() => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc_state = st.clone();
            let svc = service_fn(move |req| {
                let st = svc_state.clone();
                async move { Ok::<_, Infallible>(handle(&st, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(st.options.read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
            drop(permit);
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).expect("json")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An OpenAI-style error answer.
fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn bad_request(code: &str, message: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        message,
    )
}

async fn handle(st: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/v1/models") => match authorize(st, &req) {
            Ok(_) => models(st),
            Err(resp) => *resp,
        },
        (&Method::POST, CHAT_COMPLETIONS_PATH) => chat(st, req).await,
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            &format!("Unknown request URL: {} {path}", req.method()),
        ),
    }
}

fn models(st: &State) -> Response<Body> {
    let data: Vec<Value> = st
        .backend
        .models()
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "subnet"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

/// The key a request's `Authorization: Bearer` names, if it is live; else the 401 (or
/// a 500 when the key store cannot be read).
fn authorize(st: &State, req: &Request<Incoming>) -> Result<super::KeyInfo, Box<Response<Body>>> {
    let unauthorized = |message: &str| {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
    };
    let Some(secret) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Err(Box::new(unauthorized(
            "You didn't provide an API key: send `Authorization: Bearer KEY` (keys come from `neuron api-key add NAME`).",
        )));
    };
    match st.keys.verify(secret) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(Box::new(unauthorized(
            "Incorrect or revoked API key provided.",
        ))),
        Err(e) => {
            tracing::error!("API key check failed: {e}");
            Err(Box::new(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                "The key store cannot be read; see the validator's log.",
            )))
        }
    }
}

/// The body of a chat request: OpenAI's, plus the subnet's optional `uids`.
#[derive(Deserialize)]
struct ApiRequest {
    #[serde(flatten)]
    chat: ChatCompletionRequest,
    #[serde(default)]
    uids: Option<Vec<u16>>,
}

const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// Checks the conversation: non-empty, known roles, string or text-part contents.
fn check_messages(request: &ChatCompletionRequest) -> Result<(), String> {
    if request.messages.is_empty() {
        return Err("'messages' must hold at least one message".into());
    }
    for (i, m) in request.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(format!(
                "messages[{i}].role `{}` is not one of {}",
                m.role,
                ROLES.join(", ")
            ));
        }
        if !(m.content.is_string() || m.content.is_array()) {
            return Err(format!(
                "messages[{i}].content must be a string or a list of text parts"
            ));
        }
    }
    Ok(())
}

async fn read_body(st: &State, req: Request<Incoming>) -> Result<Bytes, Box<Response<Body>>> {
    let max = st.options.max_body_bytes;
    let too_large = || {
        Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            &format!("Request body exceeds the limit of {max} bytes"),
        ))
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), max);
    match tokio::time::timeout(st.options.read_timeout, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Box::new(bad_request(
            "invalid_body",
            &format!("Could not read the body: {e}"),
        ))),
        Err(_) => Err(Box::new(error(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "timeout",
            "The request body did not arrive in time",
        ))),
    }
}

async fn chat(st: &State, req: Request<Incoming>) -> Response<Body> {
    let key = match authorize(st, &req) {
        Ok(key) => key,
        Err(resp) => return *resp,
    };
    let limits = Limits {
        requests: key.requests_per_minute,
        tokens: key.tokens_per_minute,
    };
    let body = match read_body(st, req).await {
        Ok(body) => body,
        Err(resp) => return *resp,
    };
    let parsed: ApiRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(
                "invalid_json",
                &format!("The body is not a chat completion request: {e}"),
            );
        }
    };
    if let Err(message) = check_messages(&parsed.chat) {
        return bad_request("invalid_messages", &message);
    }
    let served = st.backend.models();
    let model = match &parsed.chat.model {
        Some(m) if served.contains(m) => m.clone(),
        Some(m) => {
            return bad_request(
                "model_not_found",
                &format!(
                    "The model `{m}` is not served here; GET /v1/models lists: {}",
                    served.join(", ")
                ),
            );
        }
        None => served.first().cloned().unwrap_or_default(),
    };
    let prompt_tokens: u64 = parsed
        .chat
        .chat_messages()
        .iter()
        .map(|m| estimate_tokens(&m.content))
        .sum();
    if let Err(wait) = st
        .limiter
        .admit(&key.name, limits, prompt_tokens, Instant::now())
    {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            "rate_limit_exceeded",
            &format!(
                "Rate limit reached for key `{}` ({} requests, {} tokens per minute); retry in {} s",
                key.name,
                limits.requests,
                limits.tokens,
                wait.as_secs()
            ),
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs()));
        return resp;
    }
    let mut request = parsed.chat;
    request.model = Some(model.clone());
    let id = ReplyId::new(&request);
    let stream = request.stream;
    let query = ChatQuery {
        key: key.name.clone(),
        model,
        request,
        uids: parsed.uids,
    };
    let reply = match st.backend.chat(query).await {
        Ok(reply) => reply,
        Err(BackendError::BadRequest(message)) => return bad_request("invalid_uids", &message),
        Err(BackendError::Unavailable(message)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "no_miner_answered",
                &message,
            );
        }
    };
    let usage = Usage {
        limiter: st.limiter.clone(),
        key: key.name,
        tokens: estimate_tokens(&reply.first),
    };
    let source = HeaderValue::from_str(&reply.source).ok();
    let mut resp = if stream {
        streamed(id, reply.first, reply.rest, usage)
    } else {
        let mut usage = usage;
        let mut text = reply.first;
        let mut rest = reply.rest;
        while let Some(piece) = rest.next().await {
            usage.add(&piece);
            text.push_str(&piece);
        }
        let finish = ChatFinish {
            finish_reason: "stop".into(),
            logprobs: Vec::new(),
            prompt_tokens: prompt_tokens as usize,
            completion_tokens: usage.tokens as usize,
        };
        json_response(StatusCode::OK, &id.completion(&text, &finish, false))
    };
    if let Some(source) = source {
        resp.headers_mut().insert(SOURCE_HEADER, source);
    }
    resp
}

/// A completion's tokens, charged to its key when the answer ends (or is dropped).
struct Usage {
    limiter: Arc<RateLimiter>,
    key: String,
    tokens: u64,
}

impl Usage {
    /// Counts `text` as completion tokens.
    fn add(&mut self, text: &str) {
        self.tokens += estimate_tokens(text);
    }
}

impl Drop for Usage {
    fn drop(&mut self) {
        self.limiter
            .record_tokens(&self.key, self.tokens, Instant::now());
    }
}

fn streamed(
    id: ReplyId,
    first: String,
    rest: futures::stream::BoxStream<'static, String>,
    usage: Usage,
) -> Response<Body> {
    let head = [
        id.sse_chunk(json!({"role": "assistant", "content": ""}), None, None),
        id.sse_chunk(json!({"content": first}), None, None),
    ];
    let id_end = id.clone();
    let mut usage = usage;
    let pieces = rest.map(move |piece| {
        usage.add(&piece);
        id.sse_chunk(json!({"content": piece}), None, None)
    });
    let tail = futures::stream::once(async move {
        let mut end = id_end.sse_chunk(json!({}), None, Some("stop")).to_vec();
        end.extend_from_slice(SSE_DONE);
        Bytes::from(end)
    });
    let frames = futures::stream::iter(head)
        .chain(pieces)
        .chain(tail)
        .map(|bytes| Ok::<_, std::io::Error>(Frame::data(bytes)));
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

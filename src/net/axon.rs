//! The axon: an HTTP/1.1 server (hyper) that answers synapses exactly as the SDK's
//! FastAPI axon does (routes, middleware order, status codes, headers, JSON bodies),
//! plus the limits a public server needs (body size and read deadline, requests and
//! connections per client address, first-byte and keep-alive timeouts, a connection
//! cap, a clamped freshness window), a priority queue, graceful shutdown and `/metrics`.
//! Requests signed with bittensor 11's btauth/1 reach the same routes and hooks
//! (`AxonOptions::auth` selects the accepted schemes; see `auth`).

use std::collections::{BinaryHeap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};

use super::auth::btauth::{BtAuthClaim, BtAuthVerifier};
use super::auth::epistula::{EpistulaClaim, EpistulaVerifier};
use super::auth::{AuthScheme, scheme_of};
use super::metrics::Metrics;
use super::openai::{
    AVAILABILITY_PATH, CHAT_COMPLETIONS_PATH, ChatCompletionRequest, ChatEvent, ChatFinish,
    ReplyId, SSE_DONE, logprobs_json,
};
use super::synapse::{Synapse, SynapseSchema, base_schema};
use super::{ALLOWED_DELTA_NS, AxonInfo, NetError, VERSION_AS_INT, now_ns, signing_message};
use crate::wallet::{Keypair, verify};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// An error from a handler hook; the axon answers 500 `Internal Server Error #id`
/// (the message is logged, never sent, as in the SDK).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// What `forward` returns: a filled-in synapse (sent as JSON), or a stream of raw chunks
/// (sent as `text/event-stream`, for streaming synapses).
pub enum Forwarded {
    /// The synapse to send back (its `completion` etc. filled in).
    Synapse(Synapse),
    /// Raw body chunks, sent as they come, after the SDK's headers of `headers_from`.
    Stream {
        /// The request synapse whose headers go on the response.
        headers_from: Synapse,
        /// The body chunks.
        chunks: BoxStream<'static, Result<Bytes, HandlerError>>,
    },
}

/// The hooks an axon calls, in the SDK's order: `blacklist` → (signature check) →
/// `priority` → `forward`. `blacklist` and `priority` see the header-only synapse
/// (body fields empty, dendrite info from headers, unauthenticated at blacklist time),
/// exactly like SDK hooks. The miner plugs its script hooks in here.
#[async_trait::async_trait]
pub trait AxonHandler: Send + Sync + 'static {
    /// The synapse classes to serve (the base `Synapse` ping is always served).
    fn synapses(&self) -> Vec<SynapseSchema>;

    /// `Some(reason)` rejects the request with 403 `Forbidden. Key is blacklisted: {reason}.`
    async fn blacklist(&self, _request: &Synapse) -> Option<String> {
        None
    }

    /// Priority under load: higher is served first when all forward slots are busy.
    async fn priority(&self, _request: &Synapse) -> f64 {
        0.0
    }

    /// Answers a verified request whose body passed the hash check.
    async fn forward(&self, synapse: Synapse) -> Result<Forwarded, HandlerError>;

    /// Whether `POST /v1/chat/completions` is served (404 otherwise, before any
    /// signature work).
    fn serves_chat(&self) -> bool {
        false
    }

    /// Answers an authenticated (btauth/1 or Epistula) chat request from `caller` (a
    /// header-only synapse naming the sender): text as it is generated, then how it
    /// ended. Only called when [`AxonHandler::serves_chat`].
    async fn chat_completions(
        &self,
        _caller: &Synapse,
        _request: ChatCompletionRequest,
    ) -> Result<ChatStream, HandlerError> {
        Err(HandlerError("chat completions are not served".into()))
    }

    /// The unsigned `POST /availability` answer (`None`: 404).
    async fn availability(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A chat answer as it is produced.
pub type ChatStream = BoxStream<'static, Result<ChatEvent, HandlerError>>;

/// Axon settings.
#[derive(Debug, Clone)]
pub struct AxonOptions {
    /// Address to bind (port 0 picks a free port).
    pub bind: SocketAddr,
    /// IP to advertise in [`Axon::info`] (default: the bound IP).
    pub external_ip: Option<String>,
    /// Largest accepted request body (413 beyond).
    pub max_body_bytes: usize,
    /// How long a verified request's body may take to arrive (408 beyond). The body is
    /// read before the request queues for a forward slot, so a slow body holds none.
    pub body_read_timeout: Duration,
    /// Requests one client address (an IPv4 address, or an IPv6 /64) may have in
    /// flight at once (429 beyond).
    pub max_in_flight_per_ip: usize,
    /// Connections one client address (an IPv4 address, or an IPv6 /64) may hold open
    /// at once; further ones are closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// Open connections at most (further connections wait in the accept backlog).
    pub max_connections: usize,
    /// A new connection that sends no byte within this time is closed.
    pub first_byte_timeout: Duration,
    /// The longest a connection waits for a request's complete headers: counted from
    /// its first byte on a new connection, and from the end of the last response on a
    /// kept-alive one (so an idle kept-alive connection is closed after this).
    pub keep_alive_timeout: Duration,
    /// The most a request's claimed (unsigned) `timeout` counts for: the nonce
    /// freshness window is 4 s plus the timeout clamped to this, and so is the longest
    /// wait in the priority queue.
    pub max_request_timeout: Duration,
    /// `forward` calls running at once; more wait in the priority queue.
    pub max_concurrent_forwards: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// The authentication schemes accepted (others are refused with 401).
    pub auth: Vec<AuthScheme>,
}

impl Default for AxonOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 8091)),
            external_ip: None,
            max_body_bytes: 1 << 20,
            body_read_timeout: Duration::from_secs(10),
            max_in_flight_per_ip: 256,
            max_connections_per_ip: 128,
            max_connections: 4096,
            first_byte_timeout: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(15),
            max_request_timeout: Duration::from_secs(60),
            max_concurrent_forwards: 64,
            shutdown_grace: Duration::from_secs(10),
            auth: AuthScheme::ALL.to_vec(),
        }
    }
}

/// A nonce rule violation (the axon answers 401 `Not Verified with error: {this}`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NonceError {
    /// First nonce of a `hotkey:uuid` older than the freshness window.
    #[error(
        "Nonce is too old: acceptable delta is {allowed:.2} seconds but request was {age:.2} seconds old"
    )]
    Stale {
        /// Allowed age in seconds.
        allowed: f64,
        /// Actual age in seconds.
        age: f64,
    },
    /// Not newer than the last accepted nonce of this `hotkey:uuid`.
    #[error("Nonce is too old, a newer one was last processed")]
    Replayed,
}

/// The SDK's nonce rules, per endpoint key `"{hotkey}:{uuid}"`: the first nonce of a
/// key must be within the freshness window of now, later ones strictly increasing.
/// Unlike the SDK, the window applies whatever dendrite version a request claims (the
/// version header is not signed, so a replay could claim an old one).
#[derive(Default)]
pub struct NonceTracker {
    last: Mutex<HashMap<String, i64>>,
}

/// Above this many endpoint keys, entries whose nonce is older than an hour are pruned
/// (a returning endpoint then gets the freshness check again, which any nonce that old
/// fails, so replays stay rejected).
const NONCE_PRUNE_AT: usize = 100_000;

impl NonceTracker {
    /// Checks `nonce` for `key` without recording it; `window` is the freshness window
    /// of a key's first nonce.
    pub fn check(&self, key: &str, nonce: i64, window: Duration) -> Result<(), NonceError> {
        let last = self.last.lock().expect("nonce lock");
        Self::check_locked(&last, key, nonce, window)
    }

    /// Checks `nonce` for `key` and records it if it passes (atomically).
    pub fn commit(&self, key: &str, nonce: i64, window: Duration) -> Result<(), NonceError> {
        let mut last = self.last.lock().expect("nonce lock");
        Self::check_locked(&last, key, nonce, window)?;
        if last.len() >= NONCE_PRUNE_AT {
            let cutoff = now_ns() - 3_600_000_000_000;
            last.retain(|_, n| *n > cutoff);
        }
        last.insert(key.to_string(), nonce);
        Ok(())
    }

    fn check_locked(
        last: &HashMap<String, i64>,
        key: &str,
        nonce: i64,
        window: Duration,
    ) -> Result<(), NonceError> {
        let stored = last.get(key);
        if stored.is_none() {
            let now = now_ns();
            let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
            if nonce <= now.saturating_sub(window_ns) {
                return Err(NonceError::Stale {
                    allowed: window.as_secs_f64(),
                    age: now.saturating_sub(nonce) as f64 / 1e9,
                });
            }
        }
        match stored {
            Some(s) if nonce <= *s => Err(NonceError::Replayed),
            _ => Ok(()),
        }
    }
}

/// Orders `forward` calls by priority once `max_concurrent_forwards` are running.
struct PriorityGate {
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    seq: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: f64,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Higher priority first; among equals, earlier arrival (lower seq) first.
        self.priority
            .total_cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A running-forward slot; dropping it hands the slot to the best waiter.
struct Permit {
    gate: Arc<PriorityGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// A queued acquisition; if it is cancelled after being handed a slot, the slot is
/// passed on instead of being lost.
struct Pending {
    gate: Arc<PriorityGate>,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl PriorityGate {
    fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                free: slots.max(1),
                seq: 0,
                waiting: BinaryHeap::new(),
            }),
        })
    }

    fn release(&self) {
        let mut st = self.state.lock().expect("gate lock");
        while let Some(w) = st.waiting.pop() {
            if w.tx.send(()).is_ok() {
                return;
            }
        }
        st.free += 1;
    }

    async fn acquire(self: &Arc<Self>, priority: f64) -> Permit {
        let rx = {
            let mut st = self.state.lock().expect("gate lock");
            if st.free > 0 {
                st.free -= 1;
                return Permit { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let seq = st.seq;
            st.waiting.push(Waiter {
                priority: if priority.is_nan() { 0.0 } else { priority },
                seq,
                tx,
            });
            rx
        };
        let mut pending = Pending {
            gate: self.clone(),
            rx: Some(rx),
        };
        let rx = pending.rx.as_mut().expect("receiver present");
        // Senders are only dropped after a successful send or when the gate is gone.
        let _ = rx.await;
        pending.rx = None;
        Permit { gate: self.clone() }
    }
}

/// The address a per-client limit counts under: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 address's /64 network, the block one host usually holds.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts something (requests in flight, open connections) per client address.
#[derive(Default, Clone)]
struct PerClient {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted unit; dropping it (also on cancellation or unwinding) uncounts it.
struct PerClientGuard {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl PerClient {
    /// Counts one more for `ip`'s client key, unless it already has `max`.
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<PerClientGuard> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().expect("per-client lock");
        let n = counts.entry(key).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerClientGuard {
            counts: self.counts.clone(),
            key,
        })
    }
}

impl Drop for PerClientGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("per-client lock");
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A unit of a gauge (`in_flight`, `connections`), released when dropped, so a
/// cancelled request or a closed connection can never leave it counted.
struct GaugeUnit<'a>(&'a AtomicUsize);

impl<'a> GaugeUnit<'a> {
    fn enter(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for GaugeUnit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct State {
    config: AxonOptions,
    keypair: Keypair,
    hotkey: String,
    uuid: String,
    handler: Arc<dyn AxonHandler>,
    schemas: HashMap<String, Arc<SynapseSchema>>,
    available: String,
    nonces: NonceTracker,
    btauth: BtAuthVerifier,
    epistula: EpistulaVerifier,
    gate: Arc<PriorityGate>,
    requests_per_client: PerClient,
    connections_per_client: PerClient,
    metrics: Metrics,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
}

/// A running axon. Dropping it stops accepting at once; [`Axon::shutdown`] drains.
pub struct Axon {
    local_addr: SocketAddr,
    info: AxonInfo,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Axon {
    /// Binds `config.bind` and serves `handler`'s synapses, signing as `keypair`.
    pub async fn serve(
        config: AxonOptions,
        keypair: Keypair,
        handler: Arc<dyn AxonHandler>,
    ) -> Result<Axon, NetError> {
        if !keypair.has_secret() {
            return Err(NetError::Wallet(crate::wallet::WalletError::NoSecret));
        }
        let mut schemas = HashMap::new();
        let mut names = vec!["Synapse".to_string()];
        schemas.insert("Synapse".to_string(), Arc::new(base_schema()));
        for s in handler.synapses() {
            s.validate()?;
            if !schemas.contains_key(&s.name) {
                names.push(s.name.clone());
            }
            schemas.insert(s.name.clone(), Arc::new(s));
        }
        let available = format!(
            "[{}]",
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let listener = TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        let info = AxonInfo::new(
            config
                .external_ip
                .clone()
                .unwrap_or_else(|| local_addr.ip().to_string()),
            local_addr.port(),
            keypair.ss58(),
        );
        let state = Arc::new(State {
            gate: PriorityGate::new(config.max_concurrent_forwards),
            hotkey: keypair.ss58(),
            uuid: uuid::Uuid::new_v4().to_string(),
            config,
            keypair,
            handler,
            schemas,
            available,
            nonces: NonceTracker::default(),
            btauth: BtAuthVerifier::new(info.hotkey.clone()),
            epistula: EpistulaVerifier::new(info.hotkey.clone()),
            requests_per_client: PerClient::default(),
            connections_per_client: PerClient::default(),
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let (shutdown, rx) = watch::channel(false);
        tracing::info!(addr = %local_addr, hotkey = %state.hotkey, "axon serving");
        let task = tokio::spawn(accept_loop(listener, state, rx));
        Ok(Axon {
            local_addr,
            info,
            shutdown,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This axon as dendrites address it.
    pub fn info(&self) -> AxonInfo {
        self.info.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to `shutdown_grace`), and
    /// returns when every connection is closed.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Axon {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    // Every connection task holds a sender; draining ends when all are dropped.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(per_client) = state
            .connections_per_client
            .acquire(peer.ip(), state.config.max_connections_per_ip)
        else {
            tracing::debug!(%peer, "connection closed: too many from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let stop = shutdown.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let _open = GaugeUnit::enter(&st.connections);
            serve_connection(&st, stream, peer, stop).await;
            drop((permit, per_client, alive));
        });
    }
    drop(listener);
    drop(alive_tx);
    tracing::info!("axon draining in-flight requests");
    if tokio::time::timeout(state.config.shutdown_grace, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("axon shutdown grace period elapsed with connections still open");
    }
}

/// Serves one accepted connection until it closes: nothing until its first byte (closed
/// after `first_byte_timeout` without one), then HTTP/1.1 with `keep_alive_timeout` on
/// each request's headers; on shutdown the request in flight finishes first.
async fn serve_connection(
    st: &Arc<State>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = [0u8; 1];
    let first_byte = tokio::select! {
        r = tokio::time::timeout(st.config.first_byte_timeout, stream.peek(&mut first)) => r,
        _ = stop.changed() => return,
    };
    match first_byte {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return,
        Err(_) => {
            tracing::debug!(%peer, "connection closed: no first byte in time");
            return;
        }
    }
    let state = st.clone();
    let svc = service_fn(move |req| {
        let st = state.clone();
        async move { Ok::<_, Infallible>(handle(&st, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(st.config.keep_alive_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            // Finish the request in flight, then close (idle ones close at once).
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "connection closed with error");
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn handle(st: &State, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let path = req.uri().path().to_string();
    if path == "/metrics" && req.method() == Method::GET {
        let text = st.metrics.render(
            st.in_flight.load(Ordering::Relaxed),
            st.connections.load(Ordering::Relaxed),
        );
        let mut r = Response::new(full(text));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return r;
    }
    let Some(_per_client) = st
        .requests_per_client
        .acquire(peer.ip(), st.config.max_in_flight_per_ip)
    else {
        let msg = format!("Too many concurrent requests from {}", peer.ip());
        st.metrics.record("-", 429, start.elapsed());
        return error_response(st, Synapse::new(Arc::new(base_schema())), 429, msg, start);
    };
    // Released on every exit, also when hyper drops this future (the caller hung up).
    let _in_flight = GaugeUnit::enter(&st.in_flight);
    let (label, resp) = process(st, peer, &path, req, start).await;
    st.metrics
        .record(&label, resp.status().as_u16(), start.elapsed());
    resp
}

/// Routes a request by the authentication scheme its headers claim (401 for a scheme
/// not in `AxonOptions::auth`); returns the metrics label and the response.
async fn process(
    st: &State,
    peer: SocketAddr,
    path: &str,
    req: Request<Incoming>,
    start: Instant,
) -> (String, Response<Body>) {
    if path == AVAILABILITY_PATH && req.method() == Method::POST {
        let resp = match st.handler.availability().await {
            Some(v) => json_response(200, &v),
            None => detail_response(404, "Not Found"),
        };
        return ("availability".into(), resp);
    }
    let scheme = scheme_of(req.headers());
    if !st.config.auth.contains(&scheme) {
        let msg = format!("authentication scheme {scheme} is not accepted by this axon");
        return ("refused".into(), detail_response(401, &msg));
    }
    match scheme {
        AuthScheme::Synapse if path == CHAT_COMPLETIONS_PATH => {
            let msg = "chat completions need btauth/1 or Epistula headers";
            ("chat_completions".into(), detail_response(401, msg))
        }
        AuthScheme::Synapse => process_synapse(st, peer, path, req, start).await,
        AuthScheme::Btauth | AuthScheme::Epistula => {
            process_signed(st, scheme, peer, req, start).await
        }
    }
}

/// Runs the SDK middleware pipeline; returns the metrics label and the response.
async fn process_synapse(
    st: &State,
    peer: SocketAddr,
    path: &str,
    req: Request<Incoming>,
    start: Instant,
) -> (String, Response<Body>) {
    let base = || Synapse::new(Arc::new(base_schema()));
    let name = path.split('/').nth(1).unwrap_or_default();
    // 1. Route lookup: 404 UnknownSynapseError.
    let Some(schema) = st.schemas.get(name).cloned() else {
        let msg = format!(
            "Synapse name '{name}' not found. Available synapses {}",
            st.available
        );
        return (
            "unknown".into(),
            error_response(st, base(), 404, msg, start),
        );
    };
    let label = schema.name.clone();
    // 2. Header parse: SynapseParsingError is not a SynapseException in the SDK, so 500.
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
    let mut synapse = match Synapse::from_headers(schema.clone(), headers) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "header parse failed");
            return (label, internal_error(st, base(), start));
        }
    };
    synapse.axon.version = Some(VERSION_AS_INT);
    synapse.axon.uuid = Some(st.uuid.clone());
    synapse.axon.nonce = Some(now_ns());
    synapse.axon.status_code = Some(100);
    synapse.dendrite.ip = Some(peer.ip().to_string());
    synapse.dendrite.port = Some(i64::from(peer.port()));
    // Beyond the SDK: refuse oversized bodies before doing any work.
    if declared_length(&req).is_some_and(|n| n > st.config.max_body_bytes) {
        let msg = too_large_message(st);
        return (label, error_response(st, synapse, 413, msg, start));
    }
    // 3. Blacklist: 403.
    if let Some(reason) = st.handler.blacklist(&synapse).await {
        let msg = format!("Forbidden. Key is blacklisted: {reason}.");
        return (label, error_response(st, synapse, 403, msg, start));
    }
    // 4. Verify: 401.
    if let Err(e) = verify_request(st, &synapse) {
        let msg = format!("Not Verified with error: {e}");
        return (label, error_response(st, synapse, 401, msg, start));
    }
    // 5. Body, under a deadline and before any forward slot is taken.
    let body = match read_body(st, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return (label, error_response(st, synapse, r.code, r.message, start)),
    };
    // JSON (422 as FastAPI), body hash (500).
    let parsed = match Synapse::from_json(schema, &body) {
        Ok(p) => p,
        Err(e) => {
            return (
                label,
                error_response(st, synapse, 422, e.to_string(), start),
            );
        }
    };
    if parsed.body_hash() != synapse.computed_body_hash {
        tracing::debug!(header = %synapse.computed_body_hash, body = %parsed.body_hash(), "body hash mismatch");
        return (label, internal_error(st, synapse, start));
    }
    // 6.–7. Priority queue, then forward.
    match queue_and_forward(st, &synapse, parsed, &label).await {
        Ok(forwarded) => (label, forwarded_response(forwarded, start)),
        Err(r) => (label, error_response(st, synapse, r.code, r.message, start)),
    }
}

/// The headers of a btauth/1 or Epistula request that passed the cheap checks.
enum Claim {
    Btauth(BtAuthClaim),
    Epistula(EpistulaClaim),
}

impl Claim {
    /// The cheap checks of `scheme` (shape, receiver, freshness; no signature work);
    /// refusals are btauth/1's 401 or Epistula's 400.
    fn precheck(
        st: &State,
        scheme: AuthScheme,
        headers: &hyper::HeaderMap,
    ) -> Result<Claim, Refusal> {
        let now = now_ns();
        match scheme {
            AuthScheme::Epistula => st
                .epistula
                .precheck(headers, now / 1_000_000)
                .map(Claim::Epistula)
                .map_err(|e| Refusal {
                    code: 400,
                    message: e.to_string(),
                }),
            _ => st
                .btauth
                .precheck(headers, now)
                .map(Claim::Btauth)
                .map_err(|e| Refusal {
                    code: 401,
                    message: e.to_string(),
                }),
        }
    }

    /// The claimed sender.
    fn sender(&self) -> &str {
        match self {
            Claim::Btauth(c) => &c.sender,
            Claim::Epistula(c) => &c.sender,
        }
    }

    /// The request's nonce in ns (Epistula: its ms timestamp).
    fn nonce_ns(&self) -> i64 {
        match self {
            Claim::Btauth(c) => c.nonce_ns,
            Claim::Epistula(c) => c.timestamp_ms.saturating_mul(1_000_000),
        }
    }

    /// The signature over the received request, then the replay store.
    fn verify(&self, st: &State, method: &str, target: &str, body: &[u8]) -> Result<(), Refusal> {
        match self {
            Claim::Btauth(c) => st
                .btauth
                .verify(c, method, target, body)
                .map_err(|e| Refusal {
                    code: 401,
                    message: e.to_string(),
                }),
            Claim::Epistula(c) => st.epistula.verify(c, body).map_err(|e| Refusal {
                code: 400,
                message: e.to_string(),
            }),
        }
    }
}

/// A btauth/1 or Epistula request to a synapse route: cheap checks (route, header
/// shape, receiver, freshness, declared size, blacklist on the header-only synapse)
/// before any signature work, then the body, the signature and replay store, and the
/// same priority → forward hooks as a Synapse request. The body is the synapse JSON;
/// its dendrite hotkey is the authenticated sender, whatever the body says.
async fn process_signed(
    st: &State,
    scheme: AuthScheme,
    peer: SocketAddr,
    req: Request<Incoming>,
    start: Instant,
) -> (String, Response<Body>) {
    let target = req.uri().path_and_query().map_or_else(
        || req.uri().path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let chat = req.uri().path() == CHAT_COMPLETIONS_PATH && req.method() == Method::POST;
    let name = req.uri().path().split('/').nth(1).unwrap_or_default();
    let schema = match st.schemas.get(name) {
        _ if chat && st.handler.serves_chat() => Arc::new(base_schema()),
        Some(schema) if !chat => schema.clone(),
        _ => return ("unknown".into(), detail_response(404, "Not Found")),
    };
    let label = if chat {
        "chat_completions".to_string()
    } else {
        schema.name.clone()
    };
    let refused = |r: Refusal| detail_response(r.code, &r.message);
    let claim = match Claim::precheck(st, scheme, req.headers()) {
        Ok(c) => c,
        Err(r) => return (label, refused(r)),
    };
    if declared_length(&req).is_some_and(|n| n > st.config.max_body_bytes) {
        return (label, detail_response(413, &too_large_message(st)));
    }
    let mut caller = Synapse::new(schema.clone());
    caller.dendrite.hotkey = Some(claim.sender().to_string());
    caller.dendrite.nonce = Some(claim.nonce_ns());
    caller.dendrite.ip = Some(peer.ip().to_string());
    caller.dendrite.port = Some(i64::from(peer.port()));
    if let Some(reason) = st.handler.blacklist(&caller).await {
        let msg = format!("Forbidden. Key is blacklisted: {reason}.");
        return (label, detail_response(403, &msg));
    }
    let method = req.method().as_str().to_string();
    let body = match read_body(st, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return (label, refused(r)),
    };
    if let Err(r) = claim.verify(st, &method, &target, &body) {
        return (label, refused(r));
    }
    if chat {
        return (label, answer_chat(st, caller, &body).await);
    }
    let mut parsed = match Synapse::from_json(schema, &body) {
        Ok(p) => p,
        Err(e) => return (label, detail_response(422, &e.to_string())),
    };
    parsed.dendrite = caller.dendrite.clone();
    caller.timeout = parsed.timeout;
    match queue_and_forward(st, &caller, parsed, &label).await {
        Ok(forwarded) => (label, forwarded_response(forwarded, start)),
        Err(r) => (label, refused(r)),
    }
}

/// A refused request: its status and the message sent back.
struct Refusal {
    code: u16,
    message: String,
}

/// The declared `Content-Length`, if any.
fn declared_length<B>(req: &Request<B>) -> Option<usize> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

/// Reads a request body under the size limit (413) and deadline (408).
async fn read_body(st: &State, body: Incoming) -> Result<Bytes, Refusal> {
    let read = Limited::new(body, st.config.max_body_bytes).collect();
    match tokio::time::timeout(st.config.body_read_timeout, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Refusal {
                code: 413,
                message: too_large_message(st),
            })
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading request body failed");
            Err(Refusal {
                code: 400,
                message: "Could not read the request body".into(),
            })
        }
        Err(_) => Err(Refusal {
            code: 408,
            message: format!(
                "Timed out after {} seconds reading the request body",
                super::float_repr(st.config.body_read_timeout.as_secs_f64())
            ),
        }),
    }
}

/// Priority (on the header-only `caller` synapse), a forward slot (408 after the
/// request's clamped timeout), then `forward` (the base `Synapse` ping echoes; a
/// handler error is 500 `Internal Server Error #id`).
async fn queue_and_forward(
    st: &State,
    caller: &Synapse,
    parsed: Synapse,
    label: &str,
) -> Result<Forwarded, Refusal> {
    let priority = st.handler.priority(caller).await;
    let wait = request_timeout(st, caller).max(Duration::from_millis(1));
    let Ok(_slot) = tokio::time::timeout(wait, st.gate.acquire(priority)).await else {
        return Err(Refusal {
            code: 408,
            message: format!(
                "Timed out after {} seconds waiting in the priority queue",
                super::float_repr(wait.as_secs_f64())
            ),
        });
    };
    let forwarded = if parsed.name() == "Synapse" {
        Ok(Forwarded::Synapse(parsed))
    } else {
        st.handler.forward(parsed).await
    };
    forwarded.map_err(|e| {
        tracing::warn!(error = %e, synapse = %label, "forward failed");
        Refusal {
            code: 500,
            message: format!("Internal Server Error #{}", uuid::Uuid::new_v4()),
        }
    })
}

fn forwarded_response(forwarded: Forwarded, start: Instant) -> Response<Body> {
    match forwarded {
        Forwarded::Synapse(out) => success(out, start),
        Forwarded::Stream {
            headers_from,
            chunks,
        } => streaming(headers_from, chunks, start),
    }
}

/// Answers an authenticated chat request: JSON (422 if invalid), priority queue (408),
/// then the handler's events as SSE chunks (`stream: true`, the forward slot held until
/// the stream ends) or one `chat.completion`.
async fn answer_chat(st: &State, caller: Synapse, body: &[u8]) -> Response<Body> {
    let request: ChatCompletionRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return detail_response(422, &e.to_string()),
    };
    let priority = st.handler.priority(&caller).await;
    let wait = request_timeout(st, &caller).max(Duration::from_millis(1));
    let Ok(slot) = tokio::time::timeout(wait, st.gate.acquire(priority)).await else {
        let msg = format!(
            "Timed out after {} seconds waiting in the priority queue",
            super::float_repr(wait.as_secs_f64())
        );
        return detail_response(408, &msg);
    };
    let id = ReplyId::new(&request);
    let with_logprobs = request.logprobs_wanted().is_some();
    let stream = request.stream;
    let events = match st.handler.chat_completions(&caller, request).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "chat completion failed");
            let msg = format!("Internal Server Error #{}", uuid::Uuid::new_v4());
            return detail_response(500, &msg);
        }
    };
    if stream {
        let first = id.sse_chunk(
            serde_json::json!({"role": "assistant", "content": ""}),
            None,
            None,
        );
        let chunks = events.map(move |event| {
            let _slot = &slot;
            match event {
                Ok(ChatEvent::Delta(text)) => {
                    Ok(id.sse_chunk(serde_json::json!({ "content": text }), None, None))
                }
                Ok(ChatEvent::Finished(end)) => {
                    let mut out = Vec::new();
                    if with_logprobs {
                        let lp = logprobs_json(&end.logprobs);
                        out.extend_from_slice(&id.sse_chunk(serde_json::json!({}), Some(lp), None));
                    }
                    let last = id.sse_chunk(serde_json::json!({}), None, Some(&end.finish_reason));
                    out.extend_from_slice(&last);
                    out.extend_from_slice(SSE_DONE);
                    Ok(Bytes::from(out))
                }
                Err(e) => Err(std::io::Error::other(e.0)),
            }
            .map(Frame::data)
        });
        let frames = futures::stream::once(async move { Ok(Frame::data(first)) }).chain(chunks);
        let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        return resp;
    }
    let mut text = String::new();
    let mut end = ChatFinish::default();
    let mut events = events;
    while let Some(event) = events.next().await {
        match event {
            Ok(ChatEvent::Delta(piece)) => text.push_str(&piece),
            Ok(ChatEvent::Finished(f)) => end = f,
            Err(e) => {
                tracing::warn!(error = %e, "chat completion failed");
                let msg = format!("Internal Server Error #{}", uuid::Uuid::new_v4());
                return detail_response(500, &msg);
            }
        }
    }
    drop(slot);
    json_response(200, &id.completion(&text, &end, with_logprobs))
}

/// A JSON answer with `code`.
fn json_response(code: u16, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).expect("json")));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An error answer of the signed-request schemes: status and `{"detail": message}`, as
/// FastAPI's `HTTPException` sends it.
fn detail_response(code: u16, message: &str) -> Response<Body> {
    json_response(code, &serde_json::json!({ "detail": message }))
}

/// The request's claimed `timeout`, clamped to `[0, max_request_timeout]` (a value that
/// is not a number counts as 0; the header parser already refuses those).
fn request_timeout(st: &State, s: &Synapse) -> Duration {
    let max = st.config.max_request_timeout;
    if s.timeout.is_nan() || s.timeout <= 0.0 {
        Duration::ZERO
    } else if s.timeout >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(s.timeout)
    }
}

/// The freshness window of a key's first nonce: the SDK's 4 s allowance plus the
/// request's clamped timeout.
fn freshness_window(st: &State, s: &Synapse) -> Duration {
    Duration::from_nanos(ALLOWED_DELTA_NS.unsigned_abs()) + request_timeout(st, s)
}

fn verify_request(st: &State, s: &Synapse) -> Result<(), String> {
    let d = &s.dendrite;
    let hotkey = d
        .hotkey
        .as_deref()
        .ok_or("No SS58 formatted address or public key provided")?;
    let nonce = d.nonce.ok_or("Missing Nonce")?;
    let uuid = d.uuid.as_deref().unwrap_or("None");
    let key = format!("{hotkey}:{uuid}");
    let window = freshness_window(st, s);
    st.nonces
        .check(&key, nonce, window)
        .map_err(|e| e.to_string())?;
    let sig_text = d
        .signature
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("Missing Signature")?;
    let message = signing_message(nonce, hotkey, &st.hotkey, uuid, &s.computed_body_hash);
    let sig = hex::decode(sig_text.strip_prefix("0x").unwrap_or(sig_text)).unwrap_or_default();
    if !verify(hotkey, message.as_bytes(), &sig) {
        return Err(format!("Signature mismatch with {message} and {sig_text}"));
    }
    st.nonces
        .commit(&key, nonce, window)
        .map_err(|e| e.to_string())
}

fn set_headers(resp: &mut Response<Body>, s: &Synapse) {
    for (k, v) in s.to_headers() {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
}

fn success(mut s: Synapse, start: Instant) -> Response<Body> {
    s.axon.status_code = Some(200);
    s.axon.status_message = Some("Success".into());
    s.axon.process_time = Some(start.elapsed().as_secs_f64());
    let body = serde_json::to_vec(&s.to_json()).expect("synapse JSON serialises");
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_headers(&mut resp, &s);
    resp
}

fn streaming(
    mut s: Synapse,
    chunks: BoxStream<'static, Result<Bytes, HandlerError>>,
    start: Instant,
) -> Response<Body> {
    s.axon.status_code = Some(200);
    s.axon.status_message = Some("Success".into());
    s.axon.process_time = Some(start.elapsed().as_secs_f64());
    let frames = chunks.map(|c| c.map(Frame::data).map_err(|e| std::io::Error::other(e.0)));
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    set_headers(&mut resp, &s);
    resp
}

fn too_large_message(st: &State) -> String {
    format!(
        "Request body exceeds the limit of {} bytes",
        st.config.max_body_bytes
    )
}

fn internal_error(st: &State, s: Synapse, start: Instant) -> Response<Body> {
    let msg = format!("Internal Server Error #{}", uuid::Uuid::new_v4());
    error_response(st, s, 500, msg, start)
}

/// An SDK error response: status, `{"message": ...}`, and the header-built synapse's
/// headers with the axon's status and signature.
fn error_response(
    st: &State,
    mut s: Synapse,
    code: u16,
    message: String,
    start: Instant,
) -> Response<Body> {
    s.axon.status_code = Some(i64::from(code));
    s.axon.status_message = Some(message.clone());
    s.axon.process_time = Some(start.elapsed().as_secs_f64());
    if let (Some(nonce), Some(uuid)) = (s.axon.nonce, s.axon.uuid.as_deref()) {
        let d_hotkey = s.dendrite.hotkey.as_deref().unwrap_or("None");
        let msg = format!("{nonce}.{d_hotkey}.{}.{uuid}", st.hotkey);
        s.axon.signature = Some(format!(
            "0x{}",
            hex::encode(st.keypair.sign(msg.as_bytes()))
        ));
    }
    let body = serde_json::to_vec(&serde_json::json!({ "message": message })).expect("json");
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_headers(&mut resp, &s);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_rules() {
        let t = NonceTracker::default();
        let window = Duration::from_secs(16);
        let now = now_ns();
        let stale = now - 20_000_000_000;
        match t.check("k", stale, window) {
            Err(NonceError::Stale { allowed, age }) => {
                assert_eq!(format!("{allowed:.2}"), "16.00");
                assert!(age >= 20.0);
            }
            other => panic!("{other:?}"),
        }
        // Ancient nonces (old SDKs sent monotonic-clock ones) fail the window too.
        assert!(matches!(
            t.check("k", 5, window),
            Err(NonceError::Stale { .. })
        ));
        t.commit("k", now, window).unwrap();
        assert_eq!(t.commit("k", now, window), Err(NonceError::Replayed));
        // After the first nonce only monotonicity counts, and the future is allowed.
        t.commit("k", now + 3_600_000_000_000, window).unwrap();
        // Extreme windows and nonces neither overflow nor panic.
        t.check("x", i64::MIN, Duration::MAX).unwrap_err();
        t.check("x", i64::MAX, Duration::ZERO).unwrap();
    }

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::"));
        let limit = PerClient::default();
        let a = limit.acquire("2001:db8::1".parse().unwrap(), 1).unwrap();
        assert!(limit.acquire("2001:db8::2".parse().unwrap(), 1).is_none());
        drop(a);
        assert!(limit.acquire("2001:db8::2".parse().unwrap(), 1).is_some());
        assert!(limit.counts.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn priority_gate_serves_highest_first() {
        let gate = PriorityGate::new(1);
        let held = gate.acquire(0.0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in [1.0, 5.0, 3.0] {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = g.acquire(p).await;
                o.lock().unwrap().push(p);
            }));
            tokio::task::yield_now().await;
        }
        // A cancelled waiter must not swallow the slot.
        let cancelled = tokio::spawn({
            let g = gate.clone();
            async move { g.acquire(10.0).await }
        });
        tokio::task::yield_now().await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![5.0, 3.0, 1.0]);
        assert_eq!(gate.state.lock().unwrap().free, 1);
    }
}

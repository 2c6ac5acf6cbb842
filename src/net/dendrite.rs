//! The dendrite: signs synapses like the SDK and sends them to axons over a pooled
//! HTTP client, in parallel, with a per-request timeout and a cap on each response's
//! size (checked while it streams in); client-side failures map to the SDK's status
//! codes (503 unreachable, 408 timeout, 422 unparsable response, 413 oversized, …).
//! Requests are authenticated with the SDK-10 Synapse headers, or with btauth/1 or
//! Epistula v2 ([`Dendrite::with_auth`]): the same synapse JSON body, a fresh nonce
//! (Epistula: uuid) per attempt. Asking miners for a completion over a chosen
//! transport (`Dendrite::ask`) builds on this in `transport.rs`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::auth::{AuthScheme, btauth, epistula};
use super::synapse::{PromptingSynapse, Synapse, TerminalInfo};
use super::{AxonInfo, NetError, VERSION_AS_INT, float_repr, now_ns, signing_message};
use crate::wallet::Keypair;

/// Dendrite limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DendriteOptions {
    /// Largest response body read from an axon; a larger one is cut off as it streams
    /// in and the answer fails with 413 (default 1 MiB, the axon's request-body cap).
    pub max_response_bytes: usize,
    /// Longest completion [`Dendrite::prompt`] hands back, in bytes (cut at a character
    /// boundary), so scoring never sees more (default 64 KiB).
    pub max_completion_bytes: usize,
}

impl Default for DendriteOptions {
    /// The configuration's defaults ([`crate::config::DendriteConfig`]).
    fn default() -> Self {
        Self::from(&crate::config::DendriteConfig::default())
    }
}

impl From<&crate::config::DendriteConfig> for DendriteOptions {
    fn from(config: &crate::config::DendriteConfig) -> Self {
        Self {
            max_response_bytes: config.max_response_bytes,
            max_completion_bytes: config.max_completion_bytes,
        }
    }
}

/// One axon's answer to a query.
#[derive(Debug, Clone)]
pub struct DendriteResponse {
    /// The axon queried.
    pub axon: AxonInfo,
    /// The synapse as returned (on 200, the axon's fields; otherwise the request's),
    /// with `dendrite.status_code/status_message/process_time` set like the SDK.
    pub synapse: Synapse,
    /// Final status code (HTTP status, or the SDK's client-side code).
    pub status_code: u16,
    /// Status message.
    pub status_message: String,
    /// Wall-clock time from sending to the full answer.
    pub latency: Duration,
}

impl DendriteResponse {
    /// Whether the axon answered 200.
    pub fn is_success(&self) -> bool {
        self.status_code == 200
    }
}

/// Sessions of one dendrite for concurrent callers.
///
/// An axon accepts a session's (hotkey and UUID's) requests only in increasing nonce
/// order, and concurrent calls through one session can arrive out of order, the later
/// one then refusing the earlier as a replay. Each caller takes a session no other
/// caller holds ([`DendritePool::session`], creating one when all are taken); it goes
/// back to the pool when dropped.
#[derive(Clone)]
pub struct DendritePool {
    base: Dendrite,
    idle: Arc<Mutex<Vec<Dendrite>>>,
}

impl From<Dendrite> for DendritePool {
    fn from(base: Dendrite) -> Self {
        Self {
            idle: Arc::new(Mutex::new(vec![base.clone()])),
            base,
        }
    }
}

impl DendritePool {
    /// The signing hotkey's SS58 address.
    pub fn hotkey(&self) -> &str {
        self.base.hotkey()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Dendrite>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session for the caller alone, until the returned guard is dropped.
    pub fn session(&self) -> PooledSession {
        let dendrite = self.idle().pop().unwrap_or_else(|| self.base.session());
        PooledSession {
            pool: self.clone(),
            dendrite: Some(dendrite),
        }
    }
}

/// A dendrite session taken from a [`DendritePool`]; derefs to the [`Dendrite`] and
/// goes back to the pool when dropped.
pub struct PooledSession {
    pool: DendritePool,
    dendrite: Option<Dendrite>,
}

impl std::ops::Deref for PooledSession {
    type Target = Dendrite;

    fn deref(&self) -> &Dendrite {
        self.dendrite.as_ref().expect("present until dropped")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(dendrite) = self.dendrite.take() {
            self.pool.idle().push(dendrite);
        }
    }
}

/// A streaming answer: status and headers first, then the body chunk by chunk.
pub struct DendriteStream {
    /// The request synapse with the response's header info merged (status 200).
    pub synapse: Synapse,
    /// Raw body chunks as the axon sends them; ends at the response's end, or with an
    /// error item `(status_code, status_message)` (408 at the request's deadline).
    pub chunks: BoxStream<'static, Result<Bytes, (u16, String)>>,
}

/// Signs and sends synapses as one hotkey. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct Dendrite {
    keypair: Arc<Keypair>,
    hotkey: String,
    uuid: String,
    external_ip: String,
    client: reqwest::Client,
    last_nonce: Arc<AtomicI64>,
    options: DendriteOptions,
    auth: AuthScheme,
}

impl Dendrite {
    /// A dendrite signing as `keypair`, with its own UUID and a connection pool.
    pub fn new(keypair: Keypair) -> Result<Self, NetError> {
        if !keypair.has_secret() {
            return Err(NetError::Wallet(crate::wallet::WalletError::NoSecret));
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            // Below the axon's keep-alive timeout (15 s by default), so an idle pooled
            // connection is dropped here before the axon closes it under a new request.
            .pool_idle_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| NetError::Client(e.to_string()))?;
        Ok(Self {
            hotkey: keypair.ss58(),
            keypair: Arc::new(keypair),
            uuid: uuid::Uuid::now_v1(&node_id()).to_string(),
            external_ip: "127.0.0.1".into(),
            client,
            last_nonce: Arc::new(AtomicI64::new(0)),
            options: DendriteOptions::default(),
            auth: AuthScheme::Synapse,
        })
    }

    /// Another session of this dendrite: the same key and connection pool, its own
    /// UUID and nonces (see [`DendritePool`]).
    pub fn session(&self) -> Self {
        Self {
            uuid: uuid::Uuid::now_v1(&node_id()).to_string(),
            last_nonce: Arc::new(AtomicI64::new(0)),
            ..self.clone()
        }
    }

    /// Sets the limits (every session made from this dendrite shares them).
    pub fn with_options(mut self, options: DendriteOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets how requests are authenticated: SDK-10 Synapse headers (the default), or
    /// btauth/1 or Epistula v2 headers bound to the axon's hotkey.
    pub fn with_auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the IP sent as `bt_header_dendrite_ip` (cosmetic: axons use the TCP peer).
    pub fn with_external_ip(mut self, ip: impl Into<String>) -> Self {
        self.external_ip = ip.into();
        self
    }

    /// The signing hotkey's SS58 address.
    pub fn hotkey(&self) -> &str {
        &self.hotkey
    }

    /// This dendrite's UUID (`bt_header_dendrite_uuid`).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The limits.
    pub(super) fn options(&self) -> &DendriteOptions {
        &self.options
    }

    /// The pooled HTTP client.
    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A strictly increasing wall-clock nonce (parallel requests never share one).
    pub(super) fn next_nonce(&self) -> i64 {
        let now = now_ns();
        let prev = self.last_nonce.fetch_max(now, Ordering::SeqCst);
        if prev >= now {
            self.last_nonce.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            now
        }
    }

    /// Fills in the dendrite and axon terminal info and signs `synapse` for `axon`,
    /// exactly as `Dendrite.preprocess_synapse_for_request` does.
    pub fn sign(&self, axon: &AxonInfo, synapse: &Synapse, timeout: Duration) -> Synapse {
        let mut s = synapse.clone();
        s.timeout = timeout.as_secs_f64();
        let nonce = self.next_nonce();
        s.dendrite = TerminalInfo {
            ip: Some(self.external_ip.clone()),
            version: Some(VERSION_AS_INT),
            nonce: Some(nonce),
            uuid: Some(self.uuid.clone()),
            hotkey: Some(self.hotkey.clone()),
            ..TerminalInfo::default()
        };
        s.axon = TerminalInfo {
            ip: Some(axon.ip.clone()),
            port: Some(i64::from(axon.port)),
            hotkey: Some(axon.hotkey.clone()),
            ..TerminalInfo::default()
        };
        let message = signing_message(
            nonce,
            &self.hotkey,
            &axon.hotkey,
            &self.uuid,
            &s.body_hash(),
        );
        s.dendrite.signature = Some(format!(
            "0x{}",
            hex::encode(self.keypair.sign(message.as_bytes()))
        ));
        s
    }

    /// The HTTP request for a signed synapse: URL, headers and JSON body.
    pub fn request_parts(axon: &AxonInfo, signed: &Synapse) -> (String, HeaderMap, Vec<u8>) {
        let url = format!("http://{}:{}/{}", axon.ip, axon.port, signed.name());
        let mut headers = HeaderMap::new();
        for (k, v) in signed.to_headers() {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                headers.append(k, v);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_vec(&signed.to_json()).expect("synapse JSON serialises");
        (url, headers, body)
    }

    /// Signs `synapse` for `axon` under this dendrite's scheme (a fresh nonce) and
    /// returns the HTTP request: URL, headers and body.
    pub fn signed_request(
        &self,
        axon: &AxonInfo,
        synapse: &Synapse,
        timeout: Duration,
    ) -> Result<(String, HeaderMap, Vec<u8>), NetError> {
        self.request_for(axon, &self.sign(axon, synapse, timeout))
    }

    /// The HTTP request for a signed synapse under this dendrite's scheme: with
    /// btauth/1 or Epistula, the same URL and body with `X-Bittensor-*` (the synapse's
    /// nonce, fresh per attempt) or `Epistula-*` headers (its time, a fresh uuid4)
    /// instead of the Synapse headers.
    fn request_for(
        &self,
        axon: &AxonInfo,
        signed: &Synapse,
    ) -> Result<(String, HeaderMap, Vec<u8>), NetError> {
        let (url, headers, body) = Self::request_parts(axon, signed);
        if self.auth == AuthScheme::Synapse {
            return Ok((url, headers, body));
        }
        let nonce = signed.dendrite.nonce.unwrap_or_else(|| self.next_nonce());
        let target = format!("/{}", signed.name());
        let signed_headers = self.auth_headers(self.auth, &target, &axon.hotkey, &body, nonce)?;
        Ok((url, signed_headers, body))
    }

    /// The btauth/1 or Epistula v2 headers (and `Content-Type: application/json`) of a
    /// `POST` of `body` to `target` on the axon of `receiver`, signed at `nonce_ns`
    /// (Epistula: its milliseconds, with a fresh uuid4).
    pub(super) fn auth_headers(
        &self,
        scheme: AuthScheme,
        target: &str,
        receiver: &str,
        body: &[u8],
        nonce_ns: i64,
    ) -> Result<HeaderMap, NetError> {
        let pairs = if scheme == AuthScheme::Epistula {
            let uuid = uuid::Uuid::new_v4().to_string();
            let ms = nonce_ns / 1_000_000;
            epistula::sign(&self.keypair, body, Some(receiver), ms, &uuid)?
        } else {
            let signer = btauth::BtAuthSigner::Sr25519(&self.keypair);
            btauth::sign(signer, "POST", target, body, Some(receiver), nonce_ns)?
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in pairs {
            let v = HeaderValue::from_str(&v).map_err(|e| NetError::Client(e.to_string()))?;
            headers.insert(HeaderName::from_static(k), v);
        }
        Ok(headers)
    }

    /// Queries every axon in parallel; one response per axon, in the same order.
    pub async fn query(
        &self,
        axons: &[AxonInfo],
        synapse: &Synapse,
        timeout: Duration,
    ) -> Vec<DendriteResponse> {
        futures::future::join_all(axons.iter().map(|a| self.call(a, synapse, timeout))).await
    }

    /// Sends `prompt` to every axon in parallel, as [`Dendrite::query`] does; each
    /// response comes with its completion (empty unless the axon answered 200 with a
    /// readable `PromptingSynapse`), cut to `max_completion_bytes`.
    pub async fn prompt(
        &self,
        axons: &[AxonInfo],
        prompt: &PromptingSynapse,
        timeout: Duration,
    ) -> Result<Vec<(DendriteResponse, String)>, NetError> {
        let synapse = prompt.to_synapse(Arc::new(PromptingSynapse::schema()))?;
        let responses = self.query(axons, &synapse, timeout).await;
        Ok(responses
            .into_iter()
            .map(|r| {
                let mut completion = if r.is_success() {
                    PromptingSynapse::from_synapse(&r.synapse)
                        .map(|s| s.completion)
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let cut = completion.floor_char_boundary(self.options.max_completion_bytes);
                completion.truncate(cut);
                (r, completion)
            })
            .collect())
    }

    /// Queries one axon.
    pub async fn call(
        &self,
        axon: &AxonInfo,
        synapse: &Synapse,
        timeout: Duration,
    ) -> DendriteResponse {
        let start = Instant::now();
        let signed = self.sign(axon, synapse, timeout);
        let (url, headers, body) = match self.request_for(axon, &signed) {
            Ok(parts) => parts,
            Err(e) => return self.timed(self.failure(axon, signed, 500, e.to_string()), start),
        };
        let fut = async {
            let resp = self
                .client
                .post(&url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(ReadError::Http)?;
            let status = resp.status().as_u16();
            let resp_headers = resp.headers().clone();
            let bytes = read_capped(resp, self.options.max_response_bytes).await?;
            Ok::<_, ReadError>((status, resp_headers, bytes))
        };
        let result = tokio::time::timeout(timeout, fut).await;
        let mut out = match result {
            Err(_) => self.failure(
                axon,
                signed,
                408,
                format!(
                    "Request timeout after {} seconds",
                    float_repr(timeout.as_secs_f64())
                ),
            ),
            Ok(Err(ReadError::Http(e))) => {
                let (code, msg) = map_client_error(&e, axon, synapse.name(), timeout);
                self.failure(axon, signed, code, msg)
            }
            Ok(Err(ReadError::TooLarge)) => {
                let msg = self.too_large_message();
                self.failure(axon, signed, 413, msg)
            }
            Ok(Ok((status, headers, bytes))) => {
                process_response(axon, signed, status, &headers, &bytes)
            }
        };
        out.latency = start.elapsed();
        out.synapse.dendrite.process_time = Some(out.latency.as_secs_f64());
        out
    }

    /// Queries one axon serving a streaming synapse; on a 200 the body arrives chunk by
    /// chunk, otherwise the error response comes back as `Err`.
    pub async fn stream(
        &self,
        axon: &AxonInfo,
        synapse: &Synapse,
        timeout: Duration,
    ) -> Result<DendriteStream, DendriteResponse> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let signed = self.sign(axon, synapse, timeout);
        let (url, headers, body) = match self.request_for(axon, &signed) {
            Ok(parts) => parts,
            Err(e) => {
                return Err(self.timed(self.failure(axon, signed, 500, e.to_string()), start));
            }
        };
        let sent = tokio::time::timeout_at(
            deadline,
            self.client.post(&url).headers(headers).body(body).send(),
        )
        .await;
        let resp = match sent {
            Err(_) => {
                let msg = format!(
                    "Request timeout after {} seconds",
                    float_repr(timeout.as_secs_f64())
                );
                return Err(self.timed(self.failure(axon, signed, 408, msg), start));
            }
            Ok(Err(e)) => {
                let (code, msg) = map_client_error(&e, axon, synapse.name(), timeout);
                return Err(self.timed(self.failure(axon, signed, code, msg), start));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let headers = resp.headers().clone();
            let bytes = tokio::time::timeout_at(
                deadline,
                read_capped(resp, self.options.max_response_bytes),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
            return Err(self.timed(
                process_response(axon, signed, status, &headers, &bytes),
                start,
            ));
        }
        let mut synapse = signed.clone();
        merge_header_info(&mut synapse, resp.headers());
        synapse.dendrite.status_code = synapse.axon.status_code.or(Some(200));
        synapse.dendrite.status_message = synapse
            .axon
            .status_message
            .clone()
            .or(Some("Success".into()));
        let (axon, name) = (axon.clone(), signed.name().to_string());
        let limit = ChunkLimit {
            deadline,
            max_bytes: self.options.max_response_bytes,
            too_large: self.too_large_message(),
        };
        let chunks = limit
            .apply(resp.bytes_stream())
            .map(move |item| match item {
                Ok(b) => Ok(b),
                Err(ChunkError::Http(e)) => Err(map_client_error(&e, &axon, &name, timeout)),
                Err(ChunkError::Deadline) => Err((
                    408,
                    format!(
                        "Request timeout after {} seconds",
                        float_repr(timeout.as_secs_f64())
                    ),
                )),
                Err(ChunkError::TooLarge(message)) => Err((413, message)),
            });
        Ok(DendriteStream {
            synapse,
            chunks: chunks.boxed(),
        })
    }

    pub(super) fn too_large_message(&self) -> String {
        format!(
            "Response body exceeds the limit of {} bytes",
            self.options.max_response_bytes
        )
    }

    fn timed(&self, mut r: DendriteResponse, start: Instant) -> DendriteResponse {
        r.latency = start.elapsed();
        r.synapse.dendrite.process_time = Some(r.latency.as_secs_f64());
        r
    }

    fn failure(
        &self,
        axon: &AxonInfo,
        mut synapse: Synapse,
        code: u16,
        message: String,
    ) -> DendriteResponse {
        synapse.dendrite.status_code = Some(i64::from(code));
        synapse.dendrite.status_message = Some(message.clone());
        DendriteResponse {
            axon: axon.clone(),
            synapse,
            status_code: code,
            status_message: message,
            latency: Duration::ZERO,
        }
    }
}

/// Why reading a response body stopped.
pub(super) enum ReadError {
    /// The transport failed.
    Http(reqwest::Error),
    /// The body grew past the response cap.
    TooLarge,
}

/// Reads `resp`'s body, giving up (and dropping the connection) as soon as it is known
/// to exceed `max_bytes`: from its `Content-Length`, or while the chunks stream in.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max_bytes: usize,
) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Why a streamed response ended early.
pub(super) enum ChunkError {
    /// The transport failed.
    Http(reqwest::Error),
    /// The request's deadline passed.
    Deadline,
    /// The chunks grew past the response cap (the message says so).
    TooLarge(String),
}

/// The bounds of a streamed response: a deadline and a total size.
pub(super) struct ChunkLimit {
    /// When the whole response must have arrived.
    pub(super) deadline: tokio::time::Instant,
    /// The most bytes read in all.
    pub(super) max_bytes: usize,
    /// The message of the 413.
    pub(super) too_large: String,
}

impl ChunkLimit {
    /// Passes `inner`'s chunks on until it ends, fails, passes the deadline or would
    /// pass `max_bytes` in all; each of the last three ends the stream with one error.
    pub(super) fn apply(
        self,
        inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    ) -> impl Stream<Item = Result<Bytes, ChunkError>> + Send {
        let start = (Box::pin(inner), 0usize, false);
        futures::stream::unfold(start, move |(mut s, received, done)| {
            let (deadline, max_bytes, too_large) =
                (self.deadline, self.max_bytes, self.too_large.clone());
            async move {
                if done {
                    return None;
                }
                let item = match tokio::time::timeout_at(deadline, s.next()).await {
                    Ok(None) => return None,
                    Ok(Some(Ok(chunk))) => chunk,
                    Ok(Some(Err(e))) => {
                        return Some((Err(ChunkError::Http(e)), (s, received, true)));
                    }
                    Err(_) => return Some((Err(ChunkError::Deadline), (s, received, true))),
                };
                let received = received + item.len();
                if received > max_bytes {
                    return Some((Err(ChunkError::TooLarge(too_large)), (s, received, true)));
                }
                Some((Ok(item), (s, received, false)))
            }
        })
    }
}

/// The SDK's `DENDRITE_ERROR_MAPPING` for client-side failures.
pub(super) fn map_client_error(
    e: &reqwest::Error,
    axon: &AxonInfo,
    name: &str,
    timeout: Duration,
) -> (u16, String) {
    if e.is_timeout() {
        (
            408,
            format!(
                "Request timeout after {} seconds",
                float_repr(timeout.as_secs_f64())
            ),
        )
    } else if e.is_connect() {
        (
            503,
            format!("Service unavailable at {}:{}/{name}", axon.ip, axon.port),
        )
    } else if e.is_body() || e.is_decode() {
        (400, format!("Payload error: {e}"))
    } else if e.is_request() {
        (503, format!("Server disconnected: {e}"))
    } else {
        (500, format!("Client error: {e}"))
    }
}

/// Copies `bt_header_axon_*` / `bt_header_dendrite_*` response headers over the
/// synapse's terminal infos (set fields only), as the SDK does after every response.
fn merge_header_info(s: &mut Synapse, headers: &HeaderMap) {
    let pairs = headers
        .iter()
        .filter(|(k, _)| {
            k.as_str().starts_with("bt_header_axon_")
                || k.as_str().starts_with("bt_header_dendrite_")
        })
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
    if let Ok(h) = Synapse::from_headers(Arc::new(super::base_schema()), pairs) {
        s.axon.merge_from(&h.axon);
        s.dendrite.merge_from(&h.dendrite);
    }
}

/// `Dendrite.process_server_response`: on 200 the body replaces the fields (it must
/// validate, else 422); otherwise the status and `message` are taken.
fn process_response(
    axon: &AxonInfo,
    mut s: Synapse,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> DendriteResponse {
    if status == 200 {
        match Synapse::from_json(s.schema().clone(), body) {
            Ok(server) => {
                s.copy_fields_from(&server);
                s.axon.merge_from(&server.axon);
            }
            Err(_) => {
                s.dendrite.status_code = Some(422);
                s.dendrite.status_message = Some("Failed to parse response".into());
                return DendriteResponse {
                    axon: axon.clone(),
                    synapse: s,
                    status_code: 422,
                    status_message: "Failed to parse response".into(),
                    latency: Duration::ZERO,
                };
            }
        }
    } else {
        let message = error_message(body);
        s.axon.status_code = Some(i64::from(status));
        s.axon.status_message = message;
    }
    merge_header_info(&mut s, headers);
    // The HTTP status is authoritative for the outcome.
    let code = if status == 200 {
        s.axon
            .status_code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(200)
    } else {
        status
    };
    let message = s.axon.status_message.clone().unwrap_or_default();
    s.dendrite.status_code = Some(i64::from(code));
    s.dendrite.status_message = Some(message.clone());
    DendriteResponse {
        axon: axon.clone(),
        synapse: s,
        status_code: code,
        status_message: message,
        latency: Duration::ZERO,
    }
}

/// The message of an error answer's JSON body: `message` (SDK-10 axons) or `detail`
/// (btauth/1 servers, FastAPI, and our axon's signed routes).
pub(super) fn error_message(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let m = v.get("message").or_else(|| v.get("detail"))?;
    m.as_str().map(str::to_owned)
}

/// A random 6-byte node id for UUIDv1 (like Python's `uuid1()` without a MAC).
fn node_id() -> [u8; 6] {
    let mut id = [0u8; 6];
    rand::fill(&mut id);
    id[0] |= 0x01; // multicast bit: marks a random node id (RFC 4122 §4.5)
    id
}

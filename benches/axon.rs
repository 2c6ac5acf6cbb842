//! Axon throughput and latency, ours against the Python SDK's (bittensor 10.5.0), with
//! the same raw HTTP/1.1 client and the same pre-signed requests; ours also with the
//! same synapse signed with btauth/1 and Epistula v2 instead of the Synapse headers;
//! then streaming time to first token over each streaming transport (`synapse-stream`,
//! `btauth-openai`, `epistula-openai`) from a handler whose first token is ready at
//! once, so the figure is the wire's share on top of the engine's own time to first
//! token; then 1,000 concurrent connections held against ours with the process RSS
//! before and after.
//!
//! Run: `cargo bench --bench axon` (needs the `bittensor-10.5.0` venv under
//! `$NEURON_HOME/venvs`; set `AXON_BENCH_REQUESTS` to change the request count).

mod common;

use common::{percentile, rss_kib};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use neuron::net::openai::{ChatCompletionRequest, ChatEvent, ChatFinish};
use neuron::net::{
    AuthScheme, Axon, AxonHandler, AxonInfo, AxonOptions, ChatStream, Dendrite, Forwarded,
    HandlerError, PromptingSynapse, StreamPromptingSynapse, Synapse, SynapseSchema, Transport,
};
use neuron::wallet::Keypair;

/// Answers "echo": as a synapse, as a stream of the streaming synapse, or as a chat
/// stream, every token ready at once.
struct Echo;

/// The tokens of every streamed answer.
const TOKENS: [&str; 4] = ["e", "c", "h", "o"];

#[async_trait::async_trait]
impl AxonHandler for Echo {
    fn synapses(&self) -> Vec<SynapseSchema> {
        vec![PromptingSynapse::schema(), StreamPromptingSynapse::schema()]
    }
    async fn forward(&self, mut s: Synapse) -> Result<Forwarded, HandlerError> {
        if s.schema().streaming {
            let chunks = futures::stream::iter(TOKENS.map(|t| Ok(Bytes::from(t))));
            return Ok(Forwarded::Stream {
                headers_from: s,
                chunks: chunks.boxed(),
            });
        }
        s.set("completion", "echo".into())
            .map_err(|e| HandlerError(e.to_string()))?;
        Ok(Forwarded::Synapse(s))
    }
    fn serves_chat(&self) -> bool {
        true
    }
    async fn chat_completions(
        &self,
        _caller: &Synapse,
        _request: ChatCompletionRequest,
    ) -> Result<ChatStream, HandlerError> {
        let deltas = TOKENS.map(|t| Ok(ChatEvent::Delta(t.into())));
        let end = Ok(ChatEvent::Finished(ChatFinish {
            finish_reason: "stop".into(),
            ..ChatFinish::default()
        }));
        Ok(futures::stream::iter(deltas.into_iter().chain([end])).boxed())
    }
}

/// Asks `axon` `n` times, one after the other, over `transport`: time to the first
/// token's arrival (p50, p99) and how many answered "echo".
async fn time_to_first_token(
    axon: &AxonInfo,
    transport: Transport,
    n: usize,
) -> (Duration, Duration, usize) {
    let dendrite = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    let question = PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec!["hello".into()],
        completion: String::new(),
    };
    let mut firsts = Vec::with_capacity(n);
    let mut ok = 0;
    for _ in 0..n {
        let start = Instant::now();
        let mut first = None;
        let answer = dendrite
            .ask_one(axon, &question, transport, Duration::from_secs(10), |_| {
                first.get_or_insert_with(|| start.elapsed());
            })
            .await;
        ok += usize::from(answer.completion == "echo");
        firsts.push(first.unwrap_or(Duration::MAX));
    }
    firsts.sort();
    (percentile(&firsts, 0.50), percentile(&firsts, 0.99), ok)
}

const PY_AXON: &str = r#"
import sys, logging
import bittensor as bt
from bittensor_wallet import Keypair
from typing import List
import pydantic
bt.logging.set_warning()
class PromptingSynapse(bt.Synapse):
    roles: List[str] = pydantic.Field(...)
    messages: List[str] = pydantic.Field(...)
    completion: str = ""
    required_hash_fields: List[str] = pydantic.Field(["messages"])
class W:
    def __init__(self, uri): self.hotkey = Keypair.create_from_uri(uri); self.coldkeypub = self.hotkey
def forward(s: PromptingSynapse) -> PromptingSynapse:
    s.completion = "echo"
    return s
axon = bt.Axon(wallet=W("//Bob"), port=int(sys.argv[1]), ip="127.0.0.1", external_ip="127.0.0.1")
axon.fast_config.host = "127.0.0.1"
axon.fast_config.log_level = "warning"
axon.attach(forward_fn=forward)
axon.start()
print("READY", flush=True)
sys.stdin.read()
"#;

type Signed = (hyper::HeaderMap, Vec<u8>);

/// `lanes` dendrites (one UUID each, so nonces stay monotonic per lane), `per_lane`
/// requests each, signed with `auth`.
fn presign(axon: &AxonInfo, lanes: usize, per_lane: usize, auth: AuthScheme) -> Vec<Vec<Signed>> {
    let schema = Arc::new(PromptingSynapse::schema());
    let p = PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec!["hello".into()],
        completion: String::new(),
    };
    let syn = p.to_synapse(schema).unwrap();
    (0..lanes)
        .map(|_| {
            let d = Dendrite::new(Keypair::from_uri("//Alice").unwrap())
                .unwrap()
                .with_auth(auth);
            (0..per_lane)
                .map(|_| {
                    let (_, h, b) = d
                        .signed_request(axon, &syn, Duration::from_secs(12))
                        .unwrap();
                    (h, b)
                })
                .collect()
        })
        .collect()
}

/// Sends every lane's requests in order over one keep-alive connection per lane.
async fn run(
    addr: std::net::SocketAddr,
    lanes: Vec<Vec<Signed>>,
) -> (f64, Duration, Duration, usize) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for lane in lanes {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut ok = 0;
            for (headers, body) in lane {
                let mut req = Request::post("/PromptingSynapse")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                *req.headers_mut() = headers;
                req.headers_mut()
                    .insert("host", addr.to_string().parse().unwrap());
                let t = Instant::now();
                let resp = tx.send_request(req).await.unwrap();
                let status = resp.status();
                let _ = resp.into_body().collect().await.unwrap();
                lat.push(t.elapsed());
                ok += usize::from(status == 200);
            }
            (lat, ok)
        }));
    }
    let mut all = Vec::new();
    let mut ok = 0;
    for t in tasks {
        let (l, o) = t.await.unwrap();
        all.extend(l);
        ok += o;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let (p50, p99) = (percentile(&all, 0.50), percentile(&all, 0.99));
    (all.len() as f64 / secs, p50, p99, ok)
}

fn main() {
    let n: usize = std::env::var("AXON_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bob = Keypair::from_uri("//Bob").unwrap();
        // All the load comes from 127.0.0.1: lift the per-address connection limit.
        let config = AxonOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            max_connections_per_ip: usize::MAX,
            ..AxonOptions::default()
        };
        let ours = Axon::serve(config, bob.clone(), Arc::new(Echo)).await.unwrap();

        let home = std::env::var_os("NEURON_HOME").map(std::path::PathBuf::from).unwrap_or_else(neuron::home::neuron_home);
        let python = home.join("venvs/bittensor-10.5.0/bin/python");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(&python)
            .args(["-c", PY_AXON, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python venv bittensor-10.5.0 (run the interop tests once to create it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let theirs = AxonInfo::new("127.0.0.1", port, bob.ss58());

        // Signed requests are only fresh for 8 s (Epistula) or 10 s (btauth/1): each
        // row signs its own just before sending.
        for (label, info, addr, count, auth) in [
            ("neuron", ours.info(), ours.local_addr(), n, AuthScheme::Synapse),
            ("btauth", ours.info(), ours.local_addr(), n, AuthScheme::Btauth),
            ("epistula", ours.info(), ours.local_addr(), n, AuthScheme::Epistula),
            ("python", theirs.clone(), format!("127.0.0.1:{port}").parse().unwrap(), n / 10, AuthScheme::Synapse),
        ] {
            for lanes in [1usize, 32] {
                let per_lane = (count / lanes).max(1);
                let signed = presign(&info, lanes, per_lane, auth);
                let (rps, p50, p99, ok) = run(addr, signed).await;
                println!(
                    "{label:8} in_flight={lanes:2} requests={:5} ok={ok:5} req/s={rps:9.1} p50={:8.3}ms p99={:8.3}ms",
                    per_lane * lanes,
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                );
            }
        }
        let _ = child.kill();
        let _ = child.wait();

        // Time to first token, the handler's first token ready at once.
        for transport in [Transport::SynapseStream, Transport::BtauthOpenai, Transport::EpistulaOpenai] {
            let count = (n / 10).max(1);
            let (p50, p99, ok) = time_to_first_token(&ours.info(), transport, count).await;
            println!(
                "ttft {transport:15} requests={count:5} ok={ok:5} p50={:8.3}ms p99={:8.3}ms",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }

        // 1,000 concurrent connections to our axon, each with one request answered and
        // then held open.
        let before = rss_kib();
        let signed = presign(&ours.info(), 1000, 1, AuthScheme::Synapse);
        let addr = ours.local_addr();
        let mut held = Vec::new();
        let mut ok = 0;
        for lane in signed {
            let (headers, body) = lane.into_iter().next().unwrap();
            held.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                tokio::spawn(conn);
                let mut req = Request::post("/PromptingSynapse").body(Full::new(Bytes::from(body))).unwrap();
                *req.headers_mut() = headers;
                let resp = tx.send_request(req).await.unwrap();
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                (tx, status)
            }));
        }
        let mut senders = Vec::new();
        for h in held {
            let (tx, status) = h.await.unwrap();
            ok += usize::from(status == 200);
            senders.push(tx);
        }
        let after = rss_kib();
        println!(
            "neuron  1000 connections held: ok={ok} rss_before={before} KiB rss_after={after} KiB (delta {} KiB, client and server in one process)",
            after.saturating_sub(before)
        );
        drop(senders);
        ours.shutdown().await;
    });
}

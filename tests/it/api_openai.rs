//! The validator's OpenAI-compatible API (`--api.port`) over a subnet on the embedded
//! chain: real miners (the LLM strategy on the real default model, echo, and one whose
//! script fails) serving real axons on 127.0.0.1, a validator routing to them through
//! its dendrite. The official `openai` package (plain and streamed) and LangChain's
//! `ChatOpenAI` talk to it; every bad request of docs/api.md gets its status and
//! OpenAI error JSON; the answers are scored as organic traffic into the validator's
//! organic scores and events. And a client that hangs up mid-stream cancels the miner
//! query behind it. `neuron api-key` adds, lists and revokes keys.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use neuron::api::{ApiServer, KeyStore};
use neuron::chain::{AxonServe, Chain, RAO_PER_TAO};
use neuron::config::{BlacklistConfig, Config};
use neuron::net::{Transport, VERSION_AS_INT};
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters, validator_stake};
use neuron::prompting::organic::OrganicEvent;
use neuron::prompting::validator::Validator;
use neuron::wallet::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::support::bin::neuron;
use crate::support::protocols::{api_clients_python, python_result};
use crate::support::{failed, succeeded};

/// A strategy whose `forward` always fails.
const BROKEN: &str = r#"
fn forward(ctx, synapse) { throw "broken on purpose"; }
"#;

/// A subnet with a validator serving its API, and the miners' uids.
struct ApiSubnet {
    subnet: LocalSubnet,
    validator: Validator,
    api: ApiServer,
    keys: KeyStore,
    config: Config,
    llm: u16,
    echo: u16,
    broken: u16,
}

fn key(role: &str) -> Keypair {
    Keypair::from_uri(&format!("//api-test//{role}")).unwrap()
}

async fn api_subnet(dir: &Path) -> ApiSubnet {
    let root = dir.join("scripts");
    std::fs::create_dir_all(root.join("scripts/miners")).unwrap();
    std::fs::write(root.join("scripts/miners/broken.rhai"), BROKEN).unwrap();
    let mut config = Config::default();
    config.neuron.timeout = 120.0;
    config.neuron.max_tokens = 24;
    config.neuron.temperature = 0.0;
    config.neuron.transport = Transport::BtauthOpenai;
    config.neuron.full_path = Some(dir.join("validator"));
    config.scripts.root = vec![root];
    config.api.port = Some(0);
    config.api.keys_db = Some(dir.join("keys.sqlite"));
    config.api.log_prompts = true;
    config.api.max_body_bytes = 64 * 1024;
    config.api.sample_size = 3;
    let scripts = neuron::prompting::script_host(&config).unwrap();
    let mut subnet = LocalSubnet::open(
        &dir.join("chain"),
        Duration::from_millis(200),
        key("owner"),
        demo_hyperparameters(),
        1_000_000 * RAO_PER_TAO,
    )
    .await
    .unwrap();
    let hotkey = key("validator");
    subnet
        .add_validator(&hotkey, validator_stake(0, 1))
        .await
        .unwrap();
    let mut uids = Vec::new();
    for strategy in ["llm", "echo", "broken"] {
        let miner = subnet
            .serve_miner(
                &key(strategy),
                strategy,
                &scripts,
                &BlacklistConfig::default(),
            )
            .await
            .unwrap();
        uids.push(miner.uid);
    }
    config.netuid = subnet.netuid();
    let chain: Arc<dyn Chain> = Arc::new(subnet.chain().clone());
    let mut validator = Validator::new(config.clone(), chain, hotkey, scripts).unwrap();
    let api = validator
        .serve_api()
        .await
        .unwrap()
        .expect("--api.port is set");
    let keys = KeyStore::open(&dir.join("keys.sqlite")).unwrap();
    ApiSubnet {
        subnet,
        validator,
        api,
        keys,
        config,
        llm: uids[0],
        echo: uids[1],
        broken: uids[2],
    }
}

const PY_CLIENTS: &str = r#"
import json, sys, urllib.request, urllib.error
import openai
from langchain_openai import ChatOpenAI

base, key, revoked, tight, model = sys.argv[1:6]
llm, echo, broken = (int(u) for u in sys.argv[6:9])
api = base + "/v1"
q = [{"role": "user", "content": "What is the capital of France?"}]

def client(k):
    return openai.OpenAI(base_url=api, api_key=k, max_retries=0, timeout=300)

out = {}
c = client(key)
raw = c.chat.completions.with_raw_response.create(model=model, messages=q, extra_body={"uids": [llm]})
r = raw.parse()
out["plain"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                "object": r.object, "tokens": r.usage.completion_tokens, "miner": raw.headers.get("x-neuron-miner")}
pieces, finish = [], None
for chunk in c.chat.completions.create(model=model, messages=q, stream=True, extra_body={"uids": [llm]}):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
out["stream"] = {"pieces": pieces, "finish": finish}
routed = c.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Say hello."}])
out["routed"] = {"miner": routed.headers.get("x-neuron-miner"), "text": routed.parse().choices[0].message.content}
out["models"] = [m.id for m in c.models.list()]
# The request's sampling fields reach the miner: the same seed gives the same text,
# another seed another, and max_tokens bounds the answer.
def sampled(**kw):
    r = c.chat.completions.create(model=model, messages=q, extra_body={"uids": [llm]}, **kw)
    return r.choices[0].message.content
out["seeded"] = [sampled(seed=s, temperature=1.0, max_tokens=24) for s in (5, 5, 6)]
out["short"] = sampled(temperature=0, max_tokens=3)
try:
    client("nk-wrong").chat.completions.create(model=model, messages=q)
    out["wrong_key"] = [200, None]
except openai.AuthenticationError as e:
    out["wrong_key"] = [e.status_code, e.code]

lc = ChatOpenAI(base_url=api, api_key=key, model=model, max_retries=0, timeout=300,
                extra_body={"uids": [echo]})
out["langchain"] = lc.invoke("Repeat after me: the sky is blue").content
out["langchain_stream"] = "".join(c.content for c in lc.stream("Repeat after me: grass is green"))

def raw(path, body=None, k=None, method="POST"):
    headers = {"Content-Type": "application/json"}
    if k:
        headers["Authorization"] = "Bearer " + k
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return [resp.status, json.loads(resp.read()), resp.headers.get("Retry-After")]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read() or b"null"), e.headers.get("Retry-After")]

chat = "/v1/chat/completions"
ok = {"model": model, "messages": q}
out["health"] = raw("/health", method="GET")
out["missing_key"] = raw(chat, ok)
out["revoked"] = raw(chat, ok, revoked)
out["unknown_model"] = raw(chat, {**ok, "model": "gpt-9"}, key)
out["malformed"] = raw(chat, b"{not json", key)
out["no_messages"] = raw(chat, {"model": model, "messages": []}, key)
out["bad_role"] = raw(chat, {"model": model, "messages": [{"role": "wizard", "content": "hi"}]}, key)
out["too_large"] = raw(chat, b"x" * (64 * 1024 + 1), key)
out["unknown_uid"] = raw(chat, {**ok, "uids": [999]}, key)
out["broken"] = raw(chat, {**ok, "uids": [broken]}, key)
out["limited"] = [raw(chat, {**ok, "uids": [echo]}, tight) for _ in range(3)]
print("RESULT " + json.dumps(out))
"#;

/// The `error` object of a `[status, body, retry-after]` triple.
fn error_of(r: &serde_json::Value) -> (i64, String, String) {
    (
        r[0].as_i64().unwrap(),
        r[1]["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        r[1]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_langchain_clients_use_the_api_and_answers_are_scored_organically() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = api_subnet(dir.path()).await;
    let secret = s.keys.add("client", 1000, 1_000_000).unwrap();
    let revoked = s.keys.add("gone", 1000, 1_000_000).unwrap();
    s.keys.revoke("gone").unwrap();
    let tight = s.keys.add("tight", 2, 1_000_000).unwrap();
    let model = s.config.neuron.model_id.clone();
    let args = vec![
        format!("http://{}", s.api.local_addr()),
        secret,
        revoked,
        tight,
        model.clone(),
        s.llm.to_string(),
        s.echo.to_string(),
        s.broken.to_string(),
    ];
    let r = python_result(api_clients_python(), PY_CLIENTS.to_string(), args).await;

    // The openai package, plain and streamed, from the LLM miner named in `uids`.
    let plain = &r["plain"];
    let text = plain["text"].as_str().unwrap();
    assert!(!text.is_empty(), "{r}");
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["finish"], "stop");
    assert_eq!(plain["miner"], format!("uid {}", s.llm));
    assert!(plain["tokens"].as_u64().unwrap() > 0);
    let pieces: Vec<&str> = r["stream"]["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(pieces.len() >= 2, "streamed in pieces: {r}");
    // Greedy and seeded by the question: the same answer both ways.
    assert_eq!(pieces.concat(), text);
    assert_eq!(r["stream"]["finish"], "stop");
    // Routed by the API: some miner answered.
    assert!(
        r["routed"]["miner"].as_str().unwrap().starts_with("uid "),
        "{r}"
    );
    assert!(!r["routed"]["text"].as_str().unwrap().is_empty());
    assert_eq!(r["models"], serde_json::json!([model]));
    let seeded = r["seeded"].as_array().unwrap();
    assert_eq!(seeded[0], seeded[1], "the same seed, the same text: {r}");
    assert_ne!(seeded[0], seeded[2], "another seed, another text: {r}");
    let short = r["short"].as_str().unwrap();
    assert!(
        !short.is_empty() && short.split_whitespace().count() <= 3,
        "max_tokens 3: {short:?}"
    );
    assert_eq!(r["wrong_key"], serde_json::json!([401, "invalid_api_key"]));
    // LangChain, through the echo miner: the prompt comes back, plain and streamed.
    assert_eq!(r["langchain"], "Repeat after me: the sky is blue");
    assert_eq!(r["langchain_stream"], "Repeat after me: grass is green");

    // Bad input, each with its status and OpenAI error JSON.
    assert_eq!(r["health"][0], 200);
    for (case, status, code) in [
        ("missing_key", 401, "invalid_api_key"),
        ("revoked", 401, "invalid_api_key"),
        ("unknown_model", 400, "model_not_found"),
        ("malformed", 400, "invalid_json"),
        ("no_messages", 400, "invalid_messages"),
        ("bad_role", 400, "invalid_messages"),
        ("too_large", 413, "request_too_large"),
        ("unknown_uid", 400, "invalid_uids"),
        ("broken", 503, "no_miner_answered"),
    ] {
        let (got, got_code, message) = error_of(&r[case]);
        assert_eq!((got, got_code.as_str()), (status, code), "{case}: {r}");
        assert!(!message.is_empty(), "{case}");
    }
    let (_, _, why) = error_of(&r["broken"]);
    assert!(
        why.contains(&format!("uid {}:", s.broken)),
        "the reason names the miner: {why}"
    );
    let limited = r["limited"].as_array().unwrap();
    assert_eq!(limited[0][0], 200, "{r}");
    assert_eq!(limited[1][0], 200, "{r}");
    assert_eq!(error_of(&limited[2]).0, 429);
    assert_eq!(error_of(&limited[2]).1, "rate_limit_exceeded");
    let retry: u64 = limited[2][2].as_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // Organic scoring: the answers reach the validator's organic scores (scored in the
    // background against the validator's own answer) and its organic events.
    let mut absorbed = 0;
    for _ in 0..600 {
        absorbed += s.validator.absorb_organic().await.unwrap();
        if absorbed >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(absorbed >= 3, "scored organic requests: {absorbed}");
    let organic = &s.validator.state().organic;
    assert!(
        organic.iter().any(|&o| o > 0.0),
        "organic scores: {organic:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("validator/organic/events.jsonl")).unwrap();
    let events: Vec<OrganicEvent> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // --api.log_prompts keeps the prompt (and the validator's own answer).
    let question = Some("What is the capital of France?");
    let scored = events
        .iter()
        .find(|e| e.winner == Some(s.llm) && e.prompt.as_deref() == question)
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(scored.reference.as_deref().is_some_and(|r| !r.is_empty()));
    assert_eq!(scored.key, "client");
    // The validator's own model over btauth-openai: verified inference. The LLM miner
    // reproduces the validator's regeneration (seed fixed by the validator when the
    // client gave none) and earns 1; echo, without tokens or logprobs, 0.
    assert_eq!(scored.task, "inference", "{scored:?}");
    let llm_reward = scored
        .responses
        .iter()
        .find(|r| r.uid == s.llm)
        .unwrap()
        .reward;
    assert!(llm_reward > 0.99, "{scored:?}");
    let echoed = events
        .iter()
        .filter(|e| e.unscored.is_none())
        .flat_map(|e| &e.responses)
        .find(|r| r.uid == s.echo)
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(
        (echoed.status_code, echoed.reward),
        (200, 0.0),
        "{echoed:?}"
    );
    s.api.shutdown().await;
    s.subnet.shutdown().await;
}

/// An OpenAI-style miner that streams a chunk every 20 ms until its client goes away,
/// then notifies `closed`.
async fn endless_miner(closed: Arc<Notify>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request arrives");
            head.extend_from_slice(&buf[..n]);
        }
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        let chunk =
            "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"tick \"}}]}\n\n";
        let mut sent = stream.write_all(reply.as_bytes()).await;
        while sent.is_ok() {
            sent = stream.write_all(chunk.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        closed.notify_one();
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_stream_cancels_the_miner_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = api_subnet(dir.path()).await;
    let closed = Arc::new(Notify::new());
    let addr = endless_miner(closed.clone()).await;
    let hotkey = key("endless");
    let uid = s.subnet.register(&hotkey).await.unwrap();
    let serve = AxonServe {
        version: VERSION_AS_INT as u32,
        ip: addr.ip(),
        port: addr.port(),
        protocol: 4,
    };
    s.subnet
        .chain()
        .serve_axon(&hotkey, s.subnet.netuid(), &serve)
        .await
        .unwrap();
    let secret = s.keys.add("client", 1000, 1_000_000).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", s.api.local_addr()))
        .bearer_auth(secret)
        .json(&serde_json::json!({
            "messages": [{"role": "user", "content": "Count forever."}],
            "stream": true,
            "uids": [uid],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("tick") {
        seen.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    drop(body);
    // The miner streams forever unless its query is cancelled.
    tokio::time::timeout(Duration::from_secs(60), closed.notified())
        .await
        .expect("the miner's connection was closed after the client hung up");
    s.subnet.shutdown().await;
}

#[test]
fn api_key_command_adds_lists_and_revokes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.sqlite");
    let db_flag = format!("--api.keys_db={}", db.display());
    let api_key = |args: &[&str]| neuron(["api-key"].iter().chain(args).chain([&db_flag.as_str()]));
    let secret = succeeded(api_key(&["add", "alice", "--rpm", "5"]))
        .trim()
        .to_string();
    assert!(secret.starts_with("nk-"), "{secret}");
    let key = KeyStore::open(&db)
        .unwrap()
        .verify(&secret)
        .unwrap()
        .unwrap();
    assert_eq!((key.name.as_str(), key.requests_per_minute), ("alice", 5));
    let listed = succeeded(api_key(&["list"]));
    assert!(
        listed.contains("alice") && listed.contains("live"),
        "{listed}"
    );
    assert!(
        !listed.contains(&secret[3..]),
        "the secret is shown once only"
    );
    assert!(failed(api_key(&["add", "alice"])).contains("exists already"));
    succeeded(api_key(&["revoke", "alice"]));
    assert_eq!(KeyStore::open(&db).unwrap().verify(&secret).unwrap(), None);
    assert!(succeeded(api_key(&["list"])).contains("revoked"));
    assert!(failed(api_key(&["revoke", "bob"])).contains("no API key named `bob`"));
}

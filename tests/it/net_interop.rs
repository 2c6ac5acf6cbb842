//! Interop with the real Python SDK (bittensor 10.5.0): the Python dendrite against our
//! axon (good and bad requests), and our dendrite against the Python axon; SN1 v1's
//! `StreamPromptingSynapse` (a `StreamingSynapse`) both ways: the SDK's streaming
//! dendrite against our echo miner, our `synapse-stream` transport against an SDK axon
//! streaming tokens. Real HTTP on 127.0.0.1, real sr25519.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use neuron::net::{Axon, AxonInfo, AxonOptions, Dendrite, PromptingSynapse, Transport};
use neuron::wallet::Keypair;

use crate::net_btauth::WhoAsked;
use crate::support::protocols::python_result;

fn bittensor() -> std::path::PathBuf {
    crate::support::python_venv("bittensor-10.5.0", &["bittensor==10.5.0"])
}

const PY_CLIENT: &str = r#"
import sys, json, time, copy, asyncio, base64
import bittensor as bt
from bittensor_wallet import Keypair
from typing import List
import pydantic, aiohttp
from bittensor.utils import networking
networking.get_external_ip = lambda: "127.0.0.1"  # no internet here: the SDK would ask a web service

class PromptingSynapse(bt.Synapse):
    roles: List[str] = pydantic.Field(...)
    messages: List[str] = pydantic.Field(...)
    completion: str = ""
    required_hash_fields: List[str] = pydantic.Field(["messages"])
    def deserialize(self): return self

port, axon_hotkey = int(sys.argv[1]), sys.argv[2]
alice = Keypair.create_from_uri("//Alice")  # the SDK's Dendrite takes a Keypair as well as a Wallet
info = bt.AxonInfo(version=10005000, ip="127.0.0.1", port=port, ip_type=4, hotkey=axon_hotkey, coldkey=axon_hotkey)
d = bt.Dendrite(wallet=alice)
out = {}

async def main():
    r = await d.forward(info, PromptingSynapse(roles=["user"], messages=["hello"]), timeout=10, deserialize=False)
    r2 = await d.forward(info, PromptingSynapse(roles=["user"], messages=["again"]), timeout=10, deserialize=False)
    out["good"] = [r.dendrite.status_code, r.completion, r2.dendrite.status_code, r2.completion]

    async def raw(name="PromptingSynapse", mutate=None, body_mutate=None, dendrite=d, path=None, target=axon_hotkey, messages=("hi",)):
        syn = PromptingSynapse(roles=["user"], messages=list(messages))
        tinfo = copy.copy(info); tinfo.hotkey = target
        syn = dendrite.preprocess_synapse_for_request(tinfo, syn, 10)
        headers = syn.to_headers()
        body = syn.model_dump()
        if mutate: mutate(headers)
        if body_mutate: body = body_mutate(body)
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{port}/{path or name}", headers={**headers, "Content-Type": "application/json"}, data=data) as resp:
                text = await resp.text()
                try: msg = json.loads(text).get("message")
                except Exception: msg = text
                return [resp.status, msg, resp.headers.get("bt_header_axon_status_code")]

    def bad_sig(h):
        h["bt_header_dendrite_signature"] = "0x" + Keypair.create_from_uri("//Mallory").sign(b"x").hex()
    def drop_input(h): h.pop("bt_header_input_obj_messages")
    def drop_nonce(h): h.pop("bt_header_dendrite_nonce")
    def stale(h):
        h["bt_header_dendrite_nonce"] = str(time.time_ns() - 60 * 10**9)
        h["bt_header_dendrite_uuid"] = "stale-uuid"
    out["bad_signature"] = await raw(mutate=bad_sig)
    out["wrong_receiver"] = await raw(target=Keypair.create_from_uri("//Charlie").ss58_address)
    out["missing_input_header"] = await raw(mutate=drop_input)
    out["missing_nonce"] = await raw(mutate=drop_nonce)
    out["stale_nonce"] = await raw(mutate=stale)
    out["unknown_synapse"] = await raw(path="Nope")
    out["tampered_body"] = await raw(body_mutate=lambda b: {**b, "messages": ["tampered"]})
    out["malformed_json"] = await raw(body_mutate=lambda b: "{not json")
    out["blacklisted"] = await raw(dendrite=bt.Dendrite(wallet=Keypair.create_from_uri("//Eve")))
    # Replay: the exact same signed request twice.
    syn = d.preprocess_synapse_for_request(info, PromptingSynapse(roles=["user"], messages=["r"]), 10)
    h = syn.to_headers(); body = json.dumps(syn.model_dump())
    codes = []
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.post(f"http://127.0.0.1:{port}/PromptingSynapse", headers={**h, "Content-Type": "application/json"}, data=body) as resp:
                codes.append(resp.status)
    out["replay"] = codes
    await d.aclose_session()

asyncio.run(main())
print("RESULT " + json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dendrite_against_our_axon() {
    let python = bittensor();
    let bob = Keypair::from_uri("//Bob").unwrap();
    let config = AxonOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..AxonOptions::default()
    };
    let axon = Axon::serve(config, bob.clone(), Arc::new(WhoAsked))
        .await
        .unwrap();
    let args = vec![axon.local_addr().port().to_string(), bob.ss58()];
    let r = python_result(python, PY_CLIENT.to_string(), args).await;
    let alice = Keypair::from_uri("//Alice").unwrap().ss58();
    assert_eq!(
        r["good"],
        serde_json::json!([
            200,
            format!("{alice}: hello"),
            200,
            format!("{alice}: again")
        ]),
        "{r}"
    );
    let status = |k: &str| r[k][0].as_i64().unwrap_or_else(|| panic!("{k}: {r}"));
    let message = |k: &str| r[k][1].as_str().unwrap_or_default().to_string();
    assert_eq!(status("bad_signature"), 401);
    assert!(
        message("bad_signature").starts_with("Not Verified with error: Signature mismatch with ")
    );
    assert_eq!(status("wrong_receiver"), 401);
    assert_eq!(status("missing_input_header"), 500);
    assert!(message("missing_input_header").starts_with("Internal Server Error #"));
    assert_eq!(status("missing_nonce"), 401);
    assert_eq!(
        message("missing_nonce"),
        "Not Verified with error: Missing Nonce"
    );
    assert_eq!(status("stale_nonce"), 401);
    assert!(message("stale_nonce").contains("Nonce is too old: acceptable delta is 14.00 seconds"));
    assert_eq!(status("unknown_synapse"), 404);
    assert_eq!(
        message("unknown_synapse"),
        "Synapse name 'Nope' not found. Available synapses ['Synapse', 'PromptingSynapse']"
    );
    assert_eq!(status("tampered_body"), 500);
    assert_eq!(status("malformed_json"), 422);
    assert_eq!(status("blacklisted"), 403);
    assert_eq!(
        message("blacklisted"),
        "Forbidden. Key is blacklisted: evil hotkey."
    );
    assert_eq!(r["bad_signature"][2], "401", "status header");
    assert_eq!(r["replay"], serde_json::json!([200, 401]));
    axon.shutdown().await;
}

/// SN1 v1's `StreamPromptingSynapse`, as its validators defined it: the chunks are
/// the completion's text.
const PY_STREAM_SYNAPSE: &str = r#"
import bittensor as bt
from typing import List
import pydantic

class StreamPromptingSynapse(bt.StreamingSynapse):
    roles: List[str] = pydantic.Field(...)
    messages: List[str] = pydantic.Field(...)
    completion: str = ""
    required_hash_fields: List[str] = pydantic.Field(["messages"])
    async def process_streaming_response(self, response):
        async for chunk in response.content.iter_any():
            tokens = chunk.decode("utf-8")
            self.completion += tokens
            yield tokens
    def extract_response_json(self, response):
        return {"roles": self.roles, "messages": self.messages, "completion": self.completion}
"#;

const PY_AXON: &str = r#"
import sys, time
import bittensor as bt
from bittensor_wallet import Keypair
from typing import List
import pydantic

class PromptingSynapse(bt.Synapse):
    roles: List[str] = pydantic.Field(...)
    messages: List[str] = pydantic.Field(...)
    completion: str = ""
    required_hash_fields: List[str] = pydantic.Field(["messages"])

class W:
    def __init__(self, uri): self.hotkey = Keypair.create_from_uri(uri); self.coldkeypub = self.hotkey
def forward(s: PromptingSynapse) -> PromptingSynapse:
    s.completion = "py: " + s.messages[-1]
    return s
def forward_stream(s: StreamPromptingSynapse) -> StreamPromptingSynapse:
    async def tokens(send):
        for token in ["py", ": ", s.messages[-1]]:
            await send({"type": "http.response.body", "body": token.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return s.create_streaming_response(tokens)
axon = bt.Axon(wallet=W("//Bob"), port=int(sys.argv[1]), ip="127.0.0.1", external_ip="127.0.0.1")
axon.fast_config.host = "127.0.0.1"
axon.attach(forward_fn=forward).attach(forward_fn=forward_stream)
axon.start()
print("READY", flush=True)
sys.stdin.read()
axon.stop()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dendrite_against_python_axon() {
    let python = bittensor();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(&python)
        .args([
            "-c",
            &format!("{PY_STREAM_SYNAPSE}{PY_AXON}"),
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY");
    tokio::time::sleep(Duration::from_millis(500)).await; // uvicorn binds in a thread

    let bob = Keypair::from_uri("//Bob").unwrap();
    let dendrite = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    let schema = Arc::new(PromptingSynapse::schema());
    let query = PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec!["hi".into()],
        completion: String::new(),
    }
    .to_synapse(schema)
    .unwrap();
    let good = AxonInfo::new("127.0.0.1", port, bob.ss58());
    let wrong_receiver = AxonInfo::new(
        "127.0.0.1",
        port,
        Keypair::from_uri("//Charlie").unwrap().ss58(),
    );
    let unreachable = AxonInfo::new("127.0.0.1", 1, bob.ss58());
    let answers = dendrite
        .query(
            &[good.clone(), wrong_receiver, unreachable],
            &query,
            Duration::from_secs(10),
        )
        .await;
    let mut pieces = Vec::new();
    let streamed = dendrite
        .ask_one(
            &good,
            &PromptingSynapse::from_synapse(&query).unwrap(),
            Transport::SynapseStream,
            Duration::from_secs(10),
            |text| pieces.push(text.to_string()),
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answers[0].status_code, 200, "{}", answers[0].status_message);
    assert_eq!(answers[0].synapse.get("completion").unwrap(), "py: hi");
    assert_eq!(answers[0].status_message, "Success");
    assert_eq!(answers[1].status_code, 401);
    assert!(
        answers[1].status_message.contains("Signature mismatch"),
        "{}",
        answers[1].status_message
    );
    assert_eq!(answers[2].status_code, 503);
    assert_eq!(
        answers[2].status_message,
        format!("Service unavailable at 127.0.0.1:1/PromptingSynapse")
    );
    assert_eq!(streamed.status_code, 200, "{streamed:?}");
    assert_eq!(streamed.completion, "py: hi");
    assert_eq!(pieces.concat(), "py: hi");
}

const PY_STREAM_CLIENT: &str = r#"
import sys, json, asyncio
from bittensor_wallet import Keypair
from bittensor.utils import networking
networking.get_external_ip = lambda: "127.0.0.1"

port, axon_hotkey = int(sys.argv[1]), sys.argv[2]
info = bt.AxonInfo(version=10005000, ip="127.0.0.1", port=port, ip_type=4, hotkey=axon_hotkey, coldkey=axon_hotkey)
d = bt.Dendrite(wallet=Keypair.create_from_uri("//Alice"))

async def main():
    chunks, final = [], None
    ask = StreamPromptingSynapse(roles=["user"], messages=["Heraclitus was a"])
    async for item in await d.forward(info, ask, timeout=10, streaming=True, deserialize=False):
        if isinstance(item, str): chunks.append(item)
        else: final = item
    await d.aclose_session()
    return {"chunks": chunks, "status": final.dendrite.status_code, "completion": final.completion}

print("RESULT " + json.dumps(asyncio.run(main())))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_streaming_dendrite_against_our_miner() {
    let miner = crate::net_transport::echo_miner().await;
    let args = vec![miner.local_addr().port().to_string(), miner.info().hotkey];
    let script = format!("{PY_STREAM_SYNAPSE}{PY_STREAM_CLIENT}");
    let r = python_result(bittensor(), script, args).await;
    miner.shutdown().await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["completion"], "Heraclitus was a", "{r}");
    let chunks: String = r["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(chunks, "Heraclitus was a", "{r}");
}

//! The miner's OpenAI-style `POST /v1/chat/completions` against the official `openai`
//! Python package (streaming and not), with btauth/1 or Epistula headers added to each
//! request by an httpx event hook, answered by a strategy script on the real default
//! model (and SN1 v1's `StreamPromptingSynapse` from our dendrite, streamed as the
//! model makes its tokens); and the unsigned `POST /availability`, as the strategy's
//! hook says.

use std::path::Path;
use std::time::Duration;

use neuron::models::Resolver;
use neuron::net::{Axon, Dendrite, PromptingSynapse, Transport};
use neuron::prompting::contract::PromptingContracts;
use neuron::script::{HostConfig, ModelSettings, ScriptHost, Services};
use neuron::services::HttpConfig;
use neuron::wallet::Keypair;

use crate::net_epistula::PY_EPISTULA;
use crate::support::miners::serve_strategy;
use crate::support::protocols::{protocols_python, python_result};

/// A strategy that answers the last message with the model (its own token limit and
/// temperature, which a request's `max_tokens` and `temperature` override), and says
/// what it serves.
const CHATTY: &str = r#"
fn forward(ctx, synapse) {
    let messages = synapse.messages ?? [];
    llm::ask(ctx, "You are a helpful assistant.", messages[-1], #{max_tokens: 64, temperature: 0.9})
}

fn availability(ctx) {
    #{task_availabilities: #{InferenceTask: true, WebRetrievalTask: false},
      llm_model_availabilities: #{smollm2: true}}
}
"#;

async fn serve_miner(root: &Path) -> Axon {
    std::fs::create_dir_all(root.join("scripts/miners")).unwrap();
    std::fs::write(root.join("scripts/miners/chatty.rhai"), CHATTY).unwrap();
    let services = Services::with_resolver(
        Resolver::default(),
        &ModelSettings::default(),
        HttpConfig::default(),
        Vec::new(),
    );
    let host = ScriptHost::new(HostConfig::new(root), services, PromptingContracts).unwrap();
    serve_strategy(host, "chatty").await
}

const PY_CLIENT: &str = r#"
import sys, urllib.request
import openai
import bittensor as bt
import bittensor_core

port, bob = int(sys.argv[1]), sys.argv[2]
alice = Keypair.create_from_uri("//Alice")  # bittensor_wallet, for the Epistula signer
alice_core = bittensor_core.Keypair.create_from_uri("//Alice")  # for bittensor 11

def btauth_hook(request):
    request.headers.update(bt.http_auth.sign(alice_core, method=request.method, path=request.url.raw_path.decode(),
                                             body=request.read(), receiver_ss58=bob))

def epistula_hook(request):
    request.headers.update(epistula_headers(alice, request.read(), bob))

def client(hook):
    hooks = {"request": [hook]} if hook else {}
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                         http_client=openai.DefaultHttpxClient(event_hooks=hooks, timeout=120))

ask = dict(model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}],
           max_tokens=8, temperature=0, seed=1, logprobs=True, top_logprobs=2)
out = {}
r = client(btauth_hook).chat.completions.create(**ask)
c = r.choices[0]
out["plain"] = {"text": c.message.content, "finish": c.finish_reason, "tokens": r.usage.completion_tokens,
                "logprobs": [[t.token, t.logprob, len(t.top_logprobs)] for t in c.logprobs.content]}
def stream(hook):
    pieces, logprobs, finish = [], [], None
    for chunk in client(hook).chat.completions.create(stream=True, **ask):
        ch = chunk.choices[0]
        if ch.delta.content: pieces.append(ch.delta.content)
        if ch.logprobs and ch.logprobs.content: logprobs += [t.token for t in ch.logprobs.content]
        finish = ch.finish_reason or finish
    return {"pieces": pieces, "logprobs": logprobs, "finish": finish}
short = client(btauth_hook).chat.completions.create(**{**ask, "max_tokens": 3})
out["short"] = [short.choices[0].finish_reason, short.usage.completion_tokens]
out["btauth_stream"] = stream(btauth_hook)
out["epistula_stream"] = stream(epistula_hook)
try:
    client(None).chat.completions.create(**ask)
    out["unsigned"] = 200
except openai.APIStatusError as e:
    out["unsigned"] = e.status_code
req = urllib.request.Request(f"http://127.0.0.1:{port}/availability", data=b"{}", method="POST")
with urllib.request.urlopen(req, timeout=10) as resp:
    out["availability"] = json.loads(resp.read())
print("RESULT " + json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_streams_from_our_miner() {
    let dir = tempfile::tempdir().unwrap();
    let axon = serve_miner(dir.path()).await;
    let args = vec![axon.local_addr().port().to_string(), axon.info().hotkey];
    let r = python_result(
        protocols_python(),
        format!("{PY_EPISTULA}{PY_CLIENT}"),
        args,
    )
    .await;
    // SN1 v1's StreamPromptingSynapse: the model's tokens arrive as it makes them too.
    let alice = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    let mut pieces = Vec::new();
    let question = PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec!["What is the capital of France?".into()],
        completion: String::new(),
    };
    let streamed = alice
        .ask_one(
            &axon.info(),
            &question,
            Transport::SynapseStream,
            Duration::from_secs(120),
            |text| pieces.push(text.to_string()),
        )
        .await;
    axon.shutdown().await;
    assert_eq!(streamed.status_code, 200, "{streamed:?}");
    assert!(pieces.len() >= 2, "streamed in pieces: {pieces:?}");
    assert_eq!(pieces.concat(), streamed.completion);
    let plain = &r["plain"];
    let text = plain["text"].as_str().unwrap();
    assert!(text.contains("Paris"), "{r}");
    assert_eq!(plain["finish"], "stop", "{r}");
    let logprobs = plain["logprobs"].as_array().unwrap();
    assert_eq!(serde_json::json!(logprobs.len()), plain["tokens"]);
    // The request's max_tokens overrides the script's 64.
    assert_eq!(r["short"], serde_json::json!(["length", 3]));
    for t in logprobs {
        assert!(t[1].as_f64().unwrap() <= 0.0 && t[2] == 2, "{t}");
    }
    let tokens: String = logprobs.iter().map(|t| t[0].as_str().unwrap()).collect();
    for key in ["btauth_stream", "epistula_stream"] {
        let s = &r[key];
        let pieces: Vec<&str> = s["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        // Greedy with the same seed: the same answer, arriving in several pieces.
        assert!(pieces.len() >= 2, "{key}: {r}");
        assert_eq!(pieces.concat(), text, "{key}");
        assert_eq!(s["finish"], "stop");
        let streamed: String = s["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(streamed, tokens, "{key}");
    }
    assert_eq!(r["unsigned"], 401);
    assert_eq!(
        r["availability"],
        serde_json::json!({
            "task_availabilities": {"InferenceTask": true, "WebRetrievalTask": false},
            "llm_model_availabilities": {"smollm2": true},
        })
    );
}

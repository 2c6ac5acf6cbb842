//! btauth/1 interop with the real bittensor 11.3.0 package: requests signed by
//! `bittensor.http_auth.sign` against our axon (good, wrong receiver, unbound, stale,
//! future, replayed, bad signature, malformed, blacklisted), and our dendrite's btauth/1
//! requests against a small Python server that checks them with
//! `bittensor.http_auth.verify`. Real HTTP on 127.0.0.1, real sr25519 and ed25519.

use std::sync::Arc;
use std::time::Duration;

use neuron::net::{
    AuthScheme, Axon, AxonHandler, AxonOptions, Dendrite, Forwarded, HandlerError,
    PromptingSynapse, Synapse, SynapseSchema,
};
use neuron::wallet::Keypair;

use crate::support::protocols::{
    ask, dendrite_against_python, protocols_python, python_result, status_and_text,
};

/// Answers with the authenticated caller's hotkey and the last message; blacklists
/// //Eve.
pub struct WhoAsked;

#[async_trait::async_trait]
impl AxonHandler for WhoAsked {
    fn synapses(&self) -> Vec<SynapseSchema> {
        vec![PromptingSynapse::schema()]
    }
    async fn blacklist(&self, request: &Synapse) -> Option<String> {
        let eve = Keypair::from_uri("//Eve").unwrap().ss58();
        (request.dendrite.hotkey.as_deref() == Some(eve.as_str()))
            .then(|| "evil hotkey".to_string())
    }
    async fn forward(&self, mut synapse: Synapse) -> Result<Forwarded, HandlerError> {
        let p =
            PromptingSynapse::from_synapse(&synapse).map_err(|e| HandlerError(e.to_string()))?;
        let caller = synapse.dendrite.hotkey.clone().unwrap_or_default();
        let last = p.messages.last().cloned().unwrap_or_default();
        synapse
            .set("completion", format!("{caller}: {last}").into())
            .map_err(|e| HandlerError(e.to_string()))?;
        Ok(Forwarded::Synapse(synapse))
    }
}

/// //Bob's axon on 127.0.0.1 serving [`WhoAsked`], accepting `auth`.
pub async fn serve(auth: &[AuthScheme]) -> Axon {
    let config = AxonOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        auth: auth.to_vec(),
        ..AxonOptions::default()
    };
    Axon::serve(
        config,
        Keypair::from_uri("//Bob").unwrap(),
        Arc::new(WhoAsked),
    )
    .await
    .unwrap()
}

const PY_SIGNER: &str = r#"
import sys, json, time, urllib.request, urllib.error
import bittensor as bt
from bittensor_core import Keypair, CRYPTO_ED25519

port, bob = int(sys.argv[1]), sys.argv[2]
alice = Keypair.create_from_uri("//Alice")
alice_ed = Keypair.create_from_uri("//Alice", CRYPTO_ED25519)
eve = Keypair.create_from_uri("//Eve")

def body(msg, claimed=None):
    syn = {"roles": ["user"], "messages": [msg], "timeout": 10.0}
    if claimed: syn["dendrite"] = {"hotkey": claimed}
    return json.dumps(syn).encode()

def send(headers, data, target="/PromptingSynapse"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{target}", data=data, method="POST",
                                 headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, json.loads(r.read()).get("completion")]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read()).get("detail")]

def signed(key=alice, msg="hello", receiver=bob, nonce=None, target="/PromptingSynapse", send_msg=None):
    data = body(msg)
    h = bt.http_auth.sign(key, method="POST", path=target, body=data, receiver_ss58=receiver, nonce_ns=nonce)
    return send(h, body(send_msg) if send_msg else data, target)

out = {}
out["good"] = signed()
out["ed25519"] = signed(key=alice_ed, msg="ed")
out["query"] = signed(msg="q", target="/PromptingSynapse?stream=false")
out["wrong_receiver"] = signed(receiver=alice.ss58_address)
out["unbound"] = signed(receiver=None)
out["stale"] = signed(nonce=time.time_ns() - 11 * 10**9)
out["future"] = signed(nonce=time.time_ns() + 5 * 10**9)
out["bad_signature"] = signed(msg="signed", send_msg="sent")
out["blacklisted"] = signed(key=eve)
data = body("replay")
h = bt.http_auth.sign(alice, method="POST", path="/PromptingSynapse", body=data, receiver_ss58=bob)
out["replay"] = [send(h, data), send(h, data)]
bad = dict(h); bad["X-Bittensor-Version"] = "2"
out["malformed_version"] = send(bad, data)
bad = dict(h); bad["X-Bittensor-Nonce"] = "soon"
out["malformed_nonce"] = send(bad, data)
bad = dict(h); bad["X-Bittensor-Signature"] = "0x1234"
out["short_signature"] = send(bad, data)
out["unknown_route"] = signed(target="/Nope")
# The body's dendrite hotkey is not authenticated: the signer is the caller.
data = body("spoof", claimed=eve.ss58_address)
out["spoofed_body"] = send(bt.http_auth.sign(alice, method="POST", path="/PromptingSynapse", body=data, receiver_ss58=bob), data)
print("RESULT " + json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk11_signed_requests_against_our_axon() {
    let axon = serve(&AuthScheme::ALL).await;
    let args = vec![axon.local_addr().port().to_string(), axon.info().hotkey];
    let r = python_result(protocols_python(), PY_SIGNER.to_string(), args).await;
    axon.shutdown().await;
    let alice = Keypair::from_uri("//Alice").unwrap().ss58();
    let answer = |k: &str| status_and_text(&r, k);
    assert_eq!(answer("good"), (200, format!("{alice}: hello")), "{r}");
    // //Alice derived as ed25519 (the spec's golden sender).
    assert_eq!(
        answer("ed25519"),
        (
            200,
            "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu: ed".into()
        )
    );
    assert_eq!(answer("query"), (200, format!("{alice}: q")));
    assert_eq!(
        answer("wrong_receiver"),
        (
            401,
            "request was signed for a different receiving hotkey".into()
        )
    );
    assert_eq!(
        answer("unbound"),
        (
            401,
            "missing X-Bittensor-Receiver: this server requires receiver-bound requests".into()
        )
    );
    assert_eq!(
        answer("stale"),
        (401, "nonce is older than the 10s freshness window".into())
    );
    assert_eq!(
        answer("future"),
        (401, "nonce is more than 2s in the future".into())
    );
    assert_eq!(
        answer("bad_signature"),
        (
            401,
            "signature does not verify against the claimed hotkey".into()
        )
    );
    assert_eq!(
        answer("blacklisted"),
        (403, "Forbidden. Key is blacklisted: evil hotkey.".into())
    );
    assert_eq!(r["replay"][0][0], 200, "{r}");
    assert_eq!(
        r["replay"][1],
        serde_json::json!([401, "this nonce was already accepted from this hotkey"])
    );
    assert_eq!(
        answer("malformed_version"),
        (
            401,
            "missing or unsupported X-Bittensor-Version (expected '1')".into()
        )
    );
    assert_eq!(
        answer("malformed_nonce"),
        (401, "X-Bittensor-Nonce is not a decimal integer".into())
    );
    assert_eq!(
        answer("short_signature"),
        (401, "invalid hotkey address or signature encoding".into())
    );
    assert_eq!(answer("unknown_route").0, 404);
    assert_eq!(answer("spoofed_body"), (200, format!("{alice}: spoof")));
}

/// A server that checks each request with `bittensor.http_auth.verify` as //Bob.
const PY_VERIFIER: &str = r#"
import bittensor as bt
from bittensor_core import Keypair

bob = Keypair.create_from_uri("//Bob").ss58_address

def check(headers, data, path):
    try:
        caller = bt.http_auth.verify(dict(headers.items()), data, method="POST", path=path,
                                     self_hotkey_ss58=bob)
    except bt.http_auth.AuthError as e:
        return 401, {"detail": f"{type(e).__name__}: {e}"}
    syn = json.loads(data)
    syn["completion"] = f"py {caller.hotkey_ss58}: {syn['messages'][-1]}"
    return 200, syn

serve(check)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_btauth_dendrite_against_sdk11_verify() {
    let [first, second, wrong] = dendrite_against_python(PY_VERIFIER, AuthScheme::Btauth).await;
    let alice = Keypair::from_uri("//Alice").unwrap();
    for r in [&first, &second] {
        assert_eq!(r.status_code, 200, "{}", r.status_message);
        assert_eq!(
            r.synapse.get("completion").unwrap(),
            format!("py {}: hi", alice.ss58()).as_str()
        );
    }
    assert_eq!(wrong.status_code, 401);
    assert_eq!(
        wrong.status_message,
        "WrongReceiver: request was signed for a different receiving hotkey"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axon_auth_selects_the_accepted_schemes() {
    let alice = Keypair::from_uri("//Alice").unwrap();
    let ask = ask("x");
    let timeout = Duration::from_secs(10);
    let synapse_client = Dendrite::new(alice.clone()).unwrap();
    let btauth_client = Dendrite::new(alice.clone())
        .unwrap()
        .with_auth(AuthScheme::Btauth);
    let both = serve(&AuthScheme::ALL).await;
    let only_synapse = serve(&[AuthScheme::Synapse]).await;
    let only_btauth = serve(&[AuthScheme::Btauth]).await;
    let code = |r: neuron::net::DendriteResponse| (r.status_code, r.status_message);
    let expected = format!("{}: x", alice.ss58());
    for axon in [&both, &only_btauth] {
        let r = btauth_client.call(&axon.info(), &ask, timeout).await;
        assert_eq!(r.synapse.get("completion").unwrap(), expected.as_str());
    }
    let r = synapse_client.call(&both.info(), &ask, timeout).await;
    assert_eq!(r.synapse.get("completion").unwrap(), expected.as_str());
    assert_eq!(
        code(
            btauth_client
                .call(&only_synapse.info(), &ask, timeout)
                .await
        ),
        (
            401,
            "authentication scheme btauth is not accepted by this axon".into()
        )
    );
    assert_eq!(
        code(
            synapse_client
                .call(&only_btauth.info(), &ask, timeout)
                .await
        ),
        (
            401,
            "authentication scheme synapse is not accepted by this axon".into()
        )
    );
    for axon in [both, only_synapse, only_btauth] {
        axon.shutdown().await;
    }
}

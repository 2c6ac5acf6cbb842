//! Epistula v2 interop: a Python signer and verifier written here from the spec (SN1
//! v2's `shared/epistula.py` headers and signed strings, keys from `bittensor_wallet`)
//! against our axon and our dendrite, both ways, good and bad cases. Real HTTP on
//! 127.0.0.1, real sr25519.

use std::time::Duration;

use neuron::net::{AuthScheme, Dendrite};
use neuron::wallet::Keypair;

use crate::net_btauth::serve;
use crate::support::protocols::{
    ask, dendrite_against_python, protocols_python, python_result, status_and_text,
};

/// The spec's signer: headers for `body` (bytes) by `key`, for `signed_for`.
pub const PY_EPISTULA: &str = r#"
import json, time, uuid as uuidlib
from hashlib import sha256
from math import ceil
from bittensor_wallet import Keypair

def epistula_headers(key, body, signed_for, timestamp=None, uuid=None):
    timestamp = round(time.time() * 1000) if timestamp is None else timestamp
    interval = ceil(timestamp / 1e4) * 1e4
    uuid = uuid or str(uuidlib.uuid4())
    h = {
        "Epistula-Version": "2",
        "Epistula-Timestamp": str(timestamp),
        "Epistula-Uuid": uuid,
        "Epistula-Signed-By": key.ss58_address,
        "Epistula-Request-Signature": "0x" + key.sign(f"{sha256(body).hexdigest()}.{uuid}.{timestamp}.{signed_for or ''}").hex(),
    }
    if signed_for:
        h["Epistula-Signed-For"] = signed_for
        for i, t in enumerate((interval - 1, interval, interval + 1)):
            h[f"Epistula-Secret-Signature-{i}"] = "0x" + key.sign(str(t) + "." + signed_for).hex()
    return h
"#;

const PY_SIGNER: &str = r#"
import sys, urllib.request, urllib.error
port, bob = int(sys.argv[1]), sys.argv[2]
alice, eve = Keypair.create_from_uri("//Alice"), Keypair.create_from_uri("//Eve")

def body(msg):
    return json.dumps({"roles": ["user"], "messages": [msg]}).encode()

def send(headers, data):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/PromptingSynapse", data=data, method="POST",
                                 headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, json.loads(r.read()).get("completion")]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read()).get("detail")]

def signed(key=alice, msg="hello", signed_for=bob, send_msg=None, **kw):
    data = body(msg)
    return send(epistula_headers(key, data, signed_for, **kw), body(send_msg) if send_msg else data)

now = round(time.time() * 1000)
out = {}
out["good"] = signed()
out["not_for_self"] = signed(signed_for=alice.ss58_address)
out["unbound"] = signed(signed_for=None)
out["stale"] = signed(timestamp=now - 9000)
out["future"] = signed(timestamp=now + 60000)
out["bad_signature"] = signed(msg="signed", send_msg="sent")
out["blacklisted"] = signed(key=eve)
data = body("replay")
h = epistula_headers(alice, data, bob)
out["replay"] = [send(h, data), send(h, data)]
bad = dict(h); bad["Epistula-Timestamp"] = "soon"
out["bad_timestamp"] = send(bad, data)
bad = dict(h); del bad["Epistula-Uuid"]
out["no_uuid"] = send(bad, data)
print("RESULT " + json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_epistula_signer_against_our_axon() {
    let axon = serve(&AuthScheme::ALL).await;
    let args = vec![axon.local_addr().port().to_string(), axon.info().hotkey];
    let r = python_result(
        protocols_python(),
        format!("{PY_EPISTULA}{PY_SIGNER}"),
        args,
    )
    .await;
    axon.shutdown().await;
    let alice = Keypair::from_uri("//Alice").unwrap().ss58();
    let answer = |k: &str| status_and_text(&r, k);
    assert_eq!(answer("good"), (200, format!("{alice}: hello")), "{r}");
    let not_for_self = (
        400,
        "Bad Request, message is not intended for self".to_string(),
    );
    assert_eq!(answer("not_for_self"), not_for_self);
    assert_eq!(answer("unbound"), not_for_self);
    assert_eq!(answer("stale"), (400, "Request is too stale".into()));
    assert_eq!(answer("future"), (400, "Request is from the future".into()));
    assert_eq!(answer("bad_signature"), (400, "Signature Mismatch".into()));
    assert_eq!(
        answer("blacklisted"),
        (403, "Forbidden. Key is blacklisted: evil hotkey.".into())
    );
    assert_eq!(r["replay"][0][0], 200, "{r}");
    assert_eq!(r["replay"][1], serde_json::json!([400, "Request replayed"]));
    assert_eq!(answer("bad_timestamp"), (400, "Invalid Timestamp".into()));
    assert_eq!(answer("no_uuid"), (400, "Invalid uuid".into()));
}

/// The spec's verifier in a small server: receiver, 8 s age, request signature, and the
/// three secret signatures with their float-formatted interval.
const PY_VERIFIER: &str = r#"
bob = Keypair.create_from_uri("//Bob").ss58_address

def check(h, body, now):
    if h.get("Epistula-Signed-For") != bob:
        return "Bad Request, message is not intended for self"
    ts, uuid, by = int(h["Epistula-Timestamp"]), h["Epistula-Uuid"], h["Epistula-Signed-By"]
    if ts + 8000 < now:
        return "Request is too stale"
    key = Keypair(ss58_address=by)
    sig = bytes.fromhex(h["Epistula-Request-Signature"].removeprefix("0x"))
    if not key.verify(f"{sha256(body).hexdigest()}.{uuid}.{ts}.{bob}", sig):
        return "Signature Mismatch"
    interval = ceil(ts / 1e4) * 1e4
    for i, t in enumerate((interval - 1, interval, interval + 1)):
        secret = bytes.fromhex(h[f"Epistula-Secret-Signature-{i}"].removeprefix("0x"))
        if not key.verify(str(t) + "." + bob, secret):
            return f"Secret signature {i} mismatch"
    if h.get("Epistula-Version") != "2":
        return "Bad version"
    return None

def answer(headers, data, path):
    err = check(headers, data, round(time.time() * 1000))
    if err is not None:
        return 400, {"detail": err}
    syn = json.loads(data)
    syn["completion"] = f"py {headers['Epistula-Signed-By']}: {syn['messages'][-1]}"
    return 200, syn

serve(answer)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_epistula_dendrite_against_python_verifier() {
    let script = format!("{PY_EPISTULA}{PY_VERIFIER}");
    let [good, again, wrong] = dendrite_against_python(&script, AuthScheme::Epistula).await;
    let alice = Keypair::from_uri("//Alice").unwrap();
    for r in [&good, &again] {
        assert_eq!(r.status_code, 200, "{}", r.status_message);
        assert_eq!(
            r.synapse.get("completion").unwrap(),
            format!("py {}: hi", alice.ss58()).as_str()
        );
    }
    assert_eq!(
        (wrong.status_code, wrong.status_message.as_str()),
        (400, "Bad Request, message is not intended for self")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_epistula_dendrite_against_our_axon() {
    let alice = Keypair::from_uri("//Alice").unwrap();
    let ask = ask("x");
    let client = Dendrite::new(alice.clone())
        .unwrap()
        .with_auth(AuthScheme::Epistula);
    let axon = serve(&[AuthScheme::Epistula]).await;
    let r = client
        .call(&axon.info(), &ask, Duration::from_secs(10))
        .await;
    assert_eq!(r.status_code, 200, "{}", r.status_message);
    assert_eq!(
        r.synapse.get("completion").unwrap(),
        format!("{}: x", alice.ss58()).as_str()
    );
    let synapse_client = Dendrite::new(alice).unwrap();
    let refused = synapse_client
        .call(&axon.info(), &ask, Duration::from_secs(10))
        .await;
    assert_eq!(refused.status_code, 401);
    axon.shutdown().await;
}

//! What the current-protocol interop tests (btauth/1, Epistula v2, OpenAI) share: their
//! one Python venv (and the API clients' venv), a Python JSON server their verifiers run in, our dendrite asking
//! such a server, and the `RESULT {json}` line their Python clients print (also read
//! for the SDK 10.5 interop tests, in their own venv).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use neuron::net::{AuthScheme, AxonInfo, Dendrite, DendriteResponse, PromptingSynapse, Synapse};
use neuron::wallet::Keypair;

/// The one venv of the current-protocol interop tests.
pub fn protocols_python() -> PathBuf {
    crate::support::python_venv(
        "net-protocols",
        &[
            "bittensor==11.3.0",
            "bittensor-core==0.1.5",
            "bittensor-wallet==4.1.1",
            "openai==3.57.0",
        ],
    )
}

/// The venv of the API client tests: the official `openai` package and LangChain's
/// OpenAI chat model.
pub fn api_clients_python() -> PathBuf {
    crate::support::python_venv(
        "api-clients",
        &["openai==3.57.0", "langchain-openai==1.8.1"],
    )
}

/// `serve(check)`: a threaded HTTP server on 127.0.0.1 answering each POST with
/// `check(headers, body, path) -> (status, JSON reply)`; prints `PORT n` first.
pub const PY_SERVE: &str = r#"
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def serve(check):
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code, reply = check(self.headers, data, self.path)
            out = json.dumps(reply).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        def log_message(self, *a): pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print("PORT", srv.server_address[1], flush=True)
    srv.serve_forever()
"#;

/// A PromptingSynapse asking `message`.
pub fn ask(message: &str) -> Synapse {
    PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec![message.into()],
        completion: String::new(),
    }
    .to_synapse(Arc::new(PromptingSynapse::schema()))
    .unwrap()
}

/// A Python server (`script` after [`PY_SERVE`], acting as //Bob) killed on drop.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    fn start(script: &str) -> Self {
        let mut child = Command::new(protocols_python())
            .args(["-c", &format!("{PY_SERVE}{script}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
        Self { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// //Alice's dendrite signing with `scheme` against a Python server running `script`
/// for //Bob: "hi" to //Bob twice (each attempt signs afresh, so neither is a replay),
/// then to //Charlie, whom the server is not.
pub async fn dendrite_against_python(script: &str, scheme: AuthScheme) -> [DendriteResponse; 3] {
    let server = PythonServer::start(script);
    let dendrite = Dendrite::new(Keypair::from_uri("//Alice").unwrap())
        .unwrap()
        .with_auth(scheme);
    let axon = |uri: &str| {
        AxonInfo::new(
            "127.0.0.1",
            server.port,
            Keypair::from_uri(uri).unwrap().ss58(),
        )
    };
    let timeout = Duration::from_secs(10);
    let hi = ask("hi");
    [
        dendrite.call(&axon("//Bob"), &hi, timeout).await,
        dendrite.call(&axon("//Bob"), &hi, timeout).await,
        dendrite.call(&axon("//Charlie"), &hi, timeout).await,
    ]
}

/// Runs `script` with `args` in the venv of `python` and parses the `RESULT {json}`
/// line it prints.
pub async fn python_result(
    python: PathBuf,
    script: String,
    args: Vec<String>,
) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::run_python(&python, &script, &args)
    })
    .await
    .unwrap();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("python printed a result");
    serde_json::from_str(line).unwrap()
}

/// `result[key]` as the `[status, text]` pair the Python clients record.
pub fn status_and_text(result: &serde_json::Value, key: &str) -> (i64, String) {
    (
        result[key][0].as_i64().unwrap_or(0),
        result[key][1].as_str().unwrap_or("").to_string(),
    )
}

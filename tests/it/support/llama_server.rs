//! llama.cpp's OpenAI-compatible server, as llama-cpp-python 0.3.36 serves it: its venv
//! (built from the sdist once, with the settings docs/inference.md gives, under
//! `$NEURON_HOME/venvs/llama-cpp-server`) and a server process on 127.0.0.1 serving the
//! default SmolLM2 GGUF, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use neuron::models::Resolver;

/// The build settings of docs/inference.md: the instruction sets listed (a native
/// build dies on CPUs that advertise AMX or AVX-VNNI they cannot run), and nothing a
/// Python server does not need.
pub const CMAKE_ARGS: &str = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
     -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON \
     -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
     -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
     -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF";

/// The venv's python (built on first use: minutes).
pub fn llama_python() -> PathBuf {
    crate::support::python_venv_built(
        "llama-cpp-server",
        &["llama-cpp-python[server]==0.3.36"],
        &[
            ("CMAKE_ARGS", CMAKE_ARGS),
            ("CMAKE_BUILD_PARALLEL_LEVEL", "2"),
        ],
    )
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `python -m llama_cpp.server` on one port, killed on drop; its log is read (so the
/// pipe never fills) and dropped once it has started.
pub struct LlamaServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl LlamaServer {
    /// Serves SmolLM2-135M-Instruct on `port` with `extra` server flags (e.g.
    /// `--api_key K`, `--embedding true`); returns once it answers HTTP.
    pub fn start(port: u16, extra: &[&str]) -> Self {
        let model = Resolver::default()
            .resolve("smollm2-135m-instruct")
            .expect("the default chat model");
        let mut child = Command::new(llama_python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", "2048", "--n_threads", "1", "--verbose", "false"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start llama_cpp.server");
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let started = Instant::now();
        let mut seen = String::new();
        // uvicorn prints "Uvicorn running on http://..." once it listens.
        loop {
            let mut line = String::new();
            let n = log.read_line(&mut line).unwrap_or(0);
            seen.push_str(&line);
            if line.contains("Uvicorn running on") {
                break;
            }
            if n == 0 || started.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let mut rest = String::new();
                let _ = log.read_to_string(&mut rest);
                panic!("llama_cpp.server did not start:\n{seen}{rest}");
            }
        }
        std::thread::spawn(move || for _ in log.lines() {});
        Self { child, port }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it now (SIGKILL: no goodbye to open streams).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}

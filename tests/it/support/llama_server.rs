//! llama.cpp's OpenAI-compatible server, as llama-cpp-python 0.3.36 serves it: its venv
//! (built from the sdist once, with the settings docs/inference.md gives, under
//! `$NEURON_HOME/venvs/llama-cpp-server`) and a server process on 127.0.0.1 serving a
//! GGUF (the default SmolLM2, or all-MiniLM-L6-v2 converted for it), killed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use neuron::models::Resolver;

/// The build settings of docs/inference.md: the instruction sets this CPU has, each
/// named (a native build dies on CPUs that advertise AMX they cannot run, and a list
/// written for one CPU dies on another without them), AMX off, and nothing a Python
/// server does not need. The venv's stamp holds them, so another CPU rebuilds it.
pub fn cmake_args() -> String {
    // Whether this CPU has every x86-64 feature named (as `std::arch` names them).
    #[cfg(target_arch = "x86_64")]
    macro_rules! has {
        ($($feature:tt),+) => { $(std::arch::is_x86_feature_detected!($feature))&&+ };
    }
    #[cfg(not(target_arch = "x86_64"))]
    macro_rules! has {
        ($($feature:tt),+) => {
            false
        };
    }
    let sets = [
        ("AVX", has!("avx")),
        ("AVX2", has!("avx2")),
        ("FMA", has!("fma")),
        ("F16C", has!("f16c")),
        ("BMI2", has!("bmi2")),
        ("AVX_VNNI", has!("avxvnni")),
        (
            "AVX512",
            has!("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
        ),
        ("AVX512_VBMI", has!("avx512vbmi")),
        ("AVX512_VNNI", has!("avx512vnni")),
        ("AVX512_BF16", has!("avx512bf16")),
    ];
    let mut args = vec!["-DGGML_NATIVE=OFF".to_string()];
    for (name, on) in sets {
        let on = if on { "ON" } else { "OFF" };
        args.push(format!("-DGGML_{name}={on}"));
    }
    args.push(
        "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF \
         -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
         -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF"
            .to_string(),
    );
    args.join(" ")
}

/// The venv's python (built on first use: minutes).
pub fn llama_python() -> PathBuf {
    crate::support::python_venv_built(
        "llama-cpp-server",
        &["llama-cpp-python[server]==0.3.36"],
        &[
            ("CMAKE_ARGS", &cmake_args()),
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
        Self::start_model(&model, port, extra)
    }

    /// Serves the GGUF `model` on `port` with `extra` server flags.
    pub fn start_model(model: &Path, port: u16, extra: &[&str]) -> Self {
        let mut child = Command::new(llama_python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
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

/// all-MiniLM-L6-v2 (the default embedder) as a GGUF llama.cpp serves sentence
/// embeddings from (BERT, mean pooling, f32): converted once into
/// `$NEURON_HOME/models/all-minilm-l6-v2.gguf` with ggml's own `gguf` package, writing
/// what llama.cpp's `convert_hf_to_gguf.py` writes for this model (same tensors and
/// tokenizer keys) without the torch that script needs.
pub fn minilm_gguf() -> PathBuf {
    let dir = Resolver::default()
        .resolve("all-minilm-l6-v2")
        .expect("the default embedder");
    let models = crate::support::neuron_home().join("models");
    let out = models.join("all-minilm-l6-v2.gguf");
    let lock = File::create(models.join("all-minilm-l6-v2.gguf.lock")).unwrap();
    lock.lock().unwrap();
    if !out.exists() {
        let python =
            crate::support::python_venv("gguf-0.19.0", &["gguf==0.19.0", "safetensors==0.8.0"]);
        let partial = out.with_extension("gguf.partial");
        crate::support::run_python(
            &python,
            BERT_TO_GGUF,
            &[dir.to_str().unwrap(), partial.to_str().unwrap()],
        );
        std::fs::rename(&partial, &out).unwrap();
    }
    out
}

/// A Hugging Face BERT sentence model → GGUF, as llama.cpp's converter writes it:
/// WordPiece tokens in "phantom space" form (`▁word`, continuations bare, special tokens
/// as they are), mean pooling, non-causal attention.
const BERT_TO_GGUF: &str = r###"
import json, re, sys
import numpy as np
import gguf
from safetensors.numpy import load_file

src, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(f"{src}/config.json"))
tok = json.load(open(f"{src}/tokenizer.json"))
w = gguf.GGUFWriter(out, "bert")
w.add_block_count(cfg["num_hidden_layers"])
w.add_context_length(cfg["max_position_embeddings"])
w.add_embedding_length(cfg["hidden_size"])
w.add_feed_forward_length(cfg["intermediate_size"])
w.add_head_count(cfg["num_attention_heads"])
w.add_layer_norm_eps(cfg["layer_norm_eps"])
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_causal_attention(False)
w.add_pooling_type(gguf.PoolingType.MEAN)
w.add_token_type_count(cfg.get("type_vocab_size", 1))
vocab = tok["model"]["vocab"]
tokens = [None] * len(vocab)
for t, i in vocab.items():
    tokens[i] = t
special = {a["id"] for a in tok["added_tokens"] if a["special"]}
types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
tokens = [t if i in special else (t[2:] if t.startswith("##") else "▁" + t) for i, t in enumerate(tokens)]
w.add_tokenizer_model("bert")
w.add_tokenizer_pre("jina-v2-en")
w.add_token_list(tokens)
w.add_token_types(types)
ids = {a["content"]: a["id"] for a in tok["added_tokens"]}
w.add_bos_token_id(ids["[CLS]"]); w.add_eos_token_id(ids["[SEP]"])
w.add_unk_token_id(ids["[UNK]"]); w.add_sep_token_id(ids["[SEP]"])
w.add_pad_token_id(ids["[PAD]"]); w.add_mask_token_id(ids["[MASK]"])
w.add_add_bos_token(True); w.add_add_eos_token(True); w.add_add_sep_token(False)
w.add_bool("tokenizer.ggml.normalizer.lowercase", True)
names = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.LayerNorm": "token_embd_norm",
    "attention.self.query": "attn_q", "attention.self.key": "attn_k",
    "attention.self.value": "attn_v", "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm", "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm",
}
for name, t in load_file(f"{src}/model.safetensors").items():
    name = name.removeprefix("bert.")
    if name.startswith("pooler.") or name == "embeddings.position_ids":
        continue
    m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", name)
    if m:
        new = f"blk.{m[1]}.{names[m[2]]}.{m[3]}"
    else:
        base, kind = name.rsplit(".", 1)
        new = f"{names[base]}.{kind}"
    w.add_tensor(new, t.astype(np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
"###;

//! The remote inference backend (`--neuron.llm_endpoint`, `--neuron.embed_endpoint`)
//! against llama.cpp's OpenAI-compatible server (llama-cpp-python 0.3.36) serving the
//! default SmolLM2 GGUF: streamed chat with seed and logprobs, embeddings, a validator
//! step and a miner answer through it (a whole `neuron local` with an API key from the
//! environment), and the server dying mid-stream. And the retry bounds, against
//! loopback servers that refuse, reset or answer errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use neuron::embed::{Embedder, cosine};
use neuron::inference::{ChatBackend, EmbedBackend, RemoteClient, RemoteConfig, RemoteError};
use neuron::llm::{ChatMessage, RequestOptions, SamplingParams};
use neuron::models::Resolver;
use neuron::prompting::contract::{PromptingContracts, PromptingLookups};
use neuron::prompting::hooks::PromptingHooks;
use neuron::score::relevance;
use neuron::script::{HostConfig, Limits, ModelSettings, ScriptHost, Services};
use neuron::services::HttpConfig;

use crate::support::bin::neuron_command;
use crate::support::llama_server::{LlamaServer, free_port, minilm_gguf};

/// A config for `url` that retries quickly.
fn config(url: &str) -> RemoteConfig {
    RemoteConfig {
        backoff: Duration::from_millis(20),
        ..RemoteConfig::new(url, "smollm2")
    }
}

fn ask(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", text)]
}

/// A loopback server that counts connections and answers each with `reply` (raw
/// HTTP), or closes it unanswered when `reply` is empty.
fn counting_server(reply: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            if !reply.is_empty() {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(reply.as_bytes());
            }
        }
    });
    (url, count)
}

#[test]
fn retries_are_bounded_and_every_failure_names_the_url() {
    // Down: nothing listens on the port.
    let port = free_port();
    let down = format!("http://127.0.0.1:{port}");
    let client = RemoteClient::new(config(&down)).unwrap();
    let params = SamplingParams::default();
    let err = client
        .chat(&ask("hi"), &params, &RequestOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RemoteError::Unreachable { attempts: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("{down}/v1/chat/completions")),
        "{text}"
    );
    let embed = EmbedBackend::Remote(RemoteClient::new(config(&down)).unwrap());
    let text = embed.embed(&["a"]).unwrap_err().to_string();
    assert!(text.contains(&format!("{down}/v1/embeddings")), "{text}");

    // Resets every connection: three attempts, then the error.
    let (url, count) = counting_server("");
    let client = RemoteClient::new(config(&url)).unwrap();
    let err = client
        .chat(&ask("hi"), &params, &RequestOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RemoteError::Unreachable { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Overloaded (503): retried as often; a refusal (401) is final at once.
    let (url, count) = counting_server(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
    );
    let err = RemoteClient::new(config(&url))
        .unwrap()
        .chat(&ask("hi"), &params, &RequestOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("status 503: busy"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let (url, count) = counting_server(
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbad key",
    );
    let err = RemoteClient::new(config(&url))
        .unwrap()
        .chat(&ask("hi"), &params, &RequestOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, RemoteError::Refused { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // An OpenAI embeddings answer, out of order, comes back in input order.
    let (url, _) = counting_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 82\r\nConnection: close\r\n\r\n\
         {\"data\": [{\"index\": 1, \"embedding\": [0.5, 1]}, {\"index\": 0, \"embedding\": [2, 0]}]}",
    );
    let embed = EmbedBackend::Remote(RemoteClient::new(config(&url)).unwrap());
    assert_eq!(
        embed.embed(&["a", "b"]).unwrap(),
        vec![vec![2.0, 0.0], vec![0.5, 1.0]]
    );
}

/// A script host whose chat model is the server at `url`.
fn host_on(url: &str) -> ScriptHost {
    let ids = ModelSettings {
        llm_remote: Some(config(url)),
        ..ModelSettings::default()
    };
    let services =
        Services::with_resolver(Resolver::default(), &ids, HttpConfig::default(), Vec::new());
    let mut host = HostConfig::new(env!("CARGO_MANIFEST_DIR"));
    host.limits = Limits {
        wall_time: Duration::from_secs(600),
        ..Limits::default()
    };
    host.config.insert("max_tokens".into(), 16.into());
    host.config.insert("challenge_max_tokens".into(), 16.into());
    ScriptHost::new(host, services, PromptingContracts).unwrap()
}

#[test]
fn llama_cpp_server_chats_embeds_and_a_stream_cut_off_is_a_clean_error() {
    let port = free_port();
    let mut server = LlamaServer::start(port, &[]);
    let url = server.url();
    let chat = ChatBackend::Remote(RemoteClient::new(config(&url)).unwrap());

    // Streamed, sampled, with logprobs (that the seed is sent is checked where the
    // request is made; llama-cpp-python 0.3.36 does not reproduce a seeded sample
    // reliably).
    let params = SamplingParams {
        temperature: 0.9,
        seed: 11,
        max_tokens: 16,
        logprobs: Some(2),
        ..SamplingParams::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let streamed = RequestOptions {
        stream: Some(tx),
        ..RequestOptions::default()
    };
    let first = chat
        .chat_blocking_with(ask("Name a colour."), params.clone(), streamed)
        .unwrap();
    let mut pieces = String::new();
    while let Ok(piece) = rx.try_recv() {
        pieces.push_str(&piece);
    }
    assert!(!first.text.is_empty());
    assert_eq!(pieces, first.text, "the stream carries the whole text");
    assert!(first.completion_tokens > 0, "{first:?}");
    assert!(!first.logprobs.is_empty(), "{first:?}");
    assert!(first.logprobs.iter().all(|t| t.logprob <= 0.0));
    // A validator's task and a miner's answer through the server.
    let host = host_on(&url);
    let qa = host.task("qa").unwrap();
    let task = host.generate(&qa, &host.ctx(5, 0)).unwrap();
    assert!(!task.query.is_empty() && !task.reference.is_empty());
    let mut synapse = rhai::Map::new();
    synapse.insert("roles".into(), vec![rhai::Dynamic::from("user")].into());
    synapse.insert(
        "messages".into(),
        vec![rhai::Dynamic::from(task.query)].into(),
    );
    let llm = host.strategy("llm").unwrap();
    let answer = host.forward(&llm, &host.ctx(5, 0), synapse).unwrap();
    assert!(!answer.is_empty());

    // Killed mid-stream: a clean error naming the server.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let long = std::thread::spawn(move || {
        let params = SamplingParams {
            max_tokens: 1000,
            ..SamplingParams::default()
        };
        let options = RequestOptions {
            stream: Some(tx),
            ..RequestOptions::default()
        };
        chat.chat_blocking_with(
            ask("Count from 1 to 400, one number per line."),
            params,
            options,
        )
    });
    rx.blocking_recv().expect("the stream started");
    server.kill();
    let err = long.join().unwrap().unwrap_err().to_string();
    assert!(err.contains(&url), "{err}");

    // The host goes on: a step while the server is down fails naming it, the next
    // one after it is back succeeds.
    let err = host.generate(&qa, &host.ctx(6, 0)).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("not answering"), "{err}");
    let _server = LlamaServer::start(port, &[]);
    assert!(host.generate(&qa, &host.ctx(6, 0)).is_ok());

    // Embeddings: llama-cpp-python answers /v1/embeddings for a model without pooling
    // (SmolLM2) with one vector per token, not per text: a clean error naming it.
    let embedder = LlamaServer::start(free_port(), &["--embedding", "true"]);
    let embed = EmbedBackend::Remote(RemoteClient::new(config(&embedder.url())).unwrap());
    let err = embed
        .embed(&["a red apple", "the stock market"])
        .unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains(&format!("{}/v1/embeddings", embedder.url()))
            && err.contains("not an embeddings answer"),
        "{err}"
    );
}

/// The rewards a plain `neuron local` step line lists (`uid=reward ...`).
fn rewards(line: &str) -> Vec<f64> {
    let list = line.split(" rewards ").nth(1).unwrap_or_default();
    list.split_whitespace()
        .filter_map(|r| r.split('=').nth(1)?.parse().ok())
        .collect()
}

#[test]
fn local_subnet_runs_on_llama_cpp_server_with_a_key_and_outlives_it() {
    let key = "sk-neuron-test-key";
    let port = free_port();
    let mut server = LlamaServer::start(port, &["--api_key", key]);
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = neuron_command([
        "local",
        "--miners",
        "1",
        "--strategies",
        "llm",
        "--validators",
        "1",
        "--steps",
        "3",
        "--block-time",
        "0.2",
        "--neuron.tasks",
        "qa",
        "--neuron.max_tokens",
        "24",
        "--neuron.llm_endpoint",
        &url,
        "--neuron.llm_model",
        "smollm2",
        "--neuron.llm_api_key_env",
        "NEURON_TEST_LLAMA_KEY",
        "--data-dir",
    ]);
    cmd.arg(dir.path().join("run"))
        .env("NEURON_TEST_LLAMA_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start neuron local");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("step 1/3") {
            // Step 1 ran on the server (which refuses requests without the key): the
            // validator's task and the miner's answer, which shares words with the
            // reference. Then the server dies, during step 2.
            assert!(line.contains(" task qa "), "{line}");
            assert!(rewards(&line).iter().any(|r| *r > 0.0), "{line}");
            server.kill();
        }
        lines.push(line);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = lines.join("\n");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The run went on to its end; the step after the server died failed naming it.
    let step3 = lines
        .iter()
        .find(|l| l.starts_with("step 3/3"))
        .unwrap_or_else(|| panic!("no third step:\n{stdout}\n{stderr}"));
    assert!(
        step3.contains(" failed: ") && step3.contains(&url),
        "{step3}"
    );
}

/// The embedder behind llama.cpp's server: all-MiniLM-L6-v2 converted to GGUF and served
/// with `--embedding true` gives, through `--neuron.embed_endpoint`'s client, the
/// vectors the embedded model gives (the same sentence embedding, computed by another
/// engine), and the relevance reward reads the same through either.
#[test]
fn embeddings_through_llama_cpp_server_match_the_embedded_model() {
    let server = LlamaServer::start_model(&minilm_gguf(), free_port(), &["--embedding", "true"]);
    let remote = EmbedBackend::Remote(
        RemoteClient::new(RemoteConfig::new(server.url(), "all-minilm-l6-v2")).unwrap(),
    );
    let dir = Resolver::default().resolve("all-minilm-l6-v2").unwrap();
    let embedded = EmbedBackend::Embedded(Box::new(
        Embedder::load(&dir, &candle_core::Device::Cpu).unwrap(),
    ));
    let texts = [
        "The Eiffel Tower was completed in 1889 for the World's Fair.",
        "hey when was that big iron tower in paris built??",
        "I like turtles.",
        "",
    ];
    let (theirs, ours) = (
        remote.embed(&texts).unwrap(),
        embedded.embed(&texts).unwrap(),
    );
    assert_eq!(theirs.len(), texts.len());
    for ((a, b), text) in theirs.iter().zip(&ours).zip(texts) {
        assert_eq!(a.len(), 384, "{text:?}");
        let similarity = cosine(a, b);
        assert!(similarity > 0.999, "{text:?}: cosine {similarity}");
    }
    let score = |backend: &EmbedBackend| {
        let embed = |t: &[&str]| backend.embed(t);
        relevance(&embed, texts[0], &texts[1..3]).unwrap()
    };
    let (remote_scores, embedded_scores) = (score(&remote), score(&embedded));
    for (r, e) in remote_scores.iter().zip(&embedded_scores) {
        assert!(
            (r - e).abs() < 1e-3,
            "{remote_scores:?} vs {embedded_scores:?}"
        );
    }
    assert!(remote_scores[0] > remote_scores[1], "{remote_scores:?}");
}

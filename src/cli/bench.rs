//! `neuron bench llm|embed`: throughput, load time and peak memory of the inference core,
//! optionally side by side with the Python reference implementations (llama-cpp-python,
//! sentence-transformers) run on the same model files and inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use neuron::embed::{Embedder, Kernels};
use neuron::llm::{ChatMessage, DeviceSpec, LlmService, SamplingParams, load};
use neuron::models::Resolver;
use serde_json::Value;

use super::generate::ModelArgs;

const LLAMA_CPP_SCRIPT: &str = include_str!("bench/llama_cpp.py");
const SENTENCE_TRANSFORMERS_SCRIPT: &str = include_str!("bench/sentence_transformers.py");
const BENCH_PROMPT: &str = "Write a short story about a lighthouse keeper who finds a message in a bottle. Describe the sea, the weather and what the message says.";

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Text generation: load time, prompt and decode tokens/s, peak RSS.
    Llm(LlmBench),
    /// Sentence embeddings: load time, sentences/s, peak RSS.
    Embed(EmbedBench),
}

/// Arguments of `neuron bench llm`.
#[derive(Debug, Args)]
pub struct LlmBench {
    #[command(flatten)]
    model: ModelArgs,
    /// Measured runs (after one warm-up).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Tokens to generate per run (greedy; a run ends early at end-of-sequence).
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Python with llama-cpp-python installed: also run llama.cpp on the same GGUF and prompt.
    #[arg(long)]
    compare_python: Option<PathBuf>,
    /// CPU-bound threads competing for the cores during the measured runs of every engine
    /// (shows how decoding degrades on a shared machine).
    #[arg(long, default_value_t = 0)]
    contend: usize,
    /// Concurrency levels (e.g. `1,2,4,8`): that many streaming requests at once, each
    /// with its own prompt; reports aggregate and per-request decode tok/s and time to
    /// first token per level, instead of the single-request runs.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// An OpenAI-compatible server (e.g. `http://127.0.0.1:8080` for llama.cpp's
    /// `llama-server -np 8 -cb`) to drive with the same client at each `--concurrency`
    /// level, side by side.
    #[arg(long, requires = "concurrency")]
    compare_server: Option<String>,
}

/// Arguments of `neuron bench embed`.
#[derive(Debug, Args)]
pub struct EmbedBench {
    /// Embedding model id or directory.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    model: String,
    /// cpu, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Measured runs (after one warm-up).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Sentences per run (first sentences of the offline Wikipedia summaries).
    #[arg(long, default_value_t = 64)]
    sentences: usize,
    /// Python with sentence-transformers installed: also run it on the same model, sentences
    /// and device.
    #[arg(long)]
    compare_python: Option<PathBuf>,
    /// The linear layers' kernels: auto (AMX, or AVX2 FMA on CPUs without AVX-512, where the
    /// CPU has them) or f32 (gemm).
    #[arg(long, default_value = "auto", value_parser = parse_kernels)]
    kernels: Kernels,
}

fn parse_kernels(s: &str) -> Result<Kernels, String> {
    match s {
        "auto" => Ok(Kernels::Auto),
        "f32" => Ok(Kernels::F32),
        _ => Err(format!("unknown kernels {s:?} (auto or f32)")),
    }
}

/// Runs a `bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Llm(args) => bench_llm(args),
        BenchCommand::Embed(args) => bench_embed(args),
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Threads that keep the CPU busy (integer arithmetic, no sleeping) until dropped: the
/// competing load of `bench llm --contend N`.
struct Competitors {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Competitors {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = i as u64 + 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                        }
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Competitors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    format!("{mean:.1} [{min:.1}–{max:.1}]")
}

fn run_python(python: &Path, script: &str, args: &[&str], stdin: Option<String>) -> Result<Value> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("python stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{} exited with {}", python.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("parsing baseline output `{last}`"))
}

fn bench_llm(args: LlmBench) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let started = Instant::now();
    let (path, service) = args.model.load()?;
    let load_s = started.elapsed().as_secs_f64();
    let messages = vec![ChatMessage::new("user", BENCH_PROMPT)];
    let params = SamplingParams {
        max_tokens: args.max_tokens,
        ..SamplingParams::default()
    };
    let info = service.info().clone();
    println!(
        "model: {} ({}, {}, context {}, KV cache {} KiB per position, at most {} MiB per \
         sequence), device {}, kernels {}",
        path.display(),
        info.arch,
        info.format,
        info.context,
        info.kv_bytes_per_position / 1024,
        info.kv_bytes_per_position * info.context / (1024 * 1024),
        args.model.device,
        info.kernels
    );
    service.chat_blocking(messages.clone(), params.clone())?; // warm-up
    if args.contend > 0 {
        println!(
            "{} CPU-bound competing thread(s) running during the measured runs",
            args.contend
        );
    }
    let _competitors = Competitors::start(args.contend);
    if !args.concurrency.is_empty() {
        return bench_concurrency(&args, &service);
    }
    let (mut prompt_rates, mut decode_rates) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..args.runs {
        let g = service.chat_blocking(messages.clone(), params.clone())?;
        prompt_rates.push(g.prompt_tokens as f64 / g.prompt_secs);
        decode_rates.push(g.completion_tokens as f64 / g.decode_secs);
        last = Some(g);
    }
    let g = last.expect("runs >= 1");
    println!("| engine | load s | prompt tok/s | decode tok/s | peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| neuron (candle) | {load_s:.2} | {} | {} | {:.0} |",
        range(&prompt_rates),
        range(&decode_rates),
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    if let Some(python) = &args.compare_python {
        let prompt = service.render_prompt(&messages)?;
        let base = run_python(
            python,
            LLAMA_CPP_SCRIPT,
            &[
                &path.to_string_lossy(),
                &prompt,
                &args.max_tokens.to_string(),
                &args.runs.to_string(),
            ],
            None,
        )?;
        let field = |k: &str| -> Vec<f64> {
            base["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r[k].as_f64())
                .collect()
        };
        println!(
            "| {} | {:.2} | {} | {} | {:.0} |",
            base["engine"].as_str().unwrap_or("llama.cpp"),
            base["load_s"].as_f64().unwrap_or(f64::NAN),
            range(&field("prompt_tok_s")),
            range(&field("decode_tok_s")),
            base["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
        );
        println!(
            "llama.cpp text: {:?}",
            base["text"].as_str().unwrap_or_default()
        );
    }
    println!(
        "{} prompt tokens, {} generated per run ({:?}); candle text: {:?}",
        g.prompt_tokens, g.completion_tokens, g.finish_reason, g.text
    );
    Ok(())
}

/// `bench llm --concurrency`: each level against the engine, then against the server.
fn bench_concurrency(args: &LlmBench, service: &LlmService) -> Result<()> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency levels must be at least 1");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let params = SamplingParams {
        max_tokens: args.max_tokens,
        ..SamplingParams::default()
    };
    println!(
        "| engine | concurrent | aggregate decode tok/s | time to first token s | \
         per-request decode tok/s |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let print = |engine: &str, level: &load::Level| {
        let ttft: Vec<f64> = level.requests.iter().map(|r| r.first_token_s).collect();
        let decode: Vec<f64> = level
            .requests
            .iter()
            .map(load::Timed::decode_tok_s)
            .collect();
        println!(
            "| {engine} | {} | {:.1} | {} | {} |",
            level.concurrency,
            level.aggregate_tok_s(),
            range(&ttft),
            range(&decode)
        );
    };
    for &n in &args.concurrency {
        let level = runtime.block_on(load::run_level(n, |i| {
            load::engine_request(
                service.clone(),
                load::request_messages(BENCH_PROMPT, i),
                params.clone(),
            )
        }))?;
        print("neuron (candle)", &level);
    }
    if let Some(url) = &args.compare_server {
        // A fresh connection per request: a server may close an idle kept-alive one
        // between levels, and every request then pays the same connect cost as ours.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?;
        for &n in &args.concurrency {
            let level = runtime.block_on(load::run_level(n, |i| {
                neuron::net::openai::timed_chat_stream(
                    client.clone(),
                    url.clone(),
                    load::request_messages(BENCH_PROMPT, i),
                    args.max_tokens,
                )
            }))?;
            print(url, &level);
        }
    }
    Ok(())
}

/// The first sentence of each of the first `n` summaries (by title) of the offline
/// Wikipedia dataset.
fn bench_sentences(n: usize) -> Result<Vec<String>> {
    let path = Resolver::default().resolve("wiki-vital-summaries")?;
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut entries: Vec<(&String, &Value)> = json
        .as_object()
        .context("summaries are a JSON object")?
        .iter()
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Ok(entries
        .into_iter()
        .filter_map(|(_, v)| v["extract"].as_str())
        .map(|e| {
            e.split_inclusive(". ")
                .next()
                .unwrap_or(e)
                .trim()
                .to_string()
        })
        .take(n)
        .collect())
}

/// The torch device sentence-transformers runs on for our `device`: torch spells `cpu`
/// and `cuda:N` as we do, and Apple's GPU `mps`.
fn torch_device(device: DeviceSpec) -> String {
    match device {
        DeviceSpec::Metal(_) => "mps".into(),
        other => other.to_string(),
    }
}

fn bench_embed(args: EmbedBench) -> Result<()> {
    if args.runs == 0 || args.sentences == 0 {
        bail!("--runs and --sentences must be at least 1");
    }
    let sentences = bench_sentences(args.sentences)?;
    let dir = Resolver::default().resolve(&args.model)?;
    let started = Instant::now();
    let embedder = Embedder::load_with(&dir, &args.device.open()?, args.kernels)?;
    let load_s = started.elapsed().as_secs_f64();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    embedder.embed(&texts[..texts.len().min(8)])?; // warm-up
    let mut rates = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        embedder.embed(&texts)?;
        rates.push(texts.len() as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "model: {}, {} sentences per run, device {}, kernels {}",
        dir.display(),
        texts.len(),
        args.device,
        embedder.kernels()
    );
    println!("| engine | load s | sentences/s | peak RSS MiB |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| neuron ({}) | {load_s:.2} | {} | {:.0} |",
        embedder.kernels(),
        range(&rates),
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    if let Some(python) = &args.compare_python {
        let base = run_python(
            python,
            SENTENCE_TRANSFORMERS_SCRIPT,
            &[
                &dir.to_string_lossy(),
                &args.runs.to_string(),
                &torch_device(args.device),
            ],
            Some(serde_json::to_string(&sentences)?),
        )?;
        let rates: Vec<f64> = base["sentences_per_s"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        println!(
            "| {} | {:.2} | {} | {:.0} |",
            base["engine"].as_str().unwrap_or("sentence-transformers"),
            base["load_s"].as_f64().unwrap_or(f64::NAN),
            range(&rates),
            base["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

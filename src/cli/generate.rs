//! `neuron generate`: one chat turn with a local model, streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use neuron::llm::{
    ChatMessage, CpuKernels, DeviceSpec, LlmService, LoadOptions, RequestOptions, SamplingParams,
};
use neuron::models::Resolver;

/// Model selection and loading flags shared by `generate` and `bench llm`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model id (see `neuron models list`) or path to a .gguf file / safetensors directory.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// cpu, cuda:N or metal (GPU needs a build with `--features cuda|metal`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Keep Q4_1/Q5_x weights that candle multiplies as shipped instead of re-quantising
    /// them to Q8_0 (slower on CPU).
    #[arg(long)]
    pub no_requantize: bool,
    /// Multiply quantised weights with candle's CPU kernels only, not neuron's own
    /// AVX-512 VNNI / AVX2 ones (for comparison).
    #[arg(long)]
    pub candle_kernels: bool,
    /// Multiply several rows at once (prompts, batched decoding) with AVX-512 VNNI rather
    /// than on Intel AMX int8 tiles (the same results; for comparison).
    #[arg(long)]
    pub no_amx: bool,
    /// Cap on the context window in tokens.
    #[arg(long)]
    pub max_context: Option<usize>,
}

impl ModelArgs {
    /// The kernels these flags choose.
    pub fn cpu_kernels(&self) -> CpuKernels {
        CpuKernels {
            own: !self.candle_kernels,
            requantize: !self.no_requantize,
            amx: !self.no_amx,
        }
    }

    /// Resolves the model and loads it into a service.
    pub fn load(&self) -> Result<(PathBuf, LlmService)> {
        let path = Resolver::default().resolve(&self.model)?;
        let options = LoadOptions {
            device: self.device.open()?,
            cpu_kernels: self.cpu_kernels(),
            max_context: self.max_context,
            ..LoadOptions::default()
        };
        let service = LlmService::load(&path, options)
            .with_context(|| format!("loading {}", path.display()))?;
        Ok((path, service))
    }
}

/// Arguments of `neuron generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The user message.
    #[arg(long)]
    prompt: String,
    /// Optional system message.
    #[arg(long)]
    system: Option<String>,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Top-k filtering.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus (top-p) filtering.
    #[arg(long)]
    top_p: Option<f64>,
    /// Repeat penalty over the last 64 tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

/// Runs `neuron generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let (_, service) = args.model.load()?;
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", args.prompt));
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        max_tokens: args.max_tokens,
        stop: args.stop,
        logprobs: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let printer = std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        while let Some(piece) = rx.blocking_recv() {
            // A closed stdout (e.g. `| head`) just ends the printing.
            if out
                .write_all(piece.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                break;
            }
        }
    });
    let result = service.chat_blocking_with(
        messages,
        params,
        RequestOptions {
            stream: Some(tx),
            ..RequestOptions::default()
        },
    );
    printer.join().ok();
    let g = result?;
    println!();
    eprintln!(
        "{} prompt tokens ({:.1} tok/s), {} generated ({:.1} tok/s), finish: {:?}",
        g.prompt_tokens,
        g.prompt_tokens as f64 / g.prompt_secs.max(1e-9),
        g.completion_tokens,
        g.completion_tokens as f64 / g.decode_secs.max(1e-9),
        g.finish_reason
    );
    Ok(())
}

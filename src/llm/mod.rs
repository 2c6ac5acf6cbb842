//! Text generation with candle: GGUF llama-family models (and safetensors llama, mistral
//! and qwen2 for GPU users), tokenizers, chat templates, sampling, a per-request KV cache,
//! log-likelihoods, and [`LlmService`], one loaded model serving many callers through a
//! bounded queue.

mod cpu_attention;
#[cfg(target_arch = "x86_64")]
mod cpu_matmul;
mod device;
mod engine;
mod export;
mod gguf;
mod gguf_header;
pub mod load;
mod safetensors;
mod service;
mod template;
mod tokenizer;

pub use device::DeviceSpec;
pub use engine::ModelInfo;
pub use export::{ExportDType, export_safetensors};
pub use gguf::{MAX_CONTEXT, SUPPORTED_ARCHITECTURES};
pub use gguf_header::{GgufHeader, MAX_TENSOR_RANK, open_gguf, read_gguf_header};
pub use service::{LlmService, RequestOptions};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors from loading a model or running a request.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The model file or directory cannot be opened.
    #[error("cannot open model {path}: {reason}")]
    Open {
        /// The path given.
        path: String,
        /// The OS or format error.
        reason: String,
    },
    /// An exported model file cannot be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file or directory being written.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The file is not a usable model (bad header, truncated, missing tensors).
    #[error("bad model: {0}")]
    BadModel(String),
    /// The model's architecture is not implemented.
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// The architecture named by the model.
        arch: String,
        /// What is supported.
        supported: String,
    },
    /// The tokenizer could not be built or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be compiled or rendered.
    #[error("chat template: {0}")]
    Template(String),
    /// The request has nothing to condition on.
    #[error("empty prompt: {0}")]
    EmptyPrompt(&'static str),
    /// The prompt (plus what must be generated or scored) exceeds the context window.
    #[error("{tokens} tokens exceed the model's context window of {context}")]
    ContextOverflow {
        /// Tokens needed.
        tokens: usize,
        /// The window.
        context: usize,
    },
    /// Sampling parameters out of range.
    #[error("invalid sampling parameters: {0}")]
    InvalidParams(String),
    /// The device string is malformed, names a GPU kind this binary was built without,
    /// or the GPU cannot be opened.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The device string given.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The request ran past its deadline and was stopped.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The caller went away or cancelled.
    #[error("request cancelled")]
    Cancelled,
    /// The queue is full (only from non-waiting submission).
    #[error("request queue is full ({0} waiting)")]
    QueueFull(usize),
    /// The worker thread is gone (it panicked or the service is shutting down).
    #[error("inference worker stopped")]
    WorkerGone,
    /// A decode step of the batch this request was in failed (the cause, once per
    /// request of the batch).
    #[error("batched decode step failed: {0}")]
    BatchStep(String),
    /// A tensor operation failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How to pick tokens. `Default` is greedy, 256 tokens, no stop strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 = greedy (argmax); otherwise softmax temperature.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches `p`.
    pub top_p: Option<f64>,
    /// Penalty (> 1 discourages) applied to tokens already in the prompt or output.
    pub repeat_penalty: f32,
    /// RNG seed: same seed, prompt and parameters give the same text.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Per-token log-probabilities to return in [`Generation::logprobs`]: `Some(k)`
    /// gives each generated token's and its position's `k` most likely tokens (at
    /// most [`MAX_TOP_LOGPROBS`]; OpenAI's `logprobs`/`top_logprobs`).
    pub logprobs: Option<usize>,
}

/// The most alternatives [`SamplingParams::logprobs`] may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability (natural log, the model's distribution after
/// the repeat penalty, at temperature 1) and its position's most likely tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens at its position, best first, with their log-probabilities.
    pub top: Vec<(String, f32)>,
}

impl crate::score::inference::SampledToken for TokenLogprob {
    fn token(&self) -> &str {
        &self.token
    }
    fn top(&self) -> &[(String, f32)] {
        &self.top
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repeat_penalty: 1.0,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
            logprobs: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string was produced (it is not included in the text).
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
}

/// The result of one chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated text (stop string and EOS excluded).
    pub text: String,
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Seconds spent on the prompt (prefill).
    pub prompt_secs: f64,
    /// Seconds spent generating after the prompt.
    pub decode_secs: f64,
    /// One entry per generated token when [`SamplingParams::logprobs`] asked for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
}

/// Per-token cross-entropy of a continuation given a prompt (natural log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLosses {
    /// Continuation token ids.
    pub tokens: Vec<u32>,
    /// `-ln p(token | everything before)`, one per continuation token.
    pub losses: Vec<f32>,
}

impl TokenLosses {
    /// Sum of the losses (negative log-likelihood of the continuation).
    pub fn total(&self) -> f32 {
        self.losses.iter().sum()
    }

    /// Mean loss per token (0 for an empty continuation).
    pub fn mean(&self) -> f32 {
        if self.losses.is_empty() {
            0.0
        } else {
            self.total() / self.losses.len() as f32
        }
    }
}

/// How quantised GGUF weights are multiplied on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuKernels {
    /// Multiply Q4_1 and Q8_0 weights with this crate's AVX-512 VNNI / AVX2 kernels
    /// where the CPU has them (x86-64), keeping Q4_1 as shipped; else candle's kernels.
    pub own: bool,
    /// Re-quantise the Q4_1/Q5_0/Q5_1 weights that candle multiplies to Q8_0 at load:
    /// candle has no SIMD kernel for those types (Q8_0 decodes ~3× faster, for ~1 s of
    /// load time and a larger footprint).
    pub requantize: bool,
    /// With `own`, multiply several rows at once (prompts, batched decoding) on Intel AMX
    /// int8 tiles where the CPU has them: the same results bit for bit, faster.
    pub amx: bool,
}

impl Default for CpuKernels {
    fn default() -> Self {
        Self {
            own: true,
            requantize: true,
            amx: true,
        }
    }
}

impl std::fmt::Display for CpuKernels {
    /// Which kernels multiply the quantised weights on this CPU.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(target_arch = "x86_64")]
        if self.own {
            use neuron_qmatmul::Isa;
            match cpu_matmul::isa(self.amx) {
                Some(Isa::Amx) => {
                    return f.write_str(
                        "neuron's own, AMX int8 for several rows, AVX-512 VNNI for one",
                    );
                }
                Some(Isa::Avx512Vnni) => return f.write_str("neuron's own, AVX-512 VNNI"),
                Some(Isa::Avx2) => return f.write_str("neuron's own, AVX2"),
                None => {}
            }
        }
        f.write_str(match self.requantize {
            true => "candle's, Q4_1/Q5_x re-quantised to Q8_0",
            false => "candle's, weights as shipped",
        })
    }
}

/// How to load a model and run the service.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where to run.
    pub device: candle_core::Device,
    /// How quantised GGUF weights are multiplied on the CPU.
    pub cpu_kernels: CpuKernels,
    /// Cap on the context window (defaults to the model's trained length).
    pub max_context: Option<usize>,
    /// Requests allowed to wait in the queue before callers block (backpressure).
    pub queue_capacity: usize,
    /// Most requests decoded together (continuous batching); more wait in the queue.
    /// Each live request holds its own KV cache (see [`ModelInfo::kv_bytes_per_position`]).
    pub max_batch: usize,
    /// Default per-request deadline (overridable per request).
    pub timeout: Option<Duration>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: candle_core::Device::Cpu,
            cpu_kernels: CpuKernels::default(),
            max_context: None,
            queue_capacity: 64,
            max_batch: 8,
            timeout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_defaults_are_greedy() {
        let p = SamplingParams::default();
        assert_eq!(p.temperature, 0.0);
        let from_json: SamplingParams = serde_json::from_str(r#"{"max_tokens": 5}"#).unwrap();
        assert_eq!(from_json.max_tokens, 5);
        assert_eq!(from_json.repeat_penalty, 1.0);
    }

    #[test]
    fn loss_summaries() {
        let l = TokenLosses {
            tokens: vec![1, 2],
            losses: vec![1.0, 3.0],
        };
        assert_eq!((l.total(), l.mean()), (4.0, 2.0));
    }
}

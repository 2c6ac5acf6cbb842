//! One loaded model (weights, tokenizer, chat template) and the request algorithms:
//! generation with sampling, stop strings and streaming, and log-likelihood scoring.
//! The engine is immutable; every request owns its own session (KV cache), so a request
//! that fails or is cancelled leaves nothing behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{D, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::utils::apply_repeat_penalty;
use tokenizers::Tokenizer;

use super::gguf::{GgufMeta, GgufModel, KvCache, SUPPORTED_ARCHITECTURES};
use super::gguf_header::open_gguf;
use super::safetensors::{SafeModel, SafeSession};
use super::template::ChatTemplate;
use super::{
    ChatMessage, FinishReason, Generation, LlmError, LoadOptions, MAX_TOP_LOGPROBS, SamplingParams,
    TokenLogprob, TokenLosses, tokenizer,
};

/// Tokens whose appearance ends generation, when the vocabulary has them as specials.
const END_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "</s>",
    "<|end|>",
];
/// How many recent tokens the repeat penalty looks at (llama.cpp's default).
const REPEAT_LAST_N: usize = 64;

/// Facts about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Architecture name (`llama`, `qwen2`, …).
    pub arch: String,
    /// Format: `gguf` or `safetensors`.
    pub format: &'static str,
    /// Context window in tokens.
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Which chat template is used (`model`, `chatml`, `zephyr`, `llama3`).
    pub template: &'static str,
    /// Bytes of key/value cache a sequence holds per position (its cache is at most
    /// `context` positions, grown in steps of a few hundred).
    pub kv_bytes_per_position: usize,
    /// Which kernels multiply the weights (this CPU's, or candle's on a GPU).
    pub kernels: String,
    /// Seconds taken by [`super::LlmService::load`].
    pub load_secs: f64,
}

/// Prompt and continuation tokens per forward when a GGUF model on a GPU scores a
/// continuation; the last forward is padded to this many.
const GPU_SCORING_CHUNK: usize = 64;

/// Which kernels multiply a model's weights on `device`: `cpu`'s choice on the CPU.
fn kernels_on(device: &candle_core::Device, cpu: impl std::fmt::Display) -> String {
    match device {
        candle_core::Device::Cpu => cpu.to_string(),
        candle_core::Device::Cuda(_) => "candle's CUDA kernels".into(),
        candle_core::Device::Metal(_) => "candle's Metal kernels".into(),
    }
}

enum Backend {
    Gguf(GgufModel),
    Safe(SafeModel),
}

enum Session {
    Gguf(KvCache),
    Safe(Box<SafeSession>),
}

/// Cancellation and deadline of one request.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub cancelled: Arc<AtomicBool>,
    pub deadline: Option<(Instant, Duration)>,
}

impl Control {
    fn check(&self) -> Result<(), LlmError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(LlmError::Cancelled);
        }
        match self.deadline {
            Some((at, budget)) if Instant::now() >= at => Err(LlmError::Timeout(budget)),
            _ => Ok(()),
        }
    }
}

/// Prompt tokens fed per forward while a request joins: a long prompt is fed in chunks,
/// so the running batch goes on decoding between them. Alone or batched, a prompt is
/// fed in the same chunks, so a request's tokens do not depend on its company.
pub(crate) const PREFILL_CHUNK: usize = 64;

/// One generation in progress: its own KV cache, sampler, parameters, deadline and
/// output so far. Made by [`Engine::begin`], driven by [`Engine::prefill`] and
/// [`Engine::decode_step`].
pub(crate) struct Decoding {
    session: Session,
    sampler: LogitsProcessor,
    params: SamplingParams,
    control: Control,
    /// Receives the text as it becomes final.
    on_text: Box<dyn FnMut(&str) + Send>,
    prompt: Vec<u32>,
    /// Prompt tokens fed so far.
    fed: usize,
    /// Most tokens to generate (the request's, within the context window).
    budget: usize,
    /// Bytes of text held back because they may begin a stop string.
    hold_back: usize,
    /// Prompt and generated tokens (for the repeat penalty).
    history: Vec<u32>,
    generated: Vec<u32>,
    logprobs: Vec<TokenLogprob>,
    text: String,
    /// Bytes of `text` already given to `on_text`.
    emitted: usize,
    started: Instant,
    prompt_secs: f64,
}

impl Decoding {
    /// Whether prompt tokens remain to be fed.
    pub fn prefilling(&self) -> bool {
        self.fed < self.prompt.len()
    }

    /// Whether the request was cancelled or ran past its deadline.
    pub fn stopped(&self) -> Option<LlmError> {
        self.control.check().err()
    }

    fn last_token(&self) -> u32 {
        *self
            .generated
            .last()
            .expect("a decode step follows a sampled token")
    }

    fn finish(&mut self, finish_reason: FinishReason) -> Generation {
        if self.text.len() > self.emitted {
            (self.on_text)(&self.text[self.emitted..]);
            self.emitted = self.text.len();
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        Generation {
            text: std::mem::take(&mut self.text),
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.generated.len(),
            finish_reason,
            prompt_secs: self.prompt_secs,
            decode_secs: elapsed - self.prompt_secs,
            logprobs: std::mem::take(&mut self.logprobs),
        }
    }
}

pub(crate) struct Engine {
    backend: Backend,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos: HashSet<u32>,
    bos: Option<u32>,
    pub info: ModelInfo,
}

pub(super) fn md_str(ct: &gguf_file::Content, key: &str) -> Option<String> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
}

pub(super) fn md_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl Engine {
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Self, LlmError> {
        let started = Instant::now();
        let mut engine = if path.is_dir() {
            Self::load_safetensors(path, options)?
        } else {
            Self::load_gguf(path, options)?
        };
        engine.info.load_secs = started.elapsed().as_secs_f64();
        tracing::info!(
            path = %path.display(),
            arch = %engine.info.arch,
            context = engine.info.context,
            template = engine.info.template,
            secs = engine.info.load_secs,
            "model loaded"
        );
        Ok(engine)
    }

    fn load_gguf(path: &Path, options: &LoadOptions) -> Result<Self, LlmError> {
        let (mut file, header) = open_gguf(path)?;
        let arch = header.architecture();
        let ct = header.content;
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(LlmError::UnsupportedArchitecture {
                arch,
                supported: SUPPORTED_ARCHITECTURES.join(", "),
            });
        }
        let sibling = path.with_file_name("tokenizer.json");
        let tokenizer = if sibling.is_file() {
            tokenizer::from_file(&sibling)?
        } else {
            tokenizer::from_gguf(&ct)?
        };
        let token_text = |key: &str| {
            md_u32(&ct, key)
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let template = ChatTemplate::new(
            md_str(&ct, "tokenizer.chat_template"),
            token_text("tokenizer.ggml.bos_token_id"),
            token_text("tokenizer.ggml.eos_token_id"),
            |t| tokenizer.token_to_id(t).is_some(),
        )?;
        let add_bos = ct
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = add_bos
            .then(|| md_u32(&ct, "tokenizer.ggml.bos_token_id"))
            .flatten();
        let eos_id = md_u32(&ct, "tokenizer.ggml.eos_token_id");
        let model = GgufModel::load(
            GgufMeta {
                content: &ct,
                arch: arch.clone(),
            },
            &mut file,
            &options.device,
            options.cpu_kernels,
            options.max_context,
        )?;
        let info = ModelInfo {
            path: path.to_path_buf(),
            arch,
            format: "gguf",
            context: model.context(),
            vocab: tokenizer.get_vocab_size(true),
            template: template.kind,
            kv_bytes_per_position: model.kv_bytes_per_position(),
            kernels: kernels_on(&options.device, options.cpu_kernels),
            load_secs: 0.0,
        };
        Ok(Self {
            eos: end_tokens(&tokenizer, eos_id),
            backend: Backend::Gguf(model),
            tokenizer,
            template,
            bos,
            info,
        })
    }

    fn load_safetensors(dir: &Path, options: &LoadOptions) -> Result<Self, LlmError> {
        let loaded = SafeModel::load(dir, &options.device, options.max_context)?;
        let tokenizer = tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let template = ChatTemplate::new(
            loaded.chat_template.clone(),
            loaded.bos_token.clone().unwrap_or_default(),
            loaded.eos_token.clone().unwrap_or_default(),
            |t| tokenizer.token_to_id(t).is_some(),
        )?;
        let mut eos = end_tokens(&tokenizer, None);
        eos.extend(loaded.eos_ids.iter().copied());
        let info = ModelInfo {
            path: dir.to_path_buf(),
            arch: loaded.arch.clone(),
            format: "safetensors",
            context: loaded.context,
            vocab: tokenizer.get_vocab_size(true),
            template: template.kind,
            kv_bytes_per_position: loaded.kv_bytes_per_position,
            kernels: kernels_on(&options.device, "candle's"),
            load_secs: 0.0,
        };
        Ok(Self {
            bos: None,
            backend: Backend::Safe(loaded.model),
            tokenizer,
            template,
            eos,
            info,
        })
    }

    fn session(&self) -> Session {
        match &self.backend {
            Backend::Gguf(m) => Session::Gguf(m.new_cache()),
            Backend::Safe(m) => Session::Safe(Box::new(m.new_session())),
        }
    }

    /// Logits of the last `keep` positions after feeding `tokens`, shape `(keep, vocab)`.
    fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        keep: usize,
    ) -> Result<Tensor, LlmError> {
        match (&self.backend, session) {
            (Backend::Gguf(m), Session::Gguf(cache)) => m.forward(tokens, cache, keep),
            (Backend::Safe(_), Session::Safe(s)) => {
                // These forwards return only the last position: feed the tail one token
                // at a time to collect `keep` rows.
                let split = tokens.len() + 1 - keep;
                let mut rows = vec![s.forward(&tokens[..split])?];
                for t in &tokens[split..] {
                    rows.push(s.forward(std::slice::from_ref(t))?);
                }
                Ok(Tensor::stack(&rows, 0)?)
            }
            _ => unreachable!("sessions are created by their own backend"),
        }
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// The prompt text for `messages`, chat template applied.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        if messages.iter().all(|m| m.content.trim().is_empty()) {
            return Err(LlmError::EmptyPrompt("no message has any content"));
        }
        self.template.render(messages)
    }

    /// Starts a generation of a reply to `messages`: validates `params`, renders and
    /// tokenizes the prompt. Nothing runs until [`Engine::prefill`].
    pub fn begin(
        &self,
        messages: &[ChatMessage],
        params: SamplingParams,
        control: Control,
        on_text: Box<dyn FnMut(&str) + Send>,
    ) -> Result<Decoding, LlmError> {
        let sampler = LogitsProcessor::from_sampling(params.seed, sampling(&params)?);
        let prompt = self.encode(&self.render(messages)?)?;
        let context = self.info.context;
        if prompt.len() >= context {
            return Err(LlmError::ContextOverflow {
                tokens: prompt.len() + 1,
                context,
            });
        }
        control.check()?;
        Ok(Decoding {
            session: self.session(),
            sampler,
            budget: params.max_tokens.min(context - prompt.len()),
            hold_back: params.stop.iter().map(String::len).max().unwrap_or(0),
            params,
            control,
            on_text,
            history: prompt.clone(),
            prompt,
            fed: 0,
            generated: Vec::new(),
            logprobs: Vec::new(),
            text: String::new(),
            emitted: 0,
            started: Instant::now(),
            prompt_secs: 0.0,
        })
    }

    /// Feeds the next [`PREFILL_CHUNK`] prompt tokens of `d`; after the last, samples
    /// its first token. The generation when it ended there, else `None`.
    /// The caller checks [`Decoding::stopped`] between turns.
    pub fn prefill(&self, d: &mut Decoding) -> Result<Option<Generation>, LlmError> {
        let end = (d.fed + PREFILL_CHUNK).min(d.prompt.len());
        let logits = self.forward(&mut d.session, &d.prompt[d.fed..end], 1)?;
        d.fed = end;
        if d.prefilling() {
            return Ok(None);
        }
        d.prompt_secs = d.started.elapsed().as_secs_f64();
        self.advance(d, logits.squeeze(0)?)
    }

    /// One decode step for every generation in `batch` (each past its prompt): feeds
    /// each one's last sampled token and samples the next. The projections multiply
    /// the whole batch in one pass over the weights; each row is computed as it would
    /// be alone, so a generation's tokens do not depend on its company. Per generation,
    /// the generation when it ended, `None` when it goes on, or its own error; the outer
    /// error fails the whole step.
    pub fn decode_step(
        &self,
        batch: &mut [&mut Decoding],
    ) -> Result<Vec<Result<Option<Generation>, LlmError>>, LlmError> {
        let logits = match &self.backend {
            Backend::Gguf(model) => {
                let mut steps = batch
                    .iter_mut()
                    .map(|d| {
                        let token = d.last_token();
                        match &mut d.session {
                            Session::Gguf(cache) => (token, cache),
                            Session::Safe(_) => unreachable!("sessions come from their backend"),
                        }
                    })
                    .collect::<Vec<_>>();
                let logits = model.forward_batch(&mut steps)?;
                (0..batch.len())
                    .map(|i| logits.get(i))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Backend::Safe(_) => batch
                .iter_mut()
                .map(|d| {
                    let token = d.last_token();
                    self.forward(&mut d.session, &[token], 1)?
                        .squeeze(0)
                        .map_err(LlmError::from)
                })
                .collect::<Result<Vec<_>, LlmError>>()?,
        };
        Ok(batch
            .iter_mut()
            .zip(logits)
            .map(|(d, logits)| self.advance(d, logits))
            .collect())
    }

    /// Samples `d`'s next token from `logits`: the generation when that ends it, else
    /// `None` (the token waits to be fed by the next [`Engine::decode_step`]).
    fn advance(
        &self,
        d: &mut Decoding,
        mut logits: Tensor,
    ) -> Result<Option<Generation>, LlmError> {
        let params = &d.params;
        if params.repeat_penalty != 1.0 {
            let start = d.history.len().saturating_sub(REPEAT_LAST_N);
            logits = apply_repeat_penalty(&logits, params.repeat_penalty, &d.history[start..])?;
        }
        let next = d.sampler.sample(&logits)?;
        if self.eos.contains(&next) {
            return Ok(Some(d.finish(FinishReason::Eos)));
        }
        if let Some(k) = params.logprobs {
            d.logprobs.push(self.token_logprob(&logits, next, k)?);
        }
        d.generated.push(next);
        d.history.push(next);
        d.text = self.decode(&d.generated)?;
        if let Some(cut) = params
            .stop
            .iter()
            .filter_map(|s| d.text.find(s.as_str()))
            .min()
        {
            d.text.truncate(cut);
            return Ok(Some(d.finish(FinishReason::Stop)));
        }
        // Emit what can no longer become part of a stop string (and is not a partial
        // UTF-8 sequence, which decodes as U+FFFD).
        if !d.text.ends_with('\u{FFFD}') {
            let mut safe = d.text.len().saturating_sub(d.hold_back);
            while !d.text.is_char_boundary(safe) {
                safe -= 1;
            }
            if safe > d.emitted {
                (d.on_text)(&d.text[d.emitted..safe]);
                d.emitted = safe;
            }
        }
        if d.generated.len() >= d.budget {
            return Ok(Some(d.finish(FinishReason::Length)));
        }
        Ok(None)
    }

    /// `token`'s log-probability under `logits` (log-softmax) and the `k` most likely
    /// tokens there.
    fn token_logprob(
        &self,
        logits: &Tensor,
        token: u32,
        k: usize,
    ) -> Result<TokenLogprob, LlmError> {
        let v: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = max + v.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        let logprob = |i: usize| v.get(i).map_or(f32::NEG_INFINITY, |x| x - log_sum);
        let mut order: Vec<usize> = (0..v.len()).collect();
        let k = k.min(v.len());
        let by_logit = |a: &usize, b: &usize| v[*b].total_cmp(&v[*a]);
        if k < order.len() && k > 0 {
            order.select_nth_unstable_by(k - 1, by_logit);
        }
        order.truncate(k);
        order.sort_unstable_by(by_logit);
        let top = order
            .into_iter()
            .map(|i| Ok((self.decode(&[i as u32])?, logprob(i))))
            .collect::<Result<Vec<_>, LlmError>>()?;
        Ok(TokenLogprob {
            token: self.decode(&[token])?,
            logprob: logprob(token as usize),
            top,
        })
    }

    pub fn log_likelihood(
        &self,
        prompt: &str,
        continuation: &str,
        control: &Control,
    ) -> Result<TokenLosses, LlmError> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.encode(prompt)?);
        if ids.is_empty() {
            return Err(LlmError::EmptyPrompt(
                "the prompt has no tokens to condition on",
            ));
        }
        let targets = self.encode(continuation)?;
        if targets.is_empty() {
            return Err(LlmError::EmptyPrompt(
                "the continuation has no tokens to score",
            ));
        }
        let prompt_len = ids.len();
        ids.extend(&targets);
        if ids.len() > self.info.context {
            return Err(LlmError::ContextOverflow {
                tokens: ids.len(),
                context: self.info.context,
            });
        }
        control.check()?;
        let mut session = self.session();
        // Position i predicts token i + 1: feed all but the last token and keep the rows
        // from the last prompt position on.
        let fed = &ids[..ids.len() - 1];
        let logits = match (&self.backend, &mut session) {
            (Backend::Gguf(model), Session::Gguf(cache)) if !model.device().is_cpu() => {
                score_in_padded_chunks(model, cache, fed)?.narrow(
                    0,
                    prompt_len - 1,
                    targets.len(),
                )?
            }
            _ => self.forward(&mut session, fed, targets.len())?,
        };
        debug_assert_eq!(logits.dim(0)?, ids.len() - prompt_len);
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let index = Tensor::new(targets.as_slice(), log_probs.device())?.unsqueeze(1)?;
        let picked: Vec<f32> = log_probs.gather(&index, 1)?.squeeze(1)?.to_vec1()?;
        Ok(TokenLosses {
            tokens: targets,
            losses: picked.into_iter().map(|lp| -lp).collect(),
        })
    }
}

/// The logits of every position of `tokens`, fed in forwards of [`GPU_SCORING_CHUNK`]
/// rows, the last padded to that many (within the context) with its own last token.
/// candle's quantised CUDA kernels sum a row differently depending on how many rows
/// they multiply (they change kernels above 8 rows); in forwards of one size a token's
/// loss does not depend on how long the continuation after it is.
fn score_in_padded_chunks(
    model: &GgufModel,
    cache: &mut KvCache,
    tokens: &[u32],
) -> Result<Tensor, LlmError> {
    let mut rows = Vec::new();
    for chunk in tokens.chunks(GPU_SCORING_CHUNK) {
        let room = model.context().saturating_sub(cache.len());
        let mut padded = chunk.to_vec();
        let last = *chunk.last().expect("chunks are never empty");
        padded.resize(GPU_SCORING_CHUNK.min(room).max(chunk.len()), last);
        let logits = model.forward(&padded, cache, padded.len())?;
        rows.push(logits.narrow(0, 0, chunk.len())?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

fn end_tokens(tokenizer: &Tokenizer, eos: Option<u32>) -> HashSet<u32> {
    END_TOKENS
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .chain(eos)
        .collect()
}

fn sampling(p: &SamplingParams) -> Result<Sampling, LlmError> {
    let bad = |m: String| Err(LlmError::InvalidParams(m));
    if p.temperature.is_nan() || p.temperature < 0.0 {
        return bad(format!("temperature must be >= 0, got {}", p.temperature));
    }
    if p.top_k == Some(0) {
        return bad("top_k must be at least 1".into());
    }
    if let Some(top_p) = p.top_p
        && !(top_p > 0.0 && top_p <= 1.0)
    {
        return bad(format!("top_p must be in (0, 1], got {top_p}"));
    }
    if p.repeat_penalty.is_nan() || p.repeat_penalty <= 0.0 {
        return bad(format!(
            "repeat_penalty must be > 0, got {}",
            p.repeat_penalty
        ));
    }
    if p.max_tokens == 0 {
        return bad("max_tokens must be at least 1".into());
    }
    if p.stop.iter().any(String::is_empty) {
        return bad("stop strings must not be empty".into());
    }
    if p.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
        return bad(format!("logprobs must be at most {MAX_TOP_LOGPROBS}"));
    }
    let temperature = p.temperature;
    Ok(match (temperature == 0.0, p.top_k, p.top_p) {
        (true, _, _) => Sampling::ArgMax,
        (false, None, None) => Sampling::All { temperature },
        (false, Some(k), None) => Sampling::TopK { k, temperature },
        (false, None, Some(p)) => Sampling::TopP { p, temperature },
        (false, Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_params_are_validated() {
        let ok = SamplingParams::default();
        assert!(matches!(sampling(&ok), Ok(Sampling::ArgMax)));
        for bad in [
            SamplingParams {
                temperature: -1.0,
                ..ok.clone()
            },
            SamplingParams {
                temperature: f64::NAN,
                ..ok.clone()
            },
            SamplingParams {
                top_k: Some(0),
                temperature: 1.0,
                ..ok.clone()
            },
            SamplingParams {
                top_p: Some(1.5),
                temperature: 1.0,
                ..ok.clone()
            },
            SamplingParams {
                repeat_penalty: 0.0,
                ..ok.clone()
            },
            SamplingParams {
                max_tokens: 0,
                ..ok.clone()
            },
            SamplingParams {
                stop: vec![String::new()],
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(sampling(&bad), Err(LlmError::InvalidParams(_))),
                "{bad:?}"
            );
        }
        let topk = SamplingParams {
            temperature: 0.7,
            top_k: Some(40),
            top_p: Some(0.9),
            ..ok
        };
        assert!(matches!(
            sampling(&topk),
            Ok(Sampling::TopKThenTopP { k: 40, .. })
        ));
    }

    /// The GPU's scoring in padded forwards of 64 (run here on the CPU, whose kernels sum
    /// a row the same way in any forward) gives every position the logits of one plain
    /// forward: over several chunks, and when the context leaves no room to pad.
    #[test]
    fn scoring_in_padded_chunks_keeps_every_position() {
        let path = crate::models::Resolver::default()
            .resolve("smollm2-135m-instruct")
            .unwrap();
        let text = "The lighthouse keeper climbed the stairs at dusk, lit the lamp and \
                    watched the ships pass the rocks below. ";
        for max_context in [None, Some(150)] {
            let options = LoadOptions {
                max_context,
                ..LoadOptions::default()
            };
            let engine = Engine::load(&path, &options).unwrap();
            let Backend::Gguf(model) = &engine.backend else {
                panic!("a GGUF loads as GGUF");
            };
            let mut tokens = engine.encode(&text.repeat(10)).unwrap();
            // Two full chunks and 12 tokens, padded to 64, or only to the context's end (150).
            tokens.truncate(140);
            assert_eq!(tokens.len(), 140);
            let mut session = engine.session();
            let plain = engine.forward(&mut session, &tokens, tokens.len()).unwrap();
            let padded = score_in_padded_chunks(model, &mut model.new_cache(), &tokens).unwrap();
            assert_eq!(padded.dims(), plain.dims());
            let diff = crate::cpu_tensor::max_abs_diff(&padded, &plain);
            assert!(
                diff < 1e-3,
                "context {max_context:?}: max logit diff {diff}"
            );
        }
    }
}

//! The `ctx` value passed to every hook: a seeded RNG (so a step is reproducible from
//! its seed), config values, and read-only views (step number, metagraph rows); and,
//! for a hook answering an OpenAI-style chat request, that request's [`ChatScope`].

use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rhai::{Array, Dynamic, INT, ImmutableString, Map};

use super::link::NeuronLink;
use crate::llm::{Generation, SamplingParams};
use crate::net::openai::ChatCompletionRequest;

/// The sampling parameters a chat request sets (OpenAI's `seed`, `temperature`,
/// `top_p`, `max_tokens`, `top_logprobs`); they override the script's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOverrides {
    /// RNG seed.
    pub seed: Option<u64>,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Nucleus mass.
    pub top_p: Option<f64>,
    /// Top-k cut.
    pub top_k: Option<usize>,
    /// Token limit.
    pub max_tokens: Option<usize>,
    /// Per-token logprobs with this many alternatives.
    pub logprobs: Option<usize>,
}

impl SamplingOverrides {
    /// The parameters a chat request sets: `seed`, temperature, `top_p`, `top_k`, token
    /// limit (top-level fields or SN1's `sampling_parameters`) and logprobs.
    pub fn of_request(request: &ChatCompletionRequest) -> Self {
        Self {
            seed: request.seed,
            temperature: request.sampling_temperature(),
            top_p: request.sampling_top_p(),
            top_k: request.sampling_top_k(),
            max_tokens: request.sampling_max_tokens(),
            logprobs: request.logprobs_wanted(),
        }
    }

    /// Sets every parameter the request gave.
    pub fn apply(&self, params: &mut SamplingParams) {
        if let Some(v) = self.seed {
            params.seed = v;
        }
        if let Some(v) = self.temperature {
            params.temperature = v;
        }
        if let Some(v) = self.top_p {
            params.top_p = Some(v);
        }
        if let Some(v) = self.top_k {
            params.top_k = Some(v);
        }
        if let Some(v) = self.max_tokens {
            params.max_tokens = v;
        }
        if self.logprobs.is_some() {
            params.logprobs = self.logprobs;
        }
    }
}

/// A chat request (OpenAI-style `/v1/chat/completions`) a hook is answering: every
/// `llm::chat`/`llm::ask` the hook makes takes the request's sampling parameters and
/// streams its text to `stream` as the model produces it; the last generation is kept
/// for the reply's logprobs, finish reason and token counts.
#[derive(Debug)]
pub struct ChatScope {
    /// The request's sampling parameters.
    pub overrides: SamplingOverrides,
    /// Receives generated text piece by piece.
    pub stream: tokio::sync::mpsc::UnboundedSender<String>,
    /// The last generation made while answering.
    pub last: Mutex<Option<Generation>>,
}

/// A seeded random stream shared by every clone (scripts pass it around by value).
///
/// ChaCha8 with an explicit seed: the same seed gives the same stream on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    inner: Arc<Mutex<ChaCha8Rng>>,
}

impl Rng {
    /// A stream seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-draw; the state is fine.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The next raw 64-bit value (for seeding child streams or LLM sampling).
    pub fn next_u64(&self) -> u64 {
        self.with(|r| r.next_u64())
    }

    /// Uniform integer in `[lo, hi]` (inclusive, like Python's `randint`); `lo` when `hi < lo`.
    pub fn int(&self, lo: INT, hi: INT) -> INT {
        if hi <= lo {
            return lo;
        }
        self.with(|r| r.random_range(lo..=hi))
    }

    /// Uniform float in `[0, 1)`.
    pub fn float(&self) -> f64 {
        self.with(|r| r.random::<f64>())
    }

    /// Uniform float in `[lo, hi)`; `lo` when the range is empty.
    pub fn float_range(&self, lo: f64, hi: f64) -> f64 {
        if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            return lo;
        }
        self.with(|r| r.random_range(lo..hi))
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        self.float() < p
    }

    /// A uniformly chosen element, or `()` for an empty array.
    pub fn choice(&self, items: &Array) -> Dynamic {
        if items.is_empty() {
            return Dynamic::UNIT;
        }
        let i = self.with(|r| r.random_range(0..items.len()));
        items[i].clone()
    }

    /// An index drawn with probability proportional to `weights` (negative weights count
    /// as 0); `-1` when no weight is positive.
    pub fn weighted_index(&self, weights: &[f64]) -> INT {
        let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
        if total <= 0.0 || !total.is_finite() {
            return -1;
        }
        let mut x = self.float() * total;
        let mut last_positive = -1;
        for (i, w) in weights.iter().enumerate() {
            let w = w.max(0.0);
            if w > 0.0 {
                last_positive = i as INT;
                if x < w {
                    return i as INT;
                }
                x -= w;
            }
        }
        last_positive
    }

    /// A shuffled copy of `items`.
    pub fn shuffle(&self, mut items: Array) -> Array {
        self.with(|r| items.shuffle(r));
        items
    }

    /// `k` distinct elements in random order (all of them when `k` ≥ the length).
    pub fn sample(&self, items: Array, k: INT) -> Array {
        let mut shuffled = self.shuffle(items);
        shuffled.truncate(k.max(0) as usize);
        shuffled
    }
}

/// The per-call context handed to hooks as `ctx`.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The step's seeded random stream (`ctx.rng`).
    pub rng: Rng,
    /// The seed the stream started from (`ctx.seed`).
    pub seed: u64,
    /// The step number (`ctx.step`).
    pub step: u64,
    /// Config values for scripts (`ctx.config`), read-only.
    pub config: Map,
    /// Metagraph rows as maps (`ctx.metagraph`), read-only; empty where not available.
    /// Shared, so the copies of a context handed to each hook do not copy the rows.
    pub metagraph: Arc<Array>,
    /// The neuron the hook runs for (chain and dendrite), when it runs inside one. Not
    /// visible to scripts; the `chain` and `dendrite` modules use it.
    link: Option<NeuronLink>,
    /// The chat request being answered, if any. Not visible to scripts; the `llm`
    /// module uses it.
    chat: Option<Arc<ChatScope>>,
}

impl Ctx {
    /// A context for step `step` whose RNG starts from `seed`.
    pub fn new(seed: u64, step: u64, config: Map) -> Self {
        Self {
            rng: Rng::new(seed),
            seed,
            step,
            config,
            metagraph: Arc::default(),
            link: None,
            chat: None,
        }
    }

    /// The same context lending `link` to the `chain` and `dendrite` modules.
    pub fn with_link(mut self, link: NeuronLink) -> Self {
        self.link = Some(link);
        self
    }

    /// The neuron link, if the context has one.
    pub(crate) fn link(&self) -> Option<&NeuronLink> {
        self.link.as_ref()
    }

    /// The same context answering the chat request `scope`.
    pub fn with_chat(mut self, scope: Arc<ChatScope>) -> Self {
        self.chat = Some(scope);
        self
    }

    /// The chat request being answered, if any.
    pub(crate) fn chat(&self) -> Option<&ChatScope> {
        self.chat.as_deref()
    }

    /// The same context with `rows` as the metagraph view.
    pub fn with_metagraph(mut self, rows: Arc<Array>) -> Self {
        self.metagraph = rows;
        self
    }

    /// A config value by key, `()` when absent.
    pub fn config_value(&self, key: &str) -> Dynamic {
        self.config.get(key).cloned().unwrap_or(Dynamic::UNIT)
    }

    /// Registers the `Ctx` and `Rng` types with their getters and methods.
    pub(crate) fn register(engine: &mut rhai::Engine) {
        engine
            .register_type_with_name::<Ctx>("Ctx")
            .register_get("rng", |c: &mut Ctx| c.rng.clone())
            .register_get("seed", |c: &mut Ctx| c.seed as INT)
            .register_get("step", |c: &mut Ctx| c.step as INT)
            .register_get("config", |c: &mut Ctx| c.config.clone())
            .register_get("metagraph", |c: &mut Ctx| c.metagraph.as_ref().clone())
            .register_fn("config", |c: &mut Ctx, key: ImmutableString| {
                c.config_value(&key)
            })
            .register_fn(
                "config",
                |c: &mut Ctx, key: ImmutableString, default: Dynamic| match c
                    .config
                    .get(key.as_str())
                {
                    Some(v) if !v.is_unit() => v.clone(),
                    _ => default,
                },
            );
        engine
            .register_type_with_name::<Rng>("Rng")
            .register_fn("int", |r: &mut Rng, lo: INT, hi: INT| r.int(lo, hi))
            .register_fn("float", |r: &mut Rng| r.float())
            .register_fn("float", |r: &mut Rng, lo: f64, hi: f64| {
                r.float_range(lo, hi)
            })
            .register_fn("chance", |r: &mut Rng, p: f64| r.chance(p))
            .register_fn("choice", |r: &mut Rng, items: Array| r.choice(&items))
            .register_fn("weighted", |r: &mut Rng, weights: Array| {
                let w: Vec<f64> = weights
                    .iter()
                    .map(|d| {
                        d.as_float()
                            .or_else(|_| d.as_int().map(|i| i as f64))
                            .unwrap_or(0.0)
                    })
                    .collect();
                r.weighted_index(&w)
            })
            .register_fn("shuffle", |r: &mut Rng, items: Array| r.shuffle(items))
            .register_fn("sample", |r: &mut Rng, items: Array, k: INT| {
                r.sample(items, k)
            })
            .register_fn("seed", |r: &mut Rng| (r.next_u64() >> 1) as INT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (a, b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<INT> = (0..20).map(|_| a.int(0, 1000)).collect();
        let ys: Vec<INT> = (0..20).map(|_| b.int(0, 1000)).collect();
        assert_eq!(xs, ys);
        assert_ne!(
            xs,
            (0..20)
                .map(|_| Rng::new(8).int(0, 1000))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn degenerate_ranges_do_not_panic() {
        let r = Rng::new(1);
        assert_eq!(r.int(5, 5), 5);
        assert_eq!(r.int(5, 1), 5);
        assert_eq!(r.float_range(2.0, 2.0), 2.0);
        assert!(r.float_range(f64::NAN, 1.0).is_nan());
        assert!(r.choice(&Array::new()).is_unit());
        assert_eq!(r.weighted_index(&[0.0, -1.0]), -1);
        assert_eq!(r.weighted_index(&[0.0, 3.0]), 1);
        assert_eq!(r.sample(vec![1.into(), 2.into()], -3).len(), 0);
    }

    #[test]
    fn clones_share_the_stream() {
        let a = Rng::new(3);
        let b = a.clone();
        let first = a.next_u64();
        let second = b.next_u64();
        let fresh = Rng::new(3);
        assert_eq!(fresh.next_u64(), first);
        assert_eq!(fresh.next_u64(), second);
    }
}

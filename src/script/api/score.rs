//! `score`: the reward functions of [`crate::score`] by name (`rouge-1`, `rouge-l:p`,
//! `relevance`, `diff`, `float_diff`, `date`, …), and `score::inference`, SN1 v2's
//! verified inference ([`crate::score::inference`]).

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Map, Module};

use super::fail;
use crate::llm::TokenLogprob;
use crate::score::inference::{InferenceAnswer, Regeneration, verify_inference};
use crate::score::{MAX_SCORED_BYTES, RewardFn};
use crate::script::ctx::Ctx;
use crate::script::services::Services;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn reward(services: &Services, name: &str, reference: &str, completion: &str) -> Res<f64> {
    let function: RewardFn = name.parse().map_err(fail)?;
    for (what, text) in [("reference", reference), ("completion", completion)] {
        if text.len() > MAX_SCORED_BYTES {
            return Err(fail(format!(
                "score::reward(\"{name}\"): the {what} is {} bytes; at most {MAX_SCORED_BYTES}",
                text.len()
            )));
        }
    }
    let scores = if function.needs_embedder() {
        let embedder = services
            .embedder
            .get()
            .map_err(|e| fail(format!("score::reward(\"{name}\"): {e}")))?;
        let embed = |texts: &[&str]| embedder.embed(texts);
        function.score(reference, &[completion], Some(&embed))
    } else {
        function.score(reference, &[completion], None)
    };
    Ok(scores.map_err(fail)?[0])
}

/// A map's text field and its `logprobs` (as `llm::generate` writes them).
fn text_and_tokens(map: &Map, text_key: &str, what: &str) -> Res<(String, Vec<TokenLogprob>)> {
    let text = map
        .get(text_key)
        .and_then(|v| v.clone().into_immutable_string().ok())
        .ok_or_else(|| {
            fail(format!(
                "score::inference: {what} has no string `{text_key}`"
            ))
        })?;
    let tokens = match map.get("logprobs") {
        // Through JSON: Rhai floats are f64, which `rhai::serde` will not narrow to f32.
        Some(list) => rhai::serde::from_dynamic::<serde_json::Value>(list)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_value(json).map_err(|e| e.to_string()))
            .map_err(|e| fail(format!("score::inference: {what}'s `logprobs`: {e}")))?,
        None => Vec::new(),
    };
    Ok((text.to_string(), tokens))
}

/// `score::inference(ctx, generation, max_tokens, answers)`: one reward per answer.
fn inference(ctx: &Ctx, generation: &Map, max_tokens: i64, answers: &Array) -> Res<Array> {
    let (text, tokens) = text_and_tokens(generation, "text", "the generation")?;
    let max_tokens = usize::try_from(max_tokens)
        .map_err(|_| fail("score::inference: max_tokens must be ≥ 0"))?;
    let regeneration = Regeneration {
        text: &text,
        tokens: &tokens,
        max_tokens,
    };
    let read = answers
        .iter()
        .map(|a| {
            let map = a
                .read_lock::<Map>()
                .ok_or_else(|| fail("score::inference: answers must be maps"))?;
            let (text, tokens) = text_and_tokens(&map, "completion", "an answer")?;
            let latency_s = map
                .get("latency_s")
                .and_then(|v| v.as_float().ok())
                .unwrap_or(0.0);
            Ok((text, tokens, latency_s))
        })
        .collect::<Res<Vec<_>>>()?;
    let views: Vec<InferenceAnswer<'_, TokenLogprob>> = read
        .iter()
        .map(|(text, tokens, latency_s)| InferenceAnswer {
            text,
            tokens,
            latency_s: *latency_s,
        })
        .collect();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(ctx.rng.next_u64());
    let verdicts = verify_inference(&regeneration, &views, &mut rng);
    Ok(verdicts
        .into_iter()
        .map(|v| {
            if let Some(failure) = &v.failure {
                tracing::debug!(%failure, "verified inference: answer failed");
            }
            Dynamic::from_float(v.reward)
        })
        .collect())
}

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services;
    def!(&mut m, "reward", move |name: ImmutableString,
                                 reference: ImmutableString,
                                 completion: ImmutableString|
          -> Res<f64> {
        reward(&s, &name, &reference, &completion)
    });
    def!(&mut m, "inference", |ctx: Ctx,
                               generation: Map,
                               max_tokens: i64,
                               answers: Array|
     -> Res<Array> {
        inference(&ctx, &generation, max_tokens, &answers)
    });
    def!(&mut m, "names", || -> Array {
        RewardFn::NAMES.iter().map(|n| Dynamic::from(*n)).collect()
    });
    m
}

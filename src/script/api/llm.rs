//! `llm`: chat with the validator/miner model. Sampling options come from a map; the
//! seed is drawn from `ctx.rng` unless given, so a step's generations are reproducible
//! from its seed. A generation gets the time left to the calling hook and stops there.
//! While a hook answers a chat request (`ctx` carries a `ChatScope`), the request's
//! sampling parameters win and the text streams to the requester as it is produced.
//! `llm::model()` names the chat model; `llm::generate` returns the whole generation (text, finish reason, and with the
//! `logprobs: k` option each token with its `k` most likely alternatives).

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Map, Module};

use super::fail;
use crate::llm::{ChatMessage, Generation, RequestOptions, SamplingParams};
use crate::script::ctx::Ctx;
use crate::script::sandbox;
use crate::script::services::Services;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn float(key: &str, v: &Dynamic) -> Res<f64> {
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
        .ok_or_else(|| fail(format!("llm option `{key}` must be a number")))
}

fn count(key: &str, v: &Dynamic) -> Res<usize> {
    v.as_int()
        .ok()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| fail(format!("llm option `{key}` must be a non-negative integer")))
}

/// Sampling parameters from an options map (unknown keys are an error).
fn params(ctx: &Ctx, opts: &Map) -> Res<SamplingParams> {
    let mut p = SamplingParams {
        seed: ctx.rng.next_u64(),
        ..SamplingParams::default()
    };
    for (key, v) in opts {
        match key.as_str() {
            "temperature" => p.temperature = float(key, v)?,
            "top_k" => p.top_k = Some(count(key, v)?),
            "top_p" => p.top_p = Some(float(key, v)?),
            "repeat_penalty" => p.repeat_penalty = float(key, v)? as f32,
            "max_tokens" => p.max_tokens = count(key, v)?,
            "seed" => p.seed = count(key, v)? as u64,
            "logprobs" => p.logprobs = Some(count(key, v)?),
            "stop" => {
                p.stop = v
                    .as_array_ref()
                    .map_err(|_| fail("llm option `stop` must be an array of strings"))?
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }
            other => {
                return Err(fail(format!(
                    "unknown llm option `{other}` (temperature, top_k, top_p, repeat_penalty, max_tokens, seed, stop, logprobs)"
                )));
            }
        }
    }
    Ok(p)
}

fn messages(list: &Array) -> Res<Vec<ChatMessage>> {
    list.iter()
        .map(|m| {
            let map = m
                .read_lock::<Map>()
                .ok_or_else(|| fail("llm messages must be maps #{role, content}"))?;
            let field = |k: &str| {
                map.get(k)
                    .filter(|v| v.is_string())
                    .map(|v| v.to_string())
                    .ok_or_else(|| fail(format!("llm message without string `{k}`")))
            };
            Ok(ChatMessage::new(field("role")?, field("content")?))
        })
        .collect()
}

/// One generation, stopped at the calling hook's deadline (and, answering a chat
/// request, with its parameters and streamed to it).
fn chat(
    services: &Services,
    ctx: &Ctx,
    msgs: Vec<ChatMessage>,
    params: SamplingParams,
) -> Res<String> {
    generate(services, ctx, msgs, params).map(|g| g.text)
}

/// [`chat`]'s whole generation.
fn generate(
    services: &Services,
    ctx: &Ctx,
    msgs: Vec<ChatMessage>,
    mut params: SamplingParams,
) -> Res<Generation> {
    let llm = services.llm.get().map_err(|e| fail(format!("llm: {e}")))?;
    let mut options = RequestOptions {
        timeout: sandbox::remaining(),
        ..RequestOptions::default()
    };
    let scope = ctx.chat();
    if let Some(scope) = scope {
        scope.overrides.apply(&mut params);
        options.stream = Some(scope.stream.clone());
    }
    let generation = llm
        .chat_blocking_with(msgs, params, options)
        .map_err(|e| fail(format!("llm: {e}")))?;
    if let Some(scope) = scope {
        *scope.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(generation.clone());
    }
    Ok(generation)
}

/// A generation as a script map: `#{text, finish_reason, logprobs}`, `logprobs` one
/// `#{token, logprob, top: [[token, logprob], …]}` per token (empty unless asked for).
fn generation_map(generation: &Generation) -> Res<Map> {
    let mut map = Map::new();
    map.insert("text".into(), generation.text.clone().into());
    let finish = rhai::serde::to_dynamic(generation.finish_reason)?;
    map.insert("finish_reason".into(), finish);
    map.insert(
        "logprobs".into(),
        rhai::serde::to_dynamic(&generation.logprobs)?,
    );
    Ok(map)
}

fn ask_messages(system: &str, prompt: &str) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(2);
    if !system.is_empty() {
        out.push(ChatMessage::new("system", system));
    }
    out.push(ChatMessage::new("user", prompt));
    out
}

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    def!(&mut m, "chat", move |ctx: Ctx,
                               list: Array,
                               opts: Map|
          -> Res<String> {
        chat(&s, &ctx, messages(&list)?, params(&ctx, &opts)?)
    });
    let s = services.clone();
    def!(&mut m, "chat", move |ctx: Ctx,
                               list: Array|
          -> Res<String> {
        chat(&s, &ctx, messages(&list)?, params(&ctx, &Map::new())?)
    });
    let id = services.llm_id.clone();
    def!(&mut m, "model", move || -> ImmutableString {
        id.as_str().into()
    });
    let s = services.clone();
    def!(&mut m, "generate", move |ctx: Ctx,
                                   list: Array,
                                   opts: Map|
          -> Res<Map> {
        generation_map(&generate(&s, &ctx, messages(&list)?, params(&ctx, &opts)?)?)
    });
    let s = services.clone();
    def!(&mut m, "ask", move |ctx: Ctx,
                              system: ImmutableString,
                              prompt: ImmutableString,
                              opts: Map|
          -> Res<String> {
        chat(
            &s,
            &ctx,
            ask_messages(&system, &prompt),
            params(&ctx, &opts)?,
        )
    });
    let s = services;
    def!(&mut m, "ask", move |ctx: Ctx,
                              system: ImmutableString,
                              prompt: ImmutableString|
          -> Res<String> {
        chat(
            &s,
            &ctx,
            ask_messages(&system, &prompt),
            params(&ctx, &Map::new())?,
        )
    });
    m
}

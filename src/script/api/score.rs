//! `score`: the reward functions of [`crate::score`] by name (`rouge-1`, `rouge-l:p`,
//! `relevance`, `diff`, `float_diff`, `date`, …).

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Module};

use super::fail;
use crate::score::{MAX_SCORED_BYTES, RewardFn};
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

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services;
    def!(&mut m, "reward", move |name: ImmutableString,
                                 reference: ImmutableString,
                                 completion: ImmutableString|
          -> Res<f64> {
        reward(&s, &name, &reference, &completion)
    });
    def!(&mut m, "names", || -> Array {
        RewardFn::NAMES.iter().map(|n| Dynamic::from(*n)).collect()
    });
    m
}

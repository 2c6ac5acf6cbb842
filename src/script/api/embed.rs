//! `embed`: sentence embeddings and cosine similarity.

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Module};

use super::fail;
use crate::embed::cosine;
use crate::script::services::Services;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn vectors(services: &Services, texts: &[&str]) -> Res<Vec<Vec<f32>>> {
    let embedder = services
        .embedder
        .get()
        .map_err(|e| fail(format!("embed: {e}")))?;
    embedder
        .embed(texts)
        .map_err(|e| fail(format!("embed: {e}")))
}

fn floats(a: &Array) -> Res<Vec<f32>> {
    a.iter()
        .map(|v| {
            v.as_float()
                .map(|f| f as f32)
                .map_err(|_| fail("embed::cosine takes arrays of floats"))
        })
        .collect()
}

pub(super) fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    def!(
        &mut m,
        "vector",
        move |text: ImmutableString| -> Res<Array> {
            let v = vectors(&s, &[text.as_str()])?.remove(0);
            Ok(v.into_iter()
                .map(|x| Dynamic::from_float(x.into()))
                .collect())
        }
    );
    let s = services;
    def!(&mut m, "similarity", move |a: ImmutableString,
                                     b: ImmutableString|
          -> Res<f64> {
        let v = vectors(&s, &[a.as_str(), b.as_str()])?;
        Ok(cosine(&v[0], &v[1]).into())
    });
    def!(&mut m, "cosine", |a: Array, b: Array| -> Res<f64> {
        let (a, b) = (floats(&a)?, floats(&b)?);
        if a.len() != b.len() {
            return Err(fail(format!(
                "embed::cosine: vectors of different lengths ({} and {})",
                a.len(),
                b.len()
            )));
        }
        Ok(cosine(&a, &b).into())
    });
    m
}

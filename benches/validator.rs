//! Validator step overhead: the time `Validator::step` takes besides LLM generation and
//! the network.
//!
//! Set-up: an embedded chain (1 s blocks), 50 miners (SN1's default sample size) on
//! 127.0.0.1 running the model-free echo, weak and phrase strategies, and a script root
//! whose one task and persona call no model: the task draws a 60-word query and a
//! 120-word reference from a word list with the step's RNG, the persona's challenge is
//! the query itself. Rewards are rouge-1 0.5 + diff 0.5 with a rouge-1 penalty 0.5
//! (model-free; `relevance` would add an embedding pass).
//!
//! Measured per step (criterion's `iter_custom`): the step's wall time minus its
//! dendrite query time (`StepEvent::query_s`: signing 50 requests, HTTP on loopback and
//! the miners' answers). What remains is the overhead: reading the metagraph from the
//! embedded chain, picking the task, running the task and persona scripts, sampling
//! uids, building the synapse, scoring 50 completions, the moving-average update,
//! saving the state atomically (with fsync) and appending the event line. A second
//! benchmark reports whole steps, loopback query included.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use neuron::chain::{Chain, RAO_PER_TAO};
use neuron::config::{BlacklistConfig, Config};
use neuron::prompting::contract::PromptingContracts;
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters};
use neuron::prompting::validator::Validator;
use neuron::script::{HostConfig, ScriptHost, Services};
use neuron::wallet::Keypair;

const MINERS: usize = 50;

const TASK: &str = r#"
const NAME = "bench";
const WEIGHT = 1.0;
const REWARDS = #{ "rouge-1": 0.5, "diff": 0.5 };
const PENALTIES = #{ "rouge-1": 0.5 };

fn words() {
    ["the", "river", "flows", "never", "same", "water", "fire", "change", "logos",
     "opposites", "harmony", "war", "father", "of", "all", "things", "soul", "sea",
     "earth", "day", "night", "road", "up", "down", "is", "one", "cold", "warm",
     "wisdom", "sleep", "wake", "time", "a", "child", "playing", "kingdom"]
}

fn text(ctx, n) {
    let w = words();
    let out = ctx.rng.choice(w);
    for i in 1..n { out += " " + ctx.rng.choice(w); }
    out
}

fn generate(ctx) {
    #{ query: text(ctx, 60), reference: text(ctx, 120), topic: "bench", subtopic: "overhead" }
}
"#;

const PERSONA: &str = r#"
fn persona(ctx) { #{ mood: ctx.rng.choice(["curious", "tired"]), tone: "casual" } }
fn challenge(ctx, task, persona) { task.query }
"#;

/// Writes the model-free script root: the task, the persona and the miner strategies.
fn script_root(root: &Path) {
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("tasks/bench.rhai", TASK);
    write("personas/human.rhai", PERSONA);
    for strategy in ["echo", "weak", "phrase"] {
        let rel = format!("scripts/miners/{strategy}.rhai");
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel));
        write(&rel, &text.unwrap());
    }
}

/// A validator with a permit and its miners, all on a fresh embedded chain in `dir`.
async fn subnet(dir: &Path) -> (Validator, LocalSubnet) {
    let root = dir.join("scripts");
    script_root(&root);
    let scripts = ScriptHost::new(
        HostConfig::new(&root),
        Services::standard(),
        PromptingContracts,
    )
    .unwrap();
    let mut subnet = LocalSubnet::open(
        &dir.join("chain"),
        Duration::from_secs(1),
        Keypair::from_uri("//BenchOwner").unwrap(),
        demo_hyperparameters(),
        1_000_000 * RAO_PER_TAO,
    )
    .await
    .unwrap();
    let hotkey = Keypair::from_uri("//BenchValidator").unwrap();
    subnet
        .add_validator(&hotkey, 10_000 * RAO_PER_TAO)
        .await
        .unwrap();
    for index in 0..MINERS {
        let strategy = ["echo", "weak", "phrase"][index % 3];
        let miner = Keypair::from_uri(&format!("//BenchMiner{index}")).unwrap();
        subnet
            .serve_miner(&miner, strategy, &scripts, &BlacklistConfig::default())
            .await
            .unwrap();
    }
    subnet.hand_out_permits().await.unwrap();
    let netuid = subnet.netuid();
    let mut config = Config {
        netuid,
        ..Config::default()
    };
    config.scripts.root = vec![root];
    config.scripts.no_shipped = true;
    config.neuron.sample_size = MINERS;
    config.neuron.timeout = 10.0;
    config.neuron.seed = Some(1);
    config.neuron.epoch_length = u64::MAX / 2; // weights once, in the warm-up
    config.neuron.full_path = Some(dir.join("validator"));
    let chain: Arc<dyn Chain> = Arc::new(subnet.chain().clone());
    (
        Validator::new(config, chain, hotkey, scripts).unwrap(),
        subnet,
    )
}

fn validator_step(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut validator, miners) = runtime.block_on(subnet(dir.path()));
    let mut group = c.benchmark_group("validator_step");
    // Seconds in the task and persona scripts, in scoring and in the rest, and steps.
    let mut parts = (0.0, 0.0, 0.0, 0u64);
    group.bench_function("overhead_excluding_query", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let event = validator.step().await.expect("step");
                    let overhead = start
                        .elapsed()
                        .saturating_sub(Duration::from_secs_f64(event.query_s));
                    assert!(event.responses.iter().all(|r| r.status_code == 200));
                    parts.0 += event.generate_s;
                    parts.1 += event.score_s;
                    parts.2 += overhead.as_secs_f64() - event.generate_s - event.score_s;
                    parts.3 += 1;
                    total += overhead;
                }
                total
            })
        })
    });
    group.bench_function("whole_step_loopback", |b| {
        b.iter(|| runtime.block_on(validator.step()).expect("step"))
    });
    group.finish();
    let n = parts.3.max(1) as f64 * 1e-3;
    eprintln!(
        "overhead parts, mean ms per step over {} steps: task+persona scripts {:.3}, scoring {:.3}, rest (chain read, uid sampling, state save, event) {:.3}",
        parts.3,
        parts.0 / n,
        parts.1 / n,
        parts.2 / n
    );
    runtime.block_on(miners.shutdown());
}

criterion_group!(benches, validator_step);
criterion_main!(benches);

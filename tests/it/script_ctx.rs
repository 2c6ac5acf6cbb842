//! `ctx.metagraph` inside a validator: the hooks of `scripts/validator.rhai` see the
//! step's metagraph rows (the rows `select_uids` receives as its argument), on the real
//! embedded chain. The miners do not serve (no model, no axon): only the hooks matter.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use neuron::chain::{Chain, RAO_PER_TAO};
use neuron::config::Config;
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters};
use neuron::prompting::script_host;
use neuron::prompting::validator::Validator;
use neuron::wallet::Keypair;

const TASK: &str = r#"const NAME = "say"; const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 }; const PENALTIES = #{};
fn generate(ctx) { #{ query: "q", reference: "q" } }
"#;
const PERSONA: &str = "fn persona(ctx) { #{} }\nfn challenge(ctx, task, persona) { task.query }\n";

/// Both hooks read `ctx.metagraph`: `select_uids` queries its last row alone (the default
/// would query `k` = 2 miners) and `update_scores` scores each row by its uid, 1 for
/// this validator's own hotkey.
const HOOKS: &str = r#"
fn select_uids(ctx, metagraph, k) {
    if ctx.metagraph.len() != metagraph.len() {
        throw `ctx.metagraph has ${ctx.metagraph.len()} rows, the metagraph ${metagraph.len()}`;
    }
    [ctx.metagraph[ctx.metagraph.len() - 1].uid]
}
fn update_scores(ctx, scores, rewards) {
    let me = chain::hotkey();
    ctx.metagraph.map(|row| if row.hotkey == me { 1.0 } else { row.uid.to_float() / 10.0 })
}
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_hooks_see_the_steps_metagraph_in_ctx() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("scripts");
    write(&root, "tasks/say.rhai", TASK);
    write(&root, "personas/human.rhai", PERSONA);
    write(&root, "scripts/validator.rhai", HOOKS);

    let owner = Keypair::from_uri("//Owner").unwrap();
    let subnet = LocalSubnet::open(
        &dir.path().join("chain"),
        Duration::from_millis(100),
        owner,
        demo_hyperparameters(),
        1_000 * RAO_PER_TAO,
    )
    .await
    .unwrap();
    let validator = Keypair::from_uri("//Validator").unwrap();
    for hotkey in [
        validator.clone(),
        Keypair::from_uri("//Miner0").unwrap(),
        Keypair::from_uri("//Miner1").unwrap(),
    ] {
        subnet.register(&hotkey).await.unwrap();
    }
    let (chain, netuid) = (subnet.chain().clone(), subnet.netuid());

    let mut config = Config {
        netuid,
        ..Config::default()
    };
    config.scripts.root = vec![root];
    config.scripts.no_shipped = true;
    config.neuron.full_path = Some(dir.path().join("state"));
    config.neuron.seed = Some(7);
    config.neuron.timeout = 1.0;
    config.neuron.sample_size = 2;
    config.neuron.disable_set_weights = true;
    let scripts = script_host(&config).unwrap();
    let chain: Arc<dyn Chain> = Arc::new(chain);
    let mut validator_loop =
        Validator::new(config, Arc::clone(&chain), validator.clone(), scripts).unwrap();
    let event = validator_loop.step().await.unwrap();

    let metagraph = chain.metagraph(netuid).await.unwrap();
    let last = metagraph.neurons.last().unwrap().uid;
    let queried: Vec<u16> = event.responses.iter().map(|r| r.uid).collect();
    assert_eq!(queried, vec![last], "select_uids read ctx.metagraph");
    let want: Vec<f64> = metagraph
        .neurons
        .iter()
        .map(|n| {
            if n.hotkey == validator.ss58() {
                1.0
            } else {
                f64::from(n.uid) / 10.0
            }
        })
        .collect();
    assert_eq!(
        validator_loop.state().scores,
        want,
        "update_scores read ctx.metagraph"
    );
}

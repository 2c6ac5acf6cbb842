//! The SN1 validator on subtensor while the node goes away and comes back, against the
//! simulated node of `tests/it/support/subtensor_sim.rs` (a loopback test double serving finney
//! metadata and a recorded metagraph, not a live chain): steps keep scoring with the
//! last metagraph while the node is down, setting weights fails meanwhile, and the first
//! step after the node returns sets them, signed by the validator's hotkey.

use std::sync::Arc;
use std::time::Duration;

use crate::support::subtensor_sim::{Outcome, SimNode};
use neuron::chain::subtensor::{SubtensorChain, SubtensorOptions, WaitFor};
use neuron::config::Config;
use neuron::prompting::validator::Validator;
use neuron::wallet::Keypair;

/// A task that needs no model (a fixed question, every completion rewarded 1) and a
/// persona that asks the query as is.
fn write_scripts(root: &std::path::Path) {
    for dir in ["tasks", "personas"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(
        root.join("tasks/fixed.rhai"),
        r#"
const NAME = "fixed";
const WEIGHT = 1.0;
const REWARDS = #{ "rouge": 1.0 };
const PENALTIES = #{};
fn generate(ctx) { #{ query: "What is two plus two?", reference: "four" } }
fn reward(ctx, task, completions) {
    let out = [];
    for c in completions { out.push(1.0); }
    out
}
"#,
    )
    .unwrap();
    std::fs::write(
        root.join("personas/human.rhai"),
        r#"
fn persona(ctx) { #{ mood: "curious" } }
fn challenge(ctx, task, persona) { task.query }
"#,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_scores_while_the_node_is_away_and_sets_weights_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    write_scripts(dir.path());
    // The default netuid, 1, is the recorded metagraph's.
    let mut config = Config::default();
    config.scripts.root = vec![dir.path().to_path_buf()];
    config.scripts.no_shipped = true;
    config.neuron.full_path = Some(dir.path().join("state"));
    config.neuron.dont_save_events = true;
    config.neuron.timeout = 0.5;
    config.neuron.epoch_length = 0;
    config.neuron.seed = Some(1);
    config.neuron.version_key = 2013;
    let scripts = neuron::prompting::script_host(&config).expect("scripts load");

    let mut node = SimNode::start().await;
    let backoff = Duration::from_millis(300);
    let chain = SubtensorChain::connect(
        "sim",
        Some(&node.url()),
        SubtensorOptions {
            wait_for: WaitFor::Inclusion,
            tx_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            backoff_initial: backoff,
            backoff_max: backoff,
        },
    )
    .await
    .unwrap();
    // Alice is uid 0 of the recorded metagraph, with a validator permit; uid 2 serves.
    let hotkey = Keypair::from_uri("//Alice").unwrap();
    let mut validator = Validator::new(config, Arc::new(chain), hotkey.clone(), scripts).unwrap();

    // Node up; the chain refuses this first setting (rate limit), so weights stay due.
    node.push_outcome(Outcome::Fail("SettingWeightsTooFast"));
    let first = validator.step().await.expect("step with the node up");
    assert_eq!(first.responses.len(), 1, "uid 2 is the one serving miner");
    assert_eq!(first.weights_set_at, None);
    assert_eq!(node.received().len(), 1);

    // Node down: the step still queries and scores, with the last metagraph; setting
    // weights fails without reaching any node.
    node.stop().await;
    let away = validator.step().await.expect("step while the node is down");
    assert_eq!(away.responses.len(), 1);
    assert_eq!(away.weights_set_at, None);
    assert_eq!(validator.state().step, 2);

    // Node back: once the backoff has passed, the next step sets the weights.
    node.restart().await;
    tokio::time::sleep(backoff + Duration::from_millis(100)).await;
    let back = validator
        .step()
        .await
        .expect("step after the node returned");
    let block = back
        .weights_set_at
        .expect("weights set once the node is back");
    assert_eq!(block, u64::from(node.head()));
    let received = node.received();
    assert_eq!(received.len(), 2);
    let set = &received[1];
    assert_eq!(
        (set.pallet.as_str(), set.call.as_str()),
        ("SubtensorModule", "set_weights")
    );
    assert_eq!(set.signer, hotkey.public());
    assert!(set.signature_valid);
    // One miner scored, on a subnet of 3 whose MinAllowedWeights is larger: as the
    // SDK's `process_weights_for_netuid` would, the validator sends uniform weights over
    // every uid (one weight alone is refused by subtensor's length check).
    assert_eq!(
        set.args.to_string(),
        "{ netuid: 1, dests: (0, 1, 2), weights: (65535, 65535, 65535), version_key: 2013 }"
    );
}

//! The validator under failure, on the real embedded chain with real miner axons on
//! 127.0.0.1: a `neuron validator` process killed with SIGKILL and restarted, a miner
//! that never answers, task scripts broken mid-run or failing at run time, a chain that
//! goes away, concurrent forwards, the optional hooks of `scripts/validator.rhai`
//! (honoured when valid, the default when not) and the `chain`/`dendrite` script
//! modules, inside a validator and inside the shipped proxy miner.
//!
//! The task and persona scripts are trivial (the challenge is the query, the reference
//! too, echo miners answer it back, reward 1) so no model is loaded and each test takes
//! seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::bin::{neuron_command, terminate, wait_for_child};
use crate::support::flaky_chain::FlakyChain;
use neuron::chain::sim::SimChain;
use neuron::chain::{AxonServe, Chain, ChainError, Metagraph, RAO_PER_TAO};
use neuron::config::Config;
use neuron::net::{Dendrite, VERSION_AS_INT};
use neuron::prompting::contract::{PromptingLookups, PromptingScript};
use neuron::prompting::events::StepEvent;
use neuron::prompting::hooks::PromptingHooks;
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters};
use neuron::prompting::script_host;
use neuron::prompting::state::ValidatorState;
use neuron::prompting::uids::{UidFilter, select_uids};
use neuron::prompting::validator::{Validator, ValidatorError};
use neuron::script::{NeuronLink, ReloadStatus, ScriptError, ScriptHost};
use neuron::wallet::{Keypair, Wallet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BLOCK_TIME: Duration = Duration::from_millis(100);
const SEED: u64 = 7;

/// The challenge is the query is the reference: an echo miner earns exactly 1.
const TASK: &str = r#"const NAME = "say"; const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 }; const PENALTIES = #{};
fn generate(ctx) {
    let q = `repeat after me: ${ctx.rng.int(0, 1000000)}`;
    #{ query: q, reference: q }
}
"#;
const PERSONA: &str = "fn persona(ctx) { #{} }\nfn challenge(ctx, task, persona) { task.query }\n";

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A script root with the trivial task and persona and the shipped echo and proxy
/// strategies.
fn script_root(root: &Path) {
    write(root, "tasks/say.rhai", TASK);
    write(root, "personas/human.rhai", PERSONA);
    write(
        root,
        "scripts/miners/echo.rhai",
        include_str!("../../scripts/miners/echo.rhai"),
    );
    write(
        root,
        "scripts/miners/proxy.rhai",
        include_str!("../../scripts/miners/proxy.rhai"),
    );
}

/// A local subnet: the chain file, a staked validator with a permit, miners serving
/// axons (a strategy each, or `hang`: accepts connections and never answers).
struct Subnet {
    dir: tempfile::TempDir,
    root: PathBuf,
    chain: SimChain,
    netuid: u16,
    validator: Keypair,
    miners: Vec<u16>,
    _served: LocalSubnet,
    _hanging: Vec<tokio::task::JoinHandle<()>>,
}

impl Subnet {
    async fn start(strategies: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("scripts");
        script_root(&root);
        let mut subnet = LocalSubnet::open(
            &dir.path().join("chain"),
            BLOCK_TIME,
            Keypair::from_uri("//Owner").unwrap(),
            demo_hyperparameters(),
            1_000 * RAO_PER_TAO,
        )
        .await
        .unwrap();
        let (chain, netuid) = (subnet.chain().clone(), subnet.netuid());
        let validator = Keypair::from_uri("//Validator").unwrap();
        subnet
            .add_validator(&validator, 100 * RAO_PER_TAO)
            .await
            .unwrap();
        let mut config = Config::default();
        config.scripts.root = vec![root.clone()];
        config.scripts.no_shipped = true;
        let scripts = script_host(&config).unwrap();
        // Every miner registered before any serves, so each one's first metagraph view
        // knows the others (the proxy miner queries them).
        let (mut keys, mut miners, mut hanging) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..strategies.len() {
            let key = Keypair::from_uri(&format!("//Miner{i}")).unwrap();
            miners.push(subnet.register(&key).await.unwrap());
            keys.push(key);
        }
        for (key, strategy) in keys.iter().zip(strategies) {
            if *strategy != "hang" {
                subnet
                    .serve_miner(key, strategy, &scripts, &config.blacklist)
                    .await
                    .unwrap();
                continue;
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            hanging.push(tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = listener.accept().await {
                    held.push(socket);
                }
            }));
            let serve = AxonServe {
                version: VERSION_AS_INT as u32,
                ip: addr.ip(),
                port: addr.port(),
                protocol: 4,
            };
            chain.serve_axon(key, netuid, &serve).await.unwrap();
        }
        // An epoch hands the staked validator its permit.
        subnet.hand_out_permits().await.unwrap();
        Self {
            dir,
            root,
            chain,
            netuid,
            validator,
            miners,
            _served: subnet,
            _hanging: hanging,
        }
    }

    fn chain_file(&self) -> PathBuf {
        self.dir.path().join("chain").join("chain.sqlite")
    }

    /// `neuron validator` on this subnet, as a process: the validator's hotkey from a
    /// wallet, its state in `state_dir`, `timeout` seconds per query, its stderr in
    /// `log`, and models that cannot load (the run must not load one).
    fn validator_process(&self, state_dir: &Path, timeout: &str, log: &Path) -> Command {
        let wallets = self.dir.path().join("wallets");
        Wallet::new(&wallets, "vali", "default")
            .set_hotkey(&self.validator, None, true)
            .unwrap();
        let mut cmd = neuron_command(["validator", "--subtensor.db_path"]);
        cmd.arg(self.chain_file())
            .args(["--netuid", &self.netuid.to_string()])
            .arg("--wallet.path")
            .arg(&wallets)
            .args(["--wallet.name", "vali", "--wallet.hotkey", "default"])
            .arg("--scripts.root")
            .arg(&self.root)
            .args(["--scripts.no_shipped", "true"])
            .arg("--neuron.full_path")
            .arg(state_dir)
            .args(["--neuron.seed", "7", "--neuron.timeout", timeout])
            .args(["--neuron.model_id", "/nonexistent/llm.gguf"])
            .args(["--neuron.embed_model_id", "/nonexistent/embedder"])
            .env("NEURON_HOME", self.dir.path().join("home"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        cmd
    }

    /// A validator configuration with its own state directory `name`.
    fn config(&self, name: &str) -> Config {
        let mut config = Config {
            netuid: self.netuid,
            ..Config::default()
        };
        config.scripts.root = vec![self.root.clone()];
        config.scripts.no_shipped = true;
        config.neuron.full_path = Some(self.dir.path().join(name));
        config.neuron.seed = Some(SEED);
        config.neuron.timeout = 5.0;
        config.neuron.epoch_length = 2;
        config
    }

    /// A validator over `chain` (the real one unless given) and its script host.
    fn validator(&self, config: Config, chain: Option<Arc<dyn Chain>>) -> (Validator, ScriptHost) {
        let scripts = script_host(&config).unwrap();
        let chain = chain.unwrap_or_else(|| Arc::new(self.chain.clone()));
        let validator =
            Validator::new(config, chain, self.validator.clone(), scripts.clone()).unwrap();
        (validator, scripts)
    }

    async fn metagraph(&self) -> Metagraph {
        self.chain.metagraph(self.netuid).await.unwrap()
    }
}

fn uids_of(event: &StepEvent) -> Vec<u16> {
    event.responses.iter().map(|r| r.uid).collect()
}

/// SN1's default sample for `seed` (what the validator does without hooks).
fn default_uids(metagraph: &Metagraph, self_uid: u16, k: usize, seed: u64) -> Vec<u16> {
    let filter = UidFilter {
        self_uid: Some(self_uid),
        vpermit_tao_limit: 4096.0,
        unique_coldkeys: false,
        unique_ips: false,
    };
    select_uids(metagraph, &filter, k, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// `1 − (1 − α)^n`: the score of a miner rewarded 1 in each of `n` steps, no decay.
fn ema_of_ones(alpha: f64, n: u64) -> f64 {
    (0..n).fold(0.0, |s, _| alpha + (1.0 - alpha) * s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_validator_process_resumes_with_nothing_lost() {
    let subnet = Subnet::start(&["echo", "echo"]).await;
    let state_dir = subnet.dir.path().join("state");
    let state_file = state_dir.join("state.json");
    let log = subnet.dir.path().join("validator.log");
    let validator = |extra: &[&str]| {
        let mut cmd = subnet.validator_process(&state_dir, "5", &log);
        cmd.args(["--neuron.moving_average_alpha", "0.1"])
            .args(["--neuron.decay_alpha", "0", "--neuron.epoch_length", "3"])
            .args(extra);
        cmd
    };

    // Three runs killed with SIGKILL at whatever they are doing, each once it has
    // completed two more steps; every kill leaves a whole state with every step in it.
    const KILLS: u64 = 3;
    let mut killed = ValidatorState::default();
    for _ in 0..KILLS {
        let target = killed.step + 2;
        let mut child = validator(&[]).spawn().unwrap();
        wait_for_child(&mut child, &log, &format!("step {target}"), || async {
            ValidatorState::load(&state_file).is_ok_and(|state| state.step >= target)
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        let state = ValidatorState::load(&state_file).expect("state file intact after SIGKILL");
        assert!(state.step >= target);
        for &uid in &subnet.miners {
            let score = state.scores[usize::from(uid)];
            assert!(
                (score - ema_of_ones(0.1, state.step)).abs() < 1e-12,
                "uid {uid}: {score} after {} steps: a step was lost or applied twice",
                state.step
            );
        }
        killed = state;
    }

    let status = validator(&["--steps", "2"]).status().unwrap();
    assert!(
        status.success(),
        "restart failed: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let resumed = ValidatorState::load(&state_file).unwrap();
    assert_eq!(
        resumed.step,
        killed.step + 2,
        "the restart continued the count"
    );
    for &uid in &subnet.miners {
        let score = resumed.scores[usize::from(uid)];
        assert!(
            (score - ema_of_ones(0.1, killed.step + 2)).abs() < 1e-12,
            "uid {uid}: {score}: the restart did not continue from the saved scores"
        );
    }
    assert_eq!(resumed.hotkeys, killed.hotkeys);
    assert!(resumed.last_weights_block >= killed.last_weights_block);

    // Every event line is whole; steps are unique and in order; at most one step per
    // kill (saved to the state, killed before its event was logged) is missing.
    let events = std::fs::read_to_string(state_dir.join("events.jsonl")).unwrap();
    let steps: Vec<u64> = events
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("whole JSON line");
            event["step"].as_u64().unwrap()
        })
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(steps.last(), Some(&(resumed.step - 1)));
    assert!(steps.len() as u64 >= resumed.step - KILLS, "{steps:?}");

    // SIGTERM (what systemd and pm2 send) stops a running validator as Ctrl-C does: the
    // step in flight finishes, a clean exit, every step saved, the next run resumes
    // after it.
    let mut child = validator(&[]).env("RUST_LOG", "info").spawn().unwrap();
    wait_for_child(&mut child, &log, "a step after the restart", || async {
        ValidatorState::load(&state_file).is_ok_and(|state| state.step > resumed.step)
    })
    .await;
    let status = terminate(&mut child);
    let stopped_log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "SIGTERM exit {status}:\n{stopped_log}");
    assert!(stopped_log.contains("stopping validator"), "{stopped_log}");
    let stopped = ValidatorState::load(&state_file).expect("state saved at SIGTERM");
    assert!(stopped.step > resumed.step);
    // The step in flight at SIGTERM finished whole: its event is logged too.
    let events = std::fs::read_to_string(state_dir.join("events.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["step"].as_u64(),
        Some(stopped.step - 1),
        "{stopped_log}"
    );
    let status = validator(&["--steps", "1"]).status().unwrap();
    assert!(status.success());
    assert_eq!(
        ValidatorState::load(&state_file).unwrap().step,
        stopped.step + 1,
        "the run after SIGTERM resumed at the next step"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_step_in_flight_finish_and_saves_it() {
    // A miner that never answers: every step waits out the 3 s query timeout, so a
    // SIGTERM sent right after one step is saved lands while the next is in flight.
    let subnet = Subnet::start(&["hang"]).await;
    let state_dir = subnet.dir.path().join("state");
    let state_file = state_dir.join("state.json");
    let log = subnet.dir.path().join("validator.log");
    let mut child = subnet
        .validator_process(&state_dir, "3", &log)
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    wait_for_child(&mut child, &log, "step 0 saved", || async {
        ValidatorState::load(&state_file).is_ok_and(|state| state.step >= 1)
    })
    .await;
    let before = ValidatorState::load(&state_file).unwrap().step;
    let status = terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "SIGTERM exit {status}:\n{text}");
    assert!(text.contains("finishing the step in flight"), "{text}");
    let after = ValidatorState::load(&state_file).unwrap().step;
    assert!(
        after > before,
        "the step in flight at SIGTERM was dropped (state step {before} → {after}):\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_miner_gets_408_and_zero_while_the_others_are_scored() {
    let subnet = Subnet::start(&["echo", "hang", "echo"]).await;
    let mut config = subnet.config("state");
    config.neuron.timeout = 1.0;
    let (mut validator, _) = subnet.validator(config, None);
    let event = validator.step().await.expect("the step completes");
    assert_eq!(event.responses.len(), 3);
    let hung = subnet.miners[1];
    for response in &event.responses {
        if response.uid == hung {
            assert_eq!(response.status_code, 408, "{}", response.status_message);
            assert_eq!(response.reward, 0.0);
            assert_eq!(response.completion, "");
        } else {
            assert_eq!(response.status_code, 200, "{}", response.status_message);
            assert_eq!(response.reward, 1.0);
        }
    }
    let scores = &validator.state().scores;
    assert_eq!(scores[usize::from(hung)], 0.0);
    assert!(scores[usize::from(subnet.miners[0])] > 0.09);
    assert_eq!(validator.state().step, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_broken_mid_run_keeps_the_last_good_version_serving() {
    let subnet = Subnet::start(&["echo"]).await;
    let (mut validator, scripts) = subnet.validator(subnet.config("state"), None);
    let _watcher = scripts.watch(Duration::from_millis(50)).unwrap();
    let first = validator.step().await.unwrap();
    assert_eq!(first.task, "say");

    let task_file = subnet.root.join("tasks/say.rhai");
    std::fs::write(
        &task_file,
        "const NAME = \"say\";\nfn generate(ctx) { #{ query: }\n",
    )
    .unwrap();
    let started = Instant::now();
    let rejection = loop {
        let row = scripts
            .listing()
            .into_iter()
            .find(|row| row.rel == Path::new("tasks/say.rhai"))
            .unwrap();
        if let ReloadStatus::Rejected(message) = row.status {
            break message;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(rejection.starts_with("tasks/say.rhai:2:"), "{rejection}");

    for _ in 0..2 {
        let event = validator
            .step()
            .await
            .expect("the last good version serves");
        assert_eq!(event.task, "say");
        assert!(event.responses.iter().all(|r| r.reward == 1.0));
    }
    assert_eq!(validator.state().step, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_failing_at_run_time_fails_its_step_and_the_loop_goes_on() {
    let subnet = Subnet::start(&["echo"]).await;
    write(
        &subnet.root,
        "tasks/say.rhai",
        &TASK.replace(
            "fn generate(ctx) {",
            "fn generate(ctx) {\n    if ctx.step == 1 { throw \"no task today\"; }",
        ),
    );
    let (mut validator, _) = subnet.validator(subnet.config("state"), None);
    let mut outcomes = Vec::new();
    validator
        .run(Some(3), |result| {
            outcomes.push(result.as_ref().map(|e| e.step).map_err(|e| match e {
                ValidatorError::Script(err) => err.to_string(),
                other => panic!("not a script error: {other}"),
            }))
        })
        .await;
    assert_eq!(outcomes[0], Ok(0));
    let error = outcomes[1].clone().unwrap_err();
    assert!(
        error.starts_with("tasks/say.rhai:4:")
            && error.contains("in `generate`")
            && error.contains("no task today"),
        "{error}"
    );
    assert_eq!(outcomes[2], Ok(2));
    assert_eq!(validator.state().step, 3, "the failed step counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_outage_keeps_scoring_and_weights_are_set_once_it_is_back() {
    let subnet = Subnet::start(&["echo", "echo"]).await;
    let flaky = Arc::new(FlakyChain::new(Arc::new(subnet.chain.clone())));
    flaky.reads_down.store(true, Ordering::SeqCst);
    flaky.writes_down.store(true, Ordering::SeqCst);
    let mut config = subnet.config("state");
    config.neuron.decay_alpha = 0.0;
    let (mut validator, _) = subnet.validator(config, Some(flaky.clone() as Arc<dyn Chain>));

    // Down before the first metagraph: nothing to score with, one failed step.
    let err = validator.step().await.unwrap_err();
    assert!(
        matches!(err, ValidatorError::Chain(ChainError::Connection(_))),
        "{err}"
    );
    assert_eq!(validator.state().step, 1);

    // Reads back, set_weights failing: steps score, weights wait.
    flaky.reads_down.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        let event = validator.step().await.unwrap();
        assert!(event.responses.iter().all(|r| r.reward == 1.0));
        assert_eq!(event.weights_set_at, None);
    }
    // Down altogether: steps score with the last metagraph.
    flaky.reads_down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let event = validator.step().await.unwrap();
        assert_eq!(event.responses.len(), 2);
        assert!(event.responses.iter().all(|r| r.status_code == 200));
        assert_eq!(event.weights_set_at, None);
    }
    assert_eq!(validator.state().last_weights_block, 0);
    for &uid in &subnet.miners {
        let score = validator.state().scores[usize::from(uid)];
        assert!(
            (score - ema_of_ones(0.1, 4)).abs() < 1e-12,
            "uid {uid}: {score}"
        );
    }

    // Back: the next step sets the weights it owes.
    flaky.reads_down.store(false, Ordering::SeqCst);
    flaky.writes_down.store(false, Ordering::SeqCst);
    let event = validator.step().await.unwrap();
    let block = event
        .weights_set_at
        .expect("weights set once the chain is back");
    assert_eq!(validator.state().last_weights_block, block);
    let metagraph = subnet.metagraph().await;
    let me = metagraph.uid_of(&subnet.validator.ss58()).unwrap();
    assert_eq!(metagraph.neurons[usize::from(me)].last_update, block);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwards_give_the_same_steps_and_scores_as_one_at_a_time() {
    let subnet = Subnet::start(&["echo", "echo", "echo", "hang"]).await;
    let run = |name: &str, concurrent: usize| {
        let mut config = subnet.config(name);
        config.neuron.num_concurrent_forwards = concurrent;
        config.neuron.sample_size = 2;
        config.neuron.timeout = 1.0;
        config.neuron.disable_set_weights = true;
        let (validator, _) = subnet.validator(config, None);
        async move {
            let mut validator = validator;
            let mut events = Vec::new();
            validator
                .run(Some(7), |result| {
                    events.push(result.as_ref().unwrap().clone())
                })
                .await;
            (validator.state().clone(), events)
        }
    };
    let (state_one, events_one) = run("one", 1).await;
    let (state_three, events_three) = run("three", 3).await;
    assert_eq!(state_three.step, 7);
    assert_eq!(state_three, state_one);
    let saved = ValidatorState::load(&subnet.dir.path().join("three/state.json")).unwrap();
    assert_eq!(saved, state_three, "the last batch was persisted");
    let summary = |events: &[StepEvent]| -> Vec<(u64, Vec<u16>, Vec<f64>)> {
        events
            .iter()
            .map(|e| {
                (
                    e.step,
                    uids_of(e),
                    e.responses.iter().map(|r| r.reward).collect(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&events_three), summary(&events_one));
    assert_eq!(
        events_three.iter().map(|e| e.step).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
}

fn hooks_file(root: &Path, text: &str) -> PathBuf {
    let path = root.join("scripts/validator.rhai");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_uids_hook_is_honoured_and_garbage_falls_back_to_the_default() {
    let subnet = Subnet::start(&["echo", "echo", "echo"]).await;
    let mut config = subnet.config("state");
    config.neuron.sample_size = 2;
    config.neuron.disable_set_weights = true;
    let path = hooks_file(
        &subnet.root,
        "fn select_uids(ctx, metagraph, k) { [metagraph[metagraph.len() - 1].uid, 1] }",
    );
    let (mut validator, scripts) = subnet.validator(config, None);
    let event = validator.step().await.unwrap();
    assert_eq!(uids_of(&event), vec![subnet.miners[2], 1]);

    let metagraph = subnet.metagraph().await;
    let me = metagraph.uid_of(&subnet.validator.ss58()).unwrap();
    for garbage in [
        "[1, 1]",
        "[99]",
        "[1, 2, 3]",
        "[-1]",
        "[1.5]",
        "\"uids\"",
        "throw \"no uids today\"",
        "chain::block() + [1]",
    ] {
        hooks_file(
            &subnet.root,
            &format!("fn select_uids(ctx, metagraph, k) {{ {garbage} }}"),
        );
        assert!(scripts.reload(std::slice::from_ref(&path))[0].1.is_ok());
        let event = validator
            .step()
            .await
            .expect("the step runs on the default");
        assert_eq!(
            uids_of(&event),
            default_uids(&metagraph, me, 2, event.seed),
            "{garbage}"
        );
        assert_eq!(event.responses.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_scores_hook_is_honoured_and_garbage_falls_back_to_the_default() {
    let subnet = Subnet::start(&["echo", "echo"]).await;
    let mut config = subnet.config("state");
    config.neuron.disable_set_weights = true;
    let path = hooks_file(
        &subnet.root,
        "fn update_scores(ctx, scores, rewards) { let out = scores.map(|s| 0.0); \
         for r in rewards { out[r.uid] = r.reward / 2.0 } out }",
    );
    let (mut validator, scripts) = subnet.validator(config, None);
    validator.step().await.unwrap();
    let scores = validator.state().scores.clone();
    assert_eq!(scores[0], 0.0);
    for &uid in &subnet.miners {
        assert_eq!(scores[usize::from(uid)], 0.5);
    }

    for garbage in [
        "[]",
        "scores.map(|s| -1.0)",
        "scores.map(|s| 1e308 * 10.0)",
        "scores.map(|s| \"high\")",
        "42",
        "throw \"no scores today\"",
    ] {
        hooks_file(
            &subnet.root,
            &format!("fn update_scores(ctx, scores, rewards) {{ {garbage} }}"),
        );
        assert!(scripts.reload(std::slice::from_ref(&path))[0].1.is_ok());
        let mut expected = validator.state().clone();
        validator
            .step()
            .await
            .expect("the step runs on the default");
        expected.update_scores(&subnet.miners, &[1.0, 1.0], 0.1, 0.001);
        assert_eq!(validator.state().scores, expected.scores, "{garbage}");
    }
}

/// The hooks shipped commented out in `scripts/validator.rhai`, uncommented.
fn uncommented_shipped_hooks() -> String {
    let shipped = include_str!("../../scripts/validator.rhai");
    let start = shipped.find("// fn ").expect("commented hooks");
    shipped[start..]
        .lines()
        .map(|line| {
            line.strip_prefix("// ")
                .or_else(|| line.strip_prefix("//"))
                .unwrap_or(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_hooks_are_off_and_uncommented_do_exactly_what_the_defaults_do() {
    let subnet = Subnet::start(&["echo", "echo", "echo", "echo"]).await;
    let path = hooks_file(&subnet.root, include_str!("../../scripts/validator.rhai"));
    let mut config = subnet.config("defaults");
    config.neuron.sample_size = 2;
    config.neuron.disable_set_weights = true;
    let (mut plain, scripts) = subnet.validator(config.clone(), None);
    let shipped = scripts.validator_hooks().expect("the shipped file loads");
    assert!(!shipped.hooks().select_uids && !shipped.hooks().update_scores);

    let mut plain_events = Vec::new();
    plain
        .run(Some(5), |r| plain_events.push(r.as_ref().unwrap().clone()))
        .await;

    // The same run through the uncommented hooks.
    std::fs::write(&path, uncommented_shipped_hooks()).unwrap();
    config.neuron.full_path = Some(subnet.dir.path().join("hooks"));
    let (mut hooked, scripts) = subnet.validator(config.clone(), None);
    let hooks = scripts.validator_hooks().unwrap();
    assert!(hooks.hooks().select_uids && hooks.hooks().update_scores);
    let mut hooked_events = Vec::new();
    hooked
        .run(Some(5), |r| hooked_events.push(r.as_ref().unwrap().clone()))
        .await;
    for (a, b) in plain_events.iter().zip(&hooked_events) {
        assert_eq!(uids_of(a), uids_of(b), "step {}", a.step);
    }
    assert_eq!(hooked.state().scores, plain.state().scores, "bit for bit");

    // Called directly, the hooks answer (they did not fail into the default above),
    // also with one uid per coldkey (all miners here share the owner's coldkey).
    config.neuron.query_unique_coldkeys = true;
    let scripts = script_host(&config).unwrap();
    let hooks = scripts.validator_hooks().unwrap();
    let link = NeuronLink::new(
        Arc::new(subnet.chain.clone()),
        subnet.netuid,
        Dendrite::new(subnet.validator.clone()).unwrap(),
    );
    let metagraph = subnet.metagraph().await;
    let me = metagraph.uid_of(&subnet.validator.ss58()).unwrap();
    let ctx = scripts.ctx(SEED, 0).with_link(link);
    let picked = scripts.select_uids(&hooks, &ctx, &metagraph, 2).unwrap();
    let filter = UidFilter {
        self_uid: Some(me),
        vpermit_tao_limit: 4096.0,
        unique_coldkeys: true,
        unique_ips: false,
    };
    let default = select_uids(&metagraph, &filter, 2, &mut ChaCha8Rng::seed_from_u64(SEED));
    assert_eq!(default.len(), 1);
    assert_eq!(picked, Some(default));
    let scores = vec![0.0, 0.25, 0.5, 0.75, 1.0];
    let updated = scripts
        .update_scores(&hooks, &ctx, &scores, &[1, 4], &[1.0, f64::NAN])
        .unwrap();
    let mut expected = ValidatorState {
        scores,
        ..Default::default()
    };
    expected.update_scores(&[1, 4], &[1.0, f64::NAN], 0.1, 0.001);
    assert_eq!(updated, Some(expected.scores));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_miner_answers_through_other_miners() {
    let subnet = Subnet::start(&["echo", "echo", "proxy"]).await;
    let (mut validator, _) = subnet.validator(subnet.config("state"), None);
    let event = validator.step().await.unwrap();
    let proxy = event
        .responses
        .iter()
        .find(|r| r.uid == subnet.miners[2])
        .expect("the proxy was queried");
    assert_eq!(proxy.status_code, 200, "{}", proxy.status_message);
    assert_eq!(proxy.completion, event.challenge, "the echo miners' answer");
    assert_eq!(proxy.reward, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_and_dendrite_modules_in_a_validator_and_outside_any_neuron() {
    let subnet = Subnet::start(&["echo"]).await;
    write(
        &subnet.root,
        "tasks/say.rhai",
        r#"const NAME = "probe"; const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 }; const PENALTIES = #{};
fn generate(ctx) {
    let rows = chain::metagraph();
    let miner = rows[rows.len() - 1];
    let answer = dendrite::query([miner.uid], #{ messages: ["ping"] }, 5)[0];
    let errors = [];
    try { dendrite::query([999], #{ messages: ["x"] }, 1.0); } catch (e) { errors.push(e) }
    try { dendrite::query([miner.uid], #{ text: "x" }, 1.0); } catch (e) { errors.push(e) }
    try { dendrite::query([miner.uid], #{ messages: ["x"] }, -1); } catch (e) { errors.push(e) }
    try { dendrite::query([miner.uid], #{ messages: ["x"], roles: [] }, 1); } catch (e) { errors.push(e) }
    let facts = #{
        block: chain::block(), netuid: chain::netuid(), hotkey: chain::hotkey(),
        tempo: chain::hyperparameters().tempo, rows: rows.len(), miner: miner,
        answer: answer, errors: errors,
    };
    #{ query: facts.to_json(), reference: "" }
}
"#,
    );
    let (mut validator, _) = subnet.validator(subnet.config("state"), None);
    let before = subnet.chain.current_block().await.unwrap();
    let event = validator.step().await.unwrap();
    let facts: serde_json::Value = serde_json::from_str(&event.query).unwrap();
    let metagraph = subnet.metagraph().await;
    // The block the script read lies within the step (blocks advance every 100 ms).
    let block = facts["block"].as_u64().unwrap();
    assert!(
        (before..=metagraph.block).contains(&block),
        "{before} <= {block} <= {}",
        metagraph.block
    );
    assert_eq!(facts["netuid"], subnet.netuid);
    assert_eq!(facts["hotkey"], subnet.validator.ss58());
    assert_eq!(facts["tempo"], 10);
    assert_eq!(facts["rows"], metagraph.neurons.len());
    let miner = &facts["miner"];
    let uid = subnet.miners[0];
    assert_eq!(miner["uid"], uid);
    assert_eq!(miner["hotkey"], metagraph.neurons[usize::from(uid)].hotkey);
    assert_eq!(miner["ip"], "127.0.0.1");
    assert!(miner["port"].as_u64().unwrap() > 0);
    for key in [
        "coldkey",
        "stake",
        "trust",
        "validator_trust",
        "consensus",
        "incentive",
        "dividends",
        "emission",
        "validator_permit",
        "last_update",
        "active",
    ] {
        assert!(!miner[key].is_null(), "row has {key}");
    }
    assert_eq!(facts["answer"]["status_code"], 200);
    assert_eq!(facts["answer"]["completion"], "ping");
    assert!(facts["answer"]["latency"].as_f64().unwrap() > 0.0);
    let errors: Vec<String> = facts["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].contains("uid 999 is not registered"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("unknown synapse field `text`"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("timeout must be a positive number"),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].contains("0 roles for 1 messages"),
        "{}",
        errors[3]
    );

    // The same script outside a neuron (as under `neuron task check`): a clear error.
    let scripts = script_host(&subnet.config("elsewhere")).unwrap();
    let task = scripts.task("probe").unwrap();
    let err = scripts.generate(&task, &scripts.ctx(1, 0)).unwrap_err();
    assert!(matches!(err, ScriptError::Runtime { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`chain` is only available to scripts run by a validator or miner"),
        "{err}"
    );
}

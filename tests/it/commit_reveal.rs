//! Commit-reveal through the one weight path (`chain::weights::WeightSetter`) on the
//! embedded chain, which runs commit-reveal as subtensor does: v2 hash commits revealed
//! by the hotkey inside their window (also after a restart, a `kill -9` of the
//! committing process or a disconnect), v4 timelocked commits revealed by the chain's
//! own BLS beacon, and each refusal as a typed error: a missed window, too many
//! unrevealed commits, a wrong version key, the rate limit, no permit, a corrupt
//! pending-reveal file; and the SN1 validator loop committing, restarted, revealing.
//! Real SQLite chain files, real sr25519 keys, real BLS12-381, real axons.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use neuron::chain::commit_reveal::{CommitRevealError, MAX_UNREVEALED_COMMITS, RevealStore};
use neuron::chain::sim::{SimChain, SimConfig};
use neuron::chain::weights::{CommitRevealMode, WeightSetter, WeightsError, WeightsOutcome};
use neuron::chain::{Chain, Hyperparameters, RAO_PER_TAO};
use neuron::wallet::Keypair;

use crate::support::flaky_chain::FlakyChain;
use crate::support::wait_for_block;

const BLOCK: Duration = Duration::from_millis(100);
/// Blocks per epoch: a 2 s reveal window at 100 ms blocks.
const TEMPO: u16 = 20;

fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).expect("dev key")
}

fn cr_params(version: u16) -> Hyperparameters {
    Hyperparameters {
        tempo: TEMPO,
        min_allowed_weights: 1,
        weights_rate_limit: 0,
        serving_rate_limit: 0,
        commit_reveal_weights_enabled: true,
        commit_reveal_version: version,
        commit_reveal_period: 1,
        max_allowed_validators: 1,
        ..Hyperparameters::default()
    }
}

/// A chain file in `dir` with one subnet (`params`) of a staked, permitted validator
/// (`//Val`, uid 0) and two miners (uids 1, 2).
async fn subnet(dir: &Path, params: Hyperparameters) -> (SimChain, u16, Keypair) {
    let chain = SimChain::create(&dir.join("chain.sqlite"), SimConfig { block_time: BLOCK })
        .expect("create chain");
    let owner = key("//Owner");
    let netuid = chain.create_subnet(&owner.ss58(), params).await.unwrap();
    let validator = key("//Val");
    for k in [&validator, &key("//Miner1"), &key("//Miner2")] {
        chain.faucet(&k.ss58(), 10 * RAO_PER_TAO).await.unwrap();
        chain.burned_register(k, netuid, &k.ss58()).await.unwrap();
    }
    chain
        .add_stake(&validator, &validator.ss58(), netuid, 5 * RAO_PER_TAO)
        .await
        .unwrap();
    wait_for_block(&chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();
    (chain, netuid, validator)
}

fn setter(chain: Arc<dyn Chain>, hotkey: &Keypair, netuid: u16, store: &Path) -> WeightSetter {
    WeightSetter::new(chain, Arc::new(hotkey.clone()), netuid).with_store(RevealStore::new(store))
}

/// Calls `reveal_due` until it reveals something (inside the window); panics after 30 s.
async fn reveal_when_open(setter: &WeightSetter) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = setter.reveal_due().await.unwrap().expect("a kept reveal");
        assert!(report.expired.is_empty(), "the window passed: {report:?}");
        if let Some(r) = report.revealed.first() {
            return r.receipt.block;
        }
        assert!(Instant::now() < deadline, "never revealed: {report:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs an epoch and returns the incentive of uid 1 and 2.
async fn incentives(chain: &SimChain, netuid: u16) -> (u16, u16) {
    wait_for_block(chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();
    let mg = chain.metagraph(netuid).await.unwrap();
    (mg.neurons[1].incentive, mg.neurons[2].incentive)
}

#[tokio::test]
async fn v2_commits_are_revealed_in_their_window_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(2)).await;
    let store = dir.path().join("reveals");
    let weights = setter(Arc::new(chain.clone()), &validator, netuid, &store);

    let outcome = weights.set(&[1, 2], &[0.25, 0.75], 0).await.unwrap();
    let WeightsOutcome::Committed { committed, .. } = &outcome else {
        panic!("auto on a v2 subnet commits a hash: {outcome:?}");
    };
    assert!(committed.receipt.block < *committed.window.start());
    let pending = chain.pending_commits(netuid).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].version, pending[0].hotkey.as_str()),
        (2, validator.ss58().as_str())
    );

    // Too early: kept, with the window's start.
    let early = weights.reveal_due().await.unwrap().unwrap();
    assert!(early.revealed.is_empty());
    assert_eq!(early.next_window, Some(*committed.window.start()));

    let revealed_at = reveal_when_open(&weights).await;
    assert!(
        committed.window.contains(&revealed_at),
        "{revealed_at} outside {:?}",
        committed.window
    );
    assert!(chain.pending_commits(netuid).await.unwrap().is_empty());
    assert!(
        weights.reveal_due().await.unwrap().is_none(),
        "nothing kept after the reveal"
    );
    let mg = chain.metagraph(netuid).await.unwrap();
    assert_eq!(
        mg.neurons[0].last_update, revealed_at,
        "the reveal set the weights"
    );
    let (i1, i2) = incentives(&chain, netuid).await;
    assert!(
        i2 > i1 && i1 > 0,
        "revealed weights earn incentive: {i1} {i2}"
    );
}

#[tokio::test]
async fn a_restarted_validator_reveals_the_kept_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(2)).await;
    let store = dir.path().join("reveals");
    let first = setter(Arc::new(chain.clone()), &validator, netuid, &store);
    let outcome = first.set(&[1], &[1.0], 0).await.unwrap();
    drop(first);
    // A new process: a fresh chain handle and setter over the same files.
    let reopened = SimChain::open(chain.path()).unwrap();
    let second = setter(Arc::new(reopened), &validator, netuid, &store);
    let revealed_at = reveal_when_open(&second).await;
    assert!(revealed_at > outcome.block());
}

/// The child of `kill_9_between_commit_and_reveal_keeps_the_reveal`: commits with v2
/// on the chain file named by `NEURON_CR_CHILD`, says so on stdout, then waits to be
/// killed. Not a test of its own.
#[tokio::test]
#[ignore = "run by kill_9_between_commit_and_reveal_keeps_the_reveal"]
async fn commit_then_wait_to_be_killed() {
    let Ok(dir) = std::env::var("NEURON_CR_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let chain = SimChain::open(&dir.join("chain.sqlite")).unwrap();
    let weights = setter(Arc::new(chain), &key("//Val"), 1, &dir.join("reveals"));
    let outcome = weights.set(&[1, 2], &[0.5, 0.5], 0).await.unwrap();
    println!("COMMITTED {}", outcome.block());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn kill_9_between_commit_and_reveal_keeps_the_reveal() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(2)).await;
    assert_eq!(netuid, 1);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "commit_reveal::commit_then_wait_to_be_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("NEURON_CR_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "the child exited before committing");
        if line.starts_with("COMMITTED") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(chain.pending_commits(netuid).await.unwrap().len(), 1);
    let weights = setter(
        Arc::new(chain.clone()),
        &validator,
        netuid,
        &dir.path().join("reveals"),
    );
    reveal_when_open(&weights).await;
    assert!(chain.pending_commits(netuid).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missed_window_expires_and_the_next_update_commits_again() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(2)).await;
    let weights = setter(
        Arc::new(chain.clone()),
        &validator,
        netuid,
        &dir.path().join("r"),
    );
    let WeightsOutcome::Committed { committed, .. } = weights.set(&[1], &[1.0], 0).await.unwrap()
    else {
        panic!("expected a v2 commit");
    };
    wait_for_block(&chain, committed.window.end() + 1).await;
    let report = weights.reveal_due().await.unwrap().unwrap();
    assert_eq!(report.expired.len(), 1, "{report:?}");
    assert!(report.revealed.is_empty());
    assert!(
        weights.reveal_due().await.unwrap().is_none(),
        "the expired reveal is dropped"
    );
    let again = weights.set(&[1], &[1.0], 0).await.unwrap();
    assert!(
        matches!(again, WeightsOutcome::Committed { .. }),
        "{again:?}"
    );
    reveal_when_open(&weights).await;
}

#[tokio::test]
async fn too_many_unrevealed_commits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let params = Hyperparameters {
        commit_reveal_period: 5,
        ..cr_params(2)
    };
    let (chain, netuid, validator) = subnet(dir.path(), params).await;
    let weights = setter(
        Arc::new(chain.clone()),
        &validator,
        netuid,
        &dir.path().join("r"),
    );
    for _ in 0..MAX_UNREVEALED_COMMITS {
        weights.set(&[1], &[1.0], 0).await.unwrap();
    }
    let err = weights.set(&[1], &[1.0], 0).await.unwrap_err();
    assert!(
        matches!(
            err,
            WeightsError::CommitReveal(CommitRevealError::TooManyUnrevealed { pending: 10, .. })
        ),
        "{err}"
    );
    // The chain holds the same limit.
    let refused = chain
        .commit_weights(&validator, netuid, 0, [7; 32])
        .await
        .unwrap_err();
    assert_eq!(
        refused.chain_error(),
        Some("TooManyUnrevealedCommits"),
        "{refused}"
    );
}

#[tokio::test]
async fn preflight_refusals_are_typed_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Hyperparameters {
        commit_reveal_weights_enabled: false,
        weights_rate_limit: 10,
        weights_version_key: 10,
        ..cr_params(4)
    };
    let (chain, netuid, validator) = subnet(dir.path(), plain).await;
    // Registration counts as an update: wait out the rate limit.
    let registered = chain.metagraph(netuid).await.unwrap().neurons[1].last_update;
    wait_for_block(&chain, registered + 10).await;
    let chain: Arc<dyn Chain> = Arc::new(chain);
    let store = dir.path().join("r");
    let weights = setter(Arc::clone(&chain), &validator, netuid, &store);

    let err = weights.set(&[1], &[1.0], 9).await.unwrap_err();
    assert!(
        matches!(
            err,
            WeightsError::BadVersionKey {
                ours: 9,
                required: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--neuron.version_key"), "{err}");

    let miner = setter(Arc::clone(&chain), &key("//Miner1"), netuid, &store);
    let err = miner.set(&[0, 2], &[1.0, 1.0], 10).await.unwrap_err();
    assert!(
        matches!(err, WeightsError::NoValidatorPermit { uid: 1, .. }),
        "{err}"
    );

    let stranger = setter(Arc::clone(&chain), &key("//Nobody"), netuid, &store);
    let err = stranger.set(&[1], &[1.0], 10).await.unwrap_err();
    assert!(matches!(err, WeightsError::NotRegistered { .. }), "{err}");
    assert!(err.to_string().contains("neuron chain register"), "{err}");

    let set = weights.set(&[1, 2], &[1.0, 1.0], 10).await.unwrap();
    assert!(
        matches!(set, WeightsOutcome::Set { .. }),
        "plain on a subnet without commit-reveal"
    );
    let err = weights.set(&[1, 2], &[1.0, 1.0], 10).await.unwrap_err();
    assert!(
        matches!(err, WeightsError::RateLimited { limit: 10, .. }),
        "{err}"
    );

    let forced = weights.clone().with_mode(CommitRevealMode::V2);
    let err = forced.set(&[1], &[1.0], 10).await.unwrap_err();
    assert!(matches!(err, WeightsError::CommitRevealOff { .. }), "{err}");

    let dir2 = tempfile::tempdir().unwrap();
    let (cr_chain, netuid, validator) = subnet(dir2.path(), cr_params(4)).await;
    let off =
        setter(Arc::new(cr_chain), &validator, netuid, &store).with_mode(CommitRevealMode::Off);
    let err = off.set(&[1], &[1.0], 0).await.unwrap_err();
    assert!(
        matches!(err, WeightsError::CommitRevealRequired { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_disconnect_between_commit_and_reveal_keeps_the_reveal_until_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(2)).await;
    let flaky = Arc::new(FlakyChain::new(Arc::new(chain.clone())));
    let weights = setter(flaky.clone(), &validator, netuid, &dir.path().join("r"));
    let WeightsOutcome::Committed { committed, .. } = weights.set(&[1], &[1.0], 0).await.unwrap()
    else {
        panic!("expected a v2 commit");
    };
    flaky.writes_down.store(true, Ordering::SeqCst);
    wait_for_block(&chain, *committed.window.start()).await;
    let err = weights.reveal_due().await.unwrap_err();
    assert!(
        matches!(
            err,
            WeightsError::CommitReveal(CommitRevealError::Reveal { .. })
        ),
        "{err}"
    );
    flaky.writes_down.store(false, Ordering::SeqCst);
    let revealed_at = reveal_when_open(&weights).await;
    assert!(committed.window.contains(&revealed_at));
}

#[tokio::test]
async fn a_corrupt_reveal_file_is_named_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(2)).await;
    let store_dir = dir.path().join("r");
    let weights = setter(Arc::new(chain.clone()), &validator, netuid, &store_dir);
    let store = RevealStore::new(&store_dir);
    // Another subnet's file stays as it is.
    let other = store.path(netuid + 1, &validator.ss58());
    weights.set(&[1], &[1.0], 0).await.unwrap();
    std::fs::copy(store.path(netuid, &validator.ss58()), &other).unwrap();
    let other_bytes = std::fs::read(&other).unwrap();
    let mine = store.path(netuid, &validator.ss58());
    std::fs::write(&mine, b"{ this is not json").unwrap();

    let err = weights.reveal_due().await.unwrap_err();
    assert!(
        err.to_string().contains(&mine.display().to_string()),
        "{err}"
    );
    let err = weights.set(&[1], &[1.0], 0).await.unwrap_err();
    assert!(
        matches!(
            err,
            WeightsError::CommitReveal(CommitRevealError::Corrupt { .. })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&mine).unwrap(),
        b"{ this is not json",
        "kept for inspection"
    );
    assert_eq!(std::fs::read(&other).unwrap(), other_bytes);
    assert_eq!(
        chain.pending_commits(netuid).await.unwrap().len(),
        1,
        "no commit without its reveal kept"
    );
}

#[tokio::test]
async fn v4_commits_are_revealed_by_the_local_beacon() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, netuid, validator) = subnet(dir.path(), cr_params(4)).await;
    let weights = setter(
        Arc::new(chain.clone()),
        &validator,
        netuid,
        &dir.path().join("r"),
    );
    let outcome = weights.set(&[1, 2], &[0.25, 0.75], 0).await.unwrap();
    let WeightsOutcome::Timelocked {
        receipt,
        reveal_round,
        ..
    } = outcome
    else {
        panic!("auto on a v4 subnet commits timelocked weights: {outcome:?}");
    };
    // One beacon round per block: the round is the reveal epoch's first block + 3.
    let schedule_epoch_len = u64::from(TEMPO);
    assert!(
        reveal_round > receipt.block && reveal_round <= receipt.block + 2 * schedule_epoch_len + 3
    );
    let pending = chain.pending_commits(netuid).await.unwrap();
    assert_eq!(
        (pending.len(), pending[0].version, pending[0].reveal_round),
        (1, 4, reveal_round)
    );
    assert!(
        weights.reveal_due().await.unwrap().is_none(),
        "nothing for the hotkey to reveal"
    );

    wait_for_block(&chain, reveal_round).await;
    assert!(
        chain.pending_commits(netuid).await.unwrap().is_empty(),
        "revealed by the chain"
    );
    let mg = chain.metagraph(netuid).await.unwrap();
    assert!(
        mg.neurons[0].last_update >= reveal_round,
        "the reveal set the weights"
    );
    let (i1, i2) = incentives(&chain, netuid).await;
    assert!(
        i2 > i1 && i1 > 0,
        "revealed weights earn incentive: {i1} {i2}"
    );
}

/// The challenge is the query is the reference: an echo miner earns exactly 1.
const SAY_TASK: &str = r#"const NAME = "say"; const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 }; const PENALTIES = #{};
fn generate(ctx) {
    let q = `repeat after me: ${ctx.rng.int(0, 1000000)}`;
    #{ query: q, reference: q }
}
"#;

/// The SN1 validator loop on a commit-reveal v2 subnet: a step commits, the validator
/// process is replaced by a new one over the same state directory (a restart), and the
/// new one's steps reveal inside the window; the weights then earn incentive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validator_loop_commits_and_a_restarted_validator_reveals() {
    use neuron::config::Config;
    use neuron::prompting::local::LocalSubnet;
    use neuron::prompting::script_host;
    use neuron::prompting::validator::Validator;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("scripts");
    for (rel, text) in [
        ("tasks/say.rhai", SAY_TASK),
        (
            "personas/human.rhai",
            "fn persona(ctx) { #{} }\nfn challenge(ctx, task, persona) { task.query }\n",
        ),
        (
            "scripts/miners/echo.rhai",
            include_str!("../../scripts/miners/echo.rhai"),
        ),
    ] {
        std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
        std::fs::write(root.join(rel), text).unwrap();
    }
    let mut subnet = LocalSubnet::open(
        &dir.path().join("chain"),
        BLOCK,
        key("//Owner"),
        cr_params(2),
        1_000 * RAO_PER_TAO,
    )
    .await
    .unwrap();
    let (chain, netuid) = (subnet.chain().clone(), subnet.netuid());
    let validator = key("//Validator");
    subnet
        .add_validator(&validator, 100 * RAO_PER_TAO)
        .await
        .unwrap();
    let mut config = Config {
        netuid,
        ..Config::default()
    };
    config.scripts.root = vec![root.clone()];
    config.scripts.no_shipped = true;
    config.neuron.full_path = Some(dir.path().join("state"));
    config.neuron.seed = Some(1);
    config.neuron.timeout = 5.0;
    // One weight update in the test: due at the first step only.
    config.neuron.epoch_length = 100_000;
    let scripts = script_host(&config).unwrap();
    for i in 0..2 {
        let miner = key(&format!("//Miner{i}"));
        subnet.register(&miner).await.unwrap();
        subnet
            .serve_miner(&miner, "echo", &scripts, &config.blacklist)
            .await
            .unwrap();
    }
    subnet.hand_out_permits().await.unwrap();

    let shared: Arc<dyn Chain> = Arc::new(chain.clone());
    let mut first = Validator::new(
        config.clone(),
        Arc::clone(&shared),
        validator.clone(),
        scripts.clone(),
    )
    .unwrap();
    let event = first.step().await.unwrap();
    let committed_at = event.weights_set_at.expect("the first step commits");
    let pending = chain.pending_commits(netuid).await.unwrap();
    assert_eq!((pending.len(), pending[0].version), (1, 2), "{pending:?}");
    drop(first);

    let mut second = Validator::new(config, shared, validator.clone(), scripts).unwrap();
    assert_eq!(
        second.state().last_weights_block,
        committed_at,
        "state survived"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !chain.pending_commits(netuid).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restarted validator never revealed"
        );
        let event = second.step().await.unwrap();
        assert_eq!(event.weights_set_at, None, "not due again");
    }
    let mg = chain.metagraph(netuid).await.unwrap();
    let me = mg.uid_of(&validator.ss58()).unwrap();
    assert!(
        mg.neurons[usize::from(me)].last_update > committed_at,
        "revealed weights set"
    );
    wait_for_block(&chain, chain.current_block().await.unwrap() + 1).await;
    chain.run_epoch_now(netuid).await.unwrap();
    let mg = chain.metagraph(netuid).await.unwrap();
    let earned = mg.neurons.iter().filter(|n| n.incentive > 0).count();
    assert_eq!(earned, 2, "both echo miners earn: {:?}", mg.neurons);
}

/// `neuron local --commit-reveal v2|v4`: a whole subnet whose validator commits (hashes
/// or timelocked payloads) and whose weights are revealed (by the validator inside the
/// window, however long its steps take; by the chain's beacon) and reach incentive.
#[test]
fn neuron_local_runs_a_subnet_with_commit_reveal() {
    for version in ["v2", "v4"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("run");
        let mut cmd = crate::support::bin::neuron_command([
            "local",
            "--commit-reveal",
            version,
            "--steps",
            "8",
            "--miners",
            "2",
            "--strategies",
            "echo,phrase",
            "--neuron.tasks",
            "math",
            "--neuron.max_tokens",
            "16",
            "--block-time",
            "0.3",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        cmd.env("RUST_LOG", "neuron::chain=info");
        let out = crate::support::bin::run(cmd);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        let table = crate::support::succeeded(out);
        let committed = format!("weights committed (commit-reveal {version}");
        assert!(log.contains(&committed), "{version}: {log}");
        let revealed = match version {
            "v2" => "weights revealed (commit-reveal v2)",
            _ => "timelocked weights revealed",
        };
        assert!(log.contains(revealed), "{version}: {log}");
        // echo (uid 1) answers the math challenge back and earns more than phrase; the
        // incentive comes from revealed weights only. The final table is the last one
        // (piped, the run also prints one per epoch).
        let echo = table
            .lines()
            .rfind(|l| l.starts_with("| 1 ") && l.contains("echo"))
            .unwrap_or_else(|| panic!("{version}: no echo row:\n{table}"));
        let incentive: f64 = echo
            .split('|')
            .nth(5)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("{version}: {echo}"));
        assert!(
            incentive > 0.0,
            "{version}: no incentive after reveals:\n{table}\n{log}"
        );
    }
}

//! `neuron replay` on events recorded by a real validator run: a short `neuron local`
//! subnet (real models, real axons on 127.0.0.1, the embedded chain) records its steps;
//! replaying them with the unchanged scripts reproduces every reward and the
//! validator's own scores, replaying with edited `REWARDS` changes them, and bad input
//! (malformed lines, deleted tasks, failing reward hooks, empty files) gets clear
//! answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::bin::neuron;
use crate::support::succeeded;

use neuron::config::Config;
use neuron::prompting::contract::PromptingContracts;
use neuron::prompting::events::{EventsError, ResponseEvent, StepEvent};
use neuron::prompting::local::{self, LocalOptions};
use neuron::prompting::replay::{
    MalformedLines, ReplayError, ReplayOptions, StepOutcome, TaskScripts, replay,
};
use neuron::prompting::state::{ScoreUpdate, ValidatorState};
use neuron::score::RewardSpec;
use neuron::script::{HostConfig, ScriptHost, Services};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the shipped scripts plus the example task with its own `reward` hook.
fn script_root(dir: &Path) -> PathBuf {
    let root = dir.join("scripts-root");
    for sub in ["tasks", "personas", "tools", "scripts"] {
        copy_dir(&Path::new(REPO).join(sub), &root.join(sub));
    }
    std::fs::copy(
        Path::new(REPO).join("examples/custom_task.rhai"),
        root.join("tasks/article_trivia.rhai"),
    )
    .unwrap();
    root
}

/// A script host over `root`, with short generations (the persona's challenge too).
fn host(root: &Path) -> ScriptHost {
    let mut config = HostConfig::new(root);
    for key in ["max_tokens", "challenge_max_tokens"] {
        config
            .config
            .insert(key.into(), rhai::Dynamic::from(24 as rhai::INT));
    }
    config.config.insert(
        "wiki_mode".into(),
        rhai::Dynamic::from("offline".to_string()),
    );
    ScriptHost::new(config, Services::standard(), PromptingContracts).expect("scripts load")
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn options(config: &Config, malformed: MalformedLines) -> ReplayOptions {
    ReplayOptions {
        scores: ScoreUpdate {
            alpha: config.neuron.moving_average_alpha,
            decay: config.neuron.decay_alpha,
        },
        malformed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reproduces_recorded_rewards_and_sees_edited_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = script_root(dir.path());
    let mut config = Config::default();
    config.scripts.root = vec![root.clone()];
    config.scripts.no_shipped = true;
    config.neuron.timeout = 30.0;
    config.neuron.epoch_length = 2;
    config.neuron.max_tokens = 24;
    let data_dir = dir.path().join("run");
    // One qa step (LLM query and reference, relevance reward), then the validator
    // resumes for one article_trivia step (its own reward hook): one events log.
    let mut recorded: Vec<StepEvent> = Vec::new();
    for task in ["qa", "article_trivia"] {
        config.neuron.tasks = vec![task.into()];
        let run = LocalOptions {
            data_dir: data_dir.clone(),
            miners: 3,
            strategies: vec!["echo".into(), "weak".into(), "phrase".into()],
            validators: 1,
            steps: 1,
            seed: 7,
            block_time: Duration::from_millis(200),
            config: config.clone(),
        };
        let report = local::run(&run, host(&root), |_| {})
            .await
            .expect("local run");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        recorded.extend(report.events);
    }
    let tasks: Vec<&str> = recorded.iter().map(|e| e.task.as_str()).collect();
    assert_eq!(tasks, ["qa", "article_trivia"]);
    assert!(
        recorded
            .iter()
            .flat_map(|e| &e.responses)
            .any(|r| r.reward > 0.0),
        "some miner earned a reward"
    );
    let state_dir = data_dir.join("validator0");

    // (a) Unchanged scripts, a fresh host (as a separate process would have): every
    // reward reproduced, and the recorded side's weights are the validator's own.
    let unchanged = replay(
        &state_dir,
        &host(&root),
        &TaskScripts::Rotation,
        &options(&config, MalformedLines::Fail),
    )
    .expect("replay");
    assert_eq!(unchanged.steps.len(), recorded.len());
    for (step, event) in unchanged.steps.iter().zip(&recorded) {
        let StepOutcome::Rescored(responses) = &step.outcome else {
            panic!("step {} not re-scored: {:?}", step.step, step.outcome);
        };
        assert_eq!(responses.len(), event.responses.len());
        for (replayed, original) in responses.iter().zip(&event.responses) {
            assert_eq!(replayed.uid, original.uid);
            assert!(
                replayed.rescored.to_bits() == original.reward.to_bits(),
                "step {} uid {}: recorded {} re-scored {}",
                event.step,
                original.uid,
                original.reward,
                replayed.rescored
            );
        }
    }
    assert_eq!(unchanged.changed_responses(), 0);
    let validator = ValidatorState::load(&state_dir.join("state.json")).unwrap();
    let weights = validator.normalized_weights();
    assert!(!unchanged.miners.is_empty());
    for miner in &unchanged.miners {
        let expected = weights[usize::from(miner.uid)];
        assert!(
            miner.recorded_weight == expected && miner.rescored_weight == expected,
            "uid {}: validator weight {expected}, replay {} / {}",
            miner.uid,
            miner.recorded_weight,
            miner.rescored_weight
        );
    }

    // (b) Edited REWARDS (qa: diff only) and an edited reward hook (article_trivia).
    let edited = dir.path().join("edited-root");
    copy_dir(&root, &edited);
    edit(
        &edited.join("tasks/qa.rhai"),
        r#"const REWARDS = #{ "rouge-1": 0.5, "relevance": 0.5 };"#,
        r#"const REWARDS = #{ "diff": 1.0 };"#,
    );
    edit(
        &edited.join("tasks/article_trivia.rhai"),
        "0.7 * exact + 0.3 * score",
        "0.2 * exact + 0.8 * score",
    );
    let changed = replay(
        &state_dir,
        &host(&edited),
        &TaskScripts::Rotation,
        &options(&config, MalformedLines::Fail),
    )
    .expect("replay with edited scripts");
    assert!(changed.changed_responses() > 0, "edited rewards differ");
    let qa_spec = RewardSpec::new([("diff", 1.0)], [("echo", 0.5)]).unwrap();
    for (step, event) in changed.steps.iter().zip(&recorded) {
        let StepOutcome::Rescored(responses) = &step.outcome else {
            panic!("step {} not re-scored", step.step);
        };
        for (replayed, original) in responses.iter().zip(&event.responses) {
            assert_eq!(
                replayed.recorded, original.reward,
                "recorded side untouched"
            );
        }
        if event.task == "qa" {
            let completions: Vec<&str> = event
                .responses
                .iter()
                .map(|r| r.completion.as_str())
                .collect();
            let expected = qa_spec
                .score(&event.reference, &event.challenge, &completions, None)
                .unwrap();
            let got: Vec<f64> = responses.iter().map(|r| r.rescored).collect();
            let want: Vec<f64> = expected.iter().map(|b| b.total).collect();
            assert_eq!(got, want, "qa re-scored with the edited REWARDS");
        }
    }
    // `--tasks DIR` scores with the edited task files under the original root.
    let original = host(&root);
    let from_dir = replay(
        &state_dir,
        &original,
        &TaskScripts::from_dir(&original, &edited.join("tasks")).unwrap(),
        &options(&config, MalformedLines::Fail),
    )
    .unwrap();
    assert_eq!(from_dir.steps, changed.steps);
    assert_eq!(from_dir.miners, changed.miners);

    // The command line, as a validator runs it.
    let events = state_dir.join("events.jsonl");
    let events = events.to_str().unwrap();
    let same = succeeded(neuron([
        "replay",
        events,
        "--scripts",
        root.to_str().unwrap(),
    ]));
    assert!(
        same.contains("2 steps from") && same.contains("0 not reproduced exactly"),
        "{same}"
    );
    assert!(same.contains("new weight"), "{same}");
    let other = succeeded(neuron([
        "replay",
        events,
        "--scripts",
        root.to_str().unwrap(),
        "--tasks",
        edited.join("tasks").to_str().unwrap(),
    ]));
    let line = format!("{} not reproduced exactly", changed.changed_responses());
    assert!(other.contains(&line), "{other}");
}

/// A recorded step of `task` whose reference is "42", answered "42", "41" and "".
fn event(step: u64, task: &str) -> StepEvent {
    let response = |uid: u16, completion: &str| ResponseEvent {
        uid,
        hotkey: format!("hotkey{uid}"),
        completion: completion.into(),
        status_code: 200,
        status_message: "Success".into(),
        latency_s: 0.01,
        logprobs: Vec::new(),
        reward: 0.0,
        components: Vec::new(),
    };
    StepEvent {
        step,
        block: 10 + step,
        seed: 99 + step,
        task: task.into(),
        persona: serde_json::json!({}),
        query: "What is six times seven?".into(),
        challenge: "six times seven?".into(),
        reference: "42".into(),
        task_fields: serde_json::json!({ "query": "What is six times seven?", "reference": "42" }),
        responses: vec![response(1, "42"), response(2, "41"), response(3, "")],
        generate_s: 0.0,
        query_s: 0.0,
        score_s: 0.0,
        weights_set_at: None,
    }
}

fn line(event: &StepEvent) -> String {
    serde_json::to_string(event).unwrap() + "\n"
}

/// A script root with two model-free tasks: `exact` (diff against the reference) and
/// `thrower` (a reward hook that fails).
fn small_root(dir: &Path) -> PathBuf {
    let root = dir.join("small-root");
    std::fs::create_dir_all(root.join("tasks")).unwrap();
    std::fs::write(
        root.join("tasks/exact.rhai"),
        r#"const NAME = "exact";
const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 };
const PENALTIES = #{};
fn generate(ctx) { #{ query: "What is six times seven?", reference: "42" } }
"#,
    )
    .unwrap();
    std::fs::write(
        root.join("tasks/thrower.rhai"),
        r#"const NAME = "thrower";
const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 };
const PENALTIES = #{};
fn generate(ctx) { #{ query: "q", reference: "r" } }
fn reward(ctx, task, completions) { throw "reward hook broke"; }
"#,
    )
    .unwrap();
    root
}

#[test]
fn bad_input_gets_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let root = small_root(dir.path());
    let scripts = host(&root);
    let config = Config::default();
    let fail = options(&config, MalformedLines::Fail);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let events = state.join("events.jsonl");

    // A malformed line (and a line cut short by a crash) is an error naming file and
    // line, or skipped and counted on request.
    let good = line(&event(0, "exact"));
    let cut = &line(&event(2, "exact"))[..40];
    std::fs::write(&events, format!("{good}{{not json\n\n{good}{cut}")).unwrap();
    let err = replay(&events, &scripts, &TaskScripts::Rotation, &fail).unwrap_err();
    assert!(
        matches!(
            err,
            ReplayError::Events(EventsError::Malformed { line: 2, .. })
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}:2: not a validator step event",
            events.display()
        )),
        "{message}"
    );
    let skipping = replay(
        &events,
        &scripts,
        &TaskScripts::Rotation,
        &options(&config, MalformedLines::Skip),
    )
    .unwrap();
    assert_eq!(skipping.steps.len(), 2);
    let skipped: Vec<usize> = skipping.skipped_lines.iter().map(|l| l.line).collect();
    assert_eq!(
        skipped,
        vec![2, 5],
        "blank line 3 is not an event, nor an error"
    );
    let StepOutcome::Rescored(responses) = &skipping.steps[0].outcome else {
        panic!("{:?}", skipping.steps[0].outcome);
    };
    let rewards: Vec<f64> = responses.iter().map(|r| r.rescored).collect();
    assert_eq!(rewards, vec![1.0, 0.5, 0.0], "diff against \"42\"");

    // Rotated files are read oldest first; a deleted task and a failing reward hook
    // leave their steps out of both sides, counted.
    std::fs::write(state.join("events.1.jsonl"), line(&event(0, "exact"))).unwrap();
    std::fs::write(
        &events,
        [
            line(&event(1, "deleted_task")),
            line(&event(2, "thrower")),
            line(&event(3, "exact")),
        ]
        .concat(),
    )
    .unwrap();
    let mixed = replay(&state, &scripts, &TaskScripts::Rotation, &fail).unwrap();
    let steps: Vec<u64> = mixed.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, vec![0, 1, 2, 3]);
    assert_eq!(mixed.rescored_steps(), 2);
    assert_eq!(mixed.missing_tasks().get("deleted_task"), Some(&1));
    let failures: Vec<(u64, &str)> = mixed.failures().map(|(s, e)| (s.step, e)).collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 2);
    assert!(
        failures[0].1.contains("reward hook broke"),
        "{}",
        failures[0].1
    );
    assert!(mixed.miners.iter().all(|m| m.responses == 2));
    let tasks: Vec<(&str, usize, usize)> = mixed
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t.steps, t.rescored_steps))
        .collect();
    assert_eq!(
        tasks,
        vec![("deleted_task", 1, 0), ("exact", 2, 2), ("thrower", 1, 0)]
    );
    // The miner answering "42" holds the largest weight; recorded rewards were all 0.
    let top = mixed
        .miners
        .iter()
        .max_by(|a, b| a.rescored_weight.total_cmp(&b.rescored_weight))
        .unwrap();
    assert_eq!(top.uid, 1);
    assert!(mixed.miners.iter().all(|m| m.recorded_weight == 0.0));

    // Empty files, and a directory without events files.
    std::fs::write(&events, "").unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let err = replay(&empty, &scripts, &TaskScripts::Rotation, &fail).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no recorded validator steps in"),
        "{err}"
    );
    let err = replay(&root, &scripts, &TaskScripts::Rotation, &fail).unwrap_err();
    assert!(err.to_string().contains("no events.jsonl"), "{err}");

    // `--tasks DIR` with a file that is not a task.
    let not_tasks = dir.path().join("not-tasks");
    std::fs::create_dir_all(&not_tasks).unwrap();
    std::fs::write(not_tasks.join("lib.rhai"), "fn helper() { 1 }").unwrap();
    let err = TaskScripts::from_dir(&scripts, &not_tasks).unwrap_err();
    assert!(err.to_string().contains("is not a task script"), "{err}");

    // The command line: a malformed line fails with file:line; a failing reward hook
    // prints the table and exits non-zero; a task that no longer compiles stops it.
    std::fs::write(&events, format!("{good}oops\n")).unwrap();
    let root_arg = root.to_str().unwrap();
    let out = neuron(["replay", events.to_str().unwrap(), "--scripts", root_arg]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: not a validator step event",
            events.display()
        )),
        "{stderr}"
    );
    std::fs::write(&events, line(&event(5, "thrower"))).unwrap();
    let out = neuron(["replay", events.to_str().unwrap(), "--scripts", root_arg]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("step 5 (thrower) failed to score")
            && stderr.contains("1 of 1 recorded steps"),
        "{stderr}"
    );
    std::fs::write(
        root.join("tasks/exact.rhai"),
        "const NAME = \"exact\";\nfn generate(ctx) {",
    )
    .unwrap();
    let out = neuron(["replay", events.to_str().unwrap(), "--scripts", root_arg]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("task scripts failed to load") && stderr.contains("exact.rhai"),
        "{stderr}"
    );
}

/// The validator's `update_scores` hook for [`replay_applies_the_update_scores_hook`]:
/// only the step's best reward counts (the first best, in response order); every
/// other score drops to zero. SN1's moving average would keep every rewarded miner.
const KEEP_THE_BEST: &str = r#"
fn update_scores(ctx, scores, rewards) {
    let best = rewards[0];
    for r in rewards { if r.reward > best.reward { best = r; } }
    let out = scores.map(|s| 0.0);
    out[best.uid] = best.reward;
    out
}
"#;

/// A model-free script root: the task's query is its reference and the persona's
/// challenge is the query (echo miners earn 1), the echo and phrase strategies, and
/// `scripts/validator.rhai` with [`KEEP_THE_BEST`].
fn hook_root(dir: &Path) -> PathBuf {
    let root = dir.join("hook-root");
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "tasks/say.rhai",
        r#"const NAME = "say"; const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 }; const PENALTIES = #{};
fn generate(ctx) {
    let q = `repeat after me: ${ctx.rng.int(0, 1000000)}`;
    #{ query: q, reference: q }
}
"#,
    );
    write(
        "personas/human.rhai",
        "fn persona(ctx) { #{} }\nfn challenge(ctx, task, persona) { task.query }\n",
    );
    for strategy in ["echo", "phrase"] {
        let rel = format!("scripts/miners/{strategy}.rhai");
        write(
            &rel,
            &std::fs::read_to_string(Path::new(REPO).join(&rel)).unwrap(),
        );
    }
    write("scripts/validator.rhai", KEEP_THE_BEST);
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_applies_the_update_scores_hook() {
    let dir = tempfile::tempdir().unwrap();
    let root = hook_root(dir.path());
    let mut config = Config::default();
    config.scripts.root = vec![root.clone()];
    config.scripts.no_shipped = true;
    config.neuron.timeout = 10.0;
    config.neuron.epoch_length = 2;
    let data_dir = dir.path().join("run");
    let run = LocalOptions {
        data_dir: data_dir.clone(),
        miners: 3,
        strategies: vec!["echo".into(), "phrase".into(), "echo".into()],
        validators: 1,
        steps: 4,
        seed: 11,
        block_time: Duration::from_millis(100),
        config: config.clone(),
    };
    let report = local::run(&run, host(&root), |_| {})
        .await
        .expect("local run");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.events.len(), 4);
    let state_dir = data_dir.join("validator0");
    let validator = ValidatorState::load(&state_dir.join("state.json")).unwrap();
    let weights = validator.normalized_weights();
    let nonzero = weights.iter().filter(|w| **w > 0.0).count();
    assert_eq!(nonzero, 1, "the hook kept one miner: {weights:?}");

    // Replay with the hook: the validator's weights, bit for bit, on both sides.
    let hooked = replay(
        &state_dir,
        &host(&root),
        &TaskScripts::Rotation,
        &options(&config, MalformedLines::Fail),
    )
    .expect("replay");
    assert_eq!(hooked.changed_responses(), 0);
    assert_eq!(hooked.miners.len(), 3);
    for miner in &hooked.miners {
        let expected = weights[usize::from(miner.uid)];
        assert!(
            miner.recorded_weight == expected && miner.rescored_weight == expected,
            "uid {}: validator weight {expected}, replay {} / {}",
            miner.uid,
            miner.recorded_weight,
            miner.rescored_weight
        );
    }

    // The same events without the hook (SN1's moving average) give other weights, so
    // the comparison above can fail.
    std::fs::remove_file(root.join("scripts/validator.rhai")).unwrap();
    let averaged = replay(
        &state_dir,
        &host(&root),
        &TaskScripts::Rotation,
        &options(&config, MalformedLines::Fail),
    )
    .expect("replay without the hook");
    assert!(
        averaged
            .miners
            .iter()
            .any(|m| m.rescored_weight != weights[usize::from(m.uid)]),
        "the moving average gives the hook's weights: {:?}",
        averaged.miners
    );
    assert!(
        averaged
            .miners
            .iter()
            .filter(|m| m.rescored_weight > 0.0)
            .count()
            >= 2,
        "{:?}",
        averaged.miners
    );
}

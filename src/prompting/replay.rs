//! `neuron replay`: re-scores recorded validator steps (the JSON lines of
//! `events.jsonl`) with the current, possibly edited, task scripts, and shows per miner
//! the recorded and the re-scored mean reward and the weights each would lead to.
//!
//! This is how a validator tests a reward change before going live. Re-scoring goes
//! through [`PromptingHooks::reward`], the call every validator step is scored with, in
//! the step's recorded seeded context (`ScriptHost::ctx(seed, step)`), so unchanged
//! scripts reproduce the recorded rewards exactly. Replay does not regenerate tasks or
//! challenges: it scores the challenge and task fields the step recorded. Weights come
//! from the validator's own score update ([`ValidatorState::apply_rewards`]: the
//! `update_scores` hook of `scripts/validator.rhai` when it answers validly, else the
//! moving average) in the step's context, and L1 normalisation, starting from zero
//! scores at the first recorded step. (A hook that needs the `chain` or `dendrite`
//! module fails outside a validator and falls back to the moving average, logged.)
//! Events are read with [`super::events`].
//!
//! Steps that cannot be re-scored (their task script is gone, or it fails now) are left
//! out of both sides, so the comparison is always between the same steps; they are
//! counted in the result.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::Map;

use super::contract::{PromptingLookups, PromptingScript, ScriptKind};
use super::events::{EventReader, EventsError, StepEvent, event_files};
use super::hooks::{Answer, PromptingHooks, TaskInstance};
use super::state::{ScoreUpdate, ValidatorState};
use crate::script::{Script, ScriptError, ScriptHost};

/// Errors reading recorded events or loading the task scripts to replay them with.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The recorded events could not be read (or a line is malformed and
    /// [`MalformedLines::Fail`] was asked for).
    #[error(transparent)]
    Events(#[from] EventsError),
    /// The `--tasks DIR` directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The events files hold no step at all.
    #[error("no recorded validator steps in {0}")]
    NoSteps(PathBuf),
    /// A task script of `--tasks DIR` failed to load.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// A file of `--tasks DIR` is not a task script.
    #[error("{0} is not a task script (no `generate` hook)")]
    NotATask(PathBuf),
    /// Two files of `--tasks DIR` declare the same `NAME`.
    #[error("task `{name}` is defined twice: {first} and {second}")]
    DuplicateTask {
        /// The task name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
}

/// What to do with a line that is not a step event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedLines {
    /// Stop with [`EventsError::Malformed`] naming the file and line.
    Fail,
    /// Skip it with a warning; the result lists it.
    Skip,
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The default score update (when `scripts/validator.rhai` defines no valid
    /// `update_scores`), as the validator was configured.
    pub scores: ScoreUpdate,
    /// Handling of malformed lines.
    pub malformed: MalformedLines,
}

/// The task scripts replay scores with.
#[derive(Debug, Clone)]
pub enum TaskScripts {
    /// The host's live rotation (`tasks/` under the script root).
    Rotation,
    /// Task files compiled from another directory (`--tasks DIR`), by `NAME`; tasks
    /// not there count as missing.
    Dir(BTreeMap<String, Arc<Script>>),
}

impl TaskScripts {
    /// Compiles every `.rhai` file directly in `dir` as a task (imports resolve under
    /// the host's script root). Any failure is an error: a replay against a broken
    /// edit would silently treat the task as deleted.
    pub fn from_dir(scripts: &ScriptHost, dir: &Path) -> Result<Self, ReplayError> {
        let io = |source| ReplayError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "rhai"));
        files.sort();
        let mut tasks: BTreeMap<String, Arc<Script>> = BTreeMap::new();
        for file in files {
            let script = scripts.compile(&file)?;
            if script.script_kind() != Some(ScriptKind::Task) {
                return Err(ReplayError::NotATask(file));
            }
            let name = script.name();
            if let Some(first) = tasks.get(&name) {
                return Err(ReplayError::DuplicateTask {
                    name,
                    first: first.path.clone(),
                    second: script.path.clone(),
                });
            }
            tasks.insert(name, Arc::new(script));
        }
        Ok(Self::Dir(tasks))
    }

    fn get(&self, scripts: &ScriptHost, name: &str) -> Option<Arc<Script>> {
        match self {
            Self::Rotation => scripts.task(name).ok(),
            Self::Dir(tasks) => tasks.get(name).cloned(),
        }
    }
}

/// One recorded response with its recorded and re-scored reward.
#[derive(Debug, Clone, PartialEq)]
pub struct RescoredResponse {
    /// Queried uid.
    pub uid: u16,
    /// Its hotkey at query time.
    pub hotkey: String,
    /// The reward the validator recorded.
    pub recorded: f64,
    /// The reward the current scripts give.
    pub rescored: f64,
}

/// What became of one recorded step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Re-scored: one entry per recorded response, in order.
    Rescored(Vec<RescoredResponse>),
    /// No current script has the step's task name (the task was deleted or renamed).
    TaskMissing,
    /// The current script failed to score it (the error).
    Failed(String),
}

/// One recorded step and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedStep {
    /// Events file it came from.
    pub file: PathBuf,
    /// 1-based line in that file.
    pub line: usize,
    /// The validator's step number.
    pub step: u64,
    /// Task name.
    pub task: String,
    /// Re-scored, or why not.
    pub outcome: StepOutcome,
}

/// A line that was skipped because it is not a step event.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedLine {
    /// Events file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The parse error.
    pub message: String,
}

/// Per miner (uid and hotkey): rewards over the re-scored steps and resulting weights.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerSummary {
    /// Uid.
    pub uid: u16,
    /// Hotkey (a uid whose hotkey changed gets one row per hotkey).
    pub hotkey: String,
    /// Re-scored responses of this miner.
    pub responses: usize,
    /// Mean recorded reward.
    pub recorded_mean: f64,
    /// Mean re-scored reward.
    pub rescored_mean: f64,
    /// Weight from the recorded rewards (0 for a hotkey no longer holding the uid).
    pub recorded_weight: f64,
    /// Weight from the re-scored rewards.
    pub rescored_weight: f64,
}

/// Per task: steps recorded and mean rewards over its re-scored responses.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSummary {
    /// Task name.
    pub task: String,
    /// Recorded steps of this task.
    pub steps: usize,
    /// Of those, re-scored.
    pub rescored_steps: usize,
    /// Mean recorded reward (None when nothing was re-scored).
    pub recorded_mean: Option<f64>,
    /// Mean re-scored reward.
    pub rescored_mean: Option<f64>,
}

/// Everything a replay found.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The events files read, oldest first.
    pub files: Vec<PathBuf>,
    /// Every recorded step, in order.
    pub steps: Vec<ReplayedStep>,
    /// Lines skipped as malformed ([`MalformedLines::Skip`]).
    pub skipped_lines: Vec<SkippedLine>,
    /// Per miner, by uid then hotkey.
    pub miners: Vec<MinerSummary>,
    /// Per task, by name.
    pub tasks: Vec<TaskSummary>,
}

impl Replay {
    /// Every re-scored response.
    pub fn responses(&self) -> impl Iterator<Item = &RescoredResponse> {
        self.steps.iter().flat_map(|s| match &s.outcome {
            StepOutcome::Rescored(responses) => responses.as_slice(),
            _ => &[],
        })
    }

    /// Number of steps re-scored.
    pub fn rescored_steps(&self) -> usize {
        self.count(|o| matches!(o, StepOutcome::Rescored(_)))
    }

    /// Names of recorded tasks no current script has, with their step counts.
    pub fn missing_tasks(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for step in &self.steps {
            if step.outcome == StepOutcome::TaskMissing {
                *out.entry(step.task.as_str()).or_default() += 1;
            }
        }
        out
    }

    /// Steps the current scripts failed to score, with the error.
    pub fn failures(&self) -> impl Iterator<Item = (&ReplayedStep, &str)> {
        self.steps.iter().filter_map(|s| match &s.outcome {
            StepOutcome::Failed(err) => Some((s, err.as_str())),
            _ => None,
        })
    }

    /// Re-scored responses whose reward is not bit-for-bit the recorded one.
    pub fn changed_responses(&self) -> usize {
        self.responses()
            .filter(|r| !reproduced(r.recorded, r.rescored))
            .count()
    }

    /// Largest |re-scored − recorded| (0 when nothing was re-scored).
    pub fn max_difference(&self) -> f64 {
        self.responses()
            .map(|r| (r.rescored - r.recorded).abs())
            .fold(0.0, f64::max)
    }

    fn count(&self, pred: impl Fn(&StepOutcome) -> bool) -> usize {
        self.steps.iter().filter(|s| pred(&s.outcome)).count()
    }
}

/// Whether a re-scored reward reproduces a recorded one exactly (NaN matches NaN; event
/// logs read floats back bit-exact, serde_json's `float_roundtrip`).
fn reproduced(recorded: f64, rescored: f64) -> bool {
    (recorded.is_nan() && rescored.is_nan()) || rescored == recorded
}

/// Re-scores every step recorded under `path` (a file, or a state directory with
/// rotated logs) with `tasks`, and summarises per miner and per task.
pub fn replay(
    path: &Path,
    scripts: &ScriptHost,
    tasks: &TaskScripts,
    options: &ReplayOptions,
) -> Result<Replay, ReplayError> {
    let files = event_files(path)?;
    let mut replayer = Replayer::new(scripts, tasks, options);
    for file in &files {
        replayer.read_file(file)?;
    }
    if replayer.steps.is_empty() {
        return Err(ReplayError::NoSteps(path.to_path_buf()));
    }
    Ok(replayer.finish(files))
}

/// Running sums of recorded and re-scored rewards.
#[derive(Debug, Default)]
struct Sums {
    responses: usize,
    recorded: f64,
    rescored: f64,
}

impl Sums {
    fn add(&mut self, response: &RescoredResponse) {
        self.responses += 1;
        self.recorded += response.recorded;
        self.rescored += response.rescored;
    }

    fn means(&self) -> Option<(f64, f64)> {
        (self.responses > 0).then(|| {
            let n = self.responses as f64;
            (self.recorded / n, self.rescored / n)
        })
    }
}

/// The replay in progress: both score tables and the running sums.
struct Replayer<'a> {
    scripts: &'a ScriptHost,
    tasks: &'a TaskScripts,
    options: &'a ReplayOptions,
    steps: Vec<ReplayedStep>,
    skipped_lines: Vec<SkippedLine>,
    recorded: ValidatorState,
    rescored: ValidatorState,
    hotkeys: Vec<String>,
    miners: BTreeMap<(u16, String), Sums>,
    task_steps: BTreeMap<String, (usize, usize, Sums)>,
    warned_missing: BTreeSet<String>,
}

impl<'a> Replayer<'a> {
    fn new(scripts: &'a ScriptHost, tasks: &'a TaskScripts, options: &'a ReplayOptions) -> Self {
        Self {
            scripts,
            tasks,
            options,
            steps: Vec::new(),
            skipped_lines: Vec::new(),
            recorded: ValidatorState::default(),
            rescored: ValidatorState::default(),
            hotkeys: Vec::new(),
            miners: BTreeMap::new(),
            task_steps: BTreeMap::new(),
            warned_missing: BTreeSet::new(),
        }
    }

    fn read_file(&mut self, path: &Path) -> Result<(), ReplayError> {
        for read in EventReader::open(path)? {
            match read {
                Ok((line, event)) => self.replay_step(path, line, &event),
                Err(EventsError::Malformed { path, line, source })
                    if self.options.malformed == MalformedLines::Skip =>
                {
                    tracing::warn!(
                        "{}:{line}: skipped, not a step event: {source}",
                        path.display()
                    );
                    self.skipped_lines.push(SkippedLine {
                        file: path,
                        line,
                        message: source.to_string(),
                    });
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    fn replay_step(&mut self, file: &Path, line: usize, event: &StepEvent) {
        let outcome = self.rescore(event);
        let task = self.task_steps.entry(event.task.clone()).or_default();
        task.0 += 1;
        if let StepOutcome::Rescored(responses) = &outcome {
            task.1 += 1;
            for response in responses {
                task.2.add(response);
                self.miners
                    .entry((response.uid, response.hotkey.clone()))
                    .or_default()
                    .add(response);
            }
            self.update_scores(event, responses);
        }
        self.steps.push(ReplayedStep {
            file: file.to_path_buf(),
            line,
            step: event.step,
            task: event.task.clone(),
            outcome,
        });
    }

    fn rescore(&mut self, event: &StepEvent) -> StepOutcome {
        let Some(script) = self.tasks.get(self.scripts, &event.task) else {
            if self.warned_missing.insert(event.task.clone()) {
                tracing::warn!(task = %event.task, "no current script for the recorded task; its steps are skipped");
            }
            return StepOutcome::TaskMissing;
        };
        let answers: Vec<Answer> = event
            .responses
            .iter()
            .map(|r| Answer {
                completion: r.completion.clone(),
                status_code: r.status_code,
                latency_s: r.latency_s,
                logprobs: r.logprobs.clone(),
            })
            .collect();
        match self.scripts.reward(
            &script,
            &self.scripts.ctx(event.seed, event.step),
            &task_instance(event),
            &event.challenge,
            &answers,
        ) {
            Ok(breakdowns) => StepOutcome::Rescored(
                event
                    .responses
                    .iter()
                    .zip(breakdowns)
                    .map(|(r, b)| RescoredResponse {
                        uid: r.uid,
                        hotkey: r.hotkey.clone(),
                        recorded: r.reward,
                        rescored: b.total,
                    })
                    .collect(),
            ),
            Err(err) => {
                tracing::warn!(step = event.step, task = %event.task, "re-scoring failed: {err}");
                StepOutcome::Failed(err.to_string())
            }
        }
    }

    /// The validator's update, on both tables: a uid whose hotkey changed starts from
    /// zero, then [`ValidatorState::apply_rewards`] in the step's context.
    fn update_scores(&mut self, event: &StepEvent, responses: &[RescoredResponse]) {
        for response in responses {
            let uid = usize::from(response.uid);
            if uid >= self.hotkeys.len() {
                self.hotkeys.resize(uid + 1, String::new());
            }
            self.hotkeys[uid].clone_from(&response.hotkey);
        }
        let uids: Vec<u16> = responses.iter().map(|r| r.uid).collect();
        let ctx = self.scripts.ctx(event.seed, event.step);
        for (state, rewards) in [
            (
                &mut self.recorded,
                responses.iter().map(|r| r.recorded).collect::<Vec<_>>(),
            ),
            (
                &mut self.rescored,
                responses.iter().map(|r| r.rescored).collect(),
            ),
        ] {
            state.sync_hotkeys(&self.hotkeys);
            state.apply_rewards(self.scripts, &ctx, &uids, &rewards, self.options.scores);
        }
    }

    fn finish(self, files: Vec<PathBuf>) -> Replay {
        let (recorded, rescored) = (
            self.recorded.normalized_weights(),
            self.rescored.normalized_weights(),
        );
        let weight = |weights: &[f64], uid: u16, hotkey: &str| {
            let uid = usize::from(uid);
            if self.hotkeys.get(uid).is_some_and(|h| h == hotkey) {
                weights.get(uid).copied().unwrap_or(0.0)
            } else {
                0.0
            }
        };
        let miners = self
            .miners
            .iter()
            .filter_map(|((uid, hotkey), sums)| {
                let (recorded_mean, rescored_mean) = sums.means()?;
                Some(MinerSummary {
                    uid: *uid,
                    hotkey: hotkey.clone(),
                    responses: sums.responses,
                    recorded_mean,
                    rescored_mean,
                    recorded_weight: weight(&recorded, *uid, hotkey),
                    rescored_weight: weight(&rescored, *uid, hotkey),
                })
            })
            .collect();
        let tasks = self
            .task_steps
            .iter()
            .map(|(task, (steps, rescored_steps, sums))| TaskSummary {
                task: task.clone(),
                steps: *steps,
                rescored_steps: *rescored_steps,
                recorded_mean: sums.means().map(|m| m.0),
                rescored_mean: sums.means().map(|m| m.1),
            })
            .collect();
        Replay {
            files,
            steps: self.steps,
            skipped_lines: self.skipped_lines,
            miners,
            tasks,
        }
    }
}

/// The task instance a recorded step was generated as: task, query, reference and the
/// generated map (which a task's `reward` hook reads).
fn task_instance(event: &StepEvent) -> TaskInstance {
    let fields = rhai::serde::to_dynamic(&event.task_fields)
        .ok()
        .and_then(|d| d.try_cast::<Map>())
        .unwrap_or_default();
    TaskInstance {
        task: event.task.clone(),
        query: event.query.clone(),
        reference: event.reference.clone(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduced_means_bit_exact_and_json_keeps_floats_exact() {
        assert!(reproduced(0.1 + 0.2, 0.30000000000000004));
        assert!(reproduced(f64::NAN, f64::NAN));
        assert!(!reproduced(0.5, 0.5 + f64::EPSILON));
        let value = 0.022716840842701598_f64;
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(
            serde_json::from_str::<f64>(&text).unwrap().to_bits(),
            value.to_bits()
        );
    }
}

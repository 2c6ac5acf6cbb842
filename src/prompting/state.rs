//! The validator's persistent state: step counter, per-uid moving-average scores, the
//! hotkey each score belongs to, and the block of the last weight setting.
//!
//! Saved atomically (write a temp file in the same directory, fsync, rename) after
//! every step, so a `kill -9` at any moment leaves either the old or the new state.
//!
//! [`ValidatorState::apply_rewards`] is the one way a step's rewards reach the scores,
//! used by the validator and by `neuron replay`: the `update_scores` hook of
//! `scripts/validator.rhai` when it answers validly, else SN1's moving average.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::contract::{PromptingLookups, PromptingScript};
use super::hooks::PromptingHooks;
use crate::script::{Ctx, ScriptHost};

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("validator state {path}: {source}")]
    Io {
        /// State file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file exists but is not a state file.
    #[error("validator state {path} is corrupt: {source}")]
    Corrupt {
        /// State file.
        path: PathBuf,
        /// What failed to parse.
        source: serde_json::Error,
    },
}

/// SN1's default score update: moving-average `alpha` and per-step `decay`
/// (`--neuron.moving_average_alpha`, `--neuron.decay_alpha`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreUpdate {
    /// Weight of the new reward in the moving average.
    pub alpha: f64,
    /// Subtracted from every score after each step (floored at 0).
    pub decay: f64,
}

/// A validator hook's answer: `Some` when the hook answered validly; `None` (the
/// default applies) when it is not defined, or failed (logged with the step).
pub(crate) fn hook_answer<T, E: std::fmt::Display>(
    hook: &str,
    step: u64,
    outcome: Result<Option<T>, E>,
) -> Option<T> {
    match outcome {
        Ok(answer) => answer,
        Err(err) => {
            tracing::error!(
                step,
                hook,
                "validator hook failed, using the default: {err}"
            );
            None
        }
    }
}

/// Moving-average scores and bookkeeping of one validator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidatorState {
    /// Steps completed so far.
    pub step: u64,
    /// Score per uid (index = uid).
    pub scores: Vec<f64>,
    /// Hotkey that held each uid when its score was last updated.
    pub hotkeys: Vec<String>,
    /// Block at which weights were last set (0 = never).
    pub last_weights_block: u64,
    /// Organic score per uid (index = uid): the moving average of the rewards of its
    /// answers to API requests, kept apart from `scores` and blended into the weights
    /// with a capped share ([`Self::blended_weights`]).
    #[serde(default)]
    pub organic: Vec<f64>,
}

/// The largest share organic scores may have in the weights, whatever the config says.
pub const MAX_ORGANIC_SHARE: f64 = 0.5;

impl ValidatorState {
    /// Loads the state at `path`, or a fresh state when the file does not exist.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the state atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec(self).expect("state serialises");
        crate::fsutil::write_atomic(path, &bytes, 0o600).map_err(io)?;
        Ok(())
    }

    /// Aligns the score table with the current metagraph hotkeys: grows or shrinks to
    /// `hotkeys.len()` and zeroes the score of every uid whose hotkey changed.
    pub fn sync_hotkeys(&mut self, hotkeys: &[String]) {
        self.scores.resize(hotkeys.len(), 0.0);
        self.hotkeys.resize(hotkeys.len(), String::new());
        self.organic.resize(hotkeys.len(), 0.0);
        for (uid, hotkey) in hotkeys.iter().enumerate() {
            if &self.hotkeys[uid] != hotkey {
                self.scores[uid] = 0.0;
                self.organic[uid] = 0.0;
                self.hotkeys[uid] = hotkey.clone();
            }
        }
    }

    /// SN1's update: `s = α·r + (1−α)·s` for the rewarded uids, then
    /// `s = max(s − decay, 0)` for every uid.
    pub fn update_scores(&mut self, uids: &[u16], rewards: &[f64], alpha: f64, decay: f64) {
        for (&uid, &reward) in uids.iter().zip(rewards) {
            let uid = usize::from(uid);
            if uid >= self.scores.len() {
                self.scores.resize(uid + 1, 0.0);
                self.hotkeys.resize(uid + 1, String::new());
            }
            let reward = if reward.is_finite() { reward } else { 0.0 };
            self.scores[uid] = alpha * reward + (1.0 - alpha) * self.scores[uid];
        }
        for score in &mut self.scores {
            *score = (*score - decay).max(0.0);
        }
    }

    /// Folds one step's rewards into the scores exactly as the validator does: the
    /// `update_scores` hook of `scripts/validator.rhai` (called in `ctx`, the step's
    /// context) when it is defined and its answer valid, else [`Self::update_scores`]
    /// with `default`. A failing or invalid hook is logged and the default applies.
    pub fn apply_rewards(
        &mut self,
        scripts: &ScriptHost,
        ctx: &Ctx,
        uids: &[u16],
        rewards: &[f64],
        default: ScoreUpdate,
    ) {
        if let Some(script) = scripts
            .validator_hooks()
            .filter(|s| s.hooks().update_scores)
        {
            let hooked = scripts.update_scores(&script, ctx, &self.scores, uids, rewards);
            if let Some(scores) = hook_answer("update_scores", ctx.step, hooked) {
                self.scores = scores;
                return;
            }
        }
        self.update_scores(uids, rewards, default.alpha, default.decay);
    }

    /// Folds organic rewards into the organic scores: `o = α·r + (1−α)·o` for each
    /// `(uid, hotkey, reward)` whose hotkey still holds the uid (an answer from a
    /// replaced miner is dropped); rewards are clamped to 0..1.
    pub fn update_organic(&mut self, rewards: &[(u16, String, f64)], alpha: f64) {
        self.organic.resize(self.scores.len(), 0.0);
        for (uid, hotkey, reward) in rewards {
            let uid = usize::from(*uid);
            if self.hotkeys.get(uid) != Some(hotkey) {
                continue;
            }
            let reward = if reward.is_finite() {
                reward.clamp(0.0, 1.0)
            } else {
                0.0
            };
            self.organic[uid] = alpha * reward + (1.0 - alpha) * self.organic[uid];
        }
    }

    /// The weights with organic traffic counted: the synthetic and the organic scores
    /// each L1-normalised, then mixed `(1 − share)·synthetic + share·organic`, with
    /// `share` clamped to `0..=`[`MAX_ORGANIC_SHARE`]. Whatever the organic requests,
    /// they move any miner's weight by at most `share`; without organic scores (all
    /// zero) the weights are [`Self::normalized_weights`].
    pub fn blended_weights(&self, share: f64) -> Vec<f64> {
        let synthetic = self.normalized_weights();
        let organic: Vec<f64> = (0..synthetic.len())
            .map(|uid| self.organic.get(uid).copied().unwrap_or(0.0))
            .collect();
        let total: f64 = organic.iter().sum();
        let share = if share.is_finite() {
            share.clamp(0.0, MAX_ORGANIC_SHARE)
        } else {
            0.0
        };
        if total <= 0.0 || share == 0.0 {
            return synthetic;
        }
        if synthetic.iter().all(|&w| w == 0.0) {
            return organic.iter().map(|o| share * o / total).collect();
        }
        synthetic
            .iter()
            .zip(&organic)
            .map(|(w, o)| (1.0 - share) * w + share * o / total)
            .collect()
    }

    /// Scores L1-normalised into weights (all zero when every score is zero).
    pub fn normalized_weights(&self) -> Vec<f64> {
        let total: f64 = self.scores.iter().sum();
        if total <= 0.0 {
            return vec![0.0; self.scores.len()];
        }
        self.scores.iter().map(|s| s / total).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_is_ema_then_decay() {
        let mut state = ValidatorState::default();
        state.sync_hotkeys(&["a".into(), "b".into(), "c".into()]);
        state.update_scores(&[0, 2], &[1.0, 0.5], 0.1, 0.001);
        assert!((state.scores[0] - 0.099).abs() < 1e-12);
        assert_eq!(state.scores[1], 0.0);
        assert!((state.scores[2] - 0.049).abs() < 1e-12);
        state.update_scores(&[0], &[1.0], 0.1, 0.001);
        assert!((state.scores[0] - (0.1 + 0.9 * 0.099 - 0.001)).abs() < 1e-12);
    }

    #[test]
    fn non_finite_rewards_count_as_zero() {
        let mut state = ValidatorState::default();
        state.update_scores(&[1], &[f64::NAN], 0.5, 0.0);
        assert_eq!(state.scores, vec![0.0, 0.0]);
    }

    #[test]
    fn replaced_hotkey_resets_its_score() {
        let mut state = ValidatorState::default();
        state.sync_hotkeys(&["a".into(), "b".into()]);
        state.update_scores(&[0, 1], &[1.0, 1.0], 0.5, 0.0);
        state.sync_hotkeys(&["a".into(), "z".into(), "c".into()]);
        assert_eq!(state.scores, vec![0.5, 0.0, 0.0]);
    }

    #[test]
    fn weights_are_l1_normalised() {
        let state = ValidatorState {
            scores: vec![1.0, 3.0, 0.0],
            ..Default::default()
        };
        assert_eq!(state.normalized_weights(), vec![0.25, 0.75, 0.0]);
        assert_eq!(
            ValidatorState::default().normalized_weights(),
            Vec::<f64>::new()
        );
    }

    #[test]
    fn organic_scores_move_weights_by_at_most_their_share() {
        let mut state = ValidatorState::default();
        state.sync_hotkeys(&["a".into(), "b".into()]);
        state.update_scores(&[0, 1], &[1.0, 1.0], 1.0, 0.0);
        assert_eq!(state.blended_weights(0.1), vec![0.5, 0.5], "no organic yet");
        // A client pushing b as hard as it can: reward 1 for b, 0 for a, many times
        // (out-of-range and non-finite rewards are clamped).
        for _ in 0..1000 {
            state.update_organic(&[(1, "b".into(), 7.0), (0, "a".into(), f64::NAN)], 0.5);
        }
        let w = state.blended_weights(0.1);
        assert!(
            (w[1] - 0.55).abs() < 1e-9 && (w[0] - 0.45).abs() < 1e-9,
            "{w:?}"
        );
        assert_eq!(
            state.blended_weights(0.9),
            state.blended_weights(MAX_ORGANIC_SHARE)
        );
        // A miner replaced on its uid loses its organic score, and answers for the old
        // hotkey are dropped.
        state.sync_hotkeys(&["a".into(), "z".into()]);
        state.update_organic(&[(1, "b".into(), 1.0)], 0.5);
        assert_eq!(state.organic, vec![0.0, 0.0]);
    }

    #[test]
    fn save_then_load_round_trips_and_missing_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(
            ValidatorState::load(&path).unwrap(),
            ValidatorState::default()
        );
        let state = ValidatorState {
            step: 7,
            scores: vec![0.5],
            hotkeys: vec!["a".into()],
            last_weights_block: 99,
            organic: vec![0.25],
        };
        state.save(&path).unwrap();
        assert_eq!(ValidatorState::load(&path).unwrap(), state);
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            ValidatorState::load(&path),
            Err(StateError::Corrupt { .. })
        ));
    }
}

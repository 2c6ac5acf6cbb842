//! The scoring policy: a [`Policy`] trait the validator calls, implemented by
//! [`ScriptPolicy`] on the Rhai script `scripts/finetune/validator.rhai` (recompiled on
//! every [`ScriptPolicy::reload`], so edits apply to the next round).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::Dynamic;
use serde::{Deserialize, Serialize};

use crate::script::{HostConfig, Libraries, ModelSettings, Script, ScriptHost, Services};
use crate::services::HttpConfig;

use super::FinetuneError;

/// Loop settings returned by the script's `settings()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySettings {
    /// Weight of the previous weights in the moving average.
    pub alpha: f64,
    /// Softmax temperature.
    pub temperature: f64,
    /// Blocks between two `set_weights` calls.
    pub weights_cadence_blocks: u64,
    /// Batches evaluated per round.
    pub batches_per_round: usize,
    /// Pairs per batch.
    pub pairs_per_batch: usize,
    /// Competition for commitments that name none.
    pub default_competition: String,
}

/// A competition: models entered in it are compared with each other only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Competition {
    /// Id committed by miners (e.g. `m1`).
    pub id: String,
    /// Share of the validator's total weight.
    pub reward_share: f64,
    /// Largest parameter count accepted.
    pub max_parameters: u64,
    /// Allowed architectures (GGUF `general.architecture` / config `model_type`).
    pub architectures: Vec<String>,
}

/// Wins of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wins {
    /// Batches won, per model.
    pub wins: Vec<u64>,
    /// Wins / matches, per model.
    pub win_rate: Vec<f64>,
}

/// The policy pieces the validator needs.
pub trait Policy: Send + Sync {
    /// Loop settings.
    fn settings(&self) -> Result<PolicySettings, FinetuneError>;
    /// The competitions (their reward shares should sum to 1).
    fn competitions(&self) -> Result<Vec<Competition>, FinetuneError>;
    /// ε for an earlier model that is `age_blocks` old.
    fn epsilon(&self, age_blocks: i64) -> Result<f64, FinetuneError>;
    /// Per-batch wins between every pair of models (`losses[i][b]`, `blocks[i]`).
    fn compute_wins(
        &self,
        current_block: u64,
        blocks: &[u64],
        losses: &[Vec<f64>],
    ) -> Result<Wins, FinetuneError>;
    /// This round's weights from win rates; `alive[i]` is false for a model with no
    /// finite loss.
    fn step_weights(&self, win_rate: &[f64], alive: &[bool]) -> Result<Vec<f64>, FinetuneError>;
    /// The moving average of a uid's weight.
    fn moving_average(&self, old: f64, new: f64) -> Result<f64, FinetuneError>;
}

/// Where the policy script lives under a script root (the shipped one by default).
pub const DEFAULT_POLICY: &str = "scripts/finetune/validator.rhai";

/// [`Policy`] implemented by a Rhai script running in the sandboxed script host.
#[derive(Debug)]
pub struct ScriptPolicy {
    host: ScriptHost,
    path: PathBuf,
    script: std::sync::RwLock<Arc<Script>>,
}

fn policy_err(e: impl std::fmt::Display) -> FinetuneError {
    FinetuneError::Policy(e.to_string())
}

impl ScriptPolicy {
    /// Compiles the policy script at `path` (no network hosts, no source roots).
    pub fn load(path: &Path) -> Result<Self, FinetuneError> {
        let root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let http = HttpConfig {
            allow_hosts: Vec::new(),
            ..HttpConfig::default()
        };
        // Models and corpus load lazily, only if the script asks for them.
        let services = Services::with_resolver(
            crate::models::Resolver::default(),
            &ModelSettings::default(),
            http,
            Vec::new(),
        );
        let host =
            ScriptHost::new(HostConfig::new(root), services, Libraries).map_err(policy_err)?;
        let script = Arc::new(host.compile(path).map_err(policy_err)?);
        let policy = Self {
            host,
            path: path.to_path_buf(),
            script: std::sync::RwLock::new(script),
        };
        // Fail at load, not mid-round, when a required function is missing or broken.
        policy.settings()?;
        policy.competitions()?;
        Ok(policy)
    }

    /// Recompiles the script; on failure the previous version keeps serving and the
    /// error is returned.
    pub fn reload(&self) -> Result<(), FinetuneError> {
        let script = Arc::new(self.host.compile(&self.path).map_err(policy_err)?);
        *self.script.write().unwrap_or_else(|e| e.into_inner()) = script;
        Ok(())
    }

    /// Calls `hook` and reads its return value as `T` (see [`Script::returned`]).
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        hook: &str,
        args: impl rhai::FuncArgs,
        expected: &str,
    ) -> Result<T, FinetuneError> {
        let script = self
            .script
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let out = self.host.call(&script, hook, args).map_err(policy_err)?;
        script.returned(hook, &out, expected).map_err(policy_err)
    }
}

fn to_dyn<T: Serialize>(value: &T) -> Result<Dynamic, FinetuneError> {
    rhai::serde::to_dynamic(value).map_err(policy_err)
}

impl Policy for ScriptPolicy {
    fn settings(&self) -> Result<PolicySettings, FinetuneError> {
        self.call("settings", (), "a map of the loop settings")
    }

    fn competitions(&self) -> Result<Vec<Competition>, FinetuneError> {
        let comps: Vec<Competition> =
            self.call("competitions", (), "an array of competition maps")?;
        if comps.is_empty() {
            return Err(FinetuneError::Policy("competitions() is empty".into()));
        }
        Ok(comps)
    }

    fn epsilon(&self, age_blocks: i64) -> Result<f64, FinetuneError> {
        self.call("epsilon", (age_blocks,), "a float")
    }

    fn compute_wins(
        &self,
        current_block: u64,
        blocks: &[u64],
        losses: &[Vec<f64>],
    ) -> Result<Wins, FinetuneError> {
        // Rhai's serde bridge does not carry non-finite floats: a failed batch is
        // passed as f64::MAX (it still loses to every finite loss).
        let finite: Vec<Vec<f64>> = losses
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&x| if x.is_finite() { x } else { f64::MAX })
                    .collect()
            })
            .collect();
        let wins: Wins = self.call(
            "compute_wins",
            (
                i64::try_from(current_block).map_err(policy_err)?,
                to_dyn(&blocks)?,
                to_dyn(&finite)?,
            ),
            "#{ wins, win_rate }",
        )?;
        if wins.wins.len() != blocks.len() || wins.win_rate.len() != blocks.len() {
            return Err(FinetuneError::Policy(format!(
                "compute_wins returned {} wins and {} win rates for {} models",
                wins.wins.len(),
                wins.win_rate.len(),
                blocks.len()
            )));
        }
        Ok(wins)
    }

    fn step_weights(&self, win_rate: &[f64], alive: &[bool]) -> Result<Vec<f64>, FinetuneError> {
        let out: Vec<f64> = self.call(
            "step_weights",
            (to_dyn(&win_rate)?, to_dyn(&alive)?),
            "an array of floats",
        )?;
        if out.len() != win_rate.len() || out.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(FinetuneError::Policy(format!(
                "step_weights returned {out:?} for {} models (need finite, non-negative)",
                win_rate.len()
            )));
        }
        Ok(out)
    }

    fn moving_average(&self, old: f64, new: f64) -> Result<f64, FinetuneError> {
        self.call("moving_average", (old, new), "a float")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScriptPolicy {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/finetune/validator.rhai");
        ScriptPolicy::load(&path).unwrap()
    }

    #[test]
    fn epsilon_decays_to_its_floor() {
        let p = policy();
        assert!((p.epsilon(0).unwrap() - 0.01).abs() < 1e-12);
        assert!((p.epsilon(3600).unwrap() - 0.0055).abs() < 1e-12);
        assert!((p.epsilon(1_000_000).unwrap() - 0.001).abs() < 1e-12);
        assert!((p.epsilon(-5).unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn earlier_commit_wins_ties_within_epsilon() {
        let p = policy();
        // Model 0 committed at block 10, model 1 (same losses) at block 20.
        let losses = vec![vec![2.0, 2.0], vec![2.0, 1.995], vec![f64::INFINITY; 2]];
        let w = p.compute_wins(30, &[10, 20, 5], &losses).unwrap();
        // 1.995 is within ε = 1% of 2.0: model 0 still wins both batches against 1.
        assert_eq!(w.wins, vec![4, 2, 0]);
        assert_eq!(w.win_rate, vec![1.0, 0.5, 0.0]);
        let weights = p.step_weights(&w.win_rate, &[true, true, false]).unwrap();
        assert!(weights[0] > weights[1] && weights[2] == 0.0);
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((p.moving_average(1.0, 0.0).unwrap() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn broken_scripts_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.rhai");
        std::fs::write(&path, "fn settings() { 1 }\nfn competitions() { [] }").unwrap();
        let err = ScriptPolicy::load(&path).unwrap_err();
        assert!(err.to_string().contains("settings"), "{err}");
        std::fs::write(&path, "fn settings( {").unwrap();
        assert!(ScriptPolicy::load(&path).is_err());
        // A good script, then a broken edit: reload fails, the old version serves.
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/finetune/validator.rhai"),
            &path,
        )
        .unwrap();
        let p = ScriptPolicy::load(&path).unwrap();
        std::fs::write(&path, "fn settings( {").unwrap();
        assert!(p.reload().is_err());
        assert_eq!(p.settings().unwrap().pairs_per_batch, 2);
    }
}

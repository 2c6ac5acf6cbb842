//! The SN1 challenge path, written once: pick a task (a weighted draw over the live
//! rotation, or a given script), run its `generate`, draw a persona and let the
//! persona's `challenge` turn the query into what miners are asked. Used by the
//! validator's step, `neuron task check` and `neuron task run`. (`neuron replay` does
//! not regenerate: it re-scores the challenge and task fields a step recorded.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rhai::Map;

use super::contract::PromptingLookups;
use super::hooks::{PromptingHooks, TaskInstance};
use crate::script::{Ctx, Script, ScriptError, ScriptHost};

/// Errors making a challenge.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    /// A task or persona script failed (or is missing).
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// A weighted pick found no live task script.
    #[error("no task script is live under the script roots {0:?}")]
    NoTasks(Vec<PathBuf>),
}

/// Which task a challenge is made from.
#[derive(Debug, Clone)]
pub enum TaskChoice {
    /// A weighted draw over the live rotation with the step's RNG; the map overrides
    /// task probabilities by name (`--neuron.tasks`/`--neuron.task_p`; empty: each
    /// task's `WEIGHT`).
    Weighted(BTreeMap<String, f64>),
    /// This task script (a task named on the command line, or a file being checked).
    Given(Arc<Script>),
}

/// One challenge: the task script, what it generated, the persona and the text miners
/// are sent.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The task script (its rewards score the answers).
    pub task: Arc<Script>,
    /// The generated instance: query, reference and the other generated fields.
    pub instance: TaskInstance,
    /// The persona map the persona script drew.
    pub persona: Map,
    /// The challenge text.
    pub text: String,
}

impl Challenge {
    /// Makes a challenge in `ctx`: picks the task as `choice` says, generates it, draws
    /// a persona with `personas/PERSONA.rhai` and turns the query into the challenge.
    pub fn make(
        scripts: &ScriptHost,
        ctx: &Ctx,
        choice: TaskChoice,
        persona: &str,
    ) -> Result<Self, ChallengeError> {
        let task = match choice {
            TaskChoice::Weighted(weights) => scripts
                .pick_task(ctx, &weights)
                .ok_or_else(|| ChallengeError::NoTasks(scripts.roots().to_vec()))?,
            TaskChoice::Given(task) => task,
        };
        let instance = scripts.generate(&task, ctx)?;
        let persona_script = scripts.persona_script(persona)?;
        let persona = scripts.persona(&persona_script, ctx)?;
        let text = scripts.challenge(&persona_script, ctx, &instance, &persona)?;
        Ok(Self {
            task,
            instance,
            persona,
            text,
        })
    }

    /// The persona map as JSON (`null` if it holds something JSON cannot).
    pub fn persona_json(&self) -> serde_json::Value {
        to_json(&self.persona)
    }

    /// The generated fields as JSON (`null` if they hold something JSON cannot).
    pub fn fields_json(&self) -> serde_json::Value {
        to_json(&self.instance.fields)
    }
}

/// A script map as JSON.
fn to_json(map: &Map) -> serde_json::Value {
    rhai::serde::from_dynamic(&rhai::Dynamic::from_map(map.clone()))
        .unwrap_or(serde_json::Value::Null)
}

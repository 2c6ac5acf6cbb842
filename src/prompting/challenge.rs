//! The SN1 challenge path, written once: pick a task (a weighted draw over the live
//! rotation, or a given script), run its `generate`, draw a persona and let the
//! persona's `challenge` turn the query into what miners are asked. A task whose
//! `generate` returns a `request` map (SN1 v2's chat request: `messages`, `model`,
//! `seed`, `sampling_parameters`, `logprobs`, `top_logprobs`, `task`; the verified
//! inference task) skips the persona: miners get that request as it is. Used by the
//! validator's step, `neuron task check` and `neuron task run`. (`neuron replay` does
//! not regenerate: it re-scores the challenge and task fields a step recorded.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rhai::Map;

use super::contract::PromptingLookups;
use super::hooks::{Answer, PromptingHooks, TaskInstance};
use crate::net::openai::ChatCompletionRequest;
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
    /// The challenge text (for a chat request, its last message).
    pub text: String,
    /// The chat request miners are sent, when the task generated one (no persona).
    pub request: Option<ChatCompletionRequest>,
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
        if let Some(request) = chat_request(&task, &instance)? {
            let text = request
                .chat_messages()
                .pop()
                .map(|m| m.content)
                .unwrap_or_default();
            return Ok(Self {
                task,
                instance,
                persona: Map::new(),
                text,
                request: Some(request),
            });
        }
        let persona_script = scripts.persona_script(persona)?;
        let persona = scripts.persona(&persona_script, ctx)?;
        let text = scripts.challenge(&persona_script, ctx, &instance, &persona)?;
        Ok(Self {
            task,
            instance,
            persona,
            text,
            request: None,
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

    /// The validator's own answer as a miner would send it: the reference, with the
    /// tokens and logprobs of the task's `generation` when it made one (the verified
    /// inference task), answered in a nominal second (alone, any latency is the
    /// fastest). Scoring it gives what the task pays a perfect answer.
    pub fn reference_answer(&self) -> Answer {
        let logprobs = self
            .instance
            .fields
            .get("generation")
            .and_then(|g| g.read_lock::<Map>()?.get("logprobs").cloned())
            .and_then(|l| rhai::serde::from_dynamic::<serde_json::Value>(&l).ok())
            .and_then(|json| serde_json::from_value(json).ok())
            .unwrap_or_default();
        Answer {
            latency_s: 1.0,
            logprobs,
            ..Answer::of(self.instance.reference.clone())
        }
    }
}

/// The `request` field of a generated instance as a chat request (streamed); an error
/// naming the task when it is not one, or has no message.
fn chat_request(
    task: &Script,
    instance: &TaskInstance,
) -> Result<Option<ChatCompletionRequest>, ScriptError> {
    let Some(value) = instance.fields.get("request") else {
        return Ok(None);
    };
    let bad = |why: String| {
        task.bad_return(
            "generate",
            "`request` as a chat request map with at least one message",
            why,
        )
    };
    let mut request: ChatCompletionRequest =
        rhai::serde::from_dynamic(value).map_err(|e| bad(e.to_string()))?;
    if request.messages.is_empty() {
        return Err(bad("no messages".into()));
    }
    request.stream = true;
    Ok(Some(request))
}

/// A script map as JSON.
fn to_json(map: &Map) -> serde_json::Value {
    rhai::serde::from_dynamic(&rhai::Dynamic::from_map(map.clone()))
        .unwrap_or(serde_json::Value::Null)
}

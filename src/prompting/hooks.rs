//! SN1's script contracts, typed: the task rotation and `generate`, the reward policy
//! (a task's own `reward` hook, else its `REWARDS`/`PENALTIES`), the persona's `persona`
//! and `challenge`, a miner strategy's `forward`, `blacklist`, `priority` and
//! `availability`, and the
//! validator's `select_uids` and `update_scores`.
//!
//! [`PromptingHooks`] adds them to the generic [`ScriptHost`]: each calls the hook through
//! the host's sandboxed call and reads its return value through `rhai::serde` into the
//! Rust type below, then checks what serde cannot (lengths, ranges). A value of another
//! shape is [`ScriptError::BadReturn`] naming what the contract expects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rhai::{Array, Dynamic, INT, Map};
use serde::Deserialize;

use super::contract::{PromptingLookups, PromptingScript, ScriptKind};
use crate::chain::Metagraph;
use crate::llm::TokenLogprob;
use crate::net::MinerAnswer;
use crate::net::openai::Availability;
use crate::score::Breakdown;
use crate::script::{Ctx, Number, Script, ScriptError, ScriptHost, metagraph_rows};

/// A generated task instance: `generate(ctx)`'s map, with its required fields pulled out.
#[derive(Debug, Clone)]
pub struct TaskInstance {
    /// The task's `NAME`.
    pub task: String,
    /// The query (before the persona turns it into a challenge).
    pub query: String,
    /// The reference answer.
    pub reference: String,
    /// Everything `generate` returned (context, topic, subtopic, …).
    pub fields: Map,
}

/// One miner's answer as a task's reward reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The completion (empty on failure).
    pub completion: String,
    /// The query's status code (200 success).
    pub status_code: u16,
    /// Seconds from sending to the answer's end.
    pub latency_s: f64,
    /// The tokens with their top alternatives the miner sent (OpenAI transports, asked
    /// for logprobs).
    pub logprobs: Vec<TokenLogprob>,
}

impl Answer {
    /// What `answer` brings to its reward: its completion and logprobs are moved out,
    /// its status and latency copied (the rest of `answer` stays for the step record).
    pub fn take_from(answer: &mut MinerAnswer) -> Self {
        Self {
            completion: std::mem::take(&mut answer.completion),
            status_code: answer.status_code,
            latency_s: answer.latency.as_secs_f64(),
            logprobs: std::mem::take(&mut answer.logprobs),
        }
    }

    /// A successful answer that is only a completion (no timing, no logprobs).
    pub fn of(completion: impl Into<String>) -> Self {
        Self {
            completion: completion.into(),
            status_code: 200,
            ..Self::default()
        }
    }

    /// As a `reward` hook's `answers` entry: `#{completion, status_code, latency_s,
    /// logprobs}`, `logprobs` as `llm::generate` gives them.
    fn to_map(&self, script: &Script) -> Result<Map, ScriptError> {
        let mut map = Map::new();
        map.insert("completion".into(), self.completion.clone().into());
        map.insert("status_code".into(), INT::from(self.status_code).into());
        map.insert("latency_s".into(), Dynamic::from_float(self.latency_s));
        let logprobs =
            rhai::serde::to_dynamic(&self.logprobs).map_err(|e| ScriptError::Domain {
                file: script.rel.clone(),
                message: format!("answer logprobs: {e}"),
            })?;
        map.insert("logprobs".into(), logprobs);
        Ok(map)
    }
}

/// The fields of `generate`'s map every task must set.
#[derive(Deserialize)]
struct Generated {
    query: String,
    reference: String,
}

/// What `forward` may return: the completion, or a map carrying it.
#[derive(Deserialize)]
#[serde(untagged, expecting = "none of the accepted shapes")]
enum Forwarded {
    Text(String),
    Reply { completion: String },
}

/// What `blacklist` may return: a verdict alone, `[verdict, reason]` or
/// `#{blacklisted, reason}` (the reason is shown as text whatever its type).
#[derive(Deserialize)]
#[serde(untagged, expecting = "none of the accepted shapes")]
enum Verdict {
    Flag(bool),
    Pair(bool, Dynamic),
    Map {
        blacklisted: bool,
        #[serde(default)]
        reason: Dynamic,
    },
}

impl Verdict {
    fn into_pair(self) -> (bool, String) {
        match self {
            Self::Flag(b) => (b, String::new()),
            Self::Pair(b, reason)
            | Self::Map {
                blacklisted: b,
                reason,
            } => (b, reason.to_string()),
        }
    }
}

/// SN1's hooks on the script host.
pub trait PromptingHooks {
    /// Picks a task by weight from the live rotation, using `ctx`'s RNG; `weights`
    /// overrides a task's `WEIGHT` by name (config beats script defaults).
    fn pick_task(&self, ctx: &Ctx, weights: &BTreeMap<String, f64>) -> Option<Arc<Script>>;

    /// Runs a task's `generate(ctx)`: a map with string fields `query` and `reference`.
    fn generate(&self, task: &Script, ctx: &Ctx) -> Result<TaskInstance, ScriptError>;

    /// Scores the `answers` to a generated task: the task's own `reward(ctx, task,
    /// completions)` hook when it defines one (an array of numbers, one per completion;
    /// `task` is the generated map plus `challenge`; a hook with a fourth parameter
    /// also gets `answers`, one map per answer with its status, latency and logprobs),
    /// else its `REWARDS`/`PENALTIES` over the completions with SN1's combination. One
    /// [`Breakdown`] per answer.
    fn reward(
        &self,
        script: &Script,
        ctx: &Ctx,
        task: &TaskInstance,
        challenge: &str,
        answers: &[Answer],
    ) -> Result<Vec<Breakdown>, ScriptError>;

    /// Runs a persona script's `persona(ctx)`: a map.
    fn persona(&self, script: &Script, ctx: &Ctx) -> Result<Map, ScriptError>;

    /// Runs `challenge(ctx, task, persona)`, returning the challenge text.
    fn challenge(
        &self,
        script: &Script,
        ctx: &Ctx,
        task: &TaskInstance,
        persona: &Map,
    ) -> Result<String, ScriptError>;

    /// Runs a strategy's `forward(ctx, synapse)`: the completion text. A map result is
    /// read for its `completion` field.
    fn forward(&self, script: &Script, ctx: &Ctx, synapse: Map) -> Result<String, ScriptError>;

    /// Runs the strategy's `blacklist(ctx, request)` if it has one: `Some((true,
    /// reason))` rejects. A bool result has an empty reason; `[bool, reason]` or
    /// `#{blacklisted, reason}` carry one.
    fn blacklist(
        &self,
        script: &Script,
        ctx: &Ctx,
        request: Map,
    ) -> Result<Option<(bool, String)>, ScriptError>;

    /// Runs the strategy's `priority(ctx, request)` if it has one: a number.
    fn priority(
        &self,
        script: &Script,
        ctx: &Ctx,
        request: Map,
    ) -> Result<Option<f64>, ScriptError>;

    /// Runs the strategy's `availability(ctx)` if it has one: a map
    /// `#{task_availabilities: #{Task: bool}, llm_model_availabilities: #{model: bool}}`
    /// (either may be left out).
    fn availability(&self, script: &Script, ctx: &Ctx)
    -> Result<Option<Availability>, ScriptError>;

    /// Runs the validator's `select_uids(ctx, metagraph, k)` if `script` defines it:
    /// the uids to query this step. `metagraph` goes in as rows
    /// ([`metagraph_rows`]); the result must be at most `k` distinct uids registered in
    /// it.
    fn select_uids(
        &self,
        script: &Script,
        ctx: &Ctx,
        metagraph: &Metagraph,
        k: usize,
    ) -> Result<Option<Vec<u16>>, ScriptError>;

    /// Runs the validator's `update_scores(ctx, scores, rewards)` if `script` defines
    /// it: `scores` per uid, `rewards` one `#{ uid, reward }` per queried uid. The
    /// result must be one finite, non-negative number per uid of `scores`.
    fn update_scores(
        &self,
        script: &Script,
        ctx: &Ctx,
        scores: &[f64],
        uids: &[u16],
        rewards: &[f64],
    ) -> Result<Option<Vec<f64>>, ScriptError>;
}

impl PromptingHooks for ScriptHost {
    fn pick_task(&self, ctx: &Ctx, weights: &BTreeMap<String, f64>) -> Option<Arc<Script>> {
        let tasks = self.tasks();
        let w: Vec<f64> = tasks
            .iter()
            .map(|t| {
                let name = t.name();
                weights
                    .get(&name)
                    .copied()
                    .unwrap_or_else(|| t.task_spec().map_or(0.0, |s| s.weight))
            })
            .collect();
        let i = ctx.rng.weighted_index(&w);
        usize::try_from(i).ok().map(|i| tasks[i].clone())
    }

    fn generate(&self, task: &Script, ctx: &Ctx) -> Result<TaskInstance, ScriptError> {
        const EXPECTED: &str = "a map with string fields `query` and `reference`";
        let out = self.call_for(ctx, task, "generate", (ctx.clone(),))?;
        let Generated { query, reference } = task.returned("generate", &out, EXPECTED)?;
        let fields = out
            .try_cast::<Map>()
            .ok_or_else(|| task.bad_return("generate", EXPECTED, "a value that is no map"))?;
        Ok(TaskInstance {
            task: task.name(),
            query,
            reference,
            fields,
        })
    }

    fn reward(
        &self,
        script: &Script,
        ctx: &Ctx,
        task: &TaskInstance,
        challenge: &str,
        answers: &[Answer],
    ) -> Result<Vec<Breakdown>, ScriptError> {
        let spec = script.task_spec().ok_or_else(|| ScriptError::NotFound {
            kind: ScriptKind::Task.as_str(),
            name: script.name(),
        })?;
        let completions: Vec<&str> = answers.iter().map(|a| a.completion.as_str()).collect();
        if script.hooks().reward {
            let mut fields = task.fields.clone();
            fields.insert("challenge".into(), challenge.into());
            let list: Array = completions.iter().map(|&c| c.into()).collect();
            let expected = format!("an array of {} numbers", completions.len());
            let values: Vec<Number> = if script.hooks().reward_answers {
                let maps = answers
                    .iter()
                    .map(|a| a.to_map(script).map(Dynamic::from_map))
                    .collect::<Result<Array, _>>()?;
                let args = (ctx.clone(), fields, list, maps);
                self.call_as(ctx, script, "reward", args, &expected)?
            } else {
                let args = (ctx.clone(), fields, list);
                self.call_as(ctx, script, "reward", args, &expected)?
            };
            if values.len() != completions.len() {
                let found = format!("{} values", values.len());
                return Err(script.bad_return("reward", expected, found));
            }
            return Ok(values
                .into_iter()
                .map(|Number(total)| Breakdown {
                    total,
                    components: Vec::new(),
                })
                .collect());
        }
        let refs = completions;
        let score_err = |message: String| ScriptError::Domain {
            file: script.rel.clone(),
            message: format!("scoring: {message}"),
        };
        let result = if spec.rewards.needs_embedder() {
            let embedder = self.services().embedder.get().map_err(score_err)?;
            let embed = |texts: &[&str]| embedder.embed(texts);
            spec.rewards
                .score(&task.reference, challenge, &refs, Some(&embed))
        } else {
            spec.rewards.score(&task.reference, challenge, &refs, None)
        };
        result.map_err(|e| score_err(e.to_string()))
    }

    fn persona(&self, script: &Script, ctx: &Ctx) -> Result<Map, ScriptError> {
        let out = self.call_for(ctx, script, "persona", (ctx.clone(),))?;
        let found = out.type_name().to_string();
        out.try_cast::<Map>()
            .ok_or_else(|| script.bad_return("persona", "a map", found))
    }

    fn challenge(
        &self,
        script: &Script,
        ctx: &Ctx,
        task: &TaskInstance,
        persona: &Map,
    ) -> Result<String, ScriptError> {
        self.call_as(
            ctx,
            script,
            "challenge",
            (ctx.clone(), task.fields.clone(), persona.clone()),
            "a string",
        )
    }

    fn forward(&self, script: &Script, ctx: &Ctx, synapse: Map) -> Result<String, ScriptError> {
        let forwarded: Forwarded = self.call_as(
            ctx,
            script,
            "forward",
            (ctx.clone(), synapse),
            "a string or a map with a string `completion`",
        )?;
        Ok(match forwarded {
            Forwarded::Text(text) | Forwarded::Reply { completion: text } => text,
        })
    }

    fn blacklist(
        &self,
        script: &Script,
        ctx: &Ctx,
        request: Map,
    ) -> Result<Option<(bool, String)>, ScriptError> {
        if !script.hooks().blacklist {
            return Ok(None);
        }
        let verdict: Verdict = self.call_as(
            ctx,
            script,
            "blacklist",
            (ctx.clone(), request),
            "a bool, [bool, reason] or #{blacklisted, reason}",
        )?;
        Ok(Some(verdict.into_pair()))
    }

    fn priority(
        &self,
        script: &Script,
        ctx: &Ctx,
        request: Map,
    ) -> Result<Option<f64>, ScriptError> {
        if !script.hooks().priority {
            return Ok(None);
        }
        let Number(priority) =
            self.call_as(ctx, script, "priority", (ctx.clone(), request), "a number")?;
        Ok(Some(priority))
    }

    fn availability(
        &self,
        script: &Script,
        ctx: &Ctx,
    ) -> Result<Option<Availability>, ScriptError> {
        if !script.hooks().availability {
            return Ok(None);
        }
        let expected =
            "#{task_availabilities: #{Task: bool}, llm_model_availabilities: #{model: bool}}";
        self.call_as(ctx, script, "availability", (ctx.clone(),), expected)
            .map(Some)
    }

    fn select_uids(
        &self,
        script: &Script,
        ctx: &Ctx,
        metagraph: &Metagraph,
        k: usize,
    ) -> Result<Option<Vec<u16>>, ScriptError> {
        if !script.hooks().select_uids {
            return Ok(None);
        }
        let registered = metagraph.neurons.len();
        let expected = format!("an array of at most {k} distinct uids in 0..{registered}");
        let rows = metagraph_rows(metagraph);
        let k_int = INT::try_from(k).unwrap_or(INT::MAX);
        let uids: Vec<u16> = self.call_as(
            ctx,
            script,
            "select_uids",
            (ctx.clone(), rows, k_int),
            &expected,
        )?;
        let bad = |found: String| script.bad_return("select_uids", expected.as_str(), found);
        if uids.len() > k {
            return Err(bad(format!("{} uids", uids.len())));
        }
        let mut seen = BTreeSet::new();
        for &uid in &uids {
            if usize::from(uid) >= registered {
                return Err(bad(format!("uid {uid}, which is not registered")));
            }
            if !seen.insert(uid) {
                return Err(bad(format!("uid {uid} twice")));
            }
        }
        Ok(Some(uids))
    }

    fn update_scores(
        &self,
        script: &Script,
        ctx: &Ctx,
        scores: &[f64],
        uids: &[u16],
        rewards: &[f64],
    ) -> Result<Option<Vec<f64>>, ScriptError> {
        if !script.hooks().update_scores {
            return Ok(None);
        }
        let score_list: Array = scores.iter().map(|&s| Dynamic::from_float(s)).collect();
        let reward_list: Array = uids
            .iter()
            .zip(rewards)
            .map(|(&uid, &reward)| {
                let mut row = Map::new();
                row.insert("uid".into(), Dynamic::from_int(INT::from(uid)));
                row.insert("reward".into(), Dynamic::from_float(reward));
                row.into()
            })
            .collect();
        let expected = format!("an array of {} finite numbers ≥ 0", scores.len());
        let values: Vec<Number> = self.call_as(
            ctx,
            script,
            "update_scores",
            (ctx.clone(), score_list, reward_list),
            &expected,
        )?;
        let bad = |found: String| script.bad_return("update_scores", expected.as_str(), found);
        if values.len() != scores.len() {
            return Err(bad(format!("{} values", values.len())));
        }
        values
            .into_iter()
            .map(|Number(x)| {
                if x.is_finite() && x >= 0.0 {
                    Ok(x)
                } else {
                    Err(bad(format!("the value {x}")))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rhai::Dynamic;

    use super::*;
    use crate::chain::NeuronInfo;
    use crate::models::Resolver;
    use crate::prompting::contract::PromptingContracts;
    use crate::script::{HostConfig, ModelSettings, Services};
    use crate::services::HttpConfig;

    /// Every hook returns `ctx.config.out`, so a test chooses the return value.
    const SCRIPTS: [(&str, &str); 4] = [
        (
            "tasks/t.rhai",
            r#"const NAME = "t"; const WEIGHT = 1; const REWARDS = #{ diff: 1.0 }; const PENALTIES = #{};
fn generate(ctx) { ctx.config.out }
fn reward(ctx, task, completions) { ctx.config.out }"#,
        ),
        (
            "personas/p.rhai",
            "fn persona(ctx) { ctx.config.out }\nfn challenge(ctx, task, persona) { ctx.config.out }",
        ),
        (
            "scripts/miners/s.rhai",
            "fn forward(ctx, synapse) { ctx.config.out }\nfn blacklist(ctx, request) { ctx.config.out }\nfn priority(ctx, request) { ctx.config.out }\nfn availability(ctx) { ctx.config.out }",
        ),
        (
            "scripts/validator.rhai",
            "fn select_uids(ctx, metagraph, k) { ctx.config.out }\nfn update_scores(ctx, scores, rewards) { ctx.config.out }",
        ),
    ];

    fn host(dir: &Path) -> ScriptHost {
        for (rel, text) in SCRIPTS {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let services = Services::with_resolver(
            Resolver::default(),
            &ModelSettings::default(),
            HttpConfig::default(),
            Vec::new(),
        );
        ScriptHost::new(HostConfig::new(dir), services, PromptingContracts).unwrap()
    }

    /// A context whose hooks return the value of the Rhai expression `out`.
    fn returning(out: &str) -> Ctx {
        let value: Dynamic = rhai::Engine::new().eval(out).unwrap();
        let mut config = Map::new();
        config.insert("out".into(), value);
        Ctx::new(1, 0, config)
    }

    fn metagraph(n: u16) -> Metagraph {
        let neuron = |uid: u16| NeuronInfo {
            uid,
            hotkey: format!("hot{uid}"),
            coldkey: "cold".into(),
            active: true,
            ..NeuronInfo::default()
        };
        Metagraph {
            netuid: 1,
            block: 0,
            neurons: (0..n).map(neuron).collect(),
        }
    }

    fn bad_return(err: ScriptError, want_hook: &str, want_expected: &str) -> String {
        match err {
            ScriptError::BadReturn {
                hook,
                expected,
                found,
                ..
            } => {
                assert_eq!(hook, want_hook);
                assert_eq!(expected, want_expected);
                found
            }
            other => panic!("expected BadReturn from {want_hook}, got {other}"),
        }
    }

    #[test]
    fn strategy_hooks_accept_their_documented_shapes_only() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let s = host.strategy("s").unwrap();
        let forward = |out: &str| host.forward(&s, &returning(out), Map::new());
        assert_eq!(forward(r#""hi""#).unwrap(), "hi");
        assert_eq!(forward(r#"#{ completion: "hi", x: 1 }"#).unwrap(), "hi");
        for bad in ["42", "#{ text: \"hi\" }", "#{ completion: 1 }", "()"] {
            let err = forward(bad).unwrap_err();
            bad_return(
                err,
                "forward",
                "a string or a map with a string `completion`",
            );
        }

        let blacklist = |out: &str| host.blacklist(&s, &returning(out), Map::new());
        assert_eq!(blacklist("true").unwrap(), Some((true, String::new())));
        assert_eq!(
            blacklist(r#"[true, "spam"]"#).unwrap(),
            Some((true, "spam".into()))
        );
        assert_eq!(blacklist("[false, 7]").unwrap(), Some((false, "7".into())));
        assert_eq!(
            blacklist(r#"#{ blacklisted: true, reason: "no" }"#).unwrap(),
            Some((true, "no".into()))
        );
        assert_eq!(
            blacklist("#{ blacklisted: false }").unwrap(),
            Some((false, String::new()))
        );
        for bad in [
            "1",
            "[true]",
            r#"[true, "a", "b"]"#,
            "#{ reason: \"x\" }",
            "\"yes\"",
        ] {
            let err = blacklist(bad).unwrap_err();
            bad_return(
                err,
                "blacklist",
                "a bool, [bool, reason] or #{blacklisted, reason}",
            );
        }

        let priority = |out: &str| host.priority(&s, &returning(out), Map::new());
        assert_eq!(priority("12").unwrap(), Some(12.0));
        assert_eq!(priority("2.5").unwrap(), Some(2.5));
        let found = bad_return(priority(r#""high""#).unwrap_err(), "priority", "a number");
        assert!(found.starts_with("string"), "{found}");

        let availability = |out: &str| host.availability(&s, &returning(out));
        let served = availability(
            r#"#{ task_availabilities: #{ InferenceTask: true, WebRetrievalTask: false } }"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(served.task_availabilities.len(), 2);
        assert!(served.task_availabilities["InferenceTask"]);
        assert!(served.llm_model_availabilities.is_empty());
        for bad in [
            "true",
            r#"#{ task_availabilities: #{ InferenceTask: "yes" } }"#,
        ] {
            bad_return(
                availability(bad).unwrap_err(),
                "availability",
                "#{task_availabilities: #{Task: bool}, llm_model_availabilities: #{model: bool}}",
            );
        }
    }

    #[test]
    fn task_and_persona_hooks_accept_their_documented_shapes_only() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let t = host.task("t").unwrap();
        let generated = host
            .generate(
                &t,
                &returning(r#"#{ query: "q", reference: "r", topic: 3 }"#),
            )
            .unwrap();
        assert_eq!(
            (generated.query.as_str(), generated.reference.as_str()),
            ("q", "r")
        );
        assert_eq!(generated.fields.len(), 3);
        const GENERATE: &str = "a map with string fields `query` and `reference`";
        for bad in [
            "42",
            r#"#{ query: "q" }"#,
            r#"#{ query: 1, reference: "r" }"#,
        ] {
            let err = host.generate(&t, &returning(bad)).unwrap_err();
            let found = bad_return(err, "generate", GENERATE);
            assert!(!found.is_empty());
        }

        let reward = |out: &str, n: usize| {
            let answers = vec![Answer::of(""); n];
            host.reward(&t, &returning(out), &generated, "c", &answers)
        };
        let totals: Vec<f64> = reward("[1, 0.5]", 2)
            .unwrap()
            .iter()
            .map(|b| b.total)
            .collect();
        assert_eq!(totals, [1.0, 0.5]);
        let found = bad_return(
            reward("[1]", 2).unwrap_err(),
            "reward",
            "an array of 2 numbers",
        );
        assert_eq!(found, "1 values");
        bad_return(
            reward(r#"["x"]"#, 1).unwrap_err(),
            "reward",
            "an array of 1 numbers",
        );

        let p = host.persona_script("p").unwrap();
        assert_eq!(host.persona(&p, &returning("#{ a: 1 }")).unwrap().len(), 1);
        bad_return(
            host.persona(&p, &returning("1")).unwrap_err(),
            "persona",
            "a map",
        );
        let challenge = |out: &str| host.challenge(&p, &returning(out), &generated, &Map::new());
        assert_eq!(challenge(r#""c""#).unwrap(), "c");
        bad_return(challenge("[]").unwrap_err(), "challenge", "a string");
    }

    #[test]
    fn validator_hooks_are_checked_against_the_metagraph() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let v = host.validator_hooks().unwrap();
        let graph = metagraph(4);
        let select = |out: &str| host.select_uids(&v, &returning(out), &graph, 2);
        assert_eq!(select("[3, 1]").unwrap(), Some(vec![3, 1]));
        const SELECT: &str = "an array of at most 2 distinct uids in 0..4";
        for (bad, want) in [
            ("[1, 1]", "uid 1 twice"),
            ("[9]", "uid 9, which is not registered"),
            ("[0, 1, 2]", "3 uids"),
        ] {
            assert_eq!(
                bad_return(select(bad).unwrap_err(), "select_uids", SELECT),
                want
            );
        }
        for bad in ["[-1]", "[1.5]", r#""uids""#] {
            bad_return(select(bad).unwrap_err(), "select_uids", SELECT);
        }

        let scores = [0.0, 0.5];
        let update = |out: &str| host.update_scores(&v, &returning(out), &scores, &[1], &[1.0]);
        assert_eq!(update("[1, 0.25]").unwrap(), Some(vec![1.0, 0.25]));
        const UPDATE: &str = "an array of 2 finite numbers ≥ 0";
        assert_eq!(
            bad_return(update("[1]").unwrap_err(), "update_scores", UPDATE),
            "1 values"
        );
        assert_eq!(
            bad_return(update("[1, -1.0]").unwrap_err(), "update_scores", UPDATE),
            "the value -1"
        );
        bad_return(update(r#"[1, "x"]"#).unwrap_err(), "update_scores", UPDATE);
    }

    #[test]
    fn bad_return_messages_name_the_hook_what_came_back_and_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let t = host.task("t").unwrap();
        let err = host
            .generate(&t, &returning(r#"#{ query: 1, reference: "r" }"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tasks/t.rhai: `generate` returned map"),
            "{err}"
        );
        assert!(
            err.ends_with("; expected a map with string fields `query` and `reference`"),
            "{err}"
        );
        let s = host.strategy("s").unwrap();
        let err = host
            .blacklist(&s, &returning("42"), Map::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "scripts/miners/s.rhai: `blacklist` returned i64 (none of the accepted shapes); \
             expected a bool, [bool, reason] or #{blacklisted, reason}"
        );
        let v = host.validator_hooks().unwrap();
        let err = host
            .select_uids(&v, &returning("[-1]"), &metagraph(2), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`select_uids` returned array ("), "{err}");
        assert!(err.contains("-1"), "{err}");
    }
}

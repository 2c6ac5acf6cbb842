//! SN1's script contracts: which kind a script is (by where it lives under the script
//! root, or by the hooks it defines), which hooks and constants each kind must declare
//! ([`ScriptKind`], [`TaskSpec`], [`HookSet`]), checked at load by [`PromptingContracts`],
//! and the host lookups by kind ([`PromptingLookups`]) and per script ([`PromptingScript`]).

use std::path::Path;
use std::sync::Arc;

use rhai::{AST, Map, Scope};

use crate::score::RewardSpec;
use crate::script::{
    Candidate, Contract, Contracts, Script, ScriptError, ScriptHost, has_fn, number, require_fn,
};

/// What a script is, by where it lives (or, outside the roots, by what it defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScriptKind {
    /// `tasks/*.rhai`: `NAME`, `WEIGHT`, `REWARDS`, `PENALTIES`, `fn generate(ctx)`,
    /// optional `fn reward(ctx, task, completions)`.
    Task,
    /// `personas/*.rhai`: `fn persona(ctx)`, `fn challenge(ctx, task, persona)`.
    Persona,
    /// `scripts/miners/*.rhai`: `fn forward(ctx, synapse)`, optional
    /// `fn blacklist(ctx, request)` and `fn priority(ctx, request)`.
    Strategy,
    /// `scripts/validator.rhai`: optional `fn select_uids(ctx, metagraph, k)` and
    /// `fn update_scores(ctx, scores, rewards)`, replacing the validator's defaults.
    Validator,
    /// `tools/` and the rest of `scripts/`: any functions, imported by others.
    Library,
}

/// Path of the validator hooks script, relative to the script root.
pub const VALIDATOR_HOOKS: &str = "scripts/validator.rhai";

impl ScriptKind {
    /// The kind for a path relative to the script root, falling back to the hooks the
    /// script defines for files elsewhere (e.g. `examples/custom_task.rhai`).
    pub fn detect(rel: &Path, ast: &AST) -> Self {
        if rel == Path::new(VALIDATOR_HOOKS) {
            return Self::Validator;
        }
        let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
        match (parts.next().as_deref(), parts.next().as_deref()) {
            (Some("tasks"), _) => return Self::Task,
            (Some("personas"), _) => return Self::Persona,
            (Some("scripts"), Some("miners")) => return Self::Strategy,
            (Some("tools" | "scripts"), _) => return Self::Library,
            _ => {}
        }
        let has = |name: &str| ast.iter_functions().any(|f| f.name == name);
        if has("generate") {
            Self::Task
        } else if has("challenge") {
            Self::Persona
        } else if has("forward") {
            Self::Strategy
        } else {
            Self::Library
        }
    }

    /// Lower-case name for messages and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Persona => "persona",
            Self::Strategy => "strategy",
            Self::Validator => "validator",
            Self::Library => "library",
        }
    }
}

/// A task's declared metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// `NAME`.
    pub name: String,
    /// `WEIGHT`: relative sampling weight (≥ 0).
    pub weight: f64,
    /// `REWARDS` (reward function → weight, summing to 1) and `PENALTIES` (reward
    /// function scored against the challenge → weight), validated.
    pub rewards: RewardSpec,
}

/// Which optional hooks a script defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSet {
    /// Task: `reward(ctx, task, completions)` or `reward(ctx, task, completions,
    /// answers)`.
    pub reward: bool,
    /// Task: its `reward` takes the fourth parameter `answers`.
    pub reward_answers: bool,
    /// Strategy: `blacklist(ctx, request)`.
    pub blacklist: bool,
    /// Strategy: `priority(ctx, request)`.
    pub priority: bool,
    /// Strategy: `availability(ctx)`.
    pub availability: bool,
    /// Validator: `select_uids(ctx, metagraph, k)`.
    pub select_uids: bool,
    /// Validator: `update_scores(ctx, scores, rewards)`.
    pub update_scores: bool,
}

/// Checks the hooks of `kind` in `ast`; returns which optional ones exist, or the list
/// of what is missing.
pub fn check_hooks(kind: ScriptKind, ast: &AST) -> Result<HookSet, String> {
    let mut missing = Vec::new();
    match kind {
        ScriptKind::Task => require_fn(ast, "generate", &["ctx"], &mut missing),
        ScriptKind::Persona => {
            require_fn(ast, "persona", &["ctx"], &mut missing);
            require_fn(ast, "challenge", &["ctx", "task", "persona"], &mut missing);
        }
        ScriptKind::Strategy => require_fn(ast, "forward", &["ctx", "synapse"], &mut missing),
        ScriptKind::Validator | ScriptKind::Library => {}
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} script is missing {}",
            kind.as_str(),
            missing.join(", ")
        ));
    }
    let mut wrong_arity = Vec::new();
    for (name, arity, applies) in [
        (
            "reward",
            3,
            kind == ScriptKind::Task && !has_fn(ast, "reward", 4),
        ),
        ("blacklist", 2, kind == ScriptKind::Strategy),
        ("priority", 2, kind == ScriptKind::Strategy),
        ("availability", 1, kind == ScriptKind::Strategy),
        ("select_uids", 3, kind == ScriptKind::Validator),
        ("update_scores", 3, kind == ScriptKind::Validator),
    ] {
        if applies && ast.iter_functions().any(|f| f.name == name) && !has_fn(ast, name, arity) {
            wrong_arity.push(format!("`{name}` must take {arity} parameters"));
        }
    }
    if !wrong_arity.is_empty() {
        return Err(wrong_arity.join("; "));
    }
    Ok(HookSet {
        reward: kind == ScriptKind::Task && (has_fn(ast, "reward", 3) || has_fn(ast, "reward", 4)),
        reward_answers: kind == ScriptKind::Task && has_fn(ast, "reward", 4),
        blacklist: kind == ScriptKind::Strategy && has_fn(ast, "blacklist", 2),
        priority: kind == ScriptKind::Strategy && has_fn(ast, "priority", 2),
        availability: kind == ScriptKind::Strategy && has_fn(ast, "availability", 1),
        select_uids: kind == ScriptKind::Validator && has_fn(ast, "select_uids", 3),
        update_scores: kind == ScriptKind::Validator && has_fn(ast, "update_scores", 3),
    })
}

fn weights(scope: &Scope, constant: &str) -> Result<Vec<(String, f64)>, String> {
    let map: Map = scope.get_value::<Map>(constant).ok_or_else(|| {
        format!("`{constant}` must be a constant object map of reward name → weight")
    })?;
    map.into_iter()
        .map(|(name, weight)| {
            number(&weight)
                .map(|w| (name.to_string(), w))
                .ok_or_else(|| format!("`{constant}.{name}` must be a number"))
        })
        .collect()
}

/// Reads a task's constants from the scope its top level ran in.
pub fn task_spec(scope: &Scope) -> Result<TaskSpec, String> {
    let mut missing: Vec<&str> = ["NAME", "WEIGHT", "REWARDS", "PENALTIES"]
        .into_iter()
        .filter(|c| !scope.contains(c))
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        return Err(format!(
            "task script is missing const {}",
            missing.join(", const ")
        ));
    }
    let name = scope
        .get_value::<rhai::ImmutableString>("NAME")
        .filter(|n| !n.trim().is_empty())
        .ok_or("`NAME` must be a non-empty string")?
        .to_string();
    let weight = scope
        .get("WEIGHT")
        .and_then(number)
        .filter(|w| *w >= 0.0 && w.is_finite())
        .ok_or("`WEIGHT` must be a number ≥ 0")?;
    let rewards = RewardSpec::new(weights(scope, "REWARDS")?, weights(scope, "PENALTIES")?)
        .map_err(|e| format!("`REWARDS`/`PENALTIES`: {e}"))?;
    Ok(TaskSpec {
        name,
        weight,
        rewards,
    })
}

/// What [`PromptingContracts`] records of a script, read through [`PromptingScript`].
#[derive(Debug, Clone, PartialEq)]
pub struct PromptingTerms {
    /// What kind of script it is.
    pub kind: ScriptKind,
    /// Task metadata (tasks only).
    pub task: Option<TaskSpec>,
    /// Optional hooks it defines.
    pub hooks: HookSet,
}

/// SN1's contract set, given to the script host: detects each script's [`ScriptKind`],
/// checks its hooks and, for a task, runs its top level and reads its [`TaskSpec`]. A
/// task is addressed by its `NAME`, every other script by its file stem.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromptingContracts;

impl Contracts for PromptingContracts {
    fn check(&self, script: &Candidate<'_>) -> Result<Contract, ScriptError> {
        let kind = ScriptKind::detect(script.rel(), script.ast());
        let hooks = check_hooks(kind, script.ast()).map_err(|m| script.violation(m))?;
        let task = if kind == ScriptKind::Task {
            let scope = script.run_top_level()?;
            Some(task_spec(&scope).map_err(|m| script.violation(m))?)
        } else {
            None
        };
        let name = task.as_ref().map(|t| t.name.clone());
        let contract = Contract::new(kind.as_str(), PromptingTerms { kind, task, hooks });
        Ok(match name {
            Some(name) => contract.named(name),
            None => contract,
        })
    }
}

/// SN1's view of one script checked by [`PromptingContracts`].
pub trait PromptingScript {
    /// What kind of script it is (`None` when another contract set loaded it).
    fn script_kind(&self) -> Option<ScriptKind>;
    /// The task's declared metadata (tasks only).
    fn task_spec(&self) -> Option<&TaskSpec>;
    /// The optional hooks it defines (none when another contract set loaded it).
    fn hooks(&self) -> &HookSet;
}

const NO_HOOKS: HookSet = HookSet {
    reward: false,
    reward_answers: false,
    blacklist: false,
    priority: false,
    availability: false,
    select_uids: false,
    update_scores: false,
};

impl PromptingScript for Script {
    fn script_kind(&self) -> Option<ScriptKind> {
        self.terms::<PromptingTerms>().map(|t| t.kind)
    }

    fn task_spec(&self) -> Option<&TaskSpec> {
        self.terms::<PromptingTerms>().and_then(|t| t.task.as_ref())
    }

    fn hooks(&self) -> &HookSet {
        self.terms::<PromptingTerms>()
            .map_or(&NO_HOOKS, |t| &t.hooks)
    }
}

/// SN1's lookups on a host loaded with [`PromptingContracts`].
pub trait PromptingLookups {
    /// The live task scripts (the rotation).
    fn tasks(&self) -> Vec<Arc<Script>>;
    /// The live task whose `NAME` is `name`.
    fn task(&self, name: &str) -> Result<Arc<Script>, ScriptError>;
    /// The live persona script with file stem `name` (e.g. `human`).
    fn persona_script(&self, name: &str) -> Result<Arc<Script>, ScriptError>;
    /// The live miner strategy with file stem `name` (e.g. `echo`).
    fn strategy(&self, name: &str) -> Result<Arc<Script>, ScriptError>;
    /// The live validator hooks script (`scripts/validator.rhai`), if there is one.
    fn validator_hooks(&self) -> Option<Arc<Script>>;
}

impl PromptingLookups for ScriptHost {
    fn tasks(&self) -> Vec<Arc<Script>> {
        self.live(ScriptKind::Task.as_str())
    }

    fn task(&self, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.named(ScriptKind::Task.as_str(), name)
    }

    fn persona_script(&self, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.named(ScriptKind::Persona.as_str(), name)
    }

    fn strategy(&self, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.named(ScriptKind::Strategy.as_str(), name)
    }

    fn validator_hooks(&self) -> Option<Arc<Script>> {
        self.live(ScriptKind::Validator.as_str()).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(src: &str) -> Result<TaskSpec, String> {
        let engine = rhai::Engine::new();
        let mut scope = Scope::new();
        engine.run_with_scope(&mut scope, src).unwrap();
        task_spec(&scope)
    }

    #[test]
    fn reads_a_valid_spec() {
        let s = spec(r#"const NAME = "qa"; const WEIGHT = 2; const REWARDS = #{ "rouge-1": 0.5, relevance: 0.5 }; const PENALTIES = #{ "rouge-1": 0.5 };"#).unwrap();
        assert_eq!(s.name, "qa");
        assert_eq!(s.weight, 2.0);
        assert_eq!(s.rewards.rewards().len(), 2);
        assert_eq!(s.rewards.penalties()[0].weight, 0.5);
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            (
                r#"const NAME = "x";"#,
                "missing const WEIGHT, const REWARDS, const PENALTIES",
            ),
            (
                r#"const NAME = ""; const WEIGHT = 1; const REWARDS = #{diff: 1.0}; const PENALTIES = #{};"#,
                "NAME",
            ),
            (
                r#"const NAME = "x"; const WEIGHT = -1; const REWARDS = #{diff: 1.0}; const PENALTIES = #{};"#,
                "WEIGHT",
            ),
            (
                r#"const NAME = "x"; const WEIGHT = 1; const REWARDS = #{diff: 0.5}; const PENALTIES = #{};"#,
                "sum to 0.5, not 1",
            ),
            (
                r#"const NAME = "x"; const WEIGHT = 1; const REWARDS = #{bleu: 1.0}; const PENALTIES = #{};"#,
                "bleu",
            ),
            (
                r#"const NAME = "x"; const WEIGHT = 1; const REWARDS = #{diff: 1.0}; const PENALTIES = #{diff: 2};"#,
                "not in [0, 1]",
            ),
            (
                r#"const NAME = "x"; const WEIGHT = 1; const REWARDS = [1]; const PENALTIES = #{};"#,
                "constant object map",
            ),
        ];
        for (src, want) in cases {
            let err = spec(src).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn hooks_are_checked_by_name_and_arity() {
        let engine = rhai::Engine::new();
        let ast = engine.compile("fn generate(a, b) { }").unwrap();
        let err = check_hooks(ScriptKind::Task, &ast).unwrap_err();
        assert!(err.contains("fn generate(ctx)"), "{err}");
        let ast = engine.compile("fn persona(ctx) { }").unwrap();
        let err = check_hooks(ScriptKind::Persona, &ast).unwrap_err();
        assert!(err.contains("fn challenge(ctx, task, persona)"), "{err}");
        let ast = engine
            .compile("fn forward(ctx, s) { } fn priority(x) { }")
            .unwrap();
        let err = check_hooks(ScriptKind::Strategy, &ast).unwrap_err();
        assert!(err.contains("`priority` must take 2"), "{err}");
        let ast = engine
            .compile("fn forward(ctx, s) { } fn blacklist(c, r) { false }")
            .unwrap();
        let hooks = check_hooks(ScriptKind::Strategy, &ast).unwrap();
        assert!(hooks.blacklist && !hooks.priority);
        let ast = engine.compile("fn select_uids(ctx, m) { [] }").unwrap();
        let err = check_hooks(ScriptKind::Validator, &ast).unwrap_err();
        assert!(err.contains("`select_uids` must take 3"), "{err}");
        let ast = engine.compile("fn update_scores(c, s, r) { s }").unwrap();
        let hooks = check_hooks(ScriptKind::Validator, &ast).unwrap();
        assert!(hooks.update_scores && !hooks.select_uids);
    }

    #[test]
    fn only_scripts_validator_rhai_is_the_validator_script() {
        let ast = rhai::Engine::new().compile("fn f() {}").unwrap();
        let kind = |p: &str| ScriptKind::detect(Path::new(p), &ast);
        assert_eq!(kind("scripts/validator.rhai"), ScriptKind::Validator);
        assert_eq!(kind("scripts/finetune/validator.rhai"), ScriptKind::Library);
        assert_eq!(kind("tools/validator.rhai"), ScriptKind::Library);
    }
}

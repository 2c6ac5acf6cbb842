//! The script host: one configured engine, the compiled scripts of the roots, contract
//! checks, atomic reload and the typed hook calls the core uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rhai::{AST, Array, CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, INT, Map, Scope};
use walkdir::WalkDir;

use super::contract::{self, HookSet, ScriptKind, TaskSpec};
use super::ctx::Ctx;
use super::link::NeuronLink;
use super::resolver::{self, RootResolver};
use super::sandbox::{self, DeadlineGuard, Limits, WALL_TIME_TOKEN};
use super::services::Services;
use super::{SCRIPT_ROOTS, ScriptError, api};
use crate::chain::Metagraph;
use crate::score::Breakdown;

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The directory holding `tasks/`, `personas/`, `tools/` and `scripts/`.
    pub root: PathBuf,
    /// Sandbox limits for every call.
    pub limits: Limits,
    /// Values scripts read as `ctx.config`.
    pub config: Map,
}

impl HostConfig {
    /// Default limits and no config values, scripts under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            limits: Limits::default(),
            config: Map::new(),
        }
    }
}

/// One compiled, contract-checked script.
#[derive(Debug)]
pub struct Script {
    /// Canonical path of the file.
    pub path: PathBuf,
    /// Path relative to the script root (the file path itself when outside it).
    pub rel: PathBuf,
    /// What kind of script it is.
    pub kind: ScriptKind,
    /// Task metadata (tasks only).
    pub task: Option<TaskSpec>,
    /// Optional hooks it defines.
    pub hooks: HookSet,
    /// Files it imports, transitively (canonical paths).
    pub imports: BTreeSet<PathBuf>,
    /// When it was compiled.
    pub loaded_at: SystemTime,
    ast: AST,
}

impl Script {
    /// The task's `NAME`, else the file stem (personas, strategies and libraries are
    /// addressed by file stem).
    pub fn name(&self) -> String {
        match &self.task {
            Some(spec) => spec.name.clone(),
            None => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The outcome of the last (re)load of a file.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadStatus {
    /// The current version compiled and passed its contract.
    Ok,
    /// The last attempt failed (message); the previous good version, if any, serves.
    Rejected(String),
}

/// One row of [`ScriptHost::listing`].
#[derive(Debug, Clone)]
pub struct Listing {
    /// Path relative to the root.
    pub rel: PathBuf,
    /// The live version, if any version ever loaded.
    pub script: Option<Arc<Script>>,
    /// Outcome of the last load attempt.
    pub status: ReloadStatus,
}

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

#[derive(Debug)]
struct Entry {
    script: Option<Arc<Script>>,
    status: ReloadStatus,
}

struct Inner {
    engine: Engine,
    services: Arc<Services>,
    root: PathBuf,
    resolver: RootResolver,
    limits: Limits,
    config: Map,
    scripts: RwLock<BTreeMap<PathBuf, Entry>>,
    generation: AtomicU64,
}

/// The scripting host. Cheap to clone; clones share the engine and the scripts.
#[derive(Clone)]
pub struct ScriptHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHost")
            .field("root", &self.inner.root)
            .field("generation", &self.generation())
            .finish()
    }
}

const TOP_LEVEL: &str = "<top level>";

impl ScriptHost {
    /// Builds the engine and loads every script under the roots. Scripts that fail to
    /// load are reported by [`ScriptHost::listing`] (and logged), not fatal.
    pub fn new(config: HostConfig, services: Services) -> Result<Self, ScriptError> {
        let root = config
            .root
            .canonicalize()
            .map_err(|source| ScriptError::Io {
                path: config.root.clone(),
                source,
            })?;
        let mut engine = Engine::new();
        sandbox::apply(&mut engine, &config.limits);
        // `eval` would compile code at run time, outside the cache, contract checks and
        // the import restrictions: scripts have no use for it.
        engine.disable_symbol("eval");
        engine.set_module_resolver(RootResolver::new(root.clone()));
        engine.on_print(|s| tracing::info!(target: "neuron::script", "{s}"));
        engine.on_debug(|s, src, pos| {
            tracing::debug!(target: "neuron::script", "{}:{pos}: {s}", src.unwrap_or("?"))
        });
        Ctx::register(&mut engine);
        let services = Arc::new(services);
        api::register(&mut engine, services.clone());
        let host = Self {
            inner: Arc::new(Inner {
                engine,
                services,
                resolver: RootResolver::new(root.clone()),
                root,
                limits: config.limits,
                config: config.config,
                scripts: RwLock::new(BTreeMap::new()),
                generation: AtomicU64::new(0),
            }),
        };
        let files = host.scan();
        host.reload(&files);
        Ok(host)
    }

    /// The canonical script root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The config values scripts see as `ctx.config`.
    pub fn config(&self) -> &Map {
        &self.inner.config
    }

    /// A context for step `step` seeded with `seed`, carrying the host's config.
    pub fn ctx(&self, seed: u64, step: u64) -> Ctx {
        Ctx::new(seed, step, self.inner.config.clone())
    }

    /// Counts successful swaps and removals; changes whenever a live script changes.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// All `.rhai` files under the roots.
    pub fn scan(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in SCRIPT_ROOTS {
            let dir = self.inner.root.join(dir);
            for entry in WalkDir::new(&dir)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
            {
                if entry.file_type().is_file() && is_script(entry.path()) {
                    files.push(entry.path().to_path_buf());
                }
            }
        }
        files
    }

    fn rel(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.inner.root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf())
    }

    /// Compiles and contract-checks `path` without installing it.
    pub fn compile(&self, path: &Path) -> Result<Script, ScriptError> {
        let canonical = path.canonicalize().map_err(|source| ScriptError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let rel = self.rel(&canonical);
        let text = std::fs::read_to_string(&canonical).map_err(|source| ScriptError::Io {
            path: rel.clone(),
            source,
        })?;
        let engine = &self.inner.engine;
        let _deadline = DeadlineGuard::start(self.inner.limits.wall_time);
        let (compiled, imports) =
            resolver::record_imports(|| engine.compile_into_self_contained(&Scope::new(), &text));
        let mut ast = compiled.map_err(|e| self.compile_error(&rel, &e))?;
        ast.set_source(rel.to_string_lossy().as_ref());
        let kind = ScriptKind::detect(&rel, &ast);
        let contract_err = |message: String| ScriptError::Contract {
            file: rel.clone(),
            message,
        };
        let hooks = contract::check_hooks(kind, &ast).map_err(contract_err)?;
        let task = if kind == ScriptKind::Task {
            let mut scope = Scope::new();
            engine
                .run_ast_with_scope(&mut scope, &ast)
                .map_err(|e| self.runtime_error(&rel, TOP_LEVEL, &e))?;
            Some(contract::task_spec(&scope).map_err(contract_err)?)
        } else {
            None
        };
        Ok(Script {
            path: canonical,
            rel,
            kind,
            task,
            hooks,
            imports,
            loaded_at: SystemTime::now(),
            ast,
        })
    }

    /// Recompiles `changed` files and every loaded script importing one of them; files
    /// that no longer exist leave. Each success is swapped in atomically; a failure keeps
    /// the previous version live. Returns the outcome per affected file.
    pub fn reload(&self, changed: &[PathBuf]) -> Vec<(PathBuf, Result<(), ScriptError>)> {
        let changed: BTreeSet<PathBuf> = changed
            .iter()
            .filter(|p| is_script(p))
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .filter(|p| p.starts_with(&self.inner.root))
            .collect();
        let mut todo: BTreeSet<PathBuf> = BTreeSet::new();
        {
            let scripts = self.read();
            for (path, entry) in scripts.iter() {
                let importer = entry
                    .script
                    .as_ref()
                    .is_some_and(|s| s.imports.iter().any(|i| changed.contains(i)));
                if importer {
                    todo.insert(path.clone());
                }
            }
        }
        todo.extend(changed.iter().cloned());
        let mut outcomes = Vec::new();
        for path in todo {
            let rel = self.rel(&path);
            if !path.exists() {
                if self.write().remove(&path).is_some() {
                    self.inner.generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(file = %rel.display(), "script removed");
                }
                continue;
            }
            let result = self.compile(&path);
            let mut scripts = self.write();
            let entry = scripts.entry(path.clone()).or_insert(Entry {
                script: None,
                status: ReloadStatus::Ok,
            });
            match result {
                Ok(script) => {
                    tracing::debug!(file = %rel.display(), kind = script.kind.as_str(), "script loaded");
                    entry.script = Some(Arc::new(script));
                    entry.status = ReloadStatus::Ok;
                    self.inner.generation.fetch_add(1, Ordering::AcqRel);
                    outcomes.push((rel, Ok(())));
                }
                Err(err) => {
                    tracing::warn!(file = %rel.display(), "script rejected, previous version kept: {err}");
                    entry.status = ReloadStatus::Rejected(err.to_string());
                    outcomes.push((rel, Err(err)));
                }
            }
        }
        outcomes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<PathBuf, Entry>> {
        self.inner.scripts.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<PathBuf, Entry>> {
        self.inner
            .scripts
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Every known file with its live version and last load status.
    pub fn listing(&self) -> Vec<Listing> {
        self.read()
            .iter()
            .map(|(path, e)| Listing {
                rel: self.rel(path),
                script: e.script.clone(),
                status: e.status.clone(),
            })
            .collect()
    }

    fn live(&self, kind: ScriptKind) -> Vec<Arc<Script>> {
        self.read()
            .values()
            .filter_map(|e| e.script.clone())
            .filter(|s| s.kind == kind)
            .collect()
    }

    /// The live task scripts (the rotation).
    pub fn tasks(&self) -> Vec<Arc<Script>> {
        self.live(ScriptKind::Task)
    }

    fn named(&self, kind: ScriptKind, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.live(kind)
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| ScriptError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            })
    }

    /// The live task whose `NAME` is `name`.
    pub fn task(&self, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.named(ScriptKind::Task, name)
    }

    /// The live persona script with file stem `name` (e.g. `human`).
    pub fn persona_script(&self, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.named(ScriptKind::Persona, name)
    }

    /// The live miner strategy with file stem `name` (e.g. `echo`).
    pub fn strategy(&self, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.named(ScriptKind::Strategy, name)
    }

    /// The live validator hooks script (`scripts/validator.rhai`), if there is one.
    pub fn validator_hooks(&self) -> Option<Arc<Script>> {
        self.live(ScriptKind::Validator).into_iter().next()
    }

    /// Picks a task by weight from the live rotation, using `ctx`'s RNG; `weights`
    /// overrides a task's `WEIGHT` by name (config beats script defaults).
    pub fn pick_task(&self, ctx: &Ctx, weights: &BTreeMap<String, f64>) -> Option<Arc<Script>> {
        let tasks = self.tasks();
        let w: Vec<f64> = tasks
            .iter()
            .map(|t| {
                let name = t.name();
                weights
                    .get(&name)
                    .copied()
                    .unwrap_or_else(|| t.task.as_ref().map_or(0.0, |s| s.weight))
            })
            .collect();
        let i = ctx.rng.weighted_index(&w);
        usize::try_from(i).ok().map(|i| tasks[i].clone())
    }

    /// Calls `hook` in `script` under the sandbox limits. The script's `Arc` keeps the
    /// version it was called on alive until the call returns, whatever reloads happen.
    pub fn call(
        &self,
        script: &Script,
        hook: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        self.call_linked(None, script, hook, args)
    }

    /// [`ScriptHost::call`] for a hook given `ctx`: the `chain` and `dendrite` modules
    /// act for `ctx`'s neuron, if it has one.
    fn call_for(
        &self,
        ctx: &Ctx,
        script: &Script,
        hook: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        self.call_linked(ctx.link(), script, hook, args)
    }

    fn call_linked(
        &self,
        link: Option<&NeuronLink>,
        script: &Script,
        hook: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        let _deadline = DeadlineGuard::start(self.inner.limits.wall_time);
        let mut scope = Scope::new();
        let mut options = CallFnOptions::new();
        if let Some(link) = link {
            options = options.with_tag(link.clone());
        }
        self.inner
            .engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, &script.ast, hook, args)
            .map_err(|e| self.runtime_error(&script.rel, hook, &e))
    }

    /// Runs a task's `generate(ctx)` and checks its result.
    pub fn generate(&self, task: &Script, ctx: &Ctx) -> Result<TaskInstance, ScriptError> {
        let out = self.call_for(ctx, task, "generate", (ctx.clone(),))?;
        let bad = |found: String| ScriptError::BadReturn {
            file: task.rel.clone(),
            hook: "generate".into(),
            expected: "a map with string fields `query` and `reference`".into(),
            found,
        };
        let type_name = out.type_name().to_string();
        let fields: Map = out.try_cast::<Map>().ok_or_else(|| bad(type_name))?;
        let text = |key: &str| -> Result<String, ScriptError> {
            match fields.get(key) {
                Some(v) if v.is_string() => Ok(v.to_string()),
                Some(v) => Err(bad(format!("`{key}` of type {}", v.type_name()))),
                None => Err(bad(format!("a map without `{key}`"))),
            }
        };
        Ok(TaskInstance {
            task: task.name(),
            query: text("query")?,
            reference: text("reference")?,
            fields,
        })
    }

    /// Scores `completions` of a generated task: the task's own `reward(ctx, task,
    /// completions)` hook when it defines one (an array of numbers, one per completion;
    /// `task` is the generated map plus `challenge`), else its `REWARDS`/`PENALTIES` with
    /// SN1's combination. One [`Breakdown`] per completion.
    pub fn reward(
        &self,
        script: &Script,
        ctx: &Ctx,
        task: &TaskInstance,
        challenge: &str,
        completions: &[String],
    ) -> Result<Vec<Breakdown>, ScriptError> {
        let spec = script.task.as_ref().ok_or_else(|| ScriptError::NotFound {
            kind: "task",
            name: script.name(),
        })?;
        if script.hooks.reward {
            let mut fields = task.fields.clone();
            fields.insert("challenge".into(), challenge.into());
            let list: Array = completions.iter().map(|c| c.as_str().into()).collect();
            let out = self.call_for(ctx, script, "reward", (ctx.clone(), fields, list))?;
            let bad = |found: String| ScriptError::BadReturn {
                file: script.rel.clone(),
                hook: "reward".into(),
                expected: format!("an array of {} numbers", completions.len()),
                found,
            };
            let type_name = out.type_name().to_string();
            let values = out.try_cast::<Array>().ok_or_else(|| bad(type_name))?;
            if values.len() != completions.len() {
                return Err(bad(format!("{} values", values.len())));
            }
            return values
                .iter()
                .map(|v| {
                    let total = v
                        .as_float()
                        .ok()
                        .or_else(|| v.as_int().ok().map(|i| i as f64))
                        .ok_or_else(|| bad(format!("an element of type {}", v.type_name())))?;
                    Ok(Breakdown {
                        total,
                        components: Vec::new(),
                    })
                })
                .collect();
        }
        let refs: Vec<&str> = completions.iter().map(String::as_str).collect();
        let score_err = |message: String| ScriptError::Score {
            file: script.rel.clone(),
            message,
        };
        let result = if spec.rewards.needs_embedder() {
            let embedder = self.inner.services.embedder.get().map_err(score_err)?;
            let embed = |texts: &[&str]| embedder.embed(texts);
            spec.rewards
                .score(&task.reference, challenge, &refs, Some(&embed))
        } else {
            spec.rewards.score(&task.reference, challenge, &refs, None)
        };
        result.map_err(|e| score_err(e.to_string()))
    }

    /// Runs a persona script's `persona(ctx)`.
    pub fn persona(&self, script: &Script, ctx: &Ctx) -> Result<Map, ScriptError> {
        let out = self.call_for(ctx, script, "persona", (ctx.clone(),))?;
        let found = out.type_name().to_string();
        out.try_cast::<Map>().ok_or_else(|| ScriptError::BadReturn {
            file: script.rel.clone(),
            hook: "persona".into(),
            expected: "a map".into(),
            found,
        })
    }

    /// Runs `challenge(ctx, task, persona)`, returning the challenge text.
    pub fn challenge(
        &self,
        script: &Script,
        ctx: &Ctx,
        task: &TaskInstance,
        persona: &Map,
    ) -> Result<String, ScriptError> {
        let out = self.call_for(
            ctx,
            script,
            "challenge",
            (ctx.clone(), task.fields.clone(), persona.clone()),
        )?;
        self.string(script, "challenge", out)
    }

    /// Runs a strategy's `forward(ctx, synapse)`: the completion text. A map result is
    /// read for its `completion` field.
    pub fn forward(&self, script: &Script, ctx: &Ctx, synapse: Map) -> Result<String, ScriptError> {
        let out = self.call_for(ctx, script, "forward", (ctx.clone(), synapse))?;
        let out = match out.clone().try_cast::<Map>() {
            Some(map) => map.get("completion").cloned().unwrap_or(Dynamic::UNIT),
            None => out,
        };
        self.string(script, "forward", out)
    }

    /// Runs the strategy's `blacklist(ctx, request)` if it has one: `Some((true,
    /// reason))` rejects. A bool result has an empty reason; `[bool, reason]` or
    /// `#{blacklisted, reason}` carry one.
    pub fn blacklist(
        &self,
        script: &Script,
        ctx: &Ctx,
        request: Map,
    ) -> Result<Option<(bool, String)>, ScriptError> {
        if !script.hooks.blacklist {
            return Ok(None);
        }
        let out = self.call_for(ctx, script, "blacklist", (ctx.clone(), request))?;
        let parsed = if let Ok(b) = out.as_bool() {
            Some((b, String::new()))
        } else if let Some(arr) = out.clone().try_cast::<Array>() {
            match arr.as_slice() {
                [b, reason] => b.as_bool().ok().map(|b| (b, reason.to_string())),
                _ => None,
            }
        } else if let Some(map) = out.clone().try_cast::<Map>() {
            map.get("blacklisted")
                .and_then(|b| b.as_bool().ok())
                .map(|b| {
                    (
                        b,
                        map.get("reason").map(|r| r.to_string()).unwrap_or_default(),
                    )
                })
        } else {
            None
        };
        parsed.map(Some).ok_or_else(|| ScriptError::BadReturn {
            file: script.rel.clone(),
            hook: "blacklist".into(),
            expected: "a bool, [bool, reason] or #{blacklisted, reason}".into(),
            found: out.type_name().into(),
        })
    }

    /// Runs the strategy's `priority(ctx, request)` if it has one.
    pub fn priority(
        &self,
        script: &Script,
        ctx: &Ctx,
        request: Map,
    ) -> Result<Option<f64>, ScriptError> {
        if !script.hooks.priority {
            return Ok(None);
        }
        let out = self.call_for(ctx, script, "priority", (ctx.clone(), request))?;
        out.as_float()
            .ok()
            .or_else(|| out.as_int().ok().map(|i| i as f64))
            .map(Some)
            .ok_or_else(|| ScriptError::BadReturn {
                file: script.rel.clone(),
                hook: "priority".into(),
                expected: "a number".into(),
                found: out.type_name().into(),
            })
    }

    /// Runs the validator's `select_uids(ctx, metagraph, k)` if `script` defines it:
    /// the uids to query this step. `metagraph` goes in as rows (see the `chain`
    /// module); the result must be at most `k` distinct uids registered in it.
    pub fn select_uids(
        &self,
        script: &Script,
        ctx: &Ctx,
        metagraph: &Metagraph,
        k: usize,
    ) -> Result<Option<Vec<u16>>, ScriptError> {
        if !script.hooks.select_uids {
            return Ok(None);
        }
        let rows = api::metagraph_rows(metagraph);
        let k_int = INT::try_from(k).unwrap_or(INT::MAX);
        let out = self.call_for(ctx, script, "select_uids", (ctx.clone(), rows, k_int))?;
        let registered = metagraph.neurons.len();
        let bad = |found: String| ScriptError::BadReturn {
            file: script.rel.clone(),
            hook: "select_uids".into(),
            expected: format!("an array of at most {k} distinct uids in 0..{registered}"),
            found,
        };
        let type_name = out.type_name().to_string();
        let items = out.try_cast::<Array>().ok_or_else(|| bad(type_name))?;
        if items.len() > k {
            return Err(bad(format!("{} uids", items.len())));
        }
        let mut seen = BTreeSet::new();
        let mut uids = Vec::with_capacity(items.len());
        for item in &items {
            let uid = item
                .as_int()
                .map_err(|t| bad(format!("an element of type {t}")))?;
            let uid = u16::try_from(uid)
                .ok()
                .filter(|&u| usize::from(u) < registered)
                .ok_or_else(|| bad(format!("uid {uid}, which is not registered")))?;
            if !seen.insert(uid) {
                return Err(bad(format!("uid {uid} twice")));
            }
            uids.push(uid);
        }
        Ok(Some(uids))
    }

    /// Runs the validator's `update_scores(ctx, scores, rewards)` if `script` defines
    /// it: `scores` per uid, `rewards` one `#{ uid, reward }` per queried uid. The
    /// result must be one finite, non-negative number per uid of `scores`.
    pub fn update_scores(
        &self,
        script: &Script,
        ctx: &Ctx,
        scores: &[f64],
        uids: &[u16],
        rewards: &[f64],
    ) -> Result<Option<Vec<f64>>, ScriptError> {
        if !script.hooks.update_scores {
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
        let out = self.call_for(
            ctx,
            script,
            "update_scores",
            (ctx.clone(), score_list, reward_list),
        )?;
        let bad = |found: String| ScriptError::BadReturn {
            file: script.rel.clone(),
            hook: "update_scores".into(),
            expected: format!("an array of {} finite numbers ≥ 0", scores.len()),
            found,
        };
        let type_name = out.type_name().to_string();
        let items = out.try_cast::<Array>().ok_or_else(|| bad(type_name))?;
        if items.len() != scores.len() {
            return Err(bad(format!("{} values", items.len())));
        }
        items
            .iter()
            .map(|item| match contract::number(item) {
                Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
                Some(x) => Err(bad(format!("the value {x}"))),
                None => Err(bad(format!("an element of type {}", item.type_name()))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn string(&self, script: &Script, hook: &str, out: Dynamic) -> Result<String, ScriptError> {
        if out.is_string() {
            Ok(out.to_string())
        } else {
            Err(ScriptError::BadReturn {
                file: script.rel.clone(),
                hook: hook.into(),
                expected: "a string".into(),
                found: out.type_name().into(),
            })
        }
    }

    fn compile_error(&self, rel: &Path, err: &EvalAltResult) -> ScriptError {
        let (file, pos, message) = innermost(err, rel, &self.inner.resolver, rhai::Position::NONE);
        ScriptError::Compile {
            file,
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message,
        }
    }

    fn runtime_error(&self, rel: &Path, hook: &str, err: &EvalAltResult) -> ScriptError {
        if is_timeout(err) {
            return ScriptError::Timeout {
                file: rel.to_path_buf(),
                hook: hook.into(),
                limit: self.inner.limits.wall_time,
            };
        }
        let (file, pos, message) = innermost(err, rel, &self.inner.resolver, rhai::Position::NONE);
        ScriptError::Runtime {
            file,
            hook: hook.into(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message,
        }
    }
}

fn is_script(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rhai")
}

fn is_timeout(err: &EvalAltResult) -> bool {
    match err {
        EvalAltResult::ErrorTerminated(token, _) => token
            .clone()
            .into_immutable_string()
            .is_ok_and(|s| s == WALL_TIME_TOKEN),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => is_timeout(inner),
        _ => false,
    }
}

/// The innermost error with the file it happened in (a function's source, or an
/// imported module) and its position.
fn innermost(
    err: &EvalAltResult,
    rel: &Path,
    resolver: &RootResolver,
    fallback: rhai::Position,
) -> (PathBuf, rhai::Position, String) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, source, inner, pos) => {
            let file = if source.is_empty() {
                rel.to_path_buf()
            } else {
                PathBuf::from(source)
            };
            innermost(inner, &file, resolver, *pos)
        }
        EvalAltResult::ErrorInModule(module, inner, pos) => {
            let file = resolver
                .locate(module)
                .map(|p| PathBuf::from(resolver.relative(&p)))
                .unwrap_or_else(|_| PathBuf::from(module));
            innermost(inner, &file, resolver, *pos)
        }
        other => {
            let mut message = other.to_string();
            // Rhai appends " (line L, position C)"; we report the position ourselves.
            if let Some(i) = message.rfind(" (line ") {
                message.truncate(i);
            }
            let pos = if other.position().is_none() {
                fallback
            } else {
                other.position()
            };
            (rel.to_path_buf(), pos, message)
        }
    }
}

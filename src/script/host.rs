//! The script host: one configured engine, the compiled scripts of the roots, each checked
//! by the domain's [`Contracts`], lookups by kind and name, atomic reload, the sandboxed
//! hook call and its typed-return helpers. It knows no subnet: each domain
//! (`prompting::contract` and `prompting::hooks`, `finetune::policy`) defines its
//! contracts and hooks' types and calls them through [`ScriptHost::call_as`] /
//! [`Script::returned`].

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Map, Scope};
use serde::de::DeserializeOwned;

use super::contract::{Candidate, Contracts};
use super::ctx::Ctx;
use super::hook_thread::on_hook_thread;
use super::link::NeuronLink;
use super::resolver::{self, RootResolver};
use super::roots::{Roots, is_script};
use super::sandbox::{self, Exceeded, HookGuard, Limits};
use super::services::Services;
use super::{ScriptError, api, builtins};

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The script roots, lowest priority first (see [`Roots`]).
    pub roots: Vec<PathBuf>,
    /// Sandbox limits for every call.
    pub limits: Limits,
    /// Values scripts read as `ctx.config`.
    pub config: Map,
}

impl HostConfig {
    /// Default limits and no config values, scripts under the one root `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::overlay(vec![root.into()])
    }

    /// Default limits and no config values, scripts under `roots` (lowest priority
    /// first: a later root's file replaces an earlier one's at the same path).
    pub fn overlay(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
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
    /// Path relative to its script root (the file path itself when outside the roots).
    pub rel: PathBuf,
    /// What kind of script it is, as its domain's [`Contracts`] named it.
    pub kind: &'static str,
    /// Files it imports, transitively (canonical paths).
    pub imports: BTreeSet<PathBuf>,
    /// When it was compiled.
    pub loaded_at: SystemTime,
    name: Option<String>,
    terms: Arc<dyn Any + Send + Sync>,
    ast: AST,
}

impl Script {
    /// The name its contract gave it, else its file stem.
    pub fn name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// The domain's terms for this script, if they are a `T` (see [`Contracts`]).
    pub fn terms<T: Any>(&self) -> Option<&T> {
        self.terms.downcast_ref::<T>()
    }

    /// The error for `hook` of this script returning `found` where the contract
    /// `expected` something else.
    pub fn bad_return(
        &self,
        hook: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> ScriptError {
        ScriptError::BadReturn {
            file: self.rel.clone(),
            hook: hook.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// Converts what `hook` returned into `T` through [`rhai::serde::from_dynamic`]
    /// (use [`Number`] where a float or an integer will do); on a mismatch,
    /// [`Script::bad_return`] naming the value's type and what did not fit.
    pub fn returned<T: DeserializeOwned>(
        &self,
        hook: &str,
        out: &Dynamic,
        expected: &str,
    ) -> Result<T, ScriptError> {
        rhai::serde::from_dynamic(out).map_err(|err| {
            self.bad_return(
                hook,
                expected,
                format!("{} ({})", out.type_name(), serde_message(&err)),
            )
        })
    }
}

/// The message of a serde conversion error, without Rhai's wrapping and position.
fn serde_message(err: &EvalAltResult) -> String {
    let message = match err {
        EvalAltResult::ErrorParsing(
            rhai::ParseErrorType::BadInput(rhai::LexError::ImproperSymbol(_, m)),
            _,
        ) => m.clone(),
        // Rhai's deserializer names the Rust target first, the value's type second.
        EvalAltResult::ErrorMismatchOutputType(target, actual, _) => {
            format!("{actual} where {target} is needed")
        }
        other => other.to_string(),
    };
    match message.rfind(" (line ") {
        Some(i) => message[..i].to_string(),
        None => message,
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
    /// Path relative to its root.
    pub rel: PathBuf,
    /// The canonical script root the file comes from.
    pub root: PathBuf,
    /// The live version, if any version ever loaded.
    pub script: Option<Arc<Script>>,
    /// Outcome of the last load attempt.
    pub status: ReloadStatus,
}

#[derive(Debug)]
struct Entry {
    script: Option<Arc<Script>>,
    status: ReloadStatus,
}

struct Inner {
    engine: Engine,
    services: Arc<Services>,
    contracts: Arc<dyn Contracts>,
    roots: Roots,
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
            .field("roots", &self.inner.roots.dirs())
            .field("generation", &self.generation())
            .finish()
    }
}

const TOP_LEVEL: &str = "<top level>";

impl ScriptHost {
    /// Builds the engine and loads every script under the roots, each checked by
    /// `contracts`. Scripts that fail to load are reported by [`ScriptHost::listing`]
    /// (and logged), not fatal.
    pub fn new(
        config: HostConfig,
        services: Services,
        contracts: impl Contracts,
    ) -> Result<Self, ScriptError> {
        let roots = Roots::new(&config.roots)?;
        let mut engine = Engine::new();
        sandbox::apply(&mut engine, &config.limits);
        builtins::register(&mut engine);
        // `eval` would compile code at run time, outside the cache, contract checks and
        // the import restrictions: scripts have no use for it.
        engine.disable_symbol("eval");
        engine.set_module_resolver(RootResolver::new(roots.clone(), config.limits.max_modules));
        engine.on_print(|s| {
            if let Some(line) = sandbox::log_line(s) {
                tracing::info!(target: "neuron::script", "{line}")
            }
        });
        engine.on_debug(|s, src, pos| {
            if let Some(line) = sandbox::log_line(s) {
                tracing::debug!(target: "neuron::script", "{}:{pos}: {line}", src.unwrap_or("?"))
            }
        });
        Ctx::register(&mut engine);
        let services = Arc::new(services);
        api::register(&mut engine, services.clone());
        let host = Self {
            inner: Arc::new(Inner {
                engine,
                services,
                contracts: Arc::new(contracts),
                resolver: RootResolver::new(roots.clone(), config.limits.max_modules),
                roots,
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

    /// The canonical script roots, lowest priority first.
    pub fn roots(&self) -> &[PathBuf] {
        self.inner.roots.dirs()
    }

    /// The services behind the API modules (models, corpus, HTTP, sources), for hook
    /// adapters that score or embed on the scripts' behalf.
    pub fn services(&self) -> &Services {
        &self.inner.services
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

    /// The live `.rhai` files of the roots: per relative path, the highest-priority
    /// root's file.
    pub fn scan(&self) -> Vec<PathBuf> {
        self.inner.roots.scan()
    }

    /// `path` relative to its root, and that root (the path itself and its parent when
    /// outside every root).
    fn locate(&self, path: &Path) -> (PathBuf, PathBuf) {
        match self.inner.roots.split(path) {
            Some((root, rel)) => (rel, root.to_path_buf()),
            None => (
                path.to_path_buf(),
                path.parent().unwrap_or(Path::new("")).to_path_buf(),
            ),
        }
    }

    fn rel(&self, path: &Path) -> PathBuf {
        self.locate(path).0
    }

    /// Compiles and contract-checks `path` without installing it. Imported modules'
    /// top levels run, on a hook thread under one hook's budget.
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
        let (ast, imports, contract) = self.on_hook_thread(|| {
            let _budget = HookGuard::start(&self.inner.limits);
            let (compiled, imports) = resolver::record_imports(&canonical, || {
                engine.compile_into_self_contained(&Scope::new(), &text)
            });
            let mut ast = compiled.map_err(|e| self.compile_error(&rel, &e))?;
            ast.set_source(rel.to_string_lossy().as_ref());
            let contract = self.inner.contracts.check(&Candidate {
                top_level: &|| self.run_top_level(&rel, &ast),
                rel: &rel,
                ast: &ast,
            })?;
            Ok((ast, imports, contract))
        })??;
        Ok(Script {
            path: canonical,
            rel,
            kind: contract.kind,
            name: contract.name,
            terms: contract.terms,
            imports,
            loaded_at: SystemTime::now(),
            ast,
        })
    }

    /// Runs `ast`'s top level (under the caller's deadline) and returns its scope.
    pub(super) fn run_top_level(
        &self,
        rel: &Path,
        ast: &AST,
    ) -> Result<Scope<'static>, ScriptError> {
        self.on_hook_thread(|| {
            let mut scope = Scope::new();
            let ran = self.inner.engine.run_ast_with_scope(&mut scope, ast);
            self.within_limits(rel, TOP_LEVEL, ran)?;
            Ok(scope)
        })?
    }

    /// [`on_hook_thread`], a thread that fails to start being an error of the host.
    fn on_hook_thread<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, ScriptError> {
        on_hook_thread(work).map_err(|source| ScriptError::HookThread { source })
    }

    /// Recompiles `changed` files and every loaded script importing one of them; files
    /// that no longer exist leave. A file a higher-priority root adds shadows (removes)
    /// the lower root's file at that path, and removing it brings that file back. Each
    /// success is swapped in atomically; a failure keeps the previous version live.
    /// Returns the outcome per compiled file.
    pub fn reload(&self, changed: &[PathBuf]) -> Vec<(PathBuf, Result<(), ScriptError>)> {
        let roots = &self.inner.roots;
        let changed: BTreeSet<PathBuf> = changed
            .iter()
            .filter(|p| is_script(p))
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .filter(|p| roots.split(p).is_some())
            .collect();
        let mut todo: BTreeSet<PathBuf> = BTreeSet::new();
        let mut importers: BTreeSet<PathBuf> = BTreeSet::new();
        {
            let scripts = self.read();
            // Every file at a changed relative path: the new winner and the loaded ones.
            for path in &changed {
                let rel = self.rel(path);
                todo.insert(path.clone());
                todo.extend(roots.find(&rel));
                todo.extend(scripts.keys().filter(|p| self.rel(p) == rel).cloned());
            }
            for (path, entry) in scripts.iter() {
                let importer = entry
                    .script
                    .as_ref()
                    .is_some_and(|s| s.imports.iter().any(|i| todo.contains(i)));
                if importer && !todo.contains(path) {
                    importers.insert(path.clone());
                }
            }
        }
        let mut outcomes = Vec::new();
        // The files that now win their relative path first, then the ones that left or
        // are shadowed (so that the listing always holds a file at each path), their
        // importers last: an importer that goes live already finds what it imports.
        let wins = |path: &PathBuf| roots.find(&self.rel(path)).as_ref() == Some(path);
        let (winners, losers): (Vec<_>, Vec<_>) = todo
            .into_iter()
            .map(|path| (wins(&path), path))
            .partition(|(won, _)| *won);
        let importers = importers.into_iter().map(|path| (wins(&path), path));
        for (won, path) in winners.into_iter().chain(losers).chain(importers) {
            let rel = self.rel(&path);
            if !won {
                if self.write().remove(&path).is_some() {
                    self.inner.generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(file = %path.display(), "script removed or shadowed");
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
                    tracing::debug!(file = %rel.display(), kind = script.kind, "script loaded");
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
                root: self.locate(path).1,
                script: e.script.clone(),
                status: e.status.clone(),
            })
            .collect()
    }

    /// The live scripts of `kind`.
    pub fn live(&self, kind: &str) -> Vec<Arc<Script>> {
        self.read()
            .values()
            .filter_map(|e| e.script.clone())
            .filter(|s| s.kind == kind)
            .collect()
    }

    /// The live script of `kind` named `name` ([`Script::name`]).
    pub fn named(&self, kind: &'static str, name: &str) -> Result<Arc<Script>, ScriptError> {
        self.live(kind)
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| ScriptError::NotFound {
                kind,
                name: name.to_string(),
            })
    }

    /// Calls `hook` in `script` under the sandbox limits, on a hook thread
    /// ([`HOOK_STACK_BYTES`](super::HOOK_STACK_BYTES)) with its own budget. The
    /// script's `Arc` keeps the version it was called on alive until the call returns,
    /// whatever reloads happen.
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
    pub fn call_for(
        &self,
        ctx: &Ctx,
        script: &Script,
        hook: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        self.call_linked(ctx.link(), script, hook, args)
    }

    /// [`ScriptHost::call`] with `link` lent to the `chain` and `dendrite` modules for
    /// the duration of the call (none: they answer with an error).
    fn call_linked(
        &self,
        link: Option<&NeuronLink>,
        script: &Script,
        hook: &str,
        args: impl FuncArgs,
    ) -> Result<Dynamic, ScriptError> {
        let mut values: Vec<Dynamic> = Vec::new();
        args.parse(&mut values);
        self.on_hook_thread(|| {
            let _budget = HookGuard::start(&self.inner.limits);
            let mut scope = Scope::new();
            let mut options = CallFnOptions::new();
            if let Some(link) = link {
                options = options.with_tag(link.clone());
            }
            let out = self.within_limits(
                &script.rel,
                hook,
                self.inner.engine.call_fn_with_options::<Dynamic>(
                    options,
                    &mut scope,
                    &script.ast,
                    hook,
                    values,
                ),
            )?;
            // Dropping or converting a value recurses through its nesting: a deeper one
            // is dropped here, on the hook's stack, and never reaches the caller's.
            if let Err(over) = sandbox::check_leaving(&out) {
                return Err(script.bad_return(hook, "a value within the script limits", over));
            }
            Ok(out)
        })?
    }

    /// [`ScriptHost::call_for`] with the return value converted into `T` by
    /// [`Script::returned`]: a value of another shape is [`ScriptError::BadReturn`]
    /// saying what the contract `expected`.
    pub fn call_as<T: DeserializeOwned>(
        &self,
        ctx: &Ctx,
        script: &Script,
        hook: &str,
        args: impl FuncArgs,
        expected: &str,
    ) -> Result<T, ScriptError> {
        let out = self.call_for(ctx, script, hook, args)?;
        script.returned(hook, &out, expected)
    }

    fn compile_error(&self, rel: &Path, err: &EvalAltResult) -> ScriptError {
        let (file, pos, message) = self.describe(rel, err);
        ScriptError::Compile {
            file,
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message,
        }
    }

    fn runtime_error(&self, rel: &Path, hook: &str, err: &EvalAltResult) -> ScriptError {
        let (file, pos, message) = self.describe(rel, err);
        if Exceeded::of(err) == Some(Exceeded::WallTime) {
            return ScriptError::Timeout {
                file,
                hook: hook.into(),
                line: pos.line().unwrap_or(0),
                limit: self.inner.limits.wall_time,
            };
        }
        ScriptError::Runtime {
            file,
            hook: hook.into(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message,
        }
    }

    /// The file, position and message of `err`, a limit described by its setting.
    fn describe(&self, rel: &Path, err: &EvalAltResult) -> (PathBuf, rhai::Position, String) {
        let (file, pos, message) = innermost(err, rel, &self.inner.resolver, rhai::Position::NONE);
        match Exceeded::of(err) {
            Some(limit) => (file, pos, limit.describe(&self.inner.limits)),
            None => (file, pos, message),
        }
    }

    /// `result` of a hook or top level as the host reports it: an error as a
    /// [`ScriptError`], and a success after a limit was passed (the script caught the
    /// report) as that limit's error.
    fn within_limits<T>(
        &self,
        rel: &Path,
        hook: &str,
        result: Result<T, Box<EvalAltResult>>,
    ) -> Result<T, ScriptError> {
        let result = result.and_then(|out| match sandbox::exceeded() {
            Some(limit) => Err(EvalAltResult::ErrorRuntime(
                rhai::Dynamic::from(limit),
                rhai::Position::NONE,
            )
            .into()),
            None => Ok(out),
        });
        result.map_err(|e| self.runtime_error(rel, hook, &e))
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

//! Script contracts, generically: the [`Contracts`] a domain gives the host decide, for
//! each compiled script, its kind and the domain's terms (what it declares), or reject it
//! with a contract violation. The host stores the outcome on the [`Script`](super::Script) and looks
//! scripts up by kind and name; only the domain reads its terms back
//! ([`Script::terms`](super::Script::terms)). [`Libraries`] is the set where every script is a plain library.
//! Also the helpers contract checks share: [`has_fn`], [`require_fn`], [`number`].

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use rhai::{AST, Scope};

use super::ScriptError;

/// A domain's contracts: given to [`ScriptHost::new`](super::ScriptHost::new), asked about every script it loads.
pub trait Contracts: Send + Sync + 'static {
    /// Classifies and checks a compiled script: its [`Contract`], or an error that
    /// rejects it (usually [`Candidate::violation`]).
    fn check(&self, script: &Candidate<'_>) -> Result<Contract, ScriptError>;
}

/// What a script is under its domain's contracts.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The kind, for lookups ([`ScriptHost::live`](super::ScriptHost::live), [`ScriptHost::named`](super::ScriptHost::named)), listings and
    /// messages (e.g. `"library"`).
    pub kind: &'static str,
    /// The name it is looked up by; `None`: its file stem.
    pub name: Option<String>,
    /// The domain's terms, read back with [`Script::terms`](super::Script::terms).
    pub terms: Arc<dyn Any + Send + Sync>,
}

impl Contract {
    /// A contract of `kind` carrying `terms`, addressed by file stem.
    pub fn new(kind: &'static str, terms: impl Any + Send + Sync) -> Self {
        Self {
            kind,
            name: None,
            terms: Arc::new(terms),
        }
    }

    /// The same contract, addressed by `name` instead of the file stem.
    pub fn named(mut self, name: String) -> Self {
        self.name = Some(name);
        self
    }
}

/// The contract set where every script is a plain library (kind `"library"`, no terms),
/// for hosts that compile the files they call themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Libraries;

impl Contracts for Libraries {
    fn check(&self, _script: &Candidate<'_>) -> Result<Contract, ScriptError> {
        Ok(Contract::new("library", ()))
    }
}

/// A compiled script awaiting its contract check.
pub struct Candidate<'a> {
    /// Runs the top level under the host's sandbox.
    pub(super) top_level: &'a dyn Fn() -> Result<Scope<'static>, ScriptError>,
    pub(super) rel: &'a Path,
    pub(super) ast: &'a AST,
}

impl Candidate<'_> {
    /// Path relative to the script root (the file path itself when outside it).
    pub fn rel(&self) -> &Path {
        self.rel
    }

    /// The compiled script.
    pub fn ast(&self) -> &AST {
        self.ast
    }

    /// Runs the script's top level under the sandbox and returns the scope it leaves
    /// (its constants).
    pub fn run_top_level(&self) -> Result<Scope<'static>, ScriptError> {
        (self.top_level)()
    }

    /// [`ScriptError::Contract`] for this file with `message`.
    pub fn violation(&self, message: impl Into<String>) -> ScriptError {
        ScriptError::Contract {
            file: self.rel.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Whether `ast` defines `name` with `arity` parameters.
pub fn has_fn(ast: &AST, name: &str, arity: usize) -> bool {
    ast.iter_functions()
        .any(|f| f.name == name && f.params.len() == arity)
}

/// Adds `fn name(params…)` to `missing` unless `ast` defines `name` with that many
/// parameters.
pub fn require_fn(ast: &AST, name: &str, params: &[&str], missing: &mut Vec<String>) {
    if !has_fn(ast, name, params.len()) {
        missing.push(format!("fn {name}({})", params.join(", ")));
    }
}

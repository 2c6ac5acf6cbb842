//! The Rhai scripting host: one sandboxed [`rhai::Engine`], an overlay of script roots
//! ([`Roots`], each holding [`SCRIPT_ROOTS`]; the [`shipped`] set first), contract checks through the domain's [`Contracts`], hot reload,
//! the sandboxed hook call with typed-return helpers, and the API modules scripts call
//! (`llm`, `embed`, `score`, `http`, `corpus`, `source`, `rng`, `log`, `time`, and inside
//! a neuron `chain` and `dendrite`). A subnet's contracts and typed hooks live with the
//! subnet (`prompting::contract`, `prompting::hooks`, `finetune::policy`).
//!
//! Scripts are untrusted: every hook runs on a hook thread ([`HOOK_STACK_BYTES`]) under
//! [`Limits`] (operations, call and expression depth, sizes, imports, wall time passed
//! down to model and HTTP calls, a memory budget, a log allowance) and reaches the
//! outside world only through the registered API modules. A failing hook fails that
//! one call with a [`ScriptError`], never the host.

mod api;
mod builtins;
mod contract;
mod ctx;
mod hook_thread;
mod host;
mod link;
mod reload;
mod resolver;
mod roots;
mod sandbox;
mod services;
pub mod shipped;
mod value;

use std::path::PathBuf;
use std::time::Duration;

pub use api::metagraph_rows;
pub use contract::{Candidate, Contract, Contracts, Libraries, has_fn, require_fn};
pub use ctx::{ChatScope, Ctx, Rng, SamplingOverrides};
pub use hook_thread::HOOK_STACK_BYTES;
pub use host::{HostConfig, Listing, ReloadStatus, Script, ScriptHost};
pub use link::NeuronLink;
pub use reload::Watcher;
pub use roots::{Roots, configured_roots};
pub use sandbox::{Limits, MAX_RETURNED_NESTING};
pub use services::{Lazy, ModelSettings, Services};
pub use value::{Number, number};

/// The directories under each script root that hold scripts, in lookup order: the ones
/// scanned, watched and allowed as import prefixes.
pub const SCRIPT_ROOTS: [&str; 4] = ["tasks", "personas", "tools", "scripts"];

/// Errors of the scripting host.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script does not parse (or an import it names fails to load).
    #[error("{file}:{line}:{column}: {message}")]
    Compile {
        /// File, relative to the script root where possible.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What went wrong.
        message: String,
    },
    /// The script compiles but does not satisfy its contract.
    #[error("{file}: contract violation: {message}")]
    Contract {
        /// File, relative to the script root where possible.
        file: PathBuf,
        /// What is missing or wrong.
        message: String,
    },
    /// A hook raised an error or hit a sandbox limit.
    #[error("{file}:{line}:{column}: in `{hook}`: {message}")]
    Runtime {
        /// File the hook lives in.
        file: PathBuf,
        /// Hook (function) name.
        hook: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// The script error.
        message: String,
    },
    /// A hook ran past its wall-time limit.
    #[error("{file}:{line}: `{hook}` exceeded its wall-time limit of {limit:?}")]
    Timeout {
        /// File the hook was running in when it ran out of time.
        file: PathBuf,
        /// Hook (function) name.
        hook: String,
        /// 1-based line it was running (0 when unknown).
        line: usize,
        /// The limit it ran past.
        limit: Duration,
    },
    /// A hook returned a value of the wrong shape.
    #[error("{file}: `{hook}` returned {found}; expected {expected}")]
    BadReturn {
        /// File the hook lives in.
        file: PathBuf,
        /// Hook (function) name.
        hook: String,
        /// What the contract requires.
        expected: String,
        /// What came back.
        found: String,
    },
    /// No loaded script of that kind has that name.
    #[error("no {kind} script named `{name}` is loaded")]
    NotFound {
        /// Script kind, as the domain's contracts name it.
        kind: &'static str,
        /// The requested name.
        name: String,
    },
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A domain's adapter failed on the script's behalf (e.g. scoring its results).
    #[error("{file}: {message}")]
    Domain {
        /// The script file.
        file: PathBuf,
        /// What went wrong, prefixed by what the adapter was doing.
        message: String,
    },
    /// No thread could be started to run a script on.
    #[error("cannot start a script hook thread: {source}")]
    HookThread {
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file watcher could not be started.
    #[error("watching {path}: {source}")]
    Watch {
        /// The watched directory.
        path: PathBuf,
        /// The underlying error.
        source: notify::Error,
    },
}

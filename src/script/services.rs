//! The core services behind the script API modules. Heavy ones (models, corpora) load
//! lazily on first use, so a host that only runs the math task never loads a model.

use std::fmt;
use std::sync::{Arc, OnceLock};

use std::path::PathBuf;

use super::corpus::Corpus;
use super::http::{HttpClient, HttpConfig};
use super::source::SourceTree;

type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// A value loaded once, on first use, by a loader closure. A failed load is remembered
/// and reported on every later use (no retry storm inside a step loop).
pub struct Lazy<T> {
    cell: OnceLock<Result<Arc<T>, String>>,
    loader: Loader<T>,
}

impl<T> Lazy<T> {
    /// A lazy value produced by `loader` (its error message is shown to scripts).
    pub fn new(loader: impl Fn() -> Result<T, String> + Send + Sync + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            loader: Box::new(loader),
        }
    }

    /// An already-loaded value.
    pub fn ready(value: T) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(Ok(Arc::new(value)));
        Self {
            cell,
            loader: Box::new(|| Err("unreachable: value preloaded".into())),
        }
    }

    /// A value that is not available, with the reason shown to scripts that ask for it.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(move || Err(reason.clone()))
    }

    /// The value, loading it now if needed.
    pub fn get(&self) -> Result<Arc<T>, String> {
        self.cell
            .get_or_init(|| (self.loader)().map(Arc::new))
            .clone()
    }
}

impl<T> fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.cell.get() {
            None => "not loaded",
            Some(Ok(_)) => "loaded",
            Some(Err(_)) => "failed",
        };
        f.debug_struct("Lazy").field("state", &state).finish()
    }
}

/// Everything the API modules adapt: built once per host.
#[derive(Debug)]
pub struct Services {
    /// The offline Wikipedia vital-articles corpus (`corpus` module).
    pub wiki: Lazy<Corpus>,
    /// Allowlisted, cached HTTP GET (`http` module).
    pub http: HttpClient,
    /// Read-only source files under configured roots (`source` module).
    pub source: SourceTree,
}

/// Most source files the `source` module lists.
pub const SOURCE_MAX_FILES: usize = 5000;
/// Largest source file the `source` module reads, in bytes.
pub const SOURCE_MAX_BYTES: u64 = 256 * 1024;

impl Services {
    /// Services with `http` settings, `source_roots` for the `source` module and the
    /// `wiki` corpus loader.
    pub fn new(http: HttpConfig, source_roots: Vec<PathBuf>, wiki: Lazy<Corpus>) -> Self {
        Self {
            wiki,
            http: HttpClient::new(http),
            source: SourceTree::new(source_roots, SOURCE_MAX_FILES, SOURCE_MAX_BYTES),
        }
    }
}

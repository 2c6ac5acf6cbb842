//! The core services behind the script API modules. Heavy ones (models, corpora) load
//! lazily on first use, so a host that only runs the math task never loads a model.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::embed::Embedder;
use crate::inference::{ChatBackend, EmbedBackend, RemoteClient, RemoteConfig};
use crate::llm::{DeviceSpec, LlmService, LoadOptions};
use crate::models::Resolver;
use crate::services::{Corpus, HttpClient, HttpConfig, SourceTree};

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

/// Which models the services run: the resolver ids of the default artifacts, the device
/// they run on, the chat batch size, and the inference servers that replace them when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSettings {
    /// Chat model (`llm` module).
    pub llm: String,
    /// Sentence-embedding model (`embed` module, `relevance` reward).
    pub embedder: String,
    /// Offline Wikipedia corpus (`corpus::*("wiki")`).
    pub wiki: String,
    /// Where the chat model and the embedder run (`neuron.device`).
    pub device: DeviceSpec,
    /// Chat requests decoded together (`neuron.llm_max_batch`).
    pub llm_max_batch: usize,
    /// The chat model's server instead of `llm` (`neuron.llm_endpoint`).
    pub llm_remote: Option<RemoteConfig>,
    /// The embedder's server instead of `embedder` (`neuron.embed_endpoint`).
    pub embed_remote: Option<RemoteConfig>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            llm: "smollm2-135m-instruct".into(),
            embedder: "all-minilm-l6-v2".into(),
            wiki: "wiki-vital-summaries".into(),
            device: DeviceSpec::Cpu,
            llm_max_batch: LoadOptions::default().max_batch,
            llm_remote: None,
            embed_remote: None,
        }
    }
}

/// Most source files the `source` module lists.
pub const SOURCE_MAX_FILES: usize = 5000;
/// Largest source file the `source` module reads, in bytes.
pub const SOURCE_MAX_BYTES: u64 = 256 * 1024;

/// Everything the API modules adapt: built once per host.
#[derive(Debug)]
pub struct Services {
    /// The chat model (`llm` module), embedded or a server's.
    pub llm: Lazy<ChatBackend>,
    /// The chat model's id (or path), as configured (`neuron.model_id`), or the model
    /// name sent to its server.
    pub llm_id: String,
    /// The sentence embedder (`embed` module and the `relevance` reward), embedded or
    /// a server's.
    pub embedder: Lazy<EmbedBackend>,
    /// The offline Wikipedia vital-articles corpus (`corpus` module).
    pub wiki: Lazy<Corpus>,
    /// Allowlisted, cached HTTP GET (`http` module).
    pub http: HttpClient,
    /// Read-only source files under configured roots (`source` module).
    pub source: SourceTree,
}

impl Services {
    /// The defaults: models and corpus from `$NEURON_HOME` via the model resolver, the
    /// default HTTP allowlist, and the cargo registry sources for the `source` module.
    pub fn standard() -> Self {
        Self::with_resolver(
            Resolver::default(),
            &ModelSettings::default(),
            HttpConfig::default(),
            SourceTree::default_roots(),
        )
    }

    /// Models and corpus resolved by `resolver` under `ids` (loaded on first use; the
    /// models on `ids.device`, or clients of `ids.llm_remote`/`ids.embed_remote`), HTTP
    /// with `http`, and `source_roots` for the `source` module.
    pub fn with_resolver(
        resolver: Resolver,
        ids: &ModelSettings,
        http: HttpConfig,
        source_roots: Vec<PathBuf>,
    ) -> Self {
        let resolver = Arc::new(resolver);
        let (device, max_batch) = (ids.device, ids.llm_max_batch);
        let (r, id) = (resolver.clone(), ids.llm.clone());
        let llm = match ids.llm_remote.clone() {
            Some(config) => Lazy::new(move || remote(&config).map(ChatBackend::Remote)),
            None => Lazy::new(move || {
                let path = r.resolve(&id).map_err(|e| e.to_string())?;
                let options = LoadOptions {
                    device: device.open().map_err(|e| e.to_string())?,
                    max_batch,
                    ..LoadOptions::default()
                };
                let service = LlmService::load(&path, options).map_err(|e| e.to_string())?;
                Ok(ChatBackend::Embedded(service))
            }),
        };
        let (r, id) = (resolver.clone(), ids.embedder.clone());
        let embedder = match ids.embed_remote.clone() {
            Some(config) => Lazy::new(move || remote(&config).map(EmbedBackend::Remote)),
            None => Lazy::new(move || {
                let dir = r.resolve(&id).map_err(|e| e.to_string())?;
                let device = device.open().map_err(|e| e.to_string())?;
                let embedder = Embedder::load(&dir, &device).map_err(|e| e.to_string())?;
                Ok(EmbedBackend::Embedded(Box::new(embedder)))
            }),
        };
        let (r, id) = (resolver, ids.wiki.clone());
        let wiki = Lazy::new(move || {
            let path = r.resolve(&id).map_err(|e| e.to_string())?;
            Corpus::load(&path).map_err(|e| e.to_string())
        });
        Self {
            llm,
            llm_id: ids
                .llm_remote
                .as_ref()
                .map_or_else(|| ids.llm.clone(), |r| r.model.clone()),
            embedder,
            wiki,
            http: HttpClient::new(http),
            source: SourceTree::new(source_roots, SOURCE_MAX_FILES, SOURCE_MAX_BYTES),
        }
    }
}

/// The client of a configured inference server.
fn remote(config: &RemoteConfig) -> Result<RemoteClient, String> {
    RemoteClient::new(config.clone()).map_err(|e| e.to_string())
}

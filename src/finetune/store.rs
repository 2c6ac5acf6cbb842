//! Model retrieval for committed ids: a local directory of models (offline) or the
//! Hugging Face hub at the committed revision into a disk cache; hash, size and
//! architecture checks; eviction of cached models no longer committed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

use super::policy::Competition;
use super::{FinetuneError, ModelId, hash_directory};

/// Where models come from.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Offline models: `DIR/NAMESPACE/NAME/COMMIT/` or `DIR/NAMESPACE/NAME/`, holding a
    /// `.gguf` file or a safetensors model directory. Checked before the hub.
    pub models_dir: Option<PathBuf>,
    /// Disk cache for hub downloads: `CACHE/NAMESPACE/NAME/COMMIT/`.
    pub cache_dir: PathBuf,
    /// Whether to download from the hub when a model is not found locally.
    pub hub: bool,
    /// Hub endpoint (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
}

impl StoreConfig {
    /// Hub enabled, cache under `$NEURON_HOME/finetune/models`, no local directory.
    pub fn new(home: &Path) -> Self {
        Self {
            models_dir: None,
            cache_dir: home.join("finetune").join("models"),
            hub: true,
            endpoint: std::env::var("HF_ENDPOINT")
                .unwrap_or_else(|_| "https://huggingface.co".into()),
        }
    }
}

/// What [`inspect_gguf`] (or a safetensors header scan) found in a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCheck {
    /// `general.architecture` (GGUF) or `model_type` (config.json).
    pub architecture: String,
    /// Total number of weights.
    pub parameters: u64,
}

/// Architecture and parameter count of a GGUF file, from its header only (checked by
/// [`crate::llm::open_gguf`]: no wrapping counts, every tensor inside the file).
pub fn inspect_gguf(path: &Path) -> Result<ModelCheck, FinetuneError> {
    let (_, header) = crate::llm::open_gguf(path).map_err(|e| FinetuneError::Rejected {
        id: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(ModelCheck {
        architecture: header.architecture(),
        parameters: header.parameters,
    })
}

fn inspect_safetensors(dir: &Path) -> Result<ModelCheck, FinetuneError> {
    let reject = |reason: String| FinetuneError::Rejected {
        id: dir.display().to_string(),
        reason,
    };
    let config = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| reject(format!("config.json: {e}")))?;
    let config: serde_json::Value =
        serde_json::from_str(&config).map_err(|e| reject(format!("config.json: {e}")))?;
    let architecture = config
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| reject(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    if files.is_empty() {
        return Err(reject("no .gguf or .safetensors files".into()));
    }
    // SAFETY: the files are only read while mapped; a model file changing under a
    // running validator is an operator error this cannot guard against anyway.
    let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
        .map_err(|e| reject(format!("safetensors: {e}")))?;
    let parameters = tensors
        .tensors()
        .iter()
        .map(|(_, view)| {
            view.shape()
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .unwrap_or(u64::MAX)
        })
        .fold(0u64, u64::saturating_add);
    Ok(ModelCheck {
        architecture,
        parameters,
    })
}

/// Fetches committed models and keeps the cache tidy.
#[derive(Debug, Clone)]
pub struct ModelStore {
    config: StoreConfig,
}

impl ModelStore {
    /// A store with `config`.
    pub fn new(config: StoreConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The model directory for `id`: the local models directory first, then the cache,
    /// then the hub (which must be reachable within seconds). The directory's hash must
    /// equal the committed hash, when one is committed.
    pub fn fetch(&self, id: &ModelId) -> Result<PathBuf, FinetuneError> {
        let dir = match self.local(id) {
            Some(dir) => dir,
            None => self.download(id)?,
        };
        if let Some(expected) = &id.hash {
            let actual = hash_directory(&dir)?;
            if &actual != expected {
                return Err(FinetuneError::Rejected {
                    id: id.to_string(),
                    reason: format!("hash {actual} of {} != committed {expected}", dir.display()),
                });
            }
        }
        Ok(dir)
    }

    /// Fetches `id` and checks it against `competition`; returns the path to load (a
    /// `.gguf` file or a safetensors directory).
    pub fn retrieve(
        &self,
        id: &ModelId,
        competition: &Competition,
    ) -> Result<PathBuf, FinetuneError> {
        let dir = self.fetch(id)?;
        let (path, check) = Self::model_path(&dir)?;
        let reject = |reason: String| FinetuneError::Rejected {
            id: id.to_string(),
            reason,
        };
        if check.parameters > competition.max_parameters {
            return Err(reject(format!(
                "{} parameters exceed the competition's limit of {}",
                check.parameters, competition.max_parameters
            )));
        }
        if !competition
            .architectures
            .iter()
            .any(|a| a == &check.architecture)
        {
            return Err(reject(format!(
                "architecture `{}` is not allowed in competition {} (allowed: {})",
                check.architecture,
                competition.id,
                competition.architectures.join(", ")
            )));
        }
        Ok(path)
    }

    /// The loadable model inside `dir` and what it is.
    fn model_path(dir: &Path) -> Result<(PathBuf, ModelCheck), FinetuneError> {
        if dir.is_file() {
            return Ok((dir.to_path_buf(), inspect_gguf(dir)?));
        }
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| FinetuneError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        ggufs.sort();
        match ggufs.as_slice() {
            [one] => Ok((one.clone(), inspect_gguf(one)?)),
            [] => Ok((dir.to_path_buf(), inspect_safetensors(dir)?)),
            _ => Err(FinetuneError::Rejected {
                id: dir.display().to_string(),
                reason: format!("{} .gguf files; a model directory holds one", ggufs.len()),
            }),
        }
    }

    fn local(&self, id: &ModelId) -> Option<PathBuf> {
        let cached = id.commit.as_ref().map(|c| {
            self.config
                .cache_dir
                .join(&id.namespace)
                .join(&id.name)
                .join(c)
        });
        let local = self.config.models_dir.as_ref().map(|root| {
            let repo = root.join(&id.namespace).join(&id.name);
            match &id.commit {
                Some(c) if repo.join(c).is_dir() => repo.join(c),
                _ => repo,
            }
        });
        [local, cached].into_iter().flatten().find(|p| p.exists())
    }

    fn download(&self, id: &ModelId) -> Result<PathBuf, FinetuneError> {
        let fail = |reason: String| FinetuneError::Retrieve {
            id: id.to_string(),
            reason,
        };
        let Some(commit) = &id.commit else {
            return Err(fail("not found locally and no commit to download".into()));
        };
        if !self.config.hub {
            return Err(fail(format!(
                "not in the models directory {} and hub downloads are off",
                self.config
                    .models_dir
                    .as_ref()
                    .map_or("(none)".into(), |d| d.display().to_string())
            )));
        }
        crate::models::probe_hub(&self.config.endpoint).map_err(|e| fail(e.to_string()))?;
        let dest = self
            .config
            .cache_dir
            .join(&id.namespace)
            .join(&id.name)
            .join(commit);
        let staging = self
            .config
            .cache_dir
            .join(".staging")
            .join(format!("{}--{}--{commit}", id.namespace, id.name));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FinetuneError::Io { path, source }
        };
        let api = ApiBuilder::new()
            .with_endpoint(self.config.endpoint.clone())
            .with_cache_dir(staging.join("hf"))
            .with_progress(true)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let repo = api.repo(Repo::with_revision(
            id.repo(),
            RepoType::Model,
            commit.clone(),
        ));
        let info = repo.info().map_err(|e| fail(e.to_string()))?;
        let files = staging.join("files");
        for sibling in &info.siblings {
            let src = repo
                .get(&sibling.rfilename)
                .map_err(|e| fail(format!("{}: {e}", sibling.rfilename)))?;
            let target = files.join(&sibling.rfilename);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(&src, &target).map_err(io(&target))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::rename(&files, &dest).map_err(io(&dest))?;
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        Ok(dest)
    }

    /// Removes cached downloads (`CACHE/NAMESPACE/NAME/COMMIT`) of models not in
    /// `keep`, and directories left empty. Returns what was removed.
    pub fn evict(&self, keep: &[ModelId]) -> Result<Vec<PathBuf>, FinetuneError> {
        let root = &self.config.cache_dir;
        let keep: HashSet<PathBuf> = keep
            .iter()
            .filter_map(|id| {
                id.commit
                    .as_ref()
                    .map(|c| root.join(&id.namespace).join(&id.name).join(c))
            })
            .collect();
        let mut removed = Vec::new();
        if !root.is_dir() {
            return Ok(removed);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FinetuneError::Io { path, source }
        };
        let list = |dir: &Path| -> Result<Vec<PathBuf>, FinetuneError> {
            let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            out.sort();
            Ok(out)
        };
        for ns in list(root)? {
            if ns.file_name().is_some_and(|n| n == ".staging") {
                continue;
            }
            for name in list(&ns)? {
                for commit in list(&name)? {
                    if !keep.contains(&commit) {
                        std::fs::remove_dir_all(&commit).map_err(io(&commit))?;
                        tracing::info!(path = %commit.display(), "evicted model no longer committed");
                        removed.push(commit);
                    }
                }
                if list(&name)?.is_empty() {
                    std::fs::remove_dir_all(&name).map_err(io(&name))?;
                }
            }
            if list(&ns)?.is_empty() {
                std::fs::remove_dir_all(&ns).map_err(io(&ns))?;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ns: &str, commit: &str) -> ModelId {
        ModelId {
            namespace: ns.into(),
            name: "m".into(),
            commit: Some(commit.into()),
            hash: None,
            competition_id: None,
        }
    }

    #[test]
    fn eviction_keeps_only_committed_models() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.hub = false;
        let store = ModelStore::new(config);
        let cache = &store.config().cache_dir;
        for (ns, c) in [("a", "c1"), ("a", "c2"), ("b", "c1")] {
            std::fs::create_dir_all(cache.join(ns).join("m").join(c)).unwrap();
        }
        let removed = store.evict(&[id("a", "c2")]).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(cache.join("a/m/c2").is_dir());
        assert!(!cache.join("b").exists());
        assert!(!cache.join("a/m/c1").exists());
    }

    #[test]
    fn missing_models_fail_clearly_offline() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.hub = false;
        config.models_dir = Some(dir.path().join("models"));
        let err = ModelStore::new(config).fetch(&id("x", "c")).unwrap_err();
        assert!(err.to_string().contains("hub downloads are off"), "{err}");
    }

    #[test]
    fn unreachable_hub_fails_fast() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        // A closed port on loopback: refused at once.
        config.endpoint = "http://127.0.0.1:9".into();
        let err = ModelStore::new(config).fetch(&id("x", "c")).unwrap_err();
        assert!(err.to_string().contains("unreachable"), "{err}");
    }

    #[test]
    fn non_gguf_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        std::fs::write(&path, b"not a model").unwrap();
        assert!(matches!(
            inspect_gguf(&path),
            Err(FinetuneError::Rejected { .. })
        ));
        assert!(inspect_safetensors(dir.path()).is_err());
    }
}

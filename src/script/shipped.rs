//! The scripts shipped with `neuron` (`tasks/`, `personas/`, `tools/`, `scripts/` of the
//! source tree), embedded in the binary at build time so that an installed or copied
//! binary finds them from any directory. They are materialised once, read-only, into
//! `$NEURON_HOME/scripts/<version>-<content hash>/`, the lowest-priority script root
//! (see [`super::Roots`]); `neuron scripts eject DIR` copies them out for editing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::ScriptError;

/// `(path relative to a script root, contents)` of every shipped script, sorted.
static FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped_scripts.rs"));

/// Marks a materialised set as complete.
const COMPLETE: &str = ".complete";

/// Every shipped script: `(path relative to a script root, contents)`, sorted.
pub fn files() -> &'static [(&'static str, &'static str)] {
    FILES
}

/// `<version>-<first 12 hex digits of the contents' SHA-256>`: a new set whenever a
/// shipped script changes, so a rebuilt binary never runs stale copies.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for (rel, text) in FILES {
            hash.update(rel.as_bytes());
            hash.update([0]);
            hash.update(text.as_bytes());
            hash.update([0]);
        }
        let digest = hex::encode(hash.finalize());
        format!("{}-{}", env!("CARGO_PKG_VERSION"), &digest[..12])
    })
}

/// The shipped set as a script root: `$NEURON_HOME/scripts/<version>/`, written on first
/// use (atomically: concurrent processes see a complete set or none).
pub fn root() -> Result<PathBuf, ScriptError> {
    let base = crate::home::neuron_home().join("scripts");
    let dir = base.join(version());
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScriptError::Io { path, source }
    };
    std::fs::create_dir_all(&base).map_err(io(&base))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&base)
        .map_err(io(&base))?;
    write_set(staging.path(), false)?;
    for (rel, _) in FILES {
        read_only(&staging.path().join(rel))?;
    }
    let complete = staging.path().join(COMPLETE);
    std::fs::write(&complete, version()).map_err(io(&complete))?;
    let staged = staging.keep();
    if let Err(err) = std::fs::rename(&staged, &dir) {
        // Another process finished first: use its copy.
        let _ = std::fs::remove_dir_all(&staged);
        if !dir.join(COMPLETE).is_file() {
            return Err(ScriptError::Io {
                path: dir,
                source: err,
            });
        }
    }
    Ok(dir)
}

/// Copies the shipped set into `dir` for editing (then `--scripts.root DIR` overlays the
/// shipped set with it). Refuses to overwrite a file unless `overwrite`; returns the
/// files written.
pub fn eject(dir: &Path, overwrite: bool) -> Result<Vec<PathBuf>, ScriptError> {
    if !overwrite && let Some((rel, _)) = FILES.iter().find(|(rel, _)| dir.join(rel).exists()) {
        return Err(ScriptError::Io {
            path: dir.join(rel),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists (nothing was written; pass --force to overwrite)",
            ),
        });
    }
    write_set(dir, true)
}

fn write_set(dir: &Path, replace_read_only: bool) -> Result<Vec<PathBuf>, ScriptError> {
    let mut written = Vec::with_capacity(FILES.len());
    for (rel, text) in FILES {
        let path = dir.join(rel);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|source| ScriptError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        if replace_read_only && path.is_file() {
            let _ = std::fs::remove_file(&path);
        }
        std::fs::write(&path, text).map_err(|source| ScriptError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn read_only(path: &Path) -> Result<(), ScriptError> {
    let io = |source| ScriptError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut permissions = std::fs::metadata(path).map_err(io)?.permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(path, permissions).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_directory_is_embedded() {
        for rel in [
            "tasks/qa.rhai",
            "personas/human.rhai",
            "tools/wikipedia.rhai",
            "scripts/miners/llm.rhai",
            "scripts/validator.rhai",
            "scripts/finetune/validator.rhai",
        ] {
            assert!(files().iter().any(|(r, _)| *r == rel), "{rel} not embedded");
        }
        assert!(files().windows(2).all(|w| w[0].0 < w[1].0), "not sorted");
    }

    #[test]
    fn eject_writes_every_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let written = eject(dir.path(), false).unwrap();
        assert_eq!(written.len(), files().len());
        let (rel, text) = files()[0];
        assert_eq!(std::fs::read_to_string(dir.path().join(rel)).unwrap(), text);
        std::fs::write(dir.path().join(rel), "edited").unwrap();
        let err = eject(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(rel)).unwrap(),
            "edited"
        );
        eject(dir.path(), true).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(rel)).unwrap(), text);
    }
}

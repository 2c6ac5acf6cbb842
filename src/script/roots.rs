//! The overlay of script roots: an ordered list of directories, each holding
//! [`SCRIPT_ROOTS`] (`tasks/`, `personas/`, `tools/`, `scripts/`). A script's identity is
//! its path relative to a root (`tasks/qa.rhai`); where several roots hold the same
//! relative path, the last root wins and the others' files are shadowed. The first root
//! is usually the shipped set (`script::shipped`), the operator's roots follow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::{SCRIPT_ROOTS, ScriptError, shipped};
use crate::config::ScriptsConfig;

/// Canonical script roots, lowest priority first.
#[derive(Debug, Clone)]
pub struct Roots {
    dirs: Vec<PathBuf>,
}

impl Roots {
    /// Canonicalises `dirs` (lowest priority first); each must exist.
    pub fn new(dirs: &[PathBuf]) -> Result<Self, ScriptError> {
        let dirs = dirs
            .iter()
            .map(|dir| {
                dir.canonicalize().map_err(|source| ScriptError::Io {
                    path: dir.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { dirs })
    }

    /// The canonical roots, lowest priority first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The root `path` lies under (the highest-priority one, should roots nest) and the
    /// path relative to it.
    pub fn split<'a>(&'a self, path: &Path) -> Option<(&'a Path, PathBuf)> {
        self.dirs.iter().rev().find_map(|dir| {
            path.strip_prefix(dir)
                .ok()
                .map(|rel| (dir.as_path(), rel.to_path_buf()))
        })
    }

    /// The live file for `rel`: the canonical path of the file at `rel` under the
    /// highest-priority root that has one.
    pub fn find(&self, rel: &Path) -> Option<PathBuf> {
        self.dirs
            .iter()
            .rev()
            .map(|dir| dir.join(rel))
            .find(|file| file.is_file())
            .and_then(|file| file.canonicalize().ok())
    }

    /// The live `.rhai` files of every root: one per relative path, the winner of the
    /// overlay, in relative-path order.
    pub fn scan(&self) -> Vec<PathBuf> {
        let mut live: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for root in &self.dirs {
            for dir in SCRIPT_ROOTS {
                for entry in WalkDir::new(root.join(dir))
                    .sort_by_file_name()
                    .into_iter()
                    .filter_map(Result::ok)
                {
                    let path = entry.path();
                    if entry.file_type().is_file() && is_script(path) {
                        let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
                        live.insert(rel, path.to_path_buf());
                    }
                }
            }
        }
        live.into_values().collect()
    }
}

/// The roots `config` asks for, lowest priority first: the shipped set
/// ([`shipped::root`]) unless `scripts.no_shipped`, then each `scripts.root`.
pub fn configured_roots(config: &ScriptsConfig) -> Result<Vec<PathBuf>, ScriptError> {
    let mut roots = Vec::with_capacity(config.root.len() + 1);
    if !config.no_shipped {
        roots.push(shipped::root()?);
    }
    roots.extend(config.root.iter().cloned());
    Ok(roots)
}

/// Whether `path` names a Rhai script.
pub(crate) fn is_script(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rhai")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_later_root_shadows_an_earlier_one_and_adds_its_own_files() {
        let low = tempfile::tempdir().unwrap();
        let high = tempfile::tempdir().unwrap();
        write(low.path(), "tasks/qa.rhai", "low");
        write(low.path(), "tasks/math.rhai", "low");
        write(high.path(), "tasks/qa.rhai", "high");
        write(high.path(), "tasks/mine.rhai", "high");
        let roots = Roots::new(&[low.path().into(), high.path().into()]).unwrap();
        let live: Vec<(PathBuf, String)> = roots
            .scan()
            .into_iter()
            .map(|p| {
                let (_, rel) = roots.split(&p).unwrap();
                (rel, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        assert_eq!(
            live,
            [
                ("tasks/math.rhai".into(), "low".into()),
                ("tasks/mine.rhai".into(), "high".into()),
                ("tasks/qa.rhai".into(), "high".into()),
            ]
        );
        let qa = roots.find(Path::new("tasks/qa.rhai")).unwrap();
        assert_eq!(roots.split(&qa).unwrap().0, roots.dirs()[1]);
        assert!(roots.find(Path::new("tasks/none.rhai")).is_none());
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let err = Roots::new(&["/no/such/root".into()]).unwrap_err();
        assert!(err.to_string().contains("/no/such/root"), "{err}");
    }
}

//! Read-only access to source files under configured directories (default: the local
//! cargo registry source cache), for the code-debugging task. Scripts see paths
//! relative to a root and can read only files under the roots (checked after
//! canonicalisation, so `..` and symlinks cannot escape).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use walkdir::WalkDir;

use super::ServiceError;

/// Extensions listed by default, with the language name scripts see.
pub const LANGUAGES: [(&str, &str); 10] = [
    ("rs", "Rust"),
    ("py", "Python"),
    ("js", "JavaScript"),
    ("ts", "TypeScript"),
    ("go", "Go"),
    ("c", "C"),
    ("h", "C"),
    ("cpp", "C++"),
    ("java", "Java"),
    ("sh", "Shell"),
];

/// A listing of source files under some roots.
#[derive(Debug)]
pub struct SourceTree {
    roots: Vec<PathBuf>,
    max_files: usize,
    max_bytes: u64,
    files: OnceLock<Vec<(usize, PathBuf)>>,
}

impl SourceTree {
    /// Files under `roots` (missing roots are skipped), listing at most `max_files`
    /// files and reading files of at most `max_bytes`.
    pub fn new(roots: Vec<PathBuf>, max_files: usize, max_bytes: u64) -> Self {
        let roots = roots
            .into_iter()
            .filter_map(|r| r.canonicalize().ok())
            .collect();
        Self {
            roots,
            max_files,
            max_bytes,
            files: OnceLock::new(),
        }
    }

    /// The default root: `$CARGO_HOME/registry/src` (or `~/.cargo/registry/src`).
    pub fn default_roots() -> Vec<PathBuf> {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        cargo_home
            .map(|h| vec![h.join("registry").join("src")])
            .unwrap_or_default()
    }

    fn listing(&self) -> &[(usize, PathBuf)] {
        self.files.get_or_init(|| {
            let mut out = Vec::new();
            'roots: for (i, root) in self.roots.iter().enumerate() {
                let walk = WalkDir::new(root)
                    .follow_links(false)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_map(Result::ok);
                for entry in walk {
                    if out.len() >= self.max_files {
                        break 'roots;
                    }
                    if entry.file_type().is_file()
                        && language(entry.path()).is_some()
                        && entry.metadata().is_ok_and(|m| m.len() <= self.max_bytes)
                        && let Ok(rel) = entry.path().strip_prefix(root)
                    {
                        out.push((i, rel.to_path_buf()));
                    }
                }
            }
            out
        })
    }

    /// Relative paths (prefixed with the root index, `0:path`) of listed files, in a
    /// stable order.
    pub fn files(&self) -> Vec<String> {
        self.listing()
            .iter()
            .map(|(i, p)| format!("{i}:{}", p.display()))
            .collect()
    }

    /// Reads a file named as [`SourceTree::files`] names it. Refuses anything that
    /// resolves outside the roots or is larger than the cap.
    pub fn read(&self, name: &str) -> Result<String, ServiceError> {
        let denied = |message: String| ServiceError::Io {
            path: PathBuf::from(name),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, message),
        };
        let (index, rel) = name
            .split_once(':')
            .and_then(|(i, r)| Some((i.parse::<usize>().ok()?, r)))
            .ok_or_else(|| denied("expected `ROOT:PATH` as listed by source::files()".into()))?;
        let root = self
            .roots
            .get(index)
            .ok_or_else(|| denied(format!("no source root {index}")))?;
        let path = root
            .join(rel)
            .canonicalize()
            .map_err(|source| ServiceError::Io {
                path: PathBuf::from(name),
                source,
            })?;
        if !path.starts_with(root) || !path.is_file() {
            return Err(denied("outside the configured source roots".into()));
        }
        let len = path
            .metadata()
            .map_err(|source| ServiceError::Io {
                path: PathBuf::from(name),
                source,
            })?
            .len();
        if len > self.max_bytes {
            return Err(denied(format!("larger than {} bytes", self.max_bytes)));
        }
        let bytes = std::fs::read(&path).map_err(|source| ServiceError::Io {
            path: PathBuf::from(name),
            source,
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The language of a file by extension, if it is one the tree lists.
pub fn language(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?;
    LANGUAGES
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_reads_only_under_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/lib.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("a/notes.txt"), "skip").unwrap();
        std::fs::write(dir.path().join("secret.rs"), "secret").unwrap();
        let tree = SourceTree::new(vec![root, dir.path().join("missing")], 100, 1 << 20);
        assert_eq!(tree.files(), vec!["0:a/lib.rs".to_string()]);
        assert_eq!(tree.read("0:a/lib.rs").unwrap(), "fn main() {}\n");
        for bad in [
            "0:../secret.rs",
            "1:a/lib.rs",
            "a/lib.rs",
            "0:/etc/passwd",
            "0:a/nope.rs",
        ] {
            assert!(tree.read(bad).is_err(), "{bad}");
        }
    }
}

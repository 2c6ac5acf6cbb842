//! Module resolver for `import "tools/wikipedia" as wiki;`: paths are relative to the
//! script roots (the file of the highest-priority root that has it, see [`Roots`]), must
//! start with one of [`SCRIPT_ROOTS`], may omit `.rhai`, and never leave their root (no
//! absolute paths, no `..`, symlinks checked after canonicalisation). Every file resolved while compiling a script is recorded so the
//! host knows which scripts to recompile when a shared tool changes.
//!
//! Resolving a module runs its top level, which resolves its own imports: the chain of
//! files being resolved is kept per thread, so an import cycle of any length (a file
//! importing itself, two importing each other, …) is an error naming the chain, and
//! so is a chain longer than the module limit, instead of a recursion without end.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use rhai::{AST, Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

type RhaiResultOf<T> = Result<T, Box<EvalAltResult>>;

use super::SCRIPT_ROOTS;
use super::roots::Roots;
use super::sandbox::check_leaving;

thread_local! {
    static RECORDING: RefCell<Option<BTreeSet<PathBuf>>> = const { RefCell::new(None) };
    /// The files being resolved on this thread, outermost first.
    static CHAIN: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// Records the files imported (transitively) while `f` compiles `top` on this thread;
/// `top` heads the import chain, so importing it again is a cycle.
pub(crate) fn record_imports<T>(top: &Path, f: impl FnOnce() -> T) -> (T, BTreeSet<PathBuf>) {
    let previous = RECORDING.with(|r| r.borrow_mut().replace(BTreeSet::new()));
    let out = {
        let _link = ChainLink::push(top);
        f()
    };
    let recorded = RECORDING.with(|r| std::mem::replace(&mut *r.borrow_mut(), previous));
    (out, recorded.unwrap_or_default())
}

/// One file on this thread's import chain, for as long as it is being resolved.
struct ChainLink;

impl ChainLink {
    fn push(file: &Path) -> Self {
        CHAIN.with(|c| c.borrow_mut().push(file.to_path_buf()));
        Self
    }
}

impl Drop for ChainLink {
    fn drop(&mut self) {
        CHAIN.with(|c| c.borrow_mut().pop());
    }
}

fn note_import(path: &Path) {
    RECORDING.with(|r| {
        if let Some(set) = r.borrow_mut().as_mut() {
            set.insert(path.to_path_buf());
        }
    });
}

/// Resolves imports to files under the script roots only.
pub(crate) struct RootResolver {
    roots: Roots,
    max_chain: usize,
}

impl RootResolver {
    /// Resolves under `roots`; an import chain may be `max_chain` files long below the
    /// importing script.
    pub(crate) fn new(roots: Roots, max_chain: usize) -> Self {
        Self { roots, max_chain }
    }

    /// Puts `file` on this thread's import chain, or says why it may not go there: it
    /// is on it already (a cycle), or the chain is at its longest.
    fn enter(&self, file: &Path) -> Result<ChainLink, String> {
        CHAIN.with(|c| {
            let chain = c.borrow();
            let names = |files: &[PathBuf]| {
                files
                    .iter()
                    .map(|f| self.relative(f))
                    .chain(std::iter::once(self.relative(file)))
                    .collect::<Vec<_>>()
                    .join(" → ")
            };
            if let Some(at) = chain.iter().position(|f| f == file) {
                return Err(format!("import cycle: {}", names(&chain[at..])));
            }
            if chain.len() > self.max_chain {
                return Err(format!(
                    "import chain longer than {} files: {}",
                    self.max_chain,
                    names(&chain)
                ));
            }
            Ok(())
        })?;
        Ok(ChainLink::push(file))
    }

    /// Maps an import path to a canonical file under the root, or explains why not.
    pub(crate) fn locate(&self, import: &str) -> Result<PathBuf, String> {
        let rel = Path::new(import);
        let mut components = rel.components();
        let first = match components.next() {
            Some(Component::Normal(c)) => c.to_string_lossy().into_owned(),
            _ => {
                return Err(format!(
                    "import path `{import}` must be relative to the script root and start with one of {SCRIPT_ROOTS:?}"
                ));
            }
        };
        if !SCRIPT_ROOTS.contains(&first.as_str()) {
            return Err(format!(
                "import path `{import}` is outside the script roots {SCRIPT_ROOTS:?}"
            ));
        }
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!(
                "import path `{import}` may not contain `..`, `.` or a root"
            ));
        }
        let mut rel = rel.to_path_buf();
        if rel.extension().is_none_or(|e| e != "rhai") {
            rel.set_extension("rhai");
        }
        let canonical = self.roots.find(&rel).ok_or_else(|| {
            format!(
                "cannot import `{import}`: no script root has {}",
                rel.display()
            )
        })?;
        let inside = self
            .roots
            .split(&canonical)
            .is_some_and(|(root, _)| canonical.starts_with(root.join(&first)));
        if !inside {
            return Err(format!(
                "import path `{import}` resolves outside the script roots"
            ));
        }
        Ok(canonical)
    }

    fn load(&self, engine: &Engine, import: &str, pos: Position) -> RhaiResultOf<(AST, PathBuf)> {
        let file = self
            .locate(import)
            .map_err(|msg| Box::new(EvalAltResult::ErrorModuleNotFound(msg, pos)))?;
        let text = std::fs::read_to_string(&file).map_err(|e| {
            Box::new(EvalAltResult::ErrorModuleNotFound(
                format!("cannot read `{import}`: {e}"),
                pos,
            ))
        })?;
        let mut ast = engine
            .compile(text)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(import.into(), e.into(), pos)))?;
        ast.set_source(self.relative(&file));
        note_import(&file);
        Ok((ast, file))
    }

    /// `file` relative to its root, for messages and AST sources.
    pub(crate) fn relative(&self, file: &Path) -> String {
        match self.roots.split(file) {
            Some((_, rel)) => rel.to_string_lossy().into_owned(),
            None => file.to_string_lossy().into_owned(),
        }
    }
}

impl ModuleResolver for RootResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> RhaiResultOf<Shared<Module>> {
        let (ast, file) = self.load(engine, path, pos)?;
        let _link = self
            .enter(&file)
            .map_err(|msg| Box::new(EvalAltResult::ErrorRuntime(msg.into(), pos)))?;
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.into(), e, pos)))?;
        // The module outlives this thread's stack (it is kept with every importer).
        for (name, value) in module.iter_var() {
            if let Err(over) = check_leaving(value) {
                return Err(Box::new(EvalAltResult::ErrorRuntime(
                    format!("`{name}` of `{path}` is over the script limits: {over}").into(),
                    pos,
                )));
            }
        }
        Ok(module.into())
    }

    fn resolve_ast(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Option<RhaiResultOf<AST>> {
        Some(self.load(engine, path, pos).map(|(ast, _)| ast))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, RootResolver) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tools")).unwrap();
        std::fs::write(dir.path().join("tools/a.rhai"), "fn f() { 1 }").unwrap();
        std::fs::write(dir.path().join("secret.rhai"), "fn f() { 2 }").unwrap();
        let roots = Roots::new(&[dir.path().to_path_buf()]).unwrap();
        (dir, RootResolver::new(roots, 4))
    }

    #[test]
    fn resolves_inside_roots_with_or_without_extension() {
        let (_dir, r) = root();
        assert!(r.locate("tools/a").unwrap().ends_with("tools/a.rhai"));
        assert!(r.locate("tools/a.rhai").is_ok());
    }

    #[test]
    fn rejects_escapes_and_foreign_roots() {
        let (_dir, r) = root();
        for bad in [
            "secret",
            "/etc/passwd",
            "tools/../secret",
            "./tools/a",
            "src/main",
        ] {
            let err = r.locate(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(
            r.locate("tools/missing")
                .unwrap_err()
                .contains("cannot import")
        );
    }

    #[test]
    fn a_file_already_on_the_chain_is_a_cycle_naming_it() {
        let (_dir, r) = root();
        let a = r.locate("tools/a").unwrap();
        let b = r.roots.dirs()[0].join("tools/b.rhai");
        let _top = ChainLink::push(&a);
        let _b = r.enter(&b).unwrap();
        let err = r.enter(&a).err().unwrap();
        assert_eq!(
            err,
            "import cycle: tools/a.rhai → tools/b.rhai → tools/a.rhai"
        );
    }

    #[test]
    fn a_chain_past_the_limit_is_refused() {
        let (_dir, r) = root();
        let links: Vec<_> = (0..5)
            .map(|i| {
                r.enter(&r.roots.dirs()[0].join(format!("tools/{i}.rhai")))
                    .unwrap()
            })
            .collect();
        let err = r
            .enter(&r.roots.dirs()[0].join("tools/5.rhai"))
            .err()
            .unwrap();
        assert!(err.starts_with("import chain longer than 4 files"), "{err}");
        drop(links);
    }
}

//! Hot reload: a debounced `notify` watcher over the script roots that hands changed
//! `.rhai` files to [`ScriptHost::reload`].

use std::path::PathBuf;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use super::host::ScriptHost;
use super::{SCRIPT_ROOTS, ScriptError};

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

impl ScriptHost {
    /// Starts watching the script directories of every root that exist; changes are debounced over
    /// `debounce` and then reloaded (compile + contract + atomic swap).
    pub fn watch(&self, debounce: Duration) -> Result<Watcher, ScriptError> {
        let host = self.clone();
        let mut debouncer = new_debouncer(debounce, move |res: DebounceEventResult| match res {
            Ok(events) => {
                let paths: Vec<PathBuf> = events.into_iter().map(|e| e.path).collect();
                host.reload(&paths);
            }
            Err(err) => tracing::warn!("script watcher error: {err}"),
        })
        .map_err(|source| ScriptError::Watch {
            path: self.roots().last().cloned().unwrap_or_default(),
            source,
        })?;
        for root in self.roots() {
            for dir in SCRIPT_ROOTS {
                let dir = root.join(dir);
                if dir.is_dir() {
                    debouncer
                        .watcher()
                        .watch(&dir, RecursiveMode::Recursive)
                        .map_err(|source| ScriptError::Watch { path: dir, source })?;
                }
            }
        }
        Ok(Watcher {
            _debouncer: debouncer,
        })
    }
}

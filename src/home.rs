//! The project's one cache and data directory, `$NEURON_HOME` (default `~/.cache/neuron`).

use std::path::PathBuf;

/// Environment variable that overrides the cache and data directory.
pub const NEURON_HOME_ENV: &str = "NEURON_HOME";

/// The root directory for models, datasets, venvs and local state.
///
/// `$NEURON_HOME` when set, else `~/.cache/neuron`, else `./.neuron` when no home
/// directory is known.
pub fn neuron_home() -> PathBuf {
    if let Some(dir) = std::env::var_os(NEURON_HOME_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("neuron"),
        None => PathBuf::from(".neuron"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_ends_in_cache_neuron_without_override() {
        // Only checks the fallback shape; the env override is covered by integration tests.
        if std::env::var_os(NEURON_HOME_ENV).is_none() {
            assert!(neuron_home().ends_with("neuron"));
        }
    }
}

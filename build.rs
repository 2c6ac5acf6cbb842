//! Embeds the shipped scripts (`tasks/`, `personas/`, `tools/`, `scripts/`) into the
//! binary: writes `$OUT_DIR/shipped_scripts.rs`, a sorted table of
//! `(path relative to the checkout, contents)` that `neuron::script::shipped` includes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const DIRS: [&str; 4] = ["tasks", "personas", "tools", "scripts"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = Vec::new();
    for dir in DIRS {
        // A directory makes cargo rerun this script when anything under it changes.
        println!("cargo:rerun-if-changed={dir}");
        collect(&manifest.join(dir), &mut files);
    }
    files.sort();
    let mut table = String::from("&[\n");
    for file in &files {
        let rel = file
            .strip_prefix(&manifest)
            .expect("collected under the manifest dir")
            .to_str()
            .expect("shipped script paths are UTF-8")
            .replace('\\', "/");
        writeln!(
            table,
            "    ({rel:?}, include_str!({:?})),",
            file.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("shipped_scripts.rs"), table).expect("writing OUT_DIR");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("reading a shipped script directory").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rhai") {
            out.push(path);
        }
    }
}

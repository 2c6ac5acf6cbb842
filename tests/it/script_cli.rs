//! `neuron task list` / `neuron task check` as a script author runs them, and CI's check
//! of every script the repository ships (which runs each task's seeded generate on the
//! default models).

use crate::support::bin::{neuron_command, run};

/// `neuron ARGS` (errors logged only): whether it succeeded, and stdout then stderr.
fn neuron(args: &[&str]) -> (bool, String) {
    let mut cmd = neuron_command(args);
    cmd.env("RUST_LOG", "error");
    let out = run(cmd);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &*String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_fails_with_position_and_list_shows_the_rejection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tasks")).unwrap();
    std::fs::create_dir_all(dir.path().join("tools")).unwrap();
    std::fs::write(
        dir.path().join("tasks/bad.rhai"),
        "const NAME = \"bad\";\nfn generate(ctx) {\n  let = 1;\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tools/ok.rhai"), "fn f() { 1 }").unwrap();
    let root = dir.path().to_str().unwrap();
    let bad = dir.path().join("tasks/bad.rhai");
    let ok = dir.path().join("tools/ok.rhai");

    let (success, out) = neuron(&[
        "task",
        "check",
        "--scripts",
        root,
        bad.to_str().unwrap(),
        ok.to_str().unwrap(),
    ]);
    assert!(!success, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("tasks/bad.rhai:3:"),
        "{out}"
    );
    assert!(out.contains("1 of 2 script(s) failed"), "{out}");

    let (success, out) = neuron(&["task", "check", "--scripts", root, ok.to_str().unwrap()]);
    assert!(success, "{out}");

    let (success, out) = neuron(&["task", "list", "--scripts", root]);
    assert!(success, "{out}");
    assert!(
        out.contains("tasks/bad.rhai") && out.contains("REJECTED"),
        "{out}"
    );

    let (success, out) = neuron(&["task", "run", "nope", "--scripts", root]);
    assert!(!success);
    assert!(out.contains("no task script named `nope`"), "{out}");
}

/// Every `.rhai` file under the shipped script folders, sorted.
fn shipped_scripts(root: &std::path::Path) -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rhai") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in ["tasks", "personas", "tools", "scripts", "examples"] {
        walk(&root.join(dir), &mut files);
    }
    files.sort();
    files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

/// What CI runs over the repository's scripts: compile, contract, and for each task one
/// seeded generate with persona and challenge on the default models.
#[test]
fn every_shipped_script_passes_task_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = shipped_scripts(root);
    assert!(
        files.iter().filter(|f| f.starts_with("tasks/")).count() >= 6,
        "{files:?}"
    );
    let mut args = vec!["task", "check", "--scripts", root.to_str().unwrap()];
    args.extend(["--set", "max_tokens=16"]);
    let paths: Vec<String> = files
        .iter()
        .map(|f| root.join(f).display().to_string())
        .collect();
    args.extend(paths.iter().map(String::as_str));
    let (ok, out) = neuron(&args);
    assert!(ok, "{out}");
    for file in &files {
        assert!(
            out.contains(&format!("ok    {}", root.join(file).display())),
            "{file} not checked:\n{out}"
        );
    }
    // Tasks (wherever they live) print their generated step; other scripts do not.
    let tasks = out.matches(": task script `").count();
    assert!(tasks >= 6, "{out}");
    assert_eq!(out.matches("  reference: ").count(), tasks, "{out}");
}

/// `neuron task run inference` scores the validator's own generation, with its logprobs,
/// as verified inference scores a perfect answer: 1 (the reference text alone, as
/// `--completion` gives it, has no logprobs and scores 0).
#[test]
fn task_run_scores_the_inference_reference_as_a_perfect_answer() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |extra: &[&str]| {
        let mut args = vec!["task", "run", "inference", "--seed", "3", "--scripts", root];
        args.extend(extra);
        let (success, out) = neuron(&args);
        assert!(success, "{out}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        (json["reward"]["total"].as_f64().unwrap(), json)
    };
    let (own, json) = run(&[]);
    assert!(own > 0.99, "{json}");
    let reference = json["reference"].as_str().unwrap().to_string();
    let (text_only, json) = run(&["--completion", &reference]);
    assert_eq!(text_only, 0.0, "{json}");
}

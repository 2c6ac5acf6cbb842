//! `neuron task list` / `neuron task check` as a script author runs them (no model
//! needed: library scripts and failing files).

use std::process::Command;

fn neuron(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_neuron"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
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

//! The script host end to end: the shipped scripts load and generate deterministically,
//! hot reload swaps versions, and the sandbox holds (bad syntax, infinite loops, file
//! and network access).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use neuron::models::Resolver;
use neuron::prompting::contract::{PromptingContracts, PromptingLookups, PromptingScript};
use neuron::prompting::hooks::PromptingHooks;
use neuron::script::{
    HostConfig, Lazy, Limits, ModelSettings, ReloadStatus, ScriptError, ScriptHost, Services,
};
use neuron::services::{Corpus, HttpConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/script")
        .join(name)
}

/// The standard services (models via the resolver, loaded only if a test calls them),
/// with the sample corpus fixture and only loopback on the HTTP allowlist.
fn services() -> Services {
    let wiki = fixture("wiki_sample.json");
    let mut services = Services::with_resolver(
        Resolver::default(),
        &ModelSettings::default(),
        HttpConfig {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpConfig::default()
        },
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")],
    );
    services.wiki = Lazy::new(move || Corpus::load(&wiki).map_err(|e| e.to_string()));
    services
}

fn repo_host() -> ScriptHost {
    let host = ScriptHost::new(
        HostConfig::new(env!("CARGO_MANIFEST_DIR")),
        services(),
        PromptingContracts,
    )
    .unwrap();
    for row in host.listing() {
        assert_eq!(row.status, ReloadStatus::Ok, "{}", row.rel.display());
    }
    host
}

/// A host over a fresh temp dir with `files` written into it.
fn temp_host(files: &[(&str, &str)], limits: Limits) -> (tempfile::TempDir, ScriptHost) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let mut config = HostConfig::new(dir.path());
    config.limits = limits;
    let host = ScriptHost::new(config, services(), PromptingContracts).unwrap();
    (dir, host)
}

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn task_src(name: &str, body: &str) -> String {
    format!(
        r#"const NAME = "{name}"; const WEIGHT = 1.0;
const REWARDS = #{{ "diff": 1.0 }}; const PENALTIES = #{{}};
fn generate(ctx) {{ {body} }}"#
    )
}

#[test]
fn shipped_math_task_is_deterministic_per_seed() {
    let host = repo_host();
    let math = host.task("math").unwrap();
    let spec = math.task_spec().unwrap();
    assert_eq!(spec.rewards.rewards()[0].function.to_string(), "float_diff");
    let a = host.generate(&math, &host.ctx(42, 0)).unwrap();
    let b = host.generate(&math, &host.ctx(42, 0)).unwrap();
    assert_eq!(
        (a.query.clone(), a.reference.clone()),
        (b.query, b.reference)
    );
    assert!(
        a.query
            .starts_with("How can I solve the following problem, ")
    );
    assert!(a.reference.parse::<f64>().is_ok(), "{}", a.reference);
    let differs = (0..10).any(|s| host.generate(&math, &host.ctx(s, 0)).unwrap().query != a.query);
    assert!(differs);
}

#[test]
fn shipped_math_task_pays_no_number_copied_from_the_question() {
    let host = repo_host();
    let math = host.task("math").unwrap();
    let spec = math.task_spec().unwrap().rewards.clone();
    let mut penalties: Vec<String> = spec
        .penalties()
        .iter()
        .map(|w| format!("{} {}", w.function, w.weight))
        .collect();
    penalties.sort();
    assert_eq!(penalties, ["copied_number 1", "echo 0.5"]);
    for seed in 0..200 {
        let task = host.generate(&math, &host.ctx(seed, 0)).unwrap();
        // The right answer is never one of the problem's own numbers …
        assert_eq!(
            neuron::score::copied_number(&task.query, &task.reference),
            0.0,
            "seed {seed}: {} answers {}",
            task.query,
            task.reference
        );
        // … so it earns 1, while the question and any number taken from it earn 0.
        let numbers: Vec<&str> = task
            .query
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .map(|w| w.trim_matches('.'))
            .filter(|w| !w.is_empty())
            .collect();
        let right = format!("The answer is {}", task.reference);
        let mut completions = vec![right.as_str(), task.query.as_str()];
        completions.extend(&numbers);
        let totals: Vec<f64> = spec
            .score(&task.reference, &task.query, &completions, None)
            .unwrap()
            .iter()
            .map(|b| b.total)
            .collect();
        assert!(
            totals[0] > 0.9,
            "seed {seed}: {totals:?} for {completions:?}"
        );
        assert!(
            totals[1..].iter().all(|t| *t == 0.0),
            "seed {seed}: {totals:?} for {completions:?}"
        );
    }
}

#[test]
fn every_math_generator_gives_a_finite_number() {
    let tool = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mathgenerator.rhai"),
    )
    .unwrap();
    let task = task_src(
        "all",
        r#"let out = [];
           for i in 0..mathgen::count() { out.push(mathgen::generate_id(ctx.rng, i)); }
           #{ query: "q", reference: "r", all: out }"#,
    )
    .replace(
        "const NAME",
        "import \"tools/mathgenerator\" as mathgen;\nconst NAME",
    );
    let (_dir, host) = temp_host(
        &[
            ("tools/mathgenerator.rhai", &tool),
            ("tasks/all.rhai", &task),
        ],
        Limits::default(),
    );
    let task = host.task("all").unwrap();
    let mut topics = std::collections::BTreeSet::new();
    for seed in 0..5 {
        let out = host.generate(&task, &host.ctx(seed, 0)).unwrap();
        let all = out.fields["all"].clone().into_array().unwrap();
        assert!(all.len() >= 30);
        for p in all {
            let p = p.cast::<rhai::Map>();
            let x = p["solution"].as_float().unwrap();
            assert!(x.is_finite(), "{p:?}");
            topics.insert(p["topic"].to_string());
        }
    }
    assert_eq!(topics.len(), 5, "{topics:?}");
}

#[test]
fn editing_a_task_changes_the_next_call_and_importers_follow_tools() {
    let (dir, host) = temp_host(
        &[
            ("tools/t.rhai", r#"fn word() { "one" }"#),
            (
                "tasks/a.rhai",
                &task_src("a", r#"#{ query: t::word(), reference: "r" }"#)
                    .replace("const NAME", "import \"tools/t\" as t;\nconst NAME"),
            ),
        ],
        Limits::default(),
    );
    let old = host.task("a").unwrap();
    assert_eq!(host.generate(&old, &host.ctx(1, 0)).unwrap().query, "one");
    write(dir.path(), "tools/t.rhai", r#"fn word() { "two" }"#);
    let outcomes = host.reload(&[dir.path().join("tools/t.rhai")]);
    assert_eq!(outcomes.len(), 2, "tool and its importer: {outcomes:?}");
    let new = host.task("a").unwrap();
    assert_eq!(host.generate(&new, &host.ctx(1, 0)).unwrap().query, "two");
    // A call holding the old version still runs the old AST.
    assert_eq!(host.generate(&old, &host.ctx(1, 0)).unwrap().query, "one");
}

#[test]
fn watcher_picks_up_edits_new_files_and_deletions() {
    let (dir, host) = temp_host(
        &[(
            "tasks/a.rhai",
            &task_src("a", r#"#{ query: "v1", reference: "r" }"#),
        )],
        Limits::default(),
    );
    let _watcher = host.watch(Duration::from_millis(30)).unwrap();
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !check() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    write(
        dir.path(),
        "tasks/a.rhai",
        &task_src("a", r#"#{ query: "v2", reference: "r" }"#),
    );
    wait_for("edit", &|| {
        let a = host.task("a").unwrap();
        host.generate(&a, &host.ctx(0, 0)).unwrap().query == "v2"
    });
    write(
        dir.path(),
        "tasks/b.rhai",
        &task_src("b", r#"#{ query: "b", reference: "r" }"#),
    );
    wait_for("new file", &|| host.task("b").is_ok());
    std::fs::remove_file(dir.path().join("tasks/a.rhai")).unwrap();
    wait_for("deletion", &|| host.task("a").is_err());
    assert_eq!(host.tasks().len(), 1);
}

#[test]
fn an_operator_root_overlays_a_lower_one_live_and_imports_follow_the_overlay() {
    let low = tempfile::tempdir().unwrap();
    let high = tempfile::tempdir().unwrap();
    write(low.path(), "tools/word.rhai", r#"fn word() { "low" }"#);
    let importer = task_src("a", r#"#{ query: w::word(), reference: "r" }"#);
    write(
        low.path(),
        "tasks/a.rhai",
        &format!("import \"tools/word\" as w;\n{importer}"),
    );
    std::fs::create_dir_all(high.path().join("tools")).unwrap();
    let config = HostConfig::overlay(vec![low.path().into(), high.path().into()]);
    let host = ScriptHost::new(config, services(), PromptingContracts).unwrap();
    let _watcher = host.watch(Duration::from_millis(30)).unwrap();
    let query = || {
        let a = host.task("a").unwrap();
        host.generate(&a, &host.ctx(0, 0)).unwrap().query
    };
    let wait_for = |want: &str| {
        let start = Instant::now();
        while query() != want {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(query(), "low");
    // A tool at the same path in the higher root replaces the lower one for importers.
    write(high.path(), "tools/word.rhai", r#"fn word() { "high" }"#);
    wait_for("high");
    // Removing it brings the lower root's file back, in the listing too.
    std::fs::remove_file(high.path().join("tools/word.rhai")).unwrap();
    wait_for("low");
    let word_root = || {
        let listing = host.listing();
        let word = listing
            .iter()
            .find(|l| l.rel == Path::new("tools/word.rhai"));
        word.map(|l| l.root.clone())
    };
    let start = Instant::now();
    while word_root() != Some(low.path().canonicalize().unwrap()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the listing still shows {:?}",
            word_root()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn syntax_error_keeps_the_previous_version_and_names_the_position() {
    let (dir, host) = temp_host(
        &[(
            "tasks/a.rhai",
            &task_src("a", r#"#{ query: "good", reference: "r" }"#),
        )],
        Limits::default(),
    );
    write(
        dir.path(),
        "tasks/a.rhai",
        "const NAME = \"a\";\nfn generate(ctx) {\n  let x = ;\n}\n",
    );
    let outcomes = host.reload(&[dir.path().join("tasks/a.rhai")]);
    let err = outcomes[0].1.as_ref().unwrap_err();
    match err {
        ScriptError::Compile {
            file, line, column, ..
        } => {
            assert_eq!(file, Path::new("tasks/a.rhai"));
            assert_eq!((*line, *column), (3, 11), "{err}");
        }
        other => panic!("expected a compile error, got {other}"),
    }
    assert!(err.to_string().starts_with("tasks/a.rhai:3:11: "), "{err}");
    let a = host.task("a").unwrap();
    assert_eq!(host.generate(&a, &host.ctx(0, 0)).unwrap().query, "good");
    let row = host
        .listing()
        .into_iter()
        .find(|l| l.rel == Path::new("tasks/a.rhai"))
        .unwrap();
    assert!(matches!(row.status, ReloadStatus::Rejected(ref m) if m.contains("3:11")));
}

#[test]
fn contract_violations_name_file_and_missing_parts() {
    let (dir, host) = temp_host(&[], Limits::default());
    let cases = [
        (
            "tasks/x.rhai",
            "fn generate(ctx) { 1 }",
            "missing const NAME, const WEIGHT, const REWARDS, const PENALTIES",
        ),
        (
            "tasks/y.rhai",
            "const NAME = \"y\";",
            "missing fn generate(ctx)",
        ),
        (
            "personas/p.rhai",
            "fn persona(ctx) { #{} }",
            "missing fn challenge(ctx, task, persona)",
        ),
        (
            "scripts/miners/m.rhai",
            "fn blacklist(ctx, r) { false }",
            "missing fn forward(ctx, synapse)",
        ),
    ];
    for (name, src, want) in cases {
        write(dir.path(), name, src);
        let outcomes = host.reload(&[dir.path().join(name)]);
        let err = outcomes[0].1.as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{name}: contract violation")),
            "{err}"
        );
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn infinite_loop_times_out_and_the_host_keeps_serving() {
    let limits = Limits {
        max_operations: 0,
        wall_time: Duration::from_millis(300),
        ..Limits::default()
    };
    let (dir, host) = temp_host(
        &[(
            "tasks/a.rhai",
            &task_src("a", r#"#{ query: "fine", reference: "r" }"#),
        )],
        limits,
    );
    // A looping hook: the call fails with a timeout, the process goes on.
    write(dir.path(), "tasks/b.rhai", &task_src("b", "loop { }"));
    host.reload(&[dir.path().join("tasks/b.rhai")]);
    let b = host.task("b").unwrap();
    let err = host.generate(&b, &host.ctx(0, 0)).unwrap_err();
    assert!(matches!(err, ScriptError::Timeout { .. }), "{err}");
    // A looping top level is rejected at load; the previous version keeps serving.
    write(
        dir.path(),
        "tasks/a.rhai",
        &(task_src("a", "1") + "\nloop { }"),
    );
    let outcomes = host.reload(&[dir.path().join("tasks/a.rhai")]);
    assert!(
        matches!(outcomes[0].1, Err(ScriptError::Timeout { .. })),
        "{outcomes:?}"
    );
    let a = host.task("a").unwrap();
    assert_eq!(host.generate(&a, &host.ctx(0, 0)).unwrap().query, "fine");
}

#[test]
fn operation_and_size_limits_fail_the_call_only() {
    let limits = Limits {
        max_operations: 10_000,
        max_string_size: 1000,
        ..Limits::default()
    };
    let (_dir, host) = temp_host(
        &[
            (
                "tasks/ops.rhai",
                &task_src("ops", "let x = 0; while true { x += 1; }"),
            ),
            (
                "tasks/big.rhai",
                &task_src("big", r#"let s = "x"; for i in 0..20 { s += s; } s"#),
            ),
            (
                "tasks/deep.rhai",
                &(task_src("deep", "f(0)") + "\nfn f(n) { f(n + 1) }"),
            ),
        ],
        limits,
    );
    for (name, want) in [("ops", "operations"), ("big", "string"), ("deep", "stack")] {
        let task = host.task(name).unwrap();
        let err = host
            .generate(&task, &host.ctx(0, 0))
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains(want), "{name}: {err}");
        assert!(err.starts_with(&format!("tasks/{name}.rhai:")), "{err}");
    }
}

#[test]
fn scripts_cannot_read_files_eval_or_import_outside_the_roots() {
    let (dir, host) = temp_host(&[], Limits::default());
    write(dir.path(), "secret.rhai", "fn s() { \"secret\" }");
    let cases = [
        (
            "tasks/a.rhai",
            "import \"secret\" as s;",
            "outside the script roots",
        ),
        (
            "tasks/b.rhai",
            "import \"tools/../secret\" as s;",
            "may not contain",
        ),
        (
            "tasks/c.rhai",
            "import \"/etc/passwd\" as s;",
            "must be relative",
        ),
        ("tasks/d.rhai", "let x = eval(\"1\");", "eval"),
        (
            "tasks/e.rhai",
            "let x = open_file(\"/etc/passwd\");",
            "open_file",
        ),
        (
            "tasks/f.rhai",
            "let x = source::read(\"0:../Cargo.toml\");",
            "outside",
        ),
    ];
    for (name, src, want) in cases {
        write(dir.path(), name, &format!("{}\n{src}", task_src("n", "1")));
        let outcomes = host.reload(&[dir.path().join(name)]);
        let err = outcomes[0].1.as_ref().unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn http_off_the_allowlist_is_a_clear_script_error() {
    let (_dir, host) = temp_host(
        &[(
            "tasks/a.rhai",
            &task_src(
                "a",
                r#"#{ query: http::get_text("https://example.com/"), reference: "" }"#,
            ),
        )],
        Limits::default(),
    );
    let a = host.task("a").unwrap();
    let err = host.generate(&a, &host.ctx(0, 0)).unwrap_err().to_string();
    assert!(
        err.contains("host `example.com` is not on the allowlist"),
        "{err}"
    );
}

#[test]
fn corpus_and_bad_returns() {
    let (_dir, host) = temp_host(
        &[
            (
                "tasks/a.rhai",
                &task_src(
                    "a",
                    r#"let a = corpus::article("wiki", 0); #{ query: a.title, reference: `${corpus::events("wiki")}` }"#,
                ),
            ),
            ("tasks/b.rhai", &task_src("b", "42")),
            (
                "tasks/c.rhai",
                &task_src("c", r#"corpus::article("nope", 0)"#),
            ),
        ],
        Limits::default(),
    );
    let a = host.task("a").unwrap();
    let out = host.generate(&a, &host.ctx(0, 0)).unwrap();
    assert!(!out.query.is_empty());
    assert!(out.reference.parse::<usize>().unwrap() >= 12);
    let b = host.task("b").unwrap();
    let err = host.generate(&b, &host.ctx(0, 0)).unwrap_err();
    assert!(matches!(err, ScriptError::BadReturn { .. }), "{err}");
    let c = host.task("c").unwrap();
    let err = host.generate(&c, &host.ctx(0, 0)).unwrap_err().to_string();
    assert!(err.contains("unknown corpus `nope`"), "{err}");
}

#[test]
fn every_log_level_is_callable_from_scripts() {
    let body = r#"log::verbose("v"); log::info("i"); log::warn("w"); log::error("e");
        #{ query: "q", reference: "r" }"#;
    let (_dir, host) = temp_host(
        &[("tasks/logs.rhai", &task_src("logs", body))],
        Limits::default(),
    );
    let task = host.task("logs").unwrap();
    assert_eq!(host.generate(&task, &host.ctx(1, 0)).unwrap().query, "q");
}

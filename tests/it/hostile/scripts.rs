//! Hostile scripts: import cycles, deep stacks, memory and log floods, slow service calls,
//! failing blacklists. Each case is one the host used to die or hang on; a script error
//! must fail that one call, never the process. Cases whose old failure was an abort run
//! through the `neuron` binary; the others in process.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neuron::chain::Hyperparameters;
use neuron::chain::sim::{SimChain, SimConfig};
use neuron::config::BlacklistConfig;
use neuron::models::Resolver;
use neuron::net::{AxonHandler, Dendrite, PromptingSynapse};
use neuron::prompting::contract::PromptingContracts;
use neuron::prompting::miner::MinerHandler;
use neuron::script::{
    HostConfig, Libraries, Limits, ModelSettings, NeuronLink, ReloadStatus, ScriptError,
    ScriptHost, Services,
};
use neuron::services::HttpConfig;
use neuron::wallet::Keypair;

use crate::support::bin::neuron_command;

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Services with only loopback reachable over HTTP (timeout `http_timeout`).
fn services(http_timeout: Duration) -> Services {
    Services::with_resolver(
        Resolver::default(),
        &ModelSettings::default(),
        HttpConfig {
            allow_hosts: vec!["127.0.0.1".into()],
            timeout: http_timeout,
            ..HttpConfig::default()
        },
        Vec::new(),
    )
}

/// A host over `root` whose scripts are plain libraries.
fn library_host(root: &Path, limits: Limits) -> ScriptHost {
    let mut config = HostConfig::new(root);
    config.limits = limits;
    ScriptHost::new(config, services(Duration::from_secs(10)), Libraries).unwrap()
}

/// Runs `neuron ARGS` with `RUST_LOG=level`; its exit status and stdout then stderr.
fn neuron(args: &[&str], level: &str) -> (std::process::ExitStatus, String) {
    let mut cmd = neuron_command(args);
    cmd.env("RUST_LOG", level);
    let out = cmd.output().expect("run neuron");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &*String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// `neuron task check FILE` over the script root `root` (and the shipped scripts), with
/// `RUST_LOG=level`.
fn task_check(root: &Path, file: &Path, level: &str) -> (std::process::ExitStatus, String) {
    neuron(
        &[
            "task",
            "check",
            "--scripts",
            root.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        level,
    )
}

/// A persona for `neuron task check`, which runs a task's challenge through one.
const PERSONA: &str = r#"fn persona(ctx) { #{ profile: "p", mood: "m", tone: "t" } }
fn challenge(ctx, task, persona) { task.query }"#;

fn task(name: &str, body: &str) -> String {
    format!(
        r#"const NAME = "{name}"; const WEIGHT = 1.0;
const REWARDS = #{{ "diff": 1.0 }}; const PENALTIES = #{{}};
fn generate(ctx) {{ {body} }}"#
    )
}

#[test]
fn import_cycles_are_errors_naming_the_chain_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "tools/me.rhai",
        r#"import "tools/me" as me; fn x() { 1 }"#,
    );
    write(
        root,
        "tools/a.rhai",
        r#"import "tools/b" as b; fn a() { 1 }"#,
    );
    write(
        root,
        "tools/b.rhai",
        r#"import "tools/c" as c; fn b() { 1 }"#,
    );
    write(
        root,
        "tools/c.rhai",
        r#"import "tools/a" as a; fn c() { 1 }"#,
    );
    write(root, "tools/fine.rhai", "fn f() { 1 }");
    let (status, out) = neuron(
        &["task", "list", "--scripts", root.to_str().unwrap()],
        "warn",
    );
    assert!(status.success(), "{status}: {out}");
    assert!(
        out.contains("import cycle: tools/me.rhai → tools/me.rhai"),
        "{out}"
    );
    assert!(
        out.contains("import cycle: tools/a.rhai → tools/b.rhai → tools/c.rhai → tools/a.rhai"),
        "{out}"
    );
}

#[test]
fn an_import_cycle_on_hot_reload_keeps_the_previous_versions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "tools/a.rhai",
        r#"import "tools/b" as b; fn a() { b::b() }"#,
    );
    write(root, "tools/b.rhai", "fn b() { 1 }");
    let host = library_host(root, Limits::default());
    assert!(host.listing().iter().all(|r| r.status == ReloadStatus::Ok));

    write(
        root,
        "tools/b.rhai",
        r#"import "tools/a" as a; fn b() { 2 }"#,
    );
    let outcomes = host.reload(&[root.join("tools/b.rhai")]);
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for (rel, outcome) in &outcomes {
        let err = outcome.as_ref().unwrap_err().to_string();
        assert!(err.contains("import cycle: "), "{}: {err}", rel.display());
    }
    let a = host
        .live("library")
        .into_iter()
        .find(|s| s.rel == Path::new("tools/a.rhai"))
        .unwrap();
    let out = host.call(&a, "a", ()).unwrap();
    assert_eq!(out.as_int(), Ok(1), "the previous versions keep serving");
}

#[test]
fn an_import_chain_longer_than_the_module_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..40 {
        write(
            root,
            &format!("tools/t{i}.rhai"),
            &format!(r#"import "tools/t{}" as next; fn f() {{ {i} }}"#, i + 1),
        );
    }
    write(root, "tools/t40.rhai", "fn f() { 40 }");
    let limits = Limits {
        max_modules: 8,
        ..Limits::default()
    };
    let host = library_host(root, limits);
    let err = host.compile(&root.join("tools/t0.rhai")).unwrap_err();
    assert!(
        err.to_string().contains("import chain longer than 8 files"),
        "{err}"
    );
}

/// A task at the limits: `generate` recurses as deep as the call limit allows, every
/// level inside the most deeply nested expression the expression limit allows (native
/// calls, the nesting that takes the most stack per level).
fn deepest_task(host: &ScriptHost, root: &Path) -> String {
    let limits = Limits::default();
    for nesting in (1..=limits.max_expr_depth).rev() {
        let body = format!(
            "{}deep(n - 1){}",
            "abs(".repeat(nesting),
            ")".repeat(nesting)
        );
        let generate = format!(
            "#{{ query: `${{deep({})}}`, reference: \"r\" }}",
            limits.max_call_levels - 2
        );
        let text = format!(
            "{}\nfn deep(n) {{ if n <= 0 {{ return 0; }} {body} }}",
            task("deep", &generate)
        );
        write(root, "tasks/deep.rhai", &text);
        if host.compile(&root.join("tasks/deep.rhai")).is_ok() {
            assert!(nesting >= 50, "only {nesting} levels compile");
            return text;
        }
    }
    panic!("no nesting compiles");
}

#[test]
fn the_deepest_script_the_limits_allow_runs_in_task_check_and_on_a_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut config = HostConfig::new(root);
    config.limits = Limits::default();
    let host = ScriptHost::new(
        config,
        services(Duration::from_secs(10)),
        PromptingContracts,
    )
    .unwrap();
    write(root, "personas/human.rhai", PERSONA);
    deepest_task(&host, root);
    host.reload(&[root.join("tasks/deep.rhai")]);

    let file = root.join("tasks/deep.rhai");
    let (status, out) = task_check(root, &file, "warn");
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("query:     0"), "{out}");

    // Where validators and miners call hooks from: a runtime's blocking thread.
    use neuron::prompting::contract::PromptingLookups;
    use neuron::prompting::hooks::PromptingHooks;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let query = runtime
        .block_on(runtime.spawn_blocking(move || {
            let task = host.task("deep").unwrap();
            host.generate(&task, &host.ctx(0, 0)).map(|i| i.query)
        }))
        .unwrap()
        .unwrap();
    assert_eq!(query, "0");
}

#[test]
fn data_nested_to_the_array_limit_fails_the_call_or_is_dropped_on_the_hook_thread() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // 8,000 levels: past what a 1 MiB stack can clone, drop or check recursively
    // (deeper takes long to build: each level copies the whole value).
    let build = "let a = []; for i in 0..8000 { a = [a]; }";
    write(
        root,
        "tools/nest.rhai",
        &format!("fn kept() {{ {build} a }}\nfn dropped() {{ {build} 7 }}"),
    );
    let host = library_host(root, Limits::default());
    let script = host.live("library").pop().unwrap();
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            assert_eq!(host.call(&script, "dropped", ()).unwrap().as_int(), Ok(7));
            let err = host.call(&script, "kept", ()).unwrap_err();
            assert!(matches!(err, ScriptError::BadReturn { .. }), "{err}");
            assert!(
                err.to_string().contains("nested deeper than 128 levels"),
                "{err}"
            );
            // A module keeping such a value would outlive the hook thread: refused.
            let kept = format!("{build}\nexport a;\nfn f() {{ 1 }}");
            write(host.roots()[0].as_path(), "tools/keeps.rhai", &kept);
            write(
                host.roots()[0].as_path(),
                "tools/user.rhai",
                r#"import "tools/keeps" as k; fn g() { k::f() }"#,
            );
            let err = host
                .compile(&host.roots()[0].as_path().join("tools/user.rhai"))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("`a` of `tools/keeps` is over the script limits")
                    && err.to_string().contains("nested deeper than 128 levels"),
                "{err}"
            );
            drop(host);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_hook_holding_more_than_its_memory_budget_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Each frame keeps its own 4 MiB string: every value is within the string limit.
    write(
        root,
        "tools/hog.rhai",
        r#"
        fn hold(n, s) { let mine = s + n; if n == 0 { return 0; } hold(n - 1, s) + mine.len() }
        fn hog() { let s = ""; s.pad(4194000, 'x'); hold(60, s) }
        fn fine() { 1 }
        "#,
    );
    let limits = Limits {
        max_memory: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let host = library_host(root, limits);
    let script = host.live("library").pop().unwrap();
    let err = host.call(&script, "hog", ()).unwrap_err().to_string();
    assert!(err.contains("memory budget of 64 MiB exceeded"), "{err}");
    assert!(err.starts_with("tools/hog.rhai:"), "{err}");
    assert_eq!(host.call(&script, "fine", ()).unwrap().as_int(), Ok(1));
}

#[test]
fn a_replace_that_would_build_terabytes_fails_the_hook_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let body = r#"let s = ""; s.pad(4194000, 'x'); let w = ""; w.pad(4000000, 'y');
        s.replace("x", w); #{ query: s, reference: "r" }"#;
    write(root, "tasks/blow.rhai", &task("blow", body));
    let file = root.join("tasks/blow.rhai");
    let (status, out) = task_check(root, &file, "warn");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("Result of replace (about 16776000000000 bytes"),
        "{out}"
    );
}

#[test]
fn growing_arrays_and_maps_element_by_element_costs_no_size_walks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Rhai's per-value size limits walked the whole array or map after every change:
    // 500,000 pushes cost 1.25e11 element visits, far past the hook's minute.
    write(
        root,
        "tools/grow.rhai",
        r#"
        fn grow() { let a = []; for i in 0..500000 { a.push(i); } a.len() }
        fn index() { let m = #{}; for i in 0..50000 { m[`k${i}`] = i; } m.len() }
        fn keep() { let a = []; for i in 0..200001 { a.push(i); } a }
        "#,
    );
    let limits = Limits {
        wall_time: Duration::from_secs(60),
        ..Limits::default()
    };
    let host = library_host(root, limits);
    let script = host.live("library").pop().unwrap();
    assert_eq!(
        host.call(&script, "grow", ()).unwrap().as_int(),
        Ok(500_000)
    );
    assert_eq!(
        host.call(&script, "index", ()).unwrap().as_int(),
        Ok(50_000)
    );
    // What leaves the hook is held to the per-value limits.
    let err = host.call(&script, "keep", ()).unwrap_err().to_string();
    assert!(
        err.contains("an array of 200001 elements (at most 200000: `scripts.max_array_len`)"),
        "{err}"
    );
}

#[test]
fn the_hook_deadline_bounds_chain_calls_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "tools/probe.rhai",
        "fn probe(ctx) { chain::metagraph().len() }",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let path = root.join("chain.sqlite");
    let chain = SimChain::create(&path, SimConfig::default()).unwrap();
    let owner = Keypair::from_uri("//Alice").unwrap();
    let netuid = runtime
        .block_on(chain.create_subnet(&owner.ss58(), Hyperparameters::default()))
        .unwrap();
    let mut config = HostConfig::new(root);
    config.limits = Limits {
        wall_time: Duration::from_secs(2),
        ..Limits::default()
    };
    let host = ScriptHost::new(config, services(Duration::from_secs(10)), Libraries).unwrap();
    let script = host.live("library").pop().unwrap();
    let link = NeuronLink::new(Arc::new(chain), netuid, Dendrite::new(owner).unwrap());
    let ctx = host.ctx(1, 0).with_link(link);
    let _guard = runtime.enter();
    assert_eq!(
        host.call_for(&ctx, &script, "probe", (ctx.clone(),))
            .unwrap()
            .as_int(),
        Ok(0)
    );
    // Another process holds the chain's database (its busy wait is 30 s).
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = host
        .call_for(&ctx, &script, "probe", (ctx.clone(),))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wall-time limit ran out waiting for the neuron's chain"),
        "{err}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn print_and_log_floods_are_cut_and_capped_per_hook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let body = r#"let line = ""; line.pad(4096, 'x');
        for i in 0..5000 { print(line); log::info(line); }
        #{ query: "q", reference: "r" }"#;
    write(root, "tasks/flood.rhai", &task("flood", body));
    write(root, "personas/human.rhai", PERSONA);
    let file = root.join("tasks/flood.rhai");
    let (status, out) = task_check(root, &file, "info");
    assert!(status.success(), "{status}");
    // 10,000 lines of 4 KiB (40 MB) asked for; 200 lines of at most 2 KiB let through.
    assert!(out.len() < 1024 * 1024, "{} bytes of output", out.len());
    assert!(out.contains("log limit of 200 lines per hook call reached"));
    assert!(out.contains("more bytes cut"));
}

/// A loopback HTTP server that accepts connections and never answers.
fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.flush();
            held.push(stream);
        }
    });
    format!("http://{addr}/")
}

#[test]
fn the_hook_deadline_bounds_http_calls_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let url = silent_server();
    write(
        root,
        "tools/slow.rhai",
        &format!(r#"fn fetch() {{ http::get_text("{url}") }}"#),
    );
    let mut config = HostConfig::new(root);
    config.limits = Limits {
        wall_time: Duration::from_secs(1),
        ..Limits::default()
    };
    // The client's own timeout is a minute: only the hook's deadline can end it early.
    let host = ScriptHost::new(config, services(Duration::from_secs(60)), Libraries).unwrap();
    let script = host.live("library").pop().unwrap();
    let started = Instant::now();
    let err = host.call(&script, "fetch", ()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}: {err}",
        started.elapsed()
    );
}

#[test]
fn the_hook_deadline_bounds_llm_calls_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "tools/talk.rhai",
        r#"fn talk(ctx) { llm::chat(ctx, [#{ role: "user", content: "Tell a very long story." }], #{ max_tokens: 4000 }) }"#,
    );
    let mut config = HostConfig::new(root);
    config.limits = Limits {
        wall_time: Duration::from_secs(2),
        ..Limits::default()
    };
    let host = ScriptHost::new(config, services(Duration::from_secs(10)), Libraries).unwrap();
    // Loaded before the hook, so the hook's two seconds are all generation.
    host.services().llm.get().expect("the default chat model");
    let script = host.live("library").pop().unwrap();
    let started = Instant::now();
    let err = host.call(&script, "talk", (host.ctx(1, 0),)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: {err}",
        started.elapsed()
    );
    assert!(err.to_string().contains("llm:"), "{err}");
}

#[test]
fn a_failing_blacklist_script_tells_the_caller_nothing_about_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "scripts/miners/leaky.rhai",
        r#"fn forward(ctx, synapse) { "ok" }
fn blacklist(ctx, request) { throw "SECRET-DETAIL in the operator's script"; }"#,
    );
    let mut config = HostConfig::new(root);
    config.limits = Limits::default();
    let host = ScriptHost::new(
        config,
        services(Duration::from_secs(10)),
        PromptingContracts,
    )
    .unwrap();
    let handler = MinerHandler::new(
        host,
        "leaky",
        BlacklistConfig {
            allow_non_registered: true,
            ..BlacklistConfig::default()
        },
    );
    let mut request = PromptingSynapse {
        roles: vec!["user".into()],
        messages: vec!["hi".into()],
        completion: String::new(),
    }
    .to_synapse(Arc::new(PromptingSynapse::schema()))
    .unwrap();
    request.dendrite.hotkey = Some("5Caller".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reason = runtime
        .block_on(handler.blacklist(&request))
        .expect("refused");
    assert!(!reason.contains("SECRET"), "{reason}");
    assert!(!reason.contains("leaky.rhai"), "{reason}");
}

#[test]
fn the_configured_limits_reach_every_hook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "personas/human.rhai", PERSONA);
    write(
        root,
        "tasks/spin.rhai",
        &task("spin", "let n = 0; loop { n += 1; }"),
    );
    write(
        root,
        "tasks/grow.rhai",
        &task(
            "grow",
            r#"let a = []; loop { a.push("a string of some length"); }"#,
        ),
    );
    write(
        root,
        "tasks/hoard.rhai",
        &task(
            "hoard",
            r#"let s = ""; s.pad(2097152, 'x'); #{ query: s, reference: "r" }"#,
        ),
    );
    let run = |name: &str, limit: &[&str]| {
        let mut args = vec![
            "task",
            "run",
            name,
            "--scripts.no_shipped",
            "true",
            "--scripts.root",
            root.to_str().unwrap(),
        ];
        args.extend(limit);
        neuron(&args, "warn")
    };
    // Each limit is reported at the line that ran past it (the hook is on line 3).
    let (status, out) = run("spin", &["--scripts.max_operations", "10000"]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("tasks/spin.rhai:3:") && out.contains("too many operations (limit 10000"),
        "{out}"
    );
    let (status, out) = run("grow", &["--scripts.max_memory_mb", "1"]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("tasks/grow.rhai:3:") && out.contains("memory budget of 1 MiB exceeded"),
        "{out}"
    );
    // The 2 MiB pad is refused before it is built: less than 1 MiB is left.
    let (status, out) = run("hoard", &["--scripts.max_memory_mb", "1"]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("Result of pad (about 2097152 bytes; the hook's memory left is"),
        "{out}"
    );
    assert!(out.contains("tasks/hoard.rhai:3:"), "the pad's line: {out}");
    let (status, out) = run("hoard", &["--scripts.max_string_bytes", "1000"]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("a string of 2097152 bytes (at most 1000: `scripts.max_string_bytes`)"),
        "{out}"
    );
    // The same script within the default budget runs.
    let (status, out) = run("hoard", &[]);
    assert!(status.success(), "{out}");
}

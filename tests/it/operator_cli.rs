//! `neuron` as an operator runs it: the built binary started from an empty directory
//! finds the shipped scripts (embedded in the binary, materialised under
//! `$NEURON_HOME/scripts/`), an operator's root overlays them, nothing starts idle
//! (no task, persona or strategy, or a hotkey not registered),
//! the SDK's `--logging.*` flags work and piped logs carry no colour codes, and a miner
//! serves the shipped `llm` strategy and stops cleanly on SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::bin::{neuron_command, run, run_async, terminate, wait_for_child};
use crate::support::{failed, succeeded};
use neuron::chain::{Chain, RAO_PER_TAO};
use neuron::prompting::local::{LocalSubnet, demo_hyperparameters};
use neuron::wallet::{Keypair, Wallet};

/// `neuron ARGS` with the current directory `cwd` (and `NEURON_HOME` = `home` if given).
fn neuron_in(cwd: &Path, home: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = neuron_command(args);
    cmd.current_dir(cwd);
    if let Some(home) = home {
        cmd.env("NEURON_HOME", home);
    }
    cmd
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The `task list` row of task `name`.
fn row<'a>(listing: &'a str, name: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{listing}"))
}

#[test]
fn shipped_scripts_are_found_from_an_empty_directory_and_a_root_overlays_them() {
    let empty = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let list = |extra: &[&str]| {
        let mut args = vec!["task", "list"];
        args.extend(extra);
        succeeded(run(neuron_in(empty.path(), Some(home.path()), &args)))
    };

    // A fresh home: the shipped set is written on first use, read-only. The binary is
    // a copy outside the build tree, as after `cp` or `cargo install`.
    let bin = empty.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_neuron"), bin.join("neuron")).unwrap();
    let copied = succeeded(run({
        let mut cmd = Command::new(bin.join("neuron"));
        cmd.args(["task", "list"])
            .current_dir(empty.path())
            .env("NEURON_HOME", home.path());
        cmd
    }));
    let listing = list(&[]);
    assert_eq!(copied, listing);
    for task in ["qa", "math", "date_qa", "summarization", "debugging"] {
        let row = row(&listing, task);
        assert!(row.contains("shipped") && row.ends_with(" ok"), "{row}");
    }
    let shipped = home.path().join("scripts");
    let sets: Vec<_> = std::fs::read_dir(&shipped).unwrap().flatten().collect();
    assert_eq!(sets.len(), 1, "one materialised set");
    let qa = sets[0].path().join("tasks/qa.rhai");
    assert!(std::fs::metadata(&qa).unwrap().permissions().readonly());
    let path = succeeded(run(neuron_in(
        empty.path(),
        Some(home.path()),
        &["scripts", "path"],
    )));
    assert_eq!(Path::new(path.trim()), sets[0].path());

    // An operator root: a file at a shipped path replaces it, a new one joins.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "tasks/qa.rhai",
        &std::fs::read_to_string(&qa)
            .unwrap()
            .replace("const WEIGHT = 0.25;", "const WEIGHT = 0.9;"),
    );
    write(
        root.path(),
        "tasks/mine.rhai",
        &std::fs::read_to_string(&qa)
            .unwrap()
            .replace("const NAME = \"qa\";", "const NAME = \"mine\";"),
    );
    let root_arg = root.path().to_str().unwrap();
    let listing = list(&["--scripts.root", root_arg]);
    let canonical = root.path().canonicalize().unwrap();
    let from_root = canonical.to_str().unwrap();
    let qa_row = row(&listing, "qa");
    assert!(
        qa_row.contains("0.90") && qa_row.contains(from_root),
        "{qa_row}"
    );
    assert!(row(&listing, "mine").contains(from_root), "{listing}");
    assert!(row(&listing, "math").contains("shipped"), "{listing}");
    assert_eq!(
        listing.lines().filter(|l| l.starts_with("qa ")).count(),
        1,
        "the shipped qa is shadowed, not listed twice:\n{listing}"
    );
    // `scripts list` names the origin of every live script, not only the tasks.
    let every = succeeded(run(neuron_in(
        empty.path(),
        Some(home.path()),
        &["scripts", "list", "--scripts.root", root_arg],
    )));
    let file_row = |rel: &str| {
        every
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(rel))
            .unwrap_or_else(|| panic!("no row for {rel}:\n{every}"))
    };
    assert!(file_row("tasks/qa.rhai").contains(from_root), "{every}");
    for (rel, kind) in [
        ("personas/human.rhai", "persona"),
        ("scripts/miners/llm.rhai", "strategy"),
        ("tools/wikipedia.rhai", "library"),
    ] {
        let row = file_row(rel);
        assert!(row.starts_with(kind) && row.contains(" shipped "), "{row}");
    }

    // `neuron task`'s old `--scripts DIR` still works, with a deprecation warning.
    let out = run(neuron_in(
        empty.path(),
        Some(home.path()),
        &["task", "list", "--scripts", root_arg],
    ));
    let warning = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(succeeded(out), listing);
    assert!(warning.contains("--scripts is deprecated"), "{warning}");

    // Eject copies the shipped set for editing, and never overwrites silently.
    let ejected = empty.path().join("my-scripts");
    let dir = ejected.to_str().unwrap();
    succeeded(run(neuron_in(
        empty.path(),
        Some(home.path()),
        &["scripts", "eject", dir],
    )));
    assert_eq!(
        std::fs::read_to_string(ejected.join("tasks/qa.rhai")).unwrap(),
        std::fs::read_to_string(&qa).unwrap()
    );
    let err = failed(run(neuron_in(
        empty.path(),
        Some(home.path()),
        &["scripts", "eject", dir],
    )));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn a_neuron_without_the_scripts_it_needs_fails_at_start_up() {
    let empty = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "scripts/miners/echo.rhai",
        include_str!("../../scripts/miners/echo.rhai"),
    );
    let root_arg = root.path().to_str().unwrap();
    let data = empty.path().join("run");
    let local = |extra: &[&str]| {
        let mut args = vec![
            "local",
            "--steps",
            "2",
            "--miners",
            "1",
            "--strategies",
            "echo",
            "--block-time",
            "0.1",
            "--data-dir",
            data.to_str().unwrap(),
            "--scripts.no_shipped",
            "true",
            "--scripts.root",
            root_arg,
        ];
        args.extend(extra);
        run(neuron_in(empty.path(), None, &args))
    };
    // No task at all: a clear error, non-zero, before any step.
    let err = failed(local(&[]));
    assert!(err.contains("no task script is live"), "{err}");
    // The same for a validator, and a miner without its strategy: before the wallet is
    // read (there is none) or the chain is reached.
    let wallets = empty.path().join("no-wallets");
    let neuron_alone = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend([
            "--scripts.no_shipped",
            "true",
            "--scripts.root",
            root_arg,
            "--wallet.path",
            wallets.to_str().unwrap(),
        ]);
        failed(run(neuron_in(empty.path(), None, &args)))
    };
    let err = neuron_alone(&["validator"]);
    assert!(err.contains("no task script is live"), "{err}");
    let err = neuron_alone(&["miner", "--neuron.strategy", "nosuch"]);
    assert!(err.contains("nosuch") && err.contains("strategy"), "{err}");

    // A task but no persona named by --neuron.persona.
    write(
        root.path(),
        "tasks/broken.rhai",
        r#"const NAME = "broken"; const WEIGHT = 1.0;
const REWARDS = #{ "diff": 1.0 }; const PENALTIES = #{};
fn generate(ctx) { throw "no context today" }
"#,
    );
    let err = failed(local(&[]));
    assert!(err.contains("persona") && err.contains("human"), "{err}");

    // Every step failing is a failed run, not a report of zeros and exit 0.
    write(
        root.path(),
        "personas/human.rhai",
        "fn persona(ctx) { #{} }\nfn challenge(ctx, task, persona) { task.query }\n",
    );
    let err = failed(local(&[]));
    assert!(
        err.contains("every step failed") && err.contains("no context today"),
        "{err}"
    );
}

#[test]
fn an_unregistered_neuron_fails_at_start_up_saying_how_to_register() {
    let empty = tempfile::tempdir().unwrap();
    let chain = empty.path().join("chain.sqlite");
    let chain_arg = chain.to_str().unwrap();
    succeeded(run(neuron_in(
        empty.path(),
        None,
        &["chain", "init", "--subtensor.db_path", chain_arg],
    )));
    let wallets = empty.path().join("wallets");
    Wallet::new(&wallets, "vali", "default")
        .set_hotkey(&Keypair::from_uri("//Unregistered").unwrap(), None, false)
        .unwrap();
    let wallet_arg = wallets.to_str().unwrap();
    for command in ["validator", "miner"] {
        let args = [
            command,
            "--subtensor.db_path",
            chain_arg,
            "--netuid",
            "1",
            "--wallet.path",
            wallet_arg,
            "--wallet.name",
            "vali",
        ];
        let err = failed(run(neuron_in(empty.path(), None, &args)));
        assert!(
            err.contains("is not registered on netuid 1")
                && err.contains(&format!(
                    "neuron chain register --netuid 1 --wallet.name vali --wallet.hotkey default \
                     --wallet.path {wallet_arg} --subtensor.db_path {chain_arg}"
                )),
            "{command}: {err}"
        );
    }
}

#[test]
fn local_runs_from_an_empty_directory_with_the_sdk_logging_flags_and_no_colour_in_pipes() {
    let empty = tempfile::tempdir().unwrap();
    let logs = empty.path().join("logs");
    let mut cmd = neuron_in(
        empty.path(),
        None,
        &[
            "local",
            "--steps",
            "2",
            "--miners",
            "2",
            "--strategies",
            "echo,phrase",
            "--neuron.tasks",
            "math",
            "--neuron.max_tokens",
            "24",
            "--block-time",
            "0.2",
            "--data-dir",
            empty.path().join("run").to_str().unwrap(),
            "--logging.debug",
            "--logging.logging_dir",
            logs.to_str().unwrap(),
        ],
    );
    cmd.env_remove("RUST_LOG");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = succeeded(out);
    assert!(stdout.contains("2 steps (0 failed, "), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("DEBUG"),
        "--logging.debug logs at debug:\n{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "escape codes in piped stderr");
    let file = std::fs::read_to_string(logs.join("neuron.log")).unwrap();
    assert!(file.contains("DEBUG") && !file.contains('\u{1b}'), "{file}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_started_from_an_empty_directory_serves_llm_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let subnet = LocalSubnet::open(
        dir.path(),
        Duration::from_millis(100),
        Keypair::from_uri("//OperatorOwner").unwrap(),
        demo_hyperparameters(),
        100_000 * RAO_PER_TAO,
    )
    .await
    .unwrap();
    let (chain, netuid) = (subnet.chain().clone(), subnet.netuid());
    let wallets = dir.path().join("wallets");
    let caller = Keypair::from_uri("//OperatorCaller").unwrap();
    let miner = Keypair::from_uri("//OperatorMiner").unwrap();
    for (name, key) in [("caller", &caller), ("miner", &miner)] {
        Wallet::new(&wallets, name, "default")
            .set_hotkey(key, None, false)
            .unwrap();
    }
    subnet
        .add_validator(&caller, 1_000 * RAO_PER_TAO)
        .await
        .unwrap();
    let uid = subnet.register(&miner).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chain_file = dir.path().join("chain.sqlite");
    let common = |name: &str| {
        vec![
            "--subtensor.db_path".to_string(),
            chain_file.to_str().unwrap().to_string(),
            "--netuid".into(),
            netuid.to_string(),
            "--wallet.path".into(),
            wallets.to_str().unwrap().to_string(),
            "--wallet.name".into(),
            name.into(),
            "--wallet.hotkey".into(),
            "default".into(),
        ]
    };
    let mut args = vec![
        "miner".to_string(),
        "--neuron.strategy".into(),
        "llm".into(),
    ];
    args.extend(common("miner"));
    args.extend(["--axon.ip", "127.0.0.1", "--axon.port"].map(String::from));
    args.push(port.to_string());
    args.extend(["--neuron.max_tokens", "8"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = dir.path().join("miner.log");
    let mut child = neuron_in(empty.path(), None, &args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_child(&mut child, &log, "the axon announced", || async {
        let metagraph = chain.metagraph(netuid).await.unwrap();
        metagraph.neurons[usize::from(uid)]
            .axon
            .as_ref()
            .is_some_and(|a| a.port == port)
    })
    .await;

    let mut prompt = neuron_command(["prompt", "What is the capital of France?", "--all"]);
    prompt
        .args(common("caller"))
        .args(["--timeout", "60"])
        .current_dir(empty.path());
    let out: Output = run_async(prompt).await;
    let all = succeeded(out);
    let answer = all
        .lines()
        .find(|l| l.starts_with(&format!("| {uid} ")))
        .unwrap_or_else(|| panic!("no row for the miner:\n{all}"));
    assert!(answer.contains("200"), "{answer}");

    let status = terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "SIGTERM exit {status}:\n{text}");
    assert!(text.contains("stopping miner"), "{text}");
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = succeeded(crate::support::bin::neuron(["completions", shell]));
        for word in [
            "validator",
            "miner",
            "local",
            "logging.debug",
            "scripts.root",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let err = failed(crate::support::bin::neuron(["completions", "cmd.exe"]));
    assert!(err.contains("invalid value"), "{err}");
}

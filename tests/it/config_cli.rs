//! The configuration flags as every subcommand sees them: `--neuron.device` naming a GPU
//! this build lacks stops a command at start-up (before scripts, keys or the chain), and
//! `--chain.file` (alias `--chain-db`, `$NEURON_CHAIN_FILE`) is a deprecated name of
//! `--subtensor.db_path` that warns.

use std::path::Path;
use std::process::Output;

use crate::support::bin::{neuron_command, run};
use crate::support::{failed as fails, succeeded as ok};

/// `neuron ARGS` with `$NEURON_HOME` in `home`, no inherited chain file variable.
fn neuron(home: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = neuron_command(args);
    cmd.env("NEURON_HOME", home)
        .env_remove("NEURON_CHAIN_FILE")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(std::process::Stdio::null());
    run(cmd)
}

#[test]
fn a_gpu_device_without_its_feature_fails_before_anything_starts() {
    for (device, feature) in [("cuda:0", "cuda"), ("metal", "metal")] {
        let enabled = match feature {
            "cuda" => cfg!(feature = "cuda"),
            _ => cfg!(feature = "metal"),
        };
        if enabled {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let chain = dir.path().join("chain.sqlite");
        let wallets = dir.path().join("wallets");
        let (chain_arg, wallets_arg) = (chain.to_str().unwrap(), wallets.to_str().unwrap());
        let events = dir.path().join("events.jsonl");
        let commands: [&[&str]; 7] = [
            &["validator", "--steps", "1"],
            &["miner"],
            &["local", "--steps", "1"],
            &["replay", events.to_str().unwrap()],
            &["task", "list"],
            &["finetune", "list"],
            &["prompt", "hello"],
        ];
        for command in commands {
            let mut args = command.to_vec();
            args.extend([
                "--neuron.device",
                device,
                "--subtensor.db_path",
                chain_arg,
                "--wallet.path",
                wallets_arg,
            ]);
            let err = fails(neuron(&home, &args, &[]));
            assert!(
                err.contains(&format!("`{feature}` feature")),
                "{command:?}: {err}"
            );
            assert!(
                err.contains(&format!("cargo build --release --features {feature}")),
                "{command:?}: {err}"
            );
            for later in ["no local chain", "has no hotkey", "loading scripts"] {
                assert!(!err.contains(later), "{command:?} got to `{later}`: {err}");
            }
        }
        assert!(!chain.exists(), "no chain file was created");
        assert!(!wallets.exists(), "no wallet was read or created");
        assert!(!home.join("local").exists(), "`neuron local` did not start");

        // The same from a configuration file: the error names the file.
        let file = dir.path().join("gpu.yaml");
        std::fs::write(&file, format!("neuron:\n  device: {device}\n")).unwrap();
        let err = fails(neuron(
            &home,
            &["validator", "--config", file.to_str().unwrap()],
            &[],
        ));
        assert!(
            err.contains(&format!("cargo build --release --features {feature}")),
            "{err}"
        );
        assert!(err.contains("gpu.yaml"), "{err}");
    }
}

#[test]
fn the_cpu_device_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let shown = ok(neuron(
        dir.path(),
        &["config", "show", "--neuron.device", "cpu"],
        &[],
    ));
    assert!(shown.contains("device: cpu"), "{shown}");
    let err = fails(neuron(
        dir.path(),
        &["config", "show", "--neuron.device", "tpu:0"],
        &[],
    ));
    assert!(err.contains("unknown device kind `tpu`"), "{err}");
}

#[test]
fn chain_file_is_a_deprecated_alias_of_subtensor_db_path() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = dir.path().join("chain.sqlite");
    let path = file.to_str().unwrap();
    ok(neuron(
        &home,
        &[
            "chain",
            "--subtensor.db_path",
            path,
            "init",
            "--block-time",
            "1",
        ],
        &[],
    ));
    let deprecated = "--chain.file / NEURON_CHAIN_FILE is deprecated: use --subtensor.db_path";

    // The new name: no warning.
    let new = neuron(
        &home,
        &["chain", "--subtensor.db_path", path, "status"],
        &[],
    );
    assert!(!String::from_utf8_lossy(&new.stderr).contains("deprecated"));
    assert!(ok(new).contains(path));

    // The old names work and warn, naming the new flag.
    let by_env = [("NEURON_CHAIN_FILE", file.as_path())];
    for (args, env) in [
        (&["chain", "--chain.file", path, "status"][..], &[][..]),
        (&["chain", "--chain-db", path, "status"], &[]),
        (&["chain", "status"], &by_env),
    ] {
        let out = neuron(&home, args, env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains(deprecated), "{args:?}: {stderr}");
        assert!(ok(out).contains(path), "{args:?}");
    }

    // Both given: the new flag wins, and the warning says the old one is ignored.
    let missing = dir.path().join("elsewhere.sqlite");
    let both = neuron(
        &home,
        &[
            "chain",
            "--chain.file",
            missing.to_str().unwrap(),
            "--subtensor.db_path",
            path,
            "status",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&both.stderr).into_owned();
    assert!(stderr.contains("deprecated and ignored"), "{stderr}");
    assert!(ok(both).contains(path));
    assert!(!missing.exists());

    // Every configured command takes both names alike.
    let shown = ok(neuron(
        &home,
        &["config", "show", "--chain.file", path],
        &[],
    ));
    assert!(shown.contains(&format!("db_path: {path}")), "{shown}");
}

#[test]
fn subtensor_block_time_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let shown = ok(neuron(dir.path(), &["config", "show"], &[]));
    assert!(!shown.contains("block_time"), "{shown}");
    fails(neuron(
        dir.path(),
        &["config", "show", "--subtensor.block_time", "2"],
        &[],
    ));
}

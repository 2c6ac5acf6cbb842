//! Support shared by the integration tests: the cache directory, pinned Python virtual
//! environments (created once under `$NEURON_HOME/venvs`, reused afterwards), the
//! script host over the shipped scripts (`shipped_host`), the `neuron` binary runner (`bin`), a strategy's miner on loopback (`miners`), the
//! simulated subtensor node (`subtensor_sim`), the fault-injecting chain wrapper
//! (`flaky_chain`), llama.cpp's OpenAI-compatible server (`llama_server`), and waiting for
//! a chain's block (`wait_for_block`).

pub mod bin;
pub mod flaky_chain;
pub mod llama_server;
pub mod miners;
pub mod protocols;
pub mod subtensor_sim;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use neuron::llm::{DeviceSpec, LoadOptions};
use neuron::models::Resolver;
use neuron::prompting::contract::PromptingContracts;
use neuron::script::{HostConfig, Lazy, Limits, ModelSettings, ScriptHost, Services};
use neuron::services::{Corpus, HttpConfig};

/// A script host over the shipped scripts with the default models (loaded on first
/// use), the fixture corpus as `wiki`, 900 s per hook (debug builds generate slowly)
/// and `settings` in the scripts' config.
pub fn shipped_host(settings: &[(&str, i64)]) -> ScriptHost {
    shipped_host_with_models(settings, &ModelSettings::default())
}

/// [`shipped_host`] with other models (e.g. another chat model for a miner).
pub fn shipped_host_with_models(settings: &[(&str, i64)], models: &ModelSettings) -> ScriptHost {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wiki = root.join("tests/fixtures/script/wiki_sample.json");
    let mut services = Services::with_resolver(
        Resolver::default(),
        models,
        HttpConfig::default(),
        Vec::new(),
    );
    services.wiki = Lazy::new(move || Corpus::load(&wiki).map_err(|e| e.to_string()));
    let mut config = HostConfig::new(root);
    config.limits = Limits {
        wall_time: Duration::from_secs(900),
        ..Limits::default()
    };
    for (key, value) in settings {
        config.config.insert((*key).into(), (*value).into());
    }
    ScriptHost::new(config, services, PromptingContracts).unwrap()
}

/// The device the model tests run on: `$NEURON_TEST_DEVICE` (`cpu`, `cuda:N`, `metal`),
/// the CPU when unset. The same tests check a GPU build on a GPU (docs/inference.md).
pub fn test_device() -> DeviceSpec {
    match std::env::var("NEURON_TEST_DEVICE") {
        Ok(spec) => spec.parse().expect("NEURON_TEST_DEVICE"),
        Err(_) => DeviceSpec::Cpu,
    }
}

/// [`LoadOptions::default`] on the [`test_device`].
pub fn llm_options() -> LoadOptions {
    LoadOptions {
        device: test_device().open().expect("open the test device"),
        ..LoadOptions::default()
    }
}

/// The project's cache directory, as the library resolves it.
pub fn neuron_home() -> PathBuf {
    neuron::home::neuron_home()
}

/// A Python virtual environment with `packages` (pip requirement strings, pinned)
/// installed, at `$NEURON_HOME/venvs/NAME`. Created on first use, guarded by a file
/// lock so parallel test processes wait for one installer. Returns the venv's python.
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    python_venv_built(name, packages, &[])
}

/// [`python_venv`] with pip running under the environment variables `env` (build
/// settings of packages compiled from source; a change of them rebuilds everything,
/// bypassing pip's cache of built wheels).
pub fn python_venv_built(name: &str, packages: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let venvs = neuron_home().join("venvs");
    std::fs::create_dir_all(&venvs).expect("create venvs dir");
    let lock = File::create(venvs.join(format!("{name}.lock"))).expect("create venv lock");
    lock.lock().expect("lock venv");
    let dir = venvs.join(name);
    let python = dir.join("bin").join("python");
    let stamp = dir.join(".neuron-installed");
    let mut wanted = packages.join("\n");
    for (key, value) in env {
        wanted.push_str(&format!("\n{key}={value}"));
    }
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        if !python.exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&dir));
        }
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(if env.is_empty() {
                &[][..]
            } else {
                &["--force-reinstall", "--no-cache-dir"][..]
            })
            .args(packages)
            .envs(env.iter().copied()));
        std::fs::write(&stamp, &wanted).expect("write venv stamp");
    }
    python
}

/// Runs `python` on `script` with `args`, returning stdout; panics with stderr on failure.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("spawn python");
    succeeded(out)
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed with {status}");
}

/// The stdout of a finished process that had to succeed; panics with its stderr.
pub fn succeeded(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "process failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is utf-8")
}

/// The stderr of a finished process that had to fail; panics with its stdout.
pub fn failed(out: std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "process should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("stderr is utf-8")
}

/// Waits until `chain` reaches `block` (panics after 60 s); the block it reached.
pub async fn wait_for_block(chain: &dyn neuron::chain::Chain, block: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = chain.current_block().await.unwrap();
        if now >= block {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "block {block} never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

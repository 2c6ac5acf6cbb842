//! The `neuron` binary under test: one runner for every test that starts it.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// `neuron ARGS`, ready to run or to extend, logging warnings only (`RUST_LOG=warn`).
pub fn neuron_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neuron"));
    cmd.args(args).env("RUST_LOG", "warn");
    cmd
}

/// Runs `neuron ARGS` to completion.
pub fn neuron<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(neuron_command(args))
}

/// Runs a prepared `neuron` command to completion.
pub fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run neuron")
}

/// [`run`] on a blocking thread, for async tests (the runtime keeps serving the
/// miners and chain the process talks to).
pub async fn run_async(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run(cmd))
        .await
        .expect("runner thread")
}

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

/// Polls `ready` every 10 ms until it holds, while `child` (logging to `log`) keeps
/// running: panics with the log if the child exits first or `what` takes over 60 s.
pub async fn wait_for_child<F, Fut>(
    child: &mut std::process::Child,
    log: &std::path::Path,
    what: &str,
    mut ready: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let started = std::time::Instant::now();
    while !ready().await {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("neuron exited with {status} before {what}:\n{}", log_text());
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no {what} in 60 s:\n{}",
            log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Sends SIGTERM (what systemd and pm2 send) to `child` and waits for it to exit.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: signals a child process this test started and has not yet reaped.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill(SIGTERM)");
    child.wait().unwrap()
}

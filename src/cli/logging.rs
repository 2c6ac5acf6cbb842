//! Logging set-up from the SDK's and SN1's flags: `--logging.debug`, `--logging.trace`,
//! `--logging.info` choose the level of `neuron`'s own logs (other crates log warnings
//! only, unless `--logging.enable_third_party_loggers`; `RUST_LOG`, when set, wins),
//! `--logging.json` writes JSON lines for log shippers, `--logging.logging_dir DIR` or
//! `--logging.record_log` also append to `DIR/neuron.log`, rotated by size as the SDK
//! rotates `bittensor.log`. Colour only when stderr is a terminal (and `NO_COLOR` is
//! unset).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Size past which `neuron.log` is rotated (the SDK's 25 MiB).
const ROTATE_BYTES: u64 = 25 * 1024 * 1024;
/// Rotated files kept: `neuron.log.1` (newest) … `neuron.log.10` (the SDK's 10).
const BACKUPS: u32 = 10;
/// The crates whose logs the level flags set; other crates log warnings only unless
/// `--logging.enable_third_party_loggers`.
const OWN_TARGETS: [&str; 2] = ["neuron", "neuron_qmatmul"];

/// The `--logging.*` flags, accepted by every subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoggingArgs {
    /// Log at debug level (RUST_LOG, when set, wins).
    #[arg(long = "logging.debug", global = true)]
    debug: bool,
    /// Log at trace level (RUST_LOG, when set, wins).
    #[arg(long = "logging.trace", global = true)]
    trace: bool,
    /// Log at info level, the default (RUST_LOG, when set, wins).
    #[arg(long = "logging.info", global = true)]
    info: bool,
    /// Also append the log to DIR/neuron.log (no colour; rotated past 25 MiB, 10 kept).
    #[arg(long = "logging.logging_dir", global = true, value_name = "DIR")]
    logging_dir: Option<PathBuf>,
    /// Also append the log to neuron.log in --logging.logging_dir (default
    /// $NEURON_HOME/logs).
    #[arg(long = "logging.record_log", global = true)]
    record_log: bool,
    /// Let other crates (HTTP, RPC, TLS) log at the chosen level too, not only warnings.
    #[arg(long = "logging.enable_third_party_loggers", global = true)]
    enable_third_party_loggers: bool,
    /// Write the log as JSON lines.
    #[arg(long = "logging.json", global = true)]
    json: bool,
}

impl LoggingArgs {
    /// The level the flags ask for: the most verbose one given, else `info`.
    fn level(&self) -> &'static str {
        if self.trace {
            "trace"
        } else if self.debug {
            "debug"
        } else {
            "info"
        }
    }

    /// The filter directives of the flags: `neuron`'s own crates at the level, the
    /// others at `warn` (or at the level too, with `--logging.enable_third_party_loggers`).
    fn directives(&self) -> String {
        let level = self.level();
        if self.enable_third_party_loggers {
            return level.to_string();
        }
        let own = OWN_TARGETS.map(|target| format!(",{target}={level}"));
        format!("warn{}", own.concat())
    }

    /// The log file's directory, if the flags ask for one (a leading `~/` is the home
    /// directory, as the SDK expands it: pm2 and systemd pass arguments unexpanded).
    fn log_dir(&self) -> Option<PathBuf> {
        match &self.logging_dir {
            Some(dir) => Some(expand_home(dir)),
            None if self.record_log => Some(neuron::home::neuron_home().join("logs")),
            None => None,
        }
    }

    /// Installs the global subscriber: stderr, plus the log file when asked.
    pub fn init(&self) -> anyhow::Result<()> {
        let filter = || {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(self.directives()))
        };
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let stderr = self.layer(std::io::stderr, colour).with_filter(filter());
        let file = match self.log_dir() {
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the log directory {}", dir.display()))?;
                let file = RotatingFile::open(&dir.join("neuron.log"), ROTATE_BYTES, BACKUPS)?;
                Some(self.layer(Mutex::new(file), false).with_filter(filter()))
            }
            None => None,
        };
        tracing_subscriber::registry()
            .with(stderr)
            .with(file)
            .try_init()
            .context("installing the logger")
    }

    fn layer<S, W>(&self, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi);
        if self.json {
            layer.json().boxed()
        } else {
            layer.boxed()
        }
    }
}

/// `dir` with a leading `~` replaced by `$HOME`.
fn expand_home(dir: &Path) -> PathBuf {
    match (dir.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => dir.to_path_buf(),
    }
}

/// A log file appended to and rotated by size: a write that would take it past
/// `max_bytes` first renames `FILE.1` … to `FILE.2` … (dropping the one past `backups`)
/// and the file to `FILE.1`, then starts a new file. Keeps at least one backup.
struct RotatingFile {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
    backups: u32,
}

impl RotatingFile {
    fn open(path: &Path, max_bytes: u64, backups: u32) -> anyhow::Result<Self> {
        let file = append(path)?;
        let len = file
            .metadata()
            .with_context(|| format!("reading the log file {}", path.display()))?
            .len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
            max_bytes,
            backups,
        })
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        name.into()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for n in (1..self.backups).rev() {
            match std::fs::rename(self.backup(n), self.backup(n + 1)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.backup(1))?;
        self.file = append(&self.path).map_err(std::io::Error::other)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.len > 0 && self.len + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn append(path: &Path) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        logging: LoggingArgs,
    }

    fn parse(args: &[&str]) -> LoggingArgs {
        Cli::try_parse_from(std::iter::once("neuron").chain(args.iter().copied()))
            .expect("flags parse")
            .logging
    }

    #[test]
    fn level_flags_set_neurons_own_logs_and_third_party_ones_on_request() {
        assert_eq!(
            parse(&[]).directives(),
            "warn,neuron=info,neuron_qmatmul=info"
        );
        assert_eq!(
            parse(&["--logging.debug"]).directives(),
            "warn,neuron=debug,neuron_qmatmul=debug"
        );
        assert_eq!(
            parse(&["--logging.debug", "--logging.trace"]).level(),
            "trace",
            "the most verbose wins"
        );
        assert_eq!(
            parse(&["--logging.trace", "--logging.enable_third_party_loggers"]).directives(),
            "trace"
        );
    }

    #[test]
    fn the_log_file_goes_where_the_sdk_flags_say() {
        assert_eq!(parse(&[]).log_dir(), None);
        assert_eq!(
            parse(&["--logging.record_log"]).log_dir(),
            Some(neuron::home::neuron_home().join("logs"))
        );
        assert_eq!(
            parse(&["--logging.logging_dir", "/var/log/sn1"]).log_dir(),
            Some(PathBuf::from("/var/log/sn1"))
        );
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                parse(&["--logging.logging_dir", "~/.bittensor/miners"]).log_dir(),
                Some(PathBuf::from(home).join(".bittensor/miners"))
            );
        }
    }

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_its_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("neuron.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut file = RotatingFile::open(&path, 20, 2).unwrap();
        for line in ["line one\n", "line two\n", "line three\n", "line four\n"] {
            file.write_all(line.as_bytes()).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "line four\n");
        assert_eq!(read(&file.backup(1)), "line two\nline three\n");
        assert_eq!(read(&file.backup(2)), "old line\nline one\n");
        assert!(!file.backup(3).exists(), "only two backups kept");
    }
}

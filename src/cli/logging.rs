//! Logging set-up from the SDK's and SN1's flags: `--logging.debug`, `--logging.trace`,
//! `--logging.info` choose the level (`RUST_LOG`, when set, wins), `--logging.json`
//! writes JSON lines for log shippers, `--logging.logging_dir DIR` also appends to
//! `DIR/neuron.log`. Colour only when stderr is a terminal (and `NO_COLOR` is unset).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    /// Also append the log to DIR/neuron.log (no colour).
    #[arg(long = "logging.logging_dir", global = true, value_name = "DIR")]
    logging_dir: Option<PathBuf>,
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

    /// Installs the global subscriber: stderr, plus the log file when asked.
    pub fn init(&self) -> anyhow::Result<()> {
        let filter =
            || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(self.level()));
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let stderr = self.layer(std::io::stderr, colour).with_filter(filter());
        let file = match &self.logging_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the log directory {}", dir.display()))?;
                let path = dir.join("neuron.log");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening the log file {}", path.display()))?;
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

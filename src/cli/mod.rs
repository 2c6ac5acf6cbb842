//! Command-line edge: argument parsing (clap) and dispatch. Each subcommand lives in
//! its own file; errors are `anyhow` here and typed (`thiserror`) in the library.

mod api_key;
mod bench;
mod chain;
mod config;
mod embed;
mod finetune;
mod flags;
mod generate;
mod local;
mod logging;
mod models;
mod neuron_run;
mod prompt;
mod replay;
mod scripts;
mod task;
mod wallet;

use clap::{Args, CommandFactory, Parser, Subcommand};
use flags::ConfigArgs;

/// A Rust host for Bittensor subnet neurons.
#[derive(Debug, Parser)]
#[command(name = "neuron", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    logging: logging::LoggingArgs,
}

/// A subcommand taking the neuron configuration flags (`--config`, `--netuid`,
/// `--neuron.*`, `--wallet.*`, ...) next to its own options.
#[derive(Debug, Args)]
struct Configured<T: Args> {
    #[command(flatten)]
    args: T,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the cache directory ($NEURON_HOME).
    Home,
    /// Run a whole subnet on this machine: local chain, miners, validator, report.
    Local(Configured<local::LocalArgs>),
    /// Run an SN1 validator.
    Validator(Configured<neuron_run::ValidatorArgs>),
    /// Serve an SN1 miner with a strategy script.
    Miner(Configured<neuron_run::MinerArgs>),
    /// Keys of the validator's OpenAI-compatible API (`--api.port`): add, list, revoke.
    ApiKey(Configured<api_key::ApiKeyArgs>),
    /// Ask a subnet's miners one question (the SDK's `bt.prompt`): the best answer by
    /// incentive, or every answer with `--all`.
    Prompt(Configured<prompt::PromptArgs>),
    /// Re-score recorded validator steps (events.jsonl) with the current task scripts:
    /// recorded vs new mean reward and weights per miner.
    Replay(Configured<replay::ReplayArgs>),
    /// Inspect the configuration.
    Config(Configured<config::ConfigArgsCommand>),
    /// The chain (local or subtensor): status, metagraph, register, stake, weights, ...
    Chain(chain::ChainArgs),
    /// Model and dataset artifacts: fetch, list, path.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Generate a chat reply with a local LLM, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Sentence embeddings (JSON lines).
    Embed(embed::EmbedArgs),
    /// Benchmarks of the inference core.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Finetuning subnet: commit models, evaluate them, run the validator.
    Finetune(Configured<finetune::FinetuneArgs>),
    /// Task scripts: list, check, run one step.
    Task(Configured<task::TaskArgs>),
    /// Create, regenerate, list and inspect bittensor wallets; sign and verify.
    Wallet(wallet::WalletArgs),
    /// The scripts: list every live one and where it comes from; copy the shipped ones
    /// out for editing.
    Scripts(Configured<scripts::ScriptsArgs>),
    /// Print a shell completion script (e.g. `neuron completions bash >
    /// /etc/bash_completion.d/neuron`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Parses the command line, sets up logging and runs the chosen subcommand.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.logging.init()?;
    match cli.command {
        Command::Home => {
            println!("{}", neuron::home::neuron_home().display());
            Ok(())
        }
        Command::Local(c) => local::run(&c.args, &c.config),
        Command::Validator(c) => neuron_run::validator(&c.args, &c.config),
        Command::Miner(c) => neuron_run::miner(&c.config),
        Command::ApiKey(c) => api_key::run(&c.args, &c.config),
        Command::Prompt(c) => prompt::run(&c.args, &c.config),
        Command::Replay(c) => replay::run(&c.args, &c.config),
        Command::Config(c) => config::run(&c.args.command, &c.config),
        Command::Chain(args) => tokio::runtime::Runtime::new()?.block_on(chain::run(args)),
        Command::Models(cmd) => models::run(cmd),
        Command::Generate(args) => generate::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Finetune(c) => finetune::run(c.args.command, &c.config),
        Command::Task(c) => task::run(c.args, &c.config),
        Command::Wallet(args) => wallet::run(args),
        Command::Scripts(c) => scripts::run(c.args.command, &c.config),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "neuron", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM (what systemd,
/// pm2 and `docker stop` send).
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent_across_subcommands() {
        super::Cli::command().debug_assert();
    }
}

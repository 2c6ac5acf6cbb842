//! `neuron local`: a whole subnet on this machine, with a live table and a report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use neuron::prompting::local::{self, DEFAULT_STRATEGIES, LocalOptions, Progress};
use neuron::prompting::report::write_report;

use super::flags::ConfigArgs;

/// Options of `neuron local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of miners.
    #[arg(long, default_value_t = 5)]
    miners: usize,
    /// Strategy scripts (scripts/miners/NAME.rhai), assigned round-robin.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_STRATEGIES.map(String::from))]
    strategies: Vec<String>,
    /// Number of validators.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// Validator steps to run.
    #[arg(long, default_value_t = 20)]
    steps: u64,
    /// Base seed of the validators' step RNG.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Block time of the embedded chain, in seconds.
    #[arg(long, default_value_t = 0.5)]
    block_time: f64,
    /// Data directory (chain, validator state); default `$NEURON_HOME/local`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Report directory; default `DATA_DIR/report`.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Run the subnet with commit-reveal: `v2` (validators commit hashes and reveal
    /// them) or `v4` (timelocked commits revealed by the chain's beacon).
    #[arg(long, value_parser = ["v2", "v4"])]
    commit_reveal: Option<String>,
}

/// Runs `neuron local`.
pub fn run(args: &LocalArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let mut config = config_args.load()?;
    if config_args.neuron.neuron_timeout.is_none() {
        // Small CPU models answer slower than SN1's GPUs; give them time.
        config.neuron.timeout = 60.0;
    }
    if config_args.neuron.neuron_sample_size.is_none() {
        config.neuron.sample_size = args.miners;
    }
    if config_args.neuron.neuron_epoch_length.is_none() {
        config.neuron.epoch_length = 10;
    }
    if let Some(version) = &args.commit_reveal {
        config.neuron.commit_reveal = version.parse().map_err(anyhow::Error::msg)?;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| neuron::home::neuron_home().join("local"));
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("report"));
    let options = LocalOptions {
        data_dir,
        miners: args.miners,
        strategies: args.strategies.clone(),
        validators: args.validators,
        steps: args.steps,
        seed: args.seed,
        block_time: Duration::from_secs_f64(args.block_time),
        config: config.clone(),
    };
    let scripts = neuron::prompting::script_host(&config).context("loading scripts")?;
    let runtime = tokio::runtime::Runtime::new()?;
    // A terminal gets the progress bar and the table after every step; anything else
    // (a pipe, a file, CI) one plain line per step and the table at each epoch.
    let mut view = if std::io::stdout().is_terminal() {
        let bar = ProgressBar::new(args.steps * args.validators.max(1) as u64);
        bar.set_style(ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{elapsed_precise}] {msg}",
        )?);
        View::Terminal(bar)
    } else {
        View::Plain { epochs: 0 }
    };
    let report = runtime.block_on(async {
        tokio::select! {
            report = local::run(&options, scripts, |progress| view.show(progress)) => report.map(Some),
            _ = super::stop_signal() => Ok(None),
        }
    })?;
    if let View::Terminal(bar) = &view {
        bar.finish_and_clear();
    }
    let Some(report) = report else {
        eprintln!("interrupted; no report written");
        return Ok(());
    };
    write_report(&report_dir, &options, &report)?;
    println!("{}", table(&report.final_rows));
    if report.validators.len() > 1 {
        println!("{}", validator_table(&report.validators));
    }
    println!(
        "{} steps ({} failed, {:.2} steps/min), {} epochs; report: {}",
        report.events.len() + report.failures.len(),
        report.failures.len(),
        report.steps_per_min(),
        report.epochs,
        report_dir.join("report.md").display()
    );
    if let Some(first) = report.failures.first()
        && report.events.is_empty()
    {
        anyhow::bail!("every step failed; the first: {first}");
    }
    Ok(())
}

/// How progress is shown: a live bar on a terminal, plain lines otherwise.
enum View {
    /// A progress bar with the miner table printed above it after each step.
    Terminal(ProgressBar),
    /// One line per step; the miner table when an epoch has run.
    Plain {
        /// Epochs already shown.
        epochs: u64,
    },
}

impl View {
    fn show(&mut self, progress: &Progress) {
        match self {
            View::Terminal(bar) => {
                bar.inc(1);
                match &progress.step {
                    Ok(event) => bar.set_message(format!(
                        "validator {} block {} task {}",
                        progress.validator, progress.block, event.task
                    )),
                    Err(err) => bar.println(format!("step failed: {err}")),
                }
                bar.println(table(&progress.miners).to_string());
            }
            View::Plain { epochs } => {
                println!("{}", step_line(progress));
                if progress.epochs != *epochs {
                    *epochs = progress.epochs;
                    println!("epoch {} (block {})", progress.epochs, progress.block);
                    println!("{}", table(&progress.miners));
                }
            }
        }
    }
}

/// One plain line for a step: position, validator, block, task and each miner's reward.
fn step_line(progress: &Progress) -> String {
    let head = format!(
        "step {}/{} validator {} block {}",
        progress.done, progress.total, progress.validator, progress.block
    );
    match &progress.step {
        Ok(event) => {
            let rewards: Vec<String> = event
                .responses
                .iter()
                .map(|r| format!("{}={:.3}", r.uid, r.reward))
                .collect();
            format!(
                "{head} task {} ({:.1} s) rewards {}",
                event.task,
                event.generate_s + event.query_s + event.score_s,
                rewards.join(" ")
            )
        }
        Err(err) => format!("{head} failed: {err}"),
    }
}

fn validator_table(rows: &[local::ValidatorRow]) -> Table {
    let mut table = Table::new();
    table.set_header(["validator", "uid", "stake (TAO)", "vtrust", "dividends"]);
    for row in rows {
        table.add_row([
            row.index.to_string(),
            row.uid.to_string(),
            format!("{:.0}", row.stake_tao),
            format!("{:.4}", row.vtrust),
            format!("{:.4}", row.dividends),
        ]);
    }
    table
}

fn table(rows: &[local::MinerRow]) -> Table {
    let mut table = Table::new();
    table.set_header(["uid", "strategy", "last reward", "score", "incentive"]);
    for row in rows {
        table.add_row([
            row.uid.to_string(),
            row.strategy.clone(),
            row.last_reward.map_or("-".into(), |r| format!("{r:.3}")),
            format!("{:.4}", row.score),
            format!("{:.4}", row.incentive),
        ]);
    }
    table
}

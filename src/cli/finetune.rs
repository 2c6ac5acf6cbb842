//! `neuron finetune`: commit a model id (miners), evaluate models once, or run the
//! finetuning validator loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use neuron::chain::subtensor::SignerRole;
use neuron::config::Config;
use neuron::finetune::{
    Batch, Candidate, DEFAULT_POLICY, Evaluator, FinetuneConfig, FinetuneValidator, ModelId,
    ModelStore, Policy, ScriptPolicy, StoreConfig, WorkerCommand, batches, hash_directory,
    load_pairs, read_models,
};
use neuron::llm::{CpuKernels, LoadOptions};
use neuron::script::{Roots, configured_roots};
use neuron::wallet::Keypair;

use super::flags::{self, ConfigArgs, open_chain};

/// `neuron finetune`: the subcommand (the chain, wallet, subnet and device come from the
/// configuration: `--subtensor.*`, `--wallet.*`, `--netuid`, `--neuron.device`).
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FinetuneCommand,
}

/// `neuron finetune …`
#[derive(Debug, Subcommand)]
pub enum FinetuneCommand {
    /// Commit a model id (`namespace:name:commit:hash:competition`) to the chain.
    Commit(CommitArgs),
    /// Evaluate models once on a data file: losses, wins and weights.
    Eval(EvalArgs),
    /// Run the validator loop: commitments → models → losses → weights on the chain.
    Validate(ValidateArgs),
    /// List the model ids committed on a subnet.
    List,
    /// Evaluate one model for `eval` or `validate`, which run this in a child process per
    /// candidate: a request (JSON) on stdin, the losses (JSON) on stdout.
    #[command(hide = true)]
    EvalWorker(LoadArgs),
}

/// The hotkey that signs commitments and weights: the configured wallet's, or a
/// development key.
#[derive(Debug, Args)]
pub struct HotkeyArgs {
    /// Sign with this secret URI instead of the wallet's hotkey (a development key such
    /// as //Alice, or `<mnemonic>//hard/soft`).
    #[arg(long, value_name = "URI")]
    hotkey_uri: Option<String>,
}

impl HotkeyArgs {
    fn signer(&self, config: &Config) -> Result<Keypair> {
        flags::signer(
            &config.wallet,
            SignerRole::Hotkey,
            self.hotkey_uri.as_deref(),
        )
    }
}

/// Arguments of `neuron finetune commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Hub repository, `NAMESPACE/NAME`.
    #[arg(long)]
    repo: String,
    /// Git commit (revision) of the repository.
    #[arg(long)]
    commit: String,
    /// Competition entered.
    #[arg(long, default_value = "m1")]
    competition: String,
    /// The model's files (a directory or a single file), hashed as the reference does.
    /// Default: `--models-dir`'s `NAMESPACE/NAME[/COMMIT]`, else the hub download.
    #[arg(long)]
    path: Option<PathBuf>,
    /// Offline models directory (`DIR/NAMESPACE/NAME[/COMMIT]/…`).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    #[command(flatten)]
    hotkey: HotkeyArgs,
}

/// Model loading flags (the device is `--neuron.device`).
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Keep Q4_1/Q5_x weights that candle multiplies as shipped instead of re-quantising
    /// them to Q8_0.
    #[arg(long)]
    no_requantize: bool,
    /// Multiply quantised weights with candle's CPU kernels only, not neuron's own.
    #[arg(long)]
    candle_kernels: bool,
    /// Policy script (default: `scripts/finetune/validator.rhai` of the script roots,
    /// `--scripts.root` overlaying the shipped one).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Evaluate every model in this process instead of one child process per model
    /// (saves a process start per model; a model that aborts the process stops the run).
    #[arg(long)]
    in_process: bool,
    /// Seconds one model's evaluation process may run before it is killed and the model
    /// scores +inf.
    #[arg(long, default_value_t = 1800.0)]
    eval_timeout: f64,
}

impl LoadArgs {
    /// The evaluator in this process, with these flags.
    fn local_evaluator(&self, config: &Config) -> Result<Evaluator> {
        Ok(Evaluator::new(LoadOptions {
            device: config.neuron.device.open()?,
            cpu_kernels: CpuKernels {
                own: !self.candle_kernels,
                requantize: !self.no_requantize,
                ..CpuKernels::default()
            },
            ..LoadOptions::default()
        }))
    }

    /// The evaluator of a round: one `neuron finetune eval-worker` child process per
    /// model, with the same device and kernels, unless `--in-process`.
    fn evaluator(&self, config: &Config) -> Result<Evaluator> {
        let local = self.local_evaluator(config)?;
        if self.in_process {
            return Ok(local);
        }
        let mut args: Vec<std::ffi::OsString> = vec![
            "finetune".into(),
            "eval-worker".into(),
            "--neuron.device".into(),
            config.neuron.device.to_string().into(),
        ];
        if self.no_requantize {
            args.push("--no-requantize".into());
        }
        if self.candle_kernels {
            args.push("--candle-kernels".into());
        }
        let program = std::env::current_exe().context("locating the neuron executable")?;
        let deadline = Duration::try_from_secs_f64(self.eval_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--eval-timeout must be a positive number of seconds")?;
        Ok(local.isolated(WorkerCommand {
            program,
            args,
            deadline,
        }))
    }

    fn policy(&self, config: &Config) -> Result<Arc<ScriptPolicy>> {
        let path = match &self.policy {
            Some(path) => path.clone(),
            None => Roots::new(&configured_roots(&config.scripts)?)?
                .find(Path::new(DEFAULT_POLICY))
                .with_context(|| format!("no script root has {DEFAULT_POLICY}"))?,
        };
        Ok(Arc::new(ScriptPolicy::load(&path).with_context(|| {
            format!("loading policy {}", path.display())
        })?))
    }
}

/// Arguments of `neuron finetune eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Comma-separated model paths (.gguf files or model directories), in commit order:
    /// the first is treated as committed first (block 1, 2, …) unless `--blocks` says
    /// otherwise.
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<PathBuf>,
    /// Comma-separated commit blocks, one per model.
    #[arg(long, value_delimiter = ',')]
    blocks: Vec<u64>,
    /// Current block for the ε schedule (default: the last commit block).
    #[arg(long)]
    block: Option<u64>,
    /// JSONL file or directory of (prompt, response) pairs or validator events.
    #[arg(long)]
    data: PathBuf,
    /// Batches (default: the policy's `batches_per_round`).
    #[arg(long)]
    batches: Option<usize>,
    /// Pairs per batch (default: the policy's `pairs_per_batch`).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the first model's per-token losses (rendered prompt, response, token
    /// ids, losses; one JSON line per pair) to this file, timing that pass alone.
    #[arg(long)]
    dump: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

/// Arguments of `neuron finetune validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Evaluation data: JSONL file or directory (default: the validator's events,
    /// `$NEURON_HOME/validator/events.jsonl`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Offline models directory (`DIR/NAMESPACE/NAME[/COMMIT]/…`).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Never download from the Hugging Face hub.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    hotkey: HotkeyArgs,
    /// State file (default `$NEURON_HOME/finetune/validator-NETUID.json`).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Pause between rounds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after this many rounds (default: run until interrupted).
    #[arg(long)]
    rounds: Option<u64>,
    /// `version_key` sent with the weights.
    #[arg(long, default_value_t = 0)]
    version_key: u64,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = num.parse().map_err(|_| format!("bad duration `{text}`"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in `{text}` (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration `{text}`: {e}"))
}

/// Runs a `neuron finetune` subcommand.
pub fn run(cmd: FinetuneCommand, config_args: &ConfigArgs) -> Result<()> {
    let config = config_args.load()?;
    let rt = tokio::runtime::Runtime::new()?;
    match cmd {
        FinetuneCommand::Commit(args) => rt.block_on(commit(args, &config)),
        FinetuneCommand::Eval(args) => eval(args, &config),
        FinetuneCommand::Validate(args) => rt.block_on(validate(args, &config)),
        FinetuneCommand::List => rt.block_on(list(&config)),
        FinetuneCommand::EvalWorker(args) => {
            let evaluator = args.local_evaluator(&config)?;
            Ok(evaluator
                .serve_worker(&mut std::io::stdin().lock(), &mut std::io::stdout().lock())?)
        }
    }
}

fn store(models_dir: Option<PathBuf>, offline: bool) -> ModelStore {
    let mut config = StoreConfig::new(&neuron::home::neuron_home());
    config.models_dir = models_dir;
    config.hub = !offline;
    ModelStore::new(config)
}

async fn commit(args: CommitArgs, config: &Config) -> Result<()> {
    let Some((namespace, name)) = args.repo.split_once('/') else {
        bail!("--repo must be NAMESPACE/NAME, got `{}`", args.repo);
    };
    let mut id = ModelId {
        namespace: namespace.into(),
        name: name.into(),
        commit: Some(args.commit.clone()),
        hash: None,
        competition_id: Some(args.competition.clone()),
    };
    let dir = match &args.path {
        Some(path) => path.clone(),
        None => store(args.models_dir.clone(), false).fetch(&id)?,
    };
    id.hash = Some(hash_directory(&dir)?);
    let text = id.to_compressed()?;
    let signer = args.hotkey.signer(config)?;
    let chain = open_chain(config).await?;
    let receipt = chain
        .set_commitment(&signer, config.netuid, text.as_bytes())
        .await?;
    println!("{text}");
    println!("committed at block {}", receipt.block);
    Ok(())
}

async fn list(config: &Config) -> Result<()> {
    let chain = open_chain(config).await?;
    for (uid, block, id) in read_models(chain.as_ref(), config.netuid).await? {
        match id {
            Ok(id) => println!("{uid}\t{block}\t{}", id.to_compressed()?),
            Err(e) => println!("{uid}\t{block}\tinvalid: {e}"),
        }
    }
    Ok(())
}

fn eval(args: EvalArgs, config: &Config) -> Result<()> {
    if !args.blocks.is_empty() && args.blocks.len() != args.models.len() {
        bail!(
            "--blocks has {} values for {} models",
            args.blocks.len(),
            args.models.len()
        );
    }
    let policy = args.load.policy(config)?;
    let settings = policy.settings()?;
    let pairs = load_pairs(&args.data)?;
    let size = args.batch_size.unwrap_or(settings.pairs_per_batch);
    if size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let batch_list = batches(
        &pairs,
        args.batches.unwrap_or(settings.batches_per_round),
        size,
        0,
    );
    let candidates: Vec<Candidate> = args
        .models
        .iter()
        .enumerate()
        .map(|(i, path)| Candidate {
            uid: u16::try_from(i).unwrap_or(u16::MAX),
            id: ModelId {
                namespace: "local".into(),
                name: display_name(path),
                commit: None,
                hash: None,
                competition_id: None,
            },
            block: args.blocks.get(i).copied().unwrap_or(i as u64 + 1),
            path: if path.exists() {
                Ok(path.clone())
            } else {
                Err(format!("{}: no such file or directory", path.display()))
            },
        })
        .collect();
    let evaluator = args.load.evaluator(config)?;
    if let Some(dump) = &args.dump {
        write_dump(&evaluator, &args.models[0], &batch_list, dump)?;
    }
    let block = args
        .block
        .unwrap_or_else(|| candidates.iter().map(|c| c.block).max().unwrap_or(0));
    let outcome = evaluator.evaluate(&candidates, &batch_list, policy.as_ref(), block)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    println!(
        "{} batches of {size} pairs; {} response tokens in {:.1} s ({:.0} tok/s)",
        batch_list.len(),
        outcome.tokens,
        outcome.secs,
        outcome.tokens as f64 / outcome.secs.max(1e-9)
    );
    println!(
        "{:<4} {:<32} {:>6} {:>8} {:>10} {:>6} {:>8} {:>8}",
        "#", "model", "block", "ε", "mean loss", "wins", "win rate", "weight"
    );
    for s in &outcome.scores {
        let eps = policy.epsilon(block.saturating_sub(s.block) as i64)?;
        println!(
            "{:<4} {:<32} {:>6} {:>8.5} {:>10.5} {:>6} {:>8.3} {:>8.4}{}",
            s.uid,
            s.model,
            s.block,
            eps,
            s.mean_loss,
            s.wins,
            s.win_rate,
            s.weight,
            s.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn write_dump(evaluator: &Evaluator, model: &Path, batches: &[Batch], out: &Path) -> Result<()> {
    let service = evaluator.load(model)?;
    let start = std::time::Instant::now();
    let pairs = evaluator.pair_losses(&service, batches);
    let secs = start.elapsed().as_secs_f64();
    let mut text = String::new();
    let mut tokens = 0;
    for (b, batch) in pairs.iter().enumerate() {
        for pair in batch {
            let line = match pair {
                Ok(p) => {
                    tokens += p.tokens.len();
                    serde_json::json!({"batch": b, "prompt": p.prompt, "response": p.response,
                                       "tokens": p.tokens, "losses": p.losses})
                }
                Err(e) => serde_json::json!({"batch": b, "error": e}),
            };
            text.push_str(&line.to_string());
            text.push('\n');
        }
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "dump: {tokens} response tokens of {} in {secs:.2} s (model load excluded): {:.0} tok/s",
        model.display(),
        tokens as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().replace(':', "_"))
        .unwrap_or_else(|| path.display().to_string())
}

async fn validate(args: ValidateArgs, config: &Config) -> Result<()> {
    let home = neuron::home::neuron_home();
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| home.join("validator").join("events.jsonl"));
    let pairs = load_pairs(&data).with_context(|| "loading evaluation data (--data)")?;
    let policy = args.load.policy(config)?;
    let signer = Arc::new(args.hotkey.signer(config)?);
    let chain = open_chain(config).await?;
    let netuid = config.netuid;
    let validator_config = FinetuneConfig {
        netuid,
        state_path: args.state.clone().unwrap_or_else(|| {
            home.join("finetune")
                .join(format!("validator-{netuid}.json"))
        }),
        pairs,
        version_key: args.version_key,
    };
    let mut validator = FinetuneValidator::new(
        chain,
        signer,
        policy.clone(),
        store(args.models_dir.clone(), args.offline),
        args.load.evaluator(config)?,
        validator_config,
    )?
    .with_weight_setting(config.neuron.commit_reveal, config.neuron.mechid);
    let mut done = 0u64;
    loop {
        if let Err(e) = policy.reload() {
            tracing::warn!(error = %e, "policy script rejected; the previous version serves");
        }
        match validator.round().await {
            Ok(report) => {
                for s in &report.scores {
                    tracing::info!(
                        uid = s.uid, model = %s.model, loss = s.mean_loss, wins = s.wins,
                        win_rate = s.win_rate, weight = s.weight, error = ?s.error, "scored"
                    );
                }
                tracing::info!(
                    step = report.step, block = report.block, competition = %report.competition,
                    weights = ?report.weights, set_at = ?report.weights_set_at,
                    set_error = ?report.weights_error, "round done"
                );
            }
            Err(e) => tracing::error!(error = %e, "round failed"),
        }
        done += 1;
        if args.rounds.is_some_and(|n| done >= n) {
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
    }
}

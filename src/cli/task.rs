//! `neuron task …`: tools for script authors — list the task rotation, check script
//! files (compile, contract, one seeded generate), run one full step with a reward
//! breakdown.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use neuron::config::Config;
use neuron::prompting::challenge::{Challenge, TaskChoice};
use neuron::prompting::contract::{
    PromptingContracts, PromptingLookups, PromptingScript, ScriptKind,
};
use neuron::prompting::hooks::{Answer, PromptingHooks};
use neuron::prompting::host_config;
use neuron::script::ScriptHost;

use super::flags::ConfigArgs;
use super::scripts::{Origin, status};

/// `neuron task`: the subcommand (models come from the configuration:
/// `--neuron.model_id`, `--neuron.embed_model_id`, `--neuron.device`).
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TaskCommand,
    /// Deprecated name of --neuron.persona (removed in the next release).
    #[arg(long = "persona", global = true, hide = true, value_name = "NAME")]
    pub persona: Option<String>,
}

impl TaskArgs {
    /// Applies the deprecated `--persona NAME` to `config`, with a warning, unless
    /// `--neuron.persona` is given, which wins. (The deprecated `--scripts DIR` is a
    /// config flag of every command: `flags::ScriptsAlias`.)
    fn apply_deprecated(&self, config_args: &ConfigArgs, config: &mut Config) {
        if let Some(persona) = &self.persona {
            if config_args.neuron.neuron_persona.is_some() {
                tracing::warn!(
                    "--persona is deprecated and ignored here: --neuron.persona is given and wins"
                );
            } else {
                tracing::warn!(
                    "--persona is deprecated: use --neuron.persona (the YAML key neuron.persona)"
                );
                config.neuron.persona = persona.clone();
            }
        }
    }
}

/// `neuron task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List task scripts: name, weight, file, the root it comes from (`shipped` or a
    /// `--scripts.root` directory) and last reload status.
    List {
        #[command(flatten)]
        host: HostArgs,
    },
    /// Compile and contract-check FILEs; for tasks run one seeded generate and print
    /// query, challenge and reference. Exits non-zero if any file fails.
    Check {
        /// Script files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// Seed of the generate step.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run one full step of task NAME: generate, persona, challenge, and the reward
    /// breakdown of a completion.
    Run {
        /// The task's NAME.
        name: String,
        /// Seed of the step.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The completion to score (default: the reference itself, with the generation's
        /// logprobs for the verified-inference task).
        #[arg(long)]
        completion: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
}

/// Config values scripts read, shared by the subcommands (the roots come from
/// `--scripts.root`, the persona from `--neuron.persona`).
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// A config value scripts read as `ctx.config(KEY)`, e.g. `--set max_tokens=32` or
    /// `--set wiki_mode=live` (numbers and booleans are parsed; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn host(args: &HostArgs, config: &Config) -> anyhow::Result<ScriptHost> {
    let services = neuron::prompting::services(config);
    let mut host = host_config(config)?;
    for pair in &args.set {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair}: expected KEY=VALUE"))?;
        let value: rhai::Dynamic = if let Ok(i) = value.parse::<rhai::INT>() {
            i.into()
        } else if let Ok(f) = value.parse::<f64>() {
            f.into()
        } else if let Ok(b) = value.parse::<bool>() {
            b.into()
        } else {
            value.into()
        };
        host.config.insert(key.into(), value);
    }
    ScriptHost::new(host, services, PromptingContracts).context("loading the scripts")
}

/// Runs a `task` subcommand.
pub fn run(args: TaskArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let mut config = config_args.load()?;
    args.apply_deprecated(config_args, &mut config);
    let persona = &config.neuron.persona;
    match args.command {
        TaskCommand::List { host: args } => list(&host(&args, &config)?),
        TaskCommand::Check {
            files,
            host: args,
            seed,
        } => check(&host(&args, &config)?, &files, seed, persona),
        TaskCommand::Run {
            name,
            seed,
            completion,
            host: args,
        } => step(&host(&args, &config)?, &name, seed, completion, persona),
    }
}

fn list(host: &ScriptHost) -> anyhow::Result<()> {
    let origin = Origin::new();
    println!(
        "{:<22} {:>7}  {:<30} {:<10} status",
        "name", "weight", "file", "from"
    );
    for row in host.listing() {
        let is_task = row
            .script
            .as_ref()
            .is_some_and(|s| s.script_kind() == Some(ScriptKind::Task))
            || (row.script.is_none() && row.rel.starts_with("tasks"));
        if !is_task {
            continue;
        }
        let (name, weight) = match row.script.as_ref().and_then(|s| s.task_spec().cloned()) {
            Some(spec) => (spec.name, format!("{:.2}", spec.weight)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{name:<22} {weight:>7}  {:<30} {:<10} {}",
            row.rel.display(),
            origin.of(&row.root),
            status(&row.status)
        );
    }
    Ok(())
}

fn check(host: &ScriptHost, files: &[PathBuf], seed: u64, persona: &str) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        match check_one(host, file, seed, persona) {
            Ok(()) => println!("ok    {}", file.display()),
            Err(err) => {
                failed += 1;
                println!("FAIL  {}: {err:#}", file.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} script(s) failed the check", files.len());
    }
    Ok(())
}

fn check_one(
    host: &ScriptHost,
    file: &std::path::Path,
    seed: u64,
    persona: &str,
) -> anyhow::Result<()> {
    let script = host.compile(file)?;
    println!(
        "{}: {} script `{}`",
        file.display(),
        script.kind,
        script.name()
    );
    if script.script_kind() == Some(ScriptKind::Task) {
        let spec = script.task_spec().context("task without spec")?;
        let terms = |t: &[neuron::score::Weighted]| {
            t.iter()
                .map(|t| format!("{} {}", t.function, t.weight))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        println!("  weight:    {}", spec.weight);
        println!("  rewards:   {}", terms(spec.rewards.rewards()));
        println!("  penalties: {}", terms(spec.rewards.penalties()));
        let made = Challenge::make(
            host,
            &host.ctx(seed, 0),
            TaskChoice::Given(Arc::new(script)),
            persona,
        )?;
        println!("  query:     {}", made.instance.query);
        println!("  challenge: {}", made.text);
        println!("  reference: {}", made.instance.reference);
    }
    Ok(())
}

fn step(
    host: &ScriptHost,
    name: &str,
    seed: u64,
    completion: Option<String>,
    persona: &str,
) -> anyhow::Result<()> {
    let ctx = host.ctx(seed, 0);
    let made = Challenge::make(host, &ctx, TaskChoice::Given(host.task(name)?), persona)?;
    let answer = match completion {
        Some(completion) => Answer::of(completion),
        None => made.reference_answer(),
    };
    let breakdown = host
        .reward(
            &made.task,
            &ctx,
            &made.instance,
            &made.text,
            std::slice::from_ref(&answer),
        )?
        .remove(0);
    let out = serde_json::json!({
        "task": made.instance.task,
        "seed": seed,
        "persona": made.persona_json(),
        "query": made.instance.query,
        "challenge": made.text,
        "reference": made.instance.reference,
        "completion": answer.completion,
        "reward": breakdown,
        "fields": made.fields_json(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `neuron task` as the CLI declares it: its own arguments and the config flags.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        task: TaskArgs,
        #[command(flatten)]
        config: ConfigArgs,
    }

    /// The configuration `neuron task ARGS` runs with.
    fn config_of(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(std::iter::once("task").chain(args.iter().copied()))
            .expect("flags parse");
        let mut config = cli.config.load().unwrap();
        cli.task.apply_deprecated(&cli.config, &mut config);
        config
    }

    #[test]
    fn persona_is_a_deprecated_name_of_neuron_persona() {
        let old = config_of(&["run", "qa", "--persona", "pirate"]);
        assert_eq!(old.neuron.persona, "pirate");
        let before = config_of(&["--persona", "pirate", "list"]);
        assert_eq!(
            before.neuron.persona, "pirate",
            "given before the subcommand"
        );
        let both = config_of(&["list", "--persona", "pirate", "--neuron.persona", "sailor"]);
        assert_eq!(both.neuron.persona, "sailor", "new flag wins");
        let none = config_of(&["list"]);
        assert_eq!(none.neuron.persona, Config::default().neuron.persona);
    }
}

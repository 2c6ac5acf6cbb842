//! `neuron replay`: re-scores recorded validator steps with the current (possibly
//! edited) task scripts and compares rewards and weights with what was recorded.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Table;
use comfy_table::presets::ASCII_FULL_CONDENSED;
use neuron::prompting::replay::{MalformedLines, Replay, ReplayOptions, TaskScripts, replay};
use neuron::prompting::script_host;
use neuron::prompting::state::ScoreUpdate;
use neuron::script::{ReloadStatus, ScriptHost};

use super::flags::ConfigArgs;

/// Options of `neuron replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// An events file (`events.jsonl`), or a validator state directory: its rotated
    /// logs are read oldest first.
    events: PathBuf,
    /// Score with the task scripts in DIR instead of the script root's `tasks/`
    /// (imports still resolve under the script root).
    #[arg(long, value_name = "DIR")]
    tasks: Option<PathBuf>,
    /// Skip lines that are not step events (warned and counted) instead of failing.
    #[arg(long)]
    skip_malformed: bool,
}

/// Runs `neuron replay`.
pub fn run(args: &ReplayArgs, config_args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config_args.load()?;
    let scripts = script_host(&config).context("loading the scripts")?;
    let tasks = match &args.tasks {
        Some(dir) => TaskScripts::from_dir(&scripts, dir)
            .with_context(|| format!("loading task scripts from {}", dir.display()))?,
        None => {
            reject_broken_tasks(&scripts)?;
            TaskScripts::Rotation
        }
    };
    let options = ReplayOptions {
        scores: ScoreUpdate {
            alpha: config.neuron.moving_average_alpha,
            decay: config.neuron.decay_alpha,
        },
        malformed: if args.skip_malformed {
            MalformedLines::Skip
        } else {
            MalformedLines::Fail
        },
    };
    let result = replay(&args.events, &scripts, &tasks, &options)?;
    print(&result);
    let failed = result.failures().count();
    if failed > 0 {
        bail!(
            "{failed} of {} recorded steps fail to score with the current scripts",
            result.steps.len()
        );
    }
    Ok(())
}

/// A task file that no longer compiles would look deleted: stop instead.
fn reject_broken_tasks(scripts: &ScriptHost) -> anyhow::Result<()> {
    let broken: Vec<String> = scripts
        .listing()
        .into_iter()
        .filter(|row| row.rel.starts_with("tasks"))
        .filter_map(|row| match row.status {
            ReloadStatus::Rejected(message) => Some(message),
            ReloadStatus::Ok => None,
        })
        .collect();
    if !broken.is_empty() {
        bail!("task scripts failed to load:\n  {}", broken.join("\n  "));
    }
    Ok(())
}

fn print(replay: &Replay) {
    for line in &replay.skipped_lines {
        eprintln!(
            "skipped {}:{}: {}",
            line.file.display(),
            line.line,
            line.message
        );
    }
    for (step, err) in replay.failures() {
        eprintln!("step {} ({}) failed to score: {err}", step.step, step.task);
    }
    let missing = replay.missing_tasks();
    let files: Vec<String> = replay
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    println!(
        "{} steps from {}: {} re-scored, {} with a missing task script{}, {} failed{}",
        replay.steps.len(),
        files.join(", "),
        replay.rescored_steps(),
        missing.values().sum::<usize>(),
        if missing.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = missing.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
            format!(" ({})", names.join(", "))
        },
        replay.failures().count(),
        if replay.skipped_lines.is_empty() {
            String::new()
        } else {
            format!(", {} malformed lines skipped", replay.skipped_lines.len())
        },
    );
    println!(
        "{} responses: {} not reproduced exactly, largest change {:.3e}",
        replay.responses().count(),
        replay.changed_responses(),
        replay.max_difference()
    );
    let mut miners = Table::new();
    miners.load_preset(ASCII_FULL_CONDENSED).set_header([
        "uid",
        "hotkey",
        "responses",
        "recorded reward",
        "new reward",
        "change",
        "recorded weight",
        "new weight",
    ]);
    for m in &replay.miners {
        miners.add_row([
            m.uid.to_string(),
            short(&m.hotkey),
            m.responses.to_string(),
            format!("{:.4}", m.recorded_mean),
            format!("{:.4}", m.rescored_mean),
            format!("{:+.4}", m.rescored_mean - m.recorded_mean),
            format!("{:.4}", m.recorded_weight),
            format!("{:.4}", m.rescored_weight),
        ]);
    }
    println!("{miners}");
    let mut tasks = Table::new();
    tasks.load_preset(ASCII_FULL_CONDENSED).set_header([
        "task",
        "steps",
        "re-scored",
        "recorded reward",
        "new reward",
    ]);
    let mean = |m: Option<f64>| m.map_or("-".into(), |m| format!("{m:.4}"));
    for t in &replay.tasks {
        tasks.add_row([
            t.task.clone(),
            t.steps.to_string(),
            t.rescored_steps.to_string(),
            mean(t.recorded_mean),
            mean(t.rescored_mean),
        ]);
    }
    println!("{tasks}");
}

/// The first eight characters of a hotkey, for tables.
fn short(hotkey: &str) -> String {
    match hotkey.char_indices().nth(8) {
        Some((end, _)) => format!("{}…", &hotkey[..end]),
        None => hotkey.to_string(),
    }
}

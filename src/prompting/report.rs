//! The end-of-run report of `neuron local`: `report.md` (configuration, per-miner
//! table, per-validator stake, vtrust and dividends, per-task reward statistics) and
//! `scores.svg` (every miner's moving score and incentive over the steps, and every
//! validator's vtrust and dividends after each epoch).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::local::{LocalError, LocalOptions, LocalReport};

/// Writes `report.md` and `scores.svg` into `dir`.
pub fn write_report(
    dir: &Path,
    options: &LocalOptions,
    report: &LocalReport,
) -> Result<(), LocalError> {
    let fail = |path: &Path, message: String| LocalError::Report {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let markdown = dir.join("report.md");
    std::fs::write(&markdown, render_markdown(options, report))
        .map_err(|e| fail(&markdown, e.to_string()))?;
    let plot = dir.join("scores.svg");
    plot_scores(&plot, report).map_err(|e| fail(&plot, e))?;
    Ok(())
}

/// The Markdown text of the report.
pub fn render_markdown(options: &LocalOptions, report: &LocalReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# neuron local run\n");
    let _ = writeln!(
        md,
        "{} miners, {} validator(s), {} steps, seed {}, block time {:.2} s, {} epochs, {} failed steps.\n",
        options.miners,
        options.validators.max(1),
        options.steps,
        options.seed,
        options.block_time.as_secs_f64(),
        report.epochs,
        report.failures.len()
    );
    let _ = writeln!(md, "## Miners (final)\n");
    let _ = writeln!(
        md,
        "| uid | strategy | mean reward | moving score | incentive |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    let means = mean_reward_by_uid(report);
    let mut rows = report.final_rows.clone();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    for row in &rows {
        let mean = means
            .get(&row.uid)
            .map_or("-".to_string(), |m| format!("{m:.4}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.4} | {:.4} |",
            row.uid, row.strategy, mean, row.score, row.incentive
        );
    }
    let _ = writeln!(md, "\n## Validators (final)\n");
    let _ = writeln!(md, "| validator | uid | stake (TAO) | vtrust | dividends |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for v in &report.validators {
        let _ = writeln!(
            md,
            "| validator{} | {} | {:.0} | {:.4} | {:.4} |",
            v.index, v.uid, v.stake_tao, v.vtrust, v.dividends
        );
    }
    let _ = writeln!(md, "\n## Rewards by task and strategy\n");
    let _ = writeln!(md, "| task | strategy | n | mean | min | max |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    let strategy_of: BTreeMap<u16, &str> = report
        .miners
        .iter()
        .map(|m| (m.uid, m.strategy.as_str()))
        .collect();
    let mut by_task: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for event in &report.events {
        for response in &event.responses {
            let strategy = strategy_of.get(&response.uid).copied().unwrap_or("?");
            by_task
                .entry((event.task.clone(), strategy.to_string()))
                .or_default()
                .push(response.reward);
        }
    }
    for ((task, strategy), values) in &by_task {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            md,
            "| {task} | {strategy} | {} | {mean:.4} | {min:.4} | {max:.4} |",
            values.len()
        );
    }
    let phases = report.phase_totals();
    let _ = writeln!(md, "\n## Time\n");
    let _ = writeln!(
        md,
        "{:.1} s of steps, {:.2} steps/min. Summed over the successful steps: \
         generating {:.1} s, querying miners {:.1} s, scoring {:.1} s; the rest \
         ({:.1} s) is chain work (blocks, epochs, weights) and failed steps.",
        report.steps_s,
        report.steps_per_min(),
        phases.generate_s,
        phases.query_s,
        phases.score_s,
        (report.steps_s - phases.generate_s - phases.query_s - phases.score_s).max(0.0),
    );
    if !report.failures.is_empty() {
        let _ = writeln!(md, "\n## Failed steps\n");
        for failure in &report.failures {
            let _ = writeln!(md, "- {failure}");
        }
    }
    let _ = writeln!(
        md,
        "\n## Configuration\n\n```yaml\n{}```\n\n![scores](scores.svg)",
        options.config.to_yaml()
    );
    md
}

/// Mean reward per uid over every logged response.
pub fn mean_reward_by_uid(report: &LocalReport) -> BTreeMap<u16, f64> {
    let mut sums: BTreeMap<u16, (f64, usize)> = BTreeMap::new();
    for event in &report.events {
        for response in &event.responses {
            let entry = sums.entry(response.uid).or_default();
            entry.0 += response.reward;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(uid, (sum, n))| (uid, sum / n as f64))
        .collect()
}

fn plot_scores(path: &Path, report: &LocalReport) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 1080)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, rest) = root.split_vertically(360);
    let (middle, bottom) = rest.split_vertically(360);
    let steps = report.score_history.len().max(1);
    let max_score = report
        .score_history
        .iter()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let scores = |i: usize| -> Vec<(usize, f64)> {
        report
            .score_history
            .iter()
            .enumerate()
            .map(|(step, scores)| (step + 1, scores.get(i).copied().unwrap_or(0.0)))
            .collect()
    };
    let incentives = |i: usize| -> Vec<(usize, f64)> {
        report
            .incentive_history
            .iter()
            .map(|(step, incentives)| (*step, incentives.get(i).copied().unwrap_or(0.0)))
            .collect()
    };
    let miner_names: Vec<String> = report
        .miners
        .iter()
        .map(|m| format!("uid {} {}", m.uid, m.strategy))
        .collect();
    let top_panel = Panel {
        caption: "moving score per miner",
        y_max: max_score * 1.05,
        point_size: 0,
        legend: true,
    };
    plot_panel(&top, &top_panel, steps, &miner_names, scores)?;
    let middle_panel = Panel {
        caption: "incentive after each epoch",
        y_max: 1.0,
        point_size: 3,
        legend: false,
    };
    plot_panel(&middle, &middle_panel, steps, &miner_names, incentives)?;
    // Validators: vtrust (one line each) and dividends (one line each).
    let mut validator_names = Vec::new();
    for v in &report.validators {
        validator_names.push(format!("validator{} vtrust", v.index));
        validator_names.push(format!("validator{} dividends", v.index));
    }
    let validator_points = |i: usize| -> Vec<(usize, f64)> {
        report
            .validator_history
            .iter()
            .map(|(step, values)| {
                let (vtrust, dividends) = values.get(i / 2).copied().unwrap_or((0.0, 0.0));
                (
                    *step,
                    if i.is_multiple_of(2) {
                        vtrust
                    } else {
                        dividends
                    },
                )
            })
            .collect()
    };
    let bottom_panel = Panel {
        caption: "validator vtrust and dividends after each epoch",
        y_max: 1.05,
        point_size: 3,
        legend: true,
    };
    plot_panel(
        &bottom,
        &bottom_panel,
        steps,
        &validator_names,
        validator_points,
    )?;
    root.present().map_err(|e| e.to_string())
}

/// How one panel of the plot looks.
struct Panel {
    caption: &'static str,
    y_max: f64,
    point_size: u32,
    legend: bool,
}

/// Draws one line per series on `area`, labelled by `names`; `points(i)` gives series
/// `i`'s (step, value)s.
fn plot_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    steps: usize,
    names: &[String],
    points: impl Fn(usize) -> Vec<(usize, f64)>,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0..steps, 0.0..panel.y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = LineSeries::new(points(i), color.stroke_width(2)).point_size(panel.point_size);
        let series = chart.draw_series(line).map_err(|e| e.to_string())?;
        if panel.legend {
            series
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
    }
    if panel.legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

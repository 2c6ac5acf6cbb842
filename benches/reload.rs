//! Hot-reload latency: from writing a task file to the new version being live in the
//! host (watcher debounce + recompile + contract check + swap). Also prints p50/p95
//! over all measured writes, since criterion reports means.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use neuron::models::Resolver;
use neuron::prompting::contract::{PromptingContracts, PromptingLookups};
use neuron::prompting::hooks::PromptingHooks;
use neuron::script::{HostConfig, ModelSettings, ScriptHost, Services};
use neuron::services::HttpConfig;

const DEBOUNCE: Duration = Duration::from_millis(50);

fn task(version: u64) -> String {
    format!(
        r#"import "tools/mathgenerator" as mathgen;
const NAME = "bench"; const WEIGHT = 1.0;
const REWARDS = #{{ "float_diff": 1.0 }}; const PENALTIES = #{{}};
fn generate(ctx) {{ let p = mathgen::generate(ctx.rng); #{{ query: "{version}", reference: p.solution.to_string() }} }}"#
    )
}

fn write_and_wait(host: &ScriptHost, file: &Path, version: u64) -> Duration {
    let start = Instant::now();
    std::fs::write(file, task(version)).unwrap();
    loop {
        let live = host.task("bench").unwrap();
        if host.generate(&live, &host.ctx(0, 0)).unwrap().query == version.to_string() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload never happened"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tasks")).unwrap();
    std::fs::create_dir_all(dir.path().join("tools")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mathgenerator.rhai"),
        dir.path().join("tools/mathgenerator.rhai"),
    )
    .unwrap();
    let file = dir.path().join("tasks/bench.rhai");
    std::fs::write(&file, task(0)).unwrap();
    let services = Services::with_resolver(
        Resolver::default(),
        &ModelSettings::default(),
        HttpConfig::default(),
        Vec::new(),
    );
    let host = ScriptHost::new(HostConfig::new(dir.path()), services, PromptingContracts).unwrap();
    let _watcher = host.watch(DEBOUNCE).unwrap();
    let mut version = 0;
    let mut all = Vec::new();
    let mut group = c.benchmark_group("reload");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("write_to_live_debounce_50ms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                version += 1;
                let d = write_and_wait(&host, &file, version);
                all.push(d);
                total += d;
                // Let the debouncer go quiet so writes are measured one by one.
                std::thread::sleep(Duration::from_millis(20));
            }
            total
        })
    });
    group.finish();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "reload latency over {} writes: p50 {:?}, p95 {:?}, max {:?}",
        all.len(),
        pct(0.5),
        pct(0.95),
        all[all.len() - 1]
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Scoring throughput: 1,000 (reference, completion) pairs with rouge-L + diff, the
//! same pairs `benches/score_python.py` times with the Python `rouge` package + difflib.
//!
//! cargo bench --bench score

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neuron::score::{RewardFn, RewardSpec, RougeMetric, RougeVariant};
use serde::Deserialize;

#[derive(Deserialize)]
struct Pair {
    reference: String,
    completion: String,
}

fn pairs() -> Vec<Pair> {
    serde_json::from_str(include_str!("../tests/fixtures/score/bench_pairs.json"))
        .expect("bench pairs parse")
}

fn bench(c: &mut Criterion) {
    let pairs = pairs();
    let rouge_l = RewardFn::Rouge {
        variant: RougeVariant::L,
        metric: RougeMetric::F,
    };
    let mut group = c.benchmark_group("score_1000_pairs");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.sample_size(20);
    let run = |f: RewardFn| {
        pairs
            .iter()
            .map(|p| f.score_one(&p.reference, &p.completion).expect("scores"))
            .sum::<f64>()
    };
    group.bench_function("rouge_l_plus_diff", |b| {
        b.iter(|| run(rouge_l) + run(RewardFn::Diff))
    });
    group.bench_function("rouge_l", |b| b.iter(|| run(rouge_l)));
    group.bench_function("diff", |b| b.iter(|| run(RewardFn::Diff)));
    let spec =
        RewardSpec::new([("rouge-l", 0.5), ("diff", 0.5)], [("rouge-1", 0.5)]).expect("valid spec");
    group.bench_function("spec_rouge_l_diff_with_rouge_1_penalty", |b| {
        b.iter(|| {
            pairs
                .iter()
                .map(|p| {
                    spec.score(&p.reference, &p.completion, &[p.completion.as_str()], None)
                        .expect("scores")[0]
                        .total
                })
                .sum::<f64>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

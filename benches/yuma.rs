//! Yuma Consensus epoch time for n = 256, 1024 and 4096 uids with 64 validators that
//! each weight every miner (random u16 weights, fixed seed), in steady state (bonds
//! from a previous epoch present). Target: 4096 uids under 100 ms.
//!
//! `cargo bench --bench yuma`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use neuron::chain::yuma::{EpochInput, epoch, vec_u16_max_upscale_to_u16};
use rand::{Rng, SeedableRng, rngs::StdRng};

const VALIDATORS: usize = 64;

fn input(n: usize) -> EpochInput {
    let mut rng = StdRng::seed_from_u64(n as u64);
    let stake: Vec<u64> = (0..n)
        .map(|i| {
            if i < VALIDATORS {
                rng.random_range(1_000..1_000_000) * 1_000_000_000
            } else {
                0
            }
        })
        .collect();
    let miners: Vec<u16> = (VALIDATORS as u16..n as u16).collect();
    let weights = (0..n)
        .map(|i| {
            if i < VALIDATORS {
                let values: Vec<u16> = miners.iter().map(|_| rng.random()).collect();
                miners
                    .iter()
                    .copied()
                    .zip(vec_u16_max_upscale_to_u16(&values))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut input = EpochInput {
        block: 1000,
        tempo: 360,
        last_epoch_block: 640,
        activity_cutoff: 5000,
        last_update: vec![900; n],
        block_at_registration: vec![0; n],
        stake,
        stake_threshold: 0,
        validator_permit: vec![false; n],
        max_allowed_validators: VALIDATORS as u16,
        owner_uid: None,
        weights,
        bonds: vec![Vec::new(); n],
        kappa: 32_767,
        bonds_penalty: u16::MAX,
        bonds_moving_average: 900_000,
        emission: 360_000_000_000,
    };
    // Two warm-up epochs: permits, then bonds.
    for _ in 0..2 {
        let out = epoch(&input);
        input.validator_permit = out.validator_permit;
        input.bonds = out.bonds;
    }
    input
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("yuma_epoch");
    group.sample_size(20);
    for n in [256usize, 1024, 4096] {
        let input = input(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| epoch(input))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Commit-reveal v4 encryption time per commit: the SCALE weights payload of 256 uids
//! timelock-encrypted to drand quicknet ([`neuron::chain::timelock`]), and the reveal
//! round prediction. Target: well under a block (12 s); in practice milliseconds.
//!
//! `cargo bench --bench timelock`

use criterion::{Criterion, criterion_group, criterion_main};
use neuron::chain::timelock::{Beacon, EpochSchedule, WeightsPayload, reveal_round};
use parity_scale_codec::Encode;

fn bench(c: &mut Criterion) {
    let quicknet = Beacon::quicknet();
    let payload = WeightsPayload {
        hotkey: vec![7; 32],
        uids: (0..256).collect(),
        values: (0..256).map(|i| (i * 255) as u16).collect(),
        version_key: 10_005_000,
    }
    .encode();
    c.bench_function("timelock encrypt 256 weights (quicknet)", |b| {
        b.iter(|| quicknet.encrypt(20_000_000, &payload).unwrap())
    });
    let schedule = EpochSchedule {
        last_epoch_block: 9_029_149,
        epoch_index: 25_016,
        tempo: 360,
        blocks_since_last_step: 48,
        current_block: 9_029_197,
        ..EpochSchedule::default()
    };
    c.bench_function("reveal round (tempo 360, period 1)", |b| {
        b.iter(|| reveal_round(&quicknet, &schedule, 1, 12_000, 1_780_000_000_000).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

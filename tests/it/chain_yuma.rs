//! Yuma Consensus epochs against the scenarios of subtensor's own tests
//! (`pallets/subtensor/src/tests/epoch.rs` at opentensor/subtensor 14bc6f9f9), with
//! their expected numbers. Each scenario replays the chain state the subtensor test
//! builds (registration blocks, stored weights, permits and bonds carried from epoch to
//! epoch) and runs our `yuma::epoch` where the test runs `SubtensorModule::epoch`.

use neuron::chain::yuma::{EpochInput, EpochOutput, epoch, vec_u16_max_upscale_to_u16};

/// Chain state of one subnet as the subtensor mock runtime holds it.
struct Sim {
    input: EpochInput,
}

impl Sim {
    /// `stakes.len()` uids registered at `block` (so `last_update = block` too).
    fn new(stakes: &[u64], tempo: u64, block: u64, max_validators: u16) -> Self {
        let n = stakes.len();
        Self {
            input: EpochInput {
                block,
                tempo,
                last_epoch_block: 0,
                // ActivityCutoffFactorMilli default 13_889 × tempo / 1000, at least 1.
                activity_cutoff: (13_889 * tempo / 1000).max(1),
                last_update: vec![block; n],
                block_at_registration: vec![block; n],
                stake: stakes.to_vec(),
                stake_threshold: 0,
                validator_permit: vec![false; n],
                max_allowed_validators: max_validators,
                owner_uid: None,
                weights: vec![Vec::new(); n],
                bonds: vec![Vec::new(); n],
                kappa: 32_767,
                bonds_penalty: u16::MAX,
                bonds_moving_average: 900_000,
                emission: 1_000_000_000,
            },
        }
    }

    /// What `set_weights` stores: the max-upscaled row, and `last_update = block`.
    fn set_weights(&mut self, uid: u16, uids: &[u16], values: &[u16]) {
        let row = uids
            .iter()
            .copied()
            .zip(vec_u16_max_upscale_to_u16(values))
            .collect();
        self.input.weights[uid as usize] = row;
        self.input.last_update[uid as usize] = self.input.block;
    }

    /// What registration over a full subnet does to the pruned `uid` (subtensor's
    /// `replace_neuron` and `clear_neuron`): fresh registration, no stake, permit,
    /// weights or bonds, and other rows' weights on it zeroed.
    fn replace(&mut self, uid: u16) {
        let i = uid as usize;
        let input = &mut self.input;
        input.block_at_registration[i] = input.block;
        input.last_update[i] = input.block;
        input.stake[i] = 0;
        input.validator_permit[i] = false;
        input.weights[i].clear();
        input.bonds[i].clear();
        for row in &mut input.weights {
            row.iter_mut()
                .filter(|(j, _)| *j == uid)
                .for_each(|(_, w)| *w = 0);
        }
    }

    fn run_to_block(&mut self, block: u64) {
        self.input.block = block;
    }

    /// Runs an epoch and persists permits and bonds as the chain does.
    fn epoch(&mut self) -> EpochOutput {
        let out = epoch(&self.input);
        self.input.validator_permit = out.validator_permit.clone();
        self.input.bonds = out.bonds.clone();
        out
    }

    /// Stored bond `B[i][j]` (0 when absent), as `SubtensorModule::get_bonds` shows it.
    fn bond(&self, i: usize, j: u16) -> u16 {
        self.input.bonds[i]
            .iter()
            .find(|(k, _)| *k == j)
            .map_or(0, |(_, v)| *v)
    }
}

/// `test_1_graph`: one uid with stake and a self-weight gets no consensus, incentive
/// or dividends.
#[test]
fn subtensor_test_1_graph() {
    let mut sim = Sim::new(&[1_000_000_000], u64::from(u16::MAX - 1), 1, 128);
    sim.set_weights(0, &[0], &[u16::MAX]);
    let out = sim.epoch();
    assert_eq!(out.consensus, vec![0]);
    assert_eq!(out.incentive, vec![0]);
    assert_eq!(out.dividends, vec![0]);
}

/// `test_10_graph`: ten uids with stake 1 and self-weights only; emission falls back to
/// stake, 99_999_999 rao each.
#[test]
fn subtensor_test_10_graph() {
    let mut sim = Sim::new(&[1; 10], u64::from(u16::MAX - 1), 0, 128);
    sim.run_to_block(1);
    for i in 0..10 {
        sim.set_weights(i, &[i], &[u16::MAX]);
    }
    let out = sim.epoch();
    for i in 0..10 {
        assert_eq!(out.consensus[i], 0);
        assert_eq!(out.incentive[i], 0);
        assert_eq!(out.dividends[i], 0);
        assert_eq!(out.emission[i], 99_999_999, "uid {i}");
    }
}

/// subtensor `distribute_nodes` for interleave 0 (blockwise) and 1 (regular); its
/// interleave 2 is a random permutation, replaced here by a fixed one.
fn distribute_nodes(validators_n: usize, n: usize, interleave: usize) -> (Vec<u16>, Vec<u16>) {
    let all: Vec<u16> = (0..n as u16).collect();
    match interleave {
        0 => (all[..validators_n].to_vec(), all[validators_n..].to_vec()),
        1 => all
            .into_iter()
            .partition(|i| (*i as usize).is_multiple_of(n / validators_n)),
        _ => {
            // A fixed permutation: multiply by a unit mod n (n = 512, 197 is odd).
            let permuted: Vec<u16> = (0..n).map(|i| ((i * 197 + 11) % n) as u16).collect();
            (
                permuted[..validators_n].to_vec(),
                permuted[validators_n..].to_vec(),
            )
        }
    }
}

/// `test_512_graph`: 64 validators with equal stake weighting 448 servers equally,
/// three epochs, for each interleaving and with/without server self-weights.
#[test]
fn subtensor_test_512_graph() {
    let (n, validators_n) = (512usize, 64usize);
    let stake_per_validator: u64 = 328_125_000_000_000;
    for interleave in 0..3 {
        for server_self in [false, true] {
            let (validators, servers) = distribute_nodes(validators_n, n, interleave);
            let stakes: Vec<u64> = (0..n as u16)
                .map(|i| {
                    if validators.contains(&i) {
                        stake_per_validator
                    } else {
                        0
                    }
                })
                .collect();
            // init_run_epochs: append_neuron at block 0 while the chain is at block 1.
            let mut sim = Sim::new(&stakes, u64::from(u16::MAX - 1), 0, validators_n as u16);
            sim.run_to_block(1);
            sim.epoch();
            let equal = vec![u16::MAX / n as u16; servers.len()];
            for &v in &validators {
                sim.set_weights(v, &servers, &equal);
            }
            if server_self {
                for &s in &servers {
                    sim.set_weights(s, &[s], &[u16::MAX]);
                }
            }
            let mut out = sim.epoch();
            for _ in 1..3 {
                out = sim.epoch();
            }
            let (validator, server) = (validators[0], servers[0]);
            for &v in &validators {
                let i = v as usize;
                assert_eq!(out.consensus[i], 0);
                assert_eq!(out.incentive[i], 0);
                assert_eq!(out.dividends[i], 1023, "floor(1/64 × 65535)");
                assert_eq!(out.emission[i], 7_812_500, "0.5/64 × 1e9");
                assert_eq!(sim.bond(i, validator), 0);
                assert_eq!(sim.bond(i, server), 65_535);
            }
            for &s in &servers {
                let i = s as usize;
                assert_eq!(out.consensus[i], 146);
                assert_eq!(out.incentive[i], 146, "floor(1/448 × 65535)");
                assert_eq!(out.dividends[i], 0);
                assert_eq!(out.emission[i], 1_116_071, "floor(0.5/448 × 1e9)");
                assert_eq!(sim.bond(i, validator), 0);
                assert_eq!(sim.bond(i, server), 0);
            }
        }
    }
}

/// `test_bonds`: bonds EMA over a sequence of epochs as validators switch to
/// self-weights and one moves all its weight to server 4 (uid 7).
#[test]
fn subtensor_test_bonds() {
    let mut sim = Sim::new(&[1, 2, 3, 4, 0, 0, 0, 0], 1, 1, 8);
    sim.epoch(); // permits
    sim.run_to_block(2);
    let servers = [4, 5, 6, 7];
    let values = [u16::MAX / 4, u16::MAX / 2, (u16::MAX / 4) * 3, u16::MAX];
    for uid in 0..4 {
        sim.set_weights(uid, &servers, &values);
    }
    sim.epoch();
    let col = |sim: &Sim, j: u16| -> Vec<u16> { (0..4).map(|i| sim.bond(i, j)).collect() };
    assert_eq!(col(&sim, 4), vec![16383, 32767, 49151, 65535]);

    sim.set_weights(0, &[0], &[u16::MAX]);
    sim.run_to_block(3);
    sim.epoch();
    assert_eq!(col(&sim, 4), vec![14582, 32767, 49151, 65535]);

    sim.set_weights(1, &[1], &[u16::MAX]);
    sim.run_to_block(4);
    sim.epoch();
    assert_eq!(col(&sim, 4), vec![12603, 28321, 49151, 65535]);

    sim.set_weights(2, &[2], &[u16::MAX]);
    sim.run_to_block(5);
    sim.epoch();
    assert_eq!(col(&sim, 7), vec![12602, 28320, 49150, 65535]);

    sim.set_weights(2, &[7], &[u16::MAX]);
    sim.run_to_block(6);
    sim.epoch();
    assert_eq!(col(&sim, 7), vec![10951, 24609, 49150, 65535]);

    sim.run_to_block(7);
    sim.epoch();
    assert_eq!(col(&sim, 7), vec![9559, 21482, 49150, 65535]);

    sim.run_to_block(8);
    sim.epoch();
    assert_eq!(col(&sim, 7), vec![8376, 18824, 49150, 65535]);
}

/// `test_active_stake`: a validator whose weights are older than the activity cutoff
/// loses its active stake, so its dividends and bonds decay.
#[test]
fn subtensor_test_active_stake() {
    let mut sim = Sim::new(&[1, 1, 1, 1], 1, 0, 4);
    sim.epoch(); // permits
    sim.run_to_block(1);
    let half = u16::MAX / 2;
    for uid in 0..2 {
        sim.set_weights(uid, &[2, 3], &[half, half]);
    }
    let out = sim.epoch();
    for uid in 0..4 {
        if uid < 2 {
            assert_eq!(out.dividends[uid], 32767);
        }
        assert_eq!(out.emission[uid], 250_000_000);
    }
    for v in 0..2 {
        assert_eq!((sim.bond(v, 0), sim.bond(v, 1)), (0, 0));
        assert_eq!((sim.bond(v, 2), sim.bond(v, 3)), (65535, 65535));
    }

    // Legacy ActivityCutoff (5000) + 2: uid 1's weights are now outdated.
    sim.run_to_block(5002);
    sim.set_weights(0, &[2, 3], &[half, half]);
    let out = sim.epoch();
    assert_eq!(out.dividends[0], 36044);
    assert_eq!(out.emission[0], 274_999_999);
    assert_eq!((sim.bond(0, 2), sim.bond(0, 3)), (65535, 65535));
    assert_eq!(out.dividends[1], 29490);
    assert_eq!(out.emission[1], 224_999_999);
    assert_eq!((sim.bond(1, 2), sim.bond(1, 3)), (53619, 53619));

    sim.set_weights(1, &[2, 3], &[half, half]);
    sim.run_to_block(5003);
    let out = sim.epoch();
    assert_eq!(out.dividends[0], 35716);
    assert_eq!(out.emission[0], 272_501_132);
    assert_eq!((sim.bond(0, 2), sim.bond(0, 3)), (65535, 65535));
    assert_eq!(out.dividends[1], 29818);
    assert_eq!(out.emission[1], 227_498_866);
    assert_eq!((sim.bond(1, 2), sim.bond(1, 3)), (54712, 54712));
}

/// `test_outdated_weights`: after uid 3 is replaced by a new registration, weights set
/// on it before its registration are masked; only uid 0 (which set weights since)
/// keeps a bond on it.
#[test]
fn subtensor_test_outdated_weights() {
    let mut sim = Sim::new(&[1, 1, 1, 1], 0, 1, 4);
    sim.epoch(); // permits
    sim.run_to_block(2);
    let values = [2 * (u16::MAX / 3), u16::MAX / 3];
    for uid in 0..2 {
        sim.set_weights(uid, &[2, 3], &values);
    }
    for uid in 2..4 {
        sim.set_weights(uid, &[uid], &[u16::MAX]);
    }
    sim.epoch();
    // uid 3 got the least incentive, so a registration at block 2 replaces it.
    sim.replace(3);
    sim.run_to_block(3);
    sim.set_weights(0, &[2, 3], &values);
    let out = sim.epoch();
    assert_eq!(out.dividends[0], 32767);
    assert_eq!(out.emission[0], 250_000_000);
    assert_eq!(sim.bond(0, 2), 65_535);
    assert_eq!(sim.bond(0, 3), 65_535);
}

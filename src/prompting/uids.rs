//! Which miners a validator queries in a step (SN1's `get_random_uids`).

use crate::chain::{Metagraph, NeuronInfo, RAO_PER_TAO};
use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::HashSet;

/// Rules for picking the uids of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct UidFilter {
    /// The validator's own uid, never queried.
    pub self_uid: Option<u16>,
    /// Validators holding a permit with more stake than this (TAO) are skipped.
    pub vpermit_tao_limit: f64,
    /// At most one uid per coldkey.
    pub unique_coldkeys: bool,
    /// At most one uid per IP.
    pub unique_ips: bool,
}

impl UidFilter {
    /// Whether `neuron` may be queried at all (serving, not self, not a big validator).
    fn admits(&self, neuron: &NeuronInfo) -> bool {
        let serving = neuron
            .axon
            .as_ref()
            .is_some_and(|axon| !axon.ip.is_unspecified() && axon.port != 0);
        let big_validator = neuron.validator_permit
            && neuron.stake as f64 / RAO_PER_TAO as f64 > self.vpermit_tao_limit;
        serving && Some(neuron.uid) != self.self_uid && !big_validator
    }
}

/// Samples up to `k` distinct queryable uids uniformly at random.
///
/// Candidates are shuffled first, so the unique-coldkey/IP rules keep a random
/// representative of each group. Fewer than `k` candidates gives all of them (SN1
/// v2.0's fix of #142, rather than topping up with excluded uids).
pub fn select_uids(
    metagraph: &Metagraph,
    filter: &UidFilter,
    k: usize,
    rng: &mut impl Rng,
) -> Vec<u16> {
    let mut candidates: Vec<&NeuronInfo> = metagraph
        .neurons
        .iter()
        .filter(|n| filter.admits(n))
        .collect();
    candidates.shuffle(rng);
    let mut coldkeys = HashSet::new();
    let mut ips = HashSet::new();
    candidates
        .into_iter()
        .filter(|n| !filter.unique_coldkeys || coldkeys.insert(n.coldkey.as_str()))
        .filter(|n| !filter.unique_ips || ips.insert(n.axon.as_ref().map(|a| a.ip)))
        .take(k)
        .map(|n| n.uid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::AxonServe;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn neuron(uid: u16, coldkey: &str, ip: &str, permit: bool, stake_tao: u64) -> NeuronInfo {
        NeuronInfo {
            uid,
            hotkey: format!("hot{uid}"),
            coldkey: coldkey.into(),
            stake: stake_tao * RAO_PER_TAO,
            validator_permit: permit,
            active: true,
            axon: Some(AxonServe {
                version: 1,
                ip: ip.parse().unwrap(),
                port: 8091,
                protocol: 4,
            }),
            ..NeuronInfo::default()
        }
    }

    fn metagraph(neurons: Vec<NeuronInfo>) -> Metagraph {
        Metagraph {
            netuid: 1,
            block: 0,
            neurons,
        }
    }

    fn filter() -> UidFilter {
        UidFilter {
            self_uid: Some(0),
            vpermit_tao_limit: 4096.0,
            unique_coldkeys: false,
            unique_ips: false,
        }
    }

    #[test]
    fn skips_self_non_serving_and_big_validators() {
        let mut silent = neuron(3, "c3", "0.0.0.0", false, 0);
        silent.axon = None;
        let graph = metagraph(vec![
            neuron(0, "c0", "10.0.0.1", true, 10_000),
            neuron(1, "c1", "10.0.0.2", true, 5_000),
            neuron(2, "c2", "10.0.0.3", true, 100),
            silent,
            neuron(4, "c4", "0.0.0.0", false, 0),
            neuron(5, "c5", "10.0.0.5", false, 9_999),
        ]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut uids = select_uids(&graph, &filter(), 10, &mut rng);
        uids.sort();
        assert_eq!(uids, vec![2, 5]);
    }

    #[test]
    fn samples_k_distinct_and_is_reproducible_by_seed() {
        let graph = metagraph(
            (0..50)
                .map(|uid| neuron(uid, &format!("c{uid}"), "10.0.0.9", false, 0))
                .collect(),
        );
        let pick = |seed| select_uids(&graph, &filter(), 8, &mut ChaCha8Rng::seed_from_u64(seed));
        let uids = pick(7);
        assert_eq!(uids.len(), 8);
        assert_eq!(uids.iter().collect::<HashSet<_>>().len(), 8);
        assert!(!uids.contains(&0));
        assert_eq!(uids, pick(7));
        assert_ne!(uids, pick(8));
    }

    #[test]
    fn unique_coldkeys_and_ips_keep_one_per_group() {
        let graph = metagraph(vec![
            neuron(1, "shared", "10.0.0.1", false, 0),
            neuron(2, "shared", "10.0.0.2", false, 0),
            neuron(3, "other", "10.0.0.2", false, 0),
            neuron(4, "fourth", "10.0.0.4", false, 0),
        ]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let by_coldkey = select_uids(
            &graph,
            &UidFilter {
                unique_coldkeys: true,
                ..filter()
            },
            10,
            &mut rng,
        );
        assert_eq!(by_coldkey.len(), 3);
        let by_ip = select_uids(
            &graph,
            &UidFilter {
                unique_ips: true,
                ..filter()
            },
            10,
            &mut rng,
        );
        assert_eq!(by_ip.len(), 3);
    }
}

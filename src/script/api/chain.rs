//! `chain` (inside a validator or miner): read-only views of the neuron's chain — the
//! current block, the subnet's metagraph rows and its hyperparameters.

use rhai::{Array, Dynamic, EvalAltResult, INT, Map, Module, NativeCallContext};

use super::{fail, neuron_link, to_dynamic};
use crate::chain::{Metagraph, NeuronInfo, RAO_PER_TAO, proportion};

type Res<T> = Result<T, Box<EvalAltResult>>;

fn int(value: u64) -> INT {
    INT::try_from(value).unwrap_or(INT::MAX)
}

fn tao(rao: u64) -> f64 {
    rao as f64 / RAO_PER_TAO as f64
}

/// One metagraph row as scripts see it: u16 chain scores as proportions in [0, 1],
/// stake and emission in TAO, the axon as `ip` (`""` when not serving) and `port`.
fn neuron_row(n: &NeuronInfo) -> Map {
    let mut m = Map::new();
    m.insert("uid".into(), Dynamic::from_int(INT::from(n.uid)));
    m.insert("hotkey".into(), n.hotkey.clone().into());
    m.insert("coldkey".into(), n.coldkey.clone().into());
    m.insert("stake".into(), Dynamic::from_float(tao(n.stake)));
    for (key, value) in [
        ("trust", n.trust),
        ("validator_trust", n.validator_trust),
        ("consensus", n.consensus),
        ("incentive", n.incentive),
        ("dividends", n.dividends),
    ] {
        m.insert(key.into(), Dynamic::from_float(proportion(value)));
    }
    m.insert("emission".into(), Dynamic::from_float(tao(n.emission)));
    m.insert("validator_permit".into(), n.validator_permit.into());
    m.insert("last_update".into(), Dynamic::from_int(int(n.last_update)));
    m.insert("active".into(), n.active.into());
    let (ip, port) = n
        .axon
        .as_ref()
        .map_or((String::new(), 0), |a| (a.ip.to_string(), a.port));
    m.insert("ip".into(), ip.into());
    m.insert("port".into(), Dynamic::from_int(INT::from(port)));
    m
}

/// The metagraph as an array of rows, ordered by uid: what `chain::metagraph()`,
/// `ctx.metagraph` and the validator's `select_uids` hook see.
pub fn metagraph_rows(metagraph: &Metagraph) -> Array {
    metagraph
        .neurons
        .iter()
        .map(|n| neuron_row(n).into())
        .collect()
}

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(&mut m, "block", |c: NativeCallContext| -> Res<INT> {
        Ok(int(neuron_link(&c, "chain")?.block().map_err(fail)?))
    });
    def!(&mut m, "netuid", |c: NativeCallContext| -> Res<INT> {
        Ok(INT::from(neuron_link(&c, "chain")?.netuid()))
    });
    def!(&mut m, "hotkey", |c: NativeCallContext| -> Res<String> {
        Ok(neuron_link(&c, "chain")?.hotkey().to_string())
    });
    def!(&mut m, "metagraph", |c: NativeCallContext| -> Res<Array> {
        let metagraph = neuron_link(&c, "chain")?.metagraph().map_err(fail)?;
        Ok(metagraph_rows(&metagraph))
    });
    def!(
        &mut m,
        "hyperparameters",
        |c: NativeCallContext| -> Res<Dynamic> {
            to_dynamic(neuron_link(&c, "chain")?.hyperparameters().map_err(fail)?)
        }
    );
    m
}

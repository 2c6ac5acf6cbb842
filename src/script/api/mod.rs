//! The API modules scripts call (`http::get_json(...)`, `corpus::article(...)`, …).
//! Thin adapters only: each converts Rhai values to core types, calls the core, and
//! converts back; errors become script runtime errors naming the call.

/// Adds a function to a module. Volatile: results depend on the world (network,
/// clocks, models), so the optimiser must never fold a call with constant arguments.
macro_rules! def {
    ($module:expr, $name:expr, $func:expr $(,)?) => {
        rhai::FuncRegistration::new($name)
            .with_volatility(true)
            .set_into_module($module, $func);
    };
}

mod chain;
mod corpus;
mod dendrite;
mod embed;
mod http;
mod llm;
mod log;
mod rng;
mod score;
mod source;
mod time;

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext};

use super::link::NeuronLink;
use super::services::Services;

pub use chain::metagraph_rows;

/// Registers every API module on `engine`.
pub(crate) fn register(engine: &mut Engine, services: Arc<Services>) {
    let modules = [
        ("llm", llm::module(services.clone())),
        ("embed", embed::module(services.clone())),
        ("score", score::module(services.clone())),
        ("http", http::module(services.clone())),
        ("corpus", corpus::module(services.clone())),
        ("source", source::module(services)),
        ("chain", chain::module()),
        ("dendrite", dendrite::module()),
        ("log", log::module()),
        ("time", time::module()),
        ("rng", rng::module()),
    ];
    for (name, module) in modules {
        engine.register_static_module(name, module.into());
    }
}

/// A script runtime error from any displayable core error.
fn fail(err: impl std::fmt::Display) -> Box<EvalAltResult> {
    err.to_string().into()
}

/// Converts a serialisable core value to a Rhai value.
fn to_dynamic(value: impl serde::Serialize) -> Result<Dynamic, Box<EvalAltResult>> {
    rhai::serde::to_dynamic(value)
}

/// The neuron the current call runs for, or a script error saying that `module` needs
/// one (the host runs outside a validator or miner, e.g. under `neuron task check`).
fn neuron_link(
    context: &NativeCallContext,
    module: &str,
) -> Result<NeuronLink, Box<EvalAltResult>> {
    context
        .tag()
        .and_then(|tag| tag.clone().try_cast::<NeuronLink>())
        .ok_or_else(|| {
            fail(format!(
                "`{module}` is only available to scripts run by a validator or miner with a chain and a dendrite"
            ))
        })
}

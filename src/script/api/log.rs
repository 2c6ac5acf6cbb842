//! `log`: structured logging from scripts (target `neuron::script`, with the file).

use rhai::{ImmutableString, Module, NativeCallContext};

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(
        &mut m,
        "debug",
        |c: NativeCallContext, msg: ImmutableString| {
            tracing::debug!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{msg}")
        }
    );
    def!(
        &mut m,
        "info",
        |c: NativeCallContext, msg: ImmutableString| {
            tracing::info!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{msg}")
        }
    );
    def!(
        &mut m,
        "warn",
        |c: NativeCallContext, msg: ImmutableString| {
            tracing::warn!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{msg}")
        }
    );
    def!(
        &mut m,
        "error",
        |c: NativeCallContext, msg: ImmutableString| {
            tracing::error!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{msg}")
        }
    );
    m
}

//! `log`: structured logging from scripts (target `neuron::script`, with the file).
//! The debug level is `log::verbose`: `debug` is a reserved word in Rhai.

use rhai::{ImmutableString, Module, NativeCallContext};

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(
        &mut m,
        "verbose",
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

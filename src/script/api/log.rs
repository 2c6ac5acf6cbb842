//! `log`: structured logging from scripts (target `neuron::script`, with the file).
//! The debug level is `log::verbose`: `debug` is a reserved word in Rhai. Lines count
//! against the hook's log allowance ([`crate::script::Limits::max_log_lines`]) and are cut
//! at its line length, as `print` is.

use rhai::{ImmutableString, Module, NativeCallContext};

use crate::script::sandbox::log_line;

pub(super) fn module() -> Module {
    let mut m = Module::new();
    def!(
        &mut m,
        "verbose",
        |c: NativeCallContext, msg: ImmutableString| {
            if let Some(line) = log_line(&msg) {
                tracing::debug!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{line}")
            }
        }
    );
    def!(
        &mut m,
        "info",
        |c: NativeCallContext, msg: ImmutableString| {
            if let Some(line) = log_line(&msg) {
                tracing::info!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{line}")
            }
        }
    );
    def!(
        &mut m,
        "warn",
        |c: NativeCallContext, msg: ImmutableString| {
            if let Some(line) = log_line(&msg) {
                tracing::warn!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{line}")
            }
        }
    );
    def!(
        &mut m,
        "error",
        |c: NativeCallContext, msg: ImmutableString| {
            if let Some(line) = log_line(&msg) {
                tracing::error!(target: "neuron::script", file = c.call_source().unwrap_or("?"), "{line}")
            }
        }
    );
    m
}

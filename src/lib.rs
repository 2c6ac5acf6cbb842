//! `neuron`: a Rust host for Bittensor subnet neurons.
//!
//! The heavy and security-relevant parts live here (inference, scoring, the wire
//! protocol, wallets, the chain, the loops); everything an operator tweaks lives in
//! hot-reloadable Rhai scripts under `tasks/`, `personas/`, `tools/` and `scripts/`.
//! docs/architecture.md describes the layers and follows a validator step through them.

pub mod api;
mod attention;
pub mod chain;
pub mod config;
mod cpu_pool;
mod cpu_tensor;
pub mod embed;
pub mod finetune;
pub mod fsutil;
pub mod home;
pub mod inference;
pub mod llm;
pub mod memory;
pub mod models;
pub mod prompting;
pub mod score;
pub mod script;
pub mod services;

/// This neuron's spec version (`10000·major + 100·minor + patch`, SN1's convention),
/// sent as the weights version key.
pub const SPEC_VERSION: u64 = 10_000 * parse_u64(env!("CARGO_PKG_VERSION_MAJOR"))
    + 100 * parse_u64(env!("CARGO_PKG_VERSION_MINOR"))
    + parse_u64(env!("CARGO_PKG_VERSION_PATCH"));

/// Parses a decimal version component at compile time.
const fn parse_u64(digits: &str) -> u64 {
    let bytes = digits.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    value
}
pub mod net;
mod vector_math;
pub mod wallet;

//! `neuron`: a Rust host for Bittensor subnet neurons.
//!
//! The heavy and security-relevant parts live here (inference, scoring, the wire
//! protocol, wallets, the chain, the loops); everything an operator tweaks lives in
//! hot-reloadable Rhai scripts under `tasks/`, `personas/`, `tools/` and `scripts/`.
//! See `ARCHITECTURE` in the README for the layout.

pub mod home;
pub mod net;
pub mod wallet;

//! `neuron`: a Rust host for Bittensor subnet neurons.
//!
//! The heavy and security-relevant parts live here (inference, scoring, the wire
//! protocol, wallets, the chain, the loops); everything an operator tweaks lives in
//! hot-reloadable Rhai scripts under `tasks/`, `personas/`, `tools/` and `scripts/`.
//! See `ARCHITECTURE` in the README for the layout.

pub mod chain;
pub mod embed;
pub mod finetune;
pub mod home;
pub mod llm;
pub mod models;
pub mod net;
pub mod score;
pub mod script;
pub mod wallet;

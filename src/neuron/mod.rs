//! The neuron loops: validator state and events, the validator step, the miner
//! service, and `neuron local` orchestration.

pub mod events;
pub mod state;
pub mod uids;

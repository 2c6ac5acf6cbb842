//! The neuron a hook runs for: its chain and its dendrite, lent to the `chain` and
//! `dendrite` API modules for the duration of one call.
//!
//! A validator or miner puts its [`NeuronLink`] into the [`Ctx`](super::Ctx) it passes
//! to a hook; the host hands it to the API modules through the call's custom state, so
//! two neurons sharing one host (as in `neuron local`) each query as themselves.
//! Scripts never see the key: the dendrite signs, scripts get the hotkey's address.
//!
//! Hooks run on blocking threads while the neuron runs on tokio; the chain and the
//! dendrite are async, so each call blocks on the current runtime (moving a
//! multi-threaded runtime's worker out of the way first, as `block_in_place` does), for
//! no longer than the hook's time left.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

use super::sandbox;
use crate::chain::{Chain, Hyperparameters, Metagraph};
use crate::net::{AxonInfo, DendritePool, DendriteResponse, PromptingSynapse};

/// A neuron's chain (read by scripts) and dendrite (signing with its hotkey).
#[derive(Clone)]
pub struct NeuronLink {
    chain: Arc<dyn Chain>,
    netuid: u16,
    dendrite: DendritePool,
}

impl fmt::Debug for NeuronLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeuronLink")
            .field("network", &self.chain.network())
            .field("netuid", &self.netuid)
            .field("hotkey", &self.dendrite.hotkey())
            .finish()
    }
}

impl NeuronLink {
    /// The link of a neuron on subnet `netuid` of `chain`, querying with `dendrite` (a
    /// [`crate::net::Dendrite`] or a pool of its sessions, so concurrent hooks never
    /// share one).
    pub fn new(chain: Arc<dyn Chain>, netuid: u16, dendrite: impl Into<DendritePool>) -> Self {
        Self {
            chain,
            netuid,
            dendrite: dendrite.into(),
        }
    }

    /// The subnet the neuron works on.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    /// The SS58 address of the neuron's hotkey.
    pub fn hotkey(&self) -> &str {
        self.dendrite.hotkey()
    }

    /// The chain's current block.
    pub fn block(&self) -> Result<u64, String> {
        block_on(self.chain.current_block())?.map_err(|e| e.to_string())
    }

    /// The subnet's metagraph now.
    pub fn metagraph(&self) -> Result<Metagraph, String> {
        block_on(self.chain.metagraph(self.netuid))?.map_err(|e| e.to_string())
    }

    /// The subnet's hyperparameters.
    pub fn hyperparameters(&self) -> Result<Hyperparameters, String> {
        block_on(self.chain.hyperparameters(self.netuid))?.map_err(|e| e.to_string())
    }

    /// Sends `prompt` to the axons of `uids` (read from the metagraph now) in parallel;
    /// one response and completion per uid, in order. A uid that is not registered is
    /// an error, before anything is sent.
    pub fn prompt(
        &self,
        uids: &[u16],
        prompt: &PromptingSynapse,
        timeout: Duration,
    ) -> Result<Vec<(DendriteResponse, String)>, String> {
        let metagraph = self.metagraph()?;
        let axons = uids
            .iter()
            .map(|&uid| {
                metagraph
                    .neurons
                    .get(usize::from(uid))
                    .map(AxonInfo::of_neuron)
                    .ok_or_else(|| {
                        format!(
                            "uid {uid} is not registered on netuid {} ({} uids)",
                            self.netuid,
                            metagraph.neurons.len()
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        block_on(self.dendrite.session().prompt(&axons, prompt, timeout))?
            .map_err(|e| e.to_string())
    }
}

/// Runs `future` to completion on the current tokio runtime from synchronous code,
/// giving up when the running hook's wall time is spent.
///
/// On a multi-threaded runtime's worker the worker is handed off first; on a blocking
/// thread (where hooks run) this simply blocks. Outside any runtime it is an error.
fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    let handle = Handle::try_current()
        .map_err(|_| "the neuron's async runtime is not available on this thread".to_string())?;
    let left = sandbox::remaining();
    let bounded = async move {
        match left {
            Some(left) => tokio::time::timeout(left, future).await.map_err(|_| {
                format!(
                    "the hook's wall-time limit ran out waiting for the neuron's chain or \
                     dendrite ({} ms were left)",
                    left.as_millis()
                )
            }),
            None => Ok(future.await),
        }
    };
    match handle.runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| handle.block_on(bounded)),
        _ => handle.block_on(bounded),
    }
}

//! The process's one [`WorkPool`] for CPU matrix products: the LLM's quantised matmuls
//! (`llm/cpu_matmul.rs`) and the embedder's AMX ones (`embed/dense.rs`) share it, so a
//! process never computes on more threads than the cores it was given; so do the loops
//! of attention ([`parallel_for`]).

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use neuron_qmatmul::WorkPool;

/// Runs `work` on ranges that cover `0..n` exactly once: on the pool (x86-64) or on this
/// thread.
pub(crate) fn parallel_for(n: usize, work: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    #[cfg(target_arch = "x86_64")]
    shared().parallel_for(n, work);
    #[cfg(not(target_arch = "x86_64"))]
    work(0..n);
}

/// The pool: the CPU threads minus the caller's, as many as candle would use
/// (`CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else the physical cores). It spins
/// only briefly and takes over the work of threads the scheduler has descheduled, so
/// products slow in proportion when other processes compete for the cores (see
/// `neuron_qmatmul::pool`); a second caller multiplying meanwhile computes on its own
/// thread.
#[cfg(target_arch = "x86_64")]
pub(crate) fn shared() -> &'static WorkPool {
    static POOL: OnceLock<WorkPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(candle_core::utils::get_num_threads);
        WorkPool::new(threads - 1)
    })
}

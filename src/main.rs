//! The `neuron` command line.

mod cli;

fn main() -> anyhow::Result<()> {
    keep_freed_memory_in_the_heap();
    count_cpu_threads_once();
    cli::main()
}

/// candle looks up its thread count before every f32 matmul, and unless
/// `RAYON_NUM_THREADS` is set that means parsing `/proc/cpuinfo` for the number of
/// physical cores: 9 % of the model thread's time while decoding. Setting the variable to
/// that same count once leaves every thread count as it was. An operator's own value
/// takes precedence.
fn count_cpu_threads_once() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: this runs first thing in main, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// Stops glibc from handing the top of the heap back to the kernel after every large
/// tensor is dropped (and faulting it in again for the next one): embeddings run 35-50 %
/// faster and LLM decoding ~10 % (docs/inference.md). An operator's own
/// `MALLOC_TRIM_THRESHOLD_` / `MALLOC_TOP_PAD_` take precedence.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory_in_the_heap() {
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
        || std::env::var_os("MALLOC_TOP_PAD_").is_some()
    {
        return;
    }
    // SAFETY: mallopt only changes allocator parameters; this runs first thing in main,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2_000_000_000);
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory_in_the_heap() {}

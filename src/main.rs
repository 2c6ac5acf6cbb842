//! The `neuron` command line.

mod cli;

fn main() -> anyhow::Result<()> {
    keep_freed_memory_in_the_heap();
    cli::main()
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

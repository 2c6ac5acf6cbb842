//! The threads every script runs on. Rhai evaluates by recursion, so the native stack
//! a hook needs grows with its call depth, its expression depth and the nesting of its
//! data; a thread with too small a stack does not fail the hook, it aborts the process.
//! Every entry into the engine (compiling, importing, top-level code, hook calls) goes
//! through [`on_hook_thread`], so `neuron task check`, a validator step and a miner
//! request run a script on the same kind of thread with the same [`HOOK_STACK_BYTES`],
//! which the tests prove holds the deepest script the [`super::Limits`] allow.

use std::cell::Cell;

/// Stack size of a hook thread. Only the pages a hook touches are committed.
pub const HOOK_STACK_BYTES: usize = 256 * 1024 * 1024;

thread_local! {
    static ON_HOOK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on a hook thread and returns its result: inline when the caller is one
/// already (nested engine calls), else on a fresh thread of [`HOOK_STACK_BYTES`] that
/// borrows from the caller, inside the caller's tokio runtime when it has one, and is
/// joined before this returns. A panic in `work` is
/// resumed on the caller. Fails only when the thread cannot be started.
pub(crate) fn on_hook_thread<T: Send>(work: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if ON_HOOK_THREAD.with(Cell::get) {
        return Ok(work());
    }
    // The `chain` and `dendrite` modules block on the caller's tokio runtime, if any.
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("script-hook".into())
            .stack_size(HOOK_STACK_BYTES)
            .spawn_scoped(scope, || {
                ON_HOOK_THREAD.with(|on| on.set(true));
                let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                work()
            })?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_named_hook_thread_and_nests_inline() {
        let outer = on_hook_thread(|| {
            let name = std::thread::current().name().map(str::to_owned);
            let id = std::thread::current().id();
            let inner = on_hook_thread(|| std::thread::current().id()).unwrap();
            (name, id == inner)
        })
        .unwrap();
        assert_eq!(outer, (Some("script-hook".to_string()), true));
    }
}

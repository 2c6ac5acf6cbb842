//! Sandbox limits applied to the one engine, and the per-hook wall-time deadline.
//!
//! Operation, depth and size limits are Rhai's own. The wall-time limit is a
//! thread-local deadline checked from `Engine::on_progress`: a hook runs on the
//! calling thread, so each call sets its own deadline and nested calls keep the
//! earlier one.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine};

/// Token returned by the progress callback when the deadline has passed.
pub(crate) const WALL_TIME_TOKEN: &str = "neuron:wall-time";

/// Resource limits for every script call.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Maximum Rhai operations per call.
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting depth (statements and function bodies alike).
    pub max_expr_depth: usize,
    /// Maximum string length in bytes.
    pub max_string_size: usize,
    /// Maximum array length.
    pub max_array_size: usize,
    /// Maximum object-map size.
    pub max_map_size: usize,
    /// Maximum number of modules one script may import.
    pub max_modules: usize,
    /// Wall-clock limit per hook call (includes time spent in host APIs such as the LLM).
    pub wall_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_string_size: 4 * 1024 * 1024,
            max_array_size: 200_000,
            max_map_size: 20_000,
            max_modules: 32,
            wall_time: Duration::from_secs(120),
        }
    }
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Applies `limits` to `engine` and installs the deadline check.
pub(crate) fn apply(engine: &mut Engine, limits: &Limits) {
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_modules(limits.max_modules);
    engine.on_progress(|ops| {
        // Reading the clock every operation is measurable; every 256th is plenty.
        if ops & 0xFF != 0 {
            return None;
        }
        match DEADLINE.with(Cell::get) {
            Some(deadline) if Instant::now() >= deadline => Some(Dynamic::from(WALL_TIME_TOKEN)),
            _ => None,
        }
    });
}

/// Time left before this thread's script deadline, if a hook is running.
pub(crate) fn remaining() -> Option<Duration> {
    DEADLINE
        .with(Cell::get)
        .map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// Sets this thread's script deadline for as long as it lives; an enclosing, earlier
/// deadline stays in force. The previous deadline is restored on drop.
pub(crate) struct DeadlineGuard {
    previous: Option<Instant>,
}

impl DeadlineGuard {
    /// Starts a deadline `limit` from now.
    pub(crate) fn start(limit: Duration) -> Self {
        let wanted = Instant::now() + limit;
        let previous = DEADLINE.with(Cell::get);
        let effective = match previous {
            Some(earlier) if earlier < wanted => earlier,
            _ => wanted,
        };
        DEADLINE.with(|d| d.set(Some(effective)));
        Self { previous }
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_guard_keeps_the_earlier_deadline_and_restores() {
        let outer = DeadlineGuard::start(Duration::from_millis(10));
        let outer_deadline = DEADLINE.with(Cell::get).unwrap();
        {
            let _inner = DeadlineGuard::start(Duration::from_secs(60));
            assert_eq!(DEADLINE.with(Cell::get), Some(outer_deadline));
        }
        assert_eq!(DEADLINE.with(Cell::get), Some(outer_deadline));
        drop(outer);
        assert_eq!(DEADLINE.with(Cell::get), None);
    }

    #[test]
    fn infinite_loop_is_terminated_by_the_deadline() {
        let mut engine = Engine::new();
        let limits = Limits {
            max_operations: 0,
            ..Limits::default()
        };
        apply(&mut engine, &limits);
        let _guard = DeadlineGuard::start(Duration::from_millis(50));
        let err = engine.run("loop { }").unwrap_err();
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorTerminated(ref t, _) if t.clone().into_string().ok().as_deref() == Some(WALL_TIME_TOKEN)),
            "{err}"
        );
    }
}

//! Sandbox limits applied to the one engine, and the per-hook budget: wall-time
//! deadline, memory budget and log allowance.
//!
//! Depth limits are Rhai's own. The others are kept per thread, for the hook running
//! on it ([`HookGuard`]), and checked from `Engine::on_progress` at every operation:
//! the operation count, the deadline, and the bytes the thread holds beyond what it
//! held when the hook started ([`super::memory`]). A hook runs on one thread
//! ([`super::hook_thread`]), so each call sets its own budget; nested calls keep the
//! enclosing one.
//!
//! A limit is reported at the script line that ran past it. Rhai moves the position of
//! an uncatchable termination to each function's call site on the way out (the hook's
//! own being none), so a hook past a limit is first stopped by the variable-access
//! callback with a runtime error, which keeps its line; the operations after that are
//! counted, and [`GRACE_OPERATIONS`] later (at once if the memory held grows past a
//! quarter over budget) the hook is terminated uncatchably. A hook that catches the
//! error and returns is failed by the host all the same ([`exceeded`]).
//!
//! Inside a hook the memory budget bounds every value (an O(1) check per operation;
//! Rhai's own per-value size limits are off: they walk a whole array or map after
//! every change to it, quadratic in its length). The per-value limits apply where a
//! value leaves its hook ([`check_leaving`]): what a hook returns and what an imported
//! module keeps.

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Position};

use crate::config::ScriptsConfig;
use crate::memory;

/// A per-hook limit a hook ran past. It is the value of the error that stops the hook
/// (a type scripts cannot make, so no `throw` passes for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// More than [`Limits::max_operations`].
    Operations,
    /// More than [`Limits::max_memory`] held.
    Memory,
    /// Past [`Limits::wall_time`].
    WallTime,
}

impl Exceeded {
    /// The limit `err` reports, looking through function-call and module wrappers.
    pub(crate) fn of(err: &EvalAltResult) -> Option<Self> {
        match err {
            EvalAltResult::ErrorTerminated(value, _) | EvalAltResult::ErrorRuntime(value, _) => {
                value.read_lock::<Self>().map(|limit| *limit)
            }
            EvalAltResult::ErrorTooManyOperations(_) => Some(Self::Operations),
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
            | EvalAltResult::ErrorInModule(_, inner, _) => Self::of(inner),
            _ => None,
        }
    }

    /// What went wrong, naming the limit and its setting.
    pub(crate) fn describe(self, limits: &Limits) -> String {
        match self {
            Self::Operations => format!(
                "too many operations (limit {}: `scripts.max_operations`)",
                limits.max_operations
            ),
            Self::Memory => format!(
                "memory budget of {} MiB exceeded (`scripts.max_memory_mb`)",
                limits.max_memory / (1024 * 1024)
            ),
            Self::WallTime => format!(
                "wall-time limit of {:?} exceeded (`scripts.hook_timeout_ms`)",
                limits.wall_time
            ),
        }
    }
}

/// Operations a hook past a limit may still run, for a variable access to report the
/// line, before it is terminated.
pub const GRACE_OPERATIONS: u32 = 256;

/// Resource limits for every script call.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Maximum Rhai operations per call.
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting depth (statements and function bodies alike).
    pub max_expr_depth: usize,
    /// Longest string a hook may return or a module keep, in bytes.
    pub max_string_size: usize,
    /// Most elements of an array or BLOB a hook may return or a module keep.
    pub max_array_size: usize,
    /// Most entries of an object map a hook may return or a module keep.
    pub max_map_size: usize,
    /// Maximum number of modules one script may import (and the longest import chain).
    pub max_modules: usize,
    /// Wall-clock limit per hook call, model and HTTP calls inside it included (they
    /// are given the time left).
    pub wall_time: Duration,
    /// Memory budget per hook call: the most heap bytes its thread may hold beyond what
    /// it held when the call started, checked at every operation.
    pub max_memory: usize,
    /// Longest line a hook may `print` or `log::*`, in bytes; longer lines are cut.
    pub max_log_line: usize,
    /// Lines a hook may `print` or `log::*` per call; further lines are dropped and
    /// counted in one notice.
    pub max_log_lines: usize,
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
            max_memory: 256 * 1024 * 1024,
            max_log_line: 2048,
            max_log_lines: 200,
        }
    }
}

/// The limits an operator configured (`scripts.*`); the others keep their defaults.
impl From<&ScriptsConfig> for Limits {
    fn from(config: &ScriptsConfig) -> Self {
        Self {
            max_operations: config.max_operations,
            max_string_size: config.max_string_bytes,
            max_array_size: config.max_array_len,
            max_map_size: config.max_map_len,
            wall_time: Duration::from_millis(config.hook_timeout_ms),
            max_memory: config.max_memory_mb.saturating_mul(1024 * 1024),
            max_log_lines: config.max_log_lines,
            ..Self::default()
        }
    }
}

/// The budget of the hook running on this thread.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Instant,
    max_operations: u64,
    /// [`memory::thread_net_bytes`] when the hook started.
    memory_base: isize,
    max_memory: usize,
    max_log_line: usize,
    max_log_lines: usize,
    max_string_size: usize,
    max_array_size: usize,
    max_map_size: usize,
    /// Lines logged so far.
    logged: usize,
    /// The limit the hook ran past, and the operations it may still run.
    exceeded: Option<(Exceeded, u32)>,
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// How deeply the arrays and maps a hook returns, or an imported module keeps, may
/// nest: a value that leaves its hook thread must be safe to drop and convert on any
/// thread's stack.
pub const MAX_RETURNED_NESTING: usize = 128;

/// Whether `value` may leave its hook (be returned, or kept by an imported module):
/// nested at most [`MAX_RETURNED_NESTING`] deep, each string, array, BLOB and map
/// within the running hook's per-value limits (the defaults outside a hook). The error
/// says what is over which limit. One walk of the value, no deeper than the limit.
pub(crate) fn check_leaving(value: &Dynamic) -> Result<(), String> {
    let limits = BUDGET.with(Cell::get).map_or_else(
        || {
            let d = Limits::default();
            (d.max_string_size, d.max_array_size, d.max_map_size)
        },
        |b| (b.max_string_size, b.max_array_size, b.max_map_size),
    );
    leaving_within(value, MAX_RETURNED_NESTING, limits)
}

fn leaving_within(
    value: &Dynamic,
    levels: usize,
    limits @ (max_string, max_array, max_map): (usize, usize, usize),
) -> Result<(), String> {
    let over = |what: &str, size: usize, unit: &str, max: usize, key: &str| {
        Err(format!(
            "{what} of {size} {unit} (at most {max}: `scripts.{key}`)"
        ))
    };
    if let Ok(array) = value.as_array_ref() {
        if levels == 0 {
            return Err(format!(
                "arrays or maps nested deeper than {MAX_RETURNED_NESTING} levels"
            ));
        }
        if array.len() > max_array {
            return over(
                "an array",
                array.len(),
                "elements",
                max_array,
                "max_array_len",
            );
        }
        return array
            .iter()
            .try_for_each(|v| leaving_within(v, levels - 1, limits));
    }
    if let Ok(map) = value.as_map_ref() {
        if levels == 0 {
            return Err(format!(
                "arrays or maps nested deeper than {MAX_RETURNED_NESTING} levels"
            ));
        }
        if map.len() > max_map {
            return over("a map", map.len(), "entries", max_map, "max_map_len");
        }
        return map
            .values()
            .try_for_each(|v| leaving_within(v, levels - 1, limits));
    }
    if let Ok(blob) = value.as_blob_ref()
        && blob.len() > max_array
    {
        return over("a BLOB", blob.len(), "bytes", max_array, "max_array_len");
    }
    if let Ok(s) = value.as_immutable_string_ref()
        && s.len() > max_string
    {
        return over("a string", s.len(), "bytes", max_string, "max_string_bytes");
    }
    Ok(())
}

/// Applies `limits` to `engine` and installs the per-hook checks.
pub(crate) fn apply(engine: &mut Engine, limits: &Limits) {
    // Rhai's own operation limit is the backstop outside a hook; inside one, the
    // progress callback stops the hook first.
    let backstop = match limits.max_operations {
        0 => 0,
        max => max.saturating_add(2 * u64::from(GRACE_OPERATIONS)),
    };
    engine
        .set_max_operations(backstop)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_modules(limits.max_modules);
    engine.on_progress(|ops| {
        let mut budget = BUDGET.with(Cell::get)?;
        let held = memory::thread_net_bytes().saturating_sub(budget.memory_base);
        let held = usize::try_from(held).unwrap_or(0);
        if let Some((limit, grace)) = budget.exceeded {
            if grace == 0 || held > budget.max_memory.saturating_add(budget.max_memory / 4) {
                return Some(Dynamic::from(limit));
            }
            budget.exceeded = Some((limit, grace - 1));
        } else if budget.max_operations > 0 && ops > budget.max_operations {
            budget.exceeded = Some((Exceeded::Operations, GRACE_OPERATIONS));
        } else if held > budget.max_memory {
            budget.exceeded = Some((Exceeded::Memory, GRACE_OPERATIONS));
        } else if ops & 0xFF == 0 && Instant::now() >= budget.deadline {
            // Reading the clock every operation is measurable; every 256th is plenty.
            budget.exceeded = Some((Exceeded::WallTime, GRACE_OPERATIONS));
        } else {
            return None;
        }
        BUDGET.with(|b| b.set(Some(budget)));
        None
    });
    // The first variable access after a limit is passed fails with the limit, at its
    // line (see the module docs). The API is stable in use but marked volatile.
    #[allow(deprecated)]
    engine.on_var(|_, _, _| match exceeded() {
        Some(limit) => {
            Err(EvalAltResult::ErrorRuntime(Dynamic::from(limit), Position::NONE).into())
        }
        None => Ok(None),
    });
}

/// The limit the running hook has passed, if any.
pub(crate) fn exceeded() -> Option<Exceeded> {
    BUDGET
        .with(Cell::get)
        .and_then(|b| b.exceeded)
        .map(|(limit, _)| limit)
}

/// Time left before this thread's hook deadline, if a hook is running.
pub(crate) fn remaining() -> Option<Duration> {
    BUDGET
        .with(Cell::get)
        .map(|b| b.deadline.saturating_duration_since(Instant::now()))
}

/// Heap bytes the running hook may still allocate, if a hook is running.
pub(crate) fn memory_left() -> Option<usize> {
    BUDGET.with(Cell::get).map(|b| {
        let held = memory::thread_net_bytes().saturating_sub(b.memory_base);
        b.max_memory.saturating_sub(held.max(0) as usize)
    })
}

/// What a script's `print` or `log::*` line becomes under the running hook's log
/// allowance: cut to [`Limits::max_log_line`] bytes, or `None` once the hook has used
/// its [`Limits::max_log_lines`] (the first line past it is replaced by a notice).
/// Outside a hook the default limits apply to each line alone.
pub(crate) fn log_line(line: &str) -> Option<Cow<'_, str>> {
    let (max_line, allowed) = match BUDGET.with(Cell::get) {
        Some(mut budget) => {
            budget.logged += 1;
            BUDGET.with(|b| b.set(Some(budget)));
            if budget.logged == budget.max_log_lines + 1 {
                return Some(Cow::Owned(format!(
                    "(log limit of {} lines per hook call reached; further lines dropped)",
                    budget.max_log_lines
                )));
            }
            (budget.max_log_line, budget.logged <= budget.max_log_lines)
        }
        None => (Limits::default().max_log_line, true),
    };
    if !allowed {
        return None;
    }
    if line.len() <= max_line {
        return Some(Cow::Borrowed(line));
    }
    let mut cut = max_line;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(Cow::Owned(format!(
        "{}… ({} more bytes cut)",
        &line[..cut],
        line.len() - cut
    )))
}

/// Sets this thread's hook budget from `limits` for as long as it lives. Nested, the
/// enclosing budget stays in force (its earlier deadline, its memory baseline, its log
/// allowance); the previous state is restored on drop.
pub(crate) struct HookGuard {
    previous: Option<Budget>,
}

impl HookGuard {
    /// Starts a budget: deadline `limits.wall_time` from now, memory counted from now.
    pub(crate) fn start(limits: &Limits) -> Self {
        let previous = BUDGET.with(Cell::get);
        let budget = previous.unwrap_or(Budget {
            deadline: Instant::now() + limits.wall_time,
            max_operations: limits.max_operations,
            memory_base: memory::thread_net_bytes(),
            max_memory: limits.max_memory,
            max_log_line: limits.max_log_line,
            max_log_lines: limits.max_log_lines,
            max_string_size: limits.max_string_size,
            max_array_size: limits.max_array_size,
            max_map_size: limits.max_map_size,
            logged: 0,
            exceeded: None,
        });
        BUDGET.with(|b| b.set(Some(budget)));
        Self { previous }
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        BUDGET.with(|b| {
            // A nested call's lines, and a limit it passed, count against the enclosing
            // call's budget: it is the same budget.
            let now = b.get();
            b.set(self.previous.map(|mut outer| {
                if let Some(now) = now {
                    outer.logged = now.logged;
                    outer.exceeded = now.exceeded;
                }
                outer
            }))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(wall_time: Duration) -> Limits {
        Limits {
            wall_time,
            ..Limits::default()
        }
    }

    #[test]
    fn configured_limits_match_the_defaults_unless_changed() {
        let config = ScriptsConfig::default();
        let limits = Limits::from(&config);
        let default = Limits::default();
        assert_eq!(limits.max_operations, default.max_operations);
        assert_eq!(limits.max_string_size, default.max_string_size);
        assert_eq!(limits.max_array_size, default.max_array_size);
        assert_eq!(limits.max_map_size, default.max_map_size);
        assert_eq!(limits.wall_time, default.wall_time);
        assert_eq!(limits.max_memory, default.max_memory);
        assert_eq!(limits.max_log_lines, default.max_log_lines);
        let small = Limits::from(&ScriptsConfig {
            max_memory_mb: 8,
            ..config
        });
        assert_eq!(small.max_memory, 8 << 20);
    }

    #[test]
    fn nested_guard_keeps_the_enclosing_budget_and_restores() {
        let outer = HookGuard::start(&limits(Duration::from_millis(10)));
        let outer_deadline = BUDGET.with(Cell::get).unwrap().deadline;
        {
            let _inner = HookGuard::start(&limits(Duration::from_secs(60)));
            assert_eq!(BUDGET.with(Cell::get).unwrap().deadline, outer_deadline);
        }
        assert_eq!(BUDGET.with(Cell::get).unwrap().deadline, outer_deadline);
        drop(outer);
        assert!(BUDGET.with(Cell::get).is_none());
    }

    #[test]
    fn values_leaving_a_hook_are_held_to_the_per_value_limits() {
        let _hook = HookGuard::start(&Limits {
            max_string_size: 4,
            max_array_size: 3,
            max_map_size: 2,
            ..Limits::default()
        });
        let engine = Engine::new();
        let check = |script: &str| check_leaving(&engine.eval::<Dynamic>(script).unwrap());
        for fine in [
            r#""abcd""#,
            "[1, 2, [3, 4, 5]]",
            "#{a: 1, b: [\"xyz\"]}",
            "blob(3)",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
        for (over, want) in [
            (
                r#""abcde""#,
                "a string of 5 bytes (at most 4: `scripts.max_string_bytes`)",
            ),
            (
                "[1, [1, 2, 3, 4]]",
                "an array of 4 elements (at most 3: `scripts.max_array_len`)",
            ),
            (
                "#{a: #{b: 1, c: 2, d: 3}}",
                "a map of 3 entries (at most 2: `scripts.max_map_len`)",
            ),
            (
                "blob(4)",
                "a BLOB of 4 bytes (at most 3: `scripts.max_array_len`)",
            ),
            (r#"[#{s: "toolong"}]"#, "a string of 7 bytes"),
        ] {
            let err = check(over).unwrap_err();
            assert!(err.contains(want), "{over}: {err}");
        }
    }

    #[test]
    fn infinite_loop_is_terminated_by_the_deadline() {
        let mut engine = Engine::new();
        let limits = Limits {
            max_operations: 0,
            ..limits(Duration::from_millis(50))
        };
        apply(&mut engine, &limits);
        let _guard = HookGuard::start(&limits);
        // No variable to stop it at: terminated once its grace is spent.
        let err = engine.run("loop { }").unwrap_err();
        assert!(matches!(*err, EvalAltResult::ErrorTerminated(..)), "{err}");
        assert_eq!(Exceeded::of(&err), Some(Exceeded::WallTime), "{err}");
    }

    /// The position of the innermost error under function-call wrappers.
    fn innermost_position(err: &EvalAltResult) -> Position {
        match err {
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost_position(inner),
            other => other.position(),
        }
    }

    #[test]
    fn a_limit_is_reported_at_the_line_that_ran_past_it() {
        let mut engine = Engine::new();
        let limits = Limits {
            max_operations: 1000,
            ..Limits::default()
        };
        apply(&mut engine, &limits);
        for (script, line) in [
            (
                "fn spin() {\n  let x = 0;\n  loop { x += 1; }\n}\nspin()",
                3,
            ),
            ("let x = 0;\nlet y = 1;\nwhile true { x += y; }", 3),
        ] {
            let _guard = HookGuard::start(&limits);
            let err = engine.run(script).unwrap_err();
            assert_eq!(Exceeded::of(&err), Some(Exceeded::Operations), "{err}");
            assert_eq!(
                innermost_position(&err).line(),
                Some(line),
                "{script}: {err}"
            );
        }
    }

    #[test]
    fn a_script_that_catches_its_limit_is_stopped_all_the_same() {
        let mut engine = Engine::new();
        let limits = Limits {
            max_operations: 1000,
            ..Limits::default()
        };
        apply(&mut engine, &limits);
        // Catching every report and going on: terminated uncatchably after the grace.
        let guard = HookGuard::start(&limits);
        let err = engine
            .run("let n = 0; loop { try { n += 1; } catch { } }")
            .unwrap_err();
        assert!(matches!(*err, EvalAltResult::ErrorTerminated(..)), "{err}");
        assert_eq!(Exceeded::of(&err), Some(Exceeded::Operations));
        drop(guard);
        // Catching once and returning: the budget remembers, for the host to fail it.
        let _guard = HookGuard::start(&limits);
        let out = engine.eval::<i64>("let n = 0; try { while true { n += 1; } } catch { } 5");
        assert_eq!(out.unwrap(), 5);
        assert_eq!(exceeded(), Some(Exceeded::Operations));
    }

    #[test]
    fn holding_more_than_the_budget_terminates_the_script() {
        let mut engine = Engine::new();
        let limits = Limits {
            max_memory: 8 * 1024 * 1024,
            ..Limits::default()
        };
        apply(&mut engine, &limits);
        let _guard = HookGuard::start(&limits);
        // A 1 MiB local in each of 20 frames: every value is within the string limit.
        let script = r#"
            fn hold(n, s) { let mine = s + n; if n == 0 { return 0; } hold(n - 1, s) + mine.len() }
            let s = ""; s.pad(1048576, 'x'); hold(20, s)
        "#;
        let err = engine.run(script).unwrap_err();
        assert_eq!(Exceeded::of(&err), Some(Exceeded::Memory), "{err}");
    }

    #[test]
    fn log_lines_are_cut_and_counted_per_hook() {
        let limits = Limits {
            max_log_line: 5,
            max_log_lines: 2,
            ..Limits::default()
        };
        let _guard = HookGuard::start(&limits);
        assert_eq!(log_line("short").as_deref(), Some("short"));
        // Five bytes would split the third `é`: the cut falls before it.
        assert_eq!(log_line("éééé").as_deref(), Some("éé… (4 more bytes cut)"));
        assert!(log_line("third").unwrap().contains("log limit of 2 lines"));
        assert_eq!(log_line("fourth"), None);
    }
}

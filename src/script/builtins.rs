//! Size-checked replacements for Rhai builtins whose result can be far larger than
//! their inputs. Rhai checks a value against [`super::Limits`] only after the function
//! that made it returns, so `s.replace("x", big)` on a 4 MiB `s` would first build a
//! string of up to 4 Mi × 4 MiB. These versions compute the result's size first and
//! refuse, before allocating, a result over the string limit or over the memory the
//! hook has left ([`super::sandbox::memory_left`]). Registered on the engine itself,
//! they take precedence over the packages' functions of the same signature.

use rhai::{Engine, EvalAltResult, ImmutableString, NativeCallContext, Position};

use super::sandbox::memory_left;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Registers the replacements on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, with: &str| {
            replace(&ctx, s, find, with)
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: char, with: &str| {
            replace(&ctx, s, find.encode_utf8(&mut [0; 4]), with)
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, with: char| {
            replace(&ctx, s, find, with.encode_utf8(&mut [0; 4]))
        },
    );
}

/// `s.replace(find, with)`, refused when the result would not fit.
fn replace(ctx: &NativeCallContext, s: &mut ImmutableString, find: &str, with: &str) -> Res<()> {
    if s.is_empty() {
        return Ok(());
    }
    // An empty pattern matches before every character and at the end.
    let matches = if find.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(find).count()
    };
    let len = (s.len() as u128 + matches as u128 * with.len() as u128)
        .saturating_sub(matches as u128 * find.len() as u128);
    ensure_fits(ctx, len)?;
    *s = s.replace(find, with).into();
    Ok(())
}

/// Refuses a string of `len` bytes over the string limit or the hook's memory left.
fn ensure_fits(ctx: &NativeCallContext, len: u128) -> Res<()> {
    let max = ctx.engine().max_string_size();
    if max > 0 && len > max as u128 {
        return Err(EvalAltResult::ErrorDataTooLarge(
            format!("Length of string ({len} bytes; the limit is {max})"),
            Position::NONE,
        )
        .into());
    }
    if let Some(left) = memory_left()
        && len > left as u128
    {
        return Err(EvalAltResult::ErrorDataTooLarge(
            format!("Length of string ({len} bytes; the hook's memory left is {left})"),
            Position::NONE,
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut engine = Engine::new();
        engine.set_max_string_size(1024);
        register(&mut engine);
        engine
    }

    #[test]
    fn replace_still_replaces() {
        let out: String = engine()
            .eval(r#"let s = "a-b-c"; s.replace("-", "+"); s.replace('+', "::"); s.replace("c", 'd'); s"#)
            .unwrap();
        assert_eq!(out, "a::b::d");
    }

    #[test]
    fn replace_refuses_a_result_over_the_limit_before_building_it() {
        // 1,000 matches × 1,000 bytes: a 1 MB result from two 1 kB strings.
        let err = engine()
            .run(
                r#"let s = ""; s.pad(1000, 'x'); let w = ""; w.pad(1000, 'y'); s.replace("x", w);"#,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("1000000 bytes; the limit is 1024"),
            "{err}"
        );
    }
}

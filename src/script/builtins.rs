//! Size-checked replacements for the Rhai builtins whose result can be far larger than
//! their inputs or is sized by an argument. Inside a hook every value is bounded by the
//! hook's memory budget, checked after each operation ([`super::sandbox`]); a builtin
//! that allocates a lot in one call (`s.replace("x", big)`, `"".pad(1 << 40, 'x')`,
//! `s.split("")`, `blob(n)`, `parse_json(text)`) would overshoot it before that check.
//! These versions estimate the result's size first and refuse, before allocating, one
//! over the memory the hook has left ([`super::sandbox::memory_left`]); outside a hook
//! they are unchecked. Registered on the engine itself, they take precedence over the
//! packages' functions of the same signature; each keeps the package's semantics.

use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, INT, ImmutableString, Position};

use super::sandbox::memory_left;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Bytes one array element takes beyond what it points to.
const ELEMENT_BYTES: u128 = std::mem::size_of::<Dynamic>() as u128;
/// Bytes one short string element of an array takes (the element, the shared
/// string's allocation).
const PIECE_BYTES: u128 = ELEMENT_BYTES + 48;
/// Most bytes the value parsed from one byte of JSON takes (`[0,0,…]` and `{"a":0,…}`
/// come close).
const JSON_BYTES_PER_BYTE: u128 = 24;

/// Registers the replacements on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    register_strings(engine);
    register_splits(engine);
    register_collections(engine);
}

fn register_strings(engine: &mut Engine) {
    engine.register_fn(
        "replace",
        |s: &mut ImmutableString, find: &str, with: &str| replace(s, find, with),
    );
    engine.register_fn(
        "replace",
        |s: &mut ImmutableString, find: char, with: &str| {
            replace(s, find.encode_utf8(&mut [0; 4]), with)
        },
    );
    engine.register_fn(
        "replace",
        |s: &mut ImmutableString, find: &str, with: char| {
            replace(s, find, with.encode_utf8(&mut [0; 4]))
        },
    );
    engine.register_fn("pad", |s: &mut ImmutableString, len: INT, with: char| {
        pad_string(s, len, with.encode_utf8(&mut [0; 4]))
    });
    engine.register_fn("pad", |s: &mut ImmutableString, len: INT, with: &str| {
        pad_string(s, len, with)
    });
    engine.register_fn("to_chars", |s: ImmutableString| -> Res<Array> {
        let chars = s.chars().count() as u128;
        ensure_fits("to_chars", chars * ELEMENT_BYTES)?;
        Ok(s.chars().map(Dynamic::from).collect())
    });
    engine.register_fn("parse_json", |json: &str| -> Res<Dynamic> {
        ensure_fits("parse_json", json.len() as u128 * JSON_BYTES_PER_BYTE)?;
        serde_json::from_str::<Dynamic>(json).map_err(|e| {
            EvalAltResult::ErrorRuntime(format!("parse_json: {e}").into(), Position::NONE).into()
        })
    });
}

/// The `split` and `split_rev` family, with Rhai's semantics: an empty string splits
/// into itself, fewer than two segments into the whole string.
fn register_splits(engine: &mut Engine) {
    engine.register_fn("split", |s: ImmutableString| {
        split(&s, s.split_whitespace())
    });
    engine.register_fn("split", |s: ImmutableString, at: &str| {
        split(&s, s.split(at))
    });
    engine.register_fn("split", |s: ImmutableString, at: char| {
        split(&s, s.split(at))
    });
    engine.register_fn("split", |s: ImmutableString, at: &str, n: INT| {
        split(&s, s.splitn(segments(n), at))
    });
    engine.register_fn("split", |s: ImmutableString, at: char, n: INT| {
        split(&s, s.splitn(segments(n), at))
    });
    engine.register_fn("split_rev", |s: ImmutableString, at: &str| {
        split(&s, s.rsplit(at))
    });
    engine.register_fn("split_rev", |s: ImmutableString, at: char| {
        split(&s, s.rsplit(at))
    });
    engine.register_fn("split_rev", |s: ImmutableString, at: &str, n: INT| {
        split(&s, s.rsplitn(segments(n), at))
    });
    engine.register_fn("split_rev", |s: ImmutableString, at: char, n: INT| {
        split(&s, s.rsplitn(segments(n), at))
    });
}

/// Arrays and BLOBs sized by an argument.
fn register_collections(engine: &mut Engine) {
    engine.register_fn(
        "pad",
        |array: &mut Array, len: INT, item: Dynamic| -> Res<()> {
            let add = usize::try_from(len)
                .unwrap_or(0)
                .saturating_sub(array.len());
            if add > 0 {
                ensure_fits("pad", add as u128 * (ELEMENT_BYTES + value_bytes(&item)))?;
                array.resize(array.len() + add, item);
            }
            Ok(())
        },
    );
    engine.register_fn("blob", |len: INT| blob(len, 0));
    engine.register_fn("blob", blob);
    engine.register_fn("pad", |blob: &mut Blob, len: INT, value: INT| -> Res<()> {
        let len = usize::try_from(len).unwrap_or(0);
        if len > blob.len() {
            ensure_fits("pad", (len - blob.len()) as u128)?;
            blob.resize(len, value as u8);
        }
        Ok(())
    });
    engine.register_fn("to_array", |blob: &mut Blob| -> Res<Array> {
        ensure_fits("to_array", blob.len() as u128 * ELEMENT_BYTES)?;
        Ok(blob
            .iter()
            .map(|&b| Dynamic::from_int(INT::from(b)))
            .collect())
    });
}

/// `s.replace(find, with)`, refused when the result would not fit.
fn replace(s: &mut ImmutableString, find: &str, with: &str) -> Res<()> {
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
    ensure_fits("replace", len)?;
    *s = s.replace(find, with).into();
    Ok(())
}

/// `s.pad(len, with)`: appends `with` (the last copy cut) until `s` has `len`
/// characters.
fn pad_string(s: &mut ImmutableString, len: INT, with: &str) -> Res<()> {
    let target = usize::try_from(len).unwrap_or(0);
    let have = s.chars().count();
    let per_copy = with.chars().count();
    if target <= have || per_copy == 0 {
        return Ok(());
    }
    let missing = target - have;
    let copies = missing.div_ceil(per_copy) as u128;
    ensure_fits("pad", s.len() as u128 + copies * with.len() as u128)?;
    let out = s.make_mut();
    out.extend(with.chars().cycle().take(missing));
    Ok(())
}

/// `blob(len, value)`: `len` bytes of `value`'s low byte.
fn blob(len: INT, value: INT) -> Res<Blob> {
    let len = usize::try_from(len).unwrap_or(0);
    ensure_fits("blob", len as u128)?;
    Ok(vec![value as u8; len])
}

fn segments(n: INT) -> usize {
    usize::try_from(n).unwrap_or(0).max(1)
}

/// The pieces of `s` as an array, refused when they would not fit.
fn split<'a>(s: &'a ImmutableString, pieces: impl Iterator<Item = &'a str> + Clone) -> Res<Array> {
    if s.is_empty() {
        return Ok(vec![s.clone().into()]);
    }
    let count = pieces.clone().count() as u128;
    ensure_fits("split", count * PIECE_BYTES + s.len() as u128)?;
    Ok(pieces.map(|p| ImmutableString::from(p).into()).collect())
}

/// An estimate of the heap bytes a copy of `value` takes.
fn value_bytes(value: &Dynamic) -> u128 {
    if let Ok(array) = value.as_array_ref() {
        return array.iter().map(|v| ELEMENT_BYTES + value_bytes(v)).sum();
    }
    if let Ok(map) = value.as_map_ref() {
        return map
            .iter()
            .map(|(k, v)| PIECE_BYTES + k.len() as u128 + value_bytes(v))
            .sum();
    }
    if let Ok(blob) = value.as_blob_ref() {
        return blob.len() as u128;
    }
    value
        .read_lock::<ImmutableString>()
        .map_or(0, |s| s.len() as u128)
}

/// Refuses a result of about `bytes` bytes over the memory the running hook has left.
/// A runtime error (not Rhai's "data too large" system exception), so the message
/// keeps the position of the call that made it.
fn ensure_fits(what: &str, bytes: u128) -> Res<()> {
    match memory_left() {
        Some(left) if bytes > left as u128 => Err(EvalAltResult::ErrorRuntime(
            format!(
                "Result of {what} (about {bytes} bytes; the hook's memory left is {left}) too large"
            )
            .into(),
            Position::NONE,
        )
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::script::sandbox::{HookGuard, Limits};

    fn checked() -> Engine {
        let mut engine = Engine::new();
        register(&mut engine);
        engine
    }

    #[test]
    fn replacements_keep_the_packages_results() {
        let cases = [
            r#"let s = "a-b-c"; s.replace("-", "+"); s.replace('+', "::"); s.replace("c", 'd'); s"#,
            r#"let s = "ab"; s.replace("", "-"); s"#,
            r#"let s = "héllo"; s.pad(8, '*'); s"#,
            r#"let s = "ab"; s.pad(7, "xyz"); s"#,
            r#"let s = "abc"; s.pad(2, "x"); s.pad(-1, 'y'); s"#,
            r#""a b  c ".split()"#,
            r#""".split()"#,
            r#""a,b,,c".split(",")"#,
            r#""abc".split("")"#,
            r#""".split(",")"#,
            r#""a,b,c".split(',')"#,
            r#""a,b,c".split(",", 2)"#,
            r#""a,b,c".split(',', 0)"#,
            r#""a,b,c".split_rev(",")"#,
            r#""a,b,c".split_rev(',')"#,
            r#""a,b,c".split_rev(",", 2)"#,
            r#""a,b,c".split_rev(',', -3)"#,
            r#""añb".to_chars()"#,
            r#"let a = [1]; a.pad(3, "x"); a.pad(1, 0); a"#,
            r#"let a = [1]; a.pad(3, [2, [3]]); a"#,
            r#"blob(3)"#,
            r#"blob(3, 0x1ff)"#,
            r#"blob(-1)"#,
            r#"let b = blob(1, 7); b.pad(3, 258); b.pad(0, 1); b"#,
            r#"blob(2, 9).to_array()"#,
            r#"parse_json(`{"a": [1, 2.5, "x", null, true], "b": {}}`)"#,
        ];
        let (plain, ours) = (Engine::new(), checked());
        for case in cases {
            let want = plain.eval::<Dynamic>(case).map(|v| format!("{v:?}"));
            let got = ours.eval::<Dynamic>(case).map(|v| format!("{v:?}"));
            assert_eq!(
                got.map_err(|e| e.to_string()),
                want.map_err(|e| e.to_string()),
                "{case}"
            );
        }
    }

    #[test]
    fn results_over_the_hooks_memory_are_refused_before_they_are_built() {
        let limits = Limits {
            max_memory: 1 << 20,
            wall_time: Duration::from_secs(60),
            ..Limits::default()
        };
        let _hook = HookGuard::start(&limits);
        let engine = checked();
        // Each would need far more than the 1 MiB budget (some more than the machine).
        let cases = [
            (r#"let s = ""; s.pad(1 << 40, 'x');"#, "pad"),
            (r#"let s = "ab"; s.pad(1 << 40, "xyz");"#, "pad"),
            (r#"let s = ""; s.pad(100000, ','); s.split(",")"#, "split"),
            (
                r#"let s = ""; s.pad(100000, ','); s.split_rev(',', 1 << 40)"#,
                "split",
            ),
            (r#"let s = ""; s.pad(100000, ' '); s.split("")"#, "split"),
            (
                r#"let s = ""; s.pad(100000, 'x'); s.to_chars()"#,
                "to_chars",
            ),
            (
                r#"let s = ""; s.pad(1000, 'x'); let w = s; s.replace("x", w);"#,
                "replace",
            ),
            ("[].pad(1 << 40, 0)", "pad"),
            ("[].pad(1000, blob(2000))", "pad"),
            ("blob(1 << 40)", "blob"),
            ("blob(1 << 40, 1)", "blob"),
            ("let b = blob(1); b.pad(1 << 40, 0);", "pad"),
            ("blob(100000).to_array()", "to_array"),
            (
                r#"let s = "["; s.pad(100000, "0,"); parse_json(s + "0]")"#,
                "parse_json",
            ),
        ];
        for (case, what) in cases {
            let err = engine.run(case).unwrap_err().to_string();
            assert!(
                err.contains(&format!("Result of {what} (about"))
                    && err.contains("the hook's memory left is"),
                "{case}: {err}"
            );
        }
        // Within the budget they work.
        let pieces: Array = engine
            .eval(r#"let s = ""; s.pad(999, ','); s.split(",")"#)
            .unwrap();
        assert_eq!(pieces.len(), 1000);
    }
}

//! Text helpers shared by the reward functions: Python's notion of whitespace.

/// Whether `c` is whitespace for Python's `str.split()` / `str.isspace()`.
///
/// This is Unicode `White_Space` (Rust's [`char::is_whitespace`]) plus the four ASCII
/// information separators U+001C..U+001F, which Python also treats as whitespace.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The words of `text` as Python's `text.split()` (no argument) returns them.
pub(crate) fn py_split(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.split(is_py_space).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_python() {
        let words: Vec<_> = py_split("  a\tb\u{1f}c\u{3000}d \u{a0}").collect();
        assert_eq!(words, ["a", "b", "c", "d"]);
        assert_eq!(py_split(" \n ").count(), 0);
    }
}

//! SN1's `float_diff` reward: the last word of the completion that reads as a number,
//! compared with the numeric reference.
//!
//! SN1 walks the completion's words (Python `str.split()`) from the end; each word has
//! leading/trailing `.` stripped and every `,` removed, then goes through sympy's
//! `parse_expr(...).evalf()` and, if that fails, Python's `float()`. We reproduce this
//! with a small expression evaluator covering what sympy accepts for typical numeric
//! answers (the subset is listed in `docs/scoring.md`):
//! - Python number literals (`12`, `1_000`, `0.5`, `.5`, `5.`, `1e-3`), no hex/octal/binary;
//! - `+ - * / **`, unary signs, parentheses, postfix `!` and `!!` on integers;
//! - the constants `pi`, `E`, `oo`, and `sqrt exp log ln sin cos tan abs Abs` of one argument;
//! - then Python `float()` of the word (`inf`, `nan`, `infinity` in any case, signs).
//!
//! A word outside the subset is skipped, as sympy skips a symbolic or invalid word.

use super::ScoreError;
use super::text::{is_py_space, py_split};

/// SN1's float_diff: 1 if the completion's last number equals the reference; else
/// `1 − min(|(ref − pred)/(ref + 1e-10)|, 1)`, with differences above 0.999 counted as 1.
/// 0 when the completion has no number, or the number is NaN (SN1 returns NaN there).
///
/// Errors if `reference` is not a Python float literal (SN1 raises too).
pub fn float_diff(reference: &str, completion: &str) -> Result<f64, ScoreError> {
    let reference = python_float(reference.trim_matches(is_py_space)).ok_or_else(|| {
        ScoreError::NotANumber {
            reference: reference.to_owned(),
        }
    })?;
    let Some(pred) = last_number(completion) else {
        return Ok(0.0);
    };
    if pred == reference {
        return Ok(1.0);
    }
    let denominator = reference + 1e-10;
    if denominator == 0.0 {
        return Ok(0.0);
    }
    let diff = ((reference - pred) / denominator).abs();
    if diff.is_nan() {
        return Ok(0.0);
    }
    let diff = diff.min(1.0);
    Ok(if diff > 0.999 { 0.0 } else { 1.0 - diff })
}

/// The value of the last word of `text` that reads as a number, as SN1's
/// `extract_number` finds it (see the module documentation for the accepted subset).
pub fn last_number(text: &str) -> Option<f64> {
    py_split(text).rev().find_map(|word| {
        let cleaned = word.trim_matches('.').replace(',', "");
        match evaluate(&cleaned) {
            Ok(value) => Some(value),
            Err(Skip) => python_float(&cleaned),
        }
    })
}

/// The magnitudes of the numbers written in `text`, first to last: every run of digits
/// with an optional decimal part, thousands commas allowed (`legs 17 and 22?`, `7%`,
/// `2^5`, `1,000.5`), signs and operators ignored.
pub(crate) fn numbers(text: &str) -> impl Iterator<Item = f64> + '_ {
    static LITERAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?").expect("valid pattern")
    });
    LITERAL
        .find_iter(text)
        .filter_map(|m| m.as_str().replace(',', "").parse().ok())
}

/// Python's `float(s)` for an already-trimmed string: decimal literals with `_` between
/// digits, an optional sign, and `inf`/`infinity`/`nan` in any case.
pub(crate) fn python_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let negative = s.starts_with('-');
    let special = match unsigned.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    if let Some(v) = special {
        return Some(if negative { -v } else { v });
    }
    let literal = Literal::scan(unsigned.as_bytes(), 0)?;
    if literal.end != unsigned.len() {
        return None;
    }
    let value = literal.value;
    Some(if negative { -value } else { value })
}

/// A word the evaluator does not read as a number (sympy fails or gives a non-real).
#[derive(Debug)]
struct Skip;

/// A Python float or integer literal at the start of `bytes[at..]`.
struct Literal {
    value: f64,
    /// Whether it is an integer literal (no `.`, no exponent).
    integer: bool,
    end: usize,
}

impl Literal {
    /// Scans `digitpart ["." [digitpart]] [exponent]` or `"." digitpart [exponent]`,
    /// with Python's rule that `_` may only sit between two digits.
    fn scan(bytes: &[u8], start: usize) -> Option<Literal> {
        let digits = |mut i: usize| -> Option<usize> {
            if !bytes.get(i)?.is_ascii_digit() {
                return None;
            }
            while i < bytes.len() {
                match bytes[i] {
                    b'0'..=b'9' => i += 1,
                    b'_' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 1,
                    _ => break,
                }
            }
            Some(i)
        };
        let mut i = start;
        let int_end = digits(i);
        let mut integer = true;
        if let Some(end) = int_end {
            i = end;
        }
        if bytes.get(i) == Some(&b'.') {
            integer = false;
            match digits(i + 1) {
                Some(end) => i = end,
                None if int_end.is_some() => i += 1,
                None => return None,
            }
        } else if int_end.is_none() {
            return None;
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let mut k = i + 1;
            if matches!(bytes.get(k), Some(b'+' | b'-')) {
                k += 1;
            }
            i = digits(k)?;
            integer = false;
        }
        let text: String = std::str::from_utf8(&bytes[start..i])
            .ok()?
            .chars()
            .filter(|&c| c != '_')
            .collect();
        Some(Literal {
            value: text.parse().ok()?,
            integer,
            end: i,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Number(f64),
    Name(usize, usize),
    Plus,
    Minus,
    Star,
    Slash,
    Power,
    Bang,
    DoubleBang,
    Open,
    Close,
}

fn tokenize(word: &str) -> Result<Vec<Token>, Skip> {
    let bytes = word.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let (token, len) = match c {
            b'0'..=b'9' | b'.' => {
                let literal = Literal::scan(bytes, i).ok_or(Skip)?;
                // Python rejects leading zeros in integer literals ("007"), and a number
                // glued to a name ("2x", "1j").
                let text = &bytes[i..literal.end];
                if literal.integer
                    && text.len() > 1
                    && text[0] == b'0'
                    && text.iter().any(|&d| (b'1'..=b'9').contains(&d))
                {
                    return Err(Skip);
                }
                if bytes
                    .get(literal.end)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    return Err(Skip);
                }
                (Token::Number(literal.value), literal.end - i)
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map_or(bytes.len(), |p| i + p);
                (Token::Name(i, end), end - i)
            }
            b'+' => (Token::Plus, 1),
            b'-' => (Token::Minus, 1),
            b'*' if bytes.get(i + 1) == Some(&b'*') => (Token::Power, 2),
            b'*' => (Token::Star, 1),
            b'/' if bytes.get(i + 1) == Some(&b'/') => return Err(Skip),
            b'/' => (Token::Slash, 1),
            b'!' if bytes.get(i + 1) == Some(&b'!') => (Token::DoubleBang, 2),
            b'!' => (Token::Bang, 1),
            b'(' => (Token::Open, 1),
            b')' => (Token::Close, 1),
            _ => return Err(Skip),
        };
        tokens.push(token);
        i += len;
    }
    Ok(tokens)
}

/// Evaluates one cleaned word: the value sympy's `parse_expr(word).evalf()` gives for
/// words inside the documented subset, `Err(Skip)` otherwise.
fn evaluate(word: &str) -> Result<f64, Skip> {
    let tokens = tokenize(word)?;
    let mut parser = Parser {
        word,
        tokens: &tokens,
        at: 0,
        depth: 0,
    };
    let value = parser.expr()?;
    if parser.at != tokens.len() {
        return Err(Skip);
    }
    Ok(value)
}

/// Recursive descent with Python's precedence: `expr := term (±term)*`,
/// `term := factor ((*|/) factor)*`, `factor := ±factor | power`,
/// `power := postfix [** factor]`, `postfix := atom (!|!!)*`.
struct Parser<'w> {
    word: &'w str,
    tokens: &'w [Token],
    at: usize,
    /// Current nesting of signs and parentheses, capped at [`MAX_DEPTH`].
    depth: usize,
}

/// Deeper nesting than this is skipped (Python's own parser refuses deep nesting too).
const MAX_DEPTH: usize = 100;

impl Parser<'_> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.at).copied()
    }

    fn eat(&mut self, token: Token) -> bool {
        let hit = self.peek() == Some(token);
        self.at += usize::from(hit);
        hit
    }

    fn expr(&mut self) -> Result<f64, Skip> {
        let mut value = self.term()?;
        loop {
            if self.eat(Token::Plus) {
                value += self.term()?;
            } else if self.eat(Token::Minus) {
                value -= self.term()?;
            } else {
                return Ok(value);
            }
        }
    }

    fn term(&mut self) -> Result<f64, Skip> {
        let mut value = self.factor()?;
        loop {
            if self.eat(Token::Star) {
                value *= self.factor()?;
            } else if self.eat(Token::Slash) {
                value = divide(value, self.factor()?)?;
            } else {
                return Ok(value);
            }
        }
    }

    fn factor(&mut self) -> Result<f64, Skip> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Skip);
        }
        let value = if self.eat(Token::Plus) {
            self.factor()
        } else if self.eat(Token::Minus) {
            self.factor().map(|v| -v)
        } else {
            self.power()
        };
        self.depth -= 1;
        value
    }

    fn power(&mut self) -> Result<f64, Skip> {
        let base = self.postfix()?;
        if !self.eat(Token::Power) {
            return Ok(base);
        }
        let exponent = self.factor()?;
        if base == 0.0 && exponent < 0.0 {
            return Err(Skip); // sympy: zoo
        }
        if base < 0.0 && exponent.fract() != 0.0 {
            return Err(Skip); // sympy: complex
        }
        Ok(base.powf(exponent))
    }

    fn postfix(&mut self) -> Result<f64, Skip> {
        let literal = matches!(self.peek(), Some(Token::Number(_)) | Some(Token::Open));
        let mut value = self.atom()?;
        while let Some(step @ (Token::Bang | Token::DoubleBang)) = self.peek() {
            if !literal {
                return Err(Skip);
            }
            self.at += 1;
            value = factorial(value, if step == Token::Bang { 1 } else { 2 })?;
        }
        Ok(value)
    }

    fn atom(&mut self) -> Result<f64, Skip> {
        match self.peek().ok_or(Skip)? {
            Token::Number(v) => {
                self.at += 1;
                Ok(v)
            }
            Token::Open => {
                self.at += 1;
                let value = self.expr()?;
                if !self.eat(Token::Close) {
                    return Err(Skip);
                }
                Ok(value)
            }
            Token::Name(start, end) => {
                self.at += 1;
                let name = &self.word[start..end];
                if !self.eat(Token::Open) {
                    return match name {
                        "pi" => Ok(std::f64::consts::PI),
                        "E" => Ok(std::f64::consts::E),
                        "oo" => Ok(f64::INFINITY),
                        _ => Err(Skip),
                    };
                }
                let x = self.expr()?;
                if !self.eat(Token::Close) {
                    return Err(Skip);
                }
                apply(name, x)
            }
            _ => Err(Skip),
        }
    }
}

fn divide(a: f64, b: f64) -> Result<f64, Skip> {
    if b == 0.0 && a != 0.0 {
        return Err(Skip); // sympy: zoo; 0/0 is nan and falls through
    }
    Ok(if b == 0.0 { f64::NAN } else { a / b })
}

fn apply(function: &str, x: f64) -> Result<f64, Skip> {
    match function {
        "sqrt" if x >= 0.0 => Ok(x.sqrt()),
        "exp" => Ok(x.exp()),
        "log" | "ln" if x > 0.0 => Ok(x.ln()),
        "sin" => Ok(x.sin()),
        "cos" => Ok(x.cos()),
        "tan" => Ok(x.tan()),
        "abs" | "Abs" => Ok(x.abs()),
        _ => Err(Skip),
    }
}

/// `n!` (`step` 1) or `n!!` (`step` 2) for a non-negative integer `n`.
fn factorial(n: f64, step: u32) -> Result<f64, Skip> {
    if n < 0.0 || n.fract() != 0.0 {
        return Err(Skip);
    }
    let mut product = 1.0f64;
    let mut k = n;
    while k > 1.0 && product.is_finite() {
        product *= k;
        k -= f64::from(step);
    }
    Ok(product)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sn1_unit_cases() {
        // The cases of SN1's tests/test_scoring.py.
        for c in ["0.5", "1/2", "1-0.5", "2*0.25"] {
            assert_eq!(float_diff("0.5", c).unwrap(), 1.0, "{c}");
        }
        for (c, want) in [("1e3", 1.0), ("-1e3", 0.0), ("1e-3", 0.0), ("-1e-3", 0.0)] {
            assert_eq!(float_diff("1000", c).unwrap(), want, "{c}");
        }
        for (c, want) in [
            ("1.0.", 1.0),
            ("1.0", 1.0),
            ("1.0.0", 0.0),
            ("1,", 1.0),
            ("0 1", 1.0),
        ] {
            assert_eq!(float_diff("1.0", c).unwrap(), want, "{c}");
        }
        let cases = [
            ("-20", 0.0),
            ("-23", 0.0),
            ("23", 1.0),
            ("20", 0.8695652173918714),
            ("1000", 0.0),
            ("2*10+3", 1.0),
        ];
        for (c, want) in cases {
            assert_eq!(float_diff("23", c).unwrap(), want, "{c}");
        }
        for (c, want) in [
            ("0", 1.0),
            ("0.001", 0.0),
            ("-0.0", 1.0),
            ("-0.001", 0.0),
            ("0.0001", 0.0),
        ] {
            assert_eq!(float_diff("0", c).unwrap(), want, "{c}");
        }
    }

    #[test]
    fn expressions() {
        for (w, want) in [
            ("5!", 120.0),
            ("5!!", 15.0),
            ("-2**2", -4.0),
            ("2**3**2", 512.0),
            ("2**-1", 0.5),
            ("sqrt(4)", 2.0),
            ("007", 7.0),
            ("..5..", 5.0),
        ] {
            assert_eq!(last_number(w), Some(want), "{w}");
        }
        for w in [
            "1/0",
            "x",
            "2x",
            "$5",
            "**5**",
            "5%",
            "1..5",
            "sqrt(-1)",
            "(-2)**0.5",
            "007+1",
            "1__0",
            "1_",
        ] {
            assert_eq!(last_number(w), None, "{w}");
        }
        assert!(last_number("0/0").unwrap().is_nan());
        assert_eq!(last_number("inf."), Some(f64::INFINITY));
        assert_eq!(last_number(&format!("{}5", "-".repeat(100_000))), None);
        assert_eq!(
            last_number(&format!("{}5{}", "(".repeat(100_000), ")".repeat(100_000))),
            None
        );
    }

    #[test]
    fn bad_reference_is_an_error() {
        assert!(matches!(
            float_diff("five", "5"),
            Err(ScoreError::NotANumber { .. })
        ));
        assert_eq!(float_diff(" 5 ", "5").unwrap(), 1.0);
        assert_eq!(float_diff("5", "0/0").unwrap(), 0.0);
    }
}

//! SN1's `date` reward: the first date found in each text by four patterns, compared
//! by day of year and year.
//!
//! Patterns, tried in this order (all matches of one pattern before the next):
//! 1. `M/D/YYYY` or `D/M/YYYY` (3–4 digit year, `/` or `-`),
//! 2. `M/D/YY` (2 digit year, read literally: `22` is the year 22),
//! 3. `D Month YYYY`,
//! 4. `Month D, YYYY` (the comma and spaces optional together: `Month DYYYY` matches).
//!
//! A match is kept if its month and day form a valid date in the leap year 2000; for
//! the numeric patterns, as pandas parses `"a/b/2000"`, `a/b` is month/day when valid,
//! else day/month. Digits are ASCII only (Python's `\d` also takes other scripts).

use std::sync::LazyLock;

use regex::Regex;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days in each month of the year 2000.
const DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// The difference used when either text has no date.
const NO_DATE: i64 = 500;

static PATTERNS: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    let months = MONTHS.join("|");
    [
        r"\b([0-9]{1,2})[/-]([0-9]{1,2})[/-]([0-9]{3,4})\b".to_owned(),
        r"\b([0-9]{1,2})[-/]([0-9]{1,2})[-/]([0-9]{2})\b".to_owned(),
        format!(r"\b([0-9]{{1,2}}) ({months}) ([0-9]{{3,4}})\b"),
        format!(r"\b({months}) ([0-9]{{1,2}})(,[\s\x1C-\x1F]*)?([0-9]{{3,4}})\b"),
    ]
    .map(|p| Regex::new(&p).expect("date patterns are valid"))
});

/// A date as SN1 compares them: day of the year 2000 (0-based) and the year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayAndYear {
    /// Day of the leap year 2000, 0 for January 1.
    pub day_of_year: u32,
    /// The year as written.
    pub year: i64,
}

/// The first date in `text` by SN1's rules, if any.
pub fn parse_date(text: &str) -> Option<DayAndYear> {
    PATTERNS.iter().enumerate().find_map(|(kind, pattern)| {
        pattern.captures_iter(text).find_map(|caps| {
            let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
            let number = |i: usize| group(i).parse::<u32>().ok();
            let month_name = |i: usize| {
                MONTHS
                    .iter()
                    .position(|m| *m == group(i))
                    .map(|m| m as u32 + 1)
            };
            let (month, day, year) = match kind {
                0 | 1 => {
                    let (a, b) = (number(1)?, number(2)?);
                    if day_of_year(a, b).is_some() {
                        (a, b, group(3))
                    } else {
                        (b, a, group(3))
                    }
                }
                2 => (month_name(2)?, number(1)?, group(3)),
                _ => (month_name(1)?, number(2)?, group(4)),
            };
            Some(DayAndYear {
                day_of_year: day_of_year(month, day)?,
                year: year.parse().ok()?,
            })
        })
    })
}

fn day_of_year(month: u32, day: u32) -> Option<u32> {
    let index = month.checked_sub(1)? as usize;
    let days = *DAYS.get(index)?;
    (1..=days)
        .contains(&day)
        .then(|| DAYS[..index].iter().sum::<u32>() + day - 1)
}

/// SN1's date difference: `|Δday of year 2000| + 365·|Δyear|`, or 500 if either text
/// has no date.
pub fn date_difference(reference: &str, completion: &str) -> i64 {
    match (parse_date(reference), parse_date(completion)) {
        (Some(a), Some(b)) => {
            i64::from(a.day_of_year.abs_diff(b.day_of_year)) + 365 * (a.year - b.year).abs()
        }
        _ => NO_DATE,
    }
}

/// SN1's date reward: `exp(−Δ²/1000)` for the [`date_difference`] Δ, 0 below 0.001 and
/// for an empty completion.
pub fn date_score(reference: &str, completion: &str) -> f64 {
    if completion.is_empty() {
        return 0.0;
    }
    let d = date_difference(reference, completion) as f64;
    let score = (-(d * d / 1000.0)).exp();
    if score < 0.001 { 0.0 } else { score }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sn1_unit_cases() {
        // SN1's tests/test_scoring.py: every format of each date against every format
        // of January 1, 2022.
        let formats = |m: &str, mm: u32, d: u32, y: u32| {
            [
                format!("{m} {d:02}, {y}"),
                format!("{mm:02}/{d:02}/{y}"),
                format!("{d:02} {m} {y}"),
                format!("{mm:02}-{d:02}-{y}"),
            ]
        };
        let refs = formats("January", 1, 1, 2022);
        let cases = [
            (formats("January", 1, 1, 2022), 1.0),
            (formats("January", 1, 3, 2022), 0.9960079893439915),
            (formats("January", 1, 8, 2020), 0.0),
            (formats("February", 2, 1, 2022), 0.38251018447178037),
        ];
        for r in &refs {
            for (completions, want) in &cases {
                for c in completions {
                    assert_eq!(date_score(r, c), *want, "{r} vs {c}");
                }
            }
        }
    }

    #[test]
    fn day_month_swap_and_invalid_dates() {
        assert_eq!(parse_date("13/5/2000"), parse_date("5/13/2000"));
        assert_eq!(
            parse_date("2/30/2000 or 3/1/2001").map(|d| d.year),
            Some(2001)
        );
        assert_eq!(parse_date("no date here"), None);
        assert_eq!(date_difference("1/1/2000", "nothing"), 500);
        assert_eq!(date_score("January 1, 2000", ""), 0.0);
    }
}

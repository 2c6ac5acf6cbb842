//! Python's `difflib.SequenceMatcher(None, a, b).ratio()` over the characters (Unicode
//! scalar values) of two strings, as SN1's `diff` reward calls it: no junk function,
//! `autojunk=True`.
//!
//! The algorithm is difflib's (Ratcliff/Obershelp as refined by Tim Peters): find the
//! longest matching block, recurse on both sides, `ratio = 2·M / (len(a) + len(b))`
//! (1.0 when both are empty). With autojunk, when `b` has at least 200 characters a
//! character occurring more than `len(b)/100 + 1` times in `b` is "popular": it never
//! seeds a match, it only extends one. That heuristic changes the result, so it is
//! reproduced exactly, as is difflib's choice among equally long blocks.

use rustc_hash::FxHashMap;

/// `difflib.SequenceMatcher(None, a, b).ratio()`: `2·M / T` where `M` is the number of
/// matched characters and `T` the total number of characters; 1.0 if both are empty.
pub fn sequence_ratio(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    2.0 * Matcher::new(&a, &b).matched() as f64 / total as f64
}

struct Matcher<'s> {
    a: &'s [char],
    b: &'s [char],
    /// For every non-popular character of `b`, its positions in `b`, ascending.
    b2j: FxHashMap<char, Vec<usize>>,
    /// Longest match ending at (previous `i`, `j`), indexed by `j + 1`; 0 elsewhere.
    prev: Vec<usize>,
    cur: Vec<usize>,
    prev_set: Vec<usize>,
    cur_set: Vec<usize>,
}

impl<'s> Matcher<'s> {
    fn new(a: &'s [char], b: &'s [char]) -> Self {
        let mut b2j: FxHashMap<char, Vec<usize>> = FxHashMap::default();
        for (j, &c) in b.iter().enumerate() {
            b2j.entry(c).or_default().push(j);
        }
        if b.len() >= 200 {
            let limit = b.len() / 100 + 1;
            b2j.retain(|_, positions| positions.len() <= limit);
        }
        Matcher {
            a,
            b,
            b2j,
            prev: vec![0; b.len() + 1],
            cur: vec![0; b.len() + 1],
            prev_set: Vec::new(),
            cur_set: Vec::new(),
        }
    }

    /// Sum of the sizes of `get_matching_blocks()`.
    fn matched(&mut self) -> usize {
        let mut total = 0;
        let mut queue = vec![(0, self.a.len(), 0, self.b.len())];
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                total += k;
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        total
    }

    /// `find_longest_match(alo, ahi, blo, bhi)` without junk: `(i, j, size)`.
    fn longest_match(
        &mut self,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> (usize, usize, usize) {
        let (a, b) = (self.a, self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        for (i, ch) in (alo..ahi).zip(&a[alo..ahi]) {
            if let Some(positions) = self.b2j.get(ch) {
                let start = positions.partition_point(|&j| j < blo);
                for &j in &positions[start..] {
                    if j >= bhi {
                        break;
                    }
                    let k = self.prev[j] + 1;
                    self.cur[j + 1] = k;
                    self.cur_set.push(j + 1);
                    if k > bestsize {
                        besti = i + 1 - k;
                        bestj = j + 1 - k;
                        bestsize = k;
                    }
                }
            }
            for &slot in &self.prev_set {
                self.prev[slot] = 0;
            }
            self.prev_set.clear();
            std::mem::swap(&mut self.prev, &mut self.cur);
            std::mem::swap(&mut self.prev_set, &mut self.cur_set);
        }
        for &slot in &self.prev_set {
            self.prev[slot] = 0;
        }
        self.prev_set.clear();
        // Extend by equal (popular) characters on both ends; with no junk function the
        // second pair of difflib's loops (junk extension) never runs.
        while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi
            && bestj + bestsize < bhi
            && a[besti + bestsize] == b[bestj + bestsize]
        {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difflib_doc_examples() {
        // From the difflib documentation.
        assert_eq!(sequence_ratio("abcd", "bcde"), 0.75);
        assert_eq!(sequence_ratio("", ""), 1.0);
        assert_eq!(sequence_ratio("abc", ""), 0.0);
    }

    #[test]
    fn autojunk_changes_long_inputs() {
        // 'a' is popular in b (> 3 of 200), so only extension can match it.
        let a = "a".repeat(10);
        let b = format!("{}{}", "a".repeat(100), "b".repeat(100));
        let r = sequence_ratio(&a, &b);
        assert_eq!(r, 2.0 * 10.0 / 210.0);
    }
}

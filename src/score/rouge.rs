//! ROUGE-1, ROUGE-2 and ROUGE-L exactly as the Python `rouge` package (1.0.1,
//! `Rouge().get_scores(hyp, ref)`, the one SN1 uses) computes them.
//!
//! The package's rules, reproduced here:
//! - a text is split on `.` into sentences; empty pieces are dropped, every other piece
//!   is split on Python whitespace, and a whitespace-only piece becomes the single
//!   empty word `""` (so `"A. B. "` has the three words `A`, `B`, `""`);
//! - no lower-casing, no stemming, no punctuation stripping other than `.`;
//! - ROUGE-N counts *distinct* n-grams of the concatenated words (n-grams cross
//!   sentence boundaries): `p = overlap / |hyp n-grams|`, `r = overlap / |ref n-grams|`
//!   (0 when the denominator is 0), `f = 2·(p·r)/(p + r + 1e-8)`;
//! - ROUGE-L is the package's summary-level variant: the union, over every pair
//!   (reference sentence, hypothesis sentence), of the *set of words* on one longest
//!   common subsequence (the one the package's back-tracking picks), divided by the
//!   number of distinct words of the reference (`r`) and of the hypothesis (`p`).
//!
//! Where the package raises (a text with no sentence: empty, or only dots) we return
//! all-zero scores; see `docs/scoring.md`.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::text::py_split;

/// F-score, precision and recall of one ROUGE variant, named as the package names them
/// (`p` is relative to the hypothesis, `r` to the reference).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Prf {
    /// F1 score, `2·(p·r)/(p + r + 1e-8)`.
    pub f: f64,
    /// Precision: overlap over the hypothesis' count.
    pub p: f64,
    /// Recall: overlap over the reference's count.
    pub r: f64,
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one (hypothesis, reference) pair.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge_1: Prf,
    /// Bigram overlap.
    pub rouge_2: Prf,
    /// Summary-level longest common subsequence.
    pub rouge_l: Prf,
}

/// Which ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RougeVariant {
    /// ROUGE-1 (unigrams).
    One,
    /// ROUGE-2 (bigrams).
    Two,
    /// ROUGE-L (longest common subsequence, summary level).
    L,
}

impl RougeVariant {
    /// The package's key for this variant: `rouge-1`, `rouge-2` or `rouge-l`.
    pub fn key(self) -> &'static str {
        match self {
            RougeVariant::One => "rouge-1",
            RougeVariant::Two => "rouge-2",
            RougeVariant::L => "rouge-l",
        }
    }
}

/// All three ROUGE variants of `hypothesis` against `reference`, in the argument
/// order of the package's `get_scores(hyps, refs)`. All zero if either text has no
/// sentence (the package raises `ValueError` there).
pub fn rouge(hypothesis: &str, reference: &str) -> RougeScores {
    match Tokens::pair(hypothesis, reference) {
        Some(t) => RougeScores {
            rouge_1: t.rouge_n(1),
            rouge_2: t.rouge_n(2),
            rouge_l: t.rouge_l(),
        },
        None => RougeScores::default(),
    }
}

/// One ROUGE variant of `hypothesis` against `reference` (cheaper than [`rouge`] when
/// only one is needed). All zero if either text has no sentence.
pub fn rouge_variant(variant: RougeVariant, hypothesis: &str, reference: &str) -> Prf {
    match Tokens::pair(hypothesis, reference) {
        Some(t) => match variant {
            RougeVariant::One => t.rouge_n(1),
            RougeVariant::Two => t.rouge_n(2),
            RougeVariant::L => t.rouge_l(),
        },
        None => Prf::default(),
    }
}

/// Both texts as sentences of interned word ids (ids are shared between the texts).
struct Tokens {
    hyp: Vec<Vec<u32>>,
    reference: Vec<Vec<u32>>,
    vocabulary: usize,
}

impl Tokens {
    /// `None` when either text has no sentence.
    fn pair(hypothesis: &str, reference: &str) -> Option<Tokens> {
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        let hyp = sentences(hypothesis, &mut ids);
        let reference = sentences(reference, &mut ids);
        if hyp.is_empty() || reference.is_empty() {
            return None;
        }
        Some(Tokens {
            hyp,
            reference,
            vocabulary: ids.len(),
        })
    }

    fn rouge_n(&self, n: usize) -> Prf {
        let hyp: Vec<u32> = self.hyp.concat();
        let reference: Vec<u32> = self.reference.concat();
        let hyp_grams: FxHashSet<&[u32]> = hyp.windows(n).collect();
        let ref_grams: FxHashSet<&[u32]> = reference.windows(n).collect();
        let overlap = hyp_grams.intersection(&ref_grams).count();
        let p = ratio(overlap, hyp_grams.len());
        let r = ratio(overlap, ref_grams.len());
        Prf { f: f1(p, r), p, r }
    }

    fn rouge_l(&self) -> Prf {
        let distinct = |sentences: &[Vec<u32>]| {
            let mut seen = vec![false; self.vocabulary];
            sentences
                .iter()
                .flatten()
                .filter(|&&w| !std::mem::replace(&mut seen[w as usize], true))
                .count()
        };
        let m = distinct(&self.reference);
        let n = distinct(&self.hyp);
        let mut in_union = vec![false; self.vocabulary];
        let mut llcs = 0usize;
        let mut scratch = LcsScratch::default();
        for x in &self.reference {
            for y in &self.hyp {
                lcs_words(x, y, &mut scratch, |w| {
                    if !std::mem::replace(&mut in_union[w as usize], true) {
                        llcs += 1;
                    }
                });
            }
        }
        let r = llcs as f64 / m as f64;
        let p = llcs as f64 / n as f64;
        Prf { f: f1(p, r), p, r }
    }
}

/// Splits `text` into the package's sentences of words, interning each word.
fn sentences<'a>(text: &'a str, ids: &mut FxHashMap<&'a str, u32>) -> Vec<Vec<u32>> {
    let mut intern = |w: &'a str| {
        let next = ids.len() as u32;
        *ids.entry(w).or_insert(next)
    };
    text.split('.')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let words: Vec<u32> = py_split(piece).map(&mut intern).collect();
            if words.is_empty() {
                vec![intern("")]
            } else {
                words
            }
        })
        .collect()
}

/// Calls `emit` with each word on the longest common subsequence of `x` and `y` that
/// the package's `_recon_lcs(x, y)` reconstructs (its tie-breaking included).
///
/// The DP keeps two rows of lengths and one bit per cell — whether the back-tracking
/// steps up (`table[i-1][j] > table[i][j-1]`) — so memory is `|x|·|y|/8` bytes.
fn lcs_words(x: &[u32], y: &[u32], scratch: &mut LcsScratch, mut emit: impl FnMut(u32)) {
    let width = y.len() + 1;
    let LcsScratch { prev, cur, up } = scratch;
    prev.clear();
    prev.resize(width, 0);
    cur.clear();
    cur.resize(width, 0);
    up.clear();
    up.resize(((x.len() + 1) * width).div_ceil(64), 0);
    for i in 1..=x.len() {
        for j in 1..=y.len() {
            cur[j] = if x[i - 1] == y[j - 1] {
                prev[j - 1] + 1
            } else {
                if prev[j] > cur[j - 1] {
                    let cell = i * width + j;
                    up[cell / 64] |= 1 << (cell % 64);
                }
                prev[j].max(cur[j - 1])
            };
        }
        std::mem::swap(prev, cur);
    }
    let (mut i, mut j) = (x.len(), y.len());
    while i > 0 && j > 0 {
        let cell = i * width + j;
        if x[i - 1] == y[j - 1] {
            emit(x[i - 1]);
            i -= 1;
            j -= 1;
        } else if up[cell / 64] & (1 << (cell % 64)) != 0 {
            i -= 1;
        } else {
            j -= 1;
        }
    }
}

/// Buffers reused across the sentence pairs of one ROUGE-L computation.
#[derive(Default)]
struct LcsScratch {
    prev: Vec<u32>,
    cur: Vec<u32>,
    up: Vec<u64>,
}

fn ratio(overlap: usize, count: usize) -> f64 {
    if count == 0 {
        0.0
    } else {
        overlap as f64 / count as f64
    }
}

fn f1(p: f64, r: f64) -> f64 {
    2.0 * ((p * r) / (p + r + 1e-8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_one() {
        let s = rouge("the cat sat on the mat", "the cat sat on the mat");
        assert_eq!(s.rouge_1.p, 1.0);
        assert_eq!(s.rouge_1.r, 1.0);
        assert!((s.rouge_l.f - 1.0).abs() < 1e-7);
    }

    #[test]
    fn empty_or_dots_only_scores_zero() {
        assert_eq!(rouge("", "a b"), RougeScores::default());
        assert_eq!(rouge("a b", "..."), RougeScores::default());
    }

    #[test]
    fn whitespace_piece_is_the_empty_word() {
        // "x. " has the words "x" and "" ; "x" alone has one word.
        let s = rouge("x. ", "x");
        assert_eq!(s.rouge_1.p, 0.5);
        assert_eq!(s.rouge_1.r, 1.0);
    }
}

//! Verified inference (SN1 v2's `InferenceTask` and its logits reward): a miner's
//! generated tokens and their top-k log-probabilities, checked at sampled positions
//! (always the first and the end) against the validator's own regeneration of the same
//! request (model, seed, sampling parameters) on the reproducible engine.
//!
//! SN1 v2's thresholds and scales: mean logprob similarity ≥ 0.83, mean "contains" ≥
//! 0.90, up to 51 positions, a tenth of the reward below 10 tokens, a timing factor in
//! [0.3, 1] against the fastest verified answer. Where this departs (a failed check is 0,
//! not a negative penalty; "contains" is the regenerated token itself), see
//! `docs/scoring.md`.

use std::collections::HashMap;

use rand::Rng;
use rand::seq::index::sample;

/// Alternatives per position the task asks for; an answer position with another count
/// has similarity 0 (SN1's `TOP_LOGPROBS`).
pub const TOP_LOGPROBS: usize = 10;
/// Below this many tokens the reward is scaled by [`SHORT_ANSWER_SCALE`].
pub const MIN_VERIFY_TOKENS: usize = 10;
/// Most positions checked per answer (the first and the end included).
pub const MAX_VERIFY_TOKENS: usize = 51;
/// Mean logprob similarity an answer needs.
pub const THRESHOLD_SIMILARITY: f64 = 0.83;
/// Mean share of checked positions whose token is the regenerated one.
pub const THRESHOLD_CONTAINS: f64 = 0.90;
/// The rescaled similarity is raised to this power.
pub const SIMILARITY_EXPONENT: f64 = 2.0;
/// Reward scale of an answer shorter than [`MIN_VERIFY_TOKENS`].
pub const SHORT_ANSWER_SCALE: f64 = 0.1;
/// Lowest timing factor.
pub const MIN_TIMING_SCALE: f64 = 0.3;

/// One generated token as the verification reads it: its text and the most likely
/// tokens at its position with their log-probabilities.
pub trait SampledToken {
    /// The token's text.
    fn token(&self) -> &str;
    /// The position's top alternatives, `(text, logprob)`.
    fn top(&self) -> &[(String, f32)];
}

/// One miner's answer to verify.
#[derive(Debug, Clone, Copy)]
pub struct InferenceAnswer<'a, T> {
    /// The completion text as received.
    pub text: &'a str,
    /// Its tokens with their top alternatives, as received.
    pub tokens: &'a [T],
    /// Seconds from sending to the answer's end.
    pub latency_s: f64,
}

/// The validator's regeneration of the request.
#[derive(Debug, Clone, Copy)]
pub struct Regeneration<'a, T> {
    /// The generated text.
    pub text: &'a str,
    /// Its tokens with their top alternatives.
    pub tokens: &'a [T],
    /// The request's token limit.
    pub max_tokens: usize,
}

/// The outcome for one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The reward in [0, 1] (0 when a check failed).
    pub reward: f64,
    /// Mean logprob similarity over the checked positions (0 when not reached).
    pub similarity: f64,
    /// Share of checked positions whose token is the regenerated one.
    pub contains: f64,
    /// Timing factor (1 for the fastest verified answer; 0 when not verified).
    pub timing: f64,
    /// Why the answer failed, if it did.
    pub failure: Option<String>,
}

impl Verdict {
    fn failed(reason: impl Into<String>, similarity: f64, contains: f64) -> Self {
        Self {
            reward: 0.0,
            similarity,
            contains,
            timing: 0.0,
            failure: Some(reason.into()),
        }
    }
}

/// The positions SN1 checks in an answer of `len` tokens: the first, the end (`len`,
/// where the answer stopped) and `min(len, 51) − 2` distinct positions between, sorted.
pub fn verification_positions(len: usize, rng: &mut impl Rng) -> Vec<usize> {
    let inner = len.saturating_sub(2);
    let wanted = len.clamp(1, MAX_VERIFY_TOKENS).saturating_sub(2).min(inner);
    let mut positions: Vec<usize> = sample(rng, inner, wanted)
        .into_iter()
        .map(|i| i + 1)
        .collect();
    positions.push(0);
    positions.push(len);
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// Similarity of an answer position's top logprobs to the regeneration's: the cosine
/// of the logprobs of the tokens both lists hold, times the share of the regeneration's
/// list they cover, in [0, 1]; 0 when the answer's list does not hold exactly
/// [`TOP_LOGPROBS`] entries (SN1's rule).
pub fn logprob_similarity(answer: &[(String, f32)], regenerated: &[(String, f32)]) -> f64 {
    if regenerated.is_empty() || answer.len() != TOP_LOGPROBS {
        return 0.0;
    }
    let answer: HashMap<&str, f32> = answer.iter().map(|(t, l)| (t.as_str(), *l)).collect();
    let truth: HashMap<&str, f32> = regenerated.iter().map(|(t, l)| (t.as_str(), *l)).collect();
    let (mut dot, mut na, mut nb, mut shared) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for (token, &b) in &truth {
        if let Some(&a) = answer.get(token) {
            let (a, b) = (f64::from(a), f64::from(b));
            if !a.is_finite() || !b.is_finite() {
                return 0.0;
            }
            dot += a * b;
            na += a * a;
            nb += b * b;
            shared += 1;
        }
    }
    if shared == 0 {
        return 0.0;
    }
    let cosine = dot / (na.sqrt() * nb.sqrt()).max(1e-8);
    let score = cosine * shared as f64 / truth.len() as f64;
    if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Scales `value` from [`min`, 1] to [0, 1], clamped.
fn rescale(value: f64, min: f64) -> f64 {
    ((value - min) / (1.0 - min)).clamp(0.0, 1.0)
}

/// Verifies one answer against the regeneration at positions drawn from `rng`; the
/// timing factor is left at 1 (see [`verify_inference`]).
pub fn verify_answer<T: SampledToken>(
    regeneration: &Regeneration<'_, T>,
    answer: &InferenceAnswer<'_, T>,
    rng: &mut impl Rng,
) -> Verdict {
    let len = answer.tokens.len();
    let max_tokens = regeneration.max_tokens;
    if len == 0 {
        return Verdict::failed("no tokens with logprobs", 0.0, 0.0);
    }
    if len <= 1 && max_tokens > 1 {
        return Verdict::failed("a single token", 0.0, 0.0);
    }
    if len > max_tokens {
        return Verdict::failed(
            format!("{len} tokens, more than max_tokens {max_tokens}"),
            0.0,
            0.0,
        );
    }
    let joined: String = answer.tokens.iter().map(|t| t.token()).collect();
    if answer.text != joined && answer.text != regeneration.text {
        return Verdict::failed("the text is not its tokens", 0.0, 0.0);
    }
    let (mut similarity, mut contains, mut checked) = (0.0, 0.0, 0usize);
    for idx in verification_positions(len, rng) {
        if idx == len {
            // The end: the regeneration must stop here too, unless the limit cut both.
            if len < max_tokens && regeneration.tokens.len() != len {
                return Verdict::failed("partial completion", 0.0, 0.0);
            }
            continue;
        }
        let mine = &answer.tokens[idx];
        checked += 1;
        if let Some(truth) = regeneration.tokens.get(idx) {
            similarity += logprob_similarity(mine.top(), truth.top());
            contains += f64::from(u8::from(mine.token() == truth.token()));
        }
    }
    let n = checked.max(1) as f64;
    let (similarity, contains) = (similarity / n, contains / n);
    if similarity < THRESHOLD_SIMILARITY {
        return Verdict::failed(
            format!("logprob similarity {similarity:.3} below {THRESHOLD_SIMILARITY}"),
            similarity,
            contains,
        );
    }
    if contains < THRESHOLD_CONTAINS {
        return Verdict::failed(
            format!("tokens matching {contains:.3} below {THRESHOLD_CONTAINS}"),
            similarity,
            contains,
        );
    }
    let scale = if len < MIN_VERIFY_TOKENS {
        SHORT_ANSWER_SCALE
    } else {
        1.0
    };
    let reward = rescale(similarity, THRESHOLD_SIMILARITY).powf(SIMILARITY_EXPONENT)
        * rescale(contains, THRESHOLD_CONTAINS)
        * scale;
    Verdict {
        reward,
        similarity,
        contains,
        timing: 1.0,
        failure: None,
    }
}

/// Verifies every answer ([`verify_answer`], positions drawn from `rng` answer by
/// answer), then scales each verified reward by its timing factor: the fastest verified
/// answer's seconds per token over its own, clamped to [0.3, 1].
pub fn verify_inference<T: SampledToken>(
    regeneration: &Regeneration<'_, T>,
    answers: &[InferenceAnswer<'_, T>],
    rng: &mut impl Rng,
) -> Vec<Verdict> {
    let mut verdicts: Vec<Verdict> = answers
        .iter()
        .map(|a| verify_answer(regeneration, a, rng))
        .collect();
    let per_token = |a: &InferenceAnswer<'_, T>| a.latency_s / a.tokens.len().max(1) as f64;
    let fastest = answers
        .iter()
        .zip(&verdicts)
        .filter(|(a, v)| v.failure.is_none() && per_token(a) > 0.0 && per_token(a).is_finite())
        .map(|(a, _)| per_token(a))
        .fold(f64::INFINITY, f64::min);
    for (answer, verdict) in answers.iter().zip(&mut verdicts) {
        if verdict.failure.is_some() {
            continue;
        }
        let own = per_token(answer);
        verdict.timing = if own > 0.0 && own.is_finite() && fastest.is_finite() {
            (fastest / own).clamp(MIN_TIMING_SCALE, 1.0)
        } else {
            MIN_TIMING_SCALE
        };
        verdict.reward *= verdict.timing;
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[derive(Debug, Clone)]
    struct Tok(String, Vec<(String, f32)>);

    impl SampledToken for Tok {
        fn token(&self) -> &str {
            &self.0
        }
        fn top(&self) -> &[(String, f32)] {
            &self.1
        }
    }

    /// A generation of `n` tokens `t0 t1 …`, each position with 10 alternatives.
    fn generation(n: usize) -> Vec<Tok> {
        (0..n)
            .map(|i| {
                let top = (0..TOP_LOGPROBS)
                    .map(|j| {
                        (
                            format!(" t{}", i + j),
                            -0.1 - (j as f32) * 0.7 - (i % 3) as f32,
                        )
                    })
                    .collect();
                Tok(format!(" t{i}"), top)
            })
            .collect()
    }

    fn text(tokens: &[Tok]) -> String {
        tokens.iter().map(|t| t.0.as_str()).collect()
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    fn check(reference: &[Tok], answers: &[(Vec<Tok>, f64)], max_tokens: usize) -> Vec<Verdict> {
        let texts: Vec<String> = answers.iter().map(|(t, _)| text(t)).collect();
        let reference_text = text(reference);
        let regeneration = Regeneration {
            text: &reference_text,
            tokens: reference,
            max_tokens,
        };
        let answers: Vec<_> = answers
            .iter()
            .zip(&texts)
            .map(|((tokens, latency_s), text)| InferenceAnswer {
                text,
                tokens,
                latency_s: *latency_s,
            })
            .collect();
        verify_inference(&regeneration, &answers, &mut rng())
    }

    #[test]
    fn positions_include_the_first_and_the_end_and_cap_at_51() {
        let mut r = rng();
        assert_eq!(verification_positions(1, &mut r), vec![0, 1]);
        // SN1 samples between the first and the last token, then adds the end.
        assert_eq!(verification_positions(5, &mut r), vec![0, 1, 2, 3, 5]);
        let long = verification_positions(300, &mut r);
        assert_eq!(long.len(), MAX_VERIFY_TOKENS);
        assert_eq!((long[0], *long.last().unwrap()), (0, 300));
        assert!(long.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(verification_positions(0, &mut r), vec![0]);
    }

    #[test]
    fn similarity_is_one_for_equal_lists_and_drops_with_overlap_and_count() {
        let g = generation(3);
        assert!((logprob_similarity(&g[1].1, &g[1].1) - 1.0).abs() < 1e-9);
        // Shifted by one position: 9 of 10 shared, with other values.
        let shifted = logprob_similarity(&g[1].1, &g[0].1);
        assert!(shifted < 0.95, "{shifted}");
        assert_eq!(logprob_similarity(&g[1].1[..5], &g[1].1), 0.0);
        assert_eq!(logprob_similarity(&g[1].1, &[]), 0.0);
        let mut nan = g[1].1.clone();
        nan[0].1 = f32::NAN;
        assert_eq!(logprob_similarity(&nan, &g[1].1), 0.0);
    }

    #[test]
    fn an_honest_answer_scores_one_and_a_slower_one_less() {
        let reference = generation(40);
        let v = check(
            &reference,
            &[(reference.clone(), 2.0), (reference.clone(), 8.0)],
            64,
        );
        assert!((v[0].reward - 1.0).abs() < 1e-9, "{v:?}");
        assert!(
            (v[1].reward - 0.3).abs() < 1e-9,
            "4× slower per token: {v:?}"
        );
        assert!((v[1].timing - MIN_TIMING_SCALE).abs() < 1e-12);
    }

    #[test]
    fn edited_tokens_other_sampling_and_cut_answers_score_zero() {
        let reference = generation(40);
        let mut edited = reference.clone();
        for i in (5..40).step_by(3) {
            edited[i].0 = " changed".into();
        }
        let other: Vec<Tok> = generation(41)[1..].to_vec();
        let cut = reference[..20].to_vec();
        let long = generation(70);
        let v = check(
            &reference,
            &[
                (edited, 1.0),
                (other, 1.0),
                (cut, 1.0),
                (long, 1.0),
                (Vec::new(), 1.0),
                (reference[..1].to_vec(), 1.0),
            ],
            64,
        );
        for (i, verdict) in v.iter().enumerate() {
            assert_eq!(verdict.reward, 0.0, "answer {i}: {verdict:?}");
            assert!(verdict.failure.is_some());
        }
        assert!(
            v[0].failure.as_ref().unwrap().contains("tokens matching"),
            "{:?}",
            v[0]
        );
        assert!(
            v[2].failure.as_ref().unwrap().contains("partial"),
            "{:?}",
            v[2]
        );
        assert!(
            v[3].failure.as_ref().unwrap().contains("max_tokens"),
            "{:?}",
            v[3]
        );
    }

    #[test]
    fn short_answers_get_a_tenth_and_the_limit_may_cut_both() {
        let reference = generation(6);
        let v = check(&reference, &[(reference.clone(), 1.0)], 64);
        assert!((v[0].reward - SHORT_ANSWER_SCALE).abs() < 1e-9, "{v:?}");
        // Both stopped by max_tokens: the end is not a partial completion.
        let reference = generation(30);
        let v = check(&reference, &[(reference.clone(), 1.0)], 30);
        assert!((v[0].reward - 1.0).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn text_that_is_neither_its_tokens_nor_the_regeneration_fails() {
        let reference = generation(20);
        let reference_text = text(&reference);
        let regeneration = Regeneration {
            text: &reference_text,
            tokens: &reference,
            max_tokens: 64,
        };
        let answer = InferenceAnswer {
            text: "something else",
            tokens: &reference,
            latency_s: 1.0,
        };
        let v = verify_inference(&regeneration, &[answer], &mut rng());
        assert_eq!(v[0].reward, 0.0);
        let bad_latency = InferenceAnswer {
            latency_s: f64::NAN,
            ..InferenceAnswer {
                text: &reference_text,
                tokens: &reference,
                latency_s: 0.0,
            }
        };
        let v = verify_inference(&regeneration, &[bad_latency], &mut rng());
        assert!((v[0].reward - MIN_TIMING_SCALE).abs() < 1e-9, "{v:?}");
    }
}

//! Softmax attention of one query against rows of keys and values,
//! `softmax(q · Kᵀ / √d) · V`, with its two inner loops (the scores, the weighted sum of
//! the values) compiled for AVX-512 or AVX2 where the CPU has them: the LLM's decoding
//! and prompt attention (`llm/cpu_attention.rs`), and, over keys laid out transposed
//! ([`attend_each`]), the embedder's per-sentence one (`embed/bert.rs`).

use crate::vector_math::exp_nonpositive;

/// `out = softmax(query · keysᵀ / √d) · values`, `keys` and `values` rows of
/// `query.len()` values (as many of each), `out` as long as `query`; `scores` is room
/// for the weights, reused from call to call.
pub(crate) fn attend(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match simd::loops_for(query.len()) {
        // SAFETY (both): the CPU has the instructions `loops_for` checked, and rows are
        // whole vectors of them.
        Some(simd::Loops::Avx512) => {
            return unsafe { simd::attend_avx512(query, keys, values, scores, out) };
        }
        Some(simd::Loops::Avx2) => {
            return unsafe { simd::attend_avx2(query, keys, values, scores, out) };
        }
        None => {}
    }
    attend_with(query, keys, values, scores, out, plain_scores, weighted_sum);
}

/// What the rows of [`attend_each`]'s transposed keys are a multiple of: two vectors
/// of the widest lanes (AVX-512's 16), one pass of its score loop.
pub(crate) const KEYS_T_MULTIPLE: usize = 32;

/// [`attend`] for each query of `queries` (rows of `d` values) against the same keys and
/// values, the keys transposed: `keys_t` is `d` rows of `padded` values (the key count
/// rounded up to a multiple of [`KEYS_T_MULTIPLE`]), so that the scores of a
/// vector of keys are FMAs of one query value each, with no sum across lanes. `out` is
/// a row of `d` per query.
pub(crate) fn attend_each(
    d: usize,
    queries: &[f32],
    keys_t: &[f32],
    values: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    debug_assert!(
        keys_t.len() / d >= values.len() / d && (keys_t.len() / d).is_multiple_of(KEYS_T_MULTIPLE)
    );
    #[cfg(target_arch = "x86_64")]
    match simd::loops_for(d) {
        // SAFETY (both): the CPU has the instructions `loops_for` checked; rows are whole
        // vectors of them, and so are the transposed keys' rows.
        Some(simd::Loops::Avx512) => {
            return unsafe { simd::attend_each_avx512(d, queries, keys_t, values, scores, out) };
        }
        Some(simd::Loops::Avx2) => {
            return unsafe { simd::attend_each_avx2(d, queries, keys_t, values, scores, out) };
        }
        None => {}
    }
    attend_each_with(
        d,
        queries,
        keys_t,
        values,
        scores,
        out,
        plain_transposed_scores,
        weighted_sum,
    );
}

/// [`attend_each`] with the two inner loops given, as [`attend_with`] takes them.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_each_with(
    d: usize,
    queries: &[f32],
    keys_t: &[f32],
    values: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
    dot_scores: impl Fn(&[f32], &[f32], &mut [f32]),
    weighted_sum: impl Fn(&[f32], &[f32], &mut [f32]),
) {
    for (query, out) in queries.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        attend_with(
            query,
            keys_t,
            values,
            scores,
            out,
            &dot_scores,
            &weighted_sum,
        );
    }
}

/// [`attend`] with the two inner loops given: `dot_scores(query, keys, scores)`, the
/// scaled dot product of the query with each key, and `weighted_sum(weights, rows, out)`.
#[inline(always)]
fn attend_with(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
    dot_scores: impl Fn(&[f32], &[f32], &mut [f32]),
    weighted_sum: impl Fn(&[f32], &[f32], &mut [f32]),
) {
    scores.clear();
    scores.resize(values.len() / query.len(), 0.0);
    dot_scores(query, keys, scores);
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    for score in scores.iter_mut() {
        *score = exp_nonpositive(*score - max);
    }
    let sum = scores.iter().sum::<f32>();
    for score in scores.iter_mut() {
        *score /= sum;
    }
    weighted_sum(scores, values, out);
}

/// The scale of a head's dot products: 1/√head_dim.
fn score_scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

/// `scores[t] = query · keys[t] / √d`, with the plain [`dot`].
fn plain_scores(query: &[f32], keys: &[f32], scores: &mut [f32]) {
    let scale = score_scale(query.len());
    for (score, key) in scores.iter_mut().zip(keys.chunks_exact(query.len())) {
        *score = dot(query, key) * scale;
    }
}

/// `scores[t] = query · key t / √d` for keys transposed (see [`attend_each`]).
fn plain_transposed_scores(query: &[f32], keys_t: &[f32], scores: &mut [f32]) {
    let scale = score_scale(query.len());
    let padded = keys_t.len() / query.len();
    for (t, score) in scores.iter_mut().enumerate() {
        let dot: f32 = query
            .iter()
            .enumerate()
            .map(|(i, q)| q * keys_t[i * padded + t])
            .sum();
        *score = dot * scale;
    }
}

/// `a · b` of two equal-length vectors, in 16 lanes (which the compiler vectorises)
/// summed in halving steps.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let ((a16, a_rest), (b16, b_rest)) = (a.as_chunks::<16>(), b.as_chunks::<16>());
    let mut lanes = [0f32; 16];
    for (x, y) in a16.iter().zip(b16) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    for width in [8, 4, 2, 1] {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0] + a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>()
}

/// `out = Σ_t weights[t] · rows[t]` over the rows of `rows` (each `out.len()` values).
fn weighted_sum(weights: &[f32], rows: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (w, row) in weights.iter().zip(rows.chunks_exact(out.len())) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += w * v;
        }
    }
}

/// The inner loops with explicit FMAs on AVX-512 or AVX2 vectors, for heads of a
/// multiple of 16 or 8 values (the plain loops compile for baseline x86-64: SSE2, no
/// FMA).
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// One vector of f32 lanes and the operations the loops need.
    ///
    /// Each method is an intrinsic of the set its type names: call them only where the
    /// CPU has it (from a function compiled for it, where they inline).
    pub(super) trait Lanes {
        type Vector: Copy;
        const LANES: usize;
        unsafe fn zero() -> Self::Vector;
        unsafe fn splat(x: f32) -> Self::Vector;
        unsafe fn load(p: *const f32) -> Self::Vector;
        unsafe fn store(p: *mut f32, v: Self::Vector);
        /// `a + b`.
        unsafe fn add(a: Self::Vector, b: Self::Vector) -> Self::Vector;
        /// `a · b + c`, fused.
        unsafe fn fmadd(a: Self::Vector, b: Self::Vector, c: Self::Vector) -> Self::Vector;
        /// The sums of the lanes of each of four vectors.
        unsafe fn sum4(v: [Self::Vector; 4]) -> [f32; 4];
    }

    /// 16 lanes of AVX-512 F.
    pub(super) struct Avx512;

    impl Lanes for Avx512 {
        type Vector = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn sum4(v: [__m512; 4]) -> [f32; 4] {
            // Each vector's halves added, then as AVX2's.
            unsafe {
                Avx2::sum4(v.map(|v| {
                    _mm256_add_ps(
                        _mm512_castps512_ps256(v),
                        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
                    )
                }))
            }
        }
    }

    /// 8 lanes of AVX2 with FMA.
    pub(super) struct Avx2;

    /// The vector loops a head of `d` values runs on.
    pub(super) enum Loops {
        /// AVX-512 F: `d` a multiple of 16.
        Avx512,
        /// AVX2 and FMA: `d` a multiple of 8.
        Avx2,
    }

    /// The widest vector loops this CPU runs for heads of `d` values; `None` for the
    /// plain loops.
    pub(super) fn loops_for(d: usize) -> Option<Loops> {
        if d.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
            Some(Loops::Avx512)
        } else if d.is_multiple_of(8)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Some(Loops::Avx2)
        } else {
            None
        }
    }

    impl Lanes for Avx2 {
        type Vector = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn sum4(v: [__m256; 4]) -> [f32; 4] {
            // Neighbouring lanes added pairwise twice (four vectors at once), then the
            // two 128-bit halves: per vector ((x0+x1)+(x2+x3)) + ((x4+x5)+(x6+x7)).
            unsafe {
                let pairs = [_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3])];
                let quads = _mm256_hadd_ps(pairs[0], pairs[1]);
                let sums = _mm_add_ps(
                    _mm256_castps256_ps128(quads),
                    _mm256_extractf128_ps::<1>(quads),
                );
                let mut out = [0f32; 4];
                _mm_storeu_ps(out.as_mut_ptr(), sums);
                out
            }
        }
    }

    /// Defines a function that is [`super::attend`] compiled for `$features` over the
    /// lanes of `$lanes`, the softmax included. The closures inherit the function's
    /// instruction sets (closures defined elsewhere would not, and every intrinsic in
    /// them would be a call).
    macro_rules! attend_compiled_for {
        ($(#[$doc:meta])* $name:ident, $features:literal, $lanes:ty) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                query: &[f32],
                keys: &[f32],
                values: &[f32],
                scores: &mut Vec<f32>,
                out: &mut [f32],
            ) {
                super::attend_with(
                    query,
                    keys,
                    values,
                    scores,
                    out,
                    // SAFETY (both): as this function's.
                    |q, keys, scores| unsafe { self::scores::<$lanes>(q, keys, scores) },
                    |weights, rows, out| unsafe { weighted_sum::<$lanes>(weights, rows, out) },
                );
            }
        };
    }

    attend_compiled_for!(
        /// [`super::attend`] with AVX-512.
        ///
        /// # Safety
        /// AVX-512 F available; `query.len()` a multiple of 16.
        attend_avx512,
        "avx512f",
        Avx512
    );

    attend_compiled_for!(
        /// [`super::attend`] with AVX2 and FMA.
        ///
        /// # Safety
        /// AVX2 and FMA available; `query.len()` a multiple of 8.
        attend_avx2,
        "avx2,fma",
        Avx2
    );

    /// Defines a function that is [`super::attend_each`] compiled for `$features` over
    /// the lanes of `$lanes` (as [`attend_compiled_for`]).
    macro_rules! attend_each_compiled_for {
        ($(#[$doc:meta])* $name:ident, $features:literal, $lanes:ty) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                d: usize,
                queries: &[f32],
                keys_t: &[f32],
                values: &[f32],
                scores: &mut Vec<f32>,
                out: &mut [f32],
            ) {
                super::attend_each_with(
                    d,
                    queries,
                    keys_t,
                    values,
                    scores,
                    out,
                    // SAFETY (both): as this function's.
                    |q, keys_t, scores| unsafe {
                        self::transposed_scores::<$lanes>(q, keys_t, scores)
                    },
                    |weights, rows, out| unsafe { weighted_sum::<$lanes>(weights, rows, out) },
                );
            }
        };
    }

    attend_each_compiled_for!(
        /// [`super::attend_each`] with AVX-512.
        ///
        /// # Safety
        /// AVX-512 F available; `d` a multiple of 16, the transposed keys as
        /// [`super::attend_each`] describes.
        attend_each_avx512,
        "avx512f",
        Avx512
    );

    attend_each_compiled_for!(
        /// [`super::attend_each`] with AVX2 and FMA.
        ///
        /// # Safety
        /// AVX2 and FMA available; `d` a multiple of 8, the transposed keys as
        /// [`super::attend_each`] describes.
        attend_each_avx2,
        "avx2,fma",
        Avx2
    );

    /// `out[t] = query · key t / √d` for keys transposed (`query.len()` rows, an even
    /// number, of `padded` values, a multiple of [`super::KEYS_T_MULTIPLE`]): two vectors
    /// of keys at a time, each summed in two chains of FMAs (the query's even and odd
    /// values), so that four run at once.
    #[inline(always)]
    unsafe fn transposed_scores<L: Lanes>(query: &[f32], keys_t: &[f32], out: &mut [f32]) {
        let (padded, step) = (keys_t.len() / query.len(), 2 * L::LANES);
        let scale = super::score_scale(query.len());
        for first in (0..out.len()).step_by(step) {
            let mut acc = [[unsafe { L::zero() }; 2]; 2];
            for (i, q) in query.chunks_exact(2).enumerate() {
                let q = unsafe { [L::splat(q[0]), L::splat(q[1])] };
                let at = 2 * i * padded + first;
                let rows = [
                    &keys_t[at..at + step],
                    &keys_t[at + padded..at + padded + step],
                ];
                for (v, acc) in acc.iter_mut().enumerate() {
                    for ((acc, q), row) in acc.iter_mut().zip(q).zip(rows) {
                        // SAFETY: a whole vector within the row's slice.
                        let keys = unsafe { L::load(row.as_ptr().add(v * L::LANES)) };
                        *acc = unsafe { L::fmadd(q, keys, *acc) };
                    }
                }
            }
            let mut sums = [0f32; super::KEYS_T_MULTIPLE];
            for (v, [even, odd]) in acc.into_iter().enumerate() {
                // SAFETY: two vectors of at most 16 lanes.
                unsafe { L::store(sums.as_mut_ptr().add(v * L::LANES), L::add(even, odd)) };
            }
            for (score, sum) in out[first..].iter_mut().zip(sums.iter().take(step)) {
                *score = sum * scale;
            }
        }
    }

    /// `out[t] = query · keys[t] / √d` in `L`'s lanes, four keys at a time: four
    /// independent chains of FMAs (one key's chain waits on each FMA's latency), summed
    /// together by [`Lanes::sum4`]. The last keys are computed as a group of four too
    /// (the last key repeated), so every score is summed in the same order.
    #[inline(always)]
    unsafe fn scores<L: Lanes>(query: &[f32], keys: &[f32], out: &mut [f32]) {
        let (d, scale) = (query.len(), super::score_scale(query.len()));
        let n = out.len();
        for first in (0..n).step_by(4) {
            let rows: [&[f32]; 4] = std::array::from_fn(|i| {
                let t = (first + i).min(n - 1);
                &keys[t * d..(t + 1) * d]
            });
            let mut acc = [unsafe { L::zero() }; 4];
            for at in (0..d).step_by(L::LANES) {
                // SAFETY: whole vectors within each row.
                unsafe {
                    let q = L::load(query.as_ptr().add(at));
                    for (acc, row) in acc.iter_mut().zip(rows) {
                        *acc = L::fmadd(q, L::load(row.as_ptr().add(at)), *acc);
                    }
                }
            }
            let sums = unsafe { L::sum4(acc) };
            for (score, sum) in out[first..].iter_mut().zip(sums) {
                *score = sum * scale;
            }
        }
    }

    /// `out = Σ_t weights[t] · rows[t]`, `out` whole vectors of `L`: eight, four, two
    /// or one of them at a time in registers, so that as many independent chains of
    /// FMAs run per row.
    #[inline(always)]
    unsafe fn weighted_sum<L: Lanes>(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        let (d, lanes) = (out.len(), L::LANES);
        let mut first = 0;
        while first < d {
            // SAFETY (all): the caller's.
            first = match (d - first) / lanes {
                8.. => unsafe { weighted_sum_of::<L, 8>(weights, rows, out, first) },
                4.. => unsafe { weighted_sum_of::<L, 4>(weights, rows, out, first) },
                2.. => unsafe { weighted_sum_of::<L, 2>(weights, rows, out, first) },
                _ => unsafe { weighted_sum_of::<L, 1>(weights, rows, out, first) },
            };
        }
    }

    /// [`weighted_sum`] of the `N` vectors of `out` from value `first` on (a number of
    /// accumulators the compiler keeps in registers); returns where they end.
    #[inline(always)]
    unsafe fn weighted_sum_of<L: Lanes, const N: usize>(
        weights: &[f32],
        rows: &[f32],
        out: &mut [f32],
        first: usize,
    ) -> usize {
        let (d, end) = (out.len(), first + N * L::LANES);
        let mut acc = [unsafe { L::zero() }; N];
        for (w, row) in weights.iter().zip(rows.chunks_exact(d)) {
            let (w, row) = (unsafe { L::splat(*w) }, &row[first..end]);
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: a whole vector within the row.
                *acc = unsafe { L::fmadd(w, L::load(row.as_ptr().add(v * L::LANES)), *acc) };
            }
        }
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: a whole vector within `first..end` of `out`.
            unsafe { L::store(out[first..end].as_mut_ptr().add(v * L::LANES), *acc) };
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::{KEYS_T_MULTIPLE, attend, attend_each};

    /// `softmax(q · Kᵀ / √d) · V` in f64.
    fn reference(query: &[f32], keys: &[f32], values: &[f32]) -> Vec<f64> {
        let d = query.len();
        let scores: Vec<f64> = keys
            .chunks_exact(d)
            .map(|k| {
                let dot: f64 = query.iter().zip(k).map(|(&a, &b)| f64::from(a * b)).sum();
                dot / (d as f64).sqrt()
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut out = vec![0f64; d];
        for (w, row) in weights.iter().zip(values.chunks_exact(d)) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += w / total * f64::from(v);
            }
        }
        out
    }

    /// Every head width the vector loops take (whole vectors, more than eight at once)
    /// and the plain loops (odd widths), with key counts around the groups of four:
    /// within 1e-5 of the f64 result.
    #[test]
    fn attention_matches_the_exact_softmax() {
        let value = |i: usize, seed: f32| (i as f32 * 0.7 + seed).sin() * 3.0;
        for d in [8, 16, 24, 64, 80, 128, 7] {
            for n in [1, 2, 3, 4, 5, 8, 13] {
                let query: Vec<f32> = (0..d).map(|i| value(i, 0.1)).collect();
                let keys: Vec<f32> = (0..n * d).map(|i| value(i, 1.3)).collect();
                let values: Vec<f32> = (0..n * d).map(|i| value(i, 2.9)).collect();
                let mut out = vec![0f32; d];
                attend(&query, &keys, &values, &mut Vec::new(), &mut out);
                for (got, want) in out.iter().zip(reference(&query, &keys, &values)) {
                    assert!(
                        (f64::from(*got) - want).abs() < 1e-5 * want.abs().max(1.0),
                        "d {d}, {n} keys: {got} against {want}"
                    );
                }
            }
        }
    }

    /// Several queries over keys laid out transposed give what [`attend`] gives each
    /// (to rounding: the scores are summed in another order), on the vector loops and
    /// the plain ones, with key counts around whole vectors and padded rows.
    #[test]
    fn attending_each_query_over_transposed_keys_is_attending_each_alone() {
        let value = |i: usize, seed: f32| (i as f32 * 0.7 + seed).sin() * 3.0;
        for d in [8, 16, 32, 7] {
            for n in [1, 3, 8, 9, 16, 17, 36, 70] {
                let queries: Vec<f32> = (0..n * d).map(|i| value(i, 0.4)).collect();
                let keys: Vec<f32> = (0..n * d).map(|i| value(i, 1.3)).collect();
                let values: Vec<f32> = (0..n * d).map(|i| value(i, 2.9)).collect();
                let padded = n.next_multiple_of(KEYS_T_MULTIPLE);
                let mut keys_t = vec![0f32; d * padded];
                for (t, key) in keys.chunks_exact(d).enumerate() {
                    for (i, k) in key.iter().enumerate() {
                        keys_t[i * padded + t] = *k;
                    }
                }
                let mut out = vec![0f32; n * d];
                attend_each(d, &queries, &keys_t, &values, &mut Vec::new(), &mut out);
                for (query, got) in queries.chunks_exact(d).zip(out.chunks_exact(d)) {
                    let mut want = vec![0f32; d];
                    attend(query, &keys, &values, &mut Vec::new(), &mut want);
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-5 * w.abs().max(1.0),
                            "d {d}, {n}: {g} {w}"
                        );
                    }
                }
            }
        }
    }
}

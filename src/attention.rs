//! Softmax attention of one query against rows of keys and values,
//! `softmax(q · Kᵀ / √d) · V`, with its two inner loops (the scores, the weighted sum of
//! the values) compiled for AVX-512 or AVX2 where the CPU has them: the LLM's decoding
//! and prompt attention (`llm/cpu_attention.rs`) and the embedder's per-sentence one
//! (`embed/bert.rs`).

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
    let d = query.len();
    #[cfg(target_arch = "x86_64")]
    {
        if d.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F; rows are whole vectors of 16.
            return unsafe { simd::attend_avx512(query, keys, values, scores, out) };
        }
        if d.is_multiple_of(8)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA; rows are whole vectors of 8.
            return unsafe { simd::attend_avx2(query, keys, values, scores, out) };
        }
    }
    attend_with(query, keys, values, scores, out, plain_scores, weighted_sum);
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
    scores.resize(keys.len() / query.len(), 0.0);
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
        /// `a · b + c`, fused.
        unsafe fn fmadd(a: Self::Vector, b: Self::Vector, c: Self::Vector) -> Self::Vector;
        unsafe fn sum(v: Self::Vector) -> f32;
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
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn sum(v: __m512) -> f32 {
            unsafe { _mm512_reduce_add_ps(v) }
        }
    }

    /// 8 lanes of AVX2 with FMA.
    pub(super) struct Avx2;

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
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn sum(v: __m256) -> f32 {
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
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

    /// `out[t] = query · keys[t] / √d` in `L`'s lanes.
    #[inline(always)]
    unsafe fn scores<L: Lanes>(query: &[f32], keys: &[f32], out: &mut [f32]) {
        let scale = super::score_scale(query.len());
        for (score, key) in out.iter_mut().zip(keys.chunks_exact(query.len())) {
            // SAFETY: the caller's.
            *score = unsafe { dot::<L>(query, key) } * scale;
        }
    }

    /// `a · b`, both whole vectors of `L`.
    #[inline(always)]
    unsafe fn dot<L: Lanes>(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = unsafe { L::zero() };
        for (x, y) in a.chunks_exact(L::LANES).zip(b.chunks_exact(L::LANES)) {
            // SAFETY: whole vectors.
            acc = unsafe { L::fmadd(L::load(x.as_ptr()), L::load(y.as_ptr()), acc) };
        }
        unsafe { L::sum(acc) }
    }

    /// `out = Σ_t weights[t] · rows[t]`, `out` whole vectors of `L`: up to four of them
    /// at a time in registers, so that four independent chains of FMAs run per row.
    #[inline(always)]
    unsafe fn weighted_sum<L: Lanes>(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        let (d, lanes) = (out.len(), L::LANES);
        for first in (0..d).step_by(4 * lanes) {
            let n = (d - first).min(4 * lanes) / lanes;
            let mut acc = [unsafe { L::zero() }; 4];
            for (w, row) in weights.iter().zip(rows.chunks_exact(d)) {
                let w = unsafe { L::splat(*w) };
                let row = &row[first..first + lanes * n];
                for (acc, values) in acc.iter_mut().zip(row.chunks_exact(lanes)) {
                    // SAFETY: a whole vector.
                    *acc = unsafe { L::fmadd(w, L::load(values.as_ptr()), *acc) };
                }
            }
            for (acc, chunk) in acc
                .iter()
                .zip(out[first..first + lanes * n].chunks_exact_mut(lanes))
            {
                // SAFETY: a whole vector.
                unsafe { L::store(chunk.as_mut_ptr(), *acc) };
            }
        }
    }
}

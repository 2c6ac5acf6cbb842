//! Attention on the CPU for the new positions of each request (one per request in a
//! batched decoding step, a prompt chunk's in prefill): the new queries, rotated, against
//! the request's own cached keys and values, computed in place over the cache's storage.
//!
//! With candle's tensor operations a decoding step took about twenty operations per
//! request and layer (narrowing, reshaping, rotary embedding, a cache append, two small
//! matmuls, a softmax), each with its allocation and, for several, a wake-up of candle's
//! thread pool: at eight requests that cost more than the batched weight products. Here
//! it is two cache appends per request and layer and a few loops over contiguous values.
//!
//! Each new position is computed by the same loops, against exactly the positions before
//! it, whatever else runs: a position's result does not depend on the other requests of
//! the step, nor on whether it came in a prompt chunk or a decoding step.

use std::sync::{Mutex, PoisonError};

use candle_core::{Layout, Storage, Tensor};

use super::LlmError;
use crate::vector_math::exp_nonpositive;

/// The attention heads' shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Rotary embedding by halves (GPT-NeoX, Qwen2) rather than by interleaved pairs.
    pub neox: bool,
}

/// One request's new positions: their rotary angles (`head_dim / 2` each, position after
/// position) and the request's layer cache.
pub(super) struct Step<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub cache: &'a mut candle_nn::kv_cache::KvCache,
}

/// The attention of every request's new positions: `q`, `k`, `v` are the projections
/// (biases added), one row per new position, request after request; the keys are
/// rotated and, with the values, appended to each request's cache. Returns the heads'
/// outputs, one row of `n_head × head_dim` per new position. Appending runs per request,
/// attending per position and query head, both spread over the pool.
pub(super) fn attend(
    heads: Heads,
    mut q: Vec<f32>,
    mut k: Vec<f32>,
    v: Vec<f32>,
    steps: &mut [Step<'_>],
) -> Result<Vec<f32>, LlmError> {
    let (d, half) = (heads.head_dim, heads.head_dim / 2);
    let (q_width, kv_width) = (heads.n_head * d, heads.n_kv_head * d);
    let mut positions = Vec::with_capacity(steps.len());
    for step in steps.iter() {
        let n = step.cos.len() / half.max(1);
        if half == 0 || n == 0 || step.cos.len() != n * half || step.sin.len() != n * half {
            return Err(LlmError::BadModel(format!(
                "rotary tables of {} and {} values for heads of {d}",
                step.cos.len(),
                step.sin.len()
            )));
        }
        positions.push(n);
    }
    let rows: usize = positions.iter().sum();
    if q.len() != rows * q_width || k.len() != rows * kv_width || v.len() != rows * kv_width {
        return Err(LlmError::BadModel(format!(
            "{} query, {} key and {} value values for {rows} positions",
            q.len(),
            k.len(),
            v.len()
        )));
    }

    // Rotate and append, a request per unit.
    let mut appends = Vec::with_capacity(steps.len());
    let (mut q_rest, mut k_rest, mut v_rest) = (&mut q[..], &mut k[..], &v[..]);
    for (step, &n) in steps.iter_mut().zip(&positions) {
        let (q, k, v);
        (q, q_rest) = std::mem::take(&mut q_rest).split_at_mut(n * q_width);
        (k, k_rest) = std::mem::take(&mut k_rest).split_at_mut(n * kv_width);
        (v, v_rest) = v_rest.split_at(n * kv_width);
        appends.push(Mutex::new(Append { step, q, k, v }));
    }
    let failure = Mutex::new(None);
    let fail = |error| {
        failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
    };
    parallel_for(appends.len(), &|range| {
        for i in range {
            let mut append = appends[i].lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = append.run(heads) {
                fail(error);
            }
        }
    });
    drop(appends);
    if let Some(error) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(error);
    }

    // Attend, a position and query head per unit, over the caches in place.
    let mut data = Vec::with_capacity(steps.len());
    for step in steps.iter() {
        let (keys, values) = (step.cache.k_cache(), step.cache.v_cache());
        let (Some(k), Some(v)) = (keys.all_data(), values.all_data()) else {
            return Err(LlmError::BadModel("empty key/value cache".into()));
        };
        data.push((
            k.clone(),
            v.clone(),
            keys.current_seq_len(),
            keys.max_seq_len(),
        ));
    }
    let guards: Vec<_> = data
        .iter()
        .map(|(k, v, ..)| (k.storage_and_layout(), v.storage_and_layout()))
        .collect();
    let mut units = Vec::with_capacity(rows * heads.n_head);
    for (((keys, key_layout), (values, value_layout)), (&(_, _, len, capacity), &n)) in
        guards.iter().zip(data.iter().zip(&positions))
    {
        let (keys, values) = (
            f32_values(keys, key_layout)?,
            f32_values(values, value_layout)?,
        );
        for i in 0..n {
            let cache = CacheView {
                keys,
                values,
                len: len - n + i + 1,
                capacity,
            };
            let row = units.len() / heads.n_head;
            units.extend((0..heads.n_head).map(|h| (cache, row, h)));
        }
    }
    let mut out = vec![0f32; rows * q_width];
    let shared = SharedRows(out.as_mut_ptr());
    let q = &q;
    parallel_for(units.len(), &|range| {
        let mut scores = Vec::new();
        for &(cache, row, h) in &units[range] {
            let at = row * q_width + h * d;
            // SAFETY: each unit writes its own head of its own row, and `out` outlives
            // the parallel section.
            let out = unsafe { std::slice::from_raw_parts_mut(shared.start().add(at), d) };
            attend_head(heads, h, &q[at..at + d], &cache, &mut scores, out);
        }
    });
    Ok(out)
}

/// The output rows, shared by the units of [`attend`] (each writes its own head).
struct SharedRows(*mut f32);

impl SharedRows {
    fn start(&self) -> *mut f32 {
        self.0
    }
}

// SAFETY: see `attend`: every unit writes a disjoint part of the buffer, which outlives
// the parallel section.
unsafe impl Sync for SharedRows {}

/// One request's new positions to rotate and append.
struct Append<'s, 'a> {
    step: &'s mut Step<'a>,
    q: &'s mut [f32],
    k: &'s mut [f32],
    v: &'s [f32],
}

impl Append<'_, '_> {
    /// Rotates the queries and keys, and appends the keys and values to the cache.
    fn run(&mut self, heads: Heads) -> Result<(), LlmError> {
        let (step, d) = (&mut *self.step, heads.head_dim);
        let half = d / 2;
        let angles = step.cos.chunks_exact(half).zip(step.sin.chunks_exact(half));
        let rows = self
            .q
            .chunks_exact_mut(heads.n_head * d)
            .zip(self.k.chunks_exact_mut(heads.n_kv_head * d));
        for ((q, k), (cos, sin)) in rows.zip(angles) {
            rope(q, d, cos, sin, heads.neox);
            rope(k, d, cos, sin, heads.neox);
        }
        let n = step.cos.len() / half;
        // The cache holds (1, kv heads, positions, head_dim).
        let by_head = |rows: &[f32]| -> Result<Tensor, LlmError> {
            let mut t = Vec::with_capacity(rows.len());
            for h in 0..heads.n_kv_head {
                for row in rows.chunks_exact(heads.n_kv_head * d) {
                    t.extend_from_slice(&row[h * d..(h + 1) * d]);
                }
            }
            let shape = (1, heads.n_kv_head, n, d);
            Ok(Tensor::from_vec(t, shape, &candle_core::Device::Cpu)?)
        };
        step.cache.k_cache_mut().append(&by_head(self.k)?)?;
        step.cache.v_cache_mut().append(&by_head(self.v)?)?;
        Ok(())
    }
}

/// A request's cached keys and values of one layer, in place: per kv head, `capacity`
/// positions of `head_dim` values, the first `len` filled.
#[derive(Clone, Copy)]
struct CacheView<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    len: usize,
    capacity: usize,
}

/// The values of the cache's storage, in place.
fn f32_values<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32], LlmError> {
    crate::cpu_tensor::f32_values(storage, layout).ok_or_else(|| {
        LlmError::BadModel("the key/value cache is not contiguous f32 on the CPU".into())
    })
}

/// Runs `work` over `0..n` on the process's pool (x86-64) or this thread.
fn parallel_for(n: usize, work: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    #[cfg(target_arch = "x86_64")]
    crate::cpu_pool::shared().parallel_for(n, work);
    #[cfg(not(target_arch = "x86_64"))]
    work(0..n);
}

/// Rotary embedding of whole heads in place, as candle's `rope` (`neox`: the two halves
/// of a head rotate together) or `rope_i` (interleaved pairs), operation for operation.
fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], neox: bool) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (a, b) = if neox {
                (i, i + half)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos[i] - x1 * sin[i];
            head[b] = x0 * sin[i] + x1 * cos[i];
        }
    }
}

/// Query head `h` of one position against the keys and values of its group; `scores`
/// is room for the attention weights, reused from call to call.
fn attend_head(
    heads: Heads,
    h: usize,
    q: &[f32],
    cache: &CacheView<'_>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = heads.head_dim;
    let group = (h / (heads.n_head / heads.n_kv_head)) * cache.capacity * d;
    let keys = &cache.keys[group..group + cache.len * d];
    let values = &cache.values[group..group + cache.len * d];
    #[cfg(target_arch = "x86_64")]
    {
        if d.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY (both loops): the CPU has AVX-512 F; heads are whole vectors of 16.
            return attend_head_with(
                q,
                keys,
                values,
                scores,
                out,
                |q, keys, scores| unsafe { simd::scores_avx512(q, keys, scores) },
                |weights, rows, out| unsafe { simd::weighted_sum_avx512(weights, rows, out) },
            );
        }
        if d.is_multiple_of(8)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY (both loops): the CPU has AVX2 and FMA; heads are whole vectors of 8.
            return attend_head_with(
                q,
                keys,
                values,
                scores,
                out,
                |q, keys, scores| unsafe { simd::scores_avx2(q, keys, scores) },
                |weights, rows, out| unsafe { simd::weighted_sum_avx2(weights, rows, out) },
            );
        }
    }
    attend_head_with(q, keys, values, scores, out, plain_scores, weighted_sum);
}

/// One query head against `keys` and `values` (rows of `query.len()` values), with
/// the two inner loops given: `scores(query, keys, scores)`, the scaled dot product of
/// the query with each key, and `weighted_sum(weights, rows, out)`.
#[inline(always)]
fn attend_head_with(
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

    /// [`scores`] compiled for AVX-512.
    ///
    /// # Safety
    /// AVX-512 F available; `query.len()` a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores_avx512(query: &[f32], keys: &[f32], out: &mut [f32]) {
        // SAFETY: as this function's.
        unsafe { scores::<Avx512>(query, keys, out) }
    }

    /// [`weighted_sum`] compiled for AVX-512.
    ///
    /// # Safety
    /// AVX-512 F available; `out.len()` a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum_avx512(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: as this function's.
        unsafe { weighted_sum::<Avx512>(weights, rows, out) }
    }

    /// [`scores`] compiled for AVX2 and FMA.
    ///
    /// # Safety
    /// AVX2 and FMA available; `query.len()` a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_avx2(query: &[f32], keys: &[f32], out: &mut [f32]) {
        // SAFETY: as this function's.
        unsafe { scores::<Avx2>(query, keys, out) }
    }

    /// [`weighted_sum`] compiled for AVX2 and FMA.
    ///
    /// # Safety
    /// AVX2 and FMA available; `out.len()` a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum_avx2(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: as this function's.
        unsafe { weighted_sum::<Avx2>(weights, rows, out) }
    }

    /// `out[t] = query · keys[t] / √d` in `L`'s lanes. Plain loops only (no closures,
    /// which would not inherit the caller's instruction sets), so that the intrinsics
    /// inline into the function compiled for them.
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

//! Attention for a batched decoding step on the CPU: each request's one new query,
//! rotated, against its own cached keys and values, computed in place over the cache's
//! storage, the requests spread over the process's pool.
//!
//! With candle's tensor operations this took about twenty operations per request and
//! layer (narrowing, reshaping, rotary embedding, a cache append, two small matmuls, a
//! softmax), each with its allocation and, for several, a wake-up of candle's thread
//! pool: at eight requests that cost more than the batched weight products. Here it is
//! two cache appends per request and layer and a few loops over contiguous values. A
//! request's result does not depend on the other requests of the step.

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

/// One request of the step: its position's rotary angles (`head_dim / 2` each) and its
/// layer cache.
pub(super) struct Step<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub cache: &'a mut candle_nn::kv_cache::KvCache,
}

/// The attention of one decoding step for every request: `q`, `k`, `v` are the
/// projections (biases added), one row per request; the keys and values are rotated
/// (keys) and appended to each request's cache. Returns the heads' outputs, one row of
/// `n_head × head_dim` per request. The requests are spread over the pool, each whole
/// (rotation, cache append, attention) on one thread.
pub(super) fn attend(
    heads: Heads,
    mut q: Vec<f32>,
    mut k: Vec<f32>,
    v: Vec<f32>,
    steps: &mut [Step<'_>],
) -> Result<Vec<f32>, LlmError> {
    let (q_width, kv_width) = (
        heads.n_head * heads.head_dim,
        heads.n_kv_head * heads.head_dim,
    );
    let half = heads.head_dim / 2;
    if let Some(step) = steps
        .iter()
        .find(|s| s.cos.len() != half || s.sin.len() != half)
    {
        return Err(LlmError::BadModel(format!(
            "rotary tables of {} values for heads of {}",
            step.cos.len(),
            heads.head_dim
        )));
    }
    let mut out = vec![0f32; steps.len() * q_width];
    let requests: Vec<Mutex<Request<'_, '_>>> = steps
        .iter_mut()
        .zip(q.chunks_mut(q_width))
        .zip(k.chunks_mut(kv_width))
        .zip(v.chunks(kv_width))
        .zip(out.chunks_mut(q_width))
        .map(|((((step, q), k), v), out)| Mutex::new(Request { step, q, k, v, out }))
        .collect();
    let failure = Mutex::new(None);
    parallel_for(requests.len(), &|range| {
        for i in range {
            let mut request = requests[i].lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = request.run(heads) {
                failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(error);
            }
        }
    });
    drop(requests);
    match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(error) => Err(error),
        None => Ok(out),
    }
}

/// One request's part of the step: its projections and where its output goes.
struct Request<'s, 'a> {
    step: &'s mut Step<'a>,
    q: &'s mut [f32],
    k: &'s mut [f32],
    v: &'s [f32],
    out: &'s mut [f32],
}

impl Request<'_, '_> {
    /// Rotates the query and key, appends the key and value to the cache, and attends.
    fn run(&mut self, heads: Heads) -> Result<(), LlmError> {
        let (step, d) = (&mut *self.step, heads.head_dim);
        rope(self.q, d, step.cos, step.sin, heads.neox);
        rope(self.k, d, step.cos, step.sin, heads.neox);
        let (shape, device) = ((1, heads.n_kv_head, 1, d), &candle_core::Device::Cpu);
        step.cache
            .k_cache_mut()
            .append(&Tensor::from_slice(self.k, shape, device)?)?;
        step.cache
            .v_cache_mut()
            .append(&Tensor::from_slice(self.v, shape, device)?)?;
        // The cache as (1, kv heads, capacity, head_dim), its first `len` positions filled.
        let (key_cache, value_cache) = (step.cache.k_cache(), step.cache.v_cache());
        let (Some(keys), Some(values)) = (key_cache.all_data(), value_cache.all_data()) else {
            return Err(LlmError::BadModel("empty key/value cache".into()));
        };
        let ((keys, key_layout), (values, value_layout)) =
            (keys.storage_and_layout(), values.storage_and_layout());
        let view = CacheView {
            keys: f32_values(&keys, key_layout)?,
            values: f32_values(&values, value_layout)?,
            len: key_cache.current_seq_len(),
            capacity: key_cache.max_seq_len(),
        };
        attend_request(heads, self.q, &view, self.out);
        Ok(())
    }
}

/// A request's cached keys and values of one layer, in place: per kv head, `capacity`
/// positions of `head_dim` values, the first `len` filled.
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

/// One request's attention: each query head against the keys and values of its group.
fn attend_request(heads: Heads, q: &[f32], cache: &CacheView<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if heads.head_dim.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F; heads are whole vectors of 16.
        return unsafe { avx512::attend_request(heads, q, cache, out) };
    }
    attend_request_with(heads, q, cache, out, dot, weighted_sum);
}

/// [`attend_request`] with the two inner loops given: `dot(a, b)` and
/// `weighted_sum(weights, rows, out)`.
#[inline(always)]
fn attend_request_with(
    heads: Heads,
    q: &[f32],
    cache: &CacheView<'_>,
    out: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
    weighted_sum: impl Fn(&[f32], &[f32], &mut [f32]),
) {
    let d = heads.head_dim;
    let per_group = heads.n_head / heads.n_kv_head;
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0f32; cache.len];
    for (h, (query, out)) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let group = (h / per_group) * cache.capacity * d;
        let keys = &cache.keys[group..group + cache.len * d];
        let values = &cache.values[group..group + cache.len * d];
        for (score, key) in scores.iter_mut().zip(keys.chunks_exact(d)) {
            *score = dot(query, key) * scale;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for score in &mut scores {
            *score = exp_nonpositive(*score - max);
        }
        let sum = scores.iter().sum::<f32>();
        for score in &mut scores {
            *score /= sum;
        }
        weighted_sum(&scores, values, out);
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

/// The inner loops with AVX-512 FMAs, for heads of a multiple of 16 values.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{CacheView, Heads};

    /// [`super::attend_request`] compiled for AVX-512.
    ///
    /// # Safety
    /// AVX-512 F available; `heads.head_dim` a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend_request(
        heads: Heads,
        q: &[f32],
        cache: &CacheView<'_>,
        out: &mut [f32],
    ) {
        super::attend_request_with(
            heads,
            q,
            cache,
            out,
            // SAFETY: as this function's.
            |a, b| unsafe { dot(a, b) },
            |weights, rows, out| unsafe { weighted_sum(weights, rows, out) },
        );
    }

    /// `a · b`, both whole vectors of 16.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = _mm512_setzero_ps();
        for (x, y) in a.as_chunks::<16>().0.iter().zip(b.as_chunks::<16>().0) {
            // SAFETY: 16 values each.
            acc = unsafe {
                _mm512_fmadd_ps(
                    _mm512_loadu_ps(x.as_ptr()),
                    _mm512_loadu_ps(y.as_ptr()),
                    acc,
                )
            };
        }
        _mm512_reduce_add_ps(acc)
    }

    /// `out = Σ_t weights[t] · rows[t]`, `out` whole vectors of 16: up to four of them
    /// at a time in registers, so that four independent chains of FMAs run per row.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn weighted_sum(weights: &[f32], rows: &[f32], out: &mut [f32]) {
        let d = out.len();
        for first in (0..d).step_by(64) {
            let n = (d - first).min(64) / 16;
            let mut acc = [_mm512_setzero_ps(); 4];
            for (w, row) in weights.iter().zip(rows.chunks_exact(d)) {
                let w = _mm512_set1_ps(*w);
                let row = &row[first..first + 16 * n];
                for (acc, values) in acc.iter_mut().zip(row.as_chunks::<16>().0) {
                    // SAFETY: 16 values.
                    *acc = unsafe { _mm512_fmadd_ps(w, _mm512_loadu_ps(values.as_ptr()), *acc) };
                }
            }
            for (acc, chunk) in acc
                .iter()
                .zip(out[first..first + 16 * n].as_chunks_mut::<16>().0)
            {
                // SAFETY: 16 values.
                unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), *acc) };
            }
        }
    }
}

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
    crate::cpu_pool::parallel_for(appends.len(), &|range| {
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
    crate::cpu_pool::parallel_for(units.len(), &|range| {
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
    crate::attention::attend(q, keys, values, scores, out);
}

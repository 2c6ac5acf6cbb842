//! Quantized matrix products on x86-64 CPUs for ggml's Q4_1 and Q8_0 weight blocks,
//! with AVX-512 VNNI or AVX2 kernels; part of `neuron` (see its `src/llm/cpu_matmul.rs`).
//!
//! A crate of its own so that the kernels are compiled with optimisations in every
//! profile (intrinsics left uninlined by a debug build run ~50× slower).
//!
//! The weights stay in ggml's block layout; activations are quantised to 8 bits per
//! 32-value block the way candle does it (ggml's `Q8_1`: scale, scale × sum, 32 × i8),
//! and each block's dot product is one `vpdpbusd` (u8 × i8 → i32), two blocks at a
//! time, or `vpmaddubsw` with AVX2.
#![cfg(target_arch = "x86_64")]

use std::sync::OnceLock;

use rayon::prelude::*;

/// Values per quantisation block (Q4_1, Q8_0 and the activations' Q8_1 alike).
pub const BLOCK: usize = 32;
/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Quantisation type of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 20-byte blocks: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles (value `i` in
    /// the low nibble of byte `i`, value `i + 16` in its high nibble); `x = d·q + m`.
    Q4_1,
    /// 34-byte blocks: f16 scale `d`, 32 × i8; `x = d·q`.
    Q8_0,
}

impl Format {
    /// Bytes per block of 32 values.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F/BW/VL with VNNI (Intel Ice Lake and later servers, AMD Zen 4).
    Avx512Vnni,
    /// AVX2 with FMA and F16C (x86-64 since about 2013).
    Avx2,
}

/// The best instruction set this CPU has, if any (detected once).
pub fn detect() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Some(Isa::Avx512Vnni)
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Some(Isa::Avx2)
        } else {
            None
        }
    })
}

/// Whether `isa` can run on this CPU.
pub fn supported(isa: Isa) -> bool {
    match (detect(), isa) {
        (Some(Isa::Avx512Vnni), _) => true,
        (Some(Isa::Avx2), Isa::Avx2) => true,
        _ => false,
    }
}

/// A weight matrix `(rows, cols)` of ggml blocks, row after row.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// Block type.
    pub format: Format,
    /// Output features.
    pub rows: usize,
    /// Input features (a multiple of [`BLOCK`]).
    pub cols: usize,
    /// `rows × cols / 32` blocks.
    pub data: &'a [u8],
}

/// Activations quantised to 8 bits per block of 32 (ggml's `Q8_1`), one row per input.
/// Like candle (and ggml), the values are quantised with the exact scale, and the scale
/// and sum are then kept as f16, so that the products match candle's.
struct QuantizedRows {
    /// Per block: the scale `d = max|x| / 127`.
    scales: Vec<f32>,
    /// Per block: `d · Σq` (the term a weight minimum multiplies).
    sums: Vec<f32>,
    /// The quantised values, `rows × cols`.
    values: Vec<i8>,
}

impl QuantizedRows {
    fn new(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            scales: Vec::with_capacity(blocks),
            sums: Vec::with_capacity(blocks),
            values: Vec::with_capacity(x.len()),
        };
        for block in x.chunks_exact(BLOCK) {
            let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = max / 127.0;
            let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
            let mut sum = 0i32;
            for v in block {
                let q = (v * inverse).round() as i8;
                sum += i32::from(q);
                out.values.push(q);
            }
            let as_f16 = |v: f32| half::f16::from_f32(v).to_f32();
            let d = as_f16(d);
            out.scales.push(d);
            // candle's rounding (ggml rounds `d · Σq` once, from the exact `d`).
            out.sums.push(as_f16(as_f16(sum as f32) * d));
        }
        out
    }
}

/// One activation row's blocks.
struct Activation<'a> {
    scales: &'a [f32],
    sums: &'a [f32],
    values: &'a [i8],
}

/// `x · Wᵀ` for `x` of `batch × w.cols` values (row-major); returns `batch × w.rows`.
/// Runs on `pool` when it has more than one thread, else on the calling thread.
///
/// # Panics
/// If `isa` is not [`supported`] on this CPU, or the lengths do not match the shapes.
pub fn matmul(isa: Isa, w: Weights, x: &[f32], pool: &rayon::ThreadPool) -> Vec<f32> {
    assert!(supported(isa), "{isa:?} is not available on this CPU");
    assert!(
        w.cols % BLOCK == 0 && x.len() % w.cols == 0,
        "input is not whole rows"
    );
    assert_eq!(
        w.data.len(),
        w.rows * w.cols / BLOCK * w.format.block_bytes()
    );
    let batch = x.len() / w.cols;
    let activations = QuantizedRows::new(x);
    // Row-major `(rows, batch)`: each task fills whole weight rows.
    let mut transposed = vec![0f32; w.rows * batch];
    let task = |(chunk, out): (usize, &mut [f32])| {
        let first = chunk * ROWS_PER_TASK;
        for (r, out_row) in out.chunks_mut(batch).enumerate() {
            row_dots(isa, w, first + r, &activations, out_row);
        }
    };
    let task_len = ROWS_PER_TASK * batch;
    if pool.current_num_threads() > 1 {
        pool.install(|| {
            transposed
                .par_chunks_mut(task_len)
                .enumerate()
                .for_each(task)
        });
    } else {
        transposed.chunks_mut(task_len).enumerate().for_each(task);
    }
    if batch == 1 {
        return transposed;
    }
    let mut output = vec![0f32; transposed.len()];
    for (r, row) in transposed.chunks(batch).enumerate() {
        for (b, v) in row.iter().enumerate() {
            output[b * w.rows + r] = *v;
        }
    }
    output
}

/// Dot products of weight row `row` with every activation row.
fn row_dots(isa: Isa, w: Weights, row: usize, x: &QuantizedRows, out: &mut [f32]) {
    let blocks = w.cols / BLOCK;
    let bytes = blocks * w.format.block_bytes();
    let weights = &w.data[row * bytes..(row + 1) * bytes];
    for (b, out) in out.iter_mut().enumerate() {
        let range = b * blocks..(b + 1) * blocks;
        let act = Activation {
            scales: &x.scales[range.clone()],
            sums: &x.sums[range],
            values: &x.values[b * w.cols..(b + 1) * w.cols],
        };
        // SAFETY: `matmul` checked that `isa` runs on this CPU; the weight row and the
        // activation row hold the same number of blocks.
        *out = unsafe {
            match (isa, w.format) {
                (Isa::Avx512Vnni, Format::Q4_1) => x86::q4_1_vnni(weights, &act),
                (Isa::Avx512Vnni, Format::Q8_0) => x86::q8_0_vnni(weights, &act),
                (Isa::Avx2, Format::Q4_1) => x86::q4_1_avx2(weights, &act),
                (Isa::Avx2, Format::Q8_0) => x86::q8_0_avx2(weights, &act),
            }
        };
    }
}

mod x86 {
    //! The kernels. Each takes one weight row (`blocks` ggml blocks) and one activation
    //! row of the same number of blocks.
    use std::arch::x86_64::*;

    use super::{Activation, BLOCK};

    /// Reads the f16 at `p` as f32.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn f16_at(p: *const u8) -> f32 {
        unsafe {
            let bits = p.cast::<u16>().read_unaligned();
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
        }
    }

    /// The 32 nibbles of a Q4_1 block (at `qs`, 16 bytes) as bytes in value order.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q4_nibbles(qs: *const u8) -> __m256i {
        unsafe {
            let packed = _mm_loadu_si128(qs.cast());
            let low = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
            let high = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
            _mm256_set_m128i(high, low)
        }
    }

    /// Per-block scale vector: lanes 0–7 `a`, lanes 8–15 `b`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn scales_pair(a: f32, b: f32) -> __m512 {
        _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c,fma")]
    pub(super) unsafe fn q4_1_vnni(w: &[u8], x: &Activation) -> f32 {
        unsafe {
            let blocks = x.scales.len();
            let block = |i: usize| w.as_ptr().add(i * 20);
            let mut acc = _mm512_setzero_ps();
            let mut minimums = 0f32;
            let mut i = 0;
            while i + 2 <= blocks {
                let (a, b) = (block(i), block(i + 1));
                let nibbles = _mm512_inserti64x4(
                    _mm512_castsi256_si512(q4_nibbles(a.add(4))),
                    q4_nibbles(b.add(4)),
                    1,
                );
                let values = _mm512_loadu_si512(x.values.as_ptr().add(i * BLOCK).cast());
                let dots = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles, values);
                let scale = scales_pair(f16_at(a) * x.scales[i], f16_at(b) * x.scales[i + 1]);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, acc);
                minimums += f16_at(a.add(2)) * x.sums[i] + f16_at(b.add(2)) * x.sums[i + 1];
                i += 2;
            }
            let mut total = _mm512_reduce_add_ps(acc) + minimums;
            if i < blocks {
                let a = block(i);
                let values = _mm256_loadu_si256(x.values.as_ptr().add(i * BLOCK).cast());
                let dots =
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), q4_nibbles(a.add(4)), values);
                total += hsum_i32x8(dots) as f32 * f16_at(a) * x.scales[i]
                    + f16_at(a.add(2)) * x.sums[i];
            }
            total
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c,fma")]
    pub(super) unsafe fn q8_0_vnni(w: &[u8], x: &Activation) -> f32 {
        unsafe {
            let blocks = x.scales.len();
            let block = |i: usize| w.as_ptr().add(i * 34);
            let mut acc = _mm512_setzero_ps();
            let mut i = 0;
            while i + 2 <= blocks {
                let (a, b) = (block(i), block(i + 1));
                let weights = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256(a.add(2).cast())),
                    _mm256_loadu_si256(b.add(2).cast()),
                    1,
                );
                let values = _mm512_loadu_si512(x.values.as_ptr().add(i * BLOCK).cast());
                // vpdpbusd multiplies unsigned by signed bytes: move each weight's sign
                // onto its activation (|w| · ±x).
                let negative = _mm512_movepi8_mask(weights);
                let signed = _mm512_mask_sub_epi8(values, negative, _mm512_setzero_si512(), values);
                let dots =
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(weights), signed);
                let scale = scales_pair(f16_at(a) * x.scales[i], f16_at(b) * x.scales[i + 1]);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, acc);
                i += 2;
            }
            let mut total = _mm512_reduce_add_ps(acc);
            if i < blocks {
                let a = block(i);
                let weights = _mm256_loadu_si256(a.add(2).cast());
                let values = _mm256_loadu_si256(x.values.as_ptr().add(i * BLOCK).cast());
                let dots = _mm256_dpbusd_epi32(
                    _mm256_setzero_si256(),
                    _mm256_sign_epi8(weights, weights),
                    _mm256_sign_epi8(values, weights),
                );
                total += hsum_i32x8(dots) as f32 * f16_at(a) * x.scales[i];
            }
            total
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum_i32x8(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum_f32x8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Σ u8 × i8 over 32 bytes as 8 × i32, with AVX2 (no saturation for |u| ≤ 128).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn q4_1_avx2(w: &[u8], x: &Activation) -> f32 {
        unsafe {
            let mut acc = _mm256_setzero_ps();
            let mut minimums = 0f32;
            for i in 0..x.scales.len() {
                let a = w.as_ptr().add(i * 20);
                let values = _mm256_loadu_si256(x.values.as_ptr().add(i * BLOCK).cast());
                let dots = dot_u8_i8(q4_nibbles(a.add(4)), values);
                let scale = _mm256_set1_ps(f16_at(a) * x.scales[i]);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), scale, acc);
                minimums += f16_at(a.add(2)) * x.sums[i];
            }
            hsum_f32x8(acc) + minimums
        }
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn q8_0_avx2(w: &[u8], x: &Activation) -> f32 {
        unsafe {
            let mut acc = _mm256_setzero_ps();
            for i in 0..x.scales.len() {
                let a = w.as_ptr().add(i * 34);
                let weights = _mm256_loadu_si256(a.add(2).cast());
                let values = _mm256_loadu_si256(x.values.as_ptr().add(i * BLOCK).cast());
                let dots = dot_u8_i8(
                    _mm256_sign_epi8(weights, weights),
                    _mm256_sign_epi8(values, weights),
                );
                let scale = _mm256_set1_ps(f16_at(a) * x.scales[i]);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), scale, acc);
            }
            hsum_f32x8(acc)
        }
    }
}

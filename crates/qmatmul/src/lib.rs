//! Quantized matrix products on x86-64 CPUs for ggml's Q4_1 and Q8_0 weight blocks,
//! with AMX int8, AVX-512 VNNI or AVX2 kernels; part of `neuron` (see its
//! `src/llm/cpu_matmul.rs`).
//!
//! A crate of its own so that the kernels are compiled with optimisations in every
//! profile (intrinsics left uninlined by a debug build run ~50× slower).
//!
//! Activations are quantised per 32-value block: to 16 bits for Q4_1 weights, to 8 bits
//! for Q8_0 ones the way candle does it (ggml's `Q8_1`: scale, scale × sum, 32 × i8);
//! see `QuantizedRows`. With AVX-512 VNNI the weights are repacked at load into tiles
//! of 16 rows, so that one `vpdpwssd` / `vpdpbusd` adds two or four products to each of
//! 16 rows at once and the per-block scales of 16 rows are one vector: about two
//! instructions per row and block. With AVX2 the same tiles are two halves of 8 rows
//! (`vpmaddwd` / `vpmaddubsw` and an add where VNNI has one instruction), to the same
//! bits. With AMX-INT8 ([`Isa::Amx`]) products of several rows run on the tiles, from
//! the same layout and to the same bits (`amx::int8`).
//! [`WorkPool`] splits a product over threads without spinning at a barrier (see
//! [`pool`]).
//!
//! Beside them, f32 matrix products for the sentence embedder's linear layers:
//! [`Bf16x3Matrix`] on Intel AMX tiles to near f32 precision (see [`amx`]), and
//! [`FmaMatrix`] with AVX2 FMA on weights laid out for it at load (see [`fma`]).
#![cfg(target_arch = "x86_64")]

use std::ops::Range;
use std::sync::OnceLock;

pub mod amx;
pub mod fma;
pub mod pool;
pub use amx::Bf16x3Matrix;
pub use fma::FmaMatrix;
pub use pool::WorkPool;

/// Deterministic pseudo-random values in [-1, 1), `n` of them from `seed`: inputs for
/// the kernels' tests here and in `neuron`.
#[doc(hidden)]
pub fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// `x · Wᵀ (+ bias)` in f64, for `x` of rows of `cols` values and `w` `rows × cols`:
/// what the f32 products' tests compare with.
#[cfg(test)]
pub(crate) fn exact_product(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    cols: usize,
) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|xr| {
            (0..rows).map(move |r| {
                let dot: f64 = xr
                    .iter()
                    .zip(&w[r * cols..(r + 1) * cols])
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                dot + bias.map_or(0.0, |b| f64::from(b[r]))
            })
        })
        .collect()
}

/// `rows × cols` weights as blocks of `format` with pseudo-random values, scales and
/// minimums (from `seed`): inputs for the kernels' tests and benchmarks.
#[doc(hidden)]
pub fn test_blocks(format: Format, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let size = format.block_bytes();
    let noise = test_values(rows * cols / BLOCK * size, seed);
    let mut data: Vec<u8> = noise.iter().map(|v| (v * 128.0 + 128.0) as u8).collect();
    for (block, noise) in data.chunks_exact_mut(size).zip(noise.chunks_exact(size)) {
        let scale = half::f16::from_f32(0.001 + 0.01 * noise[0].abs());
        block[..2].copy_from_slice(&scale.to_le_bytes());
        if format == Format::Q4_1 {
            let minimum = half::f16::from_f32(0.1 * noise[1]);
            block[2..4].copy_from_slice(&minimum.to_le_bytes());
        }
    }
    data
}

/// Values per quantisation block (Q4_1, Q8_0 and the activations' Q8_1 alike).
pub const BLOCK: usize = 32;

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
    /// Intel AMX-INT8 tiles for products of several activation rows (prompts, batched
    /// decoding), AVX-512 VNNI for one: the same weight layout and, bit for bit, the same
    /// results (see `amx::int8`). Intel Sapphire Rapids and later servers.
    Amx,
    /// AVX-512 F/BW/VL with VNNI (Intel Ice Lake and later servers, AMD Zen 4).
    Avx512Vnni,
    /// AVX2 with FMA and F16C (x86-64 since about 2013, e.g. AMD Zen 3): the same
    /// tiles and, bit for bit, the same results as [`Isa::Avx512Vnni`].
    Avx2,
}

/// Whether the CPU has what [`Isa::Avx512Vnni`] needs.
fn has_avx512_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("fma")
}

/// The best instruction set this CPU (and, for AMX, the OS) offers, if any (detected
/// once).
pub fn detect() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(|| {
        if has_avx512_vnni() {
            Some(if amx::int8_available() {
                Isa::Amx
            } else {
                Isa::Avx512Vnni
            })
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
    matches!(
        (detect(), isa),
        (Some(Isa::Amx), _)
            | (Some(Isa::Avx512Vnni), Isa::Avx512Vnni | Isa::Avx2)
            | (Some(Isa::Avx2), Isa::Avx2)
    )
}

/// Every instruction set this CPU can run, the best first.
pub fn supported_isas() -> Vec<Isa> {
    [Isa::Amx, Isa::Avx512Vnni, Isa::Avx2]
        .into_iter()
        .filter(|&isa| supported(isa))
        .collect()
}

/// Activations quantised per block of 32 values, one row per input.
///
/// `Narrow`: 8 bits (ggml's `Q8_1`). Like candle (and ggml), the values are quantised
/// with the exact scale, and the scale and sum are then kept as f16, so that the
/// products match candle's.
///
/// `Wide` (for Q4_1 weights): 16 bits, multiplied by `vpdpwssd` (or `vpmaddwd`).
/// SmolLM2-like models carry activations in the tens of thousands in a few channels; in
/// 8 bits such a value leaves the rest of its block a step of hundreds, and the rounding
/// error, amplified layer after layer, moves logits by several percent (enough to turn a
/// greedy answer). 16 bits make that step 256 times finer for about the same speed
/// (4-bit weights are memory-bound). The values are stored as the i16 pairs the kernel
/// broadcasts (see `x86::q4_1_tile`).
struct QuantizedRows {
    /// Per block: the scale `d = max|x| / 127` (narrow) or `/ 32767` (wide).
    scales: Vec<f32>,
    /// Per block: `d · Σq` (the term a weight minimum multiplies).
    sums: Vec<f32>,
    /// Narrow, per block: `Σq` exactly (undoes the +128 of the repacked Q8_0 weights).
    value_sums: Vec<i32>,
    /// Narrow: the quantised values, `rows × cols`.
    values: Vec<i8>,
    /// Wide: per block, 16 pairs of i16 values packed in i32 (see [`QuantizedRows::wide`]).
    pairs: Vec<i32>,
}

/// The largest |x| of a block (0 for an empty one), in halving steps so that it
/// vectorises; the same value in any order.
#[inline(always)]
fn max_abs(block: &[f32]) -> f32 {
    let mut lanes = [0f32; BLOCK / 2];
    for (i, v) in block.iter().enumerate() {
        lanes[i % (BLOCK / 2)] = lanes[i % (BLOCK / 2)].max(v.abs());
    }
    for width in [8, 4, 2, 1] {
        for i in 0..width {
            lanes[i] = lanes[i].max(lanes[i + width]);
        }
    }
    lanes[0]
}

/// `x.round()` (halves away from zero), in operations that vectorise on any x86-64
/// (`trunc` needs SSE4.1 and is a call to libm's `truncf` without it): the same value
/// for every |x| < 2³¹, and outside it a value that converts to the same `i8`/`i16` (the
/// conversion saturates either way; NaN gives 0).
#[inline(always)]
fn round(x: f32) -> f32 {
    // Truncates towards zero, exactly below 2³¹ in magnitude (saturates beyond).
    let whole = x as i32 as f32;
    if (x - whole).abs() >= 0.5 {
        whole + 1f32.copysign(x)
    } else {
        whole
    }
}

/// One block of activations quantised to 8 bits (see [`QuantizedRows`]).
struct NarrowBlock {
    /// `max|x| / 127`, rounded to f16.
    scale: f32,
    values: [i8; BLOCK],
    /// `d · Σq`, rounded as candle does.
    sum: f32,
    /// `Σq` exactly.
    value_sum: i32,
}

impl NarrowBlock {
    #[inline(always)]
    fn new(block: &[f32]) -> Self {
        let d = max_abs(block) / 127.0;
        let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
        let values: [i8; BLOCK] = std::array::from_fn(|i| round(block[i] * inverse) as i8);
        let value_sum = values.iter().map(|&q| i32::from(q)).sum::<i32>();
        let as_f16 = |v: f32| half::f16::from_f32(v).to_f32();
        let scale = as_f16(d);
        Self {
            scale,
            values,
            // candle's rounding (ggml rounds `d · Σq` once, from the exact `d`).
            sum: as_f16(as_f16(value_sum as f32) * scale),
            value_sum,
        }
    }
}

/// One block of activations quantised to 16 bits (see [`QuantizedRows`]).
struct WideBlock {
    /// `max|x| / 32767`.
    scale: f32,
    values: [i16; BLOCK],
    /// `d · Σq`.
    sum: f32,
}

impl WideBlock {
    #[inline(always)]
    fn new(block: &[f32]) -> Self {
        let d = max_abs(block) / 32767.0;
        let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
        let values: [i16; BLOCK] = std::array::from_fn(|i| round(block[i] * inverse) as i16);
        Self {
            scale: d,
            values,
            sum: d * values.iter().map(|&v| i32::from(v)).sum::<i32>() as f32,
        }
    }
}

impl WideBlock {
    /// The values as the pairs [`QuantizedRows::wide`] lays out.
    fn pairs(&self) -> [i32; 16] {
        let q = self.values;
        let pair = |a: usize, b: usize| i32::from(q[a] as u16) | (i32::from(q[b]) << 16);
        let mut pairs = [0; 16];
        for c in 0..4 {
            let (first, second) = (4 * c, 16 + 4 * c);
            pairs[4 * c..4 * c + 4].copy_from_slice(&[
                pair(first, first + 2),
                pair(first + 1, first + 3),
                pair(second, second + 2),
                pair(second + 1, second + 3),
            ]);
        }
        pairs
    }
}

impl QuantizedRows {
    /// 8-bit activations.
    fn narrow(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            scales: Vec::with_capacity(blocks),
            sums: Vec::with_capacity(blocks),
            value_sums: Vec::with_capacity(blocks),
            values: Vec::with_capacity(x.len()),
            pairs: Vec::new(),
        };
        for block in x.chunks_exact(BLOCK).map(NarrowBlock::new) {
            out.scales.push(block.scale);
            out.sums.push(block.sum);
            out.value_sums.push(block.value_sum);
            out.values.extend(block.values);
        }
        out
    }

    /// 16-bit activations, as pairs in the order of the Q4_1 kernels: for each
    /// 4-value chunk `c` of each half of the block, the values `4c, 4c+2` then
    /// `4c+1, 4c+3` of the first half, then the same of the second half (`16 + …`).
    fn wide(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            scales: Vec::with_capacity(blocks),
            sums: Vec::with_capacity(blocks),
            value_sums: Vec::new(),
            values: Vec::new(),
            pairs: Vec::with_capacity(blocks * 16),
        };
        if std::arch::is_x86_feature_detected!("avx2") {
            for block in x.chunks_exact(BLOCK) {
                // SAFETY: the CPU has AVX2; a block is 32 values.
                let (scale, sum, pairs) = unsafe { x86::wide_pairs_avx2(block) };
                out.pairs.extend(pairs);
                out.scales.push(scale);
                out.sums.push(sum);
            }
            return out;
        }
        for block in x.chunks_exact(BLOCK).map(WideBlock::new) {
            out.pairs.extend(block.pairs());
            out.scales.push(block.scale);
            out.sums.push(block.sum);
        }
        out
    }

    /// Activation row `b` (`blocks` blocks of 32 values).
    fn row(&self, b: usize, blocks: usize) -> Activation<'_> {
        let range = b * blocks..(b + 1) * blocks;
        let per_block = |len: usize| {
            let per = len / self.scales.len().max(1);
            b * blocks * per..(b + 1) * blocks * per
        };
        Activation {
            scales: &self.scales[range.clone()],
            sums: &self.sums[range],
            value_sums: &self.value_sums[per_block(self.value_sums.len())],
            values: &self.values[per_block(self.values.len())],
            pairs: &self.pairs[per_block(self.pairs.len())],
        }
    }
}

/// One activation row's blocks.
struct Activation<'a> {
    scales: &'a [f32],
    sums: &'a [f32],
    value_sums: &'a [i32],
    values: &'a [i8],
    pairs: &'a [i32],
}

/// Rows per tile of the weights' layout.
const TILE_ROWS: usize = 16;

/// Activation rows from which [`Isa::Amx`] multiplies on the tiles rather than with
/// AVX-512 VNNI (the results are the same).
const AMX_MIN_ROWS: usize = 2;

/// A quantised weight matrix `(rows, cols)`, multiplied with one instruction set.
///
/// The data are tiles of 16 rows (the last one padded with zero rows);
/// within a tile, block after block, each block as: the 16 rows' f16 scales, for Q4_1
/// their 16 f16 minimums, then the values in chunks of 64 bytes, 4 per row: for Q4_1 the
/// ggml bytes `4c..4c+4` (values `4c..4c+4` in the low nibbles, `16+4c..` in the high
/// ones) for `c` in 0..4; for Q8_0 values `4c..4c+4` plus 128, as unsigned bytes, for
/// `c` in 0..8.
pub struct Matrix {
    isa: Isa,
    format: Format,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl Matrix {
    /// Lays out `ggml_blocks` (`rows × cols / 32` blocks of `format`, row after row) for
    /// `isa`.
    ///
    /// # Panics
    /// If `isa` is not [`supported`] on this CPU, or the lengths do not match the shape.
    pub fn new(isa: Isa, format: Format, rows: usize, cols: usize, ggml_blocks: &[u8]) -> Self {
        assert!(supported(isa), "{isa:?} is not available on this CPU");
        assert!(
            cols.is_multiple_of(BLOCK),
            "{cols} columns are not whole blocks"
        );
        let block_bytes = format.block_bytes();
        assert_eq!(ggml_blocks.len(), rows * cols / BLOCK * block_bytes);
        let blocks = cols / BLOCK;
        let tiles = rows.div_ceil(TILE_ROWS);
        let mut data = vec![0u8; tiles * TILE_ROWS * blocks * block_bytes];
        let block_at = |row: usize, j: usize| {
            let start = (row * blocks + j) * block_bytes;
            &ggml_blocks[start..start + block_bytes]
        };
        for (index, tile_block) in data.chunks_exact_mut(TILE_ROWS * block_bytes).enumerate() {
            let (tile, j) = (index / blocks, index % blocks);
            for r in 0..TILE_ROWS.min(rows - tile * TILE_ROWS) {
                let src = block_at(tile * TILE_ROWS + r, j);
                tile_block[2 * r..2 * r + 2].copy_from_slice(&src[..2]);
                match format {
                    Format::Q4_1 => {
                        tile_block[32 + 2 * r..34 + 2 * r].copy_from_slice(&src[2..4]);
                        for c in 0..4 {
                            let dst = 64 + c * 64 + 4 * r;
                            tile_block[dst..dst + 4].copy_from_slice(&src[4 + 4 * c..8 + 4 * c]);
                        }
                    }
                    Format::Q8_0 => {
                        for c in 0..8 {
                            let dst = 32 + c * 64 + 4 * r;
                            for i in 0..4 {
                                tile_block[dst + i] = src[2 + 4 * c + i].wrapping_add(128);
                            }
                        }
                    }
                }
            }
        }
        Self {
            isa,
            format,
            rows,
            cols,
            data,
        }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `x · Wᵀ` for `x` of `batch × cols` values (row-major); returns `batch × rows`.
    ///
    /// The work is split into units of rows by `parallel_for(n, work)`, which must call
    /// `work` on ranges that cover `0..n` exactly once (in any order, on any threads),
    /// e.g. `|n, work| work(0..n)` to run on the calling thread.
    ///
    /// # Panics
    /// If `x` is not whole rows of `cols` values.
    pub fn matmul<P>(&self, x: &[f32], parallel_for: P) -> Vec<f32>
    where
        P: FnOnce(usize, &(dyn Fn(Range<usize>) + Sync)),
    {
        assert!(
            x.len().is_multiple_of(self.cols),
            "input is not whole rows of {}",
            self.cols
        );
        let batch = x.len() / self.cols;
        if self.isa == Isa::Amx && batch >= AMX_MIN_ROWS {
            // SAFETY: `new` checked that AMX runs here; the layout is the AVX-512 one.
            return unsafe { amx::int8::matmul(self, x, parallel_for) };
        }
        let activations = match self.format {
            Format::Q4_1 => QuantizedRows::wide(x),
            Format::Q8_0 => QuantizedRows::narrow(x),
        };
        let blocks = self.cols / BLOCK;
        let rows: Vec<Activation> = (0..batch).map(|b| activations.row(b, blocks)).collect();
        let tiles = self.rows.div_ceil(TILE_ROWS);
        let mut output = vec![0f32; batch * self.rows];
        let out = SharedOutput(output.as_mut_ptr());
        parallel_for(tiles, &|range: Range<usize>| {
            assert!(range.end <= tiles);
            for tile in range {
                let (first, n) = (
                    tile * TILE_ROWS,
                    TILE_ROWS.min(self.rows - tile * TILE_ROWS),
                );
                self.tile(tile, &rows, |b, sums| {
                    // SAFETY: the tile's own outputs of row `b`: `parallel_for` hands out
                    // disjoint ranges of tiles, so each is written by one thread only,
                    // and all are done when it returns.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.start().add(b * self.rows + first), n)
                    };
                    dst.copy_from_slice(&sums[..n]);
                });
            }
        });
        output
    }

    /// Computes one tile of rows against every activation row of `x`, handing each
    /// row's 16 sums to `store(row, sums)` (zero rows pad the last tile).
    fn tile(&self, tile: usize, x: &[Activation], mut store: impl FnMut(usize, &[f32; TILE_ROWS])) {
        let tile_bytes = TILE_ROWS * self.cols / BLOCK * self.format.block_bytes();
        let weights = &self.data[tile * tile_bytes..(tile + 1) * tile_bytes];
        let mut b = 0;
        if self.isa == Isa::Avx2 {
            // Four rows per pass, then the two or three left over likewise.
            while x.len() - b >= 2 {
                match x.len() - b {
                    2 => b = self.avx2_rows::<2>(weights, &x[b..], b, &mut store),
                    3 => b = self.avx2_rows::<3>(weights, &x[b..], b, &mut store),
                    _ => b = self.avx2_rows::<4>(weights, &x[b..], b, &mut store),
                }
            }
        }
        for act in &x[b..] {
            let mut sums = [0f32; TILE_ROWS];
            // SAFETY: `new` checked that `self.isa` runs on this CPU; the weights hold as
            // many blocks per row as the activation row.
            unsafe {
                match (self.isa, self.format) {
                    (Isa::Avx512Vnni | Isa::Amx, Format::Q4_1) => {
                        x86::q4_1_tile(weights, act, &mut sums)
                    }
                    (Isa::Avx512Vnni | Isa::Amx, Format::Q8_0) => {
                        x86::q8_0_tile(weights, act, &mut sums)
                    }
                    (Isa::Avx2, Format::Q4_1) => x86::q4_1_tile_avx2(weights, act, &mut sums),
                    (Isa::Avx2, Format::Q8_0) => x86::q8_0_tile_avx2(weights, act, &mut sums),
                }
            }
            store(b, &sums);
            b += 1;
        }
    }

    /// The tile `weights` against the first `R` rows of `x` (rows `first..first + R` of
    /// the input) with the AVX2 kernels for several rows; returns `first + R`.
    fn avx2_rows<const R: usize>(
        &self,
        weights: &[u8],
        x: &[Activation],
        first: usize,
        store: &mut impl FnMut(usize, &[f32; TILE_ROWS]),
    ) -> usize {
        let group: &[Activation; R] = x[..R].try_into().expect("R rows");
        let mut sums = [[0f32; TILE_ROWS]; R];
        // SAFETY: `new` checked that AVX2 runs here (the caller's ISA); the weights hold
        // as many blocks per row as the activation rows.
        unsafe {
            match self.format {
                Format::Q4_1 => x86::q4_1_tile_avx2_rows(weights, group, &mut sums),
                Format::Q8_0 => x86::q8_0_tile_avx2_rows(weights, group, &mut sums),
            }
        }
        for (b, sums) in (first..).zip(&sums) {
            store(b, sums);
        }
        first + R
    }
}

/// The output buffer, shared by the threads of one [`Matrix::matmul`] (each writes its
/// own units).
struct SharedOutput(*mut f32);

impl SharedOutput {
    fn start(&self) -> *mut f32 {
        self.0
    }
}

// SAFETY: see `Matrix::matmul`: every thread writes a disjoint part of the buffer, which
// outlives the parallel section.
unsafe impl Sync for SharedOutput {}

mod x86 {
    //! The kernels: a tile of 16 rows of weights (AVX-512 VNNI, or AVX2 in two halves)
    //! against one activation row of as many blocks.
    use std::arch::x86_64::*;

    use super::{Activation, BLOCK};

    /// How far ahead of the block being multiplied the weights are fetched into the
    /// cache, in bytes. Decoding reads every weight once per token, from memory: without
    /// the hint each block's first load waited on it (a third of the kernel's time on
    /// Zen 3), the hardware prefetcher not running far enough ahead. About 1–3 KiB
    /// was best there (docs/inference.md).
    const PREFETCH_AHEAD: usize = 1024;

    /// Asks for the cache lines of the block of `bytes` that starts [`PREFETCH_AHEAD`]
    /// bytes after `block` (a hint: past the end of the weights it fetches nothing).
    #[inline(always)]
    fn prefetch(block: *const u8, bytes: usize) {
        let ahead = block.wrapping_add(PREFETCH_AHEAD);
        for line in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
        }
    }

    /// A block of 32 activations quantised to 16 bits exactly as [`super::WideBlock::new`]
    /// does, with AVX2, and laid out as [`super::QuantizedRows::wide`] lays it out:
    /// returns the scale, `d · Σq` and the 16 pairs.
    ///
    /// # Safety
    /// AVX2 available; `block` is 32 values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn wide_pairs_avx2(block: &[f32]) -> (f32, f32, [i32; 16]) {
        unsafe {
            let x: [__m256; 4] =
                std::array::from_fn(|i| _mm256_loadu_ps(block.as_ptr().add(8 * i)));
            let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
            // max |x|, passing over NaN as `f32::max` does (`vmaxps` returns its second
            // operand when either is NaN).
            let mut max = _mm256_setzero_ps();
            for x in x {
                max = _mm256_max_ps(_mm256_andnot_ps(sign, x), max);
            }
            let max = _mm_max_ps(_mm256_castps256_ps128(max), _mm256_extractf128_ps::<1>(max));
            let max = _mm_max_ps(max, _mm_movehl_ps(max, max));
            let max = _mm_cvtss_f32(_mm_max_ss(max, _mm_movehdup_ps(max)));
            let d = max / 32767.0;
            let inverse = _mm256_set1_ps(if d == 0.0 { 0.0 } else { 1.0 / d });
            let q = x.map(|x| {
                let y = _mm256_mul_ps(x, inverse);
                // NaN to 0 and the rest into i16's range: what `as i16` makes of them.
                let y = _mm256_and_ps(y, _mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
                let y = _mm256_min_ps(
                    _mm256_max_ps(y, _mm256_set1_ps(-32768.0)),
                    _mm256_set1_ps(32767.0),
                );
                // `super::round`: truncated, then one step away from zero from a half on.
                let whole = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(y));
                let fraction = _mm256_andnot_ps(sign, _mm256_sub_ps(y, whole));
                let away = _mm256_cmp_ps::<_CMP_GE_OQ>(fraction, _mm256_set1_ps(0.5));
                let one = _mm256_or_ps(_mm256_and_ps(y, sign), _mm256_set1_ps(1.0));
                _mm256_cvttps_epi32(_mm256_add_ps(whole, _mm256_and_ps(away, one)))
            });
            let total =
                _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let total = _mm_add_epi32(
                _mm256_castsi256_si128(total),
                _mm256_extracti128_si256::<1>(total),
            );
            let total = _mm_add_epi32(total, _mm_unpackhi_epi64(total, total));
            let total = _mm_cvtsi128_si32(total) + _mm_extract_epi32::<1>(total);
            // i16 values 0..16 as four groups of 4 (64 bits each) in order, then 16..32.
            let first = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(q[0], q[1]));
            let second = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(q[2], q[3]));
            // Group c of each half side by side, c after c; in each group the values
            // 0, 2, 1, 3 (the pairs of `QuantizedRows::wide`).
            let (low, high) = (
                _mm256_unpacklo_epi64(first, second),
                _mm256_unpackhi_epi64(first, second),
            );
            let order =
                |v: __m256i| _mm256_shufflehi_epi16::<0xD8>(_mm256_shufflelo_epi16::<0xD8>(v));
            let mut pairs = [0i32; 16];
            _mm256_storeu_si256(
                pairs.as_mut_ptr().cast(),
                order(_mm256_permute2x128_si256::<0x20>(low, high)),
            );
            _mm256_storeu_si256(
                pairs.as_mut_ptr().add(8).cast(),
                order(_mm256_permute2x128_si256::<0x31>(low, high)),
            );
            (d, d * total as f32, pairs)
        }
    }

    /// Q4_1 tile (see `Matrix`): 16 rows against one row of wide (16-bit) activations,
    /// into `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c,fma")]
    pub(super) unsafe fn q4_1_tile(w: &[u8], x: &Activation, out: &mut [f32; 16]) {
        unsafe {
            // Two nibbles of each row's four bytes as two i16 (bits 0–3 and 16–19).
            let nibbles = _mm512_set1_epi32(0x000F_000F);
            let mut acc = _mm512_setzero_ps();
            for j in 0..x.scales.len() {
                let block = w.as_ptr().add(j * 320);
                prefetch(block, 320);
                let pairs = x.pairs.as_ptr().add(j * 16);
                let mut dots = _mm512_setzero_si512();
                for c in 0..4 {
                    let packed = _mm512_loadu_si512(block.add(64 + 64 * c).cast());
                    let pair = |k: usize| _mm512_set1_epi32(*pairs.add(4 * c + k));
                    // Low nibbles of bytes 0 and 2 (values 4c, 4c+2), of bytes 1 and 3,
                    // then the high nibbles (values 16+4c, …): `QuantizedRows::wide`.
                    for (k, shift) in [0, 8, 4, 12].into_iter().enumerate() {
                        let values = _mm512_and_si512(
                            _mm512_srl_epi32(packed, _mm_cvtsi32_si128(shift)),
                            nibbles,
                        );
                        dots = _mm512_dpwssd_epi32(dots, values, pair(k));
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(block.cast()));
                let m = _mm512_cvtph_ps(_mm256_loadu_si256(block.add(32).cast()));
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(x.scales[j]));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, acc);
                acc = _mm512_fmadd_ps(m, _mm512_set1_ps(x.sums[j]), acc);
            }
            _mm512_storeu_ps(out.as_mut_ptr(), acc);
        }
    }

    /// Q8_0 tile (see `Matrix`): 16 rows against one activation row, into `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c,fma")]
    pub(super) unsafe fn q8_0_tile(w: &[u8], x: &Activation, out: &mut [f32; 16]) {
        unsafe {
            let mut acc = _mm512_setzero_ps();
            for j in 0..x.scales.len() {
                let block = w.as_ptr().add(j * 544);
                prefetch(block, 544);
                // The weights are stored plus 128: Σ(w + 128)·a = Σw·a + 128·Σa.
                let mut dots = _mm512_set1_epi32(-128 * x.value_sums[j]);
                for c in 0..8 {
                    let p = x.values.as_ptr().add(j * BLOCK + 4 * c).cast::<i32>();
                    let quad = _mm512_set1_epi32(p.read_unaligned());
                    let weights = _mm512_loadu_si512(block.add(32 + 64 * c).cast());
                    dots = _mm512_dpbusd_epi32(dots, weights, quad);
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(block.cast()));
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(x.scales[j]));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, acc);
            }
            _mm512_storeu_ps(out.as_mut_ptr(), acc);
        }
    }

    /// The four nibble pairs of 8 rows' packed Q4_1 bytes (4 per row), as i16 pairs
    /// for `vpmaddwd`: the low nibbles of bytes 0 and 2, of bytes 1 and 3, then the high
    /// ones (the order of `QuantizedRows::wide`'s pairs).
    #[inline(always)]
    unsafe fn nibble_pairs(packed: __m256i) -> [__m256i; 4] {
        unsafe {
            let nibbles = _mm256_set1_epi32(0x000F_000F);
            // No closure here: it would not inherit the caller's instruction sets.
            [
                _mm256_and_si256(packed, nibbles),
                _mm256_and_si256(_mm256_srli_epi32::<8>(packed), nibbles),
                _mm256_and_si256(_mm256_srli_epi32::<4>(packed), nibbles),
                _mm256_and_si256(_mm256_srli_epi32::<12>(packed), nibbles),
            ]
        }
    }

    /// [`q4_1_tile`] with AVX2: the tile as two halves of 8 rows, `vpmaddwd` and an add
    /// for each `vpdpwssd` (the same i32 sums), the same float operations per row.
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn q4_1_tile_avx2(w: &[u8], x: &Activation, out: &mut [f32; 16]) {
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 2];
            for j in 0..x.scales.len() {
                let block = w.as_ptr().add(j * 320);
                prefetch(block, 320);
                let pairs = x.pairs.as_ptr().add(j * 16);
                let mut dots = [_mm256_setzero_si256(); 2];
                for c in 0..4 {
                    let pair: [__m256i; 4] =
                        std::array::from_fn(|k| _mm256_set1_epi32(*pairs.add(4 * c + k)));
                    for (half, dots) in dots.iter_mut().enumerate() {
                        let packed = _mm256_loadu_si256(block.add(64 + 64 * c + 32 * half).cast());
                        for (values, pair) in nibble_pairs(packed).into_iter().zip(pair) {
                            *dots = _mm256_add_epi32(*dots, _mm256_madd_epi16(values, pair));
                        }
                    }
                }
                for (half, acc) in acc.iter_mut().enumerate() {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(block.add(16 * half).cast()));
                    let m = _mm256_cvtph_ps(_mm_loadu_si128(block.add(32 + 16 * half).cast()));
                    let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scales[j]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[half]), scale, *acc);
                    *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(x.sums[j]), *acc);
                }
            }
            _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        }
    }

    /// [`q4_1_tile_avx2`] for `R` activation rows at once (prompts, batched decoding):
    /// each half's nibbles are unpacked once for all `R` rows instead of once per row.
    /// Per row the same integer sums and the same float operations in the same order,
    /// so the same bits as `R` calls of [`q4_1_tile_avx2`].
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn q4_1_tile_avx2_rows<const R: usize>(
        w: &[u8],
        x: &[Activation; R],
        out: &mut [[f32; 16]; R],
    ) {
        unsafe {
            for half in 0..2 {
                let mut acc = [_mm256_setzero_ps(); R];
                for j in 0..x[0].scales.len() {
                    let block = w.as_ptr().add(j * 320);
                    if half == 0 {
                        prefetch(block, 320);
                    }
                    let mut dots = [_mm256_setzero_si256(); R];
                    for c in 0..4 {
                        let packed = _mm256_loadu_si256(block.add(64 + 64 * c + 32 * half).cast());
                        for (k, values) in nibble_pairs(packed).into_iter().enumerate() {
                            for (dots, x) in dots.iter_mut().zip(x) {
                                let pair =
                                    _mm256_set1_epi32(*x.pairs.as_ptr().add(j * 16 + 4 * c + k));
                                *dots = _mm256_add_epi32(*dots, _mm256_madd_epi16(values, pair));
                            }
                        }
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(block.add(16 * half).cast()));
                    let m = _mm256_cvtph_ps(_mm_loadu_si128(block.add(32 + 16 * half).cast()));
                    for ((acc, dots), x) in acc.iter_mut().zip(dots).zip(x) {
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scales[j]));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), scale, *acc);
                        *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(x.sums[j]), *acc);
                    }
                }
                for (out, acc) in out.iter_mut().zip(acc) {
                    _mm256_storeu_ps(out.as_mut_ptr().add(8 * half), acc);
                }
            }
        }
    }

    /// [`q8_0_tile`] with AVX2: the tile as two halves of 8 rows; the weights, stored
    /// plus 128, are made signed again and multiplied by `vpmaddubsw` as |w| × (a with
    /// w's sign), which cannot saturate (|w| ≤ 128, |a| ≤ 127), then summed in fours by
    /// `vpmaddwd`: Σw·a, the i32 that `vpdpbusd` gives there.
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn q8_0_tile_avx2(w: &[u8], x: &Activation, out: &mut [f32; 16]) {
        unsafe {
            let bias = _mm256_set1_epi8(-128);
            let ones = _mm256_set1_epi16(1);
            let mut acc = [_mm256_setzero_ps(); 2];
            for j in 0..x.scales.len() {
                let block = w.as_ptr().add(j * 544);
                prefetch(block, 544);
                let mut dots = [_mm256_setzero_si256(); 2];
                for c in 0..8 {
                    let p = x.values.as_ptr().add(j * BLOCK + 4 * c).cast::<i32>();
                    let quad = _mm256_set1_epi32(p.read_unaligned());
                    for (half, dots) in dots.iter_mut().enumerate() {
                        let stored = _mm256_loadu_si256(block.add(32 + 64 * c + 32 * half).cast());
                        let weights = _mm256_xor_si256(stored, bias);
                        let pairs = _mm256_maddubs_epi16(
                            _mm256_sign_epi8(weights, weights),
                            _mm256_sign_epi8(quad, weights),
                        );
                        *dots = _mm256_add_epi32(*dots, _mm256_madd_epi16(pairs, ones));
                    }
                }
                for (half, acc) in acc.iter_mut().enumerate() {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(block.add(16 * half).cast()));
                    let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scales[j]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[half]), scale, *acc);
                }
            }
            _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        }
    }

    /// [`q8_0_tile_avx2`] for `R` activation rows at once (batched decoding, prompts):
    /// each half's weights are loaded and made signed once for all `R` rows. Per row the
    /// same integer sums and float operations in the same order, so the same bits as `R`
    /// calls of [`q8_0_tile_avx2`].
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn q8_0_tile_avx2_rows<const R: usize>(
        w: &[u8],
        x: &[Activation; R],
        out: &mut [[f32; 16]; R],
    ) {
        unsafe {
            let bias = _mm256_set1_epi8(-128);
            let ones = _mm256_set1_epi16(1);
            for half in 0..2 {
                let mut acc = [_mm256_setzero_ps(); R];
                for j in 0..x[0].scales.len() {
                    let block = w.as_ptr().add(j * 544);
                    if half == 0 {
                        prefetch(block, 544);
                    }
                    let mut dots = [_mm256_setzero_si256(); R];
                    for c in 0..8 {
                        let stored = _mm256_loadu_si256(block.add(32 + 64 * c + 32 * half).cast());
                        let weights = _mm256_xor_si256(stored, bias);
                        let magnitudes = _mm256_sign_epi8(weights, weights);
                        for (dots, x) in dots.iter_mut().zip(x) {
                            let p = x.values.as_ptr().add(j * BLOCK + 4 * c).cast::<i32>();
                            let quad = _mm256_set1_epi32(p.read_unaligned());
                            let pairs =
                                _mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(quad, weights));
                            *dots = _mm256_add_epi32(*dots, _mm256_madd_epi16(pairs, ones));
                        }
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(block.add(16 * half).cast()));
                    for ((acc, dots), x) in acc.iter_mut().zip(dots).zip(x) {
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scales[j]));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), scale, *acc);
                    }
                }
                for (out, acc) in out.iter_mut().zip(acc) {
                    _mm256_storeu_ps(out.as_mut_ptr().add(8 * half), acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_block_maximum_are_the_standard_ones() {
        let mut xs = test_values(100_000, 9);
        xs.iter_mut().for_each(|x| *x *= 70_000.0);
        let halves = (-200..200).map(|i| i as f32 + 0.5);
        let edges = [
            0.0,
            -0.0,
            0.499_999_97,
            -0.499_999_97,
            8_388_607.5,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for x in xs.iter().copied().chain(halves).chain(edges) {
            assert_eq!(round(x) as i32, x.round() as i32, "{x}");
        }
        for block in xs.chunks(BLOCK).chain([&edges[..]]) {
            let standard = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(max_abs(block).to_bits(), standard.to_bits());
        }
    }

    /// Blocks of 32 activations at many magnitudes, then blocks holding a zero, NaN, an
    /// infinity, a huge or a subnormal value, a block of zeros and one of halves.
    pub(crate) fn awkward_blocks() -> Vec<Vec<f32>> {
        let mut blocks: Vec<Vec<f32>> = test_values(32 * 500, 3)
            .chunks(32)
            .enumerate()
            .map(|(i, b)| {
                b.iter()
                    .map(|v| v * 10f32.powi(i as i32 % 12 - 4))
                    .collect()
            })
            .collect();
        let specials = [
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            3e38,
            1e-40,
        ];
        for (i, special) in specials.into_iter().enumerate() {
            let mut block = blocks[i].clone();
            block[i] = special;
            blocks.push(block);
        }
        blocks.push(vec![0.0; 32]);
        blocks.push(
            (0..32)
                .map(|i| i as f32 * 32767.0 / 62.0 - 16383.5)
                .collect(),
        );
        blocks
    }

    /// The AVX2 quantisation of a block is [`WideBlock::new`]'s, laid out by
    /// [`WideBlock::pairs`], bit for bit: on the awkward blocks and on a block so small
    /// that 1/scale overflows to infinity.
    #[test]
    fn avx2_wide_pairs_are_wide_blocks() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: no AVX2 on this CPU");
            return;
        }
        let mut blocks = awkward_blocks();
        blocks.push((0..32).map(|i| (i as f32 - 15.5) * 1e-40).collect());
        for block in &blocks {
            let want = WideBlock::new(block);
            // SAFETY: the CPU has AVX2; 32 values.
            let (scale, sum, pairs) = unsafe { x86::wide_pairs_avx2(block) };
            assert_eq!(pairs, want.pairs(), "{block:?}");
            assert_eq!(
                (scale.to_bits(), sum.to_bits()),
                (want.scale.to_bits(), want.sum.to_bits()),
                "{block:?}"
            );
        }
    }

    /// Activations like SmolLM2's: mostly small, a few channels in the tens of thousands
    /// (so that Q4_1's 16-bit values use their high bytes, both signs), and a last row
    /// of zeros (zero scales).
    pub(crate) fn activations(batch: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut x: Vec<f32> = test_values(batch * cols, seed)
            .into_iter()
            .map(|v| 40.0 * v)
            .collect();
        for (row, values) in x.chunks_mut(cols).enumerate() {
            values[(7 * row) % cols] = 30_000.0;
            values[(13 * row + 5) % cols] = -21_000.0;
        }
        if let Some(last) = x.chunks_mut(cols).last() {
            last.fill(0.0);
        }
        x
    }

    /// `x · Wᵀ` as the kernels define it, in plain Rust: per output and block the exact
    /// integer product of the quantised values, then `acc = dots·(d·dₓ) + acc` and, for
    /// Q4_1, `acc = m·sₓ + acc`, each fused, block after block.
    fn reference(format: Format, ggml_blocks: &[u8], rows: usize, x: &[f32]) -> Vec<f32> {
        let block_bytes = format.block_bytes();
        let blocks = ggml_blocks.len() / block_bytes / rows;
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let mut out = Vec::new();
        for input in x.chunks(blocks * BLOCK) {
            for row in ggml_blocks.chunks(blocks * block_bytes) {
                let mut acc = 0f32;
                for (w, a) in row.chunks(block_bytes).zip(input.chunks(BLOCK)) {
                    match format {
                        Format::Q4_1 => {
                            let a = WideBlock::new(a);
                            let q = |i: usize| match i < 16 {
                                true => i32::from(w[4 + i] & 0x0F),
                                false => i32::from(w[4 + i - 16] >> 4),
                            };
                            let dots: i32 = (0..BLOCK).map(|i| q(i) * i32::from(a.values[i])).sum();
                            acc = (dots as f32).mul_add(f16(w) * a.scale, acc);
                            acc = f16(&w[2..]).mul_add(a.sum, acc);
                        }
                        Format::Q8_0 => {
                            let a = NarrowBlock::new(a);
                            let dots: i32 = (0..BLOCK)
                                .map(|i| i32::from(w[2 + i] as i8) * i32::from(a.values[i]))
                                .sum();
                            acc = (dots as f32).mul_add(f16(w) * a.scale, acc);
                        }
                    }
                }
                out.push(acc);
            }
        }
        out
    }

    /// Every kernel this CPU can run gives bit for bit what [`reference`] gives, for both
    /// formats, on shape edges (rows not a multiple of 16, one block and many, one input
    /// row and several, in every grouping of the kernels for several rows), with Q8_0
    /// weights at both ends of their range (-128 and 127): so the AVX2, AVX-512 VNNI and
    /// AMX products are the same on any CPU.
    #[test]
    fn kernels_compute_the_reference_bit_for_bit() {
        for format in [Format::Q4_1, Format::Q8_0] {
            for (batch, rows, cols) in [
                (1, 16, 32),
                (3, 40, 160),
                (2, 3, 64),
                (5, 48, 576),
                (6, 16, 64),
                (7, 17, 96),
            ] {
                let mut data = test_blocks(format, rows, cols, 1);
                if format == Format::Q8_0 {
                    data[2] = 0x80; // -128
                    data[3] = 0x7F;
                }
                let x = activations(batch, cols, 2);
                let bits = |v: Vec<f32>| -> Vec<u32> { v.into_iter().map(f32::to_bits).collect() };
                let want = bits(reference(format, &data, rows, &x));
                for isa in supported_isas() {
                    let matrix = Matrix::new(isa, format, rows, cols, &data);
                    let got = bits(matrix.matmul(&x, |n, work| work(0..n)));
                    assert_eq!(got, want, "{isa:?} {format:?} {batch}×{cols} · {rows}");
                }
            }
        }
    }
}

//! f32 matrix products on Intel AMX tiles, to within about 2⁻¹⁶ of each product.
//!
//! AMX multiplies bf16 (8-bit mantissa) values into f32 sums, at ~1,000 flops per cycle
//! and core, an order of magnitude beyond AVX-512's f32 FMAs. A bf16 product alone would
//! lose f32's precision (relative error ~2⁻⁸ per value), so each f32 is split into two
//! bf16s, `x = hi + lo` with `hi` the top 16 bits of `x` and `lo` the rest rounded to bf16,
//! which leaves an error of at most 2⁻¹⁶·|x|; and `x·w` is summed as
//! `hi·hi' + hi·lo' + lo·hi'` (the dropped `lo·lo'` is as small).
//!
//! Tiles hold 16 rows of 64 bytes: an `A` tile is 16 activation rows × 32 bf16 (one
//! k-chunk), a `B` tile is 16 pairs of k × 16 output features × 2 bf16 (the "VNNI"
//! layout), a `C` tile 16 × 16 f32. [`Bf16x3Matrix`] stores the weights as `B` tiles at
//! load; a product splits the activations once into `A` tiles, every tile 64-byte
//! aligned. A unit of work is 128 activation rows × 32 output features: k-panel by
//! k-panel (128 input features, whose weight tiles stay in L1), two row tiles at a time
//! with four `C` tiles in flight, the sums carried in memory between panels. Tile loads,
//! not tile products, bound the speed (`cargo bench --bench qmatmul`).

use std::arch::asm;
use std::ops::Range;

use super::{bf16_available, configure_tiles, release_tiles};
use crate::SharedOutput;

/// Rows of every tile (activation rows of `A` and `C`, k pairs of `B`).
const TILE_ROWS: usize = 16;
/// bf16 values per `A` tile row: the k-chunk one tile product covers.
const K_CHUNK: usize = 32;
/// Output features per `B` or `C` tile.
const TILE_COLS: usize = 16;
/// bf16 values in one tile (1 KiB).
const TILE_VALUES: usize = TILE_ROWS * K_CHUNK;

/// `x` split into bf16 bits `(hi, lo)` with `x ≈ hi + lo` to within 2⁻¹⁶·|x|.
#[inline]
fn split(x: f32) -> (u16, u16) {
    let hi = x.to_bits() & 0xffff_0000;
    let rest = (x - f32::from_bits(hi)).to_bits();
    // Round to nearest even on the 16 bits dropped.
    let lo = rest.wrapping_add(0x7fff + ((rest >> 16) & 1)) >> 16;
    ((hi >> 16) as u16, lo as u16)
}

/// A weight matrix `(rows, cols)` (output × input features) laid out as AMX `B` tiles of
/// its bf16 halves; multiplies f32 activations to near f32 precision (see the module).
pub struct Bf16x3Matrix {
    rows: usize,
    cols: usize,
    /// `cols` rounded up to whole k-chunks.
    k_chunks: usize,
    /// Per pair of 16-feature tiles (`rows` rounded up to 32), per k-chunk: the `hi` tile
    /// of each of the pair, then their `lo` tiles.
    tiles: Vec<Tile>,
}

impl Bf16x3Matrix {
    /// Lays out `weights` (`rows × cols`, row-major).
    ///
    /// # Panics
    /// If [`bf16_available`] is false, or `weights` is not `rows × cols` values.
    pub fn new(weights: &[f32], rows: usize, cols: usize) -> Self {
        assert!(
            bf16_available(),
            "AMX bf16 is not available to this process"
        );
        assert_eq!(
            weights.len(),
            rows * cols,
            "weights are not {rows} × {cols}"
        );
        let k_chunks = cols.div_ceil(K_CHUNK);
        let pairs = rows.div_ceil(2 * TILE_COLS);
        let mut tiles = vec![0u16; pairs * k_chunks * 4 * TILE_VALUES];
        for (index, group) in tiles.chunks_exact_mut(4 * TILE_VALUES).enumerate() {
            let (pair, chunk) = (index / k_chunks, index % k_chunks);
            let (his, los) = group.split_at_mut(2 * TILE_VALUES);
            for half in 0..2 {
                let first_row = (2 * pair + half) * TILE_COLS;
                for n in 0..TILE_COLS.min(rows.saturating_sub(first_row)) {
                    let row = &weights[(first_row + n) * cols..(first_row + n + 1) * cols];
                    for kk in 0..K_CHUNK.min(cols - chunk * K_CHUNK) {
                        let (hi, lo) = split(row[chunk * K_CHUNK + kk]);
                        // B tile row kk/2 holds, per feature n, the pair (k, k + 1).
                        let at = half * TILE_VALUES + (kk / 2) * 2 * TILE_COLS + 2 * n + kk % 2;
                        his[at] = hi;
                        los[at] = lo;
                    }
                }
            }
        }
        Self {
            rows,
            cols,
            k_chunks,
            tiles: tiles
                .chunks_exact(TILE_VALUES)
                .map(|tile| Tile(tile.try_into().expect("whole tiles")))
                .collect(),
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

    /// `x · Wᵀ (+ bias)` for `x` of `batch × cols` values (row-major); returns
    /// `batch × rows`. `parallel_for` is as for [`crate::Matrix::matmul`].
    ///
    /// # Panics
    /// If `x` is not whole rows of `cols` values, or `bias` is not `rows` values.
    pub fn matmul<P>(&self, x: &[f32], bias: Option<&[f32]>, parallel_for: P) -> Vec<f32>
    where
        P: Fn(usize, &(dyn Fn(Range<usize>) + Sync)),
    {
        self.matmul_then(x, bias, &|_, _, _| {}, parallel_for)
    }

    /// Like [`Bf16x3Matrix::matmul`], then `finish(row, first_col, values)` on each
    /// piece of an output row (bias added) while it is still in cache: the place for an
    /// activation function or a residual sum.
    pub fn matmul_then<P>(
        &self,
        x: &[f32],
        bias: Option<&[f32]>,
        finish: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
        parallel_for: P,
    ) -> Vec<f32>
    where
        P: Fn(usize, &(dyn Fn(Range<usize>) + Sync)),
    {
        assert!(
            x.len().is_multiple_of(self.cols),
            "input is not whole rows of {}",
            self.cols
        );
        if let Some(bias) = bias {
            assert_eq!(bias.len(), self.rows, "bias is not {} values", self.rows);
        }
        let batch = x.len() / self.cols;
        // Whole pairs of row tiles: the kernel runs two at a time.
        let row_tiles = batch.div_ceil(2 * TILE_ROWS) * 2;
        let (hi, lo) = self.split_activations(x, row_tiles, &parallel_for);
        let (hi, lo, weights) = (values(&hi), values(&lo), values(&self.tiles));
        let pairs = self.rows.div_ceil(2 * TILE_COLS);
        let row_blocks = row_tiles.div_ceil(BLOCK_ROW_TILES);
        // Every value is written below before it is read (no zeroing pass).
        let mut output: Vec<f32> = Vec::with_capacity(batch * self.rows);
        let out = SharedOutput(output.as_mut_ptr());
        // A unit: a block of row tiles against one pair of feature tiles, so the pair's
        // weight tiles are read from memory once per block, not once per row tile; units
        // of one block are adjacent, so a thread's chunk keeps its activations in cache.
        parallel_for(row_blocks * pairs, &|range: Range<usize>| {
            // The sums of each row tile of a block, carried from one k-panel to the next.
            let mut sums = [Sums([0.0; TILE_ROWS * 2 * TILE_COLS]); BLOCK_ROW_TILES];
            // SAFETY: `new` checked that AMX is available.
            unsafe { configure_tiles(&[(TILE_ROWS, 64); 8]) };
            for unit in range {
                let (row_block, pair) = (unit / pairs, unit % pairs);
                let first_col = pair * 2 * TILE_COLS;
                let cols = (2 * TILE_COLS).min(self.rows - first_col);
                let tiles =
                    row_block * BLOCK_ROW_TILES..row_tiles.min((row_block + 1) * BLOCK_ROW_TILES);
                // k-panels outermost: the pair's weight tiles of one panel (16 KiB) stay in
                // L1 while every row tile of the block runs over them.
                for first_chunk in (0..self.k_chunks).step_by(PANEL_CHUNKS) {
                    let chunks = PANEL_CHUNKS.min(self.k_chunks - first_chunk);
                    let b = (pair * self.k_chunks + first_chunk) * 4 * TILE_VALUES;
                    // Row tiles two at a time (a block is whole pairs of them).
                    for (two, sums) in tiles.clone().step_by(2).zip(sums.chunks_exact_mut(2)) {
                        let a = (two * self.k_chunks + first_chunk) * TILE_VALUES;
                        let next = self.k_chunks * TILE_VALUES;
                        let [first, second] = sums else {
                            unreachable!("chunks of two")
                        };
                        // SAFETY: `hi`/`lo` hold `k_chunks` tiles per row tile for an even
                        // number of row tiles, and `self.tiles` `k_chunks` groups of 4
                        // tiles per pair.
                        unsafe {
                            panel_product(
                                [hi[a..].as_ptr(), hi[a + next..].as_ptr()],
                                [lo[a..].as_ptr(), lo[a + next..].as_ptr()],
                                weights[b..].as_ptr(),
                                chunks,
                                first_chunk > 0,
                                [&mut first.0, &mut second.0],
                            );
                        }
                    }
                }
                for (row_tile, Sums(block)) in tiles.zip(&sums) {
                    let first_row = row_tile * TILE_ROWS;
                    for r in 0..TILE_ROWS.min(batch.saturating_sub(first_row)) {
                        let src = &block[r * 2 * TILE_COLS..r * 2 * TILE_COLS + cols];
                        let bias = bias.map(|bias| &bias[first_col..first_col + cols]);
                        // SAFETY: units are disjoint blocks of the output, written by one
                        // thread each while `output` (with that capacity) outlives the
                        // parallel section; the piece is whole once written.
                        let dst = unsafe {
                            let dst = out.start().add((first_row + r) * self.rows + first_col);
                            write_sums(src, bias, dst);
                            std::slice::from_raw_parts_mut(dst, cols)
                        };
                        finish(first_row + r, first_col, dst);
                    }
                }
            }
            // SAFETY: as above.
            unsafe { release_tiles() };
        });
        // SAFETY: the units cover every (row, column) of the output, each written above.
        unsafe { output.set_len(batch * self.rows) };
        output
    }

    /// The activations' bf16 halves as `A` tiles, zero-padded to `row_tiles` tiles of 16
    /// rows: per tile of 16 rows, per
    /// k-chunk, 16 rows × 32 values (so a tile load reads 1 KiB in a row); split by row
    /// tiles over `parallel_for`.
    fn split_activations<P>(
        &self,
        x: &[f32],
        row_tiles: usize,
        parallel_for: &P,
    ) -> (Vec<Tile>, Vec<Tile>)
    where
        P: Fn(usize, &(dyn Fn(Range<usize>) + Sync)),
    {
        let len = row_tiles * self.k_chunks;
        // Every value, padding included, is written below (no zeroing pass).
        let (mut hi, mut lo) = (
            Vec::<Tile>::with_capacity(len),
            Vec::<Tile>::with_capacity(len),
        );
        let (hi_out, lo_out) = (
            SharedHalves(hi.as_mut_ptr().cast::<u16>()),
            SharedHalves(lo.as_mut_ptr().cast::<u16>()),
        );
        parallel_for(row_tiles, &|range: Range<usize>| {
            for row in range.start * TILE_ROWS..range.end * TILE_ROWS {
                let values = x.get(row * self.cols..(row + 1) * self.cols).unwrap_or(&[]);
                let (row_tile, r) = (row / TILE_ROWS, row % TILE_ROWS);
                for chunk in 0..self.k_chunks {
                    let at = (row_tile * self.k_chunks + chunk) * TILE_VALUES + r * K_CHUNK;
                    let piece = values.get(chunk * K_CHUNK..).unwrap_or(&[]);
                    let piece = &piece[..piece.len().min(K_CHUNK)];
                    // SAFETY: each row tile of the halves is written by the one thread
                    // given it; both buffers (with that capacity) outlive the parallel
                    // section.
                    unsafe { split_piece(piece, hi_out.at(at), lo_out.at(at)) };
                }
            }
        });
        // SAFETY: the row tiles cover every row, each written in full above.
        unsafe {
            hi.set_len(len);
            lo.set_len(len);
        }
        (hi, lo)
    }
}

/// Writes the halves of `piece` (at most one chunk) to `hi` and `lo`, zeros after it up
/// to a whole chunk.
///
/// # Safety
/// AMX is [`bf16_available`] (so AVX-512 is); `hi` and `lo` are valid for a chunk's writes.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn split_piece(piece: &[f32], hi: *mut u16, lo: *mut u16) {
    let (mut his, mut los) = ([0u16; K_CHUNK], [0u16; K_CHUNK]);
    for ((v, h), l) in piece.iter().zip(&mut his).zip(&mut los) {
        (*h, *l) = split(*v);
    }
    unsafe {
        hi.copy_from_nonoverlapping(his.as_ptr(), K_CHUNK);
        lo.copy_from_nonoverlapping(los.as_ptr(), K_CHUNK);
    }
}

/// Writes `sums` (plus `bias`) to `dst`.
///
/// # Safety
/// AMX is [`bf16_available`] (so AVX-512 is); `dst` is valid for `sums.len()` writes.
#[target_feature(enable = "avx512f")]
unsafe fn write_sums(sums: &[f32], bias: Option<&[f32]>, dst: *mut f32) {
    let mut row = [0f32; 2 * TILE_COLS];
    let row = &mut row[..sums.len()];
    match bias {
        Some(bias) => {
            for ((r, s), b) in row.iter_mut().zip(sums).zip(bias) {
                *r = s + b;
            }
        }
        None => row.copy_from_slice(sums),
    }
    unsafe { dst.copy_from_nonoverlapping(row.as_ptr(), row.len()) };
}

/// One tile's values, 64-byte aligned: a tile load whose rows straddle cache lines
/// takes about six times as long.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Tile([u16; TILE_VALUES]);

/// The values of `tiles`, one tile after another.
fn values(tiles: &[Tile]) -> &[u16] {
    // SAFETY: `Tile` is `repr(C)` over `[u16; TILE_VALUES]`, 1 KiB with no padding.
    unsafe { std::slice::from_raw_parts(tiles.as_ptr().cast(), tiles.len() * TILE_VALUES) }
}

/// One row tile's sums for one pair of feature tiles, 64-byte aligned for tile loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Sums([f32; TILE_ROWS * 2 * TILE_COLS]);

/// Row tiles per unit of work: 128 activation rows over which each k-panel of the
/// unit's weight tiles is reused.
const BLOCK_ROW_TILES: usize = 8;
/// k-chunks per panel: 128 input features, whose weight tiles for one pair (16 KiB)
/// stay in L1 across a block's row tiles.
const PANEL_CHUNKS: usize = 4;

/// A buffer of bf16 halves, shared by the threads of one split (each writes its rows).
struct SharedHalves(*mut u16);

impl SharedHalves {
    /// The pointer to value `offset`.
    ///
    /// # Safety
    /// `offset` within the buffer.
    unsafe fn at(&self, offset: usize) -> *mut u16 {
        unsafe { self.0.add(offset) }
    }
}

// SAFETY: see `Bf16x3Matrix::split_activations`.
unsafe impl Sync for SharedHalves {}

/// One k-panel of two row tiles: 2 × 16 activation rows (`hi`, `lo`: a tile per chunk
/// for each) against `chunks` chunks of one pair of feature tiles (`b`: per chunk, hi hi
/// lo lo tiles), added to `sums` (per row tile, 16 rows × 32 f32) when `accumulate`,
/// else into them. Four accumulator tiles (2 row tiles × 2 feature tiles) keep four
/// independent chains of tile products in flight.
///
/// # Safety
/// Tiles configured on this thread ([`configure_tiles`](super::configure_tiles)); `hi`/`lo` hold `chunks` tiles
/// each and `b` `chunks` groups of 4 tiles.
#[inline]
unsafe fn panel_product(
    hi: [*const u16; 2],
    lo: [*const u16; 2],
    b: *const u16,
    chunks: usize,
    accumulate: bool,
    sums: [&mut [f32; TILE_ROWS * 2 * TILE_COLS]; 2],
) {
    let a_stride = K_CHUNK * 2;
    let b_stride = 2 * TILE_COLS * 2;
    let c_stride = 2 * TILE_COLS * 4;
    let [c0, c2] = sums.map(|s| s.as_mut_ptr());
    unsafe {
        if accumulate {
            asm!(
                "tileloadd tmm0, [{c0} + {stride}*1]",
                "tileloadd tmm1, [{c1} + {stride}*1]",
                "tileloadd tmm2, [{c2} + {stride}*1]",
                "tileloadd tmm3, [{c3} + {stride}*1]",
                c0 = in(reg) c0,
                c1 = in(reg) c0.add(TILE_COLS),
                c2 = in(reg) c2,
                c3 = in(reg) c2.add(TILE_COLS),
                stride = in(reg) c_stride,
                options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        for chunk in 0..chunks {
            let tiles = b.add(chunk * 4 * TILE_VALUES);
            // tmm0..3: sums of (row tile, feature tile) 00, 01, 10, 11; tmm4/5: the row
            // tiles' hi, then lo; tmm6/7: the feature tiles' hi, then lo, then hi again.
            asm!(
                "tileloadd tmm4, [{hi0} + {a_stride}*1]",
                "tileloadd tmm5, [{hi1} + {a_stride}*1]",
                "tileloadd tmm6, [{b_hi0} + {b_stride}*1]",
                "tileloadd tmm7, [{b_hi1} + {b_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tileloadd tmm6, [{b_lo0} + {b_stride}*1]",
                "tileloadd tmm7, [{b_lo1} + {b_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tileloadd tmm4, [{lo0} + {a_stride}*1]",
                "tileloadd tmm5, [{lo1} + {a_stride}*1]",
                "tileloadd tmm6, [{b_hi0} + {b_stride}*1]",
                "tileloadd tmm7, [{b_hi1} + {b_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                hi0 = in(reg) hi[0].add(chunk * TILE_VALUES),
                hi1 = in(reg) hi[1].add(chunk * TILE_VALUES),
                lo0 = in(reg) lo[0].add(chunk * TILE_VALUES),
                lo1 = in(reg) lo[1].add(chunk * TILE_VALUES),
                a_stride = in(reg) a_stride,
                b_hi0 = in(reg) tiles,
                b_hi1 = in(reg) tiles.add(TILE_VALUES),
                b_lo0 = in(reg) tiles.add(2 * TILE_VALUES),
                b_lo1 = in(reg) tiles.add(3 * TILE_VALUES),
                b_stride = in(reg) b_stride,
                options(nostack, readonly),
            );
        }
        asm!(
            "tilestored [{c0} + {stride}*1], tmm0",
            "tilestored [{c1} + {stride}*1], tmm1",
            "tilestored [{c2} + {stride}*1], tmm2",
            "tilestored [{c3} + {stride}*1], tmm3",
            c0 = in(reg) c0,
            c1 = in(reg) c0.add(TILE_COLS),
            c2 = in(reg) c2,
            c3 = in(reg) c2.add(TILE_COLS),
            stride = in(reg) c_stride,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values as values;

    #[test]
    fn split_halves_sum_to_the_value_within_two_to_the_minus_16() {
        for x in
            values(10_000, 3)
                .into_iter()
                .chain([0.0, -0.0, 1.0, 1e-30, 3.0e38, f32::MIN_POSITIVE])
        {
            let (hi, lo) = split(x);
            let sum = f64::from(f32::from_bits(u32::from(hi) << 16))
                + f64::from(f32::from_bits(u32::from(lo) << 16));
            let error = (sum - f64::from(x)).abs();
            assert!(error <= f64::from(x).abs() * 2f64.powi(-16), "{x}: {sum}");
        }
    }

    /// Every shape edge: batch not a multiple of 16, features not a multiple of 32, input
    /// features not a multiple of 32, with and without bias; relative to the sum of
    /// |products| the error stays within 2⁻¹⁴ (f32's own rounding is 2⁻²⁴).
    #[test]
    fn products_match_the_exact_ones_on_every_shape_edge() {
        if !bf16_available() {
            eprintln!("AMX bf16 not available on this CPU: nothing to test");
            return;
        }
        for (batch, rows, cols) in [
            (1, 16, 32),
            (17, 40, 70),
            (33, 384, 384),
            (5, 3, 1536),
            (300, 48, 64),
        ] {
            let w = values(rows * cols, 1);
            let x = values(batch * cols, 2);
            let bias = values(rows, 4);
            let matrix = Bf16x3Matrix::new(&w, rows, cols);
            for bias in [None, Some(bias.as_slice())] {
                let got = matrix.matmul(&x, bias, |n, work| work(0..n));
                let want = crate::exact_product(&x, &w, bias, rows, cols);
                let scale = x
                    .chunks(cols)
                    .map(|xr| xr.iter().map(|v| v.abs()).sum::<f32>())
                    .fold(0f32, f32::max);
                for (g, e) in got.iter().zip(&want) {
                    let error = (f64::from(*g) - e).abs();
                    assert!(
                        error <= f64::from(scale) * 2f64.powi(-14),
                        "{batch}×{cols} · {rows}: got {g}, exact {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn work_split_over_threads_gives_the_same_bits() {
        if !bf16_available() {
            return;
        }
        let (batch, rows, cols) = (270, 96, 128);
        let (w, x) = (values(rows * cols, 5), values(batch * cols, 6));
        let matrix = Bf16x3Matrix::new(&w, rows, cols);
        let alone = matrix.matmul(&x, None, |n, work| work(0..n));
        let pool = crate::WorkPool::new(3);
        let pooled = matrix.matmul(&x, None, |n, work| pool.parallel_for(n, work));
        assert_eq!(alone, pooled);
    }
}

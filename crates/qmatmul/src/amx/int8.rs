//! Quantized products of several activation rows on AMX-INT8 tiles, bit for bit what
//! the AVX-512 VNNI kernels give for each row alone.
//!
//! The weights stay in [`Matrix`]'s AVX-512 layout (tiles of 16 rows, per block their
//! scales then their values 4 bytes per row): a block of 16 rows is one `B` tile of 8
//! rows × 64 bytes (k in fours × 16 output features × 4 bytes), Q8_0's as stored
//! (values plus 128, unsigned), Q4_1's nibbles spread to one byte each on the way. The
//! activations are quantised exactly as for the VNNI kernels, then laid out as `A`
//! tiles: per group of 16 rows and per block, 16 rows × 32 bytes. Q8_0's 8-bit values
//! are one tile (`tdpbsud`: signed × unsigned); Q4_1's 16-bit values `q = 256·hi + lo`
//! two, `lo` unsigned (`tdpbuud`) and `hi` signed (`tdpbsud`).
//!
//! Each block's integer sums (a `C` tile of 16 rows × 16 features) are exact, as the VNNI
//! kernels' are; they are then scaled and added to the row's f32 sums with the same
//! operations in the same order as there, so a row's result does not depend on which
//! kernel ran or on which rows it ran with (the engine's batched decoding relies on it).
//! The per-block scaling runs on AVX-512 and bounds the speed: about 10 instructions per
//! activation row, block and 16 features, against about 70 per row for the VNNI kernel.

use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;

use super::{configure_tiles, release_tiles};
use crate::{BLOCK, Format, Matrix, NarrowBlock, SharedOutput, TILE_ROWS};

/// One 64-byte-aligned tile row: a tile load whose rows straddle cache lines is several
/// times slower.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Bytes of one `A` tile row: the 32 values of a block.
const A_ROW_BYTES: usize = BLOCK;

/// Shapes of the tiles (rows, bytes per row) for products of `batch` activation rows:
/// tmm0/tmm1 `A` (activations; Q4_1's low then high bytes), tmm2/tmm3 `B` (one block of
/// 16 weight rows each), tmm4–tmm7 `C` (the integer sums of each `A` with each `B`).
/// `A` and `C` have as many rows as the batch up to 16: a tile product or store takes
/// time in proportion to its rows.
fn tile_shapes(batch: usize) -> [(usize, usize); 8] {
    let rows = batch.min(TILE_ROWS);
    let (a, b, c) = ((rows, A_ROW_BYTES), (BLOCK / 4, 64), (rows, 64));
    [a, a, b, b, c, c, c, c]
}

/// Activation rows quantised per block as for the VNNI kernels, laid out as `A` tiles.
struct TileRows {
    /// Per group of 16 rows, per block, one line per row: Q4_1's 32 low bytes then 32
    /// high bytes of the 16-bit values; Q8_0's 32 values then 32 unused bytes. Rows past
    /// the batch are zero.
    lines: Vec<Line>,
    /// Per row and block (row-major): the block's scale.
    scales: Vec<f32>,
    /// Per row and block: `d · Σq` (Q4_1).
    sums: Vec<f32>,
    /// Per row and block: `Σq` (Q8_0, to undo the +128 of the weights).
    value_sums: Vec<i32>,
}

impl TileRows {
    /// Quantises `x` (whole rows of `cols` values) for `format`'s kernels.
    ///
    /// # Safety
    /// AVX-512 F and BW available (AMX implies them).
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn new(format: Format, x: &[f32], cols: usize) -> Self {
        let (batch, blocks) = (x.len() / cols, cols / BLOCK);
        let groups = batch.div_ceil(TILE_ROWS);
        let mut out = Self {
            lines: vec![Line([0; 64]); groups * blocks * TILE_ROWS],
            scales: Vec::with_capacity(batch * blocks),
            sums: Vec::with_capacity(batch * blocks),
            value_sums: Vec::with_capacity(batch * blocks),
        };
        for (row, values) in x.chunks_exact(cols).enumerate() {
            let (group, r) = (row / TILE_ROWS, row % TILE_ROWS);
            for (j, block) in values.chunks_exact(BLOCK).enumerate() {
                let line = &mut out.lines[(group * blocks + j) * TILE_ROWS + r].0;
                match format {
                    Format::Q4_1 => {
                        // SAFETY: the caller's; a block is 32 values.
                        let (scale, sum) = unsafe { wide_line(block, line) };
                        out.scales.push(scale);
                        out.sums.push(sum);
                    }
                    Format::Q8_0 => {
                        let block = NarrowBlock::new(block);
                        for (l, q) in line.iter_mut().zip(block.values) {
                            *l = q as u8;
                        }
                        out.scales.push(block.scale);
                        out.value_sums.push(block.value_sum);
                    }
                }
            }
        }
        out
    }
}

/// A block of 32 activations quantised to 16 bits, exactly as [`WideBlock::new`] does
/// (scale, values, `d · Σq`), with AVX-512: the values go to `line` as their 32 low
/// bytes then their 32 high bytes. Returns the scale and `d · Σq`.
///
/// # Safety
/// AVX-512 F and BW available; `block` is 32 values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn wide_line(block: &[f32], line: &mut [u8; 64]) -> (f32, f32) {
    // SAFETY: 32 values.
    let halves = unsafe {
        [
            _mm512_loadu_ps(block.as_ptr()),
            _mm512_loadu_ps(block.as_ptr().add(16)),
        ]
    };
    // |x|, NaN as 0: `f32::max` passes over NaN.
    let magnitudes = halves.map(|v| {
        let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
        _mm512_maskz_mov_ps(ordered, _mm512_abs_ps(v))
    });
    let max = _mm512_reduce_max_ps(_mm512_max_ps(magnitudes[0], magnitudes[1])).max(0.0);
    let d = max / 32767.0;
    let inverse = _mm512_set1_ps(if d == 0.0 { 0.0 } else { 1.0 / d });
    let values = halves.map(|v| {
        let x = _mm512_mul_ps(v, inverse);
        // NaN to 0 and the rest into i16's range: what `as i16` makes of them (for a
        // block of tiny values `1 / d` is infinite).
        let x = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(x, x), x);
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-32768.0)),
            _mm512_set1_ps(32767.0),
        );
        // Rounded half away from zero, as `f32::round`.
        let whole = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
        let fraction = _mm512_abs_ps(_mm512_sub_ps(x, whole));
        let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(fraction, _mm512_set1_ps(0.5));
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        let one = _mm512_castsi512_ps(_mm512_or_si512(
            sign,
            _mm512_castps_si512(_mm512_set1_ps(1.0)),
        ));
        _mm512_cvttps_epi32(_mm512_mask_add_ps(whole, away, whole, one))
    });
    let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(values[0], values[1]));
    for (half, v) in values.into_iter().enumerate() {
        let q = _mm512_cvtsepi32_epi16(v);
        let low = _mm256_cvtepi16_epi8(q);
        let high = _mm256_cvtepi16_epi8(_mm256_srai_epi16::<8>(q));
        // SAFETY: 16 bytes each within the 64 of the line.
        unsafe {
            _mm_storeu_si128(line.as_mut_ptr().add(16 * half).cast(), low);
            _mm_storeu_si128(line.as_mut_ptr().add(A_ROW_BYTES + 16 * half).cast(), high);
        }
    }
    (d, d * sum as f32)
}

/// `x · Wᵀ` for `x` of `batch × cols` values (row-major) on the tiles; returns
/// `batch × rows`, the same values as [`Matrix::matmul`] with the VNNI kernels.
/// `parallel_for` is as there; the units are pairs of the weights' tiles of 16 rows.
///
/// # Safety
/// [`super::int8_available`]; `matrix` is in the AVX-512 layout.
pub(crate) unsafe fn matmul<P>(matrix: &Matrix, x: &[f32], parallel_for: P) -> Vec<f32>
where
    P: FnOnce(usize, &(dyn Fn(Range<usize>) + Sync)),
{
    let (rows, cols) = (matrix.rows, matrix.cols);
    let batch = x.len() / cols;
    // SAFETY: AMX implies AVX-512 (`super::int8_available`).
    let activations = unsafe { TileRows::new(matrix.format, x, cols) };
    let tiles = rows.div_ceil(TILE_ROWS);
    let tile_bytes = matrix.data.len() / tiles;
    // Every value is written below before it is read (no zeroing pass).
    let mut output: Vec<f32> = Vec::with_capacity(batch * rows);
    let out = SharedOutput(output.as_mut_ptr());
    parallel_for(tiles.div_ceil(2), &|range: Range<usize>| {
        // SAFETY: the caller checked that AMX is available.
        unsafe { configure_tiles(&tile_shapes(batch)) };
        for unit in range {
            let (first, end) = (2 * unit, tiles.min(2 * unit + 2));
            // The unit's one or two tiles.
            let mut pair: [&[u8]; 2] = [&[], &[]];
            for (slot, tile) in pair.iter_mut().zip(first..end) {
                *slot = &matrix.data[tile * tile_bytes..(tile + 1) * tile_bytes];
            }
            let tiles = &pair[..end - first];
            let first_col = first * TILE_ROWS;
            let place = Place {
                start: out.start(),
                row_stride: rows,
                first_col,
                cols: (2 * TILE_ROWS).min(rows - first_col),
                batch,
            };
            // SAFETY: AMX (so AVX-512) is available and the tiles configured; the units
            // are disjoint columns of the output, each written by one thread, which
            // (with that capacity) outlives the parallel section.
            unsafe {
                match matrix.format {
                    Format::Q4_1 => q4_1_pair(tiles, &activations, &place),
                    Format::Q8_0 => q8_0_pair(tiles, &activations, &place),
                }
            }
        }
        // SAFETY: as above.
        unsafe { release_tiles() };
    });
    // SAFETY: the units cover every column of every row, each written above.
    unsafe { output.set_len(batch * rows) };
    output
}

/// Where a unit's results go: columns `first_col..first_col + cols` (at most 32) of
/// each of `batch` rows of `row_stride` values from `start`.
struct Place {
    start: *mut f32,
    row_stride: usize,
    first_col: usize,
    cols: usize,
    batch: usize,
}

impl Place {
    /// Writes the sums of row group `group` (its first `rows` rows) for each weight
    /// tile of the unit, as many lanes as the tile's columns.
    ///
    /// # Safety
    /// The place is valid for writes, AVX-512 available.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn write(&self, group: usize, sums: &[[__m512; TILE_ROWS]], rows: usize) {
        for (half, sums) in sums.iter().enumerate() {
            let cols = self.cols.saturating_sub(half * TILE_ROWS).min(TILE_ROWS);
            let mask = (1u32 << cols).wrapping_sub(1) as u16;
            for (r, sums) in sums.iter().enumerate().take(rows) {
                let row = group * TILE_ROWS + r;
                let col = self.first_col + half * TILE_ROWS;
                // SAFETY: the caller's; `row < batch`, the columns within the unit's.
                unsafe {
                    let dst = self.start.add(row * self.row_stride + col);
                    _mm512_mask_storeu_ps(dst, mask, *sums);
                }
            }
        }
    }
}

/// Integer sums of one block, `C` tiles of 16 rows × 16 features.
#[repr(C, align(64))]
struct Sums([Line; TILE_ROWS]);

impl Sums {
    fn new() -> Self {
        Self([Line([0; 64]); TILE_ROWS])
    }

    /// Row `r`'s 16 sums.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn row(&self, r: usize) -> __m512i {
        // SAFETY: a line is 64 aligned bytes.
        unsafe { _mm512_load_si512(self.0[r].0.as_ptr().cast()) }
    }
}

/// A `B` tile: one block of 16 weight rows, 8 rows of 64 bytes.
type BTile = [Line; BLOCK / 4];

/// Bytes per block of a Q4_1 / Q8_0 weight tile: 16 rows' scales (and minimums), values.
const Q4_1_BLOCK: usize = TILE_ROWS * 20;
const Q8_0_BLOCK: usize = TILE_ROWS * 34;

/// One or two Q4_1 weight tiles (16 rows each, `Matrix`'s layout) against every
/// activation row. Two tiles share the activations' tiles and keep four tile products
/// in flight.
///
/// # Safety
/// AMX and AVX-512 available, tiles configured as [`tile_shapes`] says for
/// `place.batch`; `place` valid.
#[target_feature(enable = "avx512f,avx512bw,f16c,fma")]
unsafe fn q4_1_pair(tiles: &[&[u8]], x: &TileRows, place: &Place) {
    let blocks = tiles[0].len() / Q4_1_BLOCK;
    let nibble = _mm512_set1_epi8(0x0F);
    // The `B` tiles of each tile of the pair (a missing second tile multiplies zeros;
    // its sums are not written).
    let mut b = [[Line([0; 64]); BLOCK / 4]; 2];
    let mut sums = [0, 1, 2, 3].map(|_| Sums::new());
    for group in 0..place.batch.div_ceil(TILE_ROWS) {
        let rows = TILE_ROWS.min(place.batch - group * TILE_ROWS);
        let mut acc = [[_mm512_setzero_ps(); TILE_ROWS]; 2];
        for j in 0..blocks {
            let at = j * Q4_1_BLOCK;
            // SAFETY: a block is 320 bytes: scales, minimums, 4 × 64 bytes of nibbles;
            // the lines and sums hold whole tiles.
            unsafe {
                for (tile, b) in tiles.iter().zip(&mut b) {
                    unpack_nibbles(&tile[at + 64..at + Q4_1_BLOCK], nibble, b);
                }
                let a = x.lines[(group * blocks + j) * TILE_ROWS..]
                    .as_ptr()
                    .cast::<u8>();
                let [s0, s1, s2, s3] = &mut sums;
                asm!(
                    "tileloadd tmm0, [{a} + {stride}*1]",
                    "tileloadd tmm1, [{a_high} + {stride}*1]",
                    "tileloadd tmm2, [{b0} + {stride}*1]",
                    "tileloadd tmm3, [{b1} + {stride}*1]",
                    "tilezero tmm4",
                    "tilezero tmm5",
                    "tilezero tmm6",
                    "tilezero tmm7",
                    "tdpbuud tmm4, tmm0, tmm2",
                    "tdpbuud tmm6, tmm0, tmm3",
                    "tdpbsud tmm5, tmm1, tmm2",
                    "tdpbsud tmm7, tmm1, tmm3",
                    "tilestored [{s0} + {stride}*1], tmm4",
                    "tilestored [{s1} + {stride}*1], tmm5",
                    "tilestored [{s2} + {stride}*1], tmm6",
                    "tilestored [{s3} + {stride}*1], tmm7",
                    a = in(reg) a,
                    a_high = in(reg) a.add(A_ROW_BYTES),
                    b0 = in(reg) b[0].as_ptr(),
                    b1 = in(reg) b[1].as_ptr(),
                    s0 = in(reg) s0.0.as_mut_ptr(),
                    s1 = in(reg) s1.0.as_mut_ptr(),
                    s2 = in(reg) s2.0.as_mut_ptr(),
                    s3 = in(reg) s3.0.as_mut_ptr(),
                    stride = in(reg) 64usize,
                    options(nostack),
                );
                for (half, (tile, acc)) in tiles.iter().zip(&mut acc).enumerate() {
                    let block = tile[at..].as_ptr();
                    let d = _mm512_cvtph_ps(_mm256_loadu_si256(block.cast()));
                    let m = _mm512_cvtph_ps(_mm256_loadu_si256(block.add(32).cast()));
                    let (low, high) = (&sums[2 * half], &sums[2 * half + 1]);
                    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                        let at = (group * TILE_ROWS + r) * blocks + j;
                        let dots = _mm512_add_epi32(_mm512_slli_epi32(high.row(r), 8), low.row(r));
                        // As `x86::q4_1_tile`, operation for operation.
                        let scale = _mm512_mul_ps(d, _mm512_set1_ps(x.scales[at]));
                        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, *acc);
                        *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(x.sums[at]), *acc);
                    }
                }
            }
        }
        // SAFETY: the caller's.
        unsafe { place.write(group, &acc[..tiles.len()], rows) };
    }
}

/// Spreads a Q4_1 tile block's 4 × 64 bytes of nibbles to one byte per value: chunk
/// `c` holds values `4c..4c+4` of each row in its low nibbles (`B` row `c`) and
/// `16+4c..` in its high ones (`B` row `4 + c`).
///
/// # Safety
/// AVX-512 BW available; `nibbles` is 256 bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unpack_nibbles(nibbles: &[u8], mask: __m512i, b: &mut BTile) {
    for c in 0..4 {
        // SAFETY: 64 bytes from `64 c` of the 256; lines are 64 aligned bytes.
        unsafe {
            let packed = _mm512_loadu_si512(nibbles.as_ptr().add(64 * c).cast());
            let low = _mm512_and_si512(packed, mask);
            let high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
            _mm512_store_si512(b[c].0.as_mut_ptr().cast(), low);
            _mm512_store_si512(b[4 + c].0.as_mut_ptr().cast(), high);
        }
    }
}

/// One or two Q8_0 weight tiles (16 rows each, `Matrix`'s layout) against every
/// activation row.
///
/// # Safety
/// As [`q4_1_pair`].
#[target_feature(enable = "avx512f,avx512bw,f16c,fma")]
unsafe fn q8_0_pair(tiles: &[&[u8]], x: &TileRows, place: &Place) {
    let blocks = tiles[0].len() / Q8_0_BLOCK;
    let mut b = [[Line([0; 64]); BLOCK / 4]; 2];
    let mut sums = [Sums::new(), Sums::new()];
    for group in 0..place.batch.div_ceil(TILE_ROWS) {
        let rows = TILE_ROWS.min(place.batch - group * TILE_ROWS);
        let mut acc = [[_mm512_setzero_ps(); TILE_ROWS]; 2];
        for j in 0..blocks {
            let at = j * Q8_0_BLOCK;
            // SAFETY: a block is 544 bytes: scales, then 8 × 64 bytes of values (the
            // `B` tile, copied to aligned lines); as in `q4_1_pair` otherwise.
            unsafe {
                for (tile, b) in tiles.iter().zip(&mut b) {
                    for (c, line) in b.iter_mut().enumerate() {
                        let values = _mm512_loadu_si512(tile[at + 32 + 64 * c..].as_ptr().cast());
                        _mm512_store_si512(line.0.as_mut_ptr().cast(), values);
                    }
                }
                let a = x.lines[(group * blocks + j) * TILE_ROWS..]
                    .as_ptr()
                    .cast::<u8>();
                let [s0, s1] = &mut sums;
                asm!(
                    "tileloadd tmm0, [{a} + {stride}*1]",
                    "tileloadd tmm2, [{b0} + {stride}*1]",
                    "tileloadd tmm3, [{b1} + {stride}*1]",
                    "tilezero tmm4",
                    "tilezero tmm6",
                    "tdpbsud tmm4, tmm0, tmm2",
                    "tdpbsud tmm6, tmm0, tmm3",
                    "tilestored [{s0} + {stride}*1], tmm4",
                    "tilestored [{s1} + {stride}*1], tmm6",
                    a = in(reg) a,
                    b0 = in(reg) b[0].as_ptr(),
                    b1 = in(reg) b[1].as_ptr(),
                    s0 = in(reg) s0.0.as_mut_ptr(),
                    s1 = in(reg) s1.0.as_mut_ptr(),
                    stride = in(reg) 64usize,
                    options(nostack),
                );
                for (half, (tile, acc)) in tiles.iter().zip(&mut acc).enumerate() {
                    let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile[at..].as_ptr().cast()));
                    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                        let at = (group * TILE_ROWS + r) * blocks + j;
                        // As `x86::q8_0_tile`: the weights are stored plus 128.
                        let dots = _mm512_add_epi32(
                            sums[half].row(r),
                            _mm512_set1_epi32(-128 * x.value_sums[at]),
                        );
                        let scale = _mm512_mul_ps(d, _mm512_set1_ps(x.scales[at]));
                        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, *acc);
                    }
                }
            }
        }
        // SAFETY: the caller's.
        unsafe { place.write(group, &acc[..tiles.len()], rows) };
    }
}

#[cfg(test)]
mod tests {
    use super::wide_line;
    use crate::tests::{activations, awkward_blocks};
    use crate::{Format, Isa, Matrix, WideBlock, WorkPool, supported, test_blocks};

    /// The AVX-512 quantisation of a block is [`WideBlock::new`]'s, bit for bit, on
    /// ordinary blocks and on zeros, NaN, infinities, halves and huge values, and on a
    /// block so small that 1/scale overflows to infinity.
    #[test]
    fn wide_lines_are_wide_blocks() {
        if !supported(Isa::Amx) {
            eprintln!("AMX int8 not available on this CPU: nothing to test");
            return;
        }
        let mut blocks = awkward_blocks();
        blocks.push((0..32).map(|i| (i as f32 - 15.5) * 1e-40).collect());
        for block in &blocks {
            let want = WideBlock::new(block);
            let mut line = [0u8; 64];
            // SAFETY: AMX implies AVX-512 BW/VL.
            let (scale, sum) = unsafe { wide_line(block, &mut line) };
            let got: Vec<i16> = (0..32)
                .map(|i| i16::from_le_bytes([line[i], line[32 + i]]))
                .collect();
            assert_eq!(got, want.values, "{block:?}");
            assert_eq!(
                (scale.to_bits(), sum.to_bits()),
                (want.scale.to_bits(), want.sum.to_bits())
            );
        }
    }

    /// On every shape edge (batch not a multiple of 16, weight rows not a multiple of 16,
    /// one block and many), for both formats, the tiles give bit for bit what the VNNI
    /// kernel gives each row alone, on one thread or several.
    #[test]
    fn tile_products_are_the_vnni_ones_bit_for_bit() {
        if !supported(Isa::Amx) {
            eprintln!("AMX int8 not available on this CPU: nothing to test");
            return;
        }
        let pool = WorkPool::new(3);
        for format in [Format::Q4_1, Format::Q8_0] {
            for (batch, rows, cols) in [
                (2, 16, 32),
                (3, 40, 160),
                (17, 3, 64),
                (40, 48, 576),
                (16, 16, 1536),
            ] {
                let data = test_blocks(format, rows, cols, 1);
                let x = activations(batch, cols, 2);
                let vnni = Matrix::new(Isa::Avx512Vnni, format, rows, cols, &data);
                let tiles = Matrix::new(Isa::Amx, format, rows, cols, &data);
                let alone: Vec<u32> = x
                    .chunks(cols)
                    .flat_map(|row| vnni.matmul(row, |n, work| work(0..n)))
                    .map(f32::to_bits)
                    .collect();
                let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
                let what = format!("{format:?} {batch}×{cols} · {rows}");
                assert_eq!(
                    bits(tiles.matmul(&x, |n, work| work(0..n))),
                    alone,
                    "{what}"
                );
                let pooled = tiles.matmul(&x, |n, work| pool.parallel_for(n, work));
                assert_eq!(bits(pooled), alone, "{what}, pooled");
            }
        }
    }
}

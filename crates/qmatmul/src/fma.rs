//! f32 matrix products with AVX2 FMA on weights laid out once, at load, for the kernel.
//!
//! A general f32 product (gemm, BLAS) copies the weights into its own panel layout on
//! every call. [`FmaMatrix`] keeps them in that layout: per panel of 16 output features,
//! the 16 weights of each input feature side by side, one 64-byte line per input feature.
//! The kernel holds a block of up to 6 activation rows × 16 features in 12 AVX registers,
//! starting from the bias: per input feature it loads the panel's line (two vectors),
//! broadcasts each row's activation and issues 12 FMAs, so the two FMA ports, not loads,
//! bound it. Each product is an f32 FMA, summed in input-feature order (another order
//! than gemm's, to the same precision).
//!
//! A unit of work is a block of activation rows (at most [`BLOCK_BYTES`] of them, which
//! stay in L2) against a group of [`GROUP_PANELS`] panels: each panel (24 KiB for 384
//! input features) is read once per block and stays in L1 while the block's rows run
//! over it.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::SharedOutput;

/// Output features per panel: two AVX vectors.
const PANEL: usize = 16;
/// Activation rows per kernel call: 6 × 2 accumulators, 2 weight vectors and one
/// broadcast fill 15 of the 16 AVX registers.
const ROWS: usize = 6;
/// Activation bytes per block of rows: L2 holds them while the unit's panels pass.
const BLOCK_BYTES: usize = 128 * 1024;
/// Panels per unit of work (64 output features).
const GROUP_PANELS: usize = 4;

/// Whether the CPU has AVX2 and FMA, which [`FmaMatrix`] needs.
pub fn fma_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// One input feature's weights for the 16 output features of a panel, 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; PANEL]);

/// A weight matrix `(rows, cols)` (output × input features) laid out in panels of 16
/// output features for the AVX2 FMA kernel (see the module).
pub struct FmaMatrix {
    rows: usize,
    cols: usize,
    /// Per panel (`rows` rounded up to 16, zeros after the last row), per input feature,
    /// the panel's 16 weights.
    lines: Vec<Line>,
}

impl FmaMatrix {
    /// Lays out `weights` (`rows × cols`, row-major).
    ///
    /// # Panics
    /// If [`fma_available`] is false, `cols` is 0, or `weights` is not `rows × cols`
    /// values.
    pub fn new(weights: &[f32], rows: usize, cols: usize) -> Self {
        assert!(fma_available(), "this CPU lacks AVX2 or FMA");
        assert!(cols > 0, "a weight matrix has at least one input feature");
        assert_eq!(
            weights.len(),
            rows * cols,
            "weights are not {rows} × {cols}"
        );
        let panels = rows.div_ceil(PANEL);
        let mut lines = vec![Line([0.0; PANEL]); panels * cols];
        for (row, values) in weights.chunks_exact(cols).enumerate() {
            let (panel, n) = (row / PANEL, row % PANEL);
            for (line, &w) in lines[panel * cols..(panel + 1) * cols]
                .iter_mut()
                .zip(values)
            {
                line.0[n] = w;
            }
        }
        Self { rows, cols, lines }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `x · Wᵀ (+ bias) (+ residual)` for `x` of `batch × cols` values (row-major) and a
    /// `residual` of the output's shape; returns `batch × rows`, then
    /// `finish(row, first_col, values)` on each piece of an output row while it is still
    /// in cache (the place for an activation function). `parallel_for` is as for
    /// [`crate::Matrix::matmul`].
    ///
    /// # Panics
    /// If `x` is not whole rows of `cols` values, `bias` is not `rows` values or
    /// `residual` not `batch × rows`.
    pub fn matmul_then<P>(
        &self,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        finish: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
        parallel_for: P,
    ) -> Vec<f32>
    where
        P: Fn(usize, &(dyn Fn(Range<usize>) + Sync)),
    {
        let cols = self.cols;
        assert!(
            x.len().is_multiple_of(cols),
            "input is not whole rows of {cols}"
        );
        let batch = x.len() / cols;
        if let Some(bias) = bias {
            assert_eq!(bias.len(), self.rows, "bias is not {} values", self.rows);
        }
        if let Some(residual) = residual {
            let want = batch * self.rows;
            assert_eq!(
                residual.len(),
                want,
                "residual is not {batch} × {}",
                self.rows
            );
        }
        let panels = self.rows.div_ceil(PANEL);
        // The bias padded to whole panels, so the kernel loads it as vectors.
        let mut padded_bias = vec![0f32; panels * PANEL];
        if let Some(bias) = bias {
            padded_bias[..self.rows].copy_from_slice(bias);
        }
        let block_rows = (BLOCK_BYTES / (4 * cols)).max(1).next_multiple_of(ROWS);
        let blocks = batch.div_ceil(block_rows);
        let groups = panels.div_ceil(GROUP_PANELS);
        // Every value is written below before it is read (no zeroing pass).
        let mut output: Vec<f32> = Vec::with_capacity(batch * self.rows);
        let out = SharedOutput(output.as_mut_ptr());
        // Units of one block are adjacent, so a thread's share keeps its rows in L2.
        parallel_for(blocks * groups, &|range: Range<usize>| {
            for unit in range {
                let (block, group) = (unit / groups, unit % groups);
                let rows = block * block_rows..batch.min((block + 1) * block_rows);
                let group_panels = group * GROUP_PANELS..panels.min((group + 1) * GROUP_PANELS);
                for panel in group_panels.clone() {
                    let lines = &self.lines[panel * cols..(panel + 1) * cols];
                    let bias = &padded_bias[panel * PANEL..(panel + 1) * PANEL];
                    let width = PANEL.min(self.rows - panel * PANEL);
                    for first in rows.clone().step_by(ROWS) {
                        let n = ROWS.min(rows.end - first);
                        let a = &x[first * cols..(first + n) * cols];
                        let at = first * self.rows + panel * PANEL;
                        if width == PANEL {
                            let residual = residual.map(|residual| residual[at..].as_ptr());
                            // SAFETY: `new` checked AVX2 and FMA; `a` is `n` rows of `cols`,
                            // `lines` `cols` lines, `bias` one panel; the residual and the
                            // output hold 16 values at `at` in each of the `n` rows. Units
                            // are disjoint blocks of the output, written by one thread
                            // each while `output` (with that capacity) outlives the
                            // parallel section.
                            unsafe {
                                let dst = out.start().add(at);
                                block_product(a, n, lines, bias, residual, (dst, self.rows));
                            }
                        } else {
                            // The last panel's real columns, through a whole panel's room.
                            let mut sums = [[0f32; PANEL]; ROWS];
                            if let Some(residual) = residual {
                                for (r, sums) in sums[..n].iter_mut().enumerate() {
                                    let start = at + r * self.rows;
                                    sums[..width].copy_from_slice(&residual[start..start + width]);
                                }
                            }
                            let room = sums.as_mut_ptr().cast::<f32>();
                            let residual = residual.map(|_| room.cast_const());
                            // SAFETY: as above, the sums' room holding 16 values per row.
                            unsafe { block_product(a, n, lines, bias, residual, (room, PANEL)) };
                            for (r, sums) in sums[..n].iter().enumerate() {
                                // SAFETY: as above.
                                unsafe {
                                    let dst = out.start().add(at + r * self.rows);
                                    dst.copy_from_nonoverlapping(sums.as_ptr(), width);
                                }
                            }
                        }
                    }
                }
                let first_col = group_panels.start * PANEL;
                let width = self.rows.min(group_panels.end * PANEL) - first_col;
                for row in rows {
                    // SAFETY: the unit's own piece of the row, whole once written above.
                    let piece = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.start().add(row * self.rows + first_col),
                            width,
                        )
                    };
                    finish(row, first_col, piece);
                }
            }
        });
        // SAFETY: the units cover every (row, column) of the output, each written above.
        unsafe { output.set_len(batch * self.rows) };
        output
    }
}

/// For the `n ≤ 6` rows of `a`: `bias (+ residual) + a[r] · panel` into 16 values of
/// row `r` of `dst`, the rows of the output `(pointer, stride)` and of the residual the
/// same stride apart.
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `n` rows of `lines.len()` values, `bias` 16;
/// `residual` (if any) and `dst` 16 values in each of `n` rows `stride` apart.
#[target_feature(enable = "avx2,fma")]
unsafe fn block_product(
    a: &[f32],
    n: usize,
    lines: &[Line],
    bias: &[f32],
    residual: Option<*const f32>,
    dst: (*mut f32, usize),
) {
    debug_assert!(a.len() == n * lines.len() && bias.len() == PANEL);
    // SAFETY: as the caller promises.
    unsafe {
        match n {
            6 => rows_product::<6>(a.as_ptr(), lines, bias, residual, dst),
            5 => rows_product::<5>(a.as_ptr(), lines, bias, residual, dst),
            4 => rows_product::<4>(a.as_ptr(), lines, bias, residual, dst),
            3 => rows_product::<3>(a.as_ptr(), lines, bias, residual, dst),
            2 => rows_product::<2>(a.as_ptr(), lines, bias, residual, dst),
            1 => rows_product::<1>(a.as_ptr(), lines, bias, residual, dst),
            _ => {}
        }
    }
}

/// [`block_product`] for exactly `R` rows, the accumulators in registers.
///
/// # Safety
/// As [`block_product`], with `a` pointing at `R` rows.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn rows_product<const R: usize>(
    a: *const f32,
    lines: &[Line],
    bias: &[f32],
    residual: Option<*const f32>,
    (dst, stride): (*mut f32, usize),
) {
    let cols = lines.len();
    // SAFETY: as the caller promises: every access is within `a`'s `R × cols` values,
    // `lines`, the panel's `bias` and 16 values of `R` rows of the residual and `dst`.
    unsafe {
        let low = _mm256_loadu_ps(bias.as_ptr());
        let high = _mm256_loadu_ps(bias.as_ptr().add(8));
        let mut acc = [[low, high]; R];
        if let Some(residual) = residual {
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = residual.add(r * stride);
                acc[0] = _mm256_add_ps(acc[0], _mm256_loadu_ps(row));
                acc[1] = _mm256_add_ps(acc[1], _mm256_loadu_ps(row.add(8)));
            }
        }
        for (k, line) in lines.iter().enumerate() {
            let w0 = _mm256_load_ps(line.0.as_ptr());
            let w1 = _mm256_load_ps(line.0.as_ptr().add(8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm256_broadcast_ss(&*a.add(r * cols + k));
                acc[0] = _mm256_fmadd_ps(v, w0, acc[0]);
                acc[1] = _mm256_fmadd_ps(v, w1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = dst.add(r * stride);
            _mm256_storeu_ps(row, acc[0]);
            _mm256_storeu_ps(row.add(8), acc[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values as values;

    /// Every shape edge (batch not a multiple of 6, features not a multiple of 16, one
    /// input feature, several blocks and groups), with and without bias and a `finish`:
    /// within f32 rounding of the exact product (2⁻²⁰ of the sum of |products|).
    #[test]
    fn products_match_the_exact_ones_on_every_shape_edge() {
        if !fma_available() {
            eprintln!("no AVX2/FMA on this CPU: nothing to test");
            return;
        }
        for (batch, rows, cols) in [
            (1, 16, 32),
            (7, 3, 1),
            (17, 40, 70),
            (100, 384, 384),
            (5, 70, 1536),
            (0, 16, 8),
        ] {
            let w = values(rows * cols, 1);
            let x = values(batch * cols, 2);
            let (bias, residual) = (values(rows, 4), values(batch * rows, 9));
            let matrix = FmaMatrix::new(&w, rows, cols);
            let doubled =
                |_: usize, _: usize, piece: &mut [f32]| piece.iter_mut().for_each(|v| *v *= 2.0);
            for (bias, residual) in [
                (None, None),
                (Some(bias.as_slice()), None),
                (Some(bias.as_slice()), Some(residual.as_slice())),
            ] {
                let got = matrix.matmul_then(&x, bias, residual, &doubled, |n, work| work(0..n));
                let mut want = crate::exact_product(&x, &w, bias, rows, cols);
                if let Some(residual) = residual {
                    want.iter_mut()
                        .zip(residual)
                        .for_each(|(e, r)| *e += f64::from(*r));
                }
                assert_eq!(got.len(), want.len());
                let scale = x
                    .chunks(cols)
                    .map(|xr| xr.iter().map(|v| v.abs()).sum::<f32>() + 2.0)
                    .fold(0f32, f32::max);
                for (g, e) in got.iter().zip(&want) {
                    let error = (f64::from(*g) - 2.0 * e).abs();
                    assert!(
                        error <= f64::from(scale) * 2f64.powi(-20),
                        "{batch}×{cols} · {rows}: got {g}, exact {}",
                        2.0 * e
                    );
                }
            }
        }
    }

    /// `finish` sees each output value once, with its row and column.
    #[test]
    fn finish_covers_every_value_once() {
        if !fma_available() {
            return;
        }
        let (batch, rows, cols) = (50, 150, 20);
        let matrix = FmaMatrix::new(&values(rows * cols, 7), rows, cols);
        let mark = |row: usize, first_col: usize, piece: &mut [f32]| {
            for (i, v) in piece.iter_mut().enumerate() {
                *v = (row * rows + first_col + i) as f32;
            }
        };
        let pool = crate::WorkPool::new(2);
        let x = values(batch * cols, 8);
        let got = matrix.matmul_then(&x, None, None, &mark, |n, work| pool.parallel_for(n, work));
        let want: Vec<f32> = (0..batch * rows).map(|i| i as f32).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn work_split_over_threads_gives_the_same_bits() {
        if !fma_available() {
            return;
        }
        let (batch, rows, cols) = (270, 96, 1000);
        let (w, x) = (values(rows * cols, 5), values(batch * cols, 6));
        let matrix = FmaMatrix::new(&w, rows, cols);
        let nothing = |_: usize, _: usize, _: &mut [f32]| {};
        let alone = matrix.matmul_then(&x, None, None, &nothing, |n, work| work(0..n));
        let pool = crate::WorkPool::new(3);
        let pooled = matrix.matmul_then(&x, None, None, &nothing, |n, work| {
            pool.parallel_for(n, work)
        });
        assert_eq!(alone, pooled);
    }
}

//! Scalar math written so that the loops calling it compile to SIMD (no branches, no
//! library calls, no saturating float-to-int conversions), the loops over rows of values
//! the CPU paths share, and [`run_widest`], which compiles a loop for the widest vector
//! instructions the CPU has.

/// A loop over values, written plainly (`#[inline(always)]` on [`VectorLoop::run`]) so
/// that [`run_widest`] compiles it for each instruction set.
pub(crate) trait VectorLoop {
    /// The loop's output.
    type Output;
    /// Runs the loop.
    fn run(self) -> Self::Output;
}

/// Runs `work` compiled for AVX-512F, or AVX2 and FMA, whichever this CPU has (plain
/// code elsewhere).
pub(crate) fn run_widest<W: VectorLoop>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { run_avx512(work) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { run_avx2(work) };
        }
    }
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<W: VectorLoop>(work: W) -> W::Output {
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<W: VectorLoop>(work: W) -> W::Output {
    work.run()
}

/// RMS normalisation of each row of `x` (rows of `weight.len()` values), scaled by
/// `weight`: `x / sqrt(mean(x²) + eps) · weight`, as candle's `rms_norm`.
pub(crate) struct RmsNormRows<'a> {
    pub x: &'a [f32],
    pub weight: &'a [f32],
    pub eps: f32,
}

impl VectorLoop for RmsNormRows<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn run(self) -> Vec<f32> {
        let n = self.weight.len();
        let mut out = vec![0f32; self.x.len()];
        for (row, out) in self.x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            // Sixteen partial sums (one AVX-512 vector), folded at the end.
            let mut partial = [0f32; 16];
            let (chunks, rest) = row.as_chunks::<16>();
            for chunk in chunks {
                for (p, v) in partial.iter_mut().zip(chunk) {
                    *p += v * v;
                }
            }
            let sum: f32 = partial.iter().sum::<f32>() + rest.iter().map(|v| v * v).sum::<f32>();
            let m = (sum / n as f32 + self.eps).sqrt();
            for ((o, v), w) in out.iter_mut().zip(row).zip(self.weight) {
                *o = v / m * w;
            }
        }
        out
    }
}

/// The gated activation of a feed-forward block: each row of `gate_up` holds a row of
/// gate values then as many up values; returns `silu(gate) · up` per row.
pub(crate) struct SiluGateRows<'a> {
    pub gate_up: &'a [f32],
    pub width: usize,
}

impl VectorLoop for SiluGateRows<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn run(self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.gate_up.len() / 2);
        for row in self.gate_up.chunks_exact(2 * self.width) {
            let (gate, up) = row.split_at(self.width);
            out.extend(gate.iter().zip(up).map(|(&g, &u)| silu(g) * u));
        }
        out
    }
}

/// x · sigmoid(x), branch-free: with e = e^-|x|, sigmoid(x) is 1/(1+e) for x ≥ 0 and
/// e/(1+e) below.
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    x * numerator / (1.0 + e)
}

/// e^x for x ≤ 0 (what erf and softmax need), branch-free so that loops over it
/// vectorise: 2^n · e^r with |r| ≤ ln2/2 and a
/// degree-6 polynomial for e^r (relative error ~2e-7); underflows to 0 below -87.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    /// 1.5 · 2²³: adding it rounds to an integer (ties to even), held in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 split in two so that n·ln2 is exact to f32 precision.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low bits of `shifted` are n (two's complement); 2^n from them, with no
    // float-to-int conversion (whose saturation the compiler would not vectorise).
    let scale = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127)
            << 23,
    );
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_matches_its_definition() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.05;
            let exact = x as f64 / (1.0 + (-x as f64).exp());
            let ours = silu(x) as f64;
            assert!(
                (ours - exact).abs() <= 1e-6 * exact.abs() + 1e-30,
                "silu({x}) = {ours} vs {exact}"
            );
        }
        assert!(silu(-200.0).abs() < 1e-30);
        assert!(silu(f32::NAN).is_nan());
    }

    /// Both loops, on every instruction set this CPU has, against plain f64 arithmetic.
    #[test]
    fn row_loops_match_plain_arithmetic() {
        let width = 37; // not a multiple of a vector
        let x: Vec<f32> = (0..3 * width)
            .map(|i| ((i * 7919) % 101) as f32 / 25.0 - 2.0)
            .collect();
        let weight: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 / 40.0).collect();
        let eps = 1e-5;
        let normed = run_widest(RmsNormRows {
            x: &x,
            weight: &weight,
            eps,
        });
        let plain = RmsNormRows {
            x: &x,
            weight: &weight,
            eps,
        }
        .run();
        for (row, (got, plain)) in x
            .chunks(width)
            .zip(normed.chunks(width).zip(plain.chunks(width)))
        {
            let mean = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / width as f64;
            let m = (mean + eps as f64).sqrt();
            for (i, v) in row.iter().enumerate() {
                let exact = *v as f64 / m * weight[i] as f64;
                assert!(
                    (got[i] as f64 - exact).abs() < 1e-5,
                    "{} vs {exact}",
                    got[i]
                );
                assert!(
                    (plain[i] as f64 - exact).abs() < 1e-5,
                    "{} vs {exact}",
                    plain[i]
                );
            }
        }
        let gate_up: Vec<f32> = (0..3 * 2 * width)
            .map(|i| ((i * 7907) % 211) as f32 / 10.0 - 10.0)
            .collect();
        let gated = run_widest(SiluGateRows {
            gate_up: &gate_up,
            width,
        });
        assert_eq!(gated.len(), 3 * width);
        for (row, got) in gate_up.chunks(2 * width).zip(gated.chunks(width)) {
            for i in 0..width {
                let (g, u) = (row[i] as f64, row[width + i] as f64);
                let exact = g / (1.0 + (-g).exp()) * u;
                assert!((got[i] as f64 - exact).abs() < 1e-5 * (1.0 + exact.abs()));
            }
        }
    }

    #[test]
    fn exp_is_accurate_for_nonpositive_arguments() {
        for i in 0..=1000 {
            let x = -(i as f32) * 0.09;
            let (ours, std) = (exp_nonpositive(x), x.exp());
            assert!(
                (ours - std).abs() <= 1e-6 * std + 1e-30,
                "exp({x}) = {ours} vs {std}"
            );
        }
    }
}

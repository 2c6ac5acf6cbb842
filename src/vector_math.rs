//! Scalar math written so that the loops calling it compile to SIMD (no branches, no
//! library calls, no saturating float-to-int conversions).

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

//! Quantized matmuls on x86-64 CPUs for the GGUF weights SmolLM2 ships (Q4_1 and Q8_0),
//! through the `neuron-qmatmul` kernels (AMX int8 tiles for several rows, AVX-512 VNNI
//! or AVX2), on the process's one pool (`crate::cpu_pool`).
//!
//! candle 0.11 has no SIMD kernel for Q4_1 (its scalar one runs at a tenth of the
//! speed), and its Q8_0 kernel is AVX2-only, so decoding used to re-quantise Q4_1 to Q8_0
//! at load (70% more bytes read per token) and still left the widest integer dot product
//! of the CPU unused. Here the weights stay as the file has them. Q8_0 results match
//! candle's `QMatMul` to float rounding; Q4_1 ones take 16-bit activations and come ten
//! times closer to the exact product than candle's (see the tests).
//!
//! [`CpuQMatMul::new`] returns `None` (use candle's `QMatMul`) for other quantisation
//! types, other devices, or a CPU with neither AVX2 nor AVX-512 VNNI. The module is
//! x86-64 only.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor};
use neuron_qmatmul::{Format, Isa, Matrix};

/// Whether weights of `dtype` on `device` are multiplied by this module's kernels.
pub(crate) fn supports(dtype: GgmlDType, device: &candle_core::Device) -> bool {
    format_of(dtype).is_some() && device.is_cpu() && neuron_qmatmul::detect().is_some()
}

fn format_of(dtype: GgmlDType) -> Option<Format> {
    match dtype {
        GgmlDType::Q4_1 => Some(Format::Q4_1),
        GgmlDType::Q8_0 => Some(Format::Q8_0),
        _ => None,
    }
}

/// The instruction set of this module's kernels on this CPU, AMX tiles allowed or not.
pub(crate) fn isa(amx: bool) -> Option<Isa> {
    match neuron_qmatmul::detect() {
        Some(Isa::Amx) if !amx => Some(Isa::Avx512Vnni),
        isa => isa,
    }
}

/// A quantised weight matrix `(rows, cols)` multiplied on the CPU by the
/// `neuron-qmatmul` kernels. Computes `x · Wᵀ`, like candle's `QMatMul`.
pub(crate) struct CpuQMatMul {
    matrix: Matrix,
}

impl CpuQMatMul {
    /// Takes over `weights` when they are on the CPU, of a type handled here, and the CPU
    /// has the instructions (AMX tiles used for several rows where allowed and present);
    /// otherwise `None`.
    pub fn new(weights: &QTensor, amx: bool) -> Result<Option<Self>> {
        match isa(amx) {
            Some(isa) => Self::for_isa(weights, isa),
            None => Ok(None),
        }
    }

    /// Like [`CpuQMatMul::new`] with the kernels of `isa` (which this CPU must have).
    fn for_isa(weights: &QTensor, isa: Isa) -> Result<Option<Self>> {
        let (Some(format), true) = (format_of(weights.dtype()), weights.device().is_cpu()) else {
            return Ok(None);
        };
        let (rows, cols) = weights.shape().dims2()?;
        let matrix = Matrix::new(isa, format, rows, cols, &weights.data()?);
        Ok(Some(Self { matrix }))
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.matrix.rows()
    }

    /// `x · Wᵀ` for `x` of whole rows of `cols` values; returns as many rows of `rows`
    /// values.
    ///
    /// # Panics
    /// If `x` is not whole rows.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        self.matrix.matmul(x, |units, work| {
            crate::cpu_pool::shared().parallel_for(units, work)
        })
    }

    /// `x · Wᵀ` for `x` of shape `(..., cols)`; the result has shape `(..., rows)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        if dims.last() != Some(&self.matrix.cols()) {
            candle_core::bail!(
                "quantized matmul: input {:?} does not end in {}",
                x.shape(),
                self.matrix.cols()
            );
        }
        let input = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let output = self.matmul(&input);
        *dims.last_mut().expect("checked above") = self.matrix.rows();
        Tensor::from_vec(output, dims, x.device())?.to_dtype(x.dtype())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module};
    use neuron_qmatmul::test_values as values;

    use super::*;

    /// `x · Wᵀ` by every kernel this CPU can run (weights quantised to `dtype`).
    fn by_each_kernel(dtype: GgmlDType, weights: &Tensor, x: &Tensor) -> Vec<(Isa, Vec<f32>)> {
        let q = QTensor::quantize(weights, dtype).unwrap();
        neuron_qmatmul::supported_isas()
            .into_iter()
            .map(|isa| {
                let ours = CpuQMatMul::for_isa(&q, isa).unwrap().expect("supported");
                let y = ours.forward(x).unwrap().flatten_all().unwrap();
                (isa, y.to_vec1().unwrap())
            })
            .collect()
    }

    fn assert_close(got: &[f32], expected: &[f32], tolerance: f32, what: &str) {
        assert_eq!(got.len(), expected.len(), "{what}");
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < tolerance, "{what}: {g} vs {e}");
        }
    }

    /// The Q8_0 kernels, which quantise activations to 8 bits as candle does, agree with
    /// candle's `QMatMul` on the same quantised weights to float rounding; the Q4_1
    /// kernels, with 16-bit activations, agree with the exact product of the dequantised
    /// weights, ten times closer than candle's (checked too). Each for every kernel this
    /// CPU can run, one input row and several, an even and an odd number of blocks
    /// (candle's Q4_1 kernel wants an even count), and 40 rows: not a multiple of the
    /// 16-row tile.
    #[test]
    fn kernels_match_candle_quantized_matmul() {
        if neuron_qmatmul::detect().is_none() {
            eprintln!("skipped: this CPU has neither AVX2 nor AVX-512 VNNI");
            return;
        }
        let device = Device::Cpu;
        let rows = 40;
        let max_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        for cols in [128, 160] {
            let weights = Tensor::from_vec(values(rows * cols, 1), (rows, cols), &device).unwrap();
            for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
                let q = QTensor::quantize(&weights, dtype).unwrap();
                let dense = q.dequantize(&device).unwrap();
                for batch in [1, 3] {
                    let x = values(batch * cols, 7 + batch as u64);
                    let x = Tensor::from_vec(x, (batch, cols), &device).unwrap();
                    let flat =
                        |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
                    let exact = flat(x.matmul(&dense.t().unwrap()).unwrap());
                    let even = (cols / neuron_qmatmul::BLOCK).is_multiple_of(2);
                    let candle = (dtype == GgmlDType::Q8_0 || even).then(|| {
                        let q = QTensor::quantize(&weights, dtype).unwrap();
                        flat(QMatMul::from_qtensor(q).unwrap().forward(&x).unwrap())
                    });
                    for (isa, got) in by_each_kernel(dtype, &weights, &x) {
                        let what = format!("{dtype:?} {isa:?} {cols} cols, batch {batch}");
                        if dtype == GgmlDType::Q4_1 {
                            assert_close(&got, &exact, 1e-3, &what);
                            if let Some(candle) = &candle {
                                let (ours, theirs) =
                                    (max_diff(&got, &exact), max_diff(candle, &exact));
                                assert!(ours * 10.0 < theirs, "{what}: {ours} vs candle {theirs}");
                            }
                        } else {
                            let candle = candle.as_ref().expect("Q8_0 is compared with candle");
                            assert_close(&got, candle, 1e-4, &what);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn other_types_are_left_to_candle() {
        let weights = Tensor::zeros((8, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q = QTensor::quantize(&weights, GgmlDType::Q5_0).unwrap();
        assert!(CpuQMatMul::new(&q, true).unwrap().is_none());
    }
}

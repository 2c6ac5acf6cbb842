//! The encoder's linear layers, on the best kernels this CPU has: Intel AMX tiles
//! (`neuron_qmatmul::Bf16x3Matrix`, within about 2⁻¹⁵ of each f32 product) where the CPU
//! and the kernel allow them; else, on CPUs with AVX2 and FMA but not AVX-512, f32 FMAs
//! over weights laid out for them at load (`neuron_qmatmul::FmaMatrix`); else f32
//! products from gemm's AVX-512 kernels on the CPU (the bias and residual summed into
//! its output), candle's matmul elsewhere.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module};

/// Which kernels the embedder's linear layers may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fastest this CPU has: AMX bf16 tiles with split f32 operands where available,
    /// else the AVX2 FMA kernel on CPUs without AVX-512, else gemm's f32 products.
    #[default]
    Auto,
    /// gemm's f32 products on the CPU (candle's matmul on a GPU).
    F32,
}

/// What a loaded embedder's linear layers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelsInUse {
    /// Intel AMX bf16 tiles, each f32 split into two bf16 halves.
    AmxBf16x3,
    /// f32 FMAs with AVX2 over weights laid out for them at load.
    Avx2Fma,
    /// f32 products (gemm's AVX-512 or AVX2/FMA kernels, or candle's on a GPU).
    F32,
}

impl std::fmt::Display for KernelsInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AmxBf16x3 => "AMX bf16x3",
            Self::Avx2Fma => "AVX2 FMA",
            Self::F32 => "f32 (gemm)",
        })
    }
}

impl Then<'_> {
    /// Checks that `x` is `(tokens, cols)` and the residual, if any, `(tokens, out)`;
    /// returns `tokens` and the residual.
    fn checked(&self, x: &Tensor, cols: usize, out: usize) -> Result<(usize, Option<&Tensor>)> {
        let (tokens, width) = x.dims2()?;
        if width != cols {
            candle_core::bail!("input {:?} is not (tokens, {cols})", x.shape());
        }
        match self {
            Self::Add(residual) if residual.dims() != [tokens, out] => {
                candle_core::bail!("residual {:?} is not ({tokens}, {out})", residual.shape())
            }
            Self::Add(residual) => Ok((tokens, Some(residual))),
            _ => Ok((tokens, None)),
        }
    }
}

impl Kernels {
    /// The kernels that will run for `self` on `device`.
    pub(crate) fn resolve(self, device: &candle_core::Device) -> KernelsInUse {
        #[cfg(target_arch = "x86_64")]
        if self == Self::Auto && device.is_cpu() {
            if neuron_qmatmul::amx::bf16_available() {
                return KernelsInUse::AmxBf16x3;
            }
            // gemm's AVX-512 kernels are kept where the CPU has them (not measured against
            // this one there).
            if neuron_qmatmul::fma::fma_available()
                && !std::arch::is_x86_feature_detected!("avx512f")
            {
                return KernelsInUse::Avx2Fma;
            }
        }
        let _ = device;
        KernelsInUse::F32
    }
}

/// What follows the product in the same pass over its output.
pub(crate) enum Then<'a> {
    /// Nothing: `x · Wᵀ + b`.
    Nothing,
    /// GELU (the exact-erf one) of `x · Wᵀ + b`.
    Gelu,
    /// `x · Wᵀ + b + residual`, the residual of the output's shape.
    Add(&'a Tensor),
}

/// `x · Wᵀ + b` for a weight `(out, in)` and a bias `(out)`.
pub(crate) enum Dense {
    /// candle's `Linear`.
    F32(Linear),
    /// Weights laid out for a kernel of `neuron_qmatmul`; the bias, and what [`Then`]
    /// asks, applied as the output is written.
    #[cfg(target_arch = "x86_64")]
    LaidOut { matrix: LaidOut, bias: Vec<f32> },
}

/// The weights of a [`Dense::LaidOut`] layer.
#[cfg(target_arch = "x86_64")]
pub(crate) enum LaidOut {
    /// As AMX tiles.
    Amx(neuron_qmatmul::Bf16x3Matrix),
    /// In panels for the AVX2 FMA kernel.
    Fma(neuron_qmatmul::FmaMatrix),
}

impl Dense {
    /// A layer of `weight` and `bias` on `kernels`.
    pub fn new(weight: Tensor, bias: Tensor, kernels: KernelsInUse) -> Result<Self> {
        if kernels == KernelsInUse::F32 {
            return Ok(Self::F32(Linear::new(weight, Some(bias))));
        }
        #[cfg(target_arch = "x86_64")]
        {
            let (rows, cols) = weight.dims2()?;
            let values = weight.flatten_all()?.to_vec1::<f32>()?;
            let matrix = match kernels {
                KernelsInUse::AmxBf16x3 => {
                    LaidOut::Amx(neuron_qmatmul::Bf16x3Matrix::new(&values, rows, cols))
                }
                _ => LaidOut::Fma(neuron_qmatmul::FmaMatrix::new(&values, rows, cols)),
            };
            Ok(Self::LaidOut {
                matrix,
                bias: bias.to_vec1::<f32>()?,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("{kernels} kernels are x86-64 only")
    }

    /// `x · Wᵀ + b`, then `then`, for `x` of shape `(tokens, in)`.
    pub fn forward(&self, x: &Tensor, then: Then) -> Result<Tensor> {
        match self {
            Self::F32(linear) if x.device().is_cpu() => cpu_f32(linear, x, then),
            Self::F32(linear) => {
                let y = linear.forward(x)?;
                match then {
                    Then::Nothing => Ok(y),
                    Then::Gelu => super::gelu::gelu_erf(&y),
                    Then::Add(residual) => y.add(residual),
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::LaidOut { matrix, bias } => {
                let (out, cols) = match matrix {
                    LaidOut::Amx(m) => (m.rows(), m.cols()),
                    LaidOut::Fma(m) => (m.rows(), m.cols()),
                };
                let (tokens, residual) = then.checked(x, cols, out)?;
                let residual = residual.map(Tensor::storage_and_layout);
                let residual = match &residual {
                    Some((storage, layout)) => Some(cpu_slice(storage, layout)?),
                    None => None,
                };
                let gelu = matches!(then, Then::Gelu);
                let activation = |values: &mut [f32]| {
                    if gelu {
                        super::gelu::gelu_in_place(values);
                    }
                };
                let (storage, layout) = x.storage_and_layout();
                let input = cpu_slice(&storage, layout)?;
                let pool = crate::cpu_pool::parallel_for;
                let output = match matrix {
                    // The AMX kernel sums no residual: it is added as each piece is done.
                    LaidOut::Amx(m) => {
                        let finish = |row: usize, first_col: usize, values: &mut [f32]| {
                            if let Some(residual) = residual {
                                let start = row * out + first_col;
                                for (v, r) in values.iter_mut().zip(&residual[start..]) {
                                    *v += r;
                                }
                            }
                            activation(values);
                        };
                        m.matmul_then(input, Some(bias), &finish, pool)
                    }
                    LaidOut::Fma(m) => {
                        let finish = |_: usize, _: usize, values: &mut [f32]| activation(values);
                        m.matmul_then(input, Some(bias), residual, &finish, pool)
                    }
                };
                Tensor::from_vec(output, (tokens, out), x.device())
            }
        }
    }
}

/// [`Dense::forward`] of candle's `Linear` on the CPU, in one product with no pass of
/// its own for the bias or the residual: the output starts as `b` (plus the residual)
/// and gemm adds `x · Wᵀ` into it (the f32 products of candle's matmul, summed in
/// another order); GELU then runs on the output in place.
fn cpu_f32(linear: &Linear, x: &Tensor, then: Then) -> Result<Tensor> {
    let (out, cols) = linear.weight().dims2()?;
    let (tokens, residual) = then.checked(x, cols, out)?;
    let bias = match linear.bias() {
        Some(bias) => bias.to_vec1::<f32>()?,
        None => vec![0.0; out],
    };
    let mut output: Vec<f32> = Vec::with_capacity(tokens * out);
    match residual {
        Some(residual) => {
            let (storage, layout) = residual.storage_and_layout();
            for row in cpu_slice(&storage, layout)?.chunks_exact(out) {
                output.extend(row.iter().zip(&bias).map(|(r, b)| r + b));
            }
        }
        None => (0..tokens).for_each(|_| output.extend_from_slice(&bias)),
    }
    let (input, weight) = (x.contiguous()?, linear.weight().contiguous()?);
    let ((input, input_layout), (weight, weight_layout)) =
        (input.storage_and_layout(), weight.storage_and_layout());
    let (input, weight) = (
        cpu_slice(&input, input_layout)?,
        cpu_slice(&weight, weight_layout)?,
    );
    let threads = candle_core::utils::get_num_threads();
    let parallelism = match threads {
        ..=1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    };
    // SAFETY: `output` is `tokens × out` row-major, `input` `tokens × cols` row-major
    // and `weight` `out × cols` row-major (read as its transpose, `cols × out`), all
    // checked above; nothing else holds `output`.
    unsafe {
        gemm::gemm(
            tokens,
            out,
            cols,
            output.as_mut_ptr(),
            1,
            out as isize,
            true,
            input.as_ptr(),
            1,
            cols as isize,
            weight.as_ptr(),
            cols as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    if matches!(then, Then::Gelu) {
        super::gelu::gelu_in_place(&mut output);
    }
    Tensor::from_vec(output, (tokens, out), x.device())
}

/// The values of a contiguous f32 CPU tensor, read in place.
fn cpu_slice<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32]> {
    match crate::cpu_tensor::f32_values(storage, layout) {
        Some(values) => Ok(values),
        None => candle_core::bail!("the CPU kernels take contiguous f32 CPU tensors"),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::{Linear, Module};

    use super::{Dense, KernelsInUse, Then};

    fn tensor(rows: usize, cols: usize, seed: f32) -> Tensor {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 * 0.61 + seed).sin())
            .collect();
        Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap()
    }

    /// Each of the CPU's fused products this CPU runs (gemm with bias and residual in
    /// its output, the AVX2 FMA and AMX kernels) agrees with candle's `Linear` followed by
    /// the same operations, and an input or residual of the wrong shape is an error.
    #[test]
    fn the_fused_cpu_products_are_candles_linear_then_the_rest() {
        let (weight, bias) = (
            tensor(37, 5, 0.3),
            tensor(1, 37, 1.1).flatten_all().unwrap(),
        );
        let (x, residual) = (tensor(9, 5, 2.2), tensor(9, 37, 3.3));
        let linear = Linear::new(weight.clone(), Some(bias.clone()));
        let plain = linear.forward(&x).unwrap();
        let mut kernels = vec![(KernelsInUse::F32, 1e-6)];
        #[cfg(target_arch = "x86_64")]
        {
            if neuron_qmatmul::fma::fma_available() {
                kernels.push((KernelsInUse::Avx2Fma, 1e-6));
            }
            if neuron_qmatmul::amx::bf16_available() {
                kernels.push((KernelsInUse::AmxBf16x3, 1e-4));
            }
        }
        for (kernels, tolerance) in kernels {
            let dense = Dense::new(weight.clone(), bias.clone(), kernels).unwrap();
            let cases = [
                (Then::Nothing, plain.clone()),
                (Then::Gelu, plain.gelu_erf().unwrap()),
                (Then::Add(&residual), (&plain + &residual).unwrap()),
            ];
            for (then, want) in cases {
                let got = dense.forward(&x, then).unwrap();
                let diff = crate::cpu_tensor::max_abs_diff(&got, &want);
                assert!(diff < tolerance, "{kernels}: {diff}");
            }
            let wrong = tensor(9, 36, 0.0);
            assert!(dense.forward(&x, Then::Add(&wrong)).is_err(), "{kernels}");
            assert!(
                dense.forward(&tensor(9, 4, 0.0), Then::Nothing).is_err(),
                "{kernels}"
            );
        }
    }
}

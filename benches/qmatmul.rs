//! The CPU kernels of `crates/qmatmul` on the calling thread, each one this CPU can run:
//! the quantised ones on SmolLM2-135M's matrix shapes, for 1, 8 and 64 input rows (a
//! decoding step, a batch of eight, a prompt chunk);
//! the embedder's f32 products (AMX bf16x3 on the calling thread, the AVX2 FMA kernel on
//! candle's thread count) on all-MiniLM-L6-v2's, 2,304 tokens (the embed bench's 64
//! sentences), against candle's f32 matmul (gemm, on candle's thread count: all cores
//! unless `RAYON_NUM_THREADS` says otherwise). The weights are synthetic: speed does not
//! depend on them.
//!
//! `cargo bench --bench qmatmul` (`RAYON_NUM_THREADS=1 cargo bench --bench qmatmul` for
//! the f32 products on one thread like the rest)

#[cfg(target_arch = "x86_64")]
mod kernels {
    use criterion::{BenchmarkId, Criterion, Throughput};
    use neuron_qmatmul::{Format, Matrix};

    /// (format, rows, cols): fused gate/up, down projection, output projection.
    const SHAPES: [(Format, usize, usize); 3] = [
        (Format::Q4_1, 3072, 576),
        (Format::Q4_1, 576, 1536),
        (Format::Q8_0, 49152, 576),
    ];

    /// Activation rows per product: one decoding step, eight decoded together, a chunk
    /// of a prompt.
    const BATCHES: [usize; 3] = [1, 8, 64];

    pub fn bench(c: &mut Criterion) {
        let mut group = c.benchmark_group("qmatmul");
        for (format, rows, cols) in SHAPES {
            let data = neuron_qmatmul::test_blocks(format, rows, cols, 1);
            for batch in BATCHES {
                let x: Vec<f32> = (0..batch * cols).map(|i| (i as f32 * 0.37).sin()).collect();
                group.throughput(Throughput::Bytes(data.len() as u64));
                for isa in neuron_qmatmul::supported_isas() {
                    let matrix = Matrix::new(isa, format, rows, cols, &data);
                    let shape = format!("{format:?} {rows}x{cols}, {batch} rows");
                    let id = BenchmarkId::new(shape, format!("{isa:?}"));
                    group
                        .bench_function(id, |b| b.iter(|| matrix.matmul(&x, |n, work| work(0..n))));
                }
            }
        }
        group.finish();
    }

    /// (output, input features) of MiniLM's fused q/k/v, intermediate and output layers.
    const EMBED_SHAPES: [(usize, usize); 3] = [(1152, 384), (1536, 384), (384, 1536)];
    /// Tokens per product: the embed bench's 64 sentences, packed.
    const TOKENS: usize = 2304;

    pub fn bench_f32(c: &mut Criterion) {
        let mut group = c.benchmark_group("f32 matmul");
        for (rows, cols) in EMBED_SHAPES {
            let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.13).sin()).collect();
            let x: Vec<f32> = (0..TOKENS * cols)
                .map(|i| (i as f32 * 0.37).cos())
                .collect();
            group.throughput(Throughput::Elements((2 * TOKENS * rows * cols) as u64));
            let shape = format!("{TOKENS}x{cols} . {rows}x{cols}");
            if neuron_qmatmul::amx::bf16_available() {
                let matrix = neuron_qmatmul::Bf16x3Matrix::new(&w, rows, cols);
                group.bench_function(BenchmarkId::new(&shape, "AMX bf16x3"), |b| {
                    b.iter(|| matrix.matmul(&x, None, |n, work| work(0..n)))
                });
            }
            if neuron_qmatmul::fma::fma_available() {
                let matrix = neuron_qmatmul::FmaMatrix::new(&w, rows, cols);
                let threads = candle_core::utils::get_num_threads();
                let pool = neuron_qmatmul::WorkPool::new(threads.saturating_sub(1));
                let nothing = |_: usize, _: usize, _: &mut [f32]| {};
                group.bench_function(BenchmarkId::new(&shape, "AVX2 FMA panels"), |b| {
                    b.iter(|| {
                        matrix.matmul_then(&x, None, None, &nothing, |n, work| {
                            pool.parallel_for(n, work)
                        })
                    })
                });
            }
            let device = candle_core::Device::Cpu;
            let wt = candle_core::Tensor::from_vec(w, (rows, cols), &device).unwrap();
            let xt = candle_core::Tensor::from_vec(x, (TOKENS, cols), &device).unwrap();
            group.bench_function(BenchmarkId::new(&shape, "candle f32"), |b| {
                b.iter(|| xt.matmul(&wt.t().unwrap()).unwrap())
            });
        }
        group.finish();
    }
}

#[cfg(target_arch = "x86_64")]
criterion::criterion_group!(benches, kernels::bench, kernels::bench_f32);
#[cfg(target_arch = "x86_64")]
criterion::criterion_main!(benches);

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("the quantised kernels are x86-64 only");
}

//! Reading candle tensors' CPU storage in place, for this crate's own kernels.

use candle_core::{CpuStorage, Layout, Storage};

/// The values of a contiguous f32 tensor on the CPU, read in place; `None` for any other
/// storage, dtype or layout.
pub(crate) fn f32_values<'a>(storage: &'a Storage, layout: &Layout) -> Option<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Some(&values[start..end]),
        _ => None,
    }
}

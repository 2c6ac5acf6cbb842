//! Reading candle tensors' CPU storage in place, and running this crate's own loops over
//! it as candle operations.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// The largest absolute difference between two f32 tensors of one shape (for tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("two f32 tensors of one shape")
}

/// The values of a contiguous f32 tensor on the CPU, read in place; `None` for any other
/// storage, dtype or layout.
pub(crate) fn f32_values<'a>(storage: &'a Storage, layout: &Layout) -> Option<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Some(&values[start..end]),
        _ => None,
    }
}

/// The f32 tensor `x` on the CPU (made contiguous) with its rows, of `x`'s last
/// dimension, turned by `rows` into rows of `width` values: the result has `x`'s shape
/// with `width` last. `name` names the operation in errors.
pub(crate) fn map_rows<F>(x: &Tensor, name: &'static str, width: usize, rows: F) -> Result<Tensor>
where
    F: Fn(&[f32]) -> Vec<f32> + Send + Sync,
{
    x.contiguous()?
        .apply_op1_no_bwd(&MapRows { name, width, rows })
}

struct MapRows<F> {
    name: &'static str,
    width: usize,
    rows: F,
}

impl<F: Fn(&[f32]) -> Vec<f32> + Send + Sync> CustomOp1 for MapRows<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("{} wants a contiguous f32 tensor", self.name);
        };
        let mut dims = layout.dims().to_vec();
        let Some(last) = dims.last_mut() else {
            candle_core::bail!("{} wants rows, not a scalar", self.name);
        };
        let rows = (end - start).checked_div(*last).unwrap_or(0);
        *last = self.width;
        let values = (self.rows)(&data[start..end]);
        if values.len() != rows * self.width {
            candle_core::bail!(
                "{}: {} values for {rows} rows of {}",
                self.name,
                values.len(),
                self.width
            );
        }
        Ok((CpuStorage::F32(values), Shape::from_dims(&dims)))
    }
}

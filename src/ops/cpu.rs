//! Access to the f32 buffers behind CPU tensors, for the custom ops.

use candle_core::{bail, CpuStorage, Device, Layout, Storage, StorageRef, Tensor};

/// The contiguous f32 elements a layout selects from a CPU storage.
pub(crate) fn storage_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what}: the fast CPU op needs a contiguous tensor"),
    }
}

/// A read lock on a contiguous f32 CPU tensor's elements.
pub(crate) struct CpuSlice<'a> {
    guard: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> CpuSlice<'a> {
    /// Locks `tensor`'s storage; refuses non-CPU, non-f32 or strided tensors.
    pub fn new(tensor: &'a Tensor, what: &str) -> candle_core::Result<Self> {
        let (guard, layout) = tensor.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("{what}: the fast CPU op needs a contiguous tensor")
        };
        match &*guard {
            Storage::Cpu(CpuStorage::F32(_)) => {}
            _ => bail!("{what}: the fast CPU op needs an f32 tensor on the CPU"),
        }
        Ok(Self { guard, start, end })
    }

    /// The elements, in the tensor's row-major order.
    pub fn as_slice(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(data)) => &data[self.start..self.end],
            // `new` admits only f32 CPU storage and the guard keeps it so.
            _ => &[],
        }
    }
}

/// The gradient before a ReLU (`relu`) from the gradient after it and the ReLU's output
/// `res`, written into `out`; without the ReLU, a copy.
pub(crate) fn relu_gradient(relu: bool, grad: &[f32], res: &[f32], out: &mut [f32]) {
    if relu {
        for ((o, &g), &y) in out.iter_mut().zip(grad).zip(res) {
            *o = if y > 0.0 { g } else { 0.0 };
        }
    } else {
        out.copy_from_slice(grad);
    }
}

/// A backward pass's result for input `like`: `data` shaped as it when the input takes a
/// gradient (`needed`), nothing otherwise.
pub(crate) fn gradient_tensor(
    needed: bool,
    data: Vec<f32>,
    like: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    if needed {
        Ok(Some(Tensor::from_vec(data, like.shape(), &Device::Cpu)?))
    } else {
        Ok(None)
    }
}

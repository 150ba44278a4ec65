//! Picking the device to train on.

use candle_core::Device;

/// The best available device: the first CUDA GPU when the crate is built with the `cuda`
/// feature and a GPU answers, the first Metal device with `metal`, otherwise the CPU.
/// `force_cpu` always gives the CPU.
pub fn best_device(force_cpu: bool) -> Device {
    if force_cpu {
        return Device::Cpu;
    }
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    #[cfg(feature = "metal")]
    if let Ok(device) = Device::new_metal(0) {
        return device;
    }
    Device::Cpu
}

/// A short description of `device` for logs (`cpu`, `cuda:0`, `metal:0`).
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

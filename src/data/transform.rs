use candle_core::{DType, Device, Tensor, WithDType};
use rand::Rng;

use crate::error::{Error, Result};

/// Input normalisation `x' = (x - mean[c]) / std[c]` per channel `c`, applied when a batch is
/// made. u8 pixels are first scaled to `[0, 1]` (divided by 255), as torchvision's `ToTensor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Normalize {
    /// One `(mean, std)` pair per channel, or a single pair for every channel.
    pub fn new(mean: Vec<f64>, std: Vec<f64>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::config(
                "Normalize",
                format!("mean {mean:?}, std {std:?}"),
                "needs as many standard deviations as means, at least one",
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::config("Normalize std", s, "must be finite and > 0"));
        }
        Ok(Self { mean, std })
    }

    /// MNIST's usual constants: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Self {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// Fashion-MNIST's constants: mean 0.2860, std 0.3530.
    pub fn fashion_mnist() -> Self {
        Self {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// KMNIST's constants: mean 0.1918, std 0.3483.
    pub fn kmnist() -> Self {
        Self {
            mean: vec![0.1918],
            std: vec![0.3483],
        }
    }

    /// CIFAR-10's per-channel constants (training set): mean (0.4914, 0.4822, 0.4465), std
    /// (0.2470, 0.2435, 0.2616).
    pub fn cifar10() -> Self {
        Self {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// CIFAR-100's per-channel constants: mean (0.5071, 0.4865, 0.4409), std
    /// (0.2673, 0.2564, 0.2762).
    pub fn cifar100() -> Self {
        Self {
            mean: vec![0.5071, 0.4865, 0.4409],
            std: vec![0.2673, 0.2564, 0.2762],
        }
    }

    /// The same constants for 3 channels (after [`grey_to_rgb`](crate::data::ImageDataset::grey_to_rgb)).
    pub fn repeated(&self, channels: usize) -> Self {
        if self.mean.len() != 1 {
            return self.clone();
        }
        Self {
            mean: vec![self.mean[0]; channels],
            std: vec![self.std[0]; channels],
        }
    }

    /// Converts `xs` (`(N, C, ...)`, u8 or float) to normalised f32.
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        let scale = if xs.dtype() == DType::U8 {
            1.0 / 255.0
        } else {
            1.0
        };
        let xs = xs.to_dtype(DType::F32)?;
        if self.mean.len() == 1 {
            let s = self.std[0];
            return Ok(xs.affine(scale / s, -self.mean[0] / s)?);
        }
        let c = self.mean.len();
        if xs.rank() < 2 || xs.dims()[1] != c {
            return Err(Error::DataMismatch(format!(
                "Normalize has {c} channel constants but inputs have shape {:?}",
                xs.dims()
            )));
        }
        let mut shape = vec![1usize; xs.rank()];
        shape[1] = c;
        let mul: Vec<f32> = self.std.iter().map(|s| (scale / s) as f32).collect();
        let add: Vec<f32> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(m, s)| (-m / s) as f32)
            .collect();
        let dev = xs.device();
        let mul = Tensor::from_vec(mul, shape.as_slice(), &Device::Cpu)?.to_device(dev)?;
        let add = Tensor::from_vec(add, shape.as_slice(), &Device::Cpu)?.to_device(dev)?;
        Ok(xs.broadcast_mul(&mul)?.broadcast_add(&add)?)
    }
}

/// A random augmentation applied to training batches (never to evaluation), drawn from the
/// trainer's seeded generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Augment {
    /// Pad each image with `padding` zeros on every side, then crop a random window of the
    /// original size (the usual CIFAR recipe uses 4).
    RandomCrop {
        /// Zeros added on each side before cropping.
        padding: usize,
    },
    /// Mirror each image left-right with probability `probability` (usually 0.5).
    HorizontalFlip {
        /// Chance of a flip, in `[0, 1]`.
        probability: f64,
    },
}

impl Augment {
    /// Applies `augments` in order to a batch `(N, C, H, W)` (u8 or f32) on the CPU.
    pub fn apply_all(augments: &[Augment], xs: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        if augments.is_empty() {
            return Ok(xs.clone());
        }
        let dims = xs.dims().to_vec();
        if dims.len() != 4 {
            return Err(Error::DataMismatch(format!(
                "augmentation needs image batches (N, C, H, W), got {dims:?}"
            )));
        }
        if dims[1..].contains(&0) {
            return Err(Error::DataMismatch(format!(
                "cannot augment empty images {dims:?}"
            )));
        }
        for a in augments {
            if let Augment::HorizontalFlip { probability } = a {
                if !(0.0..=1.0).contains(probability) {
                    return Err(Error::config(
                        "HorizontalFlip probability",
                        probability,
                        "must be in [0, 1]",
                    ));
                }
            }
        }
        match xs.dtype() {
            DType::U8 => augment_typed::<u8>(augments, xs, &dims, rng),
            _ => augment_typed::<f32>(augments, &xs.to_dtype(DType::F32)?, &dims, rng),
        }
    }
}

fn augment_typed<T: WithDType + Default>(
    augments: &[Augment],
    xs: &Tensor,
    dims: &[usize],
    rng: &mut impl Rng,
) -> Result<Tensor> {
    let (c, h, w) = (dims[1], dims[2], dims[3]);
    let mut data = xs.flatten_all()?.to_vec1::<T>()?;
    let mut scratch = vec![T::default(); c * h * w];
    for img in data.chunks_exact_mut(c * h * w) {
        for aug in augments {
            match *aug {
                Augment::RandomCrop { padding } => {
                    let dy = rng.random_range(0..=2 * padding) as isize - padding as isize;
                    let dx = rng.random_range(0..=2 * padding) as isize - padding as isize;
                    for ch in 0..c {
                        for y in 0..h {
                            for x in 0..w {
                                let (sy, sx) = (y as isize + dy, x as isize + dx);
                                scratch[ch * h * w + y * w + x] =
                                    if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                                        img[ch * h * w + sy as usize * w + sx as usize]
                                    } else {
                                        T::default()
                                    };
                            }
                        }
                    }
                    img.copy_from_slice(&scratch);
                }
                Augment::HorizontalFlip { probability } => {
                    if rng.random_bool(probability.clamp(0.0, 1.0)) {
                        for row in img.chunks_exact_mut(w) {
                            row.reverse();
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(data, dims, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn scales_pixels_then_normalises() -> Result<()> {
        let x = Tensor::new(&[[0u8, 255]], &Device::Cpu)?;
        let y = Normalize::mnist().apply(&x)?.to_vec2::<f32>()?;
        assert_abs_diff_eq!(y[0][0], -0.1307 / 0.3081, epsilon = 1e-5);
        assert_abs_diff_eq!(y[0][1], (1.0 - 0.1307) / 0.3081, epsilon = 1e-5);
        let rgb = Tensor::ones((1, 2, 1, 1), DType::F32, &Device::Cpu)?;
        let n = Normalize::new(vec![0.5, 0.0], vec![0.5, 2.0])?;
        let y = n.apply(&rgb)?.flatten_all()?.to_vec1::<f32>()?;
        assert_abs_diff_eq!(y[0], 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(y[1], 0.5, epsilon = 1e-6);
        assert!(Normalize::new(vec![0.0], vec![0.0]).is_err());
        Ok(())
    }

    #[test]
    fn augmentations_are_seeded_and_keep_content() -> Result<()> {
        use rand::SeedableRng;
        let x = Tensor::from_vec((1u8..=32).collect::<Vec<_>>(), (2, 1, 4, 4), &Device::Cpu)?;
        let flip = [Augment::HorizontalFlip { probability: 1.0 }];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let f = Augment::apply_all(&flip, &x, &mut rng)?
            .flatten_all()?
            .to_vec1::<u8>()?;
        assert_eq!(&f[..4], &[4, 3, 2, 1]);
        let crop = [Augment::RandomCrop { padding: 2 }];
        let a = Augment::apply_all(&crop, &x, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3))?;
        let b = Augment::apply_all(&crop, &x, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3))?;
        assert_eq!(
            a.flatten_all()?.to_vec1::<u8>()?,
            b.flatten_all()?.to_vec1::<u8>()?
        );
        // A crop only shifts: every non-zero pixel comes from the original image.
        let original: Vec<u8> = (1..=32).collect();
        assert!(a
            .flatten_all()?
            .to_vec1::<u8>()?
            .iter()
            .all(|p| *p == 0 || original.contains(p)));
        let f32x = x.to_dtype(DType::F32)?;
        assert_eq!(
            Augment::apply_all(&flip, &f32x, &mut rng)?.dtype(),
            DType::F32
        );
        Ok(())
    }
}

//! Images in memory: u8 pixels `(N, C, H, W)` with u32 labels, and the deterministic
//! geometric transforms applied once after loading (padding, resizing, grey to RGB).

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Images as u8 pixels `(N, C, H, W)` with one u32 label each.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    images: Vec<u8>,
    labels: Vec<u32>,
    shape: [usize; 3],
}

impl ImageDataset {
    /// Builds a dataset, checking that `images` holds `labels.len()` images of `shape`
    /// (`[C, H, W]`).
    pub fn new(images: Vec<u8>, labels: Vec<u32>, shape: [usize; 3]) -> Result<Self> {
        let per_image: usize = shape.iter().product();
        if per_image == 0 || images.len() != labels.len() * per_image {
            return Err(Error::DataMismatch(format!(
                "{} pixels do not make {} images of shape {shape:?}",
                images.len(),
                labels.len()
            )));
        }
        Ok(Self {
            images,
            labels,
            shape,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image shape `[C, H, W]`.
    pub fn image_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The pixels, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.images
    }

    /// The first `n` images (all of them when `n >= len`).
    pub fn take(&self, n: usize) -> ImageDataset {
        let n = n.min(self.len());
        let per_image: usize = self.shape.iter().product();
        ImageDataset {
            images: self.images[..n * per_image].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape,
        }
    }

    /// The images as a u8 tensor `(N, C, H, W)` on the CPU.
    pub fn images_tensor(&self) -> Result<Tensor> {
        let [c, h, w] = self.shape;
        Ok(Tensor::from_slice(
            &self.images,
            (self.len(), c, h, w),
            &Device::Cpu,
        )?)
    }

    /// The labels as a u32 tensor `(N,)` on the CPU: class-index targets.
    pub fn labels_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.labels, self.len(), &Device::Cpu)?)
    }

    /// The labels as f32 values `(N,)` on the CPU: regression targets (digit 7 -> 7.0).
    pub fn label_values_tensor(&self) -> Result<Tensor> {
        let values: Vec<f32> = self.labels.iter().map(|&l| l as f32).collect();
        Ok(Tensor::from_vec(values, self.len(), &Device::Cpu)?)
    }

    /// Each image padded with zeros, centred, to `height x width` (for example MNIST's 28x28
    /// to 32x32, 2 pixels each side). Refuses a target smaller than the images.
    pub fn pad_to(&self, height: usize, width: usize) -> Result<ImageDataset> {
        let [c, h, w] = self.shape;
        if height < h || width < w {
            return Err(Error::config(
                "pad_to",
                format!("{height}x{width}"),
                format!("is smaller than the images ({h}x{w}); use resize_to"),
            ));
        }
        let (top, left) = ((height - h) / 2, (width - w) / 2);
        let mut out = vec![0u8; self.len() * c * height * width];
        for (src, dst) in self
            .images
            .chunks_exact(c * h * w)
            .zip(out.chunks_exact_mut(c * height * width))
        {
            for ch in 0..c {
                for y in 0..h {
                    let s = ch * h * w + y * w;
                    let d = ch * height * width + (y + top) * width + left;
                    dst[d..d + w].copy_from_slice(&src[s..s + w]);
                }
            }
        }
        ImageDataset::new(out, self.labels.clone(), [c, height, width])
    }

    /// Each image resized to `height x width` by bilinear interpolation (pixel centres
    /// aligned, as `torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`).
    pub fn resize_to(&self, height: usize, width: usize) -> Result<ImageDataset> {
        let [c, h, w] = self.shape;
        if height == 0 || width == 0 {
            return Err(Error::config(
                "resize_to",
                format!("{height}x{width}"),
                "must be positive",
            ));
        }
        let source_coord = |i: usize, out: usize, inp: usize| {
            let x = ((i as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
            let x0 = (x.floor() as usize).min(inp - 1);
            let x1 = (x0 + 1).min(inp - 1);
            (x0, x1, x - x0 as f32)
        };
        let ys: Vec<_> = (0..height).map(|i| source_coord(i, height, h)).collect();
        let xs: Vec<_> = (0..width).map(|i| source_coord(i, width, w)).collect();
        let mut out = vec![0u8; self.len() * c * height * width];
        for (src, dst) in self
            .images
            .chunks_exact(c * h * w)
            .zip(out.chunks_exact_mut(c * height * width))
        {
            for ch in 0..c {
                let plane = &src[ch * h * w..(ch + 1) * h * w];
                for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
                    for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                        let p = |y: usize, x: usize| f32::from(plane[y * w + x]);
                        let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                        let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                        let v = top * (1.0 - fy) + bottom * fy;
                        dst[ch * height * width + oy * width + ox] =
                            v.round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
        ImageDataset::new(out, self.labels.clone(), [c, height, width])
    }

    /// Grey images (1 channel) repeated into 3 identical channels; RGB images unchanged.
    pub fn grey_to_rgb(&self) -> Result<ImageDataset> {
        let [c, h, w] = self.shape;
        match c {
            3 => Ok(self.clone()),
            1 => {
                let mut out = Vec::with_capacity(self.images.len() * 3);
                for img in self.images.chunks_exact(h * w) {
                    for _ in 0..3 {
                        out.extend_from_slice(img);
                    }
                }
                ImageDataset::new(out, self.labels.clone(), [3, h, w])
            }
            other => Err(Error::config("grey_to_rgb", other, "needs 1 or 3 channels")),
        }
    }

    /// The images and labels at `indices`.
    pub fn select(&self, indices: &[usize]) -> Result<ImageDataset> {
        let per_image: usize = self.shape.iter().product();
        let mut images = Vec::with_capacity(indices.len() * per_image);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(Error::DataMismatch(format!(
                    "image index {i} out of range for {} images",
                    self.len()
                )));
            }
            images.extend_from_slice(&self.images[i * per_image..(i + 1) * per_image]);
            labels.push(self.labels[i]);
        }
        ImageDataset::new(images, labels, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_images() -> ImageDataset {
        // 1x2x2 images: [[10, 20], [30, 40]] and [[0, 0], [0, 255]]
        ImageDataset::new(vec![10, 20, 30, 40, 0, 0, 0, 255], vec![1, 2], [1, 2, 2]).unwrap()
    }

    #[test]
    fn pad_centres_the_image() {
        let p = two_images().pad_to(4, 4).unwrap();
        assert_eq!(p.image_shape(), [1, 4, 4]);
        assert_eq!(
            &p.pixels()[..16],
            &[0, 0, 0, 0, 0, 10, 20, 0, 0, 30, 40, 0, 0, 0, 0, 0]
        );
        assert!(two_images().pad_to(1, 4).is_err());
    }

    #[test]
    fn resize_keeps_constant_images_and_doubles_sizes() {
        let flat = ImageDataset::new(vec![7; 4], vec![0], [1, 2, 2]).unwrap();
        assert!(flat
            .resize_to(5, 3)
            .unwrap()
            .pixels()
            .iter()
            .all(|&p| p == 7));
        let r = two_images().resize_to(4, 4).unwrap();
        assert_eq!(r.image_shape(), [1, 4, 4]);
        // Corners keep the source corners (align_corners=False clamps at the border).
        assert_eq!(
            (r.pixels()[0], r.pixels()[3], r.pixels()[12], r.pixels()[15]),
            (10, 20, 30, 40)
        );
        // PyTorch gives 12.5 at (0, 1): 0.75 * 10 + 0.25 * 20.
        assert_eq!(r.pixels()[1], 13);
        let same = two_images().resize_to(2, 2).unwrap();
        assert_eq!(same, two_images());
    }

    #[test]
    fn grey_to_rgb_repeats_the_channel() {
        let rgb = two_images().grey_to_rgb().unwrap();
        assert_eq!(rgb.image_shape(), [3, 2, 2]);
        assert_eq!(
            &rgb.pixels()[..12],
            &[10, 20, 30, 40, 10, 20, 30, 40, 10, 20, 30, 40]
        );
        assert_eq!(rgb.labels(), &[1, 2]);
        let sel = rgb.select(&[1]).unwrap();
        assert_eq!(sel.labels(), &[2]);
        assert!(rgb.select(&[5]).is_err());
    }
}

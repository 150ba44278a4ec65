//! Decoding one image file (PNG, JPEG) into a `(C, H, W)` u8 tensor of a fixed size.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// How an image whose size differs from the dataset's is brought to it.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFit {
    /// Scaled to the size (bilinear), aspect ratio not kept.
    #[default]
    Resize,
    /// Centred on a black canvas of the size; an image larger than the size is refused.
    Pad,
}

/// How image files become inputs: colour channels, size, fit.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `channels` | `None` | 1 (grey) or 3 (RGB); `None`: those of the first image |
/// | `size` | `None` | `(height, width)`; `None`: the first image's size, every other image must match |
/// | `fit` | resize | how other sizes are brought to `size` ([`ImageFit`]) |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageOptions {
    /// Colour channels of the inputs.
    pub channels: Option<usize>,
    /// Height and width of the inputs.
    pub size: Option<(usize, usize)>,
    /// Resize or pad.
    pub fit: ImageFit,
}

impl ImageOptions {
    /// Square images of `side` pixels, channels from the first image.
    pub fn square(side: usize) -> Self {
        Self {
            size: Some((side, side)),
            ..Self::default()
        }
    }

    /// Refuses a channel count other than 1 or 3 and a zero size.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.channels {
            if c != 1 && c != 3 {
                return Err(Error::config("ImageOptions::channels", c, "must be 1 or 3"));
            }
        }
        if let Some((h, w)) = self.size {
            if h == 0 || w == 0 {
                return Err(Error::config(
                    "ImageOptions::size",
                    format!("{h}x{w}"),
                    "must be at least 1x1",
                ));
            }
        }
        Ok(())
    }

    /// The `[C, H, W]` of every input, fixed from the first image where not set.
    pub(crate) fn resolve(&self, first: &Path, origin: &str) -> Result<[usize; 3]> {
        let img = open(first, origin)?;
        let c = self
            .channels
            .unwrap_or(if img.color().has_color() { 3 } else { 1 });
        let (h, w) = self
            .size
            .unwrap_or((img.height() as usize, img.width() as usize));
        Ok([c, h, w])
    }
}

fn open(path: &Path, origin: &str) -> Result<image::DynamicImage> {
    let bad = |problem: String| Error::BadSampleFile {
        file: path.to_path_buf(),
        origin: origin.to_string(),
        problem,
    };
    image::ImageReader::open(path)
        .map_err(|e| bad(format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| bad(format!("cannot decode as an image: {e}")))
}

/// Checks that `path` holds an image of a known format without decoding its pixels (its
/// header only): what a manifest does for every row when bad rows are skipped.
pub(crate) fn check_header(path: &Path) -> std::result::Result<(), String> {
    image::ImageReader::open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .into_dimensions()
        .map(|_| ())
        .map_err(|e| format!("{} is not a readable image: {e}", path.display()))
}

/// Decodes `path` into a u8 tensor of `shape` (`[C, H, W]`, C 1 or 3), converting colour and
/// fitting the size as `options` say; errors name the file and `origin`.
pub(crate) fn decode(
    path: &Path,
    shape: [usize; 3],
    options: &ImageOptions,
    origin: &str,
) -> Result<Tensor> {
    let [c, h, w] = shape;
    let img = open(path, origin)?;
    let (ih, iw) = (img.height() as usize, img.width() as usize);
    let pixels: Vec<u8> = match c {
        1 => img.into_luma8().into_raw(),
        _ => img.into_rgb8().into_raw(),
    };
    let hwc = if (ih, iw) == (h, w) {
        pixels
    } else if options.size.is_none() {
        return Err(Error::BadSampleFile {
            file: path.to_path_buf(),
            origin: origin.to_string(),
            problem: format!(
                "is {ih}x{iw}, the dataset's first image {h}x{w}; give an image size to resize or pad"
            ),
        });
    } else {
        match options.fit {
            ImageFit::Resize => resize(&pixels, c, (ih, iw), (h, w)),
            ImageFit::Pad => {
                if ih > h || iw > w {
                    return Err(Error::BadSampleFile {
                        file: path.to_path_buf(),
                        origin: origin.to_string(),
                        problem: format!(
                            "is {ih}x{iw}, larger than the padded size {h}x{w}; use ImageFit::Resize"
                        ),
                    });
                }
                pad(&pixels, c, (ih, iw), (h, w))
            }
        }
    };
    // Interleaved HWC to planar CHW.
    let mut chw = vec![0u8; c * h * w];
    for (p, px) in hwc.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * h * w + p] = v;
        }
    }
    Ok(Tensor::from_vec(chw, (c, h, w), &Device::Cpu)?)
}

fn resize(hwc: &[u8], c: usize, (ih, iw): (usize, usize), (h, w): (usize, usize)) -> Vec<u8> {
    let filter = image::imageops::FilterType::Triangle;
    if c == 1 {
        let img = image::GrayImage::from_raw(iw as u32, ih as u32, hwc.to_vec());
        img.map(|i| image::imageops::resize(&i, w as u32, h as u32, filter).into_raw())
    } else {
        let img = image::RgbImage::from_raw(iw as u32, ih as u32, hwc.to_vec());
        img.map(|i| image::imageops::resize(&i, w as u32, h as u32, filter).into_raw())
    }
    .unwrap_or_else(|| vec![0; h * w * c])
}

fn pad(hwc: &[u8], c: usize, (ih, iw): (usize, usize), (h, w): (usize, usize)) -> Vec<u8> {
    let (top, left) = ((h - ih) / 2, (w - iw) / 2);
    let mut out = vec![0u8; h * w * c];
    for y in 0..ih {
        let src = &hwc[y * iw * c..(y + 1) * iw * c];
        let start = ((y + top) * w + left) * c;
        out[start..start + iw * c].copy_from_slice(src);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_converts_resizes_and_pads() -> Result<()> {
        let dir =
            std::env::temp_dir().join(format!("candle-mtl-image-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let rgb = dir.join("rgb.png");
        let mut img = image::RgbImage::new(4, 2);
        img.put_pixel(3, 1, image::Rgb([255, 0, 10]));
        img.save(&rgb)
            .map_err(|e| Error::malformed(&rgb, e.to_string()))?;
        let opts = ImageOptions::default();
        let shape = opts.resolve(&rgb, "t")?;
        assert_eq!(shape, [3, 2, 4]);
        let t = decode(&rgb, shape, &opts, "t")?;
        assert_eq!(t.dims(), &[3, 2, 4]);
        assert_eq!(t.to_vec3::<u8>()?[0][1][3], 255);
        assert_eq!(t.to_vec3::<u8>()?[2][1][3], 10);
        // Grey, padded to 4x6: the image's 2x4 block sits in rows 1-2, columns 1-4.
        let pad_opts = ImageOptions {
            channels: Some(1),
            size: Some((4, 6)),
            fit: ImageFit::Pad,
        };
        let g = decode(&rgb, [1, 4, 6], &pad_opts, "t")?.to_vec3::<u8>()?;
        assert!(g[0][2][4] > 0 && g[0][2][5] == 0 && g[0][0][4] == 0);
        let r = decode(
            &rgb,
            [1, 8, 8],
            &ImageOptions {
                fit: ImageFit::Resize,
                ..pad_opts
            },
            "t",
        )?;
        assert_eq!(r.dims(), &[1, 8, 8]);
        // Too large for padding, a size mismatch without a size, not an image: errors naming the file.
        let small = ImageOptions {
            size: Some((1, 1)),
            ..pad_opts
        };
        assert!(decode(&rgb, [1, 1, 1], &small, "t")
            .unwrap_err()
            .to_string()
            .contains("rgb.png"));
        assert!(decode(&rgb, [3, 4, 4], &opts, "t")
            .unwrap_err()
            .to_string()
            .contains("give an image size"));
        let junk = dir.join("junk.png");
        std::fs::write(&junk, b"not a png").map_err(|e| Error::io(&junk, e))?;
        let err = decode(&junk, shape, &opts, "m.csv line 3")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("junk.png") && err.contains("m.csv line 3"),
            "{err}"
        );
        assert!(check_header(&junk).is_err() && check_header(&rgb).is_ok());
        // JPEG (lossy): decoded to the same shape, grey on request.
        let jpg = dir.join("rgb.jpg");
        image::RgbImage::from_pixel(8, 6, image::Rgb([200, 40, 40]))
            .save(&jpg)
            .map_err(|e| Error::malformed(&jpg, e.to_string()))?;
        assert_eq!(ImageOptions::default().resolve(&jpg, "t")?, [3, 6, 8]);
        let grey = decode(
            &jpg,
            [1, 6, 8],
            &ImageOptions {
                channels: Some(1),
                ..opts
            },
            "t",
        )?;
        let v: Vec<u8> = grey.flatten_all()?.to_vec1()?;
        assert!(v.iter().all(|&p| (70..=100).contains(&p)), "{v:?}");
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}

//! Multi-MNIST-style composites: two images on one canvas, one label per image.
//!
//! The recipe of Sener & Koltun (2018) and Lin et al. (Pareto MTL, 2019): an image in the
//! top-left and another in the bottom-right of a 36x36 canvas, each shifted by up to 4 pixels,
//! overlapping pixels taking the brighter value. Task 1 reads the top-left label, task 2 the
//! bottom-right one. Multi-MNIST and Multi-Fashion draw both images from one dataset (with
//! different classes); Multi-(Fashion+MNIST) draws one from each.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ImageDataset;
use crate::error::{Error, Result};

/// Composite images and their two labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Composites {
    /// The composites; their labels are the top-left images' labels.
    pub images: ImageDataset,
    /// The bottom-right images' labels.
    pub right_labels: Vec<u32>,
}

/// Settings of [`compose_pairs`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `count` | 10,000 | composites to make |
/// | `canvas` | 36 | canvas side in pixels |
/// | `max_shift` | 4 | largest random shift of each image, in pixels |
/// | `different_classes` | true | redraw the right image until its class differs from the left one |
/// | `seed` | 0 | seeds the choice of images and shifts |
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeConfig {
    /// Number of composites.
    pub count: usize,
    /// Canvas side.
    pub canvas: usize,
    /// Largest shift per image.
    pub max_shift: usize,
    /// Require the two images to have different classes.
    pub different_classes: bool,
    /// Seed.
    pub seed: u64,
}

impl Default for ComposeConfig {
    fn default() -> Self {
        Self {
            count: 10_000,
            canvas: 36,
            max_shift: 4,
            different_classes: true,
            seed: 0,
        }
    }
}

/// Makes `config.count` composites: a random image of `left` in the top-left corner and one of
/// `right` in the bottom-right (both single-channel and of the same size).
pub fn compose_pairs(
    left: &ImageDataset,
    right: &ImageDataset,
    config: &ComposeConfig,
) -> Result<Composites> {
    let [c, h, w] = left.image_shape();
    if right.image_shape() != [c, h, w] || c != 1 {
        return Err(Error::DataMismatch(format!(
            "composites need grey images of one size, got {:?} and {:?}",
            left.image_shape(),
            right.image_shape()
        )));
    }
    if left.is_empty() || right.is_empty() {
        return Err(Error::DataMismatch(
            "composites need non-empty datasets".into(),
        ));
    }
    let n = config.canvas;
    if n < h.max(w) + config.max_shift {
        return Err(Error::config(
            "ComposeConfig::canvas",
            n,
            format!(
                "must be at least the image size plus max_shift ({})",
                h.max(w) + config.max_shift
            ),
        ));
    }
    if config.different_classes {
        // Redrawing the right image until its class differs must be able to succeed for every
        // left image: refuse when the right images all share a class the left images have.
        let first = right.labels()[0];
        if right.labels().iter().all(|&l| l == first) && left.labels().contains(&first) {
            return Err(Error::DataMismatch(format!(
                "different_classes: every right image has class {first}, which left images also have"
            )));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut pixels = vec![0u8; config.count * n * n];
    let mut labels = Vec::with_capacity(config.count);
    let mut right_labels = Vec::with_capacity(config.count);
    for canvas in pixels.chunks_exact_mut(n * n) {
        let i = rng.random_range(0..left.len());
        let mut j = rng.random_range(0..right.len());
        while config.different_classes && right.labels()[j] == left.labels()[i] {
            j = rng.random_range(0..right.len());
        }
        let place = |canvas: &mut [u8], img: &[u8], top: usize, lft: usize| {
            for y in 0..h {
                for x in 0..w {
                    let p = &mut canvas[(top + y) * n + lft + x];
                    *p = (*p).max(img[y * w + x]);
                }
            }
        };
        let (ty, tx) = (
            rng.random_range(0..=config.max_shift),
            rng.random_range(0..=config.max_shift),
        );
        let (by, bx) = (
            n - h - rng.random_range(0..=config.max_shift),
            n - w - rng.random_range(0..=config.max_shift),
        );
        place(canvas, &left.pixels()[i * h * w..(i + 1) * h * w], ty, tx);
        place(canvas, &right.pixels()[j * h * w..(j + 1) * h * w], by, bx);
        labels.push(left.labels()[i]);
        right_labels.push(right.labels()[j]);
    }
    Ok(Composites {
        images: ImageDataset::new(pixels, labels, [1, n, n])?,
        right_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composites_hold_both_images_with_different_classes() -> Result<()> {
        // Two 2x2 "images": class 0 all 100, class 1 all 200.
        let ds = ImageDataset::new(
            vec![100, 100, 100, 100, 200, 200, 200, 200],
            vec![0, 1],
            [1, 2, 2],
        )?;
        let cfg = ComposeConfig {
            count: 20,
            canvas: 5,
            max_shift: 1,
            different_classes: true,
            seed: 3,
        };
        let c = compose_pairs(&ds, &ds, &cfg)?;
        assert_eq!(c.images.image_shape(), [1, 5, 5]);
        for (k, img) in c.images.pixels().chunks_exact(25).enumerate() {
            let (l, r) = (c.images.labels()[k], c.right_labels[k]);
            assert_ne!(l, r);
            // The top-left 2x2 block starts within the first two rows/columns.
            let tl = (0..2)
                .flat_map(|y| (0..2).map(move |x| (y, x)))
                .any(|(y, x)| img[y * 5 + x] > 0);
            assert!(tl);
            assert!(img.iter().filter(|&&p| p > 0).count() >= 4);
        }
        let again = compose_pairs(&ds, &ds, &cfg)?;
        assert_eq!(again, c);
        assert!(compose_pairs(
            &ds,
            &ds,
            &ComposeConfig {
                canvas: 2,
                ..cfg.clone()
            }
        )
        .is_err());
        // Every right image of a class the left images also have: no valid pair, refused.
        let only_one = ImageDataset::new(vec![200; 4], vec![1], [1, 2, 2])?;
        assert!(compose_pairs(&ds, &only_one, &cfg).is_err());
        Ok(())
    }
}

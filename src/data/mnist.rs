//! MNIST-family splits (MNIST, Fashion-MNIST, KMNIST: the same four IDX files).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::idx::read_idx;
use crate::error::{Error, Result};

/// File names of the four IDX files of a split, each read raw or with a `.gz` suffix:
/// training images, training labels, test images, test labels.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

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
}

/// The training and test split of an MNIST-family dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// Training images.
    pub train: ImageDataset,
    /// Test images.
    pub test: ImageDataset,
}

/// Loads an MNIST-family dataset from `dir`, which holds the four [`MNIST_FILES`] (raw or
/// `.gz`). Checks image and label files against each other and labels against the 10 classes.
///
/// A missing directory or file gives an error that says where it looked and how to get the
/// files.
pub fn load_mnist(dir: impl AsRef<Path>) -> Result<Mnist> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::DataNotFound {
            what: "MNIST-format data directory".into(),
            path: dir.to_path_buf(),
            hint: download_hint(dir),
        });
    }
    let train = load_split(dir, MNIST_FILES[0], MNIST_FILES[1])?;
    let test = load_split(dir, MNIST_FILES[2], MNIST_FILES[3])?;
    if train.image_shape() != test.image_shape() {
        return Err(Error::DataMismatch(format!(
            "{}: training images are {:?} but test images are {:?}",
            dir.display(),
            train.image_shape(),
            test.image_shape()
        )));
    }
    Ok(Mnist { train, test })
}

fn download_hint(dir: &Path) -> String {
    format!(
        "expected the files {} (each raw or gzip-compressed with a .gz suffix) in {}.\n\
         Get MNIST from a mirror such as https://ossci-datasets.s3.amazonaws.com/mnist/ \
         (Fashion-MNIST: http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/) \
         and put the four files there, or pass another directory with --data-dir.",
        MNIST_FILES.join(", "),
        dir.display()
    )
}

fn find_file(dir: &Path, base: &str) -> Result<PathBuf> {
    let raw = dir.join(base);
    let gz = dir.join(format!("{base}.gz"));
    if raw.is_file() {
        Ok(raw)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(Error::DataNotFound {
            what: format!("file {base} (or {base}.gz)"),
            path: dir.to_path_buf(),
            hint: download_hint(dir),
        })
    }
}

fn load_split(dir: &Path, images_name: &str, labels_name: &str) -> Result<ImageDataset> {
    let images_path = find_file(dir, images_name)?;
    let labels_path = find_file(dir, labels_name)?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    if images.dims.len() != 3 {
        return Err(Error::malformed(
            &images_path,
            format!("expected 3 dimensions (N, H, W), found {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::malformed(
            &labels_path,
            format!("expected 1 dimension (N), found {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::malformed(
            &labels_path,
            format!(
                "holds {} labels but {} holds {} images",
                labels.dims[0],
                images_path.display(),
                images.dims[0]
            ),
        ));
    }
    if let Some((i, &bad)) = labels.data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Error::malformed(
            &labels_path,
            format!(
                "label {bad} at index {i} (byte offset {}) is outside 0..=9",
                8 + i
            ),
        ));
    }
    let labels = labels.data.into_iter().map(u32::from).collect();
    ImageDataset::new(images.data, labels, [1, images.dims[1], images.dims[2]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_idx;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("candle-mtl-mnist-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_split(d: &Path, n_train: usize, labels: &[u8]) {
        let px = vec![7u8; n_train * 4 * 4];
        write_idx(d.join(MNIST_FILES[0]), &[n_train, 4, 4], &px, true).unwrap();
        write_idx(d.join(MNIST_FILES[1]), &[labels.len()], labels, true).unwrap();
        write_idx(
            d.join(format!("{}.gz", MNIST_FILES[2])),
            &[1, 4, 4],
            &px[..16],
            true,
        )
        .unwrap();
        write_idx(d.join(MNIST_FILES[3]), &[1], &[3], false).unwrap();
    }

    #[test]
    fn loads_a_small_split() -> Result<()> {
        let d = dir("ok");
        write_split(&d, 3, &[0, 9, 4]);
        let m = load_mnist(&d)?;
        assert_eq!(m.train.len(), 3);
        assert_eq!(m.train.labels(), &[0, 9, 4]);
        assert_eq!(m.test.image_shape(), [1, 4, 4]);
        assert_eq!(m.train.images_tensor()?.dims(), &[3, 1, 4, 4]);
        Ok(())
    }

    #[test]
    fn errors_name_files_and_values() {
        let missing = dir("none").join("nope");
        let msg = load_mnist(&missing).unwrap_err().to_string();
        assert!(
            msg.contains("nope") && msg.contains("train-images-idx3-ubyte"),
            "{msg}"
        );

        let d = dir("count");
        write_split(&d, 3, &[0, 1]);
        let msg = load_mnist(&d).unwrap_err().to_string();
        assert!(
            msg.contains("train-labels") && msg.contains("2 labels") && msg.contains("3 images"),
            "{msg}"
        );

        let d = dir("range");
        write_split(&d, 2, &[0, 12]);
        let msg = load_mnist(&d).unwrap_err().to_string();
        assert!(msg.contains("label 12 at index 1"), "{msg}");
    }
}

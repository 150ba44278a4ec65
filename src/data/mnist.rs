//! MNIST-family splits (MNIST, Fashion-MNIST, KMNIST: the same four IDX files).

use std::path::{Path, PathBuf};

use super::idx::read_idx;
use super::ImageDataset;
use crate::error::{Error, Result};

/// File names of the four IDX files of a split, each read raw or with a `.gz` suffix:
/// training images, training labels, test images, test labels.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

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
    let train = load_split(dir, MNIST_FILES[0], MNIST_FILES[1], 9, false)?;
    let test = load_split(dir, MNIST_FILES[2], MNIST_FILES[3], 9, false)?;
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

/// EMNIST splits: name and largest label.
const EMNIST_SPLITS: [(&str, u8); 6] = [
    ("balanced", 46),
    ("byclass", 61),
    ("bymerge", 46),
    ("digits", 9),
    ("letters", 26),
    ("mnist", 9),
];

/// Loads split `split` of EMNIST (`balanced`, `byclass`, `bymerge`, `digits`, `letters`,
/// `mnist`) from `dir`, which holds `emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte`
/// (raw or `.gz`), as in the official `gzip.zip`.
///
/// EMNIST stores each image transposed; the images are turned back to MNIST's orientation.
/// Labels are kept as stored (`letters` uses 1..=26).
pub fn load_emnist(dir: impl AsRef<Path>, split: &str) -> Result<Mnist> {
    let dir = dir.as_ref();
    let Some(&(_, max_label)) = EMNIST_SPLITS.iter().find(|(name, _)| *name == split) else {
        return Err(Error::config(
            "EMNIST split",
            split,
            "expected balanced, byclass, bymerge, digits, letters or mnist",
        ));
    };
    if !dir.is_dir() {
        return Err(Error::DataNotFound {
            what: "EMNIST directory".into(),
            path: dir.to_path_buf(),
            hint: format!(
                "expected emnist-{split}-train-images-idx3-ubyte.gz and the three other files of \
                 the split there (from the EMNIST gzip.zip archive)"
            ),
        });
    }
    let name = |part: &str| format!("emnist-{split}-{part}");
    let train = load_split(
        dir,
        &name("train-images-idx3-ubyte"),
        &name("train-labels-idx1-ubyte"),
        max_label,
        true,
    )?;
    let test = load_split(
        dir,
        &name("test-images-idx3-ubyte"),
        &name("test-labels-idx1-ubyte"),
        max_label,
        true,
    )?;
    Ok(Mnist { train, test })
}

fn transpose_images(pixels: &mut [u8], h: usize, w: usize) {
    let mut buf = vec![0u8; h * w];
    for img in pixels.chunks_exact_mut(h * w) {
        for y in 0..h {
            for x in 0..w {
                buf[x * h + y] = img[y * w + x];
            }
        }
        img.copy_from_slice(&buf);
    }
}

fn load_split(
    dir: &Path,
    images_name: &str,
    labels_name: &str,
    max_label: u8,
    transposed: bool,
) -> Result<ImageDataset> {
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
    if let Some((i, &bad)) = labels.data.iter().enumerate().find(|(_, &l)| l > max_label) {
        return Err(Error::malformed(
            &labels_path,
            format!(
                "label {bad} at index {i} (byte offset {}) is outside 0..={max_label}",
                8 + i
            ),
        ));
    }
    let (h, w) = (images.dims[1], images.dims[2]);
    if h == 0 || w == 0 {
        return Err(Error::malformed(
            &images_path,
            format!("images of size {h}x{w}: both dimensions must be positive"),
        ));
    }
    let mut pixels = images.data;
    if transposed {
        transpose_images(&mut pixels, h, w);
    }
    let labels = labels.data.into_iter().map(u32::from).collect();
    let (h, w) = if transposed { (w, h) } else { (h, w) };
    ImageDataset::new(pixels, labels, [1, h, w])
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
    fn emnist_images_are_transposed_back() -> Result<()> {
        let d = dir("emnist");
        // One 2x3 image stored transposed (3x2): rows [1,2],[3,4],[5,6] -> [[1,3,5],[2,4,6]].
        write_idx(
            d.join("emnist-letters-train-images-idx3-ubyte.gz"),
            &[1, 3, 2],
            &[1, 2, 3, 4, 5, 6],
            true,
        )?;
        write_idx(
            d.join("emnist-letters-train-labels-idx1-ubyte.gz"),
            &[1],
            &[26],
            true,
        )?;
        write_idx(
            d.join("emnist-letters-test-images-idx3-ubyte"),
            &[1, 3, 2],
            &[1, 2, 3, 4, 5, 6],
            false,
        )?;
        write_idx(
            d.join("emnist-letters-test-labels-idx1-ubyte"),
            &[1],
            &[1],
            false,
        )?;
        let e = load_emnist(&d, "letters")?;
        assert_eq!(e.train.image_shape(), [1, 2, 3]);
        assert_eq!(e.train.pixels(), &[1, 3, 5, 2, 4, 6]);
        assert_eq!(e.train.labels(), &[26]);
        assert!(load_emnist(&d, "digits").is_err());
        assert!(load_emnist(&d, "nope")
            .unwrap_err()
            .to_string()
            .contains("balanced"));
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

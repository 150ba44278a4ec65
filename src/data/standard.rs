//! The standard datasets: where they are published, their checksums, and where they live on
//! this machine. Fetching them needs the `download` feature; finding and naming them does not.

use std::path::{Path, PathBuf};

/// A file published on the network: its name, the mirrors it is served from (tried in order),
/// its SHA-256 and, where known, its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name once downloaded.
    pub name: String,
    /// Full URLs, tried in order.
    pub urls: Vec<String>,
    /// Lower-case hexadecimal SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes, if known (used for progress).
    pub size: Option<u64>,
}

/// Datasets the crate knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StandardDataset {
    /// MNIST, 60,000 + 10,000 handwritten digits (LeCun et al., 1998).
    Mnist,
    /// Fashion-MNIST, 60,000 + 10,000 clothing images (Xiao, Rasul & Vollgraf, 2017).
    FashionMnist,
    /// CIFAR-10, 50,000 + 10,000 32x32 colour images in 10 classes (Krizhevsky, 2009).
    Cifar10,
    /// CIFAR-100, 50,000 + 10,000 32x32 colour images in 100 classes / 20 superclasses.
    Cifar100,
}

const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];
const FASHION_MIRRORS: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
];

impl StandardDataset {
    /// Every dataset.
    pub const ALL: [StandardDataset; 4] = [
        StandardDataset::Mnist,
        StandardDataset::FashionMnist,
        StandardDataset::Cifar10,
        StandardDataset::Cifar100,
    ];

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            StandardDataset::Mnist => "MNIST",
            StandardDataset::FashionMnist => "Fashion-MNIST",
            StandardDataset::Cifar10 => "CIFAR-10",
            StandardDataset::Cifar100 => "CIFAR-100",
        }
    }

    /// Folder name under the data root (`mnist`, `fashion-mnist`, `cifar-10`, `cifar-100`).
    pub fn dir_name(self) -> &'static str {
        match self {
            StandardDataset::Mnist => "mnist",
            StandardDataset::FashionMnist => "fashion-mnist",
            StandardDataset::Cifar10 => "cifar-10",
            StandardDataset::Cifar100 => "cifar-100",
        }
    }

    /// The published files with their SHA-256 (sizes and checksums as listed by TensorFlow
    /// Datasets and the datasets' authors).
    pub fn files(self) -> Vec<RemoteFile> {
        let idx = |mirrors: &[&str], table: [(&str, &str, u64); 4]| {
            table
                .iter()
                .map(|(name, sha, size)| RemoteFile {
                    name: name.to_string(),
                    urls: mirrors.iter().map(|m| format!("{m}{name}")).collect(),
                    sha256: sha.to_string(),
                    size: Some(*size),
                })
                .collect()
        };
        match self {
            StandardDataset::Mnist => idx(
                &MNIST_MIRRORS,
                [
                    (
                        "train-images-idx3-ubyte.gz",
                        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                        9_912_422,
                    ),
                    (
                        "train-labels-idx1-ubyte.gz",
                        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                        28_881,
                    ),
                    (
                        "t10k-images-idx3-ubyte.gz",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                        1_648_877,
                    ),
                    (
                        "t10k-labels-idx1-ubyte.gz",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                        4_542,
                    ),
                ],
            ),
            StandardDataset::FashionMnist => idx(
                &FASHION_MIRRORS,
                [
                    (
                        "train-images-idx3-ubyte.gz",
                        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                        26_421_880,
                    ),
                    (
                        "train-labels-idx1-ubyte.gz",
                        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                        29_515,
                    ),
                    (
                        "t10k-images-idx3-ubyte.gz",
                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                        4_422_102,
                    ),
                    (
                        "t10k-labels-idx1-ubyte.gz",
                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                        5_148,
                    ),
                ],
            ),
            StandardDataset::Cifar10 => vec![RemoteFile {
                name: "cifar-10-binary.tar.gz".into(),
                urls: vec!["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz".into()],
                sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd".into(),
                size: Some(170_052_171),
            }],
            StandardDataset::Cifar100 => vec![RemoteFile {
                name: "cifar-100-binary.tar.gz".into(),
                urls: vec!["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz".into()],
                sha256: "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec".into(),
                size: Some(168_513_733),
            }],
        }
    }

    /// The folder an archive unpacks to, for datasets published as one archive.
    pub fn archive_folder(self) -> Option<&'static str> {
        match self {
            StandardDataset::Cifar10 => Some("cifar-10-batches-bin"),
            StandardDataset::Cifar100 => Some("cifar-100-binary"),
            _ => None,
        }
    }

    /// True when `dir` already holds the dataset in a form the loaders read.
    pub fn is_present(self, dir: &Path) -> bool {
        match self.archive_folder() {
            Some(folder) => {
                let names: Vec<&str> = match self {
                    StandardDataset::Cifar10 => {
                        let mut v = super::CIFAR10_TRAIN_FILES.to_vec();
                        v.push(super::CIFAR10_TEST_FILE);
                        v
                    }
                    _ => super::CIFAR100_FILES.to_vec(),
                };
                [dir.to_path_buf(), dir.join(folder)]
                    .iter()
                    .any(|d| names.iter().all(|n| d.join(n).is_file()))
            }
            None => super::MNIST_FILES
                .iter()
                .all(|base| dir.join(base).is_file() || dir.join(format!("{base}.gz")).is_file()),
        }
    }

    /// What to download by hand and where to put it, for error messages.
    pub fn manual_instructions(self, dir: &Path) -> String {
        let mut out = format!("put these {} files in {}:\n", self.name(), dir.display());
        for f in self.files() {
            out.push_str(&format!(
                "  {}  (sha256 {})  from {}\n",
                f.name,
                f.sha256,
                f.urls.join(" or ")
            ));
        }
        if let Some(folder) = self.archive_folder() {
            out.push_str(&format!(
                "and unpack the archive there (it creates {folder}/)\n"
            ));
        }
        out
    }
}

/// Where datasets live: `explicit` (a `--data-dir` flag) if given, else `$CANDLE_MTL_DATA`, else
/// the platform's cache directory (`$XDG_CACHE_HOME/candle-mtl` or `~/.cache/candle-mtl` on
/// Linux, `~/Library/Caches/candle-mtl` on macOS, `%LOCALAPPDATA%\candle-mtl` on Windows),
/// else `./data`.
pub fn data_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CANDLE_MTL_DATA").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    platform_cache_dir()
        .map(|d| d.join("candle-mtl"))
        .unwrap_or_else(|| PathBuf::from("data"))
}

fn platform_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(target_os = "windows") {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_has_checksummed_files_and_instructions() {
        for d in StandardDataset::ALL {
            let files = d.files();
            assert!(!files.is_empty());
            for f in &files {
                assert_eq!(f.sha256.len(), 64, "{}", f.name);
                assert!(f
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
                assert!(f.urls.iter().all(|u| u.ends_with(&f.name)));
            }
            let text = d.manual_instructions(Path::new("/data/x"));
            assert!(text.contains("/data/x") && text.contains(&files[0].sha256));
        }
    }

    #[test]
    fn explicit_root_wins() {
        assert_eq!(
            data_root(Some(Path::new("/tmp/d"))),
            PathBuf::from("/tmp/d")
        );
    }
}

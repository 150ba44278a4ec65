//! CIFAR-10 and CIFAR-100 binary batches.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin` (10,000 images
//! each) and `test_batch.bin`; each record is 1 label byte then 3,072 pixel bytes (1,024 red,
//! 1,024 green, 1,024 blue, rows of 32). CIFAR-100 (`cifar-100-binary/`): `train.bin` (50,000)
//! and `test.bin` (10,000); each record is a coarse label byte (20 superclasses), a fine label
//! byte (100 classes), then the 3,072 pixel bytes.

use std::path::{Path, PathBuf};

use super::ImageDataset;
use crate::error::{Error, Result};

/// Pixel bytes of one 3x32x32 image.
const PIXELS: usize = 3 * 32 * 32;

/// File names of CIFAR-10's training batches.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// File name of CIFAR-10's test batch.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// File names of CIFAR-100's training and test files.
pub const CIFAR100_FILES: [&str; 2] = ["train.bin", "test.bin"];

/// Which CIFAR layout a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// 1 label byte (0..=9) per record.
    Cifar10,
    /// A coarse (0..=19) and a fine (0..=99) label byte per record.
    Cifar100,
}

impl CifarKind {
    /// Bytes per record.
    pub fn record_len(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1 + PIXELS,
            CifarKind::Cifar100 => 2 + PIXELS,
        }
    }
}

/// The records of one CIFAR file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CifarRecords {
    /// Pixels `(N, 3, 32, 32)`, row-major.
    pub pixels: Vec<u8>,
    /// Labels: CIFAR-10 classes, or CIFAR-100 fine classes.
    pub labels: Vec<u32>,
    /// CIFAR-100 coarse classes (empty for CIFAR-10).
    pub coarse_labels: Vec<u32>,
}

/// Parses the bytes of one CIFAR binary file; `source` names it in errors.
///
/// Refuses an empty file, a length that is not a whole number of records (naming the byte
/// offset where the truncated record starts) and labels out of range (naming the record and
/// the byte offset).
pub fn parse_cifar(bytes: &[u8], kind: CifarKind, source: &Path) -> Result<CifarRecords> {
    let record = kind.record_len();
    if bytes.is_empty() {
        return Err(Error::malformed(
            source,
            format!("empty file; expected records of {record} bytes"),
        ));
    }
    if bytes.len() % record != 0 {
        let whole = bytes.len() / record;
        return Err(Error::malformed(
            source,
            format!(
                "truncated: {} bytes is not a whole number of {record}-byte records; record {whole} \
                 starts at byte offset {} and has only {} bytes",
                bytes.len(),
                whole * record,
                bytes.len() % record
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    let mut coarse_labels = Vec::new();
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let offset = i * record;
        let check = |value: u8, at: usize, classes: u8, what: &str| {
            if value >= classes {
                Err(Error::malformed(
                    source,
                    format!(
                        "{what} label {value} of record {i} (byte offset {}) is outside 0..={}",
                        offset + at,
                        classes - 1
                    ),
                ))
            } else {
                Ok(u32::from(value))
            }
        };
        match kind {
            CifarKind::Cifar10 => labels.push(check(rec[0], 0, 10, "class")?),
            CifarKind::Cifar100 => {
                coarse_labels.push(check(rec[0], 0, 20, "coarse")?);
                labels.push(check(rec[1], 1, 100, "fine")?);
            }
        }
        pixels.extend_from_slice(&rec[record - PIXELS..]);
    }
    Ok(CifarRecords {
        pixels,
        labels,
        coarse_labels,
    })
}

fn read_file(path: &Path, kind: CifarKind) -> Result<CifarRecords> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_cifar(&bytes, kind, path)
}

fn read_files(dir: &Path, names: &[&str], kind: CifarKind) -> Result<CifarRecords> {
    let mut all = CifarRecords {
        pixels: Vec::new(),
        labels: Vec::new(),
        coarse_labels: Vec::new(),
    };
    for name in names {
        let r = read_file(&dir.join(name), kind)?;
        all.pixels.extend(r.pixels);
        all.labels.extend(r.labels);
        all.coarse_labels.extend(r.coarse_labels);
    }
    Ok(all)
}

/// The directory that holds the files: `dir` itself, or its `subdir` (the folder the official
/// archive unpacks to). Errors list the files expected and where to get them.
fn resolve(dir: &Path, subdir: &str, files: &[&str], hint: &str) -> Result<PathBuf> {
    for candidate in [dir.to_path_buf(), dir.join(subdir)] {
        if files.iter().all(|f| candidate.join(f).is_file()) {
            return Ok(candidate);
        }
    }
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file() && !dir.join(subdir).join(f).is_file())
        .collect();
    Err(Error::DataNotFound {
        what: format!("CIFAR files {}", missing.join(", ")),
        path: dir.to_path_buf(),
        hint: format!(
            "expected {} in {} or in its {subdir}/ folder. {hint}",
            files.join(", "),
            dir.display()
        ),
    })
}

/// CIFAR-10's training (50,000) and test (10,000) images, labels 0..=9.
#[derive(Debug, Clone, PartialEq)]
pub struct Cifar10 {
    /// Training images.
    pub train: ImageDataset,
    /// Test images.
    pub test: ImageDataset,
}

/// Loads CIFAR-10 from `dir` or `dir/cifar-10-batches-bin`.
pub fn load_cifar10(dir: impl AsRef<Path>) -> Result<Cifar10> {
    let mut files: Vec<&str> = CIFAR10_TRAIN_FILES.to_vec();
    files.push(CIFAR10_TEST_FILE);
    let dir = resolve(
        dir.as_ref(),
        "cifar-10-batches-bin",
        &files,
        "Get the binary version, https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, and \
         unpack it there (or build with the `download` feature to fetch it).",
    )?;
    let train = read_files(&dir, &CIFAR10_TRAIN_FILES, CifarKind::Cifar10)?;
    let test = read_files(&dir, &[CIFAR10_TEST_FILE], CifarKind::Cifar10)?;
    Ok(Cifar10 {
        train: ImageDataset::new(train.pixels, train.labels, [3, 32, 32])?,
        test: ImageDataset::new(test.pixels, test.labels, [3, 32, 32])?,
    })
}

/// CIFAR-100's images with fine labels (0..=99) and their coarse labels (0..=19).
#[derive(Debug, Clone, PartialEq)]
pub struct Cifar100 {
    /// Training images, fine labels.
    pub train: ImageDataset,
    /// Test images, fine labels.
    pub test: ImageDataset,
    /// Coarse label of each training image.
    pub train_coarse: Vec<u32>,
    /// Coarse label of each test image.
    pub test_coarse: Vec<u32>,
}

/// Loads CIFAR-100 from `dir` or `dir/cifar-100-binary`.
pub fn load_cifar100(dir: impl AsRef<Path>) -> Result<Cifar100> {
    let dir = resolve(
        dir.as_ref(),
        "cifar-100-binary",
        &CIFAR100_FILES,
        "Get the binary version, https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz, and \
         unpack it there (or build with the `download` feature to fetch it).",
    )?;
    let train = read_files(&dir, &CIFAR100_FILES[..1], CifarKind::Cifar100)?;
    let test = read_files(&dir, &CIFAR100_FILES[1..], CifarKind::Cifar100)?;
    Ok(Cifar100 {
        train: ImageDataset::new(train.pixels, train.labels, [3, 32, 32])?,
        test: ImageDataset::new(test.pixels, test.labels, [3, 32, 32])?,
        train_coarse: train.coarse_labels,
        test_coarse: test.coarse_labels,
    })
}

/// Writes records in the CIFAR binary format: for CIFAR-10 `labels` are the classes and
/// `coarse` must be empty; for CIFAR-100 `labels` are the fine classes and `coarse` the
/// superclasses. Used to make small CIFAR-format fixtures.
pub fn write_cifar(
    path: impl AsRef<Path>,
    kind: CifarKind,
    pixels: &[u8],
    labels: &[u8],
    coarse: &[u8],
) -> Result<()> {
    let path = path.as_ref();
    let n = labels.len();
    let coarse_ok = match kind {
        CifarKind::Cifar10 => coarse.is_empty(),
        CifarKind::Cifar100 => coarse.len() == n,
    };
    if pixels.len() != n * PIXELS || !coarse_ok {
        return Err(Error::config(
            "CIFAR records",
            format!(
                "{} pixels, {n} labels, {} coarse labels",
                pixels.len(),
                coarse.len()
            ),
            "need 3072 pixels per label (and one coarse label each for CIFAR-100)",
        ));
    }
    let mut bytes = Vec::with_capacity(n * kind.record_len());
    for i in 0..n {
        if kind == CifarKind::Cifar100 {
            bytes.push(coarse[i]);
        }
        bytes.push(labels[i]);
        bytes.extend_from_slice(&pixels[i * PIXELS..(i + 1) * PIXELS]);
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_checks_labels() {
        let mut rec = vec![7u8];
        rec.extend((0..PIXELS).map(|i| (i % 251) as u8));
        let mut two = rec.clone();
        two.extend(&rec);
        let r = parse_cifar(&two, CifarKind::Cifar10, Path::new("b.bin")).unwrap();
        assert_eq!(r.labels, vec![7, 7]);
        assert_eq!(r.pixels.len(), 2 * PIXELS);
        assert_eq!(r.pixels[1], 1);

        let msg = parse_cifar(&two[..PIXELS + 10], CifarKind::Cifar10, Path::new("b.bin"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("b.bin") && msg.contains("byte offset 3073") && msg.contains("truncated"),
            "{msg}"
        );

        two[3073] = 10;
        let msg = parse_cifar(&two, CifarKind::Cifar10, Path::new("b.bin"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("label 10 of record 1 (byte offset 3073)"),
            "{msg}"
        );

        let mut c100 = vec![19u8, 99];
        c100.extend(vec![0u8; PIXELS]);
        let r = parse_cifar(&c100, CifarKind::Cifar100, Path::new("t.bin")).unwrap();
        assert_eq!((r.coarse_labels[0], r.labels[0]), (19, 99));
        c100[0] = 20;
        let msg = parse_cifar(&c100, CifarKind::Cifar100, Path::new("t.bin"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("coarse label 20"), "{msg}");
        assert!(parse_cifar(&[], CifarKind::Cifar100, Path::new("e.bin")).is_err());
    }
}

//! Data files written by the tests themselves: IDX and CIFAR, valid and damaged, and the
//! CIFAR-10 path end to end (files -> loader -> training).

mod common;

use std::path::Path;

use candle_core::Device;
use candle_mtl::data::{
    load_cifar10, load_cifar100, load_mnist, read_idx, write_cifar, write_idx, CifarKind,
    Normalize, CIFAR100_FILES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, MNIST_FILES,
};
use candle_mtl::prelude::*;
use common::temp_dir;

#[test]
fn idx_outcomes() {
    let d = temp_dir("idx-outcomes");
    // Valid, raw and gzip.
    write_idx(d.join("ok.idx"), &[2, 2], &[1, 2, 3, 4], false).unwrap();
    write_idx(d.join("ok.idx.gz"), &[2, 2], &[1, 2, 3, 4], true).unwrap();
    assert_eq!(read_idx(d.join("ok.idx")).unwrap().data, vec![1, 2, 3, 4]);
    assert_eq!(read_idx(d.join("ok.idx.gz")).unwrap().dims, vec![2, 2]);

    // Truncated.
    std::fs::write(d.join("short.idx"), [0, 0, 8, 1, 0, 0, 0, 5, 1, 2]).unwrap();
    let msg = read_idx(d.join("short.idx")).unwrap_err().to_string();
    assert!(
        msg.contains("short.idx") && msg.contains("truncated") && msg.contains("5 bytes"),
        "{msg}"
    );

    // Wrong magic.
    std::fs::write(d.join("magic.idx"), [1, 0, 8, 1, 0, 0, 0, 1, 7]).unwrap();
    let msg = read_idx(d.join("magic.idx")).unwrap_err().to_string();
    assert!(
        msg.contains("magic.idx") && msg.contains("0x01000801"),
        "{msg}"
    );

    // A header claiming 4 billion images: refused from the file length, nothing allocated.
    let mut huge = vec![0, 0, 8, 3, 0xee, 0x6b, 0x28, 0x00, 0, 0, 0, 28, 0, 0, 0, 28];
    huge.extend([0u8; 784]);
    std::fs::write(d.join("huge.idx"), &huge).unwrap();
    let msg = read_idx(d.join("huge.idx")).unwrap_err().to_string();
    assert!(
        msg.contains("4000000000") && msg.contains("truncated") && msg.contains("784"),
        "{msg}"
    );
    // The same inside gzip: the stream ends long before the claim.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &huge).unwrap();
    std::fs::write(d.join("huge.idx.gz"), gz.finish().unwrap()).unwrap();
    let msg = read_idx(d.join("huge.idx.gz")).unwrap_err().to_string();
    assert!(
        msg.contains("huge.idx.gz") && msg.contains("truncated"),
        "{msg}"
    );

    // Label out of range, through the MNIST loader.
    let m = temp_dir("idx-labels");
    write_idx(m.join(MNIST_FILES[0]), &[2, 2, 2], &[0; 8], false).unwrap();
    write_idx(m.join(MNIST_FILES[1]), &[2], &[3, 10], false).unwrap();
    write_idx(m.join(MNIST_FILES[2]), &[1, 2, 2], &[0; 4], false).unwrap();
    write_idx(m.join(MNIST_FILES[3]), &[1], &[0], false).unwrap();
    let msg = load_mnist(&m).unwrap_err().to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte")
            && msg.contains("label 10 at index 1 (byte offset 9)"),
        "{msg}"
    );
}

/// `n` 3x32x32 images whose colour depends on the class, so a small model can learn them.
fn coloured_images(n: usize, classes: u8, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i as u8).wrapping_mul(7).wrapping_add(seed) % classes;
        labels.push(class);
        for ch in 0..3u8 {
            for p in 0..1024usize {
                let base = (class as usize * 23 + ch as usize * 61) % 256;
                let noise = (p * 31 + i * 17 + ch as usize * 7) % 40;
                pixels.push(((base + noise) % 256) as u8);
            }
        }
    }
    (pixels, labels)
}

pub fn write_cifar10_dir(dir: &Path, per_file: usize) {
    for (k, name) in CIFAR10_TRAIN_FILES.iter().enumerate() {
        let (px, lb) = coloured_images(per_file, 10, k as u8);
        write_cifar(dir.join(name), CifarKind::Cifar10, &px, &lb, &[]).unwrap();
    }
    let (px, lb) = coloured_images(per_file, 10, 99);
    write_cifar(
        dir.join(CIFAR10_TEST_FILE),
        CifarKind::Cifar10,
        &px,
        &lb,
        &[],
    )
    .unwrap();
}

#[test]
fn cifar_outcomes() {
    let d = temp_dir("cifar-outcomes").join("cifar-10-batches-bin");
    std::fs::create_dir_all(&d).unwrap();
    write_cifar10_dir(&d, 4);
    // Found through the parent folder too.
    let c = load_cifar10(d.parent().unwrap()).unwrap();
    assert_eq!((c.train.len(), c.test.len()), (20, 4));
    assert_eq!(c.train.image_shape(), [3, 32, 32]);

    // Truncated batch.
    let p = d.join("data_batch_3.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let msg = load_cifar10(&d).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_3.bin")
            && msg.contains("truncated")
            && msg.contains("byte offset 9219"),
        "{msg}"
    );

    // Label out of range.
    let mut bad = bytes.clone();
    bad[3073] = 11;
    std::fs::write(&p, &bad).unwrap();
    let msg = load_cifar10(&d).unwrap_err().to_string();
    assert!(
        msg.contains("label 11 of record 1 (byte offset 3073)"),
        "{msg}"
    );

    // Missing files: the error lists them and where to get them.
    std::fs::remove_file(d.join(CIFAR10_TEST_FILE)).unwrap();
    let msg = load_cifar10(&d).unwrap_err().to_string();
    assert!(
        msg.contains("test_batch.bin") && msg.contains("cifar-10-binary.tar.gz"),
        "{msg}"
    );

    // CIFAR-100: coarse and fine labels.
    let d100 = temp_dir("cifar100");
    let (px, fine) = coloured_images(6, 100, 1);
    let coarse: Vec<u8> = fine.iter().map(|f| f / 5).collect();
    write_cifar(
        d100.join(CIFAR100_FILES[0]),
        CifarKind::Cifar100,
        &px,
        &fine,
        &coarse,
    )
    .unwrap();
    write_cifar(
        d100.join(CIFAR100_FILES[1]),
        CifarKind::Cifar100,
        &px,
        &fine,
        &coarse,
    )
    .unwrap();
    let c = load_cifar100(&d100).unwrap();
    assert_eq!(
        c.train
            .labels()
            .iter()
            .map(|&l| l as u8)
            .collect::<Vec<_>>(),
        fine
    );
    assert_eq!(
        c.test_coarse.iter().map(|&l| l as u8).collect::<Vec<_>>(),
        coarse
    );
}

#[test]
fn cifar10_path_runs_end_to_end() {
    let d = temp_dir("cifar-e2e");
    write_cifar10_dir(&d, 40);
    let cifar = load_cifar10(&d).unwrap();
    let ds = |images: &candle_mtl::data::ImageDataset| {
        TensorDataset::from_images(images, Normalize::cifar10())
            .and_then(|t| t.with_target("object", images.labels_tensor()?))
            .unwrap()
    };
    let train = ds(&cifar.train).with_augment(vec![
        candle_mtl::data::Augment::RandomCrop { padding: 4 },
        candle_mtl::data::Augment::HorizontalFlip { probability: 0.5 },
    ]);
    let test = ds(&cifar.test);
    let cfg = ConvNetConfig {
        in_channels: 3,
        height: 32,
        width: 32,
        channels: vec![8, 16],
        hidden: 32,
        ..Default::default()
    };
    let model = MultiTaskModel::builder(&Device::Cpu, 0)
        .encoder(|p| ConvNet::new(&cfg, p))
        .and_then(|b| {
            b.task(TaskSpec::classification("object"), |p| {
                LinearHead::new(32, 10, p)
            })
        })
        .and_then(|b| b.build())
        .unwrap();
    let config = TrainerConfig {
        batch_size: 20,
        optimizer: OptimizerConfig::adam(3e-3),
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, Box::new(Equal::sum()), config).unwrap();
    let fit = trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            4,
            &mut |_| Ok(()),
        )
        .unwrap();
    let acc = fit
        .last()
        .unwrap()
        .eval
        .as_ref()
        .unwrap()
        .task("object")
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap();
    eprintln!("CIFAR-format fixture, 4 epochs: accuracy {acc:.3}");
    assert!(acc > 0.5, "accuracy {acc} (chance 0.1)");
}

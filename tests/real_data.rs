//! Tests on the real data sets when they are present: 10,000 MNIST digits and the full
//! Fashion-MNIST. They look in `$CANDLE_MTL_DATA_DIR`, else `data/` in the crate, and skip with a
//! printed reason when the data is absent, unless `CANDLE_MTL_REQUIRE_DATA=1` (as in `.ci/run`)
//! makes absence a failure.

mod common;

use std::path::PathBuf;

use candle_mtl::data::load_mnist;
use candle_mtl::prelude::*;
use common::cls_reg_dataset;

fn data_dir(name: &str) -> Option<PathBuf> {
    let root = std::env::var("CANDLE_MTL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"));
    let dir = root.join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    let reason = format!(
        "{} not found (set CANDLE_MTL_DATA_DIR to the folder holding {name}/)",
        dir.display()
    );
    if std::env::var("CANDLE_MTL_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("CANDLE_MTL_REQUIRE_DATA=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

#[test]
fn shared_cnn_learns_mnist_10k_in_one_epoch() {
    let Some(dir) = data_dir("mnist-10k") else {
        return;
    };
    let mnist = load_mnist(&dir).expect("mnist-10k loads");
    assert_eq!((mnist.train.len(), mnist.test.len()), (8000, 2000));
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let model = MultiTaskModel::builder(&candle_core::Device::Cpu, 0)
        .encoder(|p| ConvNet::new(&ConvNetConfig::default(), p))
        .and_then(|b| {
            b.task(TaskSpec::classification("digit"), |p| {
                LinearHead::new(128, 10, p)
            })
        })
        .and_then(|b| {
            b.task(TaskSpec::regression("value"), |p| {
                LinearHead::new(128, 1, p)
            })
        })
        .and_then(|b| b.build())
        .unwrap();
    let mut trainer = Trainer::new(
        model,
        Box::new(InverseLoss::new()),
        TrainerConfig::default(),
    )
    .unwrap();
    let fit = trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            1,
            &mut |_| Ok(()),
        )
        .unwrap();
    let epoch = fit.last().unwrap();
    let eval = epoch.eval.as_ref().unwrap();
    let acc = eval
        .task("digit")
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap();
    let mae = eval.task("value").unwrap().metric(Metric::Mae).unwrap();
    eprintln!(
        "mnist-10k, ConvNet, inverse-loss, 1 epoch: accuracy {acc:.4}, MAE {mae:.3}, {:.0} samples/s",
        epoch.samples_per_second()
    );
    assert!(acc > 0.93, "accuracy {acc}");
    assert!(mae < 1.2, "MAE {mae}");
}

#[test]
fn full_fashion_mnist_loads_with_the_published_counts() {
    let Some(dir) = data_dir("fashion-mnist") else {
        return;
    };
    let f = load_mnist(&dir).expect("fashion-mnist loads");
    assert_eq!((f.train.len(), f.test.len()), (60_000, 10_000));
    assert_eq!(f.train.image_shape(), [1, 28, 28]);
    let mut counts = [0usize; 10];
    for &l in f.train.labels() {
        counts[l as usize] += 1;
    }
    // Fashion-MNIST is balanced: 6,000 training images per class.
    assert_eq!(counts, [6000; 10]);
}

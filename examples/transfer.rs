//! Transfer learning: pretrain a CNN encoder on Fashion-MNIST, save it layer by layer, load
//! the convolution layers (`--transfer conv`, the default) or the whole encoder
//! (`--transfer all`) into a new model for MNIST digits, train the new layers on a small
//! labelled subset with the transferred ones frozen, then unfreeze everything and fine-tune
//! with a lower learning rate. The same model trained from scratch on the same subset, for the
//! same number of epochs, is the comparison.
//!
//! Clothing and digits are far apart: the convolution filters (edges, strokes) transfer, the
//! fully connected layer on top is specific to clothing (`--transfer all` shows it: frozen,
//! it leaves a new head near 60% on 300 digits).
//!
//! ```text
//! cargo run --release --example transfer
//! cargo run --release --example transfer -- --labelled 200 --pretrain-epochs 1
//! ```

mod common;

use std::path::PathBuf;

use candle_core::Device;
use candle_mtl::data::{load_mnist, ImageDataset, StandardDataset};
use candle_mtl::device::describe;
use candle_mtl::model::Component;
use candle_mtl::prelude::*;
use common::{locate_dataset, locate_mnist, main_with, Args};

const USAGE: &str = "transfer: Fashion-MNIST pretraining -> frozen encoder + new head -> fine-tuning on few MNIST labels

USAGE: cargo run --release --example transfer -- [FLAGS]

  --fashion-dir DIR     Fashion-MNIST IDX files (default: data/fashion-mnist when present,
                        else downloaded into $CANDLE_MTL_DATA/fashion-mnist)
  --mnist-dir DIR       MNIST IDX files (default: data/mnist when present, else downloaded
                        into $CANDLE_MTL_DATA/mnist)
  --pretrain-epochs N   epochs on Fashion-MNIST (default 1)
  --pretrain-limit N    use at most N Fashion-MNIST training images (default all)
  --labelled N          labelled MNIST digits for the new task (default 300)
  --head-epochs N       epochs training the new head on the frozen encoder (default 5)
  --finetune-epochs N   epochs fine-tuning every layer afterwards (default 5)
  --lr X                learning rate of pretraining and of training from scratch (default 1e-3)
  --transfer conv|all   transfer the convolution layers and train a new fully connected layer +
                        head on them (default), or transfer the whole encoder (head only)
  --head-lr X           learning rate of the new layers on the frozen ones (default 1e-3)
  --finetune-lr X       learning rate of fine-tuning (default 1e-4)
  --out DIR             where the pretrained encoder is saved (default: a temporary folder)
  --encoder-dir DIR     skip pretraining and load the encoder saved there
  --seed N              seed (default 0)
  --cpu                 train on the CPU even when a GPU is available";

const HIDDEN: usize = 128;

/// Which pretrained layers the new model takes.
#[derive(Clone, Copy)]
enum Transfer {
    Conv,
    All,
}

fn model(device: &Device, seed: u64, task: &str) -> Result<MultiTaskModel> {
    MultiTaskModel::builder(device, seed)
        .encoder(|p| ConvNet::new(&ConvNetConfig::default(), p))?
        .task(TaskSpec::classification(task), |p| {
            LinearHead::new(HIDDEN, 10, p)
        })?
        .build()
}

fn dataset(images: &ImageDataset, task: &str, normalize: Normalize) -> Result<TensorDataset> {
    TensorDataset::from_images(images, normalize)?.with_target(task, images.labels_tensor()?)
}

fn config(lr: f64, seed: u64) -> TrainerConfig {
    TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        seed,
        ..Default::default()
    }
}

/// Trains `trainer` for `epochs` on `train`, printing the test accuracy after each epoch;
/// returns the last one.
fn train(
    label: &str,
    trainer: &mut Trainer,
    train: &TensorDataset,
    test: &TensorDataset,
    epochs: usize,
) -> Result<f64> {
    let task = trainer.model().task_names()[0].clone();
    let mut accuracy = f64::NAN;
    for epoch in 0..epochs {
        let r = trainer.train_epoch(TaskData::Shared(train))?;
        let e = trainer.evaluate(TaskData::Shared(test))?;
        accuracy = e
            .task(&task)
            .and_then(|t| t.metric(Metric::Accuracy))
            .unwrap_or(f64::NAN);
        println!(
            "{label} epoch {}/{epochs} | train loss {:.4} | test accuracy {:.2}% | {:.0} samples/s",
            epoch + 1,
            r.train_losses[0],
            100.0 * accuracy,
            r.samples_per_second()
        );
    }
    Ok(accuracy)
}

fn run(args: &Args) -> Result<()> {
    let pretrain_epochs: usize = args.parse_or("pretrain-epochs", 1, "expected a whole number")?;
    let pretrain_limit: usize =
        args.parse_or("pretrain-limit", usize::MAX, "expected a whole number")?;
    let labelled: usize = args.parse_or("labelled", 300, "expected a whole number >= 1")?;
    let head_epochs: usize = args.parse_or("head-epochs", 5, "expected a whole number")?;
    let finetune_epochs: usize = args.parse_or("finetune-epochs", 5, "expected a whole number")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let head_lr: f64 = args.parse_or("head-lr", 1e-3, "expected a number such as 1e-3")?;
    let transfer = match args.get("transfer").unwrap_or("conv") {
        "conv" => Transfer::Conv,
        "all" => Transfer::All,
        other => return Err(Error::config("--transfer", other, "expected conv or all")),
    };
    let finetune_lr: f64 = args.parse_or("finetune-lr", 1e-4, "expected a number such as 1e-4")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    if labelled == 0 {
        return Err(Error::config(
            "--labelled",
            0,
            "needs at least one labelled digit",
        ));
    }
    let device = best_device(args.flag("cpu"));
    let (fashion_dir, _) = locate_dataset(
        StandardDataset::FashionMnist,
        args.get("fashion-dir"),
        &["data/fashion-mnist"],
        None,
    )?;
    let (mnist_dir, _) = locate_mnist(args.get("mnist-dir"))?;
    let fashion = load_mnist(&fashion_dir)?;
    let mnist = load_mnist(&mnist_dir)?;
    let source_train = dataset(
        &fashion.train.take(pretrain_limit),
        "fashion",
        Normalize::fashion_mnist(),
    )?;
    let source_test = dataset(&fashion.test, "fashion", Normalize::fashion_mnist())?;
    let target_train = dataset(&mnist.train.take(labelled), "digit", Normalize::mnist())?;
    let target_test = dataset(&mnist.test, "digit", Normalize::mnist())?;
    println!(
        "source: Fashion-MNIST {} ({} train) | target: MNIST {} ({} labelled, {} test) | device: {}",
        fashion_dir.display(),
        source_train.len(),
        mnist_dir.display(),
        target_train.len(),
        target_test.len(),
        describe(&device)
    );

    // 1. Pretrain on the source task and save the encoder, one file per layer (or reuse a
    //    saved one).
    let (encoder_dir, source_acc) = match args.get("encoder-dir") {
        Some(dir) => {
            println!("reusing the pretrained encoder in {dir}");
            (PathBuf::from(dir), None)
        }
        None => {
            let mut pretrain = Trainer::new(
                model(&device, seed, "fashion")?,
                by_name("equal")?,
                config(lr, seed),
            )?;
            let acc = train(
                "pretrain",
                &mut pretrain,
                &source_train,
                &source_test,
                pretrain_epochs,
            )?;
            let out: PathBuf = match args.get("out") {
                Some(d) => PathBuf::from(d),
                None => {
                    std::env::temp_dir().join(format!("candle-mtl-transfer-{}", std::process::id()))
                }
            };
            std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
            for layer in pretrain.model().encoder().layer_groups() {
                pretrain.model().save_component(
                    &Component::EncoderLayer(layer.clone()),
                    out.join(format!("{layer}.safetensors")),
                )?;
            }
            println!(
                "pretrained encoder saved to {} (reuse it with --encoder-dir)",
                out.display()
            );
            (out, Some(acc))
        }
    };

    // 2. A new model for the target task: load the transferred layers and freeze them; the
    //    layers above (with `--transfer conv`, the fully connected one) and the head are new
    //    and train.
    let transferred = model(&device, seed + 1, "digit")?;
    let layers = transferred.encoder().layer_groups();
    let transfer_layers: Vec<String> = match transfer {
        Transfer::All => layers.clone(),
        Transfer::Conv => layers
            .iter()
            .filter(|l| l.starts_with("conv"))
            .cloned()
            .collect(),
    };
    for layer in &transfer_layers {
        let component = Component::EncoderLayer(layer.clone());
        transferred.load_component(&component, encoder_dir.join(format!("{layer}.safetensors")))?;
        transferred.freeze(&component)?;
    }
    println!(
        "loaded and froze encoder layers {}; training {} and the head",
        transfer_layers.join(", "),
        if transfer_layers.len() == layers.len() {
            "nothing else".to_string()
        } else {
            layers
                .iter()
                .filter(|l| !transfer_layers.contains(l))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let mut head_only = Trainer::new(transferred, by_name("equal")?, config(head_lr, seed))?;
    let head_acc = train(
        "frozen layers",
        &mut head_only,
        &target_train,
        &target_test,
        head_epochs,
    )?;

    // 3. Unfreeze and fine-tune every layer with a lower learning rate.
    let transferred = head_only.into_model();
    for layer in &transfer_layers {
        transferred.unfreeze(&Component::EncoderLayer(layer.clone()))?;
    }
    let mut finetune = Trainer::new(transferred, by_name("equal")?, config(finetune_lr, seed))?;
    let finetune_acc = train(
        "fine-tune",
        &mut finetune,
        &target_train,
        &target_test,
        finetune_epochs,
    )?;

    // 4. The same model from scratch on the same subset, same number of epochs.
    let mut scratch = Trainer::new(
        model(&device, seed + 1, "digit")?,
        by_name("equal")?,
        config(lr, seed),
    )?;
    let scratch_acc = train(
        "from scratch",
        &mut scratch,
        &target_train,
        &target_test,
        head_epochs + finetune_epochs,
    )?;

    println!(
        "\n| model ({} labelled digits) | MNIST test accuracy |\n|---|---|",
        target_train.len()
    );
    let source = source_acc.map_or_else(
        || "saved encoder".to_string(),
        |a| format!("{:.2}% there", 100.0 * a),
    );
    println!(
        "| layers {} pretrained on Fashion-MNIST ({source}) and frozen, new layers trained (lr {head_lr}) | {:.2}% |",
        transfer_layers.join("+"),
        100.0 * head_acc
    );
    println!(
        "| ... then fine-tuned (lr {finetune_lr}) | {:.2}% |",
        100.0 * finetune_acc
    );
    println!(
        "| from scratch, {} epochs (lr {lr}) | {:.2}% |",
        head_epochs + finetune_epochs,
        100.0 * scratch_acc
    );
    println!(
        "fine-tuned transfer vs scratch: {:+.2} points",
        100.0 * (finetune_acc - scratch_acc)
    );
    Ok(())
}

fn by_name(name: &str) -> Result<Box<dyn TaskWeighting>> {
    candle_mtl::weighting::by_name(name)
}

fn main() {
    main_with(
        USAGE,
        &["cpu"],
        &[
            "fashion-dir",
            "mnist-dir",
            "pretrain-epochs",
            "pretrain-limit",
            "labelled",
            "head-epochs",
            "finetune-epochs",
            "lr",
            "finetune-lr",
            "head-lr",
            "encoder-dir",
            "transfer",
            "out",
            "seed",
        ],
        run,
    );
}

//! Datasets from files: CSV manifests of PNG images and of numeric features, class folders,
//! memory-mapped arrays; bad rows; the parallel loader's order; composition helpers.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_mtl::data::{
    write_npy, Augment, ColumnKind, CsvManifest, DataLoader, Dataset, DatasetExt, ImageDataset,
    ImageFolder, ImageOptions, ManifestConfig, MmapDataset, Target,
};
use candle_mtl::metrics::Metric;
use candle_mtl::prelude::*;
use common::{fixture, mlp_model, temp_dir};

/// Writes image `i` of `images` as `<dir>/<name>` (grey PNG).
fn write_png(images: &ImageDataset, i: usize, path: &Path) {
    let [_, h, w] = images.image_shape();
    let pixels = images.pixels()[i * h * w..(i + 1) * h * w].to_vec();
    image::GrayImage::from_raw(w as u32, h as u32, pixels)
        .expect("pixel count")
        .save(path)
        .expect("png written");
}

/// A manifest `name` in `dir` of the first `n` images: `path,digit,value,id`; every 5th
/// digit and every 7th value left empty. Returns its path.
fn png_manifest(dir: &Path, name: &str, images: &ImageDataset, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("img")).expect("dir");
    let mut csv = String::from("path,digit,value,id\n");
    for i in 0..n {
        let file = format!("img/{name}-{i}.png");
        write_png(images, i, &dir.join(&file));
        let label = images.labels()[i];
        let digit = if i % 5 == 3 {
            String::new()
        } else {
            label.to_string()
        };
        let value = if i % 7 == 2 {
            String::new()
        } else {
            format!("{label}.0")
        };
        writeln!(csv, "{file},{digit},{value},{i}").expect("string");
    }
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, csv).expect("manifest");
    path
}

fn fit(
    model: MultiTaskModel,
    train: &dyn Dataset,
    test: &dyn Dataset,
    config: TrainerConfig,
    epochs: usize,
) -> (Trainer, candle_mtl::train::EvalReport) {
    let mut trainer = Trainer::new(
        model,
        candle_mtl::weighting::by_name("equal").expect("equal"),
        config,
    )
    .expect("trainer");
    let fit = trainer
        .fit(
            TaskData::Shared(train),
            Some(TaskData::Shared(test)),
            epochs,
            &mut |_| Ok(()),
        )
        .expect("training runs");
    let eval = fit
        .epochs
        .last()
        .and_then(|e| e.eval.clone())
        .expect("evaluated");
    (trainer, eval)
}

fn params(model: &MultiTaskModel) -> Vec<(String, Vec<f32>)> {
    model
        .params()
        .named_state()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_manifest_of_png_files_with_missing_labels_trains_end_to_end() {
    let mnist = fixture();
    let dir = temp_dir("png-manifest");
    let train_csv = png_manifest(&dir, "train", &mnist.train, 400);
    let test_csv = png_manifest(&dir, "test", &mnist.test, 200);
    let config = ManifestConfig::images(ImageOptions::default()).ignoring(["id"]);
    let train = CsvManifest::open(&train_csv, &config).expect("train manifest");
    assert_eq!(train.len(), 400);
    assert_eq!(Dataset::input_shape(&train), vec![1, 28, 28]);
    assert_eq!(train.task_names(), vec!["digit", "value"]);
    assert_eq!(
        train.kind("digit"),
        Some(ColumnKind::Classes { count: Some(10) })
    );
    assert_eq!(train.kind("value"), Some(ColumnKind::Values));
    assert_eq!(train.labelled("digit"), Some(320));
    assert_eq!(train.labelled("value"), Some(400 - 57));
    // Decoded pixels are the IDX pixels; a missing label is None.
    let s = train.get(3).expect("sample");
    let [_, h, w] = mnist.train.image_shape();
    let px: Vec<u8> = s.input.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(px, mnist.train.pixels()[3 * h * w..4 * h * w].to_vec());
    assert_eq!(s.targets[0], None);
    assert_eq!(
        s.targets[1],
        Some(Target::Values(vec![mnist.train.labels()[3] as f32]))
    );
    let test = CsvManifest::open(&test_csv, &train.resolved_config()).expect("test manifest");
    let train = train.normalized(Normalize::mnist());
    let test = test.normalized(Normalize::mnist());
    let config = TrainerConfig {
        batch_size: 32,
        loader_workers: 2,
        ..Default::default()
    };
    let (trainer, eval) = fit(mlp_model(1), &train, &test, config, 3);
    let acc = eval
        .task("digit")
        .and_then(|t| t.metric(Metric::Accuracy))
        .expect("accuracy");
    let mae = eval
        .task("value")
        .and_then(|t| t.metric(Metric::Mae))
        .expect("mae");
    // Chance is 10%; the value of a digit is off by 2.5 on average when guessed at 4.5.
    assert!(acc > 0.5, "digit accuracy {acc}");
    assert!(mae < 2.3, "value MAE {mae}");
    // Missing labels are not evaluated.
    assert_eq!(eval.task("digit").map(|t| t.samples), Some(160));
    assert!(trainer.steps_done() > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_kind_of_bad_row_is_named_by_manifest_line_and_column() {
    let mnist = fixture();
    let dir = temp_dir("bad-rows");
    std::fs::create_dir_all(dir.join("img")).expect("dir");
    for i in 0..3 {
        write_png(&mnist.train, i, &dir.join(format!("img/{i}.png")));
    }
    std::fs::write(dir.join("img/broken.png"), b"\x89PNG\r\n\x1a\n truncated").expect("file");
    let open = |rows: &str, config: &ManifestConfig| {
        let path = dir.join("m.csv");
        std::fs::write(&path, format!("path,digit,value\n{rows}")).expect("manifest");
        CsvManifest::open(&path, config)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let plain = ManifestConfig::default();
    let cases: [(&str, ManifestConfig, &[&str]); 6] = [
        (
            "img/0.png,1,2.5\nimg/9.png,1,2.5\n",
            plain.clone(),
            &["m.csv", "line 3", "'path'", "9.png", "not found"],
        ),
        (
            "img/0.png,1,2.5\nimg/1.png,1,abc\n",
            plain.clone(),
            &["line 3", "'value'", "'abc' is not a number"],
        ),
        (
            "img/0.png,1,2.5\nimg/1.png,1\n",
            plain.clone(),
            &["line 3", "has 2 cells, the header 3 columns"],
        ),
        (
            "img/0.png,1,inf\n",
            plain.clone(),
            &["line 2", "'value'", "not a finite number"],
        ),
        // Finite as f64, beyond f32: refused rather than read as infinity.
        (
            "img/0.png,1,2.5\nimg/1.png,1,1e39\n",
            plain.clone(),
            &["line 3", "'value'", "not a finite number"],
        ),
        (
            "img/0.png,1,2.5\nimg/1.png,12,2.5\n",
            plain
                .clone()
                .with_kind("digit", ColumnKind::Classes { count: Some(10) }),
            &["line 3", "'digit'", "class 12 does not fit the 10 classes"],
        ),
    ];
    for (rows, config, expected) in cases {
        let msg = open(rows, &config);
        for e in expected {
            assert!(msg.contains(e), "expected '{e}' in: {msg}");
        }
    }
    // An empty manifest, and one with a header only.
    let path = dir.join("empty.csv");
    std::fs::write(&path, "").expect("file");
    let msg = CsvManifest::open(&path, &plain).unwrap_err().to_string();
    assert!(msg.contains("empty.csv") && msg.contains("empty"), "{msg}");
    std::fs::write(&path, "path,digit\n").expect("file");
    let msg = CsvManifest::open(&path, &plain).unwrap_err().to_string();
    assert!(msg.contains("no sample rows"), "{msg}");
    // An undecodable image: the error names the file and its manifest line when its batch is read.
    let path = dir.join("m.csv");
    std::fs::write(
        &path,
        "path,digit,value\nimg/0.png,1,2.5\nimg/broken.png,2,1.0\n",
    )
    .expect("file");
    let m =
        CsvManifest::open(&path, &plain).expect("opens: headers are only checked when skipping");
    let msg = m.read_batch(&[0, 1]).unwrap_err().to_string();
    assert!(
        msg.contains("broken.png") && msg.contains("m.csv line 3"),
        "{msg}"
    );
    // A class that does not fit the head: named by the trainer with the manifest line.
    std::fs::write(
        &path,
        "path,digit,value\nimg/0.png,1,2.5\nimg/1.png,14,1.0\n",
    )
    .expect("file");
    let m = CsvManifest::open(&path, &plain).expect("classes inferred");
    let mut trainer = Trainer::new(
        mlp_model(0),
        candle_mtl::weighting::by_name("equal").expect("equal"),
        TrainerConfig::default(),
    )
    .expect("trainer");
    let msg = trainer
        .train_epoch(TaskData::Shared(&m))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("'digit'")
            && msg.contains("14")
            && msg.contains("m.csv line 3")
            && msg.contains("10 outputs"),
        "{msg}"
    );
    // With skip_bad_rows every bad row is counted and reported, the good ones kept.
    std::fs::write(
        &path,
        "path,digit,value\nimg/0.png,1,2.5\nimg/9.png,1,2.5\nimg/1.png,x,2\nimg/2.png,3\nimg/broken.png,2,1\nimg/2.png,12,1\nimg/2.png,,\n",
    )
    .expect("file");
    let config = plain
        .clone()
        .with_kind("digit", ColumnKind::Classes { count: Some(10) })
        .skip_bad_rows(true);
    let m = CsvManifest::open(&path, &config).expect("good rows kept");
    assert_eq!(m.len(), 2);
    let lines: Vec<u64> = m.skipped().iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7]);
    assert_eq!(m.skipped()[0].column.as_deref(), Some("path"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn batches_are_identical_for_zero_one_and_four_workers() {
    let mnist = fixture();
    let dir = temp_dir("workers");
    let csv = png_manifest(&dir, "w", &mnist.train, 150);
    let ds = CsvManifest::open(&csv, &ManifestConfig::default().ignoring(["id"]))
        .expect("manifest")
        .augmented(vec![
            Augment::RandomCrop { padding: 2 },
            Augment::HorizontalFlip { probability: 0.5 },
        ])
        .normalized(Normalize::mnist());
    let read = |workers: usize| {
        let mut all = Vec::new();
        DataLoader::new(&ds, 16)
            .expect("loader")
            .shuffle(9)
            .workers(workers)
            .depth(3)
            .for_each(2, |i, b| {
                let x: Vec<f32> = b.inputs.flatten_all()?.to_vec1()?;
                let mask: Option<Vec<u8>> =
                    b.label_mask("digit").map(|m| m.to_vec1()).transpose()?;
                all.push((
                    i,
                    x,
                    b.target("digit").map(|t| t.to_vec1::<u32>()).transpose()?,
                    mask,
                ));
                Ok(())
            })
            .expect("epoch");
        all
    };
    let inline = read(0);
    assert_eq!(inline.len(), 10);
    assert_eq!(read(1), inline);
    assert_eq!(read(4), inline);
    // The trainer too: 1 and 4 workers end with bit-identical parameters.
    let train = |workers: usize| {
        let config = TrainerConfig {
            batch_size: 32,
            loader_workers: workers,
            seed: 3,
            ..Default::default()
        };
        let (t, _) = fit(mlp_model(2), &ds, &ds, config, 1);
        params(t.model())
    };
    assert_eq!(train(1), train(4));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn memory_mapped_safetensors_and_npy_train_exactly_like_the_in_memory_dataset() {
    let mnist = fixture();
    let dir = temp_dir("mmap");
    let images = mnist.train.images_tensor().expect("images");
    let digit = mnist.train.labels_tensor().expect("labels");
    let value = mnist.train.label_values_tensor().expect("values");
    let st = dir.join("train.safetensors");
    candle_core::safetensors::save(
        &[
            ("inputs", images.clone()),
            ("digit", digit.clone()),
            ("value", value.clone()),
        ]
        .into_iter()
        .collect(),
        &st,
    )
    .expect("saved");
    let npy = dir.join("inputs.npy");
    write_npy(&npy, &images).expect("npy");
    let in_memory = common::cls_reg_dataset(&mnist.train);
    let test = common::cls_reg_dataset(&mnist.test);
    let from_st = MmapDataset::open_safetensors(&st, "inputs")
        .expect("mapped")
        .normalized(Normalize::mnist());
    let from_npy = MmapDataset::open_npy(&npy)
        .and_then(|d| d.with_target("digit", digit.clone()))
        .and_then(|d| d.with_target("value", value.clone()))
        .expect("mapped")
        .normalized(Normalize::mnist());
    assert_eq!(from_st.len(), 800);
    let run = |ds: &dyn Dataset| {
        let config = TrainerConfig {
            batch_size: 50,
            seed: 5,
            ..Default::default()
        };
        let (t, eval) = fit(mlp_model(4), ds, &test, config, 1);
        (
            params(t.model()),
            eval.task("digit").and_then(|e| e.metric(Metric::Accuracy)),
        )
    };
    let reference = run(&in_memory);
    assert_eq!(run(&from_st), reference);
    assert_eq!(run(&from_npy), reference);
    // A truncated file is refused with its name and sizes.
    let bytes = std::fs::read(&npy).expect("read");
    std::fs::write(&npy, &bytes[..bytes.len() - 100]).expect("write");
    let msg = MmapDataset::open_npy(&npy).unwrap_err().to_string();
    assert!(msg.contains("inputs.npy") && msg.contains("bytes"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn numeric_feature_manifests_split_concat_and_map() {
    let dir = temp_dir("features");
    // y = class of sign(a + b); z = a - b; some labels missing.
    let mut csv = String::from("a,b,c,sign,diff\n");
    for i in 0..200 {
        let a = ((i * 37) % 23) as f64 / 11.0 - 1.0;
        let b = ((i * 11) % 17) as f64 / 8.0 - 1.0;
        let sign = if i % 9 == 0 {
            String::new()
        } else {
            u32::from(a + b > 0.0).to_string()
        };
        writeln!(csv, "{a:.4},{b:.4},0.5,{sign},{:.4}", a - b).expect("string");
    }
    let path = dir.join("table.csv");
    std::fs::write(&path, csv).expect("write");
    let ds =
        CsvManifest::open(&path, &ManifestConfig::features(["a", "b", "c"])).expect("features");
    assert_eq!(Dataset::input_shape(&ds), vec![3]);
    assert_eq!(ds.class_count("sign"), Some(2));
    let b = ds.read_batch(&[0, 1, 9]).expect("batch");
    assert_eq!(b.inputs.dims(), &[3, 3]);
    assert_eq!(
        b.label_mask("sign").map(|m| m.to_vec1::<u8>().unwrap()),
        Some(vec![0, 1, 0])
    );
    // Seeded, disjoint splits; concatenation puts them back.
    let (train, test) = (&ds).split(0.75, 1).expect("split");
    let (again, _) = (&ds).split(0.75, 1).expect("split");
    assert_eq!(train.indices(), again.indices());
    assert_eq!((train.len(), test.len()), (150, 50));
    assert!(train.indices().iter().all(|i| !test.indices().contains(i)));
    let whole = train.clone().concat(test.clone()).expect("concat");
    assert_eq!(whole.len(), 200);
    assert_eq!(whole.origin(150), ds.origin(test.indices()[0] as usize));
    // A map that drops the constant column changes the input shape.
    let mapped = (&ds).map(|x| Ok(x.narrow(0, 0, 2)?)).expect("map");
    assert_eq!(mapped.input_shape(), vec![2]);
    assert_eq!(
        mapped.read_batch(&[4]).expect("batch").inputs.dims(),
        &[1, 2]
    );
    // The MLP learns both tasks from the table.
    let model = MultiTaskModel::builder(&Device::Cpu, 0)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    input_dim: 3,
                    hidden: vec![16],
                    ..Default::default()
                },
                p,
            )
        })
        .and_then(|b| {
            b.task(TaskSpec::classification("sign"), |p| {
                LinearHead::new(16, 2, p)
            })
        })
        .and_then(|b| b.task(TaskSpec::regression("diff"), |p| LinearHead::new(16, 1, p)))
        .and_then(|b| b.build())
        .expect("model");
    let config = TrainerConfig {
        batch_size: 16,
        optimizer: OptimizerConfig::adam(1e-2),
        ..Default::default()
    };
    let (_, eval) = fit(model, &train, &test, config, 30);
    let acc = eval
        .task("sign")
        .and_then(|t| t.metric(Metric::Accuracy))
        .expect("acc");
    let mae = eval
        .task("diff")
        .and_then(|t| t.metric(Metric::Mae))
        .expect("mae");
    assert!(acc > 0.85 && mae < 0.2, "accuracy {acc}, MAE {mae}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn class_folders_are_classes_in_name_order() {
    let mnist = fixture();
    let dir = temp_dir("folders");
    for (k, class) in ["cat", "ant", "bee"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(class)).expect("dir");
        for i in 0..4 {
            write_png(
                &mnist.train,
                k * 4 + i,
                &dir.join(class).join(format!("{i}.png")),
            );
        }
    }
    std::fs::write(dir.join("ant/readme.txt"), "not an image").expect("file");
    let ds = ImageFolder::open(&dir, "animal", ImageOptions::square(32)).expect("folder");
    assert_eq!(ds.classes(), &["ant", "bee", "cat"]);
    assert_eq!(ds.len(), 12);
    assert_eq!(Dataset::input_shape(&ds), vec![1, 32, 32]);
    let b = ds.read_batch(&[0, 5, 11]).expect("batch");
    assert_eq!(
        b.target("animal").map(|t| t.to_vec1::<u32>().unwrap()),
        Some(vec![0, 1, 2])
    );
    assert_eq!(b.inputs.dtype(), DType::U8);
    assert!(ImageFolder::open(dir.join("ant"), "x", ImageOptions::default()).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn multi_input_training_reads_a_manifest_and_a_mapped_array_side_by_side() {
    let mnist = fixture();
    let dir = temp_dir("multi-input-sources");
    let csv = png_manifest(&dir, "digits", &mnist.train, 200);
    let digits = CsvManifest::open(&csv, &ManifestConfig::default().ignoring(["id", "value"]))
        .expect("manifest")
        .normalized(Normalize::mnist());
    let npy = dir.join("values.npy");
    write_npy(&npy, &mnist.test.images_tensor().expect("images")).expect("npy");
    let values = MmapDataset::open_npy(&npy)
        .and_then(|d| d.with_target("value", mnist.test.label_values_tensor()?))
        .expect("mapped")
        .normalized(Normalize::mnist());
    let data: Vec<Box<dyn Dataset>> = vec![Box::new(digits), Box::new(values)];
    let config = TrainerConfig {
        input_mode: InputMode::MultiInput,
        batch_size: 25,
        loader_workers: 2,
        ..Default::default()
    };
    let mut trainer = Trainer::new(
        mlp_model(6),
        candle_mtl::weighting::by_name("equal").expect("equal"),
        config,
    )
    .expect("trainer");
    let report = trainer
        .train_epoch(TaskData::PerTask(&data))
        .expect("epoch");
    // 200 digits and 200 values in batches of 25: 8 steps, each with both tasks.
    assert_eq!(report.steps, 8);
    let eval = trainer
        .evaluate(TaskData::PerTask(&data))
        .expect("evaluation");
    assert_eq!(eval.task("digit").map(|t| t.samples), Some(160));
    assert_eq!(eval.task("value").map(|t| t.samples), Some(200));
    // A single dataset given where one per task is needed is refused, naming the mode.
    let msg = trainer
        .train_epoch(TaskData::Shared(&data[0]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("MultiInput"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

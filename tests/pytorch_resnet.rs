//! The ResNet encoder against PyTorch: weights exported from a PyTorch `state_dict`
//! (tests/fixtures/resnet, written by its make_fixture.py) load without renaming and give
//! PyTorch's logits (eval and train mode), gradients and running statistics.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_mtl::encoder::{ResNet, ResNetConfig, ResNetStem};
use candle_mtl::head::LinearHead;
use candle_mtl::model::{Component, MultiTaskModel, PretrainedOptions};
use candle_mtl::task::TaskSpec;
use candle_mtl::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resnet")
        .join(name)
}

fn config(name: &str) -> ResNetConfig {
    match name {
        "small" => ResNetConfig::small(3, 4),
        _ => ResNetConfig {
            width: 2,
            stem: ResNetStem::ImageNet,
            ..ResNetConfig::resnet18()
        },
    }
}

fn model(config: &ResNetConfig) -> candle_mtl::Result<MultiTaskModel> {
    let out = config.width * 8;
    MultiTaskModel::builder(&Device::Cpu, 0)
        .encoder(|p| ResNet::new(config, p))?
        .task(TaskSpec::classification("class"), |p| {
            LinearHead::new(out, 5, p)
        })?
        .build()
}

fn load_torch_weights(m: &MultiTaskModel, file: &PathBuf) -> candle_mtl::Result<()> {
    let enc = m.load_pretrained(
        &Component::Encoder,
        file,
        &PretrainedOptions::strict().ignore("fc"),
    )?;
    assert!(enc.is_complete(), "{enc}");
    assert!(enc
        .ignored
        .iter()
        .any(|k| k.ends_with("num_batches_tracked")));
    assert!(enc.ignored.iter().any(|k| k == "fc.weight"));
    let head = m.load_pretrained(
        &Component::Head("class".into()),
        file,
        &PretrainedOptions::strict()
            .select("fc")
            .add_prefix("linear"),
    )?;
    assert_eq!(head.loaded, ["linear.bias", "linear.weight"], "{head}");
    Ok(())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_mtl::Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// The PyTorch name of a candle-mtl parameter of this model.
fn torch_name(name: &str) -> String {
    match name.strip_prefix("encoder.") {
        Some(rest) => rest.to_string(),
        None => name.replace("heads.class.linear.", "fc."),
    }
}

fn check(name: &str) -> candle_mtl::Result<()> {
    let m = model(&config(name))?;
    load_torch_weights(&m, &fixture(&format!("{name}_weights.safetensors")))?;
    let reference: HashMap<String, Tensor> = candle_core::safetensors::load(
        fixture(&format!("{name}_reference.safetensors")),
        &Device::Cpu,
    )?;
    let x = &reference["x"];
    let y = reference["y"].to_dtype(DType::U32)?;

    let eval = &m.forward_all(x, false)?[0];
    let d = max_abs_diff(eval, &reference["eval_logits"])?;
    assert!(d < 1e-4, "{name}: eval logits differ from PyTorch's by {d}");

    let train = &m.forward_all(x, true)?[0];
    let d = max_abs_diff(train, &reference["train_logits"])?;
    assert!(
        d < 1e-4,
        "{name}: train logits differ from PyTorch's by {d}"
    );
    let loss = m.tasks()[0].spec().loss.compute("class", train, &y)?;
    let expected = reference["train_loss"].to_vec1::<f32>()?[0];
    let got = loss.to_scalar::<f32>()?;
    assert!(
        (got - expected).abs() < 1e-4,
        "{name}: loss {got} vs {expected}"
    );

    let grads = loss.backward()?;
    let mut compared = 0;
    for (param, var) in m.params().named_vars() {
        let key = format!("grad.{}", torch_name(&param));
        let want = reference
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in the reference"));
        let g = grads
            .get(&var)
            .unwrap_or_else(|| panic!("no gradient for {param}"));
        // Within 1e-3 of PyTorch's, relative to the gradient's largest entry when that is above
        // 1 (the narrow stem's conv1 gradient reaches 51: float32 sums in another order differ
        // there by about 1e-3 absolute, 2.5e-5 relative).
        let d = max_abs_diff(g, want)?;
        let scale = want
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            .max(1.0);
        assert!(
            d < 1e-3 * scale,
            "{name}: gradient of {param} differs from PyTorch's by {d} (largest entry {scale})"
        );
        compared += 1;
    }
    assert_eq!(
        compared,
        reference.keys().filter(|k| k.starts_with("grad.")).count()
    );
    for (buffer, var) in m.params().named_buffers() {
        let key = format!("after.{}", torch_name(&buffer));
        let d = max_abs_diff(var.as_tensor(), &reference[&key])?;
        assert!(
            d < 1e-4,
            "{name}: {buffer} after one training forward differs by {d}"
        );
    }
    Ok(())
}

#[test]
fn small_stem_resnet_matches_pytorch() -> candle_mtl::Result<()> {
    check("small")
}

#[test]
fn imagenet_stem_resnet_matches_pytorch() -> candle_mtl::Result<()> {
    check("imagenet")
}

#[test]
fn half_precision_files_convert() -> candle_mtl::Result<()> {
    let dir = std::env::temp_dir().join(format!("candle-mtl-f16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let weights =
        candle_core::safetensors::load(fixture("small_weights.safetensors"), &Device::Cpu)?;
    for dtype in [DType::F16, DType::BF16] {
        let half: HashMap<String, Tensor> = weights
            .iter()
            .map(|(k, t)| {
                let t = if t.dtype() == DType::F32 {
                    t.to_dtype(dtype)?
                } else {
                    t.clone()
                };
                Ok((k.clone(), t))
            })
            .collect::<candle_mtl::Result<_>>()?;
        let file = dir.join(format!("{dtype:?}.safetensors"));
        candle_core::safetensors::save(&half, &file)?;
        let m = model(&config("small"))?;
        load_torch_weights(&m, &file)?;
        let reference =
            candle_core::safetensors::load(fixture("small_reference.safetensors"), &Device::Cpu)?;
        let eval = &m.forward_all(&reference["x"], false)?[0];
        let d = max_abs_diff(eval, &reference["eval_logits"])?;
        assert!(d < 0.1, "{dtype:?} weights: logits differ by {d}");
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn mismatched_weights_change_nothing_and_name_the_key() -> candle_mtl::Result<()> {
    let file = fixture("small_weights.safetensors");
    // A model twice as wide: every convolution and batch norm differs.
    let wide = model(&ResNetConfig::small(3, 8))?;
    let before: Vec<Vec<f32>> = wide
        .params()
        .named_state()
        .iter()
        .map(|(_, v)| v.flatten_all().and_then(|t| t.to_vec1::<f32>()))
        .collect::<candle_core::Result<_>>()?;
    let err = wide
        .load_pretrained(
            &Component::Encoder,
            &file,
            &PretrainedOptions::strict().ignore("fc"),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("small_weights.safetensors"), "{text}");
    assert!(
        text.contains("conv1.weight")
            && text.contains("[4, 3, 3, 3]")
            && text.contains("[8, 3, 3, 3]"),
        "{text}"
    );
    let Error::PretrainedMismatch(report) = err else {
        panic!("not a PretrainedMismatch: {err}");
    };
    assert!(report.loaded.is_empty() && !report.mismatched.is_empty());
    let after: Vec<Vec<f32>> = wide
        .params()
        .named_state()
        .iter()
        .map(|(_, v)| v.flatten_all().and_then(|t| t.to_vec1::<f32>()))
        .collect::<candle_core::Result<_>>()?;
    assert_eq!(before, after, "a refused load changed the model");

    // Partial mode into a model whose last stage differs: the first stages load, layer4's
    // layers are skipped whole, never half-loaded.
    let other = model(&ResNetConfig {
        blocks: [2, 2, 2, 1],
        ..ResNetConfig::small(3, 4)
    })?;
    let report = other.load_pretrained(
        &Component::Encoder,
        &file,
        &PretrainedOptions::partial().ignore("fc"),
    )?;
    assert!(report.loaded.iter().any(|n| n == "layer1.0.conv1.weight"));
    assert!(
        report.unexpected.iter().any(|n| n.starts_with("layer4.1.")),
        "{report}"
    );
    assert!(
        report.missing.is_empty() && report.mismatched.is_empty(),
        "{report}"
    );

    // A file that is not safetensors names itself.
    let bad = std::env::temp_dir().join(format!("candle-mtl-not-weights-{}", std::process::id()));
    std::fs::write(&bad, b"not a tensor file").map_err(|e| Error::io(&bad, e))?;
    let err = other
        .load_pretrained(&Component::Encoder, &bad, &PretrainedOptions::strict())
        .unwrap_err()
        .to_string();
    assert!(err.contains("candle-mtl-not-weights"), "{err}");
    std::fs::remove_file(&bad).ok();
    let err = other
        .load_pretrained(
            &Component::Encoder,
            "/no/such/file.safetensors",
            &PretrainedOptions::strict(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/file.safetensors"), "{err}");
    Ok(())
}

#[test]
fn partial_loading_skips_a_layer_whose_entries_do_not_fit() -> candle_mtl::Result<()> {
    let file = fixture("small_weights.safetensors");
    // Rename the file's layer1.0.bn1 statistics away: that batch norm is incomplete.
    let m = model(&ResNetConfig::small(3, 4))?;
    let before = m
        .params()
        .get("encoder.layer1.0.bn1.weight")
        .map(|v| v.to_vec1::<f32>())
        .transpose()?;
    let options = PretrainedOptions::partial()
        .ignore("fc")
        .rename("layer1.0.bn1.running_var", "elsewhere.running_var");
    let report = m.load_pretrained(&Component::Encoder, &file, &options)?;
    assert_eq!(report.missing, ["layer1.0.bn1.running_var"]);
    assert_eq!(report.skipped_layers, ["layer1.0.bn1"]);
    let after = m
        .params()
        .get("encoder.layer1.0.bn1.weight")
        .map(|v| v.to_vec1::<f32>())
        .transpose()?;
    assert_eq!(before, after, "the incomplete layer was half-loaded");
    assert!(report.loaded.iter().any(|n| n == "layer1.0.conv1.weight"));
    Ok(())
}

#[test]
fn integer_tensors_are_refused_by_name_and_dtype() -> candle_mtl::Result<()> {
    let m = model(&config("small"))?;
    let dir = std::env::temp_dir().join(format!("candle-mtl-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let file = dir.join("head.safetensors");
    let tensors = HashMap::from([
        (
            "linear.weight".to_string(),
            Tensor::zeros((5, 32), DType::U8, &Device::Cpu)?,
        ),
        (
            "linear.bias".to_string(),
            Tensor::zeros(5, DType::F32, &Device::Cpu)?,
        ),
    ]);
    candle_core::safetensors::save(&tensors, &file)?;
    let err = m
        .load_pretrained(
            &Component::Head("class".into()),
            &file,
            &PretrainedOptions::strict(),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("linear.weight") && text.contains("U8"),
        "{text}"
    );
    let report = m.load_pretrained(
        &Component::Head("class".into()),
        &file,
        &PretrainedOptions::partial(),
    )?;
    assert_eq!(report.skipped_layers, ["linear"], "{report}");
    assert!(
        report.loaded.is_empty(),
        "the bias of a half-readable layer was loaded"
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

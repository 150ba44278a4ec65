//! Every fast op against candle's reference op: values and every gradient, on random shapes
//! with odd sizes, strides and padding.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{batch_norm, conv2d, linear, max_pool2d, reference_batch_norm, ConvOptions};
use crate::error::Result;

fn random(rng: &mut ChaCha8Rng, dims: &[usize]) -> Result<Tensor> {
    let n = dims.iter().product::<usize>();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Ok(Tensor::from_vec(values, dims, &Device::Cpu)?)
}

/// Largest absolute difference, relative to the reference's largest magnitude (at least 1).
fn assert_close(got: &Tensor, want: &Tensor, what: &str) -> Result<()> {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let diff = (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let scale = want
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?
        .max(1.0);
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max difference {diff} (scale {scale})"
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct ConvCase {
    batch: usize,
    c_in: usize,
    height: usize,
    width: usize,
    c_out: usize,
    kernel: usize,
    /// Kernel width when it differs from `kernel` (the height).
    kernel_w: Option<usize>,
    options: ConvOptions,
}

/// candle's conv2d + bias (+ relu). candle's backward fails when the stride leaves input rows
/// or columns unused (its transposed convolution returns a smaller gradient), so the reference
/// pads explicitly and narrows the padded input to the part the windows cover (the rest gets
/// a zero gradient through the narrow).
fn reference_conv(x: &Tensor, w: &Tensor, b: &Tensor, o: ConvOptions) -> Result<Tensor> {
    let mut x = x.clone();
    for axis in [2, 3] {
        let k = w.dim(axis)?;
        x = x.pad_with_zeros(axis, o.padding, o.padding)?;
        let out = (x.dim(axis)? - k) / o.stride + 1;
        x = x.narrow(axis, 0, (out - 1) * o.stride + k)?;
    }
    let y = x.conv2d(w, 0, o.stride, 1, 1)?;
    let y = y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?;
    let y = if o.relu { y.relu()? } else { y };
    match o.pool {
        Some(k) => super::reference_max_pool2d(&y, k, k),
        None => Ok(y),
    }
}

/// Compares outputs and the gradients of `sum(out * r)` for the inputs that are variables.
fn check_conv(rng: &mut ChaCha8Rng, case: ConvCase, x_is_var: bool, w_is_var: bool) -> Result<()> {
    let what = format!("{case:?} x_var={x_is_var} w_var={w_is_var}");
    let x = Var::from_tensor(&random(
        rng,
        &[case.batch, case.c_in, case.height, case.width],
    )?)?;
    let w = Var::from_tensor(&random(
        rng,
        &[
            case.c_out,
            case.c_in,
            case.kernel,
            case.kernel_w.unwrap_or(case.kernel),
        ],
    )?)?;
    let b = Var::from_tensor(&random(rng, &[case.c_out])?)?;
    let x_in = if x_is_var {
        x.as_tensor().clone()
    } else {
        x.as_tensor().detach()
    };
    let w_in = if w_is_var {
        w.as_tensor().clone()
    } else {
        w.as_tensor().detach()
    };
    let fast = conv2d(&x_in, &w_in, b.as_tensor(), case.options)?;
    let reference = reference_conv(&x_in, &w_in, b.as_tensor(), case.options)?;
    assert_close(&fast, &reference, &format!("{what} forward"))?;
    let r = random(rng, fast.dims())?;
    let fast_grads = (&fast * &r)?.sum_all()?.backward()?;
    let ref_grads = (&reference * &r)?.sum_all()?.backward()?;
    for (var, is_var, name) in [
        (&x, x_is_var, "input"),
        (&w, w_is_var, "weight"),
        (&b, true, "bias"),
    ] {
        match (fast_grads.get(var), ref_grads.get(var)) {
            (Some(f), Some(r)) => assert_close(f, r, &format!("{what} {name} gradient"))?,
            (None, None) => assert!(!is_var, "{what}: no {name} gradient"),
            (f, r) => panic!(
                "{what} {name} gradient: fast {:?}, reference {:?}",
                f.is_some(),
                r.is_some()
            ),
        }
    }
    Ok(())
}

#[test]
fn conv2d_matches_candle_on_edge_cases() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let case = |batch, c_in, height, width, c_out, kernel, padding, stride, relu, pool| ConvCase {
        batch,
        c_in,
        height,
        width,
        c_out,
        kernel,
        kernel_w: None,
        options: ConvOptions {
            padding,
            stride,
            relu,
            pool,
        },
    };
    for c in [
        case(64, 1, 28, 28, 32, 3, 1, 1, true, Some(2)), // the seed model's first block
        case(3, 32, 14, 14, 64, 3, 1, 1, true, Some(2)), // and its second
        case(3, 32, 14, 14, 64, 3, 1, 1, true, None),    // without the pool
        case(1, 3, 7, 5, 4, 3, 1, 1, false, None),       // batch below the thread count
        case(1, 3, 7, 5, 4, 3, 1, 1, false, Some(2)),    // pooling odd sizes, no ReLU
        case(2, 2, 9, 6, 3, 3, 0, 2, true, None),        // valid, strided
        case(3, 5, 8, 11, 2, 5, 2, 3, false, None),      // wide padding, stride 3
        case(2, 1, 4, 4, 2, 4, 0, 1, false, Some(1)),    // the kernel covers the image
        case(2, 3, 6, 7, 5, 1, 0, 1, true, Some(3)),     // 1x1, pool 3
        case(2, 2, 5, 5, 3, 2, 1, 2, true, None),        // even kernel, padding
        case(1, 1, 3, 3, 1, 5, 2, 1, false, None),       // kernel larger than the image
        ConvCase {
            kernel_w: Some(3), // 1x3, as in factorised convolutions
            ..case(2, 3, 6, 9, 4, 1, 1, 1, true, Some(2))
        },
        ConvCase {
            kernel_w: Some(2), // 5x2, strided
            ..case(2, 2, 11, 6, 3, 5, 0, 2, false, None)
        },
    ] {
        check_conv(&mut rng, c, true, true)?;
    }
    Ok(())
}

#[test]
fn conv2d_matches_candle_on_random_shapes() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..24 {
        let kernel = rng.random_range(1..=5usize);
        let kernel_w = rng.random_bool(0.3).then(|| rng.random_range(1..=5usize));
        let kw = kernel_w.unwrap_or(kernel);
        let padding = rng.random_range(0..=kernel.max(kw) / 2 + 1);
        let min = |k: usize| k.saturating_sub(2 * padding).max(1);
        let stride = rng.random_range(1..=3);
        let (height, width) = (
            rng.random_range(min(kernel)..=13),
            rng.random_range(min(kw)..=13),
        );
        let out = |size: usize, k: usize| (size + 2 * padding - k) / stride + 1;
        let largest = out(height, kernel).min(out(width, kw));
        let c = ConvCase {
            batch: rng.random_range(1..=5),
            c_in: rng.random_range(1..=6),
            height,
            width,
            c_out: rng.random_range(1..=7),
            kernel,
            kernel_w,
            options: ConvOptions {
                padding,
                stride,
                relu: rng.random_bool(0.5),
                pool: rng
                    .random_bool(0.5)
                    .then(|| rng.random_range(1..=largest.min(3))),
            },
        };
        let (x_var, w_var) = (rng.random_bool(0.7), rng.random_bool(0.8));
        check_conv(&mut rng, c, x_var, w_var)?;
    }
    Ok(())
}

#[test]
fn data_and_frozen_inputs_get_no_gradient() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = ConvCase {
        batch: 4,
        c_in: 2,
        height: 6,
        width: 5,
        c_out: 3,
        kernel: 3,
        kernel_w: None,
        options: ConvOptions {
            padding: 1,
            stride: 1,
            relu: true,
            pool: Some(2),
        },
    };
    check_conv(&mut rng, c, false, true)?; // images are data
    check_conv(&mut rng, c, true, false)?; // a frozen (detached) weight
    check_conv(&mut rng, c, false, false)?; // only the bias trains
    Ok(())
}

#[test]
fn conv2d_refuses_shapes_that_do_not_fit() -> Result<()> {
    let x = Tensor::zeros((1, 2, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
    let w = Tensor::zeros((3, 2, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
    let b = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?;
    let o = ConvOptions::default();
    let wrong_channels = Tensor::zeros((3, 1, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
    let err = conv2d(&x, &wrong_channels, &b, o).unwrap_err().to_string();
    assert!(
        err.contains("input channels") && err.contains("[3, 1, 3, 3]"),
        "{err}"
    );
    let err = conv2d(&x, &w, &b.narrow(0, 0, 2)?, o)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias"), "{err}");
    let big = Tensor::zeros((3, 2, 5, 5), candle_core::DType::F32, &Device::Cpu)?;
    assert!(conv2d(&x, &big, &b, o)
        .unwrap_err()
        .to_string()
        .contains("larger"));
    assert!(conv2d(&x.flatten_from(2)?, &w, &b, o).is_err());
    assert!(max_pool2d(&x, 5, 1).is_err());
    let no_outputs = Tensor::zeros((0, 2, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
    let no_bias = Tensor::zeros(0, candle_core::DType::F32, &Device::Cpu)?;
    let err = conv2d(&x, &no_outputs, &no_bias, o)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must not be empty"), "{err}");
    Ok(())
}

#[test]
fn max_pool_matches_candle() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (n, c, h, w, k, s) in [
        (64, 32, 28, 28, 2, 2),
        (2, 3, 7, 5, 2, 2),
        (1, 2, 9, 8, 3, 2),
        (3, 1, 6, 6, 2, 1),
        (2, 4, 5, 7, 3, 3),
        (1, 1, 1, 1, 1, 1),
    ] {
        let x = Var::from_tensor(&random(&mut rng, &[n, c, h, w])?)?;
        let fast = max_pool2d(x.as_tensor(), k, s)?;
        let reference = x.as_tensor().max_pool2d_with_stride(k, s)?;
        let what = format!("{n}x{c}x{h}x{w} k{k} s{s}");
        assert_close(&fast, &reference, &what)?;
        let r = random(&mut rng, fast.dims())?;
        let fg = (&fast * &r)?.sum_all()?.backward()?;
        let Some(got) = fg.get(&x) else {
            panic!("{what}: missing gradient")
        };
        assert_close(
            got,
            &naive_pool_gradient(x.as_tensor(), &r, k, s)?,
            &format!("{what} gradient"),
        )?;
        if k == s {
            // The reshape-and-max fallback used off the CPU gives the same gradient.
            let fg = (&super::reference_max_pool2d(x.as_tensor(), k, s)? * &r)?
                .sum_all()?
                .backward()?;
            let Some(fallback) = fg.get(&x) else {
                panic!("{what}: the fallback gave no gradient")
            };
            assert_close(got, fallback, &format!("{what} fallback gradient"))?;
        }
        if k == s && h % k == 0 && w % k == 0 {
            // candle's own max-pool backward multiplies by (winners / window size) instead of
            // dividing by the number of winners: with one winner it is k*k times too small.
            let rg = (&reference * &r)?.sum_all()?.backward()?;
            let Some(candle) = rg.get(&x) else {
                panic!("{what}: candle gave no gradient")
            };
            assert_close(
                got,
                &(candle * (k * k) as f64)?,
                &format!("{what} vs candle x k^2"),
            )?;
        }
    }
    Ok(())
}

/// The max-pool gradient by its definition: each output's gradient goes to its window's
/// largest input (the inputs are random, so there are no ties).
fn naive_pool_gradient(x: &Tensor, grad: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let gs = grad.flatten_all()?.to_vec1::<f32>()?;
    let mut dx = vec![0f32; xs.len()];
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = (f32::NEG_INFINITY, 0);
                for y in oy * s..oy * s + k {
                    for x in ox * s..ox * s + k {
                        let i = (plane * h + y) * w + x;
                        if xs[i] > best.0 {
                            best = (xs[i], i);
                        }
                    }
                }
                dx[best.1] += gs[(plane * oh + oy) * ow + ox];
            }
        }
    }
    Ok(Tensor::from_vec(dx, (n, c, h, w), &Device::Cpu)?)
}

#[test]
fn linear_matches_candle_on_random_shapes() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut shapes = vec![(64, 3136, 128), (1, 1, 1), (3, 5, 2)];
    for _ in 0..12 {
        shapes.push((
            rng.random_range(1..=70),
            rng.random_range(1..=40),
            rng.random_range(1..=33),
        ));
    }
    for (rows, inputs, outputs) in shapes {
        for relu in [false, true] {
            let (x_var, w_var) = (rng.random_bool(0.7), rng.random_bool(0.8));
            let what =
                format!("{rows}x{inputs} -> {outputs} relu={relu} x_var={x_var} w_var={w_var}");
            let x = Var::from_tensor(&random(&mut rng, &[rows, inputs])?)?;
            let w = Var::from_tensor(&random(&mut rng, &[outputs, inputs])?)?;
            let b = Var::from_tensor(&random(&mut rng, &[outputs])?)?;
            let x_in = if x_var {
                x.as_tensor().clone()
            } else {
                x.as_tensor().detach()
            };
            let w_in = if w_var {
                w.as_tensor().clone()
            } else {
                w.as_tensor().detach()
            };
            let fast = linear(&x_in, &w_in, b.as_tensor(), relu)?;
            let reference = x_in.matmul(&w_in.t()?)?.broadcast_add(b.as_tensor())?;
            let reference = if relu { reference.relu()? } else { reference };
            assert_close(&fast, &reference, &format!("{what} forward"))?;
            let r = random(&mut rng, fast.dims())?;
            let fg = (&fast * &r)?.sum_all()?.backward()?;
            let rg = (&reference * &r)?.sum_all()?.backward()?;
            for (var, is_var, name) in [
                (&x, x_var, "input"),
                (&w, w_var, "weight"),
                (&b, true, "bias"),
            ] {
                match (fg.get(var), rg.get(var)) {
                    (Some(f), Some(r)) => assert_close(f, r, &format!("{what} {name} gradient"))?,
                    (None, None) => assert!(!is_var, "{what}: no {name} gradient"),
                    (f, r) => panic!(
                        "{what} {name}: fast {:?}, reference {:?}",
                        f.is_some(),
                        r.is_some()
                    ),
                }
            }
        }
    }
    let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
    let w = Tensor::zeros((4, 2), candle_core::DType::F32, &Device::Cpu)?;
    let b = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu)?;
    let err = linear(&x, &w, &b, false).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 2]"), "{err}");
    Ok(())
}

#[test]
fn ties_go_to_the_first_winner_on_both_paths() -> Result<()> {
    // Values from {0, 1, 2}: most windows hold ties, as flat image regions do.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let values: Vec<f32> = (0..2 * 3 * 6 * 8)
        .map(|_| rng.random_range(0..3) as f32)
        .collect();
    let x = Var::from_tensor(&Tensor::from_vec(values, (2, 3, 6, 8), &Device::Cpu)?)?;
    let r = random(&mut rng, &[2, 3, 3, 4])?;
    let fast = max_pool2d(x.as_tensor(), 2, 2)?;
    let fallback = super::reference_max_pool2d(x.as_tensor(), 2, 2)?;
    assert_close(&fast, &fallback, "tied forward")?;
    let fg = (&fast * &r)?.sum_all()?.backward()?;
    let bg = (&fallback * &r)?.sum_all()?.backward()?;
    match (fg.get(&x), bg.get(&x)) {
        (Some(f), Some(b)) => {
            assert_close(f, b, "tied gradient")?;
            assert_close(
                f,
                &naive_pool_gradient(x.as_tensor(), &r, 2, 2)?,
                "tied vs naive",
            )?;
        }
        _ => panic!("missing gradient"),
    }
    // A NaN in a window comes through the fallback's forward pass too.
    let nan = Tensor::new(&[[[[1f32, f32::NAN], [0.0, 2.0]]]], &Device::Cpu)?;
    let pooled = super::reference_max_pool2d(&nan, 2, 2)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert!(pooled[0].is_nan(), "{pooled:?}");
    Ok(())
}

#[test]
fn recomputed_patches_give_the_cached_gradients() -> Result<()> {
    // Batches whose patch cache would be too large recompute each image's patches in the
    // backward pass: the same op without its cache must give the same gradients.
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let x = Var::from_tensor(&random(&mut rng, &[3, 4, 9, 7])?)?;
    let w = Var::from_tensor(&random(&mut rng, &[5, 4, 3, 3])?)?;
    let b = Var::from_tensor(&random(&mut rng, &[5])?)?;
    let options = ConvOptions {
        padding: 1,
        stride: 2,
        relu: true,
        pool: Some(2),
    };
    let geometry = super::conv_geometry(x.as_tensor(), w.as_tensor(), b.as_tensor(), options)?;
    let r = random(&mut rng, &[3, 5, 2, 2])?;
    let mut grads = Vec::new();
    for cache in [true, false] {
        let op = super::Conv2dOp::new(geometry, true, Some(2), cache);
        let y = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), op)?;
        let g = (&y * &r)?.sum_all()?.backward()?;
        let get = |v: &Var| g.get(v).cloned().expect("gradient");
        grads.push([get(&x), get(&w), get(&b)]);
    }
    for (cached, recomputed) in grads[0].iter().zip(&grads[1]) {
        assert_close(recomputed, cached, "recomputed patches")?;
    }
    Ok(())
}

#[test]
fn batch_norm_matches_candle_with_batch_and_running_statistics() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for dims in [vec![4usize, 3, 5, 7], vec![2, 5, 1, 1], vec![6, 4]] {
        let c = dims[1];
        let x = Var::from_tensor(&random(&mut rng, &dims)?.affine(3.0, 0.5)?)?;
        let w = Var::from_tensor(&(random(&mut rng, &[c])? + 1.5)?)?;
        let b = Var::from_tensor(&random(&mut rng, &[c])?)?;
        let r = random(&mut rng, &dims)?;
        let rm = random(&mut rng, &[c])?;
        let rv = (random(&mut rng, &[c])?.abs()? + 0.5)?;
        for running in [None, Some((&rm, &rv))] {
            let what = format!("{dims:?}, running statistics {}", running.is_some());
            let (fast, fast_stats) =
                batch_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), running, 1e-5)?;
            let (slow, slow_stats) =
                reference_batch_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), running, 1e-5)?;
            assert_close(&fast, &slow, &format!("{what}: output"))?;
            assert_eq!(fast_stats.is_some(), slow_stats.is_some());
            if let (Some((fm, fv)), Some((sm, sv))) = (fast_stats, slow_stats) {
                assert_close(&fm, &sm, &format!("{what}: mean"))?;
                assert_close(&fv, &sv, &format!("{what}: variance"))?;
            }
            let gf = (fast * &r)?.sum_all()?.backward()?;
            let gs = (slow * &r)?.sum_all()?.backward()?;
            for (var, name) in [(&x, "input"), (&w, "weight"), (&b, "bias")] {
                let (Some(a), Some(e)) = (gf.get(var), gs.get(var)) else {
                    panic!("{what}: no gradient for the {name}");
                };
                assert_close(a, e, &format!("{what}: {name} gradient"))?;
            }
        }
    }
    Ok(())
}

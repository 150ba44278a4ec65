//! Deterministic property tests: closed-form weights, DWA normalisation, geometric-mean weights,
//! finite-difference consistency of `loss_weights` with `value`, and error handling.

use candle_mtl::weighting::{
    Cosmos, Dwa, Famo, GeometricMean, ImtlL, Pbi, Rlw, Scalarized, Stch, Uncertainty,
};

/// Small deterministic generator (64-bit LCG) so the tests need no RNG crate.
struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    fn vec(&mut self, k: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..k).map(|_| self.range(lo, hi)).collect()
    }
    fn simplex(&mut self, k: usize) -> Vec<f64> {
        let v = self.vec(k, 0.05, 1.0);
        let s: f64 = v.iter().sum();
        v.into_iter().map(|x| x / s).collect()
    }
}

/// Loss vectors used everywhere: K = 1..=5, positive, with a wide-spread case.
fn loss_sets() -> Vec<Vec<f64>> {
    let mut r = Lcg(7);
    let mut out = vec![vec![0.7], vec![1.3, 0.4], vec![0.01, 5.0, 100.0]];
    for k in 2..=5 {
        for _ in 0..4 {
            out.push(r.vec(k, 0.2, 3.0));
        }
    }
    out
}

/// Central-difference (five-point stencil) check of `loss_weights` against `f = value`, relative tolerance 1e-6.
fn check_fd(name: &str, losses: &[f64], weights: &[f64], f: &dyn Fn(&[f64]) -> f64) {
    assert_eq!(weights.len(), losses.len(), "{name}: weight count");
    for k in 0..losses.len() {
        // Fourth-order central difference; step relative to the loss (floor 1e-2).
        let h = 1e-4 * losses[k].abs().max(1e-2);
        let at = |t: f64| {
            let mut x = losses.to_vec();
            x[k] += t;
            f(&x)
        };
        let fd = (-at(2.0 * h) + 8.0 * at(h) - 8.0 * at(-h) + at(-2.0 * h)) / (12.0 * h);
        let err = (fd - weights[k]).abs();
        assert!(
            err <= 1e-6 * weights[k].abs().max(1.0),
            "{name}: losses {losses:?} k={k}: analytic {} vs finite difference {fd} (err {err:e})",
            weights[k]
        );
    }
}

fn uncertainty(log_var: Vec<f64>) -> Uncertainty {
    let mut u = Uncertainty::new(log_var.len());
    u.log_var = log_var;
    u
}

fn imtl_l(log_scale: Vec<f64>) -> ImtlL {
    let mut u = ImtlL::new(log_scale.len());
    u.log_scale = log_scale;
    u
}

#[test]
fn dwa_weights_sum_to_k() {
    let mut r = Lcg(11);
    for l in loss_sets() {
        let k = l.len();
        let mut d = Dwa::default();
        // Before two epochs: uniform ones.
        assert_eq!(d.scalarize(&l).unwrap().loss_weights, vec![1.0; k]);
        for _ in 0..3 {
            for _ in 0..2 {
                d.record(&r.vec(k, 0.5, 2.0)).unwrap();
            }
            d.step();
        }
        assert_eq!(d.history().len(), 2);
        let w = d.scalarize(&l).unwrap().loss_weights;
        let s: f64 = w.iter().sum();
        assert!((s - k as f64).abs() < 1e-12, "DWA weights sum {s} != {k}");
        assert!(w.iter().all(|&x| x > 0.0));
    }
}

#[test]
fn geometric_mean_weights() {
    for l in loss_sets() {
        let k = l.len() as f64;
        let s = GeometricMean.scalarize(&l).unwrap();
        let prod: f64 = l.iter().product();
        assert!((s.value - prod.powf(1.0 / k)).abs() < 1e-12 * s.value.max(1.0));
        for (w, li) in s.loss_weights.iter().zip(&l) {
            assert!((w - s.value / (k * li)).abs() <= 1e-15 * w.abs().max(1.0));
        }
    }
}

#[test]
fn finite_difference_consistency_all_methods() {
    let mut r = Lcg(3);
    for l in loss_sets() {
        let k = l.len();
        let val = |res: Result<Scalarized, String>| res.unwrap().value;

        check_fd(
            "GeometricMean",
            &l,
            &GeometricMean.scalarize(&l).unwrap().loss_weights,
            &|x| val(GeometricMean.scalarize(x)),
        );

        let mut d = Dwa::new(2.0).unwrap();
        d.set_history(r.vec(k, 0.5, 2.0), r.vec(k, 0.5, 2.0))
            .unwrap();
        check_fd("DWA", &l, &d.scalarize(&l).unwrap().loss_weights, &|x| {
            val(d.scalarize(x))
        });

        let u = uncertainty(r.vec(k, -1.0, 1.0));
        check_fd("UW", &l, &u.scalarize(&l).unwrap().loss_weights, &|x| {
            val(u.scalarize(x))
        });
        // Parameter gradient by finite differences too.
        let g = u.parameter_gradient(&l).unwrap();
        check_fd("UW log_var", &u.log_var, &g, &|s| {
            val(uncertainty(s.to_vec()).scalarize(&l))
        });

        let im = imtl_l(r.vec(k, -1.0, 1.0));
        check_fd("IMTLL", &l, &im.scalarize(&l).unwrap().loss_weights, &|x| {
            val(im.scalarize(x))
        });
        let g = im.parameter_gradient(&l).unwrap();
        check_fd("IMTLL log_scale", &im.log_scale, &g, &|s| {
            val(imtl_l(s.to_vec()).scalarize(&l))
        });

        // FAMO's normaliser is a stop-gradient constant: differentiate with it frozen.
        let mut f = Famo::new(k);
        f.set_logits(r.vec(k, -1.0, 1.0));
        f.set_min_losses(l.iter().map(|x| x * 0.1).collect());
        let c0 = f.normalizer(&l).unwrap();
        let fs = f.scalarize(&l).unwrap();
        assert!((fs.value - f.value_with_normalizer(&l, c0).unwrap()).abs() < 1e-14);
        assert!((fs.loss_weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        check_fd("FAMO", &l, &fs.loss_weights, &|x| {
            f.value_with_normalizer(x, c0).unwrap()
        });

        let co = Cosmos::new(2.0, r.simplex(k));
        check_fd(
            "COSMOS",
            &l,
            &co.scalarize(&l).unwrap().loss_weights,
            &|x| val(co.scalarize(x)),
        );

        let p = Pbi::new(
            5.0,
            r.simplex(k),
            Some(l.iter().map(|x| x * r.range(0.0, 0.5)).collect()),
        );
        check_fd("PBI", &l, &p.scalarize(&l).unwrap().loss_weights, &|x| {
            val(p.scalarize(x))
        });

        let st = Stch::new(0.5, Some(r.simplex(k)), Some(r.vec(k, 0.0, 0.2)));
        check_fd("STCH", &l, &st.scalarize(&l).unwrap().loss_weights, &|x| {
            val(st.scalarize(x))
        });
        let st0 = Stch::default();
        check_fd(
            "STCH default",
            &l,
            &st0.scalarize(&l).unwrap().loss_weights,
            &|x| val(st0.scalarize(x)),
        );

        let rw = Rlw::with_draw(r.vec(k, -2.0, 2.0));
        check_fd("Rlw", &l, &rw.scalarize(&l).unwrap().loss_weights, &|x| {
            val(rw.scalarize(x))
        });
    }
}

#[test]
fn famo_update_moves_weight_to_slower_task() {
    // Task 0 barely improved, task 1 improved a lot: FAMO should raise task 0's weight.
    let mut f = Famo::new(2);
    let before = [1.0, 1.0];
    let after = [0.99, 0.5];
    let g = f.logit_gradient(&before, &after).unwrap();
    assert!(g[0] < 0.0 && g[1] > 0.0, "gradient {g:?}");
    f.update(&before, &after).unwrap();
    assert!(f.logits[0] > f.logits[1]);
    // First Adam step moves each logit by about lr.
    assert!((f.logits[0] - 0.025).abs() < 1e-6);
    assert_eq!(f.optimizer.as_ref().map(|o| o.step_count), Some(1));
    f.update(&before, &after).unwrap();
    assert_eq!(f.optimizer.as_ref().map(|o| o.step_count), Some(2));
    f.reset();
    assert!(f.optimizer.is_none() && f.logits == vec![0.0, 0.0]);
}

#[test]
fn random_sampler_and_stch_max_bound() {
    let l = [0.3, 1.2, 0.8];
    let mut it = [0.5, -0.1, 1.0].into_iter();
    let s = Rlw::scalarize_with_sampler(&l, || it.next().unwrap_or(0.0)).unwrap();
    assert!((s.loss_weights.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    // STCH is an upper bound of the weighted max that tightens as mu -> 0.
    let w = vec![0.2, 0.5, 0.3];
    let max = l
        .iter()
        .zip(&w)
        .map(|(a, b)| a * b)
        .fold(f64::MIN, f64::max);
    let v1 = Stch::new(0.5, Some(w.clone()), None)
        .scalarize(&l)
        .unwrap()
        .value;
    let v2 = Stch::new(1e-3, Some(w), None).scalarize(&l).unwrap().value;
    assert!(v1 >= max && v2 >= max && v2 <= v1 && v2 - max < 1e-2);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let nan = [1.0, f64::NAN];
    let errs: Vec<Result<Scalarized, String>> = vec![
        GeometricMean.scalarize(&nan),
        GeometricMean.scalarize(&[1.0, 0.0]),
        GeometricMean.scalarize(&[1.0, -2.0]),
        Uncertainty::default().scalarize(&[1.0]),
        ImtlL::new(3).scalarize(&[1.0]),
        Famo::new(2).scalarize(&[1.0]),
        Famo {
            min_losses: Some(vec![2.0, 0.0]),
            ..Famo::new(2)
        }
        .scalarize(&[1.0, 1.0]),
        Cosmos::new(2.0, vec![0.0, 0.0]).scalarize(&[1.0, 1.0]),
        Cosmos::new(2.0, vec![0.5, 0.5]).scalarize(&[0.0, 0.0]),
        Cosmos::new(-1.0, vec![0.5, 0.5]).scalarize(&[1.0, 1.0]),
        Pbi::new(5.0, vec![0.0, 0.0], None).scalarize(&[1.0, 1.0]),
        Pbi::new(5.0, vec![0.5, 0.5], Some(vec![0.0])).scalarize(&[1.0, 1.0]),
        Stch::new(0.0, None, None).scalarize(&[1.0]),
        Stch::new(0.5, Some(vec![f64::INFINITY]), None).scalarize(&[1.0]),
        Rlw::default().scalarize(&[1.0]),
        Rlw::with_draw(vec![0.1]).scalarize(&[1.0, 2.0]),
    ];
    for (i, e) in errs.into_iter().enumerate() {
        let msg = e.expect_err(&format!("case {i} should fail"));
        assert!(!msg.is_empty());
    }
    // Named value appears in the message.
    let msg = GeometricMean.scalarize(&[1.0, -2.5]).unwrap_err();
    assert!(msg.contains("-2.5") && msg.contains("losses[1]"), "{msg}");
    let mut d = Dwa::default();
    d.set_history(vec![0.0, 1.0], vec![1.0, 1.0]).unwrap();
    assert!(d.scalarize(&[1.0, 1.0]).is_err());
    assert!(d.set_history(vec![1.0], vec![1.0, 2.0]).is_err());
    assert!(Uncertainty::new(2).parameter_gradient(&[1.0]).is_err());
    let mut f = Famo::new(2);
    let before = f.clone();
    assert!(f.update(&[1.0, 1.0], &[1.0, f64::NAN]).is_err());
    assert_eq!(f, before, "failed update must not change state");
}

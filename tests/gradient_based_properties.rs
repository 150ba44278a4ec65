//! Property tests on deterministic pseudo-random gradient matrices (xorshift64*).

use candle_mtl::solvers::matrix::{combine, cross_matrix, dot, gramian};
use candle_mtl::solvers::{min_norm_hull, project_simplex};
use candle_mtl::weighting::gradient_based::*;

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() + 1.0) * 0.5 * n as f64) as usize % n
    }
    fn matrix(&mut self, k: usize, d: usize) -> Vec<Vec<f64>> {
        // Random scales per row so norms differ, as in real training.
        (0..k)
            .map(|_| {
                let s = 0.2 + 2.0 * (self.next_f64() + 1.0);
                (0..d).map(|_| s * self.next_f64()).collect()
            })
            .collect()
    }
}

/// (K, d) shapes covering K < d, K = d and K > d (rank-deficient Gramian).
fn shapes(rng: &mut Rng, n: usize) -> Vec<(usize, usize)> {
    let mut v = vec![(2, 3), (3, 3), (5, 3), (10, 50), (12, 6), (20, 40)];
    for _ in 0..n {
        v.push((2 + rng.below(11), 2 + rng.below(30)));
    }
    v
}

fn assert_simplex(w: &[f64], what: &str) {
    let s: f64 = w.iter().sum();
    assert!((s - 1.0).abs() < 1e-9, "{what}: weights sum to {s}: {w:?}");
    assert!(
        w.iter().all(|&x| x >= -1e-12),
        "{what}: negative weight in {w:?}"
    );
}

#[test]
fn simplex_weights_lie_on_the_simplex() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (k, d) in shapes(&mut rng, 40) {
        let g = rng.matrix(k, d);
        let gr = gramian(&g).unwrap();
        assert_simplex(&Mgda::default().weights(&gr).unwrap(), "MGDA Frank-Wolfe");
        let exact = Mgda {
            solver: MgdaSolver::Exact,
            ..Mgda::default()
        };
        assert_simplex(&exact.weights(&gr).unwrap(), "MGDA exact");
        let a = cross_matrix(&g, &rng.matrix(k, d)).unwrap();
        assert_simplex(&MoDo::default().weights(&a).unwrap(), "MoDo");
        assert_simplex(&SdmGrad::default().weights(&a).unwrap(), "SDMGrad");
        let y: Vec<f64> = (0..k).map(|_| 3.0 * rng.next_f64()).collect();
        assert_simplex(&project_simplex(&y).unwrap(), "projection");
        let w = Imtlg.weights(&gr).unwrap();
        let s: f64 = w.iter().sum();
        assert!(
            s.abs() < 1e-12 || (s - 1.0).abs() < 1e-9,
            "IMTL-G weights sum to {s}"
        );
    }
}

#[test]
fn exact_mgda_is_no_worse_than_frank_wolfe() {
    let mut rng = Rng(7);
    for (k, d) in shapes(&mut rng, 40) {
        let gr = gramian(&rng.matrix(k, d)).unwrap();
        let fw = Mgda::default().weights(&gr).unwrap();
        let ex = min_norm_hull(&gr).unwrap();
        let q = |w: &[f64]| dot(w, &candle_mtl::solvers::matrix::mat_vec(&gr, w));
        assert!(
            q(&ex) <= q(&fw) + 1e-12,
            "exact {} > Frank-Wolfe {}",
            q(&ex),
            q(&fw)
        );
        // Optimality: no vertex improves, (G w)_j >= w^T G w for all j.
        let gw = candle_mtl::solvers::matrix::mat_vec(&gr, &ex);
        let scale = (0..k).fold(0.0_f64, |s, i| s.max(gr[i][i]));
        assert!(
            gw.iter().all(|&v| v >= q(&ex) - 1e-10 * scale),
            "not optimal: {gw:?}"
        );
    }
}

/// `g_i . d` for all i, and the largest squared row norm.
fn dots(g: &[Vec<f64>], w: &[f64]) -> (Vec<f64>, f64) {
    let d = combine(w, g).unwrap();
    let scale = g.iter().fold(0.0_f64, |s, r| s.max(dot(r, r)));
    (g.iter().map(|r| dot(r, &d)).collect(), scale)
}

#[test]
fn upgrad_and_dualproj_do_not_conflict() {
    let mut rng = Rng(12345);
    for (k, d) in shapes(&mut rng, 60) {
        let g = rng.matrix(k, d);
        let gr = gramian(&g).unwrap();
        let tr: f64 = (0..k).map(|i| gr[i][i]).sum();
        // Tiny ridge: the projection is (numerically) onto the exact dual cone.
        let up = UPGrad {
            reg_eps: 1e-12,
            ..UPGrad::default()
        };
        let dp = DualProj {
            reg_eps: 1e-12,
            ..DualProj::default()
        };
        for (name, w) in [
            ("UPGrad", up.weights(&gr).unwrap()),
            ("DualProj", dp.weights(&gr).unwrap()),
        ] {
            let (ds, scale) = dots(&g, &w);
            for (i, v) in ds.iter().enumerate() {
                assert!(
                    *v >= -1e-9 * scale.max(1.0),
                    "{name} K={k} d={d}: g_{i} . d = {v}"
                );
            }
        }
        // Default ridge (as torchjd): the guarantee is g_i . d >= -reg_eps * tr(G) * w_i.
        for (name, w) in [
            ("UPGrad", UPGrad::default().weights(&gr).unwrap()),
            ("DualProj", DualProj::default().weights(&gr).unwrap()),
        ] {
            let (ds, scale) = dots(&g, &w);
            for (i, v) in ds.iter().enumerate() {
                let bound = -1e-4 * tr * w[i].abs() - 1e-9 * scale.max(1.0);
                assert!(
                    *v >= bound,
                    "{name} (default ridge) K={k} d={d}: g_{i} . d = {v} < {bound}"
                );
            }
        }
    }
}

fn permute_rows<T: Clone>(m: &[T], p: &[usize]) -> Vec<T> {
    p.iter().map(|&i| m[i].clone()).collect()
}

fn assert_permuted(name: &str, w: &[f64], wp: &[f64], p: &[usize]) {
    let scale = w.iter().fold(1.0_f64, |s, x| s.max(x.abs()));
    for (j, &i) in p.iter().enumerate() {
        assert!(
            (wp[j] - w[i]).abs() <= 1e-8 * scale,
            "{name}: permuted weight {j} = {} but original weight {i} = {}",
            wp[j],
            w[i]
        );
    }
}

#[test]
fn permuting_tasks_permutes_weights() {
    let mut rng = Rng(0xDEAD_BEEF);
    for (k, d) in shapes(&mut rng, 30) {
        let g = rng.matrix(k, d);
        let g2 = rng.matrix(k, d);
        // Random permutation (Fisher-Yates).
        let mut p: Vec<usize> = (0..k).collect();
        for i in (1..k).rev() {
            p.swap(i, rng.below(i + 1));
        }
        let gp = permute_rows(&g, &p);
        let gr = gramian(&g).unwrap();
        let grp = gramian(&gp).unwrap();
        let full_rank = k <= d;
        let mut methods: Vec<(&str, Box<dyn GramianWeighting>)> = vec![
            ("UPGrad", Box::new(UPGrad::default())),
            ("DualProj", Box::new(DualProj::default())),
            ("AlignedMTL", Box::new(AlignedMtl::default())),
            (
                "AlignedMTL rmse",
                Box::new(AlignedMtl::new(ScaleMode::Rmse)),
            ),
        ];
        if full_rank {
            // Weights are unique only for linearly independent gradients.
            methods.push((
                "MGDA exact",
                Box::new(Mgda {
                    solver: MgdaSolver::Exact,
                    ..Mgda::default()
                }),
            ));
            methods.push(("CAGrad", Box::new(CaGrad::default())));
            methods.push(("IMTL-G", Box::new(Imtlg)));
            methods.push(("FairGrad", Box::new(FairGrad { alpha: 2.0 })));
        }
        for (name, m) in &methods {
            assert_permuted(
                name,
                &m.weights(&gr).unwrap(),
                &m.weights(&grp).unwrap(),
                &p,
            );
        }
        if full_rank {
            let w = NashMtl::default().weights(&gr).unwrap();
            let wp = NashMtl::default().weights(&grp).unwrap();
            assert_permuted("Nash-MTL", &w, &wp, &p);
        }
        let a = cross_matrix(&g, &g2).unwrap();
        let ap = cross_matrix(&gp, &permute_rows(&g2, &p)).unwrap();
        assert_permuted(
            "MoDo",
            &MoDo::default().weights(&a).unwrap(),
            &MoDo::default().weights(&ap).unwrap(),
            &p,
        );
        assert_permuted(
            "SDMGrad",
            &SdmGrad::default().weights(&a).unwrap(),
            &SdmGrad::default().weights(&ap).unwrap(),
            &p,
        );
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let ok = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let nan = vec![vec![f64::NAN, 0.0], vec![0.0, 1.0]];
    let ragged = vec![vec![1.0, 0.0], vec![0.0]];
    let asym = vec![vec![1.0, 0.5], vec![-0.5, 1.0]];
    let empty: Vec<Vec<f64>> = vec![];
    let methods: Vec<Box<dyn GramianWeighting>> = vec![
        Box::new(UPGrad::default()),
        Box::new(DualProj::default()),
        Box::new(Mgda::default()),
        Box::new(CaGrad::default()),
        Box::new(Imtlg),
        Box::new(AlignedMtl::default()),
        Box::new(FairGrad::default()),
    ];
    for m in &methods {
        assert!(m.weights(&ok).is_ok());
        for bad in [&nan, &ragged, &asym, &empty] {
            assert!(m.weights(bad).is_err());
        }
        assert!(m.aggregate(&ragged).is_err());
    }
    // A preference vector of the wrong length is refused at the step (K is known only then);
    // out-of-range hyper-parameters are refused by the constructors.
    assert!(UPGrad::new(Some(vec![1.0]), 1e-4, 1e-4)
        .unwrap()
        .weights(&ok)
        .is_err());
    assert!(UPGrad::new(None, 1e-4, 0.0).is_err());
    assert!(Mgda::new(-1.0, 100, MgdaSolver::FrankWolfe).is_err());
    assert!(FairGrad::new(-1.0).is_err());
    assert!(NashMtl::default().weights(&nan).is_err());
    // Opposite gradients: 0 is in their convex hull, no Nash / FairGrad solution exists.
    let opposite = gramian(&[vec![1.0, 0.0], vec![-1.0, 0.0]]).unwrap();
    assert!(NashMtl::default().weights(&opposite).is_err());
    assert!(FairGrad::default().weights(&opposite).is_err());
    assert!(CrMogm::new(UPGrad::default(), 1.5, None).is_err());
    assert!(MoDo::new(0.0, 0.1).is_err());
    assert!(SdmGrad::new(10.0, 1.0, 20, 0.3, None).is_err());
    assert!(project_simplex(&[]).is_err());
    assert!(
        candle_mtl::solvers::solve_linear(&[vec![0.0, 0.0], vec![0.0, 0.0]], &[1.0, 1.0]).is_err()
    );
}

#[test]
fn stateful_methods_carry_state() {
    let mut rng = Rng(99);
    let g = rng.matrix(4, 10);
    let gr = gramian(&g).unwrap();
    let mut cr = CrMogm::new(UPGrad::default(), 0.9, None).unwrap();
    let first = cr.weights(&gr).unwrap();
    assert_eq!(first, UPGrad::default().weights(&gr).unwrap());
    let second = cr.weights(&gr).unwrap();
    for (a, b) in first.iter().zip(&second) {
        assert!((a - b).abs() < 1e-12, "a fixed point stays put");
    }
    let a = cross_matrix(&g, &rng.matrix(4, 10)).unwrap();
    let mut modo = MoDo::default();
    let w1 = modo.weights(&a).unwrap();
    assert_eq!(modo.state(), Some(&w1[..]));
    let mut modo2 = MoDo::default();
    modo2.set_state(Some(w1.clone()));
    assert_eq!(modo.weights(&a).unwrap(), modo2.weights(&a).unwrap());
    let mut nash = NashMtl::new(1.0, 2).unwrap();
    let n1 = nash.weights(&gr).unwrap();
    let n2 = nash.weights(&gr).unwrap();
    assert_eq!(n1, n2);
    assert_eq!(nash.state().0, 2);
    nash.reset();
    assert_eq!(nash.state(), (0, None));
}

#[test]
fn timing_k10() {
    let mut rng = Rng(2024);
    let g = rng.matrix(10, 100);
    let gr = gramian(&g).unwrap();
    let a = cross_matrix(&g, &rng.matrix(10, 100)).unwrap();
    let methods: Vec<(&str, Box<dyn GramianWeighting>)> = vec![
        ("UPGrad", Box::new(UPGrad::default())),
        ("DualProj", Box::new(DualProj::default())),
        ("MGDA FW", Box::new(Mgda::default())),
        (
            "MGDA exact",
            Box::new(Mgda {
                solver: MgdaSolver::Exact,
                ..Mgda::default()
            }),
        ),
        ("CAGrad", Box::new(CaGrad::default())),
        ("IMTL-G", Box::new(Imtlg)),
        ("AlignedMTL", Box::new(AlignedMtl::default())),
        ("FairGrad", Box::new(FairGrad { alpha: 2.0 })),
    ];
    let reps = 200;
    for (name, m) in &methods {
        let t = std::time::Instant::now();
        for _ in 0..reps {
            std::hint::black_box(m.weights(std::hint::black_box(&gr)).unwrap());
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!("TIMING K=10 {name}: {us:.1} us per call (solver only, Gramian given)");
    }
    let t = std::time::Instant::now();
    for _ in 0..reps {
        std::hint::black_box(NashMtl::default().weights(&gr).unwrap());
    }
    println!(
        "TIMING K=10 Nash-MTL: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
    let t = std::time::Instant::now();
    for _ in 0..reps {
        std::hint::black_box(SdmGrad::default().weights(&a).unwrap());
    }
    println!(
        "TIMING K=10 SDMGrad: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
}

#[test]
fn degenerate_inputs_give_finite_results_or_errors() {
    let cases: Vec<Vec<Vec<f64>>> = vec![
        vec![vec![0.3, -0.2, 1.0]],                            // K = 1
        vec![vec![0.0; 4]; 3],                                 // all zero
        vec![vec![1.0, 2.0, 3.0]; 4],                          // identical rows
        vec![vec![1.0, 0.0], vec![-1.0, 0.0], vec![0.0, 1.0]], // 0 on the hull boundary
        vec![
            vec![1e-9, 0.0, 0.0],
            vec![0.0, 1e3, 0.0],
            vec![0.0, 0.0, 1.0],
        ], // wild scales
    ];
    let methods: Vec<(&str, Box<dyn GramianWeighting>)> = vec![
        ("UPGrad", Box::new(UPGrad::default())),
        ("DualProj", Box::new(DualProj::default())),
        ("MGDA", Box::new(Mgda::default())),
        (
            "MGDA exact",
            Box::new(Mgda {
                solver: MgdaSolver::Exact,
                ..Mgda::default()
            }),
        ),
        ("CAGrad", Box::new(CaGrad::default())),
        ("IMTL-G", Box::new(Imtlg)),
        ("AlignedMTL", Box::new(AlignedMtl::default())),
        ("FairGrad", Box::new(FairGrad::default())),
    ];
    for g in &cases {
        let gr = gramian(g).unwrap();
        for (name, m) in &methods {
            let r = m.weights(&gr);
            if let Err(e) = &r {
                println!("DEGENERATE {name}: Err({e})");
            }
            if let Ok(w) = r {
                assert!(
                    w.iter().all(|x| x.is_finite()),
                    "{name} gave {w:?} for {g:?}"
                );
            }
        }
        if let Ok(w) = NashMtl::default().weights(&gr) {
            assert!(w.iter().all(|x| x.is_finite()));
        }
    }
}

#[test]
fn after_pcgrad_no_pair_of_two_tasks_conflicts() {
    // Two tasks: each projected gradient is orthogonal to, or agrees with, the other task's
    // gradient; with more tasks the last task visited for each row no longer conflicts.
    let mut state = 0x1234_5678_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2000) as f64 / 1000.0 - 1.0
    };
    let pc = PcGrad::default();
    for _ in 0..200 {
        let d = 7;
        let rows: Vec<Vec<f64>> = (0..2).map(|_| (0..d).map(|_| next()).collect()).collect();
        let g = gramian(&rows).unwrap();
        let coefficients = pc
            .projected_rows_from_gramian(&g, &[vec![1], vec![0]])
            .unwrap();
        for (i, c) in coefficients.iter().enumerate() {
            let projected = combine(c, &rows).unwrap();
            let other = &rows[1 - i];
            assert!(
                dot(&projected, other) >= -1e-9,
                "row {i} still conflicts: {}",
                dot(&projected, other)
            );
        }
    }
}

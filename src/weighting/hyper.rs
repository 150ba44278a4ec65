//! Range checks of strategy hyper-parameters, run once when a strategy is built (and again when
//! a trainer is built, for values set afterwards); each refusal is an
//! [`Error::InvalidHyperParameter`] naming the strategy, the field, the value and the rule.

use crate::error::{Error, Result};

/// A range a real hyper-parameter must lie in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Finite.
    Finite,
    /// Finite and `> 0`.
    Positive,
    /// Finite and `>= 0`.
    NonNegative,
    /// In `[0, 1]`.
    UnitClosed,
    /// In `[0, 1)`.
    UnitHalfOpen,
}

impl Rule {
    fn holds(self, v: f64) -> bool {
        match self {
            Rule::Finite => v.is_finite(),
            Rule::Positive => v.is_finite() && v > 0.0,
            Rule::NonNegative => v.is_finite() && v >= 0.0,
            Rule::UnitClosed => (0.0..=1.0).contains(&v),
            Rule::UnitHalfOpen => (0.0..1.0).contains(&v),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Rule::Finite => "finite",
            Rule::Positive => "finite and > 0",
            Rule::NonNegative => "finite and >= 0",
            Rule::UnitClosed => "in [0, 1]",
            Rule::UnitHalfOpen => "in [0, 1)",
        }
    }
}

/// The error for `field = value` of `strategy`, which breaks `rule`.
pub(crate) fn refuse(
    strategy: &str,
    field: &'static str,
    value: impl std::fmt::Display,
    rule: &'static str,
) -> Error {
    Error::InvalidHyperParameter {
        strategy: strategy.to_string(),
        field,
        value: value.to_string(),
        rule,
    }
}

/// Refuses `value` unless it obeys `rule`.
pub(crate) fn check(strategy: &str, field: &'static str, value: f64, rule: Rule) -> Result<()> {
    if rule.holds(value) {
        Ok(())
    } else {
        Err(refuse(strategy, field, value, rule.text()))
    }
}

/// Refuses `values` unless every entry obeys `rule`; the error shows the whole vector.
pub(crate) fn check_all(
    strategy: &str,
    field: &'static str,
    values: &[f64],
    rule: Rule,
) -> Result<()> {
    if values.iter().all(|v| rule.holds(*v)) {
        Ok(())
    } else {
        let rule = match rule {
            Rule::Finite => "finite in every entry",
            Rule::Positive => "finite and > 0 in every entry",
            Rule::NonNegative => "finite and >= 0 in every entry",
            Rule::UnitClosed => "in [0, 1] in every entry",
            Rule::UnitHalfOpen => "in [0, 1) in every entry",
        };
        Err(refuse(strategy, field, format!("{values:?}"), rule))
    }
}

/// Refuses a count below `min` (1 or 2 in practice).
pub(crate) fn at_least(
    strategy: &str,
    field: &'static str,
    value: usize,
    min: usize,
) -> Result<()> {
    if value >= min {
        return Ok(());
    }
    let rule = match min {
        1 => "at least 1",
        2 => "at least 2",
        _ => "larger",
    };
    Err(refuse(strategy, field, value, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_refuse_nan_and_out_of_range_values() {
        assert!(check("s", "x", f64::NAN, Rule::Finite).is_err());
        assert!(check("s", "x", 0.0, Rule::Positive).is_err());
        assert!(check("s", "x", 0.0, Rule::NonNegative).is_ok());
        assert!(check("s", "x", 1.0, Rule::UnitHalfOpen).is_err());
        assert!(check("s", "x", 1.0, Rule::UnitClosed).is_ok());
        assert!(check_all("s", "x", &[1.0, f64::INFINITY], Rule::Finite).is_err());
        match at_least("s", "n", 0, 1) {
            Err(Error::InvalidHyperParameter {
                strategy,
                field,
                value,
                rule,
            }) => {
                assert_eq!(
                    (strategy.as_str(), field, value.as_str(), rule),
                    ("s", "n", "0", "at least 1")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// The field and the value of a construction error.
    fn refused<T: std::fmt::Debug>(r: Result<T>) -> (String, &'static str, String) {
        match r {
            Err(Error::InvalidHyperParameter {
                strategy,
                field,
                value,
                ..
            }) => (strategy, field, value),
            other => panic!("expected InvalidHyperParameter, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_are_refused_at_construction_naming_field_and_value() {
        use crate::weighting::gradient_based::*;
        use crate::weighting::{AutoLambda, Dwa, Fixed, InverseLoss};
        let s = |a: &str, f: &'static str, v: &str| (a.to_string(), f, v.to_string());
        assert_eq!(
            refused(UPGrad::new(None, 1e-4, 0.0)),
            s("upgrad", "reg_eps", "0")
        );
        assert_eq!(
            refused(UPGrad::new(None, -1.0, 1e-4)),
            s("upgrad", "norm_eps", "-1")
        );
        assert_eq!(
            refused(UPGrad::new(Some(vec![1.0, f64::NAN]), 1e-4, 1e-4)),
            s("upgrad", "pref_vector", "[1.0, NaN]")
        );
        assert_eq!(
            refused(DualProj::new(None, 1e-4, -1.0)),
            s("dualproj", "reg_eps", "-1")
        );
        assert_eq!(
            refused(Mgda::new(0.0, 100, MgdaSolver::Exact)),
            s("mgda", "epsilon", "0")
        );
        assert_eq!(
            refused(Mgda::new(1e-3, 0, MgdaSolver::Exact)),
            s("mgda", "max_iters", "0")
        );
        assert_eq!(refused(CaGrad::new(-0.5, 1e-4)), s("cagrad", "c", "-0.5"));
        assert_eq!(
            refused(FairGrad::new(f64::NAN)),
            s("fairgrad", "alpha", "NaN")
        );
        assert_eq!(
            refused(NashMtl::new(1.0, 0)),
            s("nash-mtl", "update_weights_every", "0")
        );
        assert_eq!(
            refused(CrMogm::new(UPGrad::default(), 1.5, None)),
            s("cr-mogm", "alpha", "1.5")
        );
        assert_eq!(refused(MoDo::new(0.0, 0.1)), s("modo", "gamma", "0"));
        assert_eq!(refused(MoDo::new(0.1, -0.1)), s("modo", "rho", "-0.1"));
        assert_eq!(
            refused(SdmGrad::new(10.0, 1.0, 20, 0.3, None)),
            s("sdmgrad", "momentum", "1")
        );
        assert_eq!(
            refused(GradVac::new(1.5, 1e-8)),
            s("gradvac", "beta", "1.5")
        );
        assert_eq!(
            refused(PcGrad::default().with_eps(-1.0)),
            s("pcgrad", "eps", "-1")
        );
        assert_eq!(
            refused(Pcd::new(0.02, None, 1.0, 1e-8)),
            s("pcd", "beta", "1")
        );
        assert_eq!(refused(Krum::new(1, 0)), s("krum", "n_selected", "0"));
        assert_eq!(
            refused(GradNorm::new(f64::INFINITY)),
            s("gradnorm", "alpha", "inf")
        );
        assert_eq!(
            refused(ExcessMtl::new(0.0, 0)),
            s("excess-mtl", "robust_step_size", "0")
        );
        assert_eq!(
            refused(CaGradLibMtl::new(-1.0, CaGradRescale::default())),
            s("cagrad-libmtl", "calpha", "-1")
        );
        assert_eq!(
            refused(GradDrop::with_leak(vec![2.0])),
            s("graddrop", "leak", "[2.0]")
        );
        assert_eq!(refused(Dwa::new(0.0)), s("dwa", "temperature", "0"));
        assert_eq!(
            refused(Fixed::new(vec![1.0, -1.0])),
            s("fixed", "weights", "[1.0, -1.0]")
        );
        assert_eq!(
            refused(Fixed::new(vec![0.0, 0.0])),
            s("fixed", "weights", "[0.0, 0.0]")
        );
        assert_eq!(
            refused(InverseLoss::new().with_eps(0.0)),
            s("inverse-loss", "eps", "0")
        );
        assert_eq!(
            refused(AutoLambda::with_meta_lr(-1.0)),
            s("auto-lambda", "meta_lr", "-1")
        );
        assert_eq!(
            refused(AutoLambda::new(0.0, 0.1, None)),
            s("auto-lambda", "initial_weight", "0")
        );
        // Good values build.
        assert!(UPGrad::new(Some(vec![0.5, 0.5]), 0.0, 1e-3).is_ok());
        assert!(MoDo::new(0.5, 0.0).is_ok());
    }

    #[test]
    fn a_value_changed_after_construction_is_refused_when_the_trainer_is_built() {
        use crate::weighting::gradient_based::UPGrad;
        use crate::weighting::{check_compatible, InputMode, WeightingSetup};
        let s = UPGrad {
            reg_eps: -1.0,
            ..UPGrad::default()
        };
        let setup = WeightingSetup {
            task_names: vec!["a".into(), "b".into()],
            gradient_source: None,
            input_mode: InputMode::SingleInput,
            batches_per_step: 1,
        };
        assert_eq!(
            refused(check_compatible(&s, &setup)),
            ("upgrad".into(), "reg_eps", "-1".into())
        );
    }
}

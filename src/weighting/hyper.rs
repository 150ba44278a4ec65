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
}

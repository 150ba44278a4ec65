//! Strategies by name, for command-line programs and configuration files.

use super::{
    Cosmos, Dwa, Equal, Famo, GeometricMean, ImtlL, InverseLoss, Pbi, Rlw, Stch, TaskWeighting,
    Uncertainty,
};
use crate::error::{Error, Result};

/// Every name [`by_name`] accepts (besides `fixed:W1,W2,...`), with a one-line description.
pub const STRATEGIES: &[(&str, &str)] = &[
    ("equal", "sum of the losses (w_k = 1)"),
    ("equal-mean", "mean of the losses (w_k = 1/K)"),
    ("inverse-loss", "w_k proportional to 1/(L_k + eps), mean 1"),
    ("uncertainty", "learned log-variances (Kendall et al. 2018)"),
    ("dwa", "dynamic weight average, T = 2 (Liu et al. 2019)"),
    (
        "geometric-mean",
        "geometric mean of the losses, GLS (Chennupati et al. 2019)",
    ),
    (
        "rlw",
        "random loss weighting, softmax of normal draws (Lin et al. 2022)",
    ),
    ("imtl-l", "learned loss scales (Liu et al. 2021)"),
    (
        "famo",
        "fast adaptive multitask optimisation (Liu et al. 2023)",
    ),
    (
        "stch",
        "smooth Tchebycheff, mu = 0.5, ideal point from 100 warm-up steps (Lin et al. 2024)",
    ),
    (
        "cosmos",
        "linear scalarisation plus cosine reward, uniform preference (Ruchte & Grabocka 2021)",
    ),
    (
        "pbi",
        "penalty-based boundary intersection, uniform preference (Zhang & Li 2007)",
    ),
];

/// A strategy with its default hyper-parameters, by name (see [`STRATEGIES`]); `fixed:1,0.5`
/// gives [`Fixed`](super::Fixed) weights. The error lists the names there are.
pub fn by_name(name: &str) -> Result<Box<dyn TaskWeighting>> {
    Ok(match name {
        "equal" => Box::new(Equal::sum()),
        "equal-mean" => Box::new(Equal::mean()),
        "inverse-loss" => Box::new(InverseLoss::new()),
        "uncertainty" => Box::new(Uncertainty::default()),
        "dwa" => Box::new(Dwa::default()),
        "geometric-mean" => Box::new(GeometricMean),
        "rlw" => Box::new(Rlw::default()),
        "imtl-l" => Box::new(ImtlL::default()),
        "famo" => Box::new(Famo::default()),
        "stch" => Box::new(Stch::default().with_warmup(100)),
        "cosmos" => Box::new(Cosmos::default()),
        "pbi" => Box::new(Pbi::default()),
        other => match other.strip_prefix("fixed:") {
            Some(list) => {
                let weights = list
                    .split(',')
                    .map(|w| {
                        w.trim().parse::<f64>().map_err(|_| {
                            Error::config("fixed weight", w, "is not a number (fixed:W1,W2,...)")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Box::new(super::Fixed::new(weights)?)
            }
            None => {
                let names: Vec<&str> = STRATEGIES.iter().map(|(n, _)| *n).collect();
                return Err(Error::config(
                    "weighting",
                    other,
                    format!(
                        "unknown; expected one of {} or fixed:W1,W2,...",
                        names.join(", ")
                    ),
                ));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_builds_and_reports_itself() {
        for (name, _) in STRATEGIES {
            let s = by_name(name).unwrap();
            assert_eq!(s.name(), *name);
        }
        assert_eq!(by_name("fixed:1,0.5").unwrap().name(), "fixed");
        let msg = by_name("nope").err().unwrap().to_string();
        assert!(msg.contains("nope") && msg.contains("uncertainty"), "{msg}");
        assert!(by_name("fixed:1,x").is_err());
    }
}

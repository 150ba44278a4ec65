//! Strategies by name, for command-line programs and configuration files.

use super::gradient_based::{
    AlignedMtl, CaGrad, CaGradLibMtl, ConFig, CrMogm, DualProj, ExcessMtl, FairGrad, GradDrop,
    GradNorm, GradVac, Imtl, Imtlg, Krum, Mgda, MgdaNormalization, MgdaNormalized, MoDo, NashMtl,
    PcGrad, Pcd, ScaleMode, SdmGrad, TrimmedMean, UPGrad,
};
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
    (
        "mgda",
        "min-norm point of the task gradients, Frank-Wolfe (Sener & Koltun 2018)",
    ),
    (
        "mgda-ub",
        "MGDA on the representation's gradients (Sener & Koltun 2018)",
    ),
    ("mgda-libmtl", "LibMTL's MGDA, no gradient normalisation"),
    ("mgda-l2", "LibMTL's MGDA on L2-normalised gradients"),
    (
        "mgda-loss",
        "LibMTL's MGDA on gradients divided by their loss",
    ),
    (
        "mgda-loss+",
        "LibMTL's MGDA on gradients scaled by loss / norm",
    ),
    (
        "pcgrad",
        "projecting conflicting gradients, seeded task order (Yu et al. 2020)",
    ),
    (
        "gradvac",
        "gradient vaccine, EMA cosine targets, beta = 0.5 (Wang et al. 2021)",
    ),
    (
        "cagrad",
        "conflict-averse gradient, c = 0.5 (Liu et al. 2021)",
    ),
    ("cagrad-libmtl", "LibMTL's CAGrad, calpha = 0.5, rescale 1"),
    (
        "imtl-g",
        "impartial MTL, gradient balance (Liu et al. 2021)",
    ),
    (
        "imtl",
        "IMTL hybrid: IMTL-G plus learned loss scales (Liu et al. 2021)",
    ),
    ("nash-mtl", "Nash bargaining solution (Navon et al. 2022)"),
    (
        "aligned-mtl",
        "Aligned-MTL, min scaling (Senushkin et al. 2023)",
    ),
    ("aligned-mtl-median", "Aligned-MTL, median scaling"),
    ("aligned-mtl-rmse", "Aligned-MTL, RMSE scaling"),
    (
        "upgrad",
        "unconflicting projection of gradients (Quinton & Rey 2024)",
    ),
    (
        "dualproj",
        "projection onto the dual cone of the gradients (GEM-style)",
    ),
    (
        "config",
        "conflict-free inverse gradients (Liu, Chu & Thuerey, ICLR 2025)",
    ),
    (
        "gradnorm",
        "gradient normalisation, alpha = 1.5 (Chen et al. 2018)",
    ),
    ("fairgrad", "alpha-fair gradient, alpha = 1 (Ban & Ji 2024)"),
    ("excess-mtl", "excess-risk weighting (He et al. 2024)"),
    (
        "graddrop",
        "gradient sign dropout on the representation (Chen et al. 2020)",
    ),
    (
        "krum",
        "Krum robust aggregation, 1 Byzantine, 1 selected (Blanchard et al. 2017)",
    ),
    (
        "trimmed-mean",
        "coordinate-wise trimmed mean, trim 1 (Yin et al. 2018)",
    ),
    ("pcd", "as in torchjd 0.18 (tau 0.02, beta 0.999)"),
    (
        "cr-mogm",
        "moving average (alpha 0.9) of UPGrad's weights (Zhou et al. 2022)",
    ),
    ("auto-lambda", "meta-learned weights on a validation batch, first order (Liu et al. 2022); needs Trainer::with_meta_validation"),
    (
        "modo",
        "MoDo double sampling, two batches per step (Chen et al. 2023)",
    ),
    (
        "sdmgrad",
        "stochastic direction-oriented MGDA, two batches per step (Xiao et al. 2023)",
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
        "mgda" => Box::new(Mgda::default()),
        "mgda-ub" => Box::new(Mgda::upper_bound()),
        "mgda-libmtl" => Box::new(MgdaNormalized::new(MgdaNormalization::None)),
        "mgda-l2" => Box::new(MgdaNormalized::new(MgdaNormalization::L2)),
        "mgda-loss" => Box::new(MgdaNormalized::new(MgdaNormalization::Loss)),
        "mgda-loss+" => Box::new(MgdaNormalized::new(MgdaNormalization::LossPlus)),
        "pcgrad" => Box::new(PcGrad::default()),
        "gradvac" => Box::new(GradVac::default()),
        "cagrad" => Box::new(CaGrad::default()),
        "cagrad-libmtl" => Box::new(CaGradLibMtl::default()),
        "imtl-g" => Box::new(Imtlg),
        "imtl" => Box::new(Imtl::default()),
        "nash-mtl" => Box::new(NashMtl::default()),
        "aligned-mtl" => Box::new(AlignedMtl::new(ScaleMode::Min)),
        "aligned-mtl-median" => Box::new(AlignedMtl::new(ScaleMode::Median)),
        "aligned-mtl-rmse" => Box::new(AlignedMtl::new(ScaleMode::Rmse)),
        "upgrad" => Box::new(UPGrad::default()),
        "dualproj" => Box::new(DualProj::default()),
        "config" => Box::new(ConFig),
        "gradnorm" => Box::new(GradNorm::default()),
        "fairgrad" => Box::new(FairGrad::default()),
        "excess-mtl" => Box::new(ExcessMtl::default()),
        "graddrop" => Box::new(GradDrop::default()),
        "krum" => Box::new(Krum::default()),
        "trimmed-mean" => Box::new(TrimmedMean::default()),
        "pcd" => Box::new(Pcd::default()),
        "cr-mogm" => Box::new(CrMogm::default()),
        "auto-lambda" => Box::new(super::AutoLambda::default()),
        "modo" => Box::new(MoDo::default()),
        "sdmgrad" => Box::new(SdmGrad::default()),
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
            // The Aligned-MTL scalings share one strategy name.
            assert_eq!(
                s.name(),
                name.trim_end_matches("-median").trim_end_matches("-rmse")
            );
        }
        assert_eq!(by_name("fixed:1,0.5").unwrap().name(), "fixed");
        let msg = by_name("nope").err().unwrap().to_string();
        assert!(msg.contains("nope") && msg.contains("uncertainty"), "{msg}");
        assert!(by_name("fixed:1,x").is_err());
    }
}

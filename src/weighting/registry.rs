//! Strategies by name, for command-line programs and configuration files: one table,
//! [`REGISTRY`], of (name, one-line description, constructor), from which [`by_name`],
//! [`STRATEGIES`], the examples' `--help` listing ([`strategy_list`]) and the table of
//! `docs/weighting.md` ([`markdown_table`], checked by a test) are all derived.

use super::gradient_based::{
    AlignedMtl, CaGrad, CaGradLibMtl, ConFig, CrMogm, DualProj, ExcessMtl, FairGrad, GradDrop,
    GradNorm, GradVac, Imtl, Imtlg, Krum, Mgda, MgdaNormalization, MgdaNormalized, MoDo, NashMtl,
    PcGrad, Pcd, ScaleMode, SdmGrad, TrimmedMean, UPGrad,
};
use super::{
    AutoLambda, Cosmos, Dwa, Equal, Famo, Fixed, GeometricMean, ImtlL, InverseLoss, Pbi, Rlw, Stch,
    TaskWeighting, Uncertainty,
};
use crate::error::{Error, Result};

/// One named strategy: what [`by_name`] builds for `name`.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The name [`by_name`] accepts.
    pub name: &'static str,
    /// One line: what the strategy does, its default hyper-parameters and its paper.
    pub description: &'static str,
    /// Builds the strategy with its default hyper-parameters.
    pub build: fn() -> Result<Box<dyn TaskWeighting>>,
}

/// Every named strategy (besides `fixed:W1,W2,...`), in the order they are listed.
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "equal",
        description: "sum of the losses (w_k = 1)",
        build: || Ok(Box::new(Equal::sum())),
    },
    Entry {
        name: "equal-mean",
        description: "mean of the losses (w_k = 1/K)",
        build: || Ok(Box::new(Equal::mean())),
    },
    Entry {
        name: "inverse-loss",
        description: "w_k proportional to 1/(L_k + eps), mean 1",
        build: || Ok(Box::new(InverseLoss::new())),
    },
    Entry {
        name: "uncertainty",
        description: "learned log-variances (Kendall et al. 2018)",
        build: || Ok(Box::new(Uncertainty::default())),
    },
    Entry {
        name: "dwa",
        description: "dynamic weight average, T = 2 (Liu et al. 2019)",
        build: || Ok(Box::new(Dwa::default())),
    },
    Entry {
        name: "geometric-mean",
        description: "geometric mean of the losses, GLS (Chennupati et al. 2019)",
        build: || Ok(Box::new(GeometricMean)),
    },
    Entry {
        name: "rlw",
        description: "random loss weighting, softmax of normal draws (Lin et al. 2022)",
        build: || Ok(Box::new(Rlw::default())),
    },
    Entry {
        name: "imtl-l",
        description: "learned loss scales (Liu et al. 2021)",
        build: || Ok(Box::new(ImtlL::default())),
    },
    Entry {
        name: "famo",
        description: "fast adaptive multitask optimisation (Liu et al. 2023)",
        build: || Ok(Box::new(Famo::default())),
    },
    Entry {
        name: "stch",
        description: "smooth Tchebycheff, mu = 0.5, ideal point from 100 warm-up steps (Lin et al. 2024)",
        build: || Ok(Box::new(Stch::default().with_warmup(100))),
    },
    Entry {
        name: "cosmos",
        description: "linear scalarisation plus cosine reward, uniform preference (Ruchte & Grabocka 2021)",
        build: || Ok(Box::new(Cosmos::default())),
    },
    Entry {
        name: "pbi",
        description: "penalty-based boundary intersection, uniform preference (Zhang & Li 2007)",
        build: || Ok(Box::new(Pbi::default())),
    },
    Entry {
        name: "mgda",
        description: "min-norm point of the task gradients, Frank-Wolfe (Sener & Koltun 2018)",
        build: || Ok(Box::new(Mgda::default())),
    },
    Entry {
        name: "mgda-ub",
        description: "MGDA on the representation's gradients (Sener & Koltun 2018)",
        build: || Ok(Box::new(Mgda::upper_bound())),
    },
    Entry {
        name: "mgda-libmtl",
        description: "LibMTL's MGDA, no gradient normalisation",
        build: || Ok(Box::new(MgdaNormalized::new(MgdaNormalization::None))),
    },
    Entry {
        name: "mgda-l2",
        description: "LibMTL's MGDA on L2-normalised gradients",
        build: || Ok(Box::new(MgdaNormalized::new(MgdaNormalization::L2))),
    },
    Entry {
        name: "mgda-loss",
        description: "LibMTL's MGDA on gradients divided by their loss",
        build: || Ok(Box::new(MgdaNormalized::new(MgdaNormalization::Loss))),
    },
    Entry {
        name: "mgda-loss+",
        description: "LibMTL's MGDA on gradients scaled by loss / norm",
        build: || Ok(Box::new(MgdaNormalized::new(MgdaNormalization::LossPlus))),
    },
    Entry {
        name: "pcgrad",
        description: "projecting conflicting gradients, seeded task order (Yu et al. 2020)",
        build: || Ok(Box::new(PcGrad::default())),
    },
    Entry {
        name: "gradvac",
        description: "gradient vaccine, EMA cosine targets, beta = 0.5 (Wang et al. 2021)",
        build: || Ok(Box::new(GradVac::default())),
    },
    Entry {
        name: "cagrad",
        description: "conflict-averse gradient, c = 0.5 (Liu et al. 2021)",
        build: || Ok(Box::new(CaGrad::default())),
    },
    Entry {
        name: "cagrad-libmtl",
        description: "LibMTL's CAGrad, calpha = 0.5, rescale 1",
        build: || Ok(Box::new(CaGradLibMtl::default())),
    },
    Entry {
        name: "imtl-g",
        description: "impartial MTL, gradient balance (Liu et al. 2021)",
        build: || Ok(Box::new(Imtlg)),
    },
    Entry {
        name: "imtl",
        description: "IMTL hybrid: IMTL-G plus learned loss scales (Liu et al. 2021)",
        build: || Ok(Box::new(Imtl::default())),
    },
    Entry {
        name: "nash-mtl",
        description: "Nash bargaining solution (Navon et al. 2022)",
        build: || Ok(Box::new(NashMtl::default())),
    },
    Entry {
        name: "aligned-mtl",
        description: "Aligned-MTL, min scaling (Senushkin et al. 2023)",
        build: || Ok(Box::new(AlignedMtl::new(ScaleMode::Min))),
    },
    Entry {
        name: "aligned-mtl-median",
        description: "Aligned-MTL, median scaling",
        build: || Ok(Box::new(AlignedMtl::new(ScaleMode::Median))),
    },
    Entry {
        name: "aligned-mtl-rmse",
        description: "Aligned-MTL, RMSE scaling",
        build: || Ok(Box::new(AlignedMtl::new(ScaleMode::Rmse))),
    },
    Entry {
        name: "upgrad",
        description: "unconflicting projection of gradients (Quinton & Rey 2024)",
        build: || Ok(Box::new(UPGrad::default())),
    },
    Entry {
        name: "dualproj",
        description: "projection onto the dual cone of the gradients (GEM-style)",
        build: || Ok(Box::new(DualProj::default())),
    },
    Entry {
        name: "config",
        description: "conflict-free inverse gradients (Liu, Chu & Thuerey, ICLR 2025)",
        build: || Ok(Box::new(ConFig)),
    },
    Entry {
        name: "gradnorm",
        description: "gradient normalisation, alpha = 1.5 (Chen et al. 2018)",
        build: || Ok(Box::new(GradNorm::default())),
    },
    Entry {
        name: "fairgrad",
        description: "alpha-fair gradient, alpha = 1 (Ban & Ji 2024)",
        build: || Ok(Box::new(FairGrad::default())),
    },
    Entry {
        name: "excess-mtl",
        description: "excess-risk weighting (He et al. 2024)",
        build: || Ok(Box::new(ExcessMtl::default())),
    },
    Entry {
        name: "graddrop",
        description: "gradient sign dropout on the representation (Chen et al. 2020)",
        build: || Ok(Box::new(GradDrop::default())),
    },
    Entry {
        name: "krum",
        description: "Krum robust aggregation, 1 Byzantine, 1 selected (Blanchard et al. 2017)",
        build: || Ok(Box::new(Krum::default())),
    },
    Entry {
        name: "trimmed-mean",
        description: "coordinate-wise trimmed mean, trim 1 (Yin et al. 2018)",
        build: || Ok(Box::new(TrimmedMean::default())),
    },
    Entry {
        name: "pcd",
        description: "as in torchjd 0.18 (tau 0.02, beta 0.999)",
        build: || Ok(Box::new(Pcd::default())),
    },
    Entry {
        name: "cr-mogm",
        description: "moving average (alpha 0.9) of UPGrad's weights (Zhou et al. 2022)",
        build: || Ok(Box::new(CrMogm::default())),
    },
    Entry {
        name: "auto-lambda",
        description: "meta-learned weights on a validation batch, first order (Liu et al. 2022); needs Trainer::with_meta_validation",
        build: || Ok(Box::new(AutoLambda::default())),
    },
    Entry {
        name: "modo",
        description: "MoDo double sampling, two batches per step (Chen et al. 2023)",
        build: || Ok(Box::new(MoDo::default())),
    },
    Entry {
        name: "sdmgrad",
        description: "stochastic direction-oriented MGDA, two batches per step (Xiao et al. 2023)",
        build: || Ok(Box::new(SdmGrad::default())),
    },
];

/// Every name [`by_name`] accepts (besides `fixed:W1,W2,...`), with a one-line description:
/// [`REGISTRY`] without the constructors.
pub const STRATEGIES: &[(&str, &str)] = &strategies();

const fn strategies() -> [(&'static str, &'static str); REGISTRY.len()] {
    let mut out = [("", ""); REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        out[i] = (REGISTRY[i].name, REGISTRY[i].description);
        i += 1;
    }
    out
}

/// A strategy with its default hyper-parameters, by name (see [`REGISTRY`]); `fixed:1,0.5`
/// gives [`Fixed`] weights. The error lists the names there are.
pub fn by_name(name: &str) -> Result<Box<dyn TaskWeighting>> {
    if let Some(entry) = REGISTRY.iter().find(|e| e.name == name) {
        return (entry.build)();
    }
    match name.strip_prefix("fixed:") {
        Some(list) => {
            let weights = list
                .split(',')
                .map(|w| {
                    w.trim().parse::<f64>().map_err(|_| {
                        Error::config("fixed weight", w, "is not a number (fixed:W1,W2,...)")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(Fixed::new(weights)?))
        }
        None => {
            let names: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
            Err(Error::config(
                "weighting",
                name,
                format!(
                    "unknown; expected one of {} or fixed:W1,W2,...",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The strategies as `--help` text: one `  name  description` line each, names aligned.
pub fn strategy_list() -> String {
    let width = REGISTRY.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for e in REGISTRY {
        out.push_str(&format!("  {:width$}  {}\n", e.name, e.description));
    }
    out.push_str(&format!(
        "  {:width$}  fixed weights, one per task\n",
        "fixed:W1,..."
    ));
    out
}

/// The strategies as the Markdown table of `docs/weighting.md` (a test keeps the two equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| name | description |\n|---|---|\n");
    for e in REGISTRY {
        out.push_str(&format!("| `{}` | {} |\n", e.name, e.description));
    }
    out.push_str("| `fixed:W1,W2,...` | fixed weights, one per task |\n");
    out
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

    #[test]
    fn names_are_unique_and_strategies_mirror_the_registry() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        assert_eq!(STRATEGIES.len(), REGISTRY.len());
        for ((n, d), e) in STRATEGIES.iter().zip(REGISTRY) {
            assert_eq!((*n, *d), (e.name, e.description));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        assert!(strategy_list().contains("  upgrad "));
    }

    /// `docs/weighting.md` holds the table between its two markers exactly as
    /// [`markdown_table`] prints it; on failure, paste the printed table there.
    #[test]
    fn docs_table_lists_every_registry_name() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/weighting.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- strategies:begin -->\n", "<!-- strategies:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let table = markdown_table();
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/weighting.md is stale; expected:\n{table}"
        );
        for e in REGISTRY {
            assert!(
                doc.contains(&format!("| `{}` |", e.name)),
                "{} missing",
                e.name
            );
        }
    }
}

//! candle-nn's initialisation hints ([`candle_nn::Init`]) drawn from the store's seeded
//! generator instead of candle's unseedable one, with the same distributions.

use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::Init;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Values for a tensor of `shape` following `init`, in row-major order.
///
/// `Const` fills; `Uniform { lo, up }` draws from U(lo, up); `Randn { mean, stdev }` from a
/// normal distribution; `Kaiming` computes the fan of `shape` as PyTorch does (the second
/// dimension times the receptive field for the fan-in, the first for the fan-out) and draws
/// from U(-sqrt(3) g / sqrt(fan), +...) or N(0, g / sqrt(fan)), `g` the non-linearity's gain.
pub(crate) fn sample_init(init: &Init, shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n: usize = shape.iter().product();
    match *init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } => uniform(n, lo, up, rng),
        Init::Randn { mean, stdev } => normal(n, mean, stdev, rng),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan_of(fan, shape).max(1) as f64;
            let std = non_linearity.gain() / fan.sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(n, -bound, bound, rng)
                }
                NormalOrUniform::Normal => normal(n, 0.0, std, rng),
            }
        }
    }
}

fn fan_of(fan: FanInOut, shape: &[usize]) -> usize {
    let receptive: usize = shape.iter().skip(2).product();
    match fan {
        FanInOut::FanIn if shape.len() < 2 => 1,
        FanInOut::FanIn => shape[1] * receptive,
        FanInOut::FanOut if shape.is_empty() => 1,
        FanInOut::FanOut => shape[0] * receptive,
    }
}

fn uniform(n: usize, lo: f64, up: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    if up <= lo {
        return vec![lo as f32; n];
    }
    (0..n).map(|_| rng.random_range(lo..up) as f32).collect()
}

/// Normal deviates by the Box-Muller transform, two per pair of uniforms.
fn normal(n: usize, mean: f64, stdev: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // (0, 1]: the logarithm stays finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        out.push((mean + stdev * r * theta.cos()) as f32);
        out.push((mean + stdev * r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::init::{NonLinearity, DEFAULT_KAIMING_NORMAL};
    use rand::SeedableRng;

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|x| (f64::from(*x) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    #[test]
    fn distributions_have_the_hinted_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let v = sample_init(
            &Init::Randn {
                mean: 1.0,
                stdev: 2.0,
            },
            &[20_000],
            &mut rng,
        );
        let (m, s) = moments(&v);
        assert!((m - 1.0).abs() < 0.05 && (s - 2.0).abs() < 0.05, "{m} {s}");
        // Kaiming normal for a (64, 32, 3, 3) kernel: std = sqrt(2) / sqrt(288).
        let v = sample_init(&DEFAULT_KAIMING_NORMAL, &[64, 32, 3, 3], &mut rng);
        let (_, s) = moments(&v);
        assert!((s - 2f64.sqrt() / 288f64.sqrt()).abs() < 0.003, "{s}");
        let bound = 3f64.sqrt() / 10.0;
        let v = sample_init(
            &Init::Kaiming {
                dist: NormalOrUniform::Uniform,
                fan: FanInOut::FanOut,
                non_linearity: NonLinearity::Linear,
            },
            &[100, 7],
            &mut rng,
        );
        assert!(v.iter().all(|x| f64::from(x.abs()) <= bound));
        assert_eq!(sample_init(&Init::Const(0.5), &[3], &mut rng), vec![0.5; 3]);
    }
}

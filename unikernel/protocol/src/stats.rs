//! Order statistics over samples, computed the same way in the guest and on the host.
use serde::{Deserialize, Serialize};

/// min / median / p99 / max / mean of a sample set, in one unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarise samples; sorts them in place. `None` when empty.
    pub fn from_samples(samples: &mut [u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Some(Summary {
            min: samples[0] as f64,
            median: quantile_sorted(samples, 0.5),
            p99: quantile_sorted(samples, 0.99),
            max: samples[n - 1] as f64,
            mean: sum as f64 / n as f64,
        })
    }

    /// Same for floating-point samples (e.g. per-op costs of batched timings).
    pub fn from_f64(samples: &mut [f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
        let n = samples.len();
        let at = |q: f64| {
            let pos = q * (n - 1) as f64;
            let lo = pos as usize;
            let hi = if lo + 1 < n { lo + 1 } else { lo };
            let frac = pos - lo as f64;
            samples[lo] + (samples[hi] - samples[lo]) * frac
        };
        Some(Summary {
            min: samples[0],
            median: at(0.5),
            p99: at(0.99),
            max: samples[n - 1],
            mean: samples.iter().sum::<f64>() / n as f64,
        })
    }

    /// Multiply every statistic by `factor` (e.g. cycles → ns).
    pub fn scaled(&self, factor: f64) -> Summary {
        Summary {
            min: self.min * factor,
            median: self.median * factor,
            p99: self.p99 * factor,
            max: self.max * factor,
            mean: self.mean * factor,
        }
    }
}

/// Linear-interpolated quantile of sorted samples (type 7, like numpy's default).
pub fn quantile_sorted(sorted: &[u64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0] as f64;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_ordered_and_exact_on_small_sets() {
        let mut s = [5u64, 1, 3, 2, 4];
        let sum = Summary::from_samples(&mut s).unwrap();
        assert_eq!(sum.min, 1.0);
        assert_eq!(sum.median, 3.0);
        assert_eq!(sum.max, 5.0);
        assert_eq!(sum.mean, 3.0);
        assert!(sum.min <= sum.median && sum.median <= sum.p99 && sum.p99 <= sum.max);
        assert!(Summary::from_samples(&mut []).is_none());
    }
}

//! Host-side statistics for comparing runs: medians, quantiles, rank tests with their
//! dual Hodges–Lehmann intervals, and the family-wise (Bonferroni) level.
//!
//! The replication unit is the *boot*: each boot contributes one median
//! (`BenchEntry::boot_medians`). Samples within one boot share the host's state of the
//! moment (this host flips between a fast and a slow state for seconds at a time), so
//! they are not independent replicates; every test here runs on per-boot values.
//!
//! * [`signed_rank`]: paired boots (`kmbench ab`: A and B booted back to back), the
//!   Wilcoxon signed-rank test on per-pair log ratios.
//! * [`shift`]: independent runs (`kmbench compare` of two separate jobs), the
//!   Mann–Whitney test on per-boot log values.
//!
//! Both report a [`ShiftTest`]: a Hodges–Lehmann estimate, the distribution-free interval
//! that is the test's dual, and the p-value, so that "significant", "p < level" and "the
//! interval excludes no change" are the same statement.

pub mod shift;
pub mod signed_rank;

/// How a p-value was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exact permutation distribution (no ties or zeros).
    Exact,
    /// Normal approximation (ties or zeros present, or large samples).
    Normal,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::Normal => "normal",
        }
    }
}

/// A two-sided location-shift test with its estimate and dual interval.
#[derive(Clone, Debug, PartialEq)]
pub struct ShiftTest {
    /// Hodges–Lehmann estimate of the shift (new - base, in the input's unit).
    pub estimate: f64,
    /// Interval at the requested level; `None` when the sample is too small for the test
    /// to ever reject at that level (then no interval narrower than everything exists).
    pub ci: Option<(f64, f64)>,
    pub p_value: f64,
    pub method: Method,
    /// The smallest p-value this sample size can produce (complete separation).
    pub min_p: f64,
    /// Pairs (paired) or the smaller side (unpaired).
    pub n: usize,
}

/// Distribution-free confidence interval of the median of `xs` from order statistics:
/// `[x_(k), x_(n+1-k)]` with the largest `k` whose coverage `1 - 2 P(Binom(n, 1/2) < k)`
/// is at least `1 - alpha`; when even `[min, max]` falls short (n ≤ 5 at 95%), `[min, max]`.
/// Returns `(lower, upper, coverage)`; `None` for fewer than 2 values.
pub fn median_ci(xs: &[f64], alpha: f64) -> Option<(f64, f64, f64)> {
    let s = sorted(xs);
    let n = s.len();
    if n < 2 {
        return None;
    }
    // cdf[j] = P(B <= j), B ~ Binom(n, 1/2).
    let mut pmf = vec![0.0f64; n + 1];
    pmf[0] = 0.5f64.powi(n as i32);
    for j in 1..=n {
        pmf[j] = pmf[j - 1] * (n - j + 1) as f64 / j as f64;
    }
    let coverage = |k: usize| 1.0 - 2.0 * pmf[..k].iter().sum::<f64>(); // k is 1-based
    let mut k = 1;
    while k < n.div_ceil(2) && coverage(k + 1) >= 1.0 - alpha {
        k += 1;
    }
    Some((s[k - 1], s[n - k], coverage(k)))
}

/// Bonferroni per-test level for `m` tests at family-wise level `alpha`.
pub fn bonferroni_level(alpha: f64, m: usize) -> f64 {
    alpha / m.max(1) as f64
}

/// Bonferroni-adjusted p-value: `min(1, m p)`. Significant at family-wise `alpha`
/// exactly when `p < alpha / m`, i.e. when the adjusted value is `< alpha`.
pub fn bonferroni_adjust(p: f64, m: usize) -> f64 {
    (p * m.max(1) as f64).min(1.0)
}

/// Sorted copy of `xs` with NaNs dropped.
pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v
}

/// Linear-interpolated quantile (type 7, numpy's default) of already sorted values.
/// `None` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Quantile of unsorted values.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    quantile_sorted(&sorted(xs), q)
}

/// Median (mean of the two middle values for even counts). `None` when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    quantile(xs, 0.5)
}

/// SplitMix64: tiny, fast, good enough for resampling, and reproducible from a seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform index in `0..n` (n > 0), via Lemire's multiply-shift (bias < 2^-32 for small n).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// How a Mann-Whitney p-value was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MwMethod {
    /// Exact permutation distribution (no ties, small samples).
    Exact,
    /// Normal approximation with tie correction and continuity correction.
    Normal,
}

impl MwMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MwMethod::Exact => "exact",
            MwMethod::Normal => "normal",
        }
    }
}

/// Result of a two-sided Mann-Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: number of pairs (a, b) with a > b, ties counting ½.
    pub u1: f64,
    /// U of the second sample; `u1 + u2 = n1 * n2`.
    pub u2: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    pub method: MwMethod,
}

/// Largest per-side size for which the exact distribution is used (when there are no ties).
pub const MW_EXACT_MAX: usize = 50;

/// Two-sided Mann-Whitney U test of `a` vs `b`. `None` when either side is empty.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Midranks of the pooled sample.
    let mut pooled: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    pooled.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    let n = pooled.len();
    let mut r1 = 0.0;
    let mut tie_term = 0.0; // sum of t^3 - t over tie groups
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        for item in &pooled[i..=j] {
            if item.1 == 0 {
                r1 += midrank;
            }
        }
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let umin = u1.min(u2);

    if tie_term == 0.0 && n1 <= MW_EXACT_MAX && n2 <= MW_EXACT_MAX {
        let dist = u_distribution(n1, n2);
        let total: f64 = dist.iter().sum();
        let k = umin.round() as usize;
        let cdf: f64 = dist[..=k].iter().sum();
        return Some(MannWhitney {
            u1,
            u2,
            p_value: (2.0 * cdf / total).min(1.0),
            method: MwMethod::Exact,
        });
    }

    let nf = n as f64;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let p_value = if var <= 0.0 {
        1.0 // every value tied: no evidence of a shift
    } else {
        let z = ((u1 - mu).abs() - 0.5).max(0.0) / var.sqrt();
        (2.0 * (1.0 - normal_cdf(z))).min(1.0)
    };
    Some(MannWhitney {
        u1,
        u2,
        p_value,
        method: MwMethod::Normal,
    })
}

/// Number of arrangements giving each U = 0..=n1*n2 under H0 (no ties), as f64 counts.
/// Recurrence: c(m, n, u) = c(m-1, n, u-n) + c(m, n-1, u).
pub(crate) fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // table[m][n] = distribution for sizes (m, n); built row by row over m.
    let max_u = n1 * n2;
    let mut prev: Vec<Vec<f64>> = (0..=n2).map(|_| vec![1.0]).collect(); // m = 0: only U = 0
    for m in 1..=n1 {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n2 + 1);
        cur.push(vec![1.0]); // n = 0
        for n in 1..=n2 {
            let len = m * n + 1;
            let mut d = vec![0.0; len];
            // c(m-1, n, u-n): the largest value belongs to the first sample, beating all n.
            for (u, &c) in prev[n].iter().enumerate() {
                d[u + n] += c;
            }
            // c(m, n-1, u): the largest value belongs to the second sample.
            for (u, &c) in cur[n - 1].iter().enumerate() {
                d[u] += c;
            }
            cur.push(d);
        }
        prev = cur;
    }
    let d = prev.swap_remove(n2);
    debug_assert_eq!(d.len(), max_u + 1);
    d
}

/// Standard normal CDF.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' erfcc, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let xs: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.0), Some(1.0));
        assert_eq!(quantile(&xs, 1.0), Some(11.0));
        assert_eq!(quantile(&xs, 0.1), Some(2.0));
        assert!(close(quantile(&[1.0, 2.0], 0.25).unwrap(), 1.25, 1e-12));
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = SplitMix64::new(1);
        let mut b = SplitMix64::new(1);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[a.below(5)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn mann_whitney_hand_computed() {
        // Pooled ranks: 11(1) 12(2) 16(3) 17(4) 19(5) 20(6) 22(7) 24(8) 29(9).
        // R_a = 3+5+7+8+9 = 32 → U_a = 32 - 15 = 17, U_b = 20 - 17 = 3.
        let a = [19.0, 22.0, 16.0, 29.0, 24.0];
        let b = [20.0, 11.0, 17.0, 12.0];
        let r = mann_whitney_u(&a, &b).unwrap();
        assert_eq!(r.u1, 17.0);
        assert_eq!(r.u2, 3.0);
        assert_eq!(r.method, MwMethod::Exact);
        // P(U <= 3) = (1 + 1 + 2 + 3) / C(9,4) = 7/126; two-sided 14/126 (scipy: 0.1111).
        assert!(close(r.p_value, 14.0 / 126.0, 1e-12), "{}", r.p_value);

        // Complete separation, 3 vs 3: the smallest possible p is 2/20.
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!((r.u1, r.u2), (0.0, 9.0));
        assert!(close(r.p_value, 0.1, 1e-12));
        // 5 vs 5 complete separation: 2/252.
        let r = mann_whitney_u(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!(close(r.p_value, 2.0 / 252.0, 1e-12));
        // Identical samples: no evidence at all.
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.u1, 4.5);
        assert!(r.p_value > 0.9);
        assert!(mann_whitney_u(&[], &[1.0]).is_none());
    }

    #[test]
    fn mann_whitney_ties_use_corrected_normal() {
        // a = [1,2,2,3], b = [2,3,4,5]; midranks: 1→1, 2→3 (×3), 3→5.5 (×2), 4→7, 5→8.
        // R_a = 1 + 3 + 3 + 5.5 = 12.5 → U_a = 12.5 - 10 = 2.5.
        let r = mann_whitney_u(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(r.method, MwMethod::Normal);
        assert_eq!(r.u1, 2.5);
        assert_eq!(r.u2, 13.5);
        // var = 16/12 * (9 - (24 + 6)/56) = 11.2857…; z = (5.5 - 0.5)/3.3594 = 1.4884; p = 0.1366
        // (scipy.stats.mannwhitneyu(..., method="asymptotic") gives 0.13665).
        assert!(close(r.p_value, 0.13665, 2e-4), "{}", r.p_value);
        // All values tied: p = 1.
        let r = mann_whitney_u(&[2.0, 2.0], &[2.0, 2.0, 2.0]).unwrap();
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn exact_distribution_sums_to_binomial() {
        let d = u_distribution(5, 4);
        assert_eq!(d.len(), 21);
        assert_eq!(d.iter().sum::<f64>(), 126.0);
        assert_eq!(&d[..4], &[1.0, 1.0, 2.0, 3.0]);
        // Symmetric.
        for u in 0..=20 {
            assert_eq!(d[u], d[20 - u]);
        }
    }

    #[test]
    fn median_ci_from_order_statistics() {
        assert_eq!(median_ci(&[1.0], 0.05), None);
        // n = 5: [min, max] covers 1 - 2/32 = 93.75% (< 95%, the best there is).
        let (lo, hi, c) = median_ci(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.05).unwrap();
        assert_eq!((lo, hi), (1.0, 5.0));
        assert!((c - 0.9375).abs() < 1e-12);
        // n = 10: [x_(2), x_(9)] covers 1 - 2 * 11/1024 = 97.85%; [x_(3), x_(8)] 89%.
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        let (lo, hi, c) = median_ci(&xs, 0.05).unwrap();
        assert_eq!((lo, hi), (2.0, 9.0));
        assert!((c - (1.0 - 22.0 / 1024.0)).abs() < 1e-12);
    }

    #[test]
    fn normal_cdf_known_values() {
        assert!(close(normal_cdf(0.0), 0.5, 1e-7));
        assert!(close(normal_cdf(1.959_964), 0.975, 1e-6));
        assert!(close(normal_cdf(-1.0), 0.158_655_25, 1e-6));
    }
}

/// The cumulative distribution of an exact null distribution given as counts per value
/// (`dist[k]` = number of outcomes with statistic `k`, `total` outcomes in all).
pub(crate) fn null_cdf(dist: &[f64], total: f64) -> Vec<f64> {
    let mut acc = 0.0;
    dist.iter()
        .map(|c| {
            acc += c;
            acc / total
        })
        .collect()
}

//! Wilcoxon signed-rank test on paired differences, with the Hodges–Lehmann estimate of
//! the shift and its distribution-free confidence interval (Walsh averages).
//!
//! The interval is the test's dual: at level `1 - a` it is `[A_(c+1), A_(M-c)]` where
//! `A` are the `M = n(n+1)/2` sorted Walsh averages and `c` the largest rank statistic the
//! test rejects at `a`. So, for data without zeros or ties (the exact case), the interval
//! excludes 0 exactly when `p < a`: the p-value, the interval and the verdict are one rule.
//! With zeros or ties the test uses the normal approximation (zeros dropped, tie-corrected
//! variance) and [`crate::stats::shift::consistent`] makes the interval agree with it.
use super::{normal_cdf, sorted, Method, ShiftTest};

/// Largest sample (non-zero differences) for which the exact distribution is used.
pub const EXACT_MAX: usize = 60;

/// Counts of each W+ = 0..=n(n+1)/2 over the 2^n sign assignments (no ties), as f64.
fn w_distribution(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut d = vec![0.0; max + 1];
    d[0] = 1.0;
    for k in 1..=n {
        // Rank k is either in W+ (shift by k) or not.
        for w in (k..=k * (k + 1) / 2).rev() {
            d[w] += d[w - k];
        }
    }
    d
}

/// Midranks (1-based) of `|x|`, and the tie term Σ(t³ − t).
fn abs_midranks(xs: &[f64]) -> (Vec<f64>, f64) {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].abs().total_cmp(&xs[b].abs()));
    let mut ranks = vec![0.0; xs.len()];
    let mut tie = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]].abs() == xs[idx[i]].abs() {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        let t = (j - i + 1) as f64;
        tie += t * t * t - t;
        i = j + 1;
    }
    (ranks, tie)
}

/// Sorted Walsh averages `(d_i + d_j) / 2`, `i <= j`.
pub fn walsh_averages(d: &[f64]) -> Vec<f64> {
    let mut v = Vec::with_capacity(d.len() * (d.len() + 1) / 2);
    for i in 0..d.len() {
        for j in i..d.len() {
            v.push((d[i] + d[j]) / 2.0);
        }
    }
    sorted(&v)
}

/// Two-sided signed-rank test of "the differences are centred on 0", with the
/// Hodges–Lehmann shift and its dual interval at level `1 - level_alpha`.
/// `None` when `d` is empty.
pub fn signed_rank(d: &[f64], level_alpha: f64) -> Option<ShiftTest> {
    let d: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
    if d.is_empty() {
        return None;
    }
    let walsh = walsh_averages(&d);
    let m_all = walsh.len();
    let estimate = super::quantile_sorted(&walsh, 0.5)?;
    let nz: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        // Every difference is exactly 0: no evidence of a shift.
        return Some(ShiftTest {
            estimate: 0.0,
            ci: Some((0.0, 0.0)),
            p_value: 1.0,
            method: Method::Normal,
            min_p: 1.0,
            n: d.len(),
        });
    }
    let (ranks, tie) = abs_midranks(&nz);
    let w_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let max_w = (n * (n + 1) / 2) as f64;
    let w_min = w_plus.min(max_w - w_plus);
    let exact = tie == 0.0 && n == d.len() && n <= EXACT_MAX;
    if exact {
        let dist = w_distribution(n);
        let cdf = super::null_cdf(&dist, 2f64.powi(n as i32));
        let p = |k: usize| (2.0 * cdf[k]).min(1.0);
        let p_value = p(w_min.round() as usize);
        // c = largest k the test rejects at level_alpha; the interval is [A_(c+1), A_(M-c)].
        let c = (0..cdf.len()).take_while(|&k| p(k) < level_alpha).last();
        let ci = c.map(|c| (walsh[c], walsh[m_all - 1 - c]));
        return Some(ShiftTest {
            estimate,
            ci,
            p_value,
            method: Method::Exact,
            min_p: p(0),
            n: d.len(),
        });
    }
    // Normal approximation: zeros dropped, tie-corrected variance, continuity correction.
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie / 48.0;
    let p_of = |w: f64| {
        if var <= 0.0 {
            1.0
        } else {
            let z = ((w - mean).abs() - 0.5).max(0.0) / var.sqrt();
            (2.0 * (1.0 - normal_cdf(z))).min(1.0)
        }
    };
    let p_value = p_of(w_plus);
    // The interval uses every difference (zeros included): the same approximation for n.
    let na = d.len() as f64;
    let mean_a = na * (na + 1.0) / 4.0;
    let var_a = na * (na + 1.0) * (2.0 * na + 1.0) / 24.0;
    let p_a = |k: usize| {
        let z = ((k as f64 - mean_a).abs() - 0.5).max(0.0) / var_a.sqrt();
        (2.0 * (1.0 - normal_cdf(z))).min(1.0)
    };
    let c = (0..m_all / 2).take_while(|&k| p_a(k) < level_alpha).last();
    let ci = c.map(|c| (walsh[c], walsh[m_all - 1 - c]));
    Some(ShiftTest {
        estimate,
        ci,
        p_value,
        method: Method::Normal,
        min_p: p_of(0.0).min(p_a(0)),
        n: d.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    #[test]
    fn distribution_is_symmetric_and_sums_to_2n() {
        let d = w_distribution(5);
        assert_eq!(d.len(), 16);
        assert_eq!(d.iter().sum::<f64>(), 32.0);
        assert_eq!(&d[..6], &[1.0, 1.0, 1.0, 2.0, 2.0, 3.0]);
        for w in 0..=15 {
            assert_eq!(d[w], d[15 - w]);
        }
    }

    #[test]
    fn hand_computed_exact() {
        // d = [1.5, -0.5, 2.5, 3.5, 4.5]: ranks of |d| 2,1,3,4,5; W+ = 14, W- = 1.
        // P(W+ <= 1) = 2/32 → two-sided p = 4/32 = 0.125.
        let r = signed_rank(&[1.5, -0.5, 2.5, 3.5, 4.5], 0.05).unwrap();
        assert_eq!(r.method, Method::Exact);
        assert!(close(r.p_value, 0.125, 1e-12), "{}", r.p_value);
        assert!(close(r.min_p, 2.0 / 32.0, 1e-12));
        // n = 5 can never reach p < 0.05: no interval at that level.
        assert!(r.ci.is_none());
        // Walsh averages of [1,2,3]: 1, 1.5, 2, 2, 2.5, 3 → HL = 2.
        let r = signed_rank(&[3.0, 1.0, 2.0], 0.5).unwrap();
        assert_eq!(r.estimate, 2.0);
    }

    #[test]
    fn all_positive_is_the_smallest_p() {
        let d: Vec<f64> = (1..=10).map(|i| i as f64 * 0.01).collect();
        let r = signed_rank(&d, 0.01).unwrap();
        assert!(close(r.p_value, 2.0 / 1024.0, 1e-15));
        let (lo, hi) = r.ci.unwrap();
        assert!(lo > 0.0 && hi >= lo);
    }

    #[test]
    fn zeros_use_the_normal_approximation() {
        let r = signed_rank(&[0.0, 0.0, 0.0], 0.05).unwrap();
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.ci, Some((0.0, 0.0)));
        let r = signed_rank(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 0.05).unwrap();
        assert_eq!(r.method, Method::Normal);
        // Seven positive non-zero differences: W+ = 28, mean 14, var 35 → z = 13.5/5.916.
        assert!(close(
            r.p_value,
            2.0 * (1.0 - normal_cdf(13.5 / 35f64.sqrt())),
            1e-12
        ));
    }
}

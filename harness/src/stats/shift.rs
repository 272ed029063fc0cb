//! Two independent samples: the Mann–Whitney test with the Hodges–Lehmann shift
//! (median of all pairwise differences `y_j - x_i`) and its dual interval
//! `[D_(c+1), D_(N-c)]` (Moses), plus the rule that keeps an interval and a p-value in
//! agreement when an approximation was used.
use super::{mann_whitney_u, sorted, u_distribution, Method, MwMethod, ShiftTest};

/// Mann–Whitney two-sided test of `new` vs `base` (same unit, e.g. log values) with the
/// Hodges–Lehmann shift `new - base` and its interval at level `1 - level_alpha`.
pub fn rank_sum(base: &[f64], new: &[f64], level_alpha: f64) -> Option<ShiftTest> {
    let mw = mann_whitney_u(new, base)?;
    let (n1, n2) = (base.len(), new.len());
    let mut diffs = Vec::with_capacity(n1 * n2);
    for y in new {
        for x in base {
            diffs.push(y - x);
        }
    }
    let diffs = sorted(&diffs);
    let big_n = diffs.len();
    let estimate = super::quantile_sorted(&diffs, 0.5)?;
    // p(k): two-sided p of an observed min(U, N-U) = k under the exact distribution, or
    // its normal approximation (no tie correction: the interval's own approximation).
    let dist = u_distribution(n1, n2);
    let total: f64 = dist.iter().sum();
    let cdf = super::null_cdf(&dist, total);
    let p = |k: usize| (2.0 * cdf[k]).min(1.0);
    let c = (0..big_n / 2 + 1)
        .take_while(|&k| p(k) < level_alpha)
        .last();
    let ci = c.map(|c| (diffs[c], diffs[big_n - 1 - c]));
    Some(ShiftTest {
        estimate,
        ci,
        p_value: mw.p_value,
        method: match mw.method {
            MwMethod::Exact => Method::Exact,
            MwMethod::Normal => Method::Normal,
        },
        min_p: p(0),
        n: n1.min(n2),
    })
}

/// Make the interval agree with the test at `level_alpha` (only ever needed after a
/// normal approximation with ties or zeros): when the test does not reject, the interval
/// is widened to contain 0; when it rejects and the interval still contains 0, the bound
/// on the far side of the estimate is moved just past 0. Exact results are unchanged.
pub fn consistent(mut t: ShiftTest, level_alpha: f64) -> ShiftTest {
    let significant = t.p_value < level_alpha;
    if let Some((lo, hi)) = t.ci {
        let contains = lo <= 0.0 && 0.0 <= hi;
        if !significant && !contains {
            t.ci = Some((lo.min(0.0), hi.max(0.0)));
        } else if significant && contains {
            t.ci = Some(if t.estimate > 0.0 {
                (f64::MIN_POSITIVE, hi.max(f64::MIN_POSITIVE))
            } else {
                (lo.min(-f64::MIN_POSITIVE), -f64::MIN_POSITIVE)
            });
        }
    } else if significant {
        // The test rejected although no interval could be formed: the estimate is all
        // there is on its side of 0.
        t.ci = Some(if t.estimate > 0.0 {
            (f64::MIN_POSITIVE, t.estimate)
        } else {
            (t.estimate, -f64::MIN_POSITIVE)
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hodges_lehmann_and_interval() {
        let base = [1.0, 2.0, 3.0, 4.0, 5.0];
        let new = [11.0, 12.0, 13.0, 14.0, 15.0];
        let r = rank_sum(&base, &new, 0.05).unwrap();
        assert_eq!(r.estimate, 10.0);
        assert!((r.p_value - 2.0 / 252.0).abs() < 1e-12);
        let (lo, hi) = r.ci.unwrap();
        assert!(lo > 0.0 && lo <= 10.0 && hi >= 10.0, "({lo}, {hi})");
        // 3 vs 3 cannot reach 0.05 (min p = 0.1): no interval.
        let r = rank_sum(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], 0.05).unwrap();
        assert!(r.ci.is_none());
        assert!((r.min_p - 0.1).abs() < 1e-12);
    }

    #[test]
    fn consistency_rule() {
        let t = ShiftTest {
            estimate: 0.1,
            ci: Some((0.02, 0.2)),
            p_value: 0.2,
            method: Method::Normal,
            min_p: 0.001,
            n: 8,
        };
        assert_eq!(consistent(t.clone(), 0.05).ci, Some((0.0, 0.2)));
        let t2 = ShiftTest {
            p_value: 0.01,
            ci: Some((-0.01, 0.2)),
            ..t
        };
        let c = consistent(t2, 0.05).ci.unwrap();
        assert!(c.0 > 0.0 && c.1 == 0.2);
    }
}

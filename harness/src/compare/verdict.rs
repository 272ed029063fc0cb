//! One benchmark's verdict: the per-boot data, the test, and the one significance rule.
//!
//! * **Data.** Per-boot medians (`boot_medians`); boots a canary flagged
//!   (`unstable_boots`) are left out while at least [`MIN_KEPT`] remain. Paired runs
//!   (`kmbench ab`) use the pairs whose canaries agree around the benchmark's suite
//!   ([`Pairs::Agreeing`]); without such a list, a pair flagged on one side only is left
//!   out (flagged on both sides, the host factor cancels in the pair's ratio).
//! * **Scale.** Log of the values when all are positive (host-state factors then cancel
//!   in a pair's difference), else the value relative to the base median.
//! * **Test.** Paired: Wilcoxon signed-rank on per-pair log ratios. Unpaired: Mann–Whitney
//!   on per-boot log values. Both give a Hodges–Lehmann estimate (`change`) and its dual
//!   interval (`ci`).
//! * **Significance (one rule).** Significant ⟺ `p_adjusted < alpha`, where
//!   `p_adjusted = min(1, m·p)` (Bonferroni over the `m` benchmarks tested) ⟺ `p < alpha/m`
//!   ⟺ the `1 - alpha/m` interval excludes no change. The table shows `p_adjusted`.
//! * **Verdict.** Significant and `change ≥ threshold` → regressed; `≤ -threshold` →
//!   improved; significant but smaller → unchanged (below threshold); not significant →
//!   unchanged (or "not significant" when the estimate is past the threshold). When the
//!   sample cannot reach `alpha/m` even with complete separation → insufficient boots.
use kmbench_protocol::BenchStatus;
use serde::Serialize;

use crate::results::BenchEntry;
use crate::stats::{self, shift, signed_rank, ShiftTest};

/// Fewest unflagged boots (or pairs) kept when dropping canary-flagged ones.
pub const MIN_KEPT: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    /// Significant, but smaller than the minimum effect.
    BelowThreshold,
    /// Past the threshold, but not significant.
    NotSignificant,
    /// Too few boots for the test to ever reach the family-wise level.
    InsufficientBoots,
    /// ok in base, not ok (or missing) in new.
    Broken,
    /// not ok in base, ok in new.
    Fixed,
    /// Not comparable (neither side ok, unit changed, zero baseline).
    NotApplicable,
    /// Left out by the policy (`ignore = true`).
    Ignored,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::BelowThreshold => "unchanged (below threshold)",
            Verdict::NotSignificant => "unchanged (not significant)",
            Verdict::InsufficientBoots => "insufficient boots",
            Verdict::Broken => "broken",
            Verdict::Fixed => "fixed",
            Verdict::NotApplicable => "n/a",
            Verdict::Ignored => "ignored",
        }
    }

    /// Counts toward exit status 1.
    pub fn is_regression(self) -> bool {
        matches!(self, Verdict::Regressed | Verdict::Broken)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Significance {
    Significant,
    NotSignificant,
    #[serde(rename = "n/a")]
    NotApplicable,
}

/// One benchmark's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct BenchComparison {
    pub name: String,
    pub suite: String,
    pub unit: String,
    pub base_status: BenchStatus,
    pub new_status: BenchStatus,
    /// Median of the per-boot medians used, in `unit`.
    pub base_median: f64,
    pub new_median: f64,
    pub base_median_ns: Option<f64>,
    pub new_median_ns: Option<f64>,
    /// Boots used per side (paired: pairs used, on both sides).
    pub base_boots: usize,
    pub new_boots: usize,
    /// Boots (or pairs) left out because a canary flagged them.
    pub dropped_unstable: usize,
    /// Hodges–Lehmann estimate of `new / base - 1` (0.2 = 20% slower).
    pub change: Option<f64>,
    /// Its interval at level `ci_level` (`1 - alpha/m`).
    pub ci: Option<(f64, f64)>,
    pub ci_level: Option<f64>,
    /// Raw p-value of the test.
    pub p_value: Option<f64>,
    /// Bonferroni-adjusted: `min(1, m p)`; significant ⟺ `< alpha`.
    pub p_adjusted: Option<f64>,
    /// "signed-rank exact|normal" (paired) or "rank-sum exact|normal" (unpaired).
    pub test: Option<String>,
    /// This benchmark's minimum effect (fraction).
    pub threshold: f64,
    pub significance: Significance,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Per-boot medians of an entry, falling back to its overall median.
pub fn boot_values(e: &BenchEntry) -> Vec<f64> {
    let v: Vec<f64> = e
        .boot_medians
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        vec![e.median]
    } else {
        v
    }
}

/// Boot values without the canary-flagged ones, when enough remain.
fn kept_values(e: &BenchEntry) -> (Vec<f64>, usize) {
    let all = boot_values(e);
    let kept: Vec<f64> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !e.unstable_boots.contains(i))
        .map(|(_, v)| *v)
        .collect();
    if kept.len() >= MIN_KEPT && kept.len() < all.len() {
        let dropped = all.len() - kept.len();
        (kept, dropped)
    } else {
        (all, 0)
    }
}

/// The data of one benchmark, ready for its test.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub cmp: BenchComparison,
    /// Paired log ratios, or (base, new) transformed values; `None`: nothing to test.
    data: Option<Data>,
    log_scale: bool,
}

#[derive(Clone, Debug)]
enum Data {
    Paired(Vec<f64>),
    Unpaired(Vec<f64>, Vec<f64>),
}

fn ns_of(e: &BenchEntry, tsc_hz: u64, v: f64) -> Option<f64> {
    if e.unit == "ns" {
        return Some(v);
    }
    if let Some(ns) = &e.ns {
        if e.median != 0.0 {
            return Some(v * ns.median / e.median);
        }
    }
    (e.unit == "cycles" && tsc_hz > 0).then(|| v * 1e9 / tsc_hz as f64)
}

/// The pairs of a paired comparison, as (base index, new index) into `boot_medians`.
#[derive(Clone, Copy, Debug)]
pub enum Pairs<'a> {
    /// Already chosen by the canaries around this benchmark's suite: all are used.
    Agreeing(&'a [(usize, usize)]),
    /// All pairs: those flagged (`unstable_boots`) on one side only are left out.
    Flagged(&'a [(usize, usize)]),
}

/// Gather one benchmark's data. `pairs`: for paired runs, which boots pair up.
/// `tsc_hz`: (base, new) for the ns columns.
pub fn prepare(
    b: &BenchEntry,
    n: &BenchEntry,
    pairs: Option<Pairs<'_>>,
    threshold: f64,
    tsc_hz: (u64, u64),
) -> Prepared {
    let mut cmp = BenchComparison {
        name: b.name.clone(),
        suite: b.suite.clone(),
        unit: b.unit.clone(),
        base_status: b.status,
        new_status: n.status,
        base_median: b.median,
        new_median: n.median,
        base_median_ns: None,
        new_median_ns: None,
        base_boots: 0,
        new_boots: 0,
        dropped_unstable: 0,
        change: None,
        ci: None,
        ci_level: None,
        p_value: None,
        p_adjusted: None,
        test: None,
        threshold,
        significance: Significance::NotApplicable,
        verdict: Verdict::NotApplicable,
        note: None,
    };
    let none = |cmp| Prepared {
        cmp,
        data: None,
        log_scale: false,
    };
    match (b.status == BenchStatus::Ok, n.status == BenchStatus::Ok) {
        (true, false) => {
            cmp.verdict = Verdict::Broken;
            cmp.note = Some(format!(
                "status {} in new{}",
                n.status.label(),
                n.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
            return none(cmp);
        }
        (false, true) => {
            cmp.verdict = Verdict::Fixed;
            return none(cmp);
        }
        (false, false) => {
            cmp.note = Some("not ok on either side".into());
            return none(cmp);
        }
        (true, true) => {}
    }
    if b.unit != n.unit {
        cmp.note = Some(format!("unit changed: {} → {}", b.unit, n.unit));
        return none(cmp);
    }
    let (bv, nv, dropped) = match pairs {
        Some(pairs) => {
            let (ball, nall) = (boot_values(b), boot_values(n));
            let (list, chosen) = match pairs {
                Pairs::Agreeing(p) => (p, true),
                Pairs::Flagged(p) => (p, false),
            };
            let valid: Vec<(usize, usize)> = list
                .iter()
                .copied()
                .filter(|&(i, j)| i < ball.len() && j < nall.len())
                .collect();
            let use_pairs = if chosen {
                valid.clone()
            } else {
                let calm: Vec<(usize, usize)> = valid
                    .iter()
                    .copied()
                    // A pair whose two boots were both in the flagged (slow) state still
                    // compares like with like: the host factor cancels in its log ratio.
                    // Only a pair flagged on one side (the host changed between its two
                    // boots during this suite) is suspect.
                    .filter(|(i, j)| b.unstable_boots.contains(i) == n.unstable_boots.contains(j))
                    .collect();
                if calm.len() >= MIN_KEPT {
                    calm
                } else {
                    valid.clone()
                }
            };
            let dropped = if chosen {
                // Pairs left out by the canaries around this suite.
                ball.len().min(nall.len()).saturating_sub(use_pairs.len())
            } else {
                valid.len() - use_pairs.len()
            };
            (
                use_pairs.iter().map(|&(i, _)| ball[i]).collect::<Vec<_>>(),
                use_pairs.iter().map(|&(_, j)| nall[j]).collect::<Vec<_>>(),
                dropped,
            )
        }
        None => {
            let (bv, db) = kept_values(b);
            let (nv, dn) = kept_values(n);
            (bv, nv, db + dn)
        }
    };
    cmp.dropped_unstable = dropped;
    cmp.base_boots = bv.len();
    cmp.new_boots = nv.len();
    if bv.is_empty() || nv.is_empty() {
        cmp.note = Some("no paired boots".into());
        return none(cmp);
    }
    let base_median = stats::median(&bv).unwrap_or(b.median);
    let new_median = stats::median(&nv).unwrap_or(n.median);
    cmp.base_median = base_median;
    cmp.new_median = new_median;
    cmp.base_median_ns = ns_of(b, tsc_hz.0, base_median);
    cmp.new_median_ns = ns_of(n, tsc_hz.1, new_median);
    let log_scale = bv.iter().chain(&nv).all(|&x| x > 0.0);
    if !log_scale && base_median == 0.0 {
        if new_median == 0.0 {
            cmp.change = Some(0.0);
            cmp.verdict = Verdict::Unchanged;
        } else {
            cmp.note = Some("baseline median is 0".into());
        }
        return none(cmp);
    }
    let tf = |x: f64| {
        if log_scale {
            x.ln()
        } else {
            x / base_median
        }
    };
    let data = if pairs.is_some() {
        Data::Paired(bv.iter().zip(&nv).map(|(&x, &y)| tf(y) - tf(x)).collect())
    } else {
        Data::Unpaired(
            bv.iter().map(|&x| tf(x)).collect(),
            nv.iter().map(|&x| tf(x)).collect(),
        )
    };
    Prepared {
        cmp,
        data: Some(data),
        log_scale,
    }
}

impl Prepared {
    /// Takes part in the family (has data to test).
    pub fn testable(&self) -> bool {
        self.data.is_some()
    }

    /// Run the test at per-test level `level` (= alpha/m) and decide.
    pub fn decide(mut self, level: f64, m: usize, alpha: f64) -> BenchComparison {
        let Some(data) = &self.data else {
            return self.cmp;
        };
        let (t, name): (Option<ShiftTest>, &str) = match data {
            Data::Paired(d) => (signed_rank::signed_rank(d, level), "signed-rank"),
            Data::Unpaired(x, y) => (shift::rank_sum(x, y, level), "rank-sum"),
        };
        let Some(t) = t else {
            return self.cmp;
        };
        let t = shift::consistent(t, level);
        let back = |v: f64| if self.log_scale { v.exp() - 1.0 } else { v };
        let c = &mut self.cmp;
        let change = back(t.estimate);
        c.change = Some(change);
        c.ci = t.ci.map(|(lo, hi)| (back(lo), back(hi)));
        c.ci_level = Some(1.0 - level);
        c.p_value = Some(t.p_value);
        c.p_adjusted = Some(stats::bonferroni_adjust(t.p_value, m));
        c.test = Some(format!("{name} {}", t.method.as_str()));
        if t.min_p >= level {
            c.verdict = Verdict::InsufficientBoots;
            c.note = Some(format!(
                "{} {} cannot reach p < {:.2e} (alpha {alpha} over {m} benchmarks)",
                t.n,
                if name == "signed-rank" {
                    "pairs"
                } else {
                    "boots"
                },
                level
            ));
            return self.cmp;
        }
        let significant = t.p_value < level;
        c.significance = if significant {
            Significance::Significant
        } else {
            Significance::NotSignificant
        };
        let past = change.abs() >= c.threshold;
        c.verdict = match (significant, past) {
            (true, true) if change > 0.0 => Verdict::Regressed,
            (true, true) => Verdict::Improved,
            (true, false) => Verdict::BelowThreshold,
            (false, true) => Verdict::NotSignificant,
            (false, false) => Verdict::Unchanged,
        };
        self.cmp
    }
}

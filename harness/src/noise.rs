//! The noise guard on the host side: what the guest's canary readings
//! ([`CanaryRecord`], one before the first suite and one after each) say about the host.
//!
//! * **Reference.** Each boot's *level* is the median of its readings, per canary
//!   (compute, memory). The run's reference is the fastest boot's level (per canary,
//!   among boots that did not drift): what this machine does when nothing disturbs it.
//! * **Band.** A reading is *outside its band* when either canary is more than `band`
//!   (default 10%) slower than the reference.
//! * **Flags.** A benchmark's per-boot value is flagged (`BenchEntry::unstable_boots`)
//!   when the reading before or after its suite is outside the band.
//! * **Unstable host.** A boot *drifts* when its own readings spread by more than the band
//!   (the host changed speed during the boot); a boot is *slow* when its level is outside
//!   the band. A run with a drifting or slow boot says "unstable host", with the readings
//!   that show it, in its summary and in `results.json` (`noise`).
//! * **Stable boots** (`--stable`, `[noise] stable = true`): boots are retried until `N`
//!   of them neither drift nor are slow, at most `max_boots` in all; the others are
//!   discarded (kept in `records.jsonl`, listed in `noise.boots` with `kept: false`).
//! * **Pairs** (`kmbench ab`): a pair of boots agrees when neither drifts and their levels
//!   are within the band of each other ([`pair_agrees`]). Per suite, a pair agrees when
//!   the readings around that suite show one host state in both boots
//!   ([`suite_pair_agrees`]); a suite's benchmarks are tested on the pairs that agree for
//!   that suite, and stable mode adds pairs until every suite has `N` of them.
use kmbench_protocol::CanaryRecord;
use serde::{Deserialize, Serialize};

/// `[noise]` in a config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Take canary readings between suites.
    pub canaries: bool,
    /// Band, in percent: how much slower than the reference a reading may be.
    pub band: f64,
    /// Retry boots until `boots` stable ones (also `--stable`).
    pub stable: bool,
    /// Bound on boots in stable mode [default: 3 × boots].
    pub max_boots: Option<u32>,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            canaries: true,
            band: 10.0,
            stable: false,
            max_boots: None,
        }
    }
}

impl NoiseConfig {
    pub fn band_fraction(&self) -> f64 {
        self.band / 100.0
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.band.is_finite() && self.band > 0.0 && self.band <= 1000.0) {
            return Err(format!(
                "[noise] band = {} is out of range, expected a percentage in (0, 1000]",
                self.band
            ));
        }
        if self.max_boots == Some(0) {
            return Err("[noise] max_boots must be at least 1".into());
        }
        Ok(())
    }
}

/// A level per canary, in TSC cycles per iteration (compute) and per load (memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub compute: f64,
    pub memory: f64,
}

impl Level {
    fn of(readings: &[CanaryRecord]) -> Option<Level> {
        let c: Vec<f64> = readings.iter().map(|r| r.compute).collect();
        let m: Vec<f64> = readings.iter().map(|r| r.memory).collect();
        Some(Level {
            compute: crate::stats::median(&c)?,
            memory: crate::stats::median(&m)?,
        })
    }

    /// Largest relative excess of `self` over `reference` across the two canaries.
    pub fn excess_over(&self, reference: &Level) -> f64 {
        let r = |x: f64, r: f64| if r > 0.0 { x / r - 1.0 } else { 0.0 };
        r(self.compute, reference.compute).max(r(self.memory, reference.memory))
    }

    fn min(a: Level, b: Level) -> Level {
        Level {
            compute: a.compute.min(b.compute),
            memory: a.memory.min(b.memory),
        }
    }
}

/// One boot as the canaries saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootNoise {
    /// 1-based, in the order the boots ran.
    pub boot: u32,
    pub readings: Vec<CanaryRecord>,
    pub level: Level,
    /// Spread of the boot's own readings, `max / min - 1`, per canary.
    pub spread: Level,
    /// The readings spread by more than the band.
    pub drift: bool,
    /// The level is more than the band slower than the run's reference.
    pub slow: bool,
    /// Used for the run's statistics (false: discarded by stable mode).
    pub kept: bool,
    /// Suites after which a reading was outside the band.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_band_after: Vec<String>,
}

impl BootNoise {
    pub fn stable(&self) -> bool {
        !self.drift && !self.slow
    }
}

/// `results.json` → `noise`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// Fraction (0.1 = 10%).
    pub band: f64,
    pub reference: Level,
    pub boots: Vec<BootNoise>,
    /// Some boot drifted or was slow.
    pub unstable: bool,
    /// One line per observation that makes the host unstable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Stable mode was on.
    pub stable_mode: bool,
    /// Boots left out of the statistics by stable mode.
    pub discarded: usize,
    /// Stable mode wanted this many stable boots and found fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_of_stable: Option<String>,
}

impl NoiseReport {
    /// The level of the kept boots (median per canary): the run's host state.
    pub fn kept_level(&self) -> Option<Level> {
        let kept: Vec<&BootNoise> = self.boots.iter().filter(|b| b.kept).collect();
        let c: Vec<f64> = kept.iter().map(|b| b.level.compute).collect();
        let m: Vec<f64> = kept.iter().map(|b| b.level.memory).collect();
        Some(Level {
            compute: crate::stats::median(&c)?,
            memory: crate::stats::median(&m)?,
        })
    }

    /// One line for the run summary.
    pub fn summary(&self) -> String {
        let kept = self.boots.iter().filter(|b| b.kept).count();
        let mut s = if self.unstable {
            format!(
                "unstable host: {} (band {:.0}%)",
                self.evidence.first().cloned().unwrap_or_default(),
                self.band * 100.0
            )
        } else {
            format!(
                "host stable: canaries within {:.0}% (compute {:.2} cycles/iter, memory {:.1} cycles/load)",
                self.band * 100.0,
                self.reference.compute,
                self.reference.memory
            )
        };
        if self.evidence.len() > 1 {
            s.push_str(&format!(
                " (+{} more in results.json noise.evidence)",
                self.evidence.len() - 1
            ));
        }
        if self.stable_mode {
            s.push_str(&format!(
                "; stable mode kept {kept} of {} boots, discarded {}",
                self.boots.len(),
                self.discarded
            ));
        }
        if let Some(m) = &self.short_of_stable {
            s.push_str(&format!("; {m}"));
        }
        s
    }
}

/// Spread of a boot's readings, `max / min - 1` per canary, with the single largest
/// reading left out when there are at least 4: one reading hit by a momentary host
/// preemption (a few µs) flags the suites around it, but is not a change of host state —
/// a state lasts seconds, so it shows in several consecutive readings.
fn spread(readings: &[CanaryRecord]) -> Level {
    let sp = |f: fn(&CanaryRecord) -> f64| {
        let mut v: Vec<f64> = readings.iter().map(f).filter(|x| x.is_finite()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.len() >= 4 {
            v.pop();
        }
        match (v.first(), v.last()) {
            (Some(&lo), Some(&hi)) if lo > 0.0 => hi / lo - 1.0,
            _ => 0.0,
        }
    };
    Level {
        compute: sp(|r| r.compute),
        memory: sp(|r| r.memory),
    }
}

/// Analyse the readings of each boot (in boot order). `kept[i]` says whether boot `i`
/// enters the statistics (all true outside stable mode). `None` when no boot has readings.
pub fn analyse(
    boots: &[Vec<CanaryRecord>],
    kept: &[bool],
    band: f64,
    stable_mode: bool,
) -> Option<NoiseReport> {
    if boots.iter().all(|b| b.is_empty()) {
        return None;
    }
    let mut out: Vec<BootNoise> = boots
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let spread = spread(r);
            BootNoise {
                boot: i as u32 + 1,
                readings: r.clone(),
                level: Level::of(r).unwrap_or_default(),
                spread,
                drift: spread.compute > band || spread.memory > band,
                slow: false,
                kept: kept.get(i).copied().unwrap_or(true),
                out_of_band_after: vec![],
            }
        })
        .collect();
    let reference = reference_level(&out)?;
    let mut evidence = Vec::new();
    for b in &mut out {
        if b.readings.is_empty() {
            continue;
        }
        let excess = b.level.excess_over(&reference);
        b.slow = excess > band;
        for r in &b.readings {
            let lv = Level {
                compute: r.compute,
                memory: r.memory,
            };
            if lv.excess_over(&reference) > band {
                b.out_of_band_after
                    .push(r.after.clone().unwrap_or_else(|| "start".into()));
            }
        }
        if b.drift {
            let (kind, sp, lo, hi) = if b.spread.compute >= b.spread.memory {
                let (lo, hi) = min_max(&b.readings, |r| r.compute);
                ("compute", b.spread.compute, lo, hi)
            } else {
                let (lo, hi) = min_max(&b.readings, |r| r.memory);
                ("memory", b.spread.memory, lo, hi)
            };
            evidence.push(format!(
                "boot {}: the {kind} canary drifted {:.2} → {:.2} cycles (+{:.0}%) during the boot",
                b.boot,
                lo,
                hi,
                sp * 100.0
            ));
        }
        if b.slow {
            evidence.push(format!(
                "boot {}: {:.0}% slower than the fastest boot (compute {:.2} vs {:.2} cycles/iter, memory {:.1} vs {:.1} cycles/load)",
                b.boot,
                excess * 100.0,
                b.level.compute,
                reference.compute,
                b.level.memory,
                reference.memory
            ));
        }
    }
    let unstable_kept = out.iter().any(|b| b.kept && !b.stable());
    let discarded = out.iter().filter(|b| !b.kept).count();
    Some(NoiseReport {
        band,
        reference,
        unstable: if stable_mode {
            unstable_kept
        } else {
            !evidence.is_empty()
        },
        boots: out,
        evidence,
        stable_mode,
        discarded,
        short_of_stable: None,
    })
}

fn min_max(r: &[CanaryRecord], f: fn(&CanaryRecord) -> f64) -> (f64, f64) {
    let lo = r.iter().map(f).fold(f64::INFINITY, f64::min);
    let hi = r.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn reference_level(boots: &[BootNoise]) -> Option<Level> {
    let with: Vec<&BootNoise> = boots.iter().filter(|b| !b.readings.is_empty()).collect();
    let calm: Vec<&&BootNoise> = with.iter().filter(|b| !b.drift).collect();
    let pool: Vec<Level> = if calm.is_empty() {
        with.iter().map(|b| b.level).collect()
    } else {
        calm.iter().map(|b| b.level).collect()
    };
    pool.into_iter().reduce(Level::min)
}

/// Stable mode: indices of the first `want` stable boots, if there are that many.
/// Stability is judged against the reference of all boots so far, so a faster boot
/// arriving later can turn earlier "stable" boots slow.
pub fn select_stable(boots: &[Vec<CanaryRecord>], band: f64, want: usize) -> Option<Vec<usize>> {
    let all = vec![true; boots.len()];
    let r = analyse(boots, &all, band, true)?;
    let stable: Vec<usize> = r
        .boots
        .iter()
        .enumerate()
        .filter(|(_, b)| b.stable())
        .map(|(i, _)| i)
        .take(want)
        .collect();
    (stable.len() >= want).then_some(stable)
}

/// Whether two boots (an `ab` pair) saw the same host: neither drifted and their levels
/// are within `band` of each other. Boots without readings always agree.
pub fn pair_agrees(a: &[CanaryRecord], b: &[CanaryRecord], band: f64) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    let (sa, sb) = (spread(a), spread(b));
    if sa.compute > band || sa.memory > band || sb.compute > band || sb.memory > band {
        return false;
    }
    let (la, lb) = (Level::of(a).unwrap(), Level::of(b).unwrap());
    let lo = Level::min(la, lb);
    la.excess_over(&lo) <= band && lb.excess_over(&lo) <= band
}

/// The two readings that bracket `suite` in one boot: the one taken just before it and
/// the one just after. `None` when the boot has no reading after `suite`.
fn bracket<'a>(readings: &'a [CanaryRecord], suite: &str) -> Option<[&'a CanaryRecord; 2]> {
    let k = readings
        .iter()
        .position(|r| r.after.as_deref() == Some(suite))?;
    Some([&readings[k.saturating_sub(1)], &readings[k]])
}

/// Whether the two boots of an `ab` pair saw one host state while `suite` ran: in each
/// boot the readings before and after the suite are within `band` of each other (the host
/// did not change speed during it), and the two boots' levels over the suite (the faster
/// of its two readings, per canary) are within `band` of each other. Then the host factor
/// cancels in the pair's ratio for that suite's benchmarks, whether the host was in its
/// fast or its slow state. A suite that either boot has no reading after agrees (nothing
/// says otherwise).
pub fn suite_pair_agrees(a: &[CanaryRecord], b: &[CanaryRecord], suite: &str, band: f64) -> bool {
    let (Some(ba), Some(bb)) = (bracket(a, suite), bracket(b, suite)) else {
        return true;
    };
    let level = |[x, y]: [&CanaryRecord; 2]| {
        let (lx, ly) = (
            Level {
                compute: x.compute,
                memory: x.memory,
            },
            Level {
                compute: y.compute,
                memory: y.memory,
            },
        );
        let lo = Level::min(lx, ly);
        let steady = lx.excess_over(&lo) <= band && ly.excess_over(&lo) <= band;
        (lo, steady)
    };
    let ((la, sa), (lb, sb)) = (level(ba), level(bb));
    let lo = Level::min(la, lb);
    sa && sb && la.excess_over(&lo) <= band && lb.excess_over(&lo) <= band
}

/// The suites a boot's readings bracket (in the order they ran).
pub fn suites_read(readings: &[CanaryRecord]) -> Vec<String> {
    readings.iter().filter_map(|r| r.after.clone()).collect()
}

/// The kept boots (indices into a benchmark's `boot_medians`, pool order) whose `suite`
/// was bracketed by a reading outside the band.
pub fn unstable_boots(report: &NoiseReport, suite: &str) -> Vec<usize> {
    report
        .boots
        .iter()
        .filter(|b| b.kept)
        .enumerate()
        .filter(|(_, b)| suite_out_of_band(b, suite, &report.reference, report.band))
        .map(|(i, _)| i)
        .collect()
}

/// The readings just before and just after `suite` in this boot, if either is out of band.
fn suite_out_of_band(b: &BootNoise, suite: &str, reference: &Level, band: f64) -> bool {
    let Some(k) = b
        .readings
        .iter()
        .position(|r| r.after.as_deref() == Some(suite))
    else {
        return false;
    };
    let out = |r: &CanaryRecord| {
        Level {
            compute: r.compute,
            memory: r.memory,
        }
        .excess_over(reference)
            > band
    };
    out(&b.readings[k]) || (k > 0 && out(&b.readings[k - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::BenchEntry;

    fn reading(seq: u32, after: Option<&str>, compute: f64, memory: f64) -> CanaryRecord {
        CanaryRecord {
            seq,
            after: after.map(String::from),
            tsc: seq as u64 * 1000,
            compute,
            memory,
        }
    }

    fn boot(compute: &[f64]) -> Vec<CanaryRecord> {
        let suites = [None, Some("timer"), Some("alu"), Some("kmalloc")];
        compute
            .iter()
            .zip(suites)
            .enumerate()
            .map(|(i, (&c, s))| reading(i as u32, s, c, 50.0))
            .collect()
    }

    #[test]
    fn one_preempted_reading_is_not_drift() {
        let mut b = boot(&[1.5, 1.5, 1.5, 1.5]);
        b[2].memory = 400.0; // a host preemption during one reading
        let r = analyse(&[b.clone()], &[true], 0.1, false).unwrap();
        assert!(!r.boots[0].drift, "{r:?}");
        assert_eq!(r.boots[0].out_of_band_after, vec!["alu"]);
        let mut e = vec![
            entry("alu/dependent-add", "alu"),
            entry("kmalloc/pair/64", "kmalloc"),
        ];
        for x in e.iter_mut() {
            x.unstable_boots = unstable_boots(&r, &x.suite);
        }
        assert_eq!(e[0].unstable_boots, vec![0], "the suite before the reading");
        assert_eq!(e[1].unstable_boots, vec![0], "and the suite after it");
        assert!(pair_agrees(&b, &boot(&[1.5, 1.5, 1.5, 1.5]), 0.1));
    }

    #[test]
    fn steady_host_is_stable() {
        let boots = vec![boot(&[1.5, 1.51, 1.5, 1.52]), boot(&[1.52, 1.5, 1.51, 1.5])];
        let r = analyse(&boots, &[true, true], 0.1, false).unwrap();
        assert!(!r.unstable, "{r:?}");
        assert_eq!(r.reference.compute, 1.505);
        assert!(r.summary().starts_with("host stable"));
    }

    #[test]
    fn slow_boot_and_drift_are_evidence() {
        // Boot 2 runs in the slow state throughout; boot 3 flips to it after `alu`.
        let boots = vec![
            boot(&[1.5, 1.5, 1.5, 1.5]),
            boot(&[3.4, 3.4, 3.3, 3.4]),
            boot(&[1.5, 1.5, 3.4, 3.4]),
        ];
        let r = analyse(&boots, &[true; 3], 0.1, false).unwrap();
        assert!(r.unstable);
        assert!(!r.boots[0].slow && r.boots[1].slow && !r.boots[1].drift);
        assert!(r.boots[2].drift);
        assert_eq!(r.boots[2].out_of_band_after, vec!["alu", "kmalloc"]);
        assert!(
            r.evidence
                .iter()
                .any(|e| e.starts_with("boot 2: 127% slower")),
            "{:?}",
            r.evidence
        );
        assert!(r
            .evidence
            .iter()
            .any(|e| e.contains("boot 3: the compute canary drifted 1.50 → 3.40")));
        assert!(r.summary().starts_with("unstable host: "));

        // Benchmarks of `kmalloc` were measured between two slow readings in boot 3, those
        // of `timer` between fast ones; everything in boot 2 is flagged.
        let mut e = vec![
            entry("kmalloc/pair/64", "kmalloc"),
            entry("timer/rdtsc", "timer"),
        ];
        for x in e.iter_mut() {
            x.unstable_boots = unstable_boots(&r, &x.suite);
        }
        assert_eq!(e[0].unstable_boots, vec![1, 2]);
        assert_eq!(e[1].unstable_boots, vec![1]);
    }

    #[test]
    fn stable_mode_picks_stable_boots_and_pairs_must_agree() {
        let boots = vec![
            boot(&[3.4, 3.4, 3.4, 3.4]),
            boot(&[1.5, 1.5, 1.5, 1.5]),
            boot(&[1.5, 3.4, 3.4, 1.5]),
            boot(&[1.52, 1.5, 1.5, 1.5]),
        ];
        // The first boot looked stable alone; the faster second one makes it slow.
        assert_eq!(select_stable(&boots[..1], 0.1, 1), Some(vec![0]));
        assert_eq!(select_stable(&boots, 0.1, 2), Some(vec![1, 3]));
        assert_eq!(select_stable(&boots, 0.1, 3), None);
        assert!(pair_agrees(&boots[1], &boots[3], 0.1));
        assert!(!pair_agrees(&boots[0], &boots[1], 0.1));
        assert!(
            !pair_agrees(&boots[1], &boots[2], 0.1),
            "a drifting boot spoils its pair"
        );
        // Both slow and steady: the pair still measured one host state.
        assert!(pair_agrees(&boots[0], &boots[0], 0.1));
        assert!(pair_agrees(&[], &boots[0], 0.1));
    }

    #[test]
    fn suite_pairs_agree_on_the_readings_around_that_suite() {
        // Boot a: fast throughout. Boot b: slow from the alu suite on.
        let a = boot(&[1.5, 1.5, 1.5, 1.5]);
        let b = boot(&[1.5, 1.5, 3.4, 3.4]);
        assert!(
            suite_pair_agrees(&a, &b, "timer", 0.1),
            "both fast around timer"
        );
        assert!(
            !suite_pair_agrees(&a, &b, "alu", 0.1),
            "b changed speed during alu"
        );
        assert!(!suite_pair_agrees(&a, &b, "kmalloc", 0.1), "a fast, b slow");
        // Both slow and steady around kmalloc: one host state, the pair compares alike.
        let c = boot(&[1.5, 1.5, 3.4, 3.3]);
        assert!(suite_pair_agrees(&b, &c, "kmalloc", 0.1));
        // A suite neither boot bracketed says nothing against the pair.
        assert!(suite_pair_agrees(&a, &b, "vmalloc", 0.1));
        assert!(suite_pair_agrees(&[], &b, "alu", 0.1));
        assert_eq!(suites_read(&a), vec!["timer", "alu", "kmalloc"]);
    }

    fn entry(name: &str, suite: &str) -> BenchEntry {
        BenchEntry::from(kmbench_protocol::BenchRecord {
            name: name.into(),
            suite: suite.into(),
            status: kmbench_protocol::BenchStatus::Ok,
            unit: "cycles".into(),
            samples: 1,
            min: 1.0,
            median: 1.0,
            p99: 1.0,
            max: 1.0,
            mean: 1.0,
            ns: None,
            params: Default::default(),
            extra: Default::default(),
            message: None,
        })
    }
}

//! The noise guard applied to a run: stable mode's choice of boots while the run goes
//! on, and the noise report attached to `results.json` with each benchmark's flagged
//! boots. What the readings mean is [`crate::noise`]'s; this is where they meet the
//! run's boots and results.
use kmbench_protocol::CanaryRecord;

use crate::noise::{analyse, select_stable, unstable_boots, NoiseConfig};
use crate::results::{BenchEntry, RunResults};
use crate::run::BootData;

/// Mark, per benchmark, the kept boots whose suite was bracketed by a reading outside
/// the band ([`unstable_boots`]).
pub fn flag_benchmarks(entries: &mut [BenchEntry], report: &crate::noise::NoiseReport) {
    for e in entries.iter_mut() {
        e.unstable_boots = unstable_boots(report, &e.suite);
    }
}

/// Stable mode, during a run: mark boots `discarded` unless they are among the first
/// `want` stable ones. Returns whether `want` stable boots exist (when not, nothing is
/// discarded yet).
pub fn mark_stable(boots: &mut [BootData], cfg: &NoiseConfig, want: usize) -> bool {
    let canaries: Vec<Vec<CanaryRecord>> = boots.iter().map(|b| b.canaries.clone()).collect();
    match select_stable(&canaries, cfg.band_fraction(), want) {
        Some(keep) => {
            for (i, b) in boots.iter_mut().enumerate() {
                b.discarded = !keep.contains(&i);
            }
            true
        }
        None => {
            for b in boots.iter_mut() {
                b.discarded = false;
            }
            // Without canaries there is nothing to judge: every boot is as good as any.
            canaries.iter().all(|c| c.is_empty())
        }
    }
}

/// Put the noise report of `boots` into `results` and flag its benchmarks.
pub fn attach(results: &mut RunResults, boots: &[BootData], cfg: &NoiseConfig) {
    let canaries: Vec<Vec<CanaryRecord>> = boots.iter().map(|b| b.canaries.clone()).collect();
    let kept: Vec<bool> = boots.iter().map(|b| !b.discarded).collect();
    let Some(mut report) = analyse(&canaries, &kept, cfg.band_fraction(), cfg.stable) else {
        results.noise = None;
        return;
    };
    if cfg.stable {
        let stable = report.boots.iter().filter(|b| b.stable()).count();
        let want = results.env.boots as usize;
        if report.discarded == 0 && stable < want && boots.len() > want {
            report.short_of_stable = Some(format!(
                "only {stable} of the {want} stable boots wanted after {} boots: all kept",
                boots.len()
            ));
            report.unstable = true;
        }
    }
    flag_benchmarks(&mut results.benchmarks, &report);
    results.noise = Some(report);
}

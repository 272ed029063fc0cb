//! Assembly: the boots' records (and the verdict, once there is one) combined into
//! `results.json` content. Pure functions: nothing here touches the disk.
use kmbench_protocol::BenchRecord;

use super::boot_time;
use super::boots::BootData;
use super::pool;
use super::variants::{self, VariantRun};
use super::verdict::Verdict;
use crate::results::{ExitInfo, RejectedRecord, RunResults};

/// Combine the boots into `results.json` content.
pub fn assemble(
    mut base: RunResults,
    boots: &[BootData],
    verdict: Option<&Verdict>,
    planned_boots: u32,
) -> RunResults {
    // Boots that stable mode discarded stay in records.jsonl and `noise`, not in the pool.
    let kept: Vec<BootData> = boots.iter().filter(|b| !b.discarded).cloned().collect();
    let boots = &kept[..];
    if let Some(h) = boots.iter().find_map(|b| b.hello.clone()) {
        base.env.tsc_hz = h.tsc_hz;
        base.env.tsc_source = h.tsc_source.clone();
        base.env.guest = Some(h);
    }
    base.env.boot_ms = boots.first().and_then(|b| b.boot_ms).unwrap_or(0.0);
    if boots.len() > 1 {
        base.env.extra.insert(
            "boot_ms_per_boot".into(),
            serde_json::json!(boots.iter().map(|b| b.boot_ms).collect::<Vec<_>>()),
        );
    }
    if let Some(first) = boots.first() {
        base.env
            .extra
            .insert("boot_time".into(), boot_time::of_boot(first));
    }
    if boots.len() > 1 {
        base.env.extra.insert(
            "boot_time_per_boot".into(),
            serde_json::json!(boots.iter().map(boot_time::of_boot).collect::<Vec<_>>()),
        );
    }
    let bench_sets: Vec<Vec<BenchRecord>> = boots.iter().map(|b| b.benches.clone()).collect();
    base.benchmarks = pool::pool_boots(&bench_sets);
    base.selftests.clear();
    for b in boots {
        for s in &b.selftests {
            if !base.selftests.contains(s) {
                base.selftests.push(s.clone());
            }
        }
    }
    base.info.clear();
    for b in boots {
        for (k, v) in &b.info {
            base.info.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    base.faults = boots.iter().flat_map(|b| b.faults.clone()).collect();
    base.rejected_records = boots
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            b.bad_records
                .iter()
                .map(move |(error, line)| RejectedRecord {
                    boot: i as u32,
                    error: error.clone(),
                    line: line.clone(),
                })
        })
        .collect();
    match verdict {
        Some(v) => {
            // Complete = every planned boot finished reporting (sent its end record)
            // and nothing it sent was refused.
            base.complete = boots.len() as u32 >= planned_boots
                && boots.iter().all(|b| b.end.is_some())
                && base.rejected_records.is_empty();
            base.exit = Some(ExitInfo {
                status: v.info.status.clone(),
                code: v.info.code,
                message: v.info.message.clone(),
            });
        }
        None => {
            base.complete = false;
            base.exit = None;
        }
    }
    base
}

/// The whole run's results: one variant's [`assemble`]d boots, or, with `[[variants]]`,
/// every variant that booted merged under `<name>@<variant>` ([`variants::merge`]).
pub fn results(base: &RunResults, runs: &[VariantRun], planned_boots: u32) -> RunResults {
    let mut r = records(base, runs, planned_boots);
    r.analysis = crate::report::tlb_analysis::analyze(&r);
    r
}

/// [`results`] before the `analysis` section is derived.
fn records(base: &RunResults, runs: &[VariantRun], planned_boots: u32) -> RunResults {
    let one = |r: &VariantRun| {
        with_backend_command(
            assemble(base.clone(), &r.boots, r.verdict.as_ref(), planned_boots),
            &r.command_line,
            &r.stderr,
        )
    };
    if !runs.iter().any(|r| r.name.is_some()) {
        let mut r = one(&runs[0]);
        crate::run::noise_guard::attach(&mut r, &runs[0].boots, &runs[0].cfg.noise);
        r.env.extra.insert(
            "compare_policy".into(),
            serde_json::to_value(&runs[0].cfg.compare).unwrap_or_default(),
        );
        return r;
    }
    let parts: Vec<(&VariantRun, Option<RunResults>)> = runs
        .iter()
        .map(|r| (r, (!r.boots.is_empty()).then(|| one(r))))
        .collect();
    variants::merge(base.clone(), &parts)
}

/// Record the backend's command line (or description) and its stderr in `env.extra`.
fn with_backend_command(mut r: RunResults, command: &[String], stderr: &str) -> RunResults {
    // The embedded VMM records its description and diagnostics under its own keys.
    let (cmd_key, err_key) = if r.env.backend == "kvm" {
        ("vmm_command", "vmm_stderr")
    } else {
        ("qemu_command", "qemu_stderr")
    };
    r.env
        .extra
        .insert(cmd_key.into(), serde_json::json!(command));
    if !stderr.trim().is_empty() {
        r.env
            .extra
            .insert(err_key.into(), serde_json::json!(stderr));
    }
    r
}

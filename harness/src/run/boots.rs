//! Stage 2 of a run, the boots: every scheduled boot of every variant through the backend,
//! its records streamed to `records.jsonl` and gathered into a [`BootData`], each boot
//! judged as it ends ([`super::verdict::of_boot`]), and `results.json` kept current (a
//! snapshot thread refreshes it while records arrive, and it is rewritten after every boot)
//! so a hang or a SIGKILL of the harness still leaves what had arrived.
use super::progress::Progress;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kmbench_protocol::{BenchRecord, EndRecord, FaultRecord, Hello, Record, SelftestRecord};

use super::assemble::{assemble, results};
use super::output::{RecordsLog, RunFolder};
use super::plan::{note, Plan};
use super::rebuild::BootEndEntry;
use super::signals::INTERRUPTED;
use super::status;
use super::variants::{self, VariantRun};
use super::verdict;
use crate::backend::{run_to_end, BootEnd, Event, LaunchSpec};
use crate::error::{HarnessError, Result};
use crate::results::RunResults;

/// How often `results.json` is refreshed while a boot streams records.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

/// One boot's records.
#[derive(Debug, Default, Clone)]
pub struct BootData {
    pub hello: Option<Hello>,
    pub benches: Vec<BenchRecord>,
    pub selftests: Vec<SelftestRecord>,
    pub info: BTreeMap<String, serde_json::Value>,
    pub faults: Vec<FaultRecord>,
    pub end: Option<EndRecord>,
    /// Noise-guard readings, in order (`crate::noise`).
    pub canaries: Vec<kmbench_protocol::CanaryRecord>,
    /// (error, start of the line) of every refused results-channel line.
    pub bad_records: Vec<(String, String)>,
    pub boot_ms: Option<f64>,
    /// Host-side setup (launch until the vCPU starts), when the backend knows it.
    pub setup_ms: Option<f64>,
    pub records: usize,
    /// Left out of the statistics by stable mode (`crate::noise`).
    pub discarded: bool,
}

impl BootData {
    pub fn push(&mut self, r: Record) {
        self.records += 1;
        match r {
            Record::Hello(h) => self.hello = Some(h),
            Record::Bench(b) => self.benches.push(b),
            Record::Selftest(s) => self.selftests.push(s),
            Record::Info(i) => {
                self.info.insert(i.key, i.value);
            }
            Record::Fault(f) => self.faults.push(f),
            Record::End(e) => self.end = Some(e),
            // Serve mode only (`kmbench::session`); a normal run never sees one.
            Record::Measurement(_) => {}
            Record::Canary(c) => self.canaries.push(c),
        }
    }
}

/// The progress bar on stderr (hidden with `--quiet` or `--verbose`): every scheduled boot.
pub fn progress_bar(plan: &Plan) -> Progress {
    let total = variants::schedule(plan.runs.len(), plan.boots).len() as u64;
    Progress::new(total, plan.quiet, plan.verbose)
}

/// Boot every scheduled (variant, boot) in ABBA order; a variant whose boot fails stops its
/// own remaining boots, an interrupt stops them all. `base` collects the backend's extras.
pub fn run_all(
    plan: &mut Plan,
    folder: &RunFolder,
    records: &mut RecordsLog,
    base: &mut RunResults,
    progress: &mut Progress,
) -> Result<()> {
    let named = plan.runs.iter().any(|r| r.name.is_some());
    for (vi, boot) in variants::schedule(plan.runs.len(), plan.boots) {
        if !plan.runs[vi].active() {
            continue;
        }
        let interrupted = boot_one(plan, vi, boot, named, folder, records, base, progress)?;
        // Keep results.json current after every boot.
        folder.write_results(&results(base, &plan.runs, plan.boots))?;
        if interrupted {
            return Ok(());
        }
    }
    if !named && plan.runs[0].cfg.noise.stable {
        // Stable mode: more boots until `boots` stable ones, at most max_boots.
        let noise = plan.runs[0].cfg.noise.clone();
        let max = noise.max_boots.unwrap_or(plan.boots.saturating_mul(3));
        loop {
            let run = &mut plan.runs[0];
            if !run.active() {
                break;
            }
            let done =
                crate::run::noise_guard::mark_stable(&mut run.boots, &noise, plan.boots as usize);
            if done || run.boots.len() as u32 >= max {
                break;
            }
            let next = run.boots.len() as u32 + 1;
            progress.add_boot();
            let interrupted = boot_one(plan, 0, next, false, folder, records, base, progress)?;
            folder.write_results(&results(base, &plan.runs, plan.boots))?;
            if interrupted {
                break;
            }
        }
    }
    Ok(())
}

/// Boot the (single-variant) plan once more as boot number `boot` and refresh
/// `results.json`; returns whether the run was interrupted. `kmbench ab` drives its two
/// sides' plans with this, alternating.
pub fn boot_single(
    plan: &mut Plan,
    boot: u32,
    folder: &RunFolder,
    records: &mut RecordsLog,
    base: &mut RunResults,
    progress: &mut Progress,
) -> Result<bool> {
    let interrupted = boot_one(plan, 0, boot, false, folder, records, base, progress)?;
    folder.write_results(&results(base, &plan.runs, plan.boots))?;
    Ok(interrupted)
}

/// One boot of variant `vi`; returns whether the run was interrupted.
#[allow(clippy::too_many_arguments)]
fn boot_one(
    plan: &mut Plan,
    vi: usize,
    boot: u32,
    named: bool,
    folder: &RunFolder,
    records: &mut RecordsLog,
    base: &mut RunResults,
    progress: &mut Progress,
) -> Result<bool> {
    let (quiet, verbose, boots, timeout_s) = (plan.quiet, plan.verbose, plan.boots, plan.timeout_s);
    let earlier_boots = plan.runs[vi].boots.clone();
    let filter = plan.filter.clone();
    let filter = filter.as_ref();
    let run: &mut VariantRun = &mut plan.runs[vi];
    let log_path = folder.log_path(&run.log_name(boot, boots));
    let spec = LaunchSpec {
        kernel: plan.kernel.clone(),
        cmdline: run.cmdline.clone(),
        memory_mib: plan.cfg.run.memory_mib,
        vcpus: plan.cfg.run.vcpus,
        pin_vcpus: plan.cfg.run.pin_vcpus,
        machine: plan.cfg.run.machine,
        accel: plan.host.accel,
        cpu_model: plan.cpu_model.clone(),
        host_backing: run.backing,
        log_path: log_path.clone(),
        timeout: Duration::from_secs(timeout_s),
        verbose,
        interrupt: &INTERRUPTED,
        control: None,
    };
    let backend = plan.backend.take().ok_or(HarnessError::BackendLost {
        what: "its backend (an earlier boot)",
    })?;
    if run.boots.is_empty() {
        run.command_line = backend.describe(&spec);
    }
    let variant_name = run.name.clone();
    let n_variants = plan.runs.len();
    progress.start_boot(
        variant_name.as_deref().map(|n| (n, vi, n_variants)),
        boot,
        boots,
    );
    let run: &mut VariantRun = &mut plan.runs[vi];
    // The boot's records, shared with a snapshot thread that refreshes results.json
    // (at most twice a second, only when something new arrived) for runs without
    // variants — so a hang or a SIGKILL of the harness still leaves what had arrived.
    let shared = Mutex::new((0u64, BootData::default()));
    let boot_done = AtomicBool::new(false);
    let mut launched = Instant::now();
    let booted = std::thread::scope(|scope| {
        let snapshotter = (!named).then(|| {
            let (shared, boot_done, earlier_boots, base) =
                (&shared, &boot_done, &earlier_boots, &*base);
            scope.spawn(move || {
                let mut seen = 0;
                loop {
                    // Woken early (unpark) when the boot ends.
                    std::thread::park_timeout(SNAPSHOT_EVERY);
                    if boot_done.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut so_far = earlier_boots.clone();
                    // Read under the lock: exactly the journal lines this data reflects.
                    let lines;
                    {
                        let g = shared.lock().unwrap_or_else(|e| e.into_inner());
                        if g.0 == seen {
                            continue;
                        }
                        seen = g.0;
                        so_far.push(g.1.clone());
                        lines = folder.journal_lines();
                    }
                    let snapshot = assemble(base.clone(), &so_far, None, boots);
                    let _ = folder.write_results_at(&snapshot, lines);
                }
            })
        });
        let launched = &mut launched;
        let records = &mut *records;
        // The one launch path (`RunningGuest`); events are handled here, on this thread.
        let r = run_to_end(backend, spec, |ev| {
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            g.0 += 1;
            let data = &mut g.1;
            match ev {
                Event::Launched => *launched = Instant::now(),
                // --filter: benchmarks outside the pattern are dropped as they arrive (from
                // the journal too, so a rebuild gives the same run).
                Event::Record(Record::Bench(b))
                    if filter.is_some_and(|f| !f.keeps(&b.suite, &b.name)) => {}
                Event::Record(r) => {
                    // Rounded to µs as the journal keeps it, so a rebuild gives the same.
                    let ms = (launched.elapsed().as_secs_f64() * 1e6).round() / 1e3;
                    if data.boot_ms.is_none() {
                        data.boot_ms = Some(ms);
                    }
                    records.append(boot, variant_name.as_deref(), ms, &r);
                    if let Record::Bench(b) = &r {
                        progress.bench(&b.name);
                    }
                    data.push(r);
                }
                Event::BadRecord { line, error } => {
                    records.append_event(
                        boot,
                        variant_name.as_deref(),
                        "rejected",
                        serde_json::json!({ "error": error, "line": line }),
                    );
                    data.bad_records.push((error, line))
                }
            }
        });
        boot_done.store(true, Ordering::Relaxed);
        if let Some(h) = &snapshotter {
            h.thread().unpark();
        }
        r
    });
    let (report, backend) = booted?;
    progress.end_boot();
    let mut data = shared.into_inner().unwrap_or_else(|e| e.into_inner()).1;
    data.setup_ms = backend.setup_ms();
    if let Some(e) = records.take_error() {
        note(
            quiet,
            format!("warning: could not write {}: {e}", records.path().display()),
        );
    }
    let v = verdict::of_boot(&report.end, &data, timeout_s);
    let extra: BTreeMap<String, serde_json::Value> = backend.extra().into_iter().collect();
    plan.backend = Some(backend);
    for (k, v) in &extra {
        base.env.extra.insert(k.clone(), v.clone());
    }
    // The boot's end in the journal, before results.json shows it.
    let end = BootEndEntry {
        verdict: v.clone(),
        command_line: run.command_line.clone(),
        stderr: report.stderr.clone(),
        extra,
    };
    records.append_event(
        boot,
        run.name.as_deref(),
        "boot_end",
        serde_json::to_value(&end).unwrap_or_default(),
    );
    if matches!(report.end, BootEnd::LaunchFailed { .. }) {
        // A stale probe result must not stick: the next run probes again.
        plan.host.forget_cpu_model();
    }
    if !v.ok && !quiet && !verbose {
        progress.suspend(|| print_log_tail(&log_path, 15));
    }
    if !v.ok && named {
        note(
            quiet,
            format!(
                "variant {}: {} (its remaining boots are skipped)",
                run.label(),
                v.info.message
            ),
        );
    }
    run.boots.push(data);
    let interrupted = v.status == status::INTERRUPTED;
    run.verdict = Some(v);
    if !report.stderr.trim().is_empty() {
        run.stderr.push_str(&report.stderr);
    }
    Ok(interrupted)
}

/// The last `lines` lines of a failed boot's guest log, on stderr.
fn print_log_tail(path: &std::path::Path, lines: usize) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return;
    }
    let from = all.len().saturating_sub(lines);
    eprintln!("kmbench: last lines of {}:", path.display());
    for l in &all[from..] {
        eprintln!("  | {l}");
    }
}

//! Stage 4 of a run, the write: the final `results.json`, the charts and `index.html`,
//! the TLB report when the run has TLB sweeps, the summary tables on stdout, and the one-line reason a failed
//! run prints.
use std::io::Write;

use super::assemble::results;
use super::output::RunFolder;
use super::plan::{note, Plan};
use super::verdict::Verdict;
use super::RunOutcome;
use crate::error::Result;
use crate::report::{table, tlb};
use crate::results::RunResults;

/// Write and print the finished run judged by `verdict`.
pub fn finish(
    plan: &Plan,
    folder: &RunFolder,
    base: &RunResults,
    verdict: Verdict,
) -> Result<RunOutcome> {
    let quiet = plan.quiet;
    let results = results(base, &plan.runs, plan.boots);
    let path = folder.write_results(&results)?;

    // Every run leaves its charts (<chart>.svg) and index.html in the run folder.
    let has_tlb = tlb::has_tlb(&results);
    let report = crate::report::write_outputs(&results, &folder.dir)
        .map_err(|e| note(quiet, format!("warning: report not written: {e}")))
        .ok();
    if !quiet {
        let mut out = std::io::stdout().lock();
        let _ = table::print_summary(&results, &mut out);
        if has_tlb {
            let _ = tlb::print_summary(&results, &mut out);
        }
        if let Some(w) = &report {
            let _ = writeln!(
                out,
                "report: {} ({} charts)",
                w.index.display(),
                w.plots.len()
            );
        }
    }
    if let Some(n) = &results.noise {
        // Printed even with --quiet: a verdict from an unstable host needs the warning.
        println!("noise guard: {}", n.summary());
    }
    println!("results: {}", path.display());

    let reason = (!verdict.ok).then(|| {
        if results.benchmarks.is_empty() {
            verdict.info.message.clone()
        } else {
            format!("{} (partial results kept)", verdict.info.message)
        }
    });
    Ok(RunOutcome {
        results,
        dir: folder.dir.clone(),
        status: verdict.status,
        reason,
    })
}

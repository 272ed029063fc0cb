//! `kmbench run [CONFIG]`: build the kernel, boot it (N times), collect records, write results.
//!
//! A run is a pipeline of four stages, each in its own file:
//!
//! 1. **plan** ([`plan`]): config, host facts, backend, kernel, variants — everything that
//!    can fail before a guest boots;
//! 2. **boots** ([`boots`]): each scheduled boot through the backend, records streamed to
//!    `records.jsonl` and kept in a [`BootData`], `results.json` kept current;
//! 3. **verdict** ([`verdict`]): each boot judged as it ends, the run judged over them;
//! 4. **write** ([`write`]): the final `results.json`, tables, TLB report and plots.
//!
//! Around them: [`args`] (the command line), [`status`] (the exit-status table),
//! [`signals`] (Ctrl-C), [`output`] (the run folder: the one place that creates and writes
//! it), [`assemble`] (boots → `results.json` content, pure), [`boot_time`] (where each
//! boot's time went), [`pool`] (pooling boots'
//! statistics), [`variants`] (`[[variants]]`: order, naming, merging) and [`clock`]
//! (run ids and timestamps).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use kmbench_protocol::RESULTS_SCHEMA;

use crate::error::Result;
use crate::results::RunResults;

pub mod args;
pub mod assemble;
pub mod boot_time;
pub mod boots;
pub mod clock;
pub mod filter;
pub mod noise_guard;
pub mod output;
pub mod plan;
pub mod pool;
pub mod progress;
pub mod rebuild;
pub mod signals;
pub mod status;
pub mod variants;
pub mod verdict;
pub mod write;

pub use args::Args;
pub use boots::BootData;
pub use verdict::Verdict;

use output::RunFolder;
use plan::note;
use signals::SignalGuard;

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub results: RunResults,
    pub dir: PathBuf,
    /// Process exit status (see [`status`]).
    pub status: u8,
    /// One line saying why the run failed (None on success).
    pub reason: Option<String>,
}

pub fn main(args: Args) -> std::result::Result<ExitCode, Box<dyn std::error::Error>> {
    let outcome = execute(&args)?;
    if let Some(reason) = &outcome.reason {
        eprintln!("kmbench: {reason}");
    }
    Ok(ExitCode::from(outcome.status))
}

/// The results of a run that has not booted yet (`complete: false`, no exit).
pub fn start_results(plan: &plan::Plan, folder: &RunFolder, started: SystemTime) -> RunResults {
    RunResults {
        schema: RESULTS_SCHEMA.into(),
        complete: false,
        run_id: folder.id.clone(),
        started_at: clock::rfc3339(started),
        env: plan.env.clone(),
        exit: None,
        benchmarks: vec![],
        ..Default::default()
    }
}

/// Open `records.jsonl` and write the journal's header: with it, records.jsonl alone
/// rebuilds results.json.
pub fn open_journal(
    plan: &plan::Plan,
    folder: &RunFolder,
    base: &RunResults,
) -> Result<output::RecordsLog> {
    let mut records = folder.open_records()?;
    records.append_line(&rebuild::Header::new(base, plan.boots, &plan.runs).to_line());
    Ok(records)
}

/// Run a config end to end. Harness errors (nothing could run) are `Err`; guest failures,
/// timeouts and interrupts are an `Ok` outcome with a non-zero status and results written.
pub fn execute(args: &Args) -> Result<RunOutcome> {
    // 1. Plan: fails before the run folder exists.
    let mut plan = plan::plan(args)?;
    if args.stable {
        for r in &mut plan.runs {
            r.cfg.noise.stable = true;
        }
    }
    let started = SystemTime::now();
    let folder = RunFolder::create(args.out.as_deref(), &plan.root, started, &plan.config_path)?;
    let mut base = start_results(&plan, &folder, started);

    if !folder.removed_stale.is_empty() {
        note(
            plan.quiet,
            format!(
                "{} reused: removed {} file(s) of an earlier run ({})",
                folder.dir.display(),
                folder.removed_stale.len(),
                folder.removed_stale.join(", ")
            ),
        );
    }
    let _signals = SignalGuard::install();
    let mut records = open_journal(&plan, &folder, &base)?;
    note(
        plan.quiet,
        format!(
            "run {}: {} accel={} hypervisor={} cpl={} cpu={} boots={} → {}",
            folder.id,
            plan.env.config_file,
            plan.host.accel.label(),
            plan.host.hv.label(),
            plan.env.cpl,
            plan.cpu_model,
            plan.boots,
            folder.dir.display()
        ),
    );

    // 2. Boots. A readable results.json from the start (complete = false, no exit yet),
    // refreshed while records arrive and after every boot, so even a SIGKILL of the
    // harness leaves what had arrived.
    let mut progress = boots::progress_bar(&plan);
    folder.write_results(&assemble::results(&base, &plan.runs, plan.boots))?;
    boots::run_all(&mut plan, &folder, &mut records, &mut base, &mut progress)?;
    progress.finish();

    // 3. Verdict.
    let verdict = verdict::of_run(&plan.runs).expect("at least one boot");

    // 4. Write.
    write::finish(&plan, &folder, &base, verdict)
}

//! `kmbench ab`: both sides of a comparison in one job, boots interleaved, the verdict
//! from paired per-boot data. The recommended CI workflow (docs/ci.md).
//!
//! ```text
//! kmbench ab [CONFIG] [--base X] [--new Y] [--new-config C] [--new-backend B]
//!            [--boots N] [--out DIR] [--format text|md|json]
//! ```
//!
//! * A **side** is a kernel ([`side::KernelSource`]: a git revision built in a temporary
//!   worktree, a kernel ELF path, or the working tree — the default), a config (default
//!   CONFIG) and a backend (default auto). `--new-*` override the new side only.
//! * **Order.** Pair `i` boots A then B for even `i`, B then A for odd `i` (ABBA), so a
//!   slow drift of the host and any first/second-in-pair effect hit both sides alike.
//! * **Pairs and the noise guard.** Per suite, a pair whose two boots' canaries around
//!   that suite disagree (one saw a slower host, or the host changed speed during the
//!   suite) is left out of that suite's verdicts and counted
//!   (`noise::suite_pair_agrees`). With `--stable` (or `[noise] stable = true`), pairs are
//!   added until every suite has N agreeing pairs, at most `max_boots / 2` pairs
//!   (default 3 N).
//! * **Verdict** from the agreeing pairs: per benchmark a Wilcoxon signed-rank test on the
//!   per-pair log ratios (`compare::verdict`), Bonferroni across benchmarks, the new
//!   config's `[compare]` policy.
//! * **Output**: `DIR/base/` and `DIR/new/` (each a normal run folder with results.json
//!   and records.jsonl), `DIR/kernels/`, and `DIR/compare.json` (`kmbench.compare/1`).
//! * **Exit status** as `compare`: 0 no regression, 1 regression (or a broken new side),
//!   2 error (build or harness failure, broken base, environment differences that were
//!   not asked for).
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use crate::backend::BackendChoice;
use crate::compare::{self, Format};
use crate::error::{HarnessError, Result};
use crate::results::RunResults;
use crate::run::{self, assemble, boots, output::RunFolder, plan::Plan};

pub mod side;

use side::{KernelSource, Side};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Config of both sides [default: configs/ci.toml in the workspace root].
    pub config: Option<PathBuf>,
    /// Base kernel: a git revision, a kernel ELF path, or `worktree` [default: the working tree].
    #[arg(long, value_name = "X")]
    pub base: Option<String>,
    /// New kernel: a git revision, a kernel ELF path, or `worktree` [default: the working tree].
    #[arg(long, value_name = "Y")]
    pub new: Option<String>,
    /// Config of the new side only.
    #[arg(long, value_name = "C")]
    pub new_config: Option<PathBuf>,
    /// Backend of the new side only (auto | kvm | qemu).
    #[arg(long, value_enum, value_name = "B")]
    pub new_backend: Option<BackendChoice>,
    /// Backend of both sides (unless --new-backend) [default: auto].
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Pairs of boots (N boots per side) [default: the config's [run] boots, at least 20].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub boots: Option<u32>,
    /// Output folder [default: results/ab-<time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format of the verdict on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Cargo features of the base side's kernel (e.g. `ab-test-cost`), comma-separated.
    #[arg(long, value_name = "F", value_delimiter = ',')]
    pub base_features: Vec<String>,
    /// Cargo features of the new side's kernel, comma-separated.
    #[arg(long, value_name = "F", value_delimiter = ',')]
    pub new_features: Vec<String>,
    /// Add pairs until N of them agree by the canaries (bounded; also `[noise] stable`).
    #[arg(long)]
    pub stable: bool,
    /// Compare even when the environments differ in ways not asked for.
    #[arg(long)]
    pub force: bool,
    /// Accelerator (auto | kvm | tcg), both sides.
    #[arg(long, value_enum)]
    pub accel: Option<crate::config::Accel>,
    /// Kill a guest that runs longer than SECS per boot.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// No ANSI colours.
    /// Also write the verdict as an HTML page (the page `kmbench compare --html` writes).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[arg(long)]
    pub no_color: bool,
    /// Progress notes on stderr off.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Default pairs when neither --boots nor the config ask for more: 40. The signed-rank
/// test needs at least 11 pairs all one way to reach Bonferroni's level over ~60
/// benchmarks (2/2^11 < 0.05/60). Power decides the rest: on this kind of host one
/// pair's log ratio of `kmalloc/alloc_n/8` spreads by ~6.5% (boots land in a few speed
/// modes even within the canaries' band), so a 5% slowdown needs ~40 pairs to clear
/// Bonferroni's level at 90% power (20 pairs detected it in 6 of 10 jobs). A CI-sized
/// pair boots in ~0.3 s.
pub const DEFAULT_PAIRS: u32 = 40;

/// Fields a deliberate `--new-config` may change.
const CONFIG_FIELDS: [&str; 8] = [
    "config_hash",
    "mm_debug",
    "flush_mode",
    "direct_map_page",
    "guest_memory_mib",
    "host_backing",
    "machine",
    "cpl",
];

pub fn main(args: Args) -> std::result::Result<ExitCode, Box<dyn std::error::Error>> {
    match execute(&args, &mut std::io::stdout().lock()) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("kmbench ab: error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn note(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        eprintln!("kmbench ab: {}", msg.as_ref());
    }
}

/// One side during the job.
struct Running {
    plan: Plan,
    folder: RunFolder,
    records: run::output::RecordsLog,
    base: RunResults,
}

impl Running {
    fn results(&self) -> RunResults {
        assemble::results(&self.base, &self.plan.runs, self.plan.boots)
    }

    fn active(&self) -> bool {
        self.plan.runs[0].active()
    }
}

fn start(side: &Side, args: &Args, kernel: PathBuf, dir: PathBuf, pairs: u32) -> Result<Running> {
    let run_args = run::Args {
        config: Some(side.config.clone()),
        accel: args.accel,
        out: Some(dir.clone()),
        quiet: true,
        timeout: args.timeout,
        boots: Some(pairs),
        backend: side.backend,
        kernel: Some(kernel),
        ..run::Args::default()
    };
    let plan = run::plan::plan(&run_args)?;
    if plan.runs.len() != 1 || plan.runs[0].name.is_some() {
        return Err(HarnessError::AbSideHasVariants {
            config: side.config.clone(),
        });
    }
    let started = SystemTime::now();
    let folder = RunFolder::create(Some(&dir), &plan.root, started, &plan.config_path)?;
    let base = run::start_results(&plan, &folder, started);
    let records = run::open_journal(&plan, &folder, &base)?;
    Ok(Running {
        plan,
        folder,
        records,
        base,
    })
}

/// The job; returns the exit status.
pub fn execute(args: &Args, out: &mut impl Write) -> Result<u8> {
    let t0 = Instant::now();
    let root = crate::build::workspace_root()?;
    let config = args
        .config
        .clone()
        .unwrap_or_else(|| root.join("configs/ci.toml"));
    let base_cfg = crate::config::load(&config)?;
    let new_config = args.new_config.clone().unwrap_or_else(|| config.clone());
    let new_cfg = crate::config::load(&new_config)?;
    let pairs = args
        .boots
        .unwrap_or_else(|| base_cfg.config.run.boots.max(DEFAULT_PAIRS));
    let stable = args.stable || base_cfg.config.noise.stable;
    let band = base_cfg.config.noise.band_fraction();
    let max_pairs = if stable {
        base_cfg
            .config
            .noise
            .max_boots
            .map(|m| (m / 2).max(pairs))
            .unwrap_or(pairs.saturating_mul(3))
    } else {
        pairs
    };
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => root.join("results").join(format!(
            "ab-{}",
            run::clock::run_id(SystemTime::now(), Path::new("job"))
        )),
    };
    let kernels = dir.join("kernels");
    std::fs::create_dir_all(&kernels)
        .map_err(|e| HarnessError::io(format!("creating {}", kernels.display()), e))?;

    let sides = [
        Side {
            name: "base",
            kernel: KernelSource::parse(args.base.as_deref()),
            features: args.base_features.clone(),
            config: config.clone(),
            backend: args.backend,
        },
        Side {
            name: "new",
            kernel: KernelSource::parse(args.new.as_deref()),
            features: args.new_features.clone(),
            config: new_config.clone(),
            backend: args.new_backend.or(args.backend),
        },
    ];
    // Kernels: built once per distinct source (HEAD vs HEAD builds once).
    let mut elfs: Vec<PathBuf> = Vec::new();
    for (i, s) in sides.iter().enumerate() {
        let dest = kernels.join(format!("{}.elf", s.name));
        let same_as_base = i == 1 && s.kernel == sides[0].kernel && s.features == sides[0].features;
        if same_as_base && !matches!(s.kernel, KernelSource::Elf(_)) {
            std::fs::copy(&elfs[0], &dest)
                .map_err(|e| HarnessError::io(format!("copying to {}", dest.display()), e))?;
            elfs.push(dest);
        } else {
            note(
                args.quiet,
                format!("{} kernel: {}", s.name, s.kernel.describe()),
            );
            elfs.push(side::kernel_for(s, &root, &dest, args.quiet)?);
        }
    }
    let built_s = t0.elapsed().as_secs_f64();
    let mut a = start(&sides[0], args, elfs[0].clone(), dir.join("base"), pairs)?;
    let mut b = start(&sides[1], args, elfs[1].clone(), dir.join("new"), pairs)?;
    note(
        args.quiet,
        format!(
            "{} pairs{} ABBA, base {} ({}), new {} ({}) → {}",
            pairs,
            if stable {
                format!(" (stable: up to {max_pairs})")
            } else {
                String::new()
            },
            sides[0].kernel.describe(),
            a.base.env.backend,
            sides[1].kernel.describe(),
            b.base.env.backend,
            dir.display()
        ),
    );

    let _signals = run::signals::SignalGuard::install();
    let mut progress = run::progress::Progress::new(u64::from(max_pairs) * 2, true, false);
    // Pairs whose boots agree as a whole (reported), and per suite the pairs whose
    // canaries agree around that suite (the verdict's data).
    let mut agreeing: Vec<(usize, usize)> = Vec::new();
    let mut suite_pairs: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    let mut disagreeing = 0usize;
    let mut pair = 0u32;
    'job: while pair < max_pairs {
        let order: [&mut Running; 2] = if pair.is_multiple_of(2) {
            [&mut a, &mut b]
        } else {
            [&mut b, &mut a]
        };
        for s in order {
            if !s.active() {
                break 'job;
            }
            let interrupted = boots::boot_single(
                &mut s.plan,
                pair + 1,
                &s.folder,
                &mut s.records,
                &mut s.base,
                &mut progress,
            )?;
            if interrupted || !s.active() {
                break 'job;
            }
        }
        let (ca, cb) = (
            &a.plan.runs[0].boots.last().expect("booted").canaries,
            &b.plan.runs[0].boots.last().expect("booted").canaries,
        );
        let p = pair as usize;
        let suites: std::collections::BTreeSet<String> = crate::noise::suites_read(ca)
            .into_iter()
            .chain(crate::noise::suites_read(cb))
            .collect();
        let mut left_out: Vec<String> = Vec::new();
        for suite in suites {
            let agrees = crate::noise::suite_pair_agrees(ca, cb, &suite, band);
            let kept = suite_pairs.entry(suite.clone()).or_default();
            if agrees {
                kept.push((p, p));
            } else {
                left_out.push(suite);
            }
        }
        if crate::noise::pair_agrees(ca, cb, band) {
            agreeing.push((p, p));
        } else {
            disagreeing += 1;
        }
        if !left_out.is_empty() {
            note(
                args.quiet,
                format!(
                    "pair {}: the canaries disagree around {} (host changed speed): left out there",
                    pair + 1,
                    left_out.join(", ")
                ),
            );
        }
        pair += 1;
        // Stable mode: every suite needs `pairs` agreeing pairs (the verdict tests each
        // suite's benchmarks on its own agreeing pairs).
        let fewest = suite_pairs
            .values()
            .map(Vec::len)
            .min()
            .unwrap_or(agreeing.len());
        if pair >= pairs && (!stable || fewest >= pairs as usize) {
            break;
        }
    }
    // A side still healthy when the other broke (or after extra stable pairs) is complete
    // with the boots it did: its results are not what broke.
    for s in [&mut a, &mut b] {
        if s.active() {
            s.plan.boots = s.plan.runs[0].boots.len() as u32;
        }
    }
    let (ra, rb) = (a.results(), b.results());
    a.folder.write_results(&ra)?;
    b.folder.write_results(&rb)?;

    let mut allowed: Vec<&str> = Vec::new();
    if args.new_config.is_some() {
        allowed.extend(CONFIG_FIELDS);
    }
    if args.new_backend.is_some() {
        allowed.push("backend");
    }
    let mut err = std::io::stderr().lock();
    if let Some(code) = compare::refusal(&ra, &rb, true, args.force, &allowed, &mut err)
        .map_err(|e| HarnessError::io("writing to stderr", e))?
    {
        return Ok(code);
    }
    let opts = compare::Options {
        policy: new_cfg.config.compare.clone(),
        pairs: Some((0..pair as usize).map(|i| (i, i)).collect()),
        suite_pairs: suite_pairs.clone(),
    };
    let mut cmp = compare::compare_runs(
        &ra,
        &a.folder.dir.join("results.json"),
        &rb,
        &b.folder.dir.join("results.json"),
        &opts,
    );
    // Differences the sides were given on purpose (--new-config, --new-backend) are
    // shown, not "forced".
    cmp.forced = args.force && !cmp.env_differences.is_empty();
    let wall = t0.elapsed().as_secs_f64();
    // The fewest pairs any suite's verdicts used.
    let fewest_used = suite_pairs
        .values()
        .map(Vec::len)
        .min()
        .unwrap_or(pair as usize);
    cmp.ab = Some(serde_json::json!({
        "order": "ABBA",
        "pairs_booted": pair,
        "pairs_used": fewest_used,
        "pairs_agreeing_whole_boot": agreeing.len(),
        "pairs_disagreeing_whole_boot": disagreeing,
        "pairs_used_by_suite": suite_pairs.iter().map(|(k, v)| (k.clone(), v.len())).collect::<BTreeMap<_, _>>(),
        "stable": stable,
        "band": band,
        "base": { "kernel": sides[0].kernel.describe(), "features": sides[0].features, "config": sides[0].config, "backend": ra.env.backend },
        "new": { "kernel": sides[1].kernel.describe(), "features": sides[1].features, "config": sides[1].config, "backend": rb.env.backend },
        "wall_s": (wall * 10.0).round() / 10.0,
        "build_s": (built_s * 10.0).round() / 10.0,
        "boots_s": ((wall - built_s) * 10.0).round() / 10.0,
    }));
    let json = serde_json::to_vec_pretty(&cmp).map_err(|source| HarnessError::Serialise {
        what: "compare.json",
        source,
    })?;
    run::output::write_atomic(&dir.join("compare.json"), &json)?;
    if let Some(p) = &args.html {
        run::output::write_atomic(p, crate::report::html::compare_page(&cmp).as_bytes())?;
    }
    compare::write(&cmp, args.format, compare::use_color(args.no_color), out)
        .map_err(|e| HarnessError::io("writing the verdict", e))?;
    compare::report_to_stderr(&cmp, args.format, &mut err)
        .map_err(|e| HarnessError::io("writing to stderr", e))?;
    note(
        args.quiet,
        format!(
            "{} pairs booted; per suite at least {} used ({} disagreed somewhere, left out there); {:.1} s ({:.1} s kernels, {:.1} s boots); {}",
            pair,
            fewest_used,
            pair as usize - agreeing.len(),
            wall,
            built_s,
            wall - built_s,
            dir.join("compare.json").display()
        ),
    );
    Ok(if cmp.has_regression() { 1 } else { 0 })
}

//! Stage 1 of a run, the plan: load the config, resolve the host facts (accelerator,
//! hypervisor kind, CPL, CPU model, huge pages), choose the backend, build the kernel and
//! expand `[[variants]]` into one [`VariantRun`] each, with its guest plan and command
//! line. Everything that can fail before a guest boots fails here, before the run folder
//! exists.
use std::path::{Path, PathBuf};

use kmbench_protocol::CMDLINE_PLAN_KEY;

use super::args::Args;
use super::variants::VariantRun;
use crate::backend::select::{Request, Selection};
use crate::backend::Backend;
use crate::build;
use crate::config::{self, Config, CplSetting, HostBacking};
use crate::error::{HarnessError, Result};
use crate::host::{self, Hypervisor};
use crate::results::Env;

/// Everything the boots need, resolved once.
pub struct Plan {
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub cfg: Config,
    /// Host facts and the backend choice ([`Selection::resolve`]).
    pub host: Selection,
    /// Taken by each boot ([`crate::backend::run_to_end`]) and put back when it ends.
    pub backend: Option<Box<dyn Backend + Send>>,
    /// QEMU's `-cpu` (or the VMM's CPUID description).
    pub cpu_model: String,
    pub kernel: PathBuf,
    pub timeout_s: u64,
    pub boots: u32,
    /// One per `[[variants]]` entry (or one unnamed run without variants).
    pub runs: Vec<VariantRun>,
    /// The run's environment (without the guest's facts, which arrive with its records).
    pub env: Env,
    pub quiet: bool,
    pub verbose: bool,
    /// `--filter`: which benchmark records are kept.
    pub filter: Option<super::filter::Filter>,
}

/// Print a progress note on stderr unless `quiet`.
pub fn note(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        eprintln!("kmbench: {}", msg.as_ref());
    }
}

/// One variant's run state: its CPL, guest plan and command line, or why it is skipped.
fn variant_run(
    name: Option<String>,
    vcfg: Config,
    cli_cpl: Option<CplSetting>,
    hv: Hypervisor,
) -> Result<VariantRun> {
    let (vcpl, vsrc) = match cli_cpl {
        Some(c) => host::resolve_cpl(c, "cli", hv),
        None => host::resolve_cpl(vcfg.guest.cpl, "config", hv),
    };
    let plan = vcfg.plan(vcpl);
    let plan_json = serde_json::to_string(&plan).map_err(|source| HarnessError::Serialise {
        what: "plan",
        source,
    })?;
    // Refused here, before any boot, rather than by the backend.
    if plan_json.len() > kmbench_protocol::PLAN_MAX {
        return Err(HarnessError::PlanTooLarge {
            len: plan_json.len(),
            max: kmbench_protocol::PLAN_MAX,
        });
    }
    let skipped = (name.is_some() && vcfg.run.host_backing == HostBacking::Hugetlbfs)
        .then(|| {
            host::check_huge_pages(vcfg.run.memory_mib)
                .err()
                .map(|e| e.to_string())
        })
        .flatten();
    Ok(VariantRun {
        name,
        cpl: vcpl,
        cpl_source: vsrc,
        cmdline: format!("{CMDLINE_PLAN_KEY}{plan_json}"),
        backing: vcfg.run.host_backing,
        plan,
        cfg: vcfg,
        skipped,
        boots: vec![],
        verdict: None,
        command_line: vec![],
        stderr: String::new(),
    })
}

/// Resolve a run's plan from its arguments (stage 1 of [`super::execute`]).
pub fn plan(args: &Args) -> Result<Plan> {
    let quiet = args.quiet;
    let root = build::workspace_root()?;
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| root.join("configs/default.toml"));
    let loaded = config::load(&config_path)?;
    let mut cfg = loaded.config;
    let filter = match &args.filter {
        Some(f) => {
            let f = super::filter::Filter::parse(f)?;
            cfg.suites = f.suites(&cfg.suites)?;
            Some(f)
        }
        None => None,
    };
    if let Some(n) = args.vcpus {
        // clap checks the flag; this also covers callers that build `Args` themselves.
        if !crate::config::VCPUS.contains(n.into()) {
            return Err(HarnessError::OutOfRange {
                flag: "--vcpus",
                value: n.into(),
                expected: crate::config::VCPUS.to_string(),
            });
        }
        cfg.run.vcpus = n;
    }
    // fault_cpu against the vCPUs the run really has (the file alone was checked at load).
    cfg.plan(3).check().map_err(|e| {
        HarnessError::Config(crate::config::ConfigError {
            file: config_path.clone(),
            message: format!("{e} (with vcpus = {})", cfg.run.vcpus),
        })
    })?;

    // Host facts and the backend: the embedded VMM needs KVM and boots microvm-style only.
    let (cpl_setting, cpl_from) = match args.cpl {
        Some(c) => (c, "cli"),
        None => (cfg.guest.cpl, "config"),
    };
    let sel = Selection::resolve(
        &Request {
            accel: args.accel.unwrap_or(cfg.run.accel),
            cpl: cpl_setting,
            cpl_from,
            backend: args.backend.unwrap_or_default(),
            backend_flag: "--backend kvm",
            machine: cfg.run.machine,
            root: &root,
        },
        &mut |m| note(quiet, m),
    )?;
    let hv = sel.hv;

    let backing = cfg.run.host_backing;
    if backing == HostBacking::Hugetlbfs && cfg.variants.is_empty() {
        host::check_huge_pages(cfg.run.memory_mib)?;
    }
    let thp = host::thp_mode("enabled");
    let wants_thp = backing == HostBacking::Thp
        || cfg
            .variants
            .iter()
            .any(|v| v.host_backing == Some(HostBacking::Thp));
    if wants_thp && thp == "never" {
        note(quiet, "warning: host_backing = \"thp\" but host THP is disabled (transparent_hugepage/enabled = never)");
    }

    let kernel = match &args.kernel {
        Some(k) if k.is_file() => k.clone(),
        Some(k) => return Err(crate::error::HarnessError::KernelOverrideMissing(k.clone())),
        None => build::kernel(&root, args.no_build, quiet, args.verbose)?,
    };

    let cpu_model = sel.cpu_model(quiet)?;

    let timeout_s = args.timeout.unwrap_or(cfg.run.timeout_s);
    let boots = args.boots.unwrap_or(cfg.run.boots);
    // clap checks the flags; this also covers callers that build `Args` themselves.
    if !crate::config::TIMEOUT_S.contains(timeout_s) {
        return Err(HarnessError::OutOfRange {
            flag: "--timeout",
            value: timeout_s,
            expected: crate::config::TIMEOUT_S.to_string(),
        });
    }
    if !crate::config::BOOTS.contains(boots.into()) {
        return Err(HarnessError::OutOfRange {
            flag: "--boots",
            value: boots.into(),
            expected: crate::config::BOOTS.to_string(),
        });
    }

    let runs: Vec<VariantRun> = if cfg.variants.is_empty() {
        vec![variant_run(None, cfg.clone(), args.cpl, hv)?]
    } else {
        cfg.variants
            .iter()
            .map(|v| variant_run(Some(v.name.clone()), cfg.with_variant(v), args.cpl, hv))
            .collect::<Result<Vec<_>>>()?
    };
    for r in &runs {
        if let Some(why) = &r.skipped {
            // Printed even with --quiet: the run is missing part of what was asked.
            eprintln!("kmbench: variant {} skipped: {why}", r.label());
        }
    }
    if runs.iter().all(|r| r.skipped.is_some()) {
        return Err(HarnessError::AllVariantsSkipped);
    }

    let backend = sel.backend()?;
    let config_file = config_path
        .canonicalize()
        .ok()
        .and_then(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| config_path.clone());

    let mut env = Env {
        accel: sel.accel.label().into(),
        hypervisor: hv.label().into(),
        backend: backend.name().into(),
        cpl: sel.cpl,
        cpl_source: sel.cpl_source.clone(),
        cpu_model: cpu_model.clone(),
        machine: cfg.run.machine.label().into(),
        host_cpu: sel.host_cpu.clone(),
        host_kernel: sel.host_kernel.clone(),
        qemu_version: sel.qemu_version.clone(),
        guest_memory_mib: cfg.run.memory_mib,
        kmbench_commit: host::git_commit(&root),
        config_file: config_file.display().to_string(),
        config_hash: loaded.hash,
        direct_map_page: cfg.guest.direct_map_page.label().into(),
        host_backing: backing.label().into(),
        mm_debug: cfg.guest.mm_debug,
        flush_mode: cfg.guest.flush_mode.label().into(),
        boots,
        vcpus: cfg.run.vcpus,
        ..Env::default()
    };
    env.extra.insert(
        "host_topology".into(),
        serde_json::to_value(crate::topology::host()).unwrap_or_default(),
    );
    if cfg.run.pin_vcpus {
        env.extra.insert(
            "vcpu_pinning".into(),
            serde_json::json!(backend.name() == "kvm"),
        );
    }
    env.extra.insert("host_thp".into(), serde_json::json!(thp));
    env.extra.insert(
        "host_shmem_thp".into(),
        serde_json::json!(host::thp_mode("shmem_enabled")),
    );
    env.extra
        .insert("timeout_s".into(), serde_json::json!(timeout_s));
    env.extra.insert(
        "kernel".into(),
        serde_json::json!(kernel.display().to_string()),
    );
    env.extra.insert(
        "plan".into(),
        serde_json::to_value(&runs[0].plan).unwrap_or_default(),
    );

    Ok(Plan {
        root,
        config_path,
        cfg,
        host: sel,
        backend: Some(backend),
        cpu_model,
        kernel,
        timeout_s,
        boots,
        runs,
        env,
        quiet,
        verbose: args.verbose,
        filter,
    })
}

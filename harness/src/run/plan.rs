//! Stage 1 of a run, the plan: load the config, resolve the host facts (accelerator,
//! hypervisor kind, CPL, CPU model, huge pages), choose the backend, build the kernel and
//! expand `[[variants]]` into one [`VariantRun`] each, with its guest plan and command
//! line. Everything that can fail before a guest boots fails here, before the run folder
//! exists.
use std::path::{Path, PathBuf};

use kmbench_protocol::CMDLINE_PLAN_KEY;

use super::args::Args;
use super::variants::VariantRun;
use crate::backend::qemu::{self, Qemu};
use crate::backend::vmm::{self as kvm_vmm, KvmVmm};
use crate::backend::{AccelKind, Backend, BackendChoice};
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
    pub accel: AccelKind,
    pub hv: Hypervisor,
    /// The embedded VMM boots the guests (else QEMU).
    pub use_vmm: bool,
    pub backend: Box<dyn Backend>,
    /// QEMU's `-cpu` (or the VMM's CPUID description).
    pub cpu_model: String,
    /// Where QEMU's CPU-model probe result is cached, and its key.
    pub probe_cache: PathBuf,
    pub probe_key: String,
    pub kernel: PathBuf,
    pub timeout_s: u64,
    pub boots: u32,
    /// One per `[[variants]]` entry (or one unnamed run without variants).
    pub runs: Vec<VariantRun>,
    /// The run's environment (without the guest's facts, which arrive with its records).
    pub env: Env,
    pub quiet: bool,
    pub verbose: bool,
}

/// Print a progress note on stderr unless `quiet`.
pub fn note(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        eprintln!("kmbench: {}", msg.as_ref());
    }
}

/// Whether the embedded VMM boots this run: `--backend kvm` insists (and fails where it
/// cannot), `auto` takes it when KVM, microvm and /dev/kvm allow.
fn choose_vmm(choice: BackendChoice, accel: AccelKind, machine: config::Machine) -> Result<bool> {
    Ok(match choice {
        BackendChoice::Qemu => false,
        BackendChoice::Kvm => {
            if accel != AccelKind::Kvm {
                return Err(HarnessError::Other(
                    "--backend kvm needs KVM (the embedded VMM cannot emulate): use --backend qemu for TCG".into(),
                ));
            }
            if machine != config::Machine::Microvm {
                return Err(HarnessError::Other(format!(
                    "--backend kvm boots microvm-style only, not machine = \"{}\": use --backend qemu",
                    machine.label()
                )));
            }
            kvm_vmm::available().map_err(HarnessError::KvmUnavailable)?;
            true
        }
        BackendChoice::Auto => {
            accel == AccelKind::Kvm
                && machine == config::Machine::Microvm
                && kvm_vmm::available().is_ok()
        }
    })
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
    let plan_json = serde_json::to_string(&plan)
        .map_err(|e| HarnessError::Other(format!("serialising plan: {e}")))?;
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
    let cfg = loaded.config;

    // Accelerator and hypervisor kind.
    let cpuinfo = host::cpuinfo();
    let (accel, hv) =
        host::resolve_accel(args.accel.unwrap_or(cfg.run.accel), &cpuinfo, &mut |m| {
            note(quiet, m)
        })?;
    let (cpl_setting, cpl_from) = match args.cpl {
        Some(c) => (c, "cli"),
        None => (cfg.guest.cpl, "config"),
    };
    let (cpl, cpl_source) = host::resolve_cpl(cpl_setting, cpl_from, hv);
    if let Some(w) = host::emulated_cpl0_warning(hv, cpl) {
        note(quiet, w);
    }

    // Backend: the embedded VMM needs KVM and boots microvm-style only.
    let use_vmm = choose_vmm(args.backend.unwrap_or_default(), accel, cfg.run.machine)?;
    let qemu_bin = match host::find_qemu() {
        Some(q) => q,
        None if use_vmm => PathBuf::from("qemu-system-x86_64"),
        None => return Err(HarnessError::QemuNotFound),
    };
    let qemu_version = if use_vmm {
        "none (embedded VMM)".to_string()
    } else {
        host::qemu_version(&qemu_bin)
    };
    let host_cpu = host::cpu_model_name(&cpuinfo);
    let host_kernel = host::host_kernel();

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

    let probe_cache = build::kernel_path(&root)
        .ancestors()
        .nth(3)
        .map(|t| t.join("kmbench-cpu-probe.json"))
        .unwrap_or_else(|| root.join("target/kmbench-cpu-probe.json"));
    let probe_key = qemu::probe_key(&qemu_version, &host_kernel, &host_cpu, cfg.run.machine);
    let cpu_model = match accel {
        _ if use_vmm => "host,-arch-capabilities (KVM_GET_SUPPORTED_CPUID)".to_string(),
        AccelKind::Tcg => "max".to_string(),
        AccelKind::Kvm => {
            qemu::probe_cpu_model(&qemu_bin, cfg.run.machine, &probe_cache, &probe_key, quiet)?.0
        }
    };

    let timeout_s = args.timeout.unwrap_or(cfg.run.timeout_s);
    let boots = args.boots.unwrap_or(cfg.run.boots);
    // clap checks the flags; this also covers callers that build `Args` themselves.
    if !crate::config::TIMEOUT_S.contains(timeout_s) {
        return Err(HarnessError::Other(format!(
            "--timeout {timeout_s} is out of range: expected {}",
            crate::config::TIMEOUT_S
        )));
    }
    if !crate::config::BOOTS.contains(boots.into()) {
        return Err(HarnessError::Other(format!(
            "--boots {boots} is out of range: expected {}",
            crate::config::BOOTS
        )));
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
        return Err(HarnessError::Other(
            "every variant was skipped (see above)".into(),
        ));
    }

    let backend: Box<dyn Backend> = if use_vmm {
        Box::new(KvmVmm::new())
    } else {
        Box::new(Qemu::new(qemu_bin)?)
    };
    let config_file = config_path
        .canonicalize()
        .ok()
        .and_then(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| config_path.clone());

    let mut env = Env {
        accel: accel.label().into(),
        hypervisor: hv.label().into(),
        backend: backend.name().into(),
        cpl,
        cpl_source,
        cpu_model: cpu_model.clone(),
        machine: cfg.run.machine.label().into(),
        host_cpu,
        host_kernel,
        qemu_version,
        guest_memory_mib: cfg.run.memory_mib,
        kmbench_commit: host::git_commit(&root),
        config_file: config_file.display().to_string(),
        config_hash: loaded.hash,
        direct_map_page: cfg.guest.direct_map_page.label().into(),
        host_backing: backing.label().into(),
        mm_debug: cfg.guest.mm_debug,
        flush_mode: cfg.guest.flush_mode.label().into(),
        boots,
        ..Env::default()
    };
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
        accel,
        hv,
        use_vmm,
        backend,
        cpu_model,
        probe_cache,
        probe_key,
        kernel,
        timeout_s,
        boots,
        runs,
        env,
        quiet,
        verbose: args.verbose,
    })
}

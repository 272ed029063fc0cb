//! Host facts and the backend choice, resolved once per run or session: the accelerator
//! and hypervisor kind, the CPL, whether the embedded VMM or QEMU boots the guest, the QEMU
//! binary and version, the host CPU and kernel, and the CPU model (QEMU's `-cpu`, probed
//! under KVM and cached). `kmbench run` ([`crate::run::plan`]) and criterion sessions
//! ([`crate::session`]) both start here, so they record the same facts the same way.
use std::path::{Path, PathBuf};

use super::qemu::{self, Qemu};
use super::vmm::{self, KvmVmm};
use super::{AccelKind, Backend, BackendChoice};
use crate::build;
use crate::config::{Accel, CplSetting, Machine};
use crate::error::{HarnessError, Result};
use crate::host::{self, Hypervisor};

/// What to resolve.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub accel: Accel,
    pub cpl: CplSetting,
    /// Where a fixed CPL came from (`cli`, `config`, `session`), for `env.cpl_source`.
    pub cpl_from: &'static str,
    pub backend: BackendChoice,
    /// How the user asked for the embedded VMM, for errors ("--backend kvm").
    pub backend_flag: &'static str,
    pub machine: Machine,
    pub root: &'a Path,
}

/// The resolved host facts and backend.
#[derive(Clone, Debug)]
pub struct Selection {
    pub accel: AccelKind,
    pub hv: Hypervisor,
    pub cpl: u8,
    pub cpl_source: String,
    /// The embedded VMM boots the guest (else QEMU).
    pub use_vmm: bool,
    pub qemu_bin: PathBuf,
    /// `qemu --version`'s first line, or `none (embedded VMM)`.
    pub qemu_version: String,
    pub host_cpu: String,
    pub host_kernel: String,
    pub machine: Machine,
    /// Where QEMU's CPU-model probe result is cached, and its key.
    pub probe_cache: PathBuf,
    pub probe_key: String,
}

/// `env.cpu_model` under the embedded VMM.
pub const VMM_CPU_MODEL: &str = "host,-arch-capabilities (KVM_GET_SUPPORTED_CPUID)";

impl Selection {
    /// Resolve everything but the CPU model; `note` receives warnings.
    pub fn resolve(req: &Request, note: &mut dyn FnMut(&str)) -> Result<Selection> {
        let cpuinfo = host::cpuinfo();
        let (accel, hv) = host::resolve_accel(req.accel, &cpuinfo, note)?;
        let (cpl, cpl_source) = host::resolve_cpl(req.cpl, req.cpl_from, hv);
        if let Some(w) = host::emulated_cpl0_warning(hv, cpl) {
            note(w);
        }
        let use_vmm = choose_vmm(req.backend, req.backend_flag, accel, req.machine)?;
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
        let probe_cache = build::kernel_path(req.root)
            .ancestors()
            .nth(3)
            .map(|t| t.join("kmbench-cpu-probe.json"))
            .unwrap_or_else(|| req.root.join("target/kmbench-cpu-probe.json"));
        let probe_key = qemu::probe_key(&qemu_version, &host_kernel, &host_cpu, req.machine);
        Ok(Selection {
            accel,
            hv,
            cpl,
            cpl_source,
            use_vmm,
            qemu_bin,
            qemu_version,
            host_cpu,
            host_kernel,
            machine: req.machine,
            probe_cache,
            probe_key,
        })
    }

    /// The CPU model: the VMM's CPUID description, `max` under TCG, QEMU's probed `-cpu`
    /// under KVM (cached in [`Selection::probe_cache`]).
    pub fn cpu_model(&self, quiet: bool) -> Result<String> {
        Ok(match self.accel {
            _ if self.use_vmm => VMM_CPU_MODEL.to_string(),
            AccelKind::Tcg => "max".to_string(),
            AccelKind::Kvm => {
                qemu::probe_cpu_model(
                    &self.qemu_bin,
                    self.machine,
                    &self.probe_cache,
                    &self.probe_key,
                    quiet,
                )?
                .0
            }
        })
    }

    /// A launch failure under QEMU+KVM may be a cached CPU model QEMU now refuses: forget it
    /// so the next run probes again.
    pub fn forget_cpu_model(&self) {
        if !self.use_vmm && self.accel == AccelKind::Kvm {
            qemu::forget_cpu_model(&self.probe_cache, &self.probe_key);
        }
    }

    /// The chosen backend.
    pub fn backend(&self) -> Result<Box<dyn Backend + Send>> {
        Ok(if self.use_vmm {
            Box::new(KvmVmm::new())
        } else {
            Box::new(Qemu::new(self.qemu_bin.clone())?)
        })
    }
}

/// Whether the embedded VMM boots: `kvm` insists (and fails where it cannot), `auto`
/// takes it when KVM, microvm and /dev/kvm allow.
fn choose_vmm(
    choice: BackendChoice,
    flag: &'static str,
    accel: AccelKind,
    machine: Machine,
) -> Result<bool> {
    Ok(match choice {
        BackendChoice::Qemu => false,
        BackendChoice::Kvm => {
            if accel != AccelKind::Kvm {
                return Err(HarnessError::VmmNeedsKvm { flag });
            }
            if machine != Machine::Microvm {
                return Err(HarnessError::VmmNeedsMicrovm {
                    flag,
                    machine: machine.label(),
                });
            }
            vmm::available().map_err(HarnessError::KvmUnavailable)?;
            true
        }
        BackendChoice::Auto => {
            accel == AccelKind::Kvm && machine == Machine::Microvm && vmm::available().is_ok()
        }
    })
}

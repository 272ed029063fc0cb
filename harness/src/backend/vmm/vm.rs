//! Assembling a VM: KVM VM → guest memory → in-kernel irqchip and PIT → kernel ELF → boot
//! structures → vCPUs (CPUID, MSRs, registers) → coalesced PIO. Each phase's duration is
//! recorded in [`VmmStats::setup_phases`].
//!
//! Hardware KVM (VMX/SVM) vs kvm_pvm, the complete list of differences the VMM knows of:
//! 1. KVM_SET_TSS_ADDR ([`super::layout::TSS_ADDR`]) is needed by Intel VMX only; its
//!    error is ignored elsewhere.
//! 2. The CPUID table is what the guest reads on hardware; under kvm_pvm the guest sees
//!    the outer CPUID (so the TSC-kHz leaf only helps on hardware, and the plan's
//!    `tsc_khz` carries it on both, see [`boot_params::cmdline_with_tsc_khz`]).
//! 3. kvm_pvm may take fewer boot MSRs (recorded in `vmm_cpuid` when it does).
//!
//! Everything else — memory, boot structures, registers, devices, the run loop — is the
//! same code on both.
use std::time::Instant;

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use linux_loader::loader::{elf::Elf, KernelLoader};
use vm_memory::GuestMemoryMmap;

use super::error::{Result, VmmError};
use super::layout::{MIN_MEMORY, TSS_ADDR};
use super::memory::{self, HostMem};
use super::vcpu::Vcpu;
use super::{boot_params, cpuid, VmmStats};
use crate::backend::LaunchSpec;
use kmbench_protocol::ports;

/// A VM ready to run: its vCPUs, memory and devices' KVM side. Field order is drop
/// order: vCPUs and the VM go before the memory they use.
pub struct Vm {
    pub vcpus: Vec<Vcpu>,
    _vm: VmFd,
    _kvm: Kvm,
    _mem: GuestMemoryMmap,
    _host: HostMem,
    pub has_pit: bool,
    /// COM1 THR and debugcon writes go through KVM's coalesced-PIO ring.
    pub coalesced: bool,
}

/// Phase timer for [`VmmStats::setup_phases`].
struct Phases {
    last: Instant,
}

impl Phases {
    fn mark(&mut self, stats: &mut VmmStats, name: &'static str) {
        let now = Instant::now();
        stats
            .setup_phases
            .push((name, (now - self.last).as_secs_f64() * 1e6));
        self.last = now;
    }
}

/// Guest RAM in bytes for `spec`, checked.
fn memory_bytes(spec: &LaunchSpec) -> Result<u64> {
    let mib = spec.memory_mib;
    let bytes = mib
        .checked_mul(1 << 20)
        .ok_or(VmmError::MemoryOverflow { mib })?;
    if bytes < MIN_MEMORY {
        return Err(VmmError::MemoryTooSmall { mib });
    }
    Ok(bytes)
}

/// Create the VM, load the kernel, set up the vCPUs.
pub fn create(spec: &LaunchSpec, stats: &mut VmmStats) -> Result<Vm> {
    // A plan travels in the plan area, not the command line: the plan as given must fit
    // it (boot_params::write checks again what it writes, and the command line).
    if let Some(plan) = spec
        .cmdline
        .strip_prefix(kmbench_protocol::CMDLINE_PLAN_KEY)
    {
        if plan.len() > super::layout::PLAN_MAX {
            return Err(VmmError::PlanTooLarge {
                len: plan.len(),
                max: super::layout::PLAN_MAX,
            });
        }
    }
    let mem_bytes = memory_bytes(spec)?;
    let mut phases = Phases {
        last: Instant::now(),
    };
    let kvm = Kvm::new().map_err(VmmError::kvm("cannot open /dev/kvm"))?;
    let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
    // Hardware difference 1: Intel VMX wants a TSS area; AMD and kvm_pvm do not care.
    let _ = vm.set_tss_address(TSS_ADDR);
    phases.mark(stats, "create_vm");
    // Memory before the irqchip/PIT: memslot changes after them wait for SRCU grace
    // periods (milliseconds).
    let host = memory::map_guest_ram(mem_bytes as usize, spec.host_backing)?;
    stats.memory = format!("{} MiB, {}", spec.memory_mib, host.how);
    phases.mark(stats, "map_ram");
    // SAFETY: `host` lives in the returned `Vm` beside the memory and the VM, and is
    // dropped after both (field order).
    let mem = unsafe { memory::register(&vm, &host)? };
    // The one setup phase that grows with guest memory: KVM_SET_USER_MEMORY_REGION makes
    // the host kernel allocate and zero per-4 KiB-page memslot metadata (shadow-MMU rmaps
    // and write-tracking arrays, ~10 bytes a page: ~5 MiB at 2 GiB). kvm_pvm always uses
    // the shadow MMU; hardware KVM with the TDP MMU skips the rmaps until needed. mmap and
    // madvise above are O(1) (nothing is populated or zeroed here).
    phases.mark(stats, "kvm_memslot");

    let irqchip = vm.create_irq_chip();
    let pit = if irqchip.is_ok() {
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
    } else {
        Err(kvm_ioctls::Error::new(libc::ENOENT))
    };
    phases.mark(stats, "irqchip+pit");
    stats.irqchip = match (&irqchip, &pit) {
        (Ok(()), Ok(())) => "in-kernel irqchip + PIT".into(),
        (Ok(()), Err(e)) => format!("in-kernel irqchip, no PIT ({e})"),
        (Err(e), _) => format!("no irqchip ({e})"),
    };

    let mut file = std::fs::File::open(&spec.kernel).map_err(|source| VmmError::KernelOpen {
        path: spec.kernel.clone(),
        source,
    })?;
    let loaded = Elf::load(&mem, None, &mut file, None).map_err(|source| VmmError::KernelLoad {
        path: spec.kernel.clone(),
        source,
    })?;
    if loaded.kernel_end > host.len() as u64 {
        return Err(VmmError::KernelTooBig {
            end: loaded.kernel_end,
            mib: spec.memory_mib,
        });
    }
    let entry = loaded.kernel_load.0;
    phases.mark(stats, "load_elf");

    let boot_vcpu = Vcpu::create(&vm, 0)?;
    let tsc_khz = boot_vcpu.tsc_khz();
    stats.tsc_khz = tsc_khz;
    boot_params::write(
        &mem,
        host.len() as u64,
        &boot_params::cmdline_with_tsc_khz(&spec.cmdline, tsc_khz),
    )?;
    phases.mark(stats, "boot_structures");
    let (table, notes) = cpuid::for_vcpu(&kvm, boot_vcpu.index, tsc_khz)?;
    stats.cpuid = notes;
    if let Some(note) = boot_vcpu.configure(&table, entry)? {
        // Hardware difference 3.
        stats.cpuid.push(note);
    }
    let mut vcpus = vec![boot_vcpu];
    for index in 1..spec.vcpus.max(1) {
        let ap = Vcpu::create(&vm, index)?;
        let (table, _) = cpuid::for_vcpu(&kvm, index, tsc_khz)?;
        ap.configure_ap(&table)?;
        vcpus.push(ap);
    }
    phases.mark(stats, "vcpu+cpuid+regs");
    // Log and record bytes need no answer: let KVM queue them in the coalesced ring
    // (one exit per full ring instead of one per byte of `rep outsb`).
    let coalesced = std::env::var_os("KMBENCH_VMM_NO_COALESCE").is_none()
        && kvm.check_extension(kvm_ioctls::Cap::CoalescedPio)
        && vcpus[0].fd.map_coalesced_mmio_ring().is_ok()
        && vm
            .register_coalesced_mmio(kvm_ioctls::IoEventAddress::Pio(ports::SERIAL_LOG as u64), 1)
            .is_ok()
        && vm
            .register_coalesced_mmio(kvm_ioctls::IoEventAddress::Pio(ports::RESULTS as u64), 1)
            .is_ok();
    stats.coalesced_pio = coalesced;
    phases.mark(stats, "coalesced_pio");
    Ok(Vm {
        vcpus: std::mem::take(&mut vcpus),
        _vm: vm,
        _kvm: kvm,
        _mem: mem,
        _host: host,
        has_pit: pit.is_ok(),
        coalesced,
    })
}

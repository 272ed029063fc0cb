//! The embedded micro-VMM: boots the kernel straight on `/dev/kvm` (rust-vmm crates:
//! `kvm-ioctls`, `kvm-bindings`, `vm-memory`, `linux-loader`), no QEMU process.
//!
//! Like Firecracker/uhyve it enters the kernel in 64-bit mode at the ELF entry point
//! (`kmb_start64`): long mode, paging on with the low 4 GiB identity-mapped by 2 MiB
//! pages we build below 1 MiB, interrupts off, `%rdi` = physical address of a PVH
//! `hvm_start_info`. The devices are the three ports the guest uses, the same ones QEMU's
//! `-M microvm` command line wires up ([`devices`]).
//!
//! COM1 THR and debugcon writes are registered as coalesced PIO: KVM queues the bytes of
//! the guest's `rep outsb` in a ring instead of exiting to us per byte (under kvm_pvm
//! string I/O exits once per byte, ~60 µs each); the ring is drained, in order, on every
//! exit that does reach us and before the exit port is honoured.
//! `KMBENCH_VMM_NO_COALESCE=1` turns that off (for comparison).
//!
//! The in-kernel irqchip and PIT (KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2) are created as on
//! microvm, and KVM_SET_CPUID2 advertises the KVM timing leaf 0x40000010 with the vCPU's
//! TSC kHz, so a guest whose CPUID KVM intercepts skips its ~50 ms PIT calibration. Under
//! kvm_pvm CPUID executes natively (the guest sees the outer hypervisor's leaves, not
//! this table), so there the guest still calibrates against the PIT.
//!
//! Timeouts and Ctrl-C: the vCPU runs on the calling thread; a [`watchdog`] thread kicks
//! it out of `KVM_RUN` with a signal.
//!
//! # Parts, in boot order
//! [`layout`] (guest-physical addresses, from the shared boot ABI) → [`memory`] (host
//! mapping, memslot) → [`vm`] (assembly, and the list of hardware-KVM vs kvm_pvm
//! differences) → [`boot_params`] (GDT, page tables, memory map, command line, start
//! info) → [`cpuid`] → [`vcpu`] (segment/control registers, MSRs, entry state) →
//! [`devices`] → [`watchdog`] → [`run_loop`]. [`error`] types every launch failure.
use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use super::{AccelKind, Backend, BootEnd, BootReport, Event, LaunchSpec};
use crate::config::HostBacking;
use crate::error::{HarnessError, Result};

pub mod aps;
pub mod boot_params;
pub mod cpuid;
pub mod devices;
pub mod error;
pub mod layout;
pub mod memory;
pub mod run_loop;
pub mod vcpu;
pub mod vm;
pub mod watchdog;

pub use error::VmmError;

use devices::Devices;
use watchdog::Watchdog;

/// What the last boot measured, for `results.json` (`env.extra`).
#[derive(Clone, Debug, Default)]
pub struct VmmStats {
    pub exits: BTreeMap<String, u64>,
    pub unknown_ports: BTreeMap<String, u64>,
    pub cpuid: Vec<String>,
    pub tsc_khz: Option<u32>,
    pub irqchip: String,
    /// Log/record port writes were coalesced by KVM.
    pub coalesced_pio: bool,
    pub memory: String,
    /// VM creation start → vCPU first entered (µs).
    pub setup_us: f64,
    /// Where the setup time went: (phase, µs since the previous phase).
    pub setup_phases: Vec<(&'static str, f64)>,
    /// VM creation start → first record (µs).
    pub first_record_us: Option<f64>,
    /// VM creation start → exit (µs).
    pub total_us: f64,
    /// getrusage(RUSAGE_SELF).ru_maxrss after the boot (KiB): peak of this whole process.
    pub rss_peak_kib: u64,
    /// Host CPUs the boot vCPU's thread was seen on (after each exit).
    pub boot_vcpu_host_cpus: std::collections::BTreeSet<u32>,
    /// Per vCPU (`vcpu0`, `vcpu1`, …): host CPUs its thread was seen on (vcpus > 1).
    pub vcpu_host_cpus: BTreeMap<String, std::collections::BTreeSet<u32>>,
    /// What `pin_vcpus` did, per vCPU thread.
    pub pinning: Vec<String>,
}

/// The calling thread's CPU affinity, to restore after pinning the boot vCPU.
fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: sched_getaffinity fills the zeroed set for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` came from sched_getaffinity for this thread.
    unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
    }
}

/// The embedded KVM micro-VMM backend.
#[derive(Default)]
pub struct KvmVmm {
    pub last: Option<VmmStats>,
}

impl KvmVmm {
    pub fn new() -> KvmVmm {
        KvmVmm::default()
    }
}

/// Is `/dev/kvm` usable for this backend?
pub fn available() -> std::result::Result<(), std::io::Error> {
    crate::host::kvm_usable()
}

fn peak_rss_kib() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) == 0 {
            ru.ru_maxrss as u64
        } else {
            0
        }
    }
}

impl Backend for KvmVmm {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn describe(&self, spec: &LaunchSpec) -> Vec<String> {
        vec![
            "kmbench embedded VMM (/dev/kvm via kvm-ioctls)".into(),
            format!("kernel={}", spec.kernel.display()),
            "entry=ELF e_entry (64-bit kmb_start64), rdi=hvm_start_info".into(),
            format!("memory={}M", spec.memory_mib),
            format!("host_backing={}", spec.host_backing.label()),
            format!("vcpus={}", spec.vcpus),
            if spec.control.is_some() {
                "control=com2@0x2f8(requests)".into()
            } else {
                "control=none".into()
            },
            "devices=irqchip+pit(in-kernel),com1@0x3f8(log),debugcon@0xe9(records),debug-exit@0xf4"
                .into(),
            format!("cmdline={}", spec.cmdline),
        ]
    }

    fn boot(&mut self, spec: &LaunchSpec, on_event: &mut dyn FnMut(Event)) -> Result<BootReport> {
        let log_file = crate::safe_fs::create_fresh(&spec.log_path)
            .map_err(|e| HarnessError::io(format!("creating {}", spec.log_path.display()), e))?;
        let mut dev = Devices::new(log_file, spec.verbose);
        dev.control = spec.control.clone();
        let launch_failed = |e: VmmError, stderr: String| BootReport {
            end: BootEnd::LaunchFailed {
                message: match e {
                    VmmError::NotKvm => e.to_string(),
                    e => format!("the embedded VMM cannot start the guest: {e}"),
                },
            },
            stderr,
        };
        if spec.accel != AccelKind::Kvm {
            return Ok(launch_failed(VmmError::NotKvm, dev.stderr));
        }
        if spec.host_backing == HostBacking::Hugetlbfs {
            if let Err(e) = crate::host::check_huge_pages(spec.memory_mib) {
                return Ok(launch_failed(VmmError::HugePages(e), dev.stderr));
            }
        }

        on_event(Event::Launched);
        let t0 = Instant::now();
        dev.t0 = t0;
        let deadline = super::deadline_after(t0, spec.timeout);
        let mut vm = match vm::create(spec, &mut dev.stats) {
            Ok(vm) => vm,
            Err(e) => {
                let mut stats = dev.stats;
                stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
                stats.rss_peak_kib = peak_rss_kib();
                self.last = Some(stats);
                return Ok(launch_failed(e, dev.stderr));
            }
        };
        dev.has_pit = vm.has_pit;
        dev.stats.setup_us = t0.elapsed().as_secs_f64() * 1e6;

        // The boot vCPU runs on this thread (the watchdog's kick target), each AP on its
        // own thread (aps.rs), which forwards its port exits here.
        let mut watchdog = Watchdog::start(deadline, spec.interrupt, vec![watchdog::this_thread()]);
        let coalesced = vm.coalesced;
        let pins = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let saved_affinity = spec.pin_vcpus.then(current_affinity).flatten();
        if let Some(n) = aps::maybe_pin(spec.pin_vcpus, 0) {
            pins.lock().unwrap().push(n);
        }
        let ap_vcpus = vm.vcpus.split_off(1);
        let (ap_threads, link) = if ap_vcpus.is_empty() {
            (None, None)
        } else {
            let (t, l) = aps::ApThreads::start(ap_vcpus, spec.pin_vcpus, pins.clone());
            (Some(t), Some(l))
        };
        let end = run_loop::run(
            &mut vm.vcpus[0],
            coalesced,
            &mut dev,
            &watchdog,
            link.as_ref(),
            on_event,
        );
        if let Some(t) = ap_threads {
            let seen = t.stop();
            let boot = std::mem::take(&mut dev.stats.boot_vcpu_host_cpus);
            dev.stats.vcpu_host_cpus.insert("vcpu0".into(), boot);
            for (i, s) in seen.into_iter().enumerate() {
                dev.stats.vcpu_host_cpus.insert(format!("vcpu{}", i + 1), s);
            }
        }
        if let Some(set) = &saved_affinity {
            restore_affinity(set);
        }
        dev.stats.pinning = std::mem::take(&mut *pins.lock().unwrap());
        watchdog.finish();
        dev.flush_partial_line(on_event);
        if let Some(echo) = &mut dev.echo {
            echo.finish();
        }
        let mut stats = std::mem::take(&mut dev.stats);
        stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
        stats.rss_peak_kib = peak_rss_kib();
        drop(vm);
        if dev.verbose && !dev.stderr.is_empty() {
            eprint!("{}", dev.stderr);
        }
        self.last = Some(stats);
        Ok(BootReport {
            end,
            stderr: dev.stderr,
        })
    }

    fn setup_ms(&self) -> Option<f64> {
        self.last
            .as_ref()
            .filter(|s| s.setup_us > 0.0)
            .map(|s| s.setup_us / 1e3)
    }

    fn extra(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        let Some(s) = &self.last else {
            return m;
        };
        m.insert("vmm_exits".into(), json!(s.exits));
        if !s.vcpu_host_cpus.is_empty() {
            m.insert("vcpu_host_cpus".into(), json!(s.vcpu_host_cpus));
        }
        if !s.pinning.is_empty() {
            m.insert("vcpu_pinning".into(), json!(s.pinning));
        }
        if !s.unknown_ports.is_empty() {
            m.insert("vmm_unhandled".into(), json!(s.unknown_ports));
        }
        m.insert("vmm_rss_kib".into(), json!(s.rss_peak_kib));
        m.insert("vmm_cpuid".into(), json!(s.cpuid));
        m.insert("vmm_tsc_khz".into(), json!(s.tsc_khz));
        m.insert("vmm_irqchip".into(), json!(s.irqchip));
        m.insert("vmm_coalesced_pio".into(), json!(s.coalesced_pio));
        m.insert("vmm_memory".into(), json!(s.memory));
        m.insert("vmm_setup_ms".into(), json!(s.setup_us / 1e3));
        let phases: BTreeMap<&str, f64> =
            s.setup_phases.iter().map(|(k, v)| (*k, v / 1e3)).collect();
        m.insert("vmm_setup_phases_ms".into(), json!(phases));
        m.insert(
            "vmm_first_record_ms".into(),
            json!(s.first_record_us.map(|u| u / 1e3)),
        );
        m.insert("vmm_total_ms".into(), json!(s.total_us / 1e3));
        m
    }
}

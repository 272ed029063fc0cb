//! The embedded micro-VMM: boots the kernel straight on `/dev/kvm` (rust-vmm crates:
//! `kvm-ioctls`, `kvm-bindings`, `vm-memory`, `linux-loader`), no QEMU process.
//!
//! Like Firecracker/uhyve it enters the kernel in 64-bit mode at the ELF entry point
//! (`kmb_start64`): long mode, paging on with the low 4 GiB identity-mapped by 2 MiB
//! pages we build below 1 MiB, interrupts off, `%rdi` = physical address of a PVH
//! `hvm_start_info`. The devices are the three ports the guest uses, the same ones QEMU's
//! `-M microvm` command line wires up:
//!
//! | port | QEMU device | here |
//! |---|---|---|
//! | COM1 0x3f8..0x3ff | 16550 → guest log file | THR bytes → `spec.log_path`; LSR reads 0x60 |
//! | 0xe9 | isa-debugcon → stdout | `KMB1 <json>` lines → [`Event::Record`] |
//! | 0xf4 | isa-debug-exit | value `v` → [`BootEnd::Exited`] with `raw = v` (not QEMU's `(v << 1) \| 1`) |
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
//! Timeouts and Ctrl-C: the vCPU runs on the calling thread; a watchdog thread signals it
//! (a no-op real-time signal handler installed without SA_RESTART), so `KVM_RUN` returns
//! `EINTR` and the loop stops. The signal is re-sent every millisecond until the loop
//! notices, which closes the race with a signal landing just before `KVM_RUN`.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

use kmbench_protocol::channel::{Line, RecordReader};
use kmbench_protocol::{ports, GuestExit};
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_fpu, kvm_pit_config, kvm_regs, kvm_segment, kvm_userspace_memory_region,
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use linux_loader::loader::{elf::Elf, KernelLoader};
use serde_json::{json, Value};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use super::{AccelKind, Backend, BootEnd, BootReport, Event, LaunchSpec};
use crate::config::HostBacking;
use crate::error::{HarnessError, Result};

// ---------------------------------------------------------------------------------------
// Guest physical layout (all below 1 MiB, clear of the kernel image at 1 MiB).

const GDT_ADDR: u64 = 0x500;
/// Stack pointer at entry (the kernel loads its own stack before touching it).
const BOOT_STACK: u64 = 0x5000;
pub const START_INFO_ADDR: u64 = 0x6000;
pub const MEMMAP_ADDR: u64 = 0x7000;
pub const CMDLINE_ADDR: u64 = 0x8000;
/// The guest copies at most 4096 bytes of command line (NUL excluded below).
pub const CMDLINE_MAX: usize = 4095;
const PML4_ADDR: u64 = 0x9000;
const PDPT_ADDR: u64 = 0xa000;
/// Four page directories, 0xb000..0xf000: 4 × 512 × 2 MiB = 4 GiB identity map.
const PD_ADDR: u64 = 0xb000;
/// End of conventional low RAM (like microvm / a PC: the EBDA starts here).
pub const LOW_RAM_END: u64 = 0x9fc00;
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// TSS address for Intel VMX (KVM_SET_TSS_ADDR), as Firecracker/QEMU use: 3 pages below 4 GiB.
const TSS_ADDR: usize = 0xfffb_d000;

const HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

const HUGE_2M: usize = 2 << 20;

// Control-register and EFER bits.
const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// Signal used to kick the vCPU out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

extern "C" fn noop_handler(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing is a valid
        // disposition; no SA_RESTART, so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop_handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

// ---------------------------------------------------------------------------------------
// Host memory.

/// An anonymous mapping backing guest RAM; unmapped on drop.
struct HostMem {
    /// Start of the whole mapping (for munmap).
    map: *mut u8,
    map_len: usize,
    /// The (possibly 2 MiB aligned) part given to the guest.
    addr: *mut u8,
    len: usize,
    flags: i32,
    how: &'static str,
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` is a mapping we created and own.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.map_len);
        }
    }
}

/// Free 2 MiB huge pages in the host pool.
pub fn free_huge_pages_2m() -> u64 {
    let sys = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    if let Ok(s) = std::fs::read_to_string(sys) {
        return s.trim().parse().unwrap_or(0);
    }
    let (free, size_kb) = crate::host::huge_pages_free();
    if size_kb == 2048 {
        free
    } else {
        0
    }
}

/// The hugetlbfs pre-check: `Err(message)` when the pool cannot hold `memory_mib`.
pub fn check_hugetlb_pool(memory_mib: u64) -> std::result::Result<(), String> {
    let need = memory_mib.div_ceil(2);
    let have = free_huge_pages_2m();
    if have < need {
        return Err(HarnessError::HugePages { need, have }.to_string());
    }
    Ok(())
}

fn map_guest_ram(bytes: usize, backing: HostBacking) -> std::result::Result<HostMem, String> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let base_flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if backing == HostBacking::Hugetlbfs {
        let len = bytes.div_ceil(HUGE_2M) * HUGE_2M;
        // MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | (21 << 26);
        // SAFETY: a fresh anonymous mapping; the result is checked.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {} MiB MAP_HUGETLB|MAP_HUGE_2MB failed: {}",
                len >> 20,
                std::io::Error::last_os_error()
            ));
        }
        return Ok(HostMem {
            map: p as *mut u8,
            map_len: len,
            addr: p as *mut u8,
            len,
            flags,
            how: "anonymous mmap, MAP_HUGETLB|MAP_HUGE_2MB (hugetlbfs 2 MiB pages)",
        });
    }
    // Over-allocate by 2 MiB so the guest's RAM starts 2 MiB aligned: guest 2 MiB pages
    // can then sit on host huge pages.
    let map_len = bytes + HUGE_2M;
    // SAFETY: a fresh anonymous mapping; the result is checked.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), map_len, prot, base_flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {} MiB failed: {}",
            bytes >> 20,
            std::io::Error::last_os_error()
        ));
    }
    let map = p as *mut u8;
    let aligned = ((map as usize).div_ceil(HUGE_2M) * HUGE_2M) as *mut u8;
    let (advice, how) = match backing {
        HostBacking::Small => (
            libc::MADV_NOHUGEPAGE,
            "anonymous mmap, MADV_NOHUGEPAGE (4 KiB host pages)",
        ),
        // QEMU's default RAM is THP-eligible too.
        HostBacking::Default | HostBacking::Thp | HostBacking::Hugetlbfs => (
            libc::MADV_HUGEPAGE,
            "anonymous mmap, 2 MiB aligned, MADV_HUGEPAGE (THP)",
        ),
    };
    // SAFETY: advising a range inside our own mapping.
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, bytes, advice);
    }
    Ok(HostMem {
        map,
        map_len,
        addr: aligned,
        len: bytes,
        flags: base_flags,
        how,
    })
}

// ---------------------------------------------------------------------------------------
// CPUID.

/// Host-supported CPUID, filtered like QEMU's `-cpu host,-arch-capabilities`, plus the KVM
/// signature and timing leaves. Returns the table and a description of what was changed.
fn build_cpuid(
    kvm: &Kvm,
    tsc_khz: Option<u32>,
) -> std::result::Result<(CpuId, Vec<String>), String> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
    let mut notes = vec!["host-supported (KVM_GET_SUPPORTED_CPUID)".to_string()];
    let hv_max: u32 = if tsc_khz.is_some() {
        0x4000_0010
    } else {
        0x4000_0001
    };
    let mut have_sig = false;
    let mut have_timing = false;
    for e in cpuid.as_mut_slice().iter_mut() {
        match (e.function, e.index) {
            (1, _) => {
                e.ecx |= 1 << 31; // hypervisor present
                e.ebx &= 0x00ff_ffff; // initial APIC ID 0
            }
            (7, 0) => {
                e.edx &= !(1 << 29); // IA32_ARCH_CAPABILITIES
            }
            (0xb, _) | (0x1f, _) => e.edx = 0, // x2APIC ID
            (0x4000_0000, _) => {
                have_sig = true;
                set_kvm_signature(e, hv_max);
            }
            (0x4000_0010, _) => {
                have_timing = true;
                e.eax = tsc_khz.unwrap_or(0);
                e.ebx = 1_000_000; // APIC bus, kHz (as QEMU)
            }
            _ => {}
        }
    }
    notes.push("-arch-capabilities (7.0:EDX[29])".into());
    notes.push("+hypervisor (1:ECX[31])".into());
    if !have_sig {
        let mut e = kvm_cpuid_entry2 {
            function: 0x4000_0000,
            ..Default::default()
        };
        set_kvm_signature(&mut e, hv_max);
        cpuid
            .push(e)
            .map_err(|e| format!("CPUID table full: {e:?}"))?;
    }
    if let Some(khz) = tsc_khz {
        if !have_timing {
            cpuid
                .push(kvm_cpuid_entry2 {
                    function: 0x4000_0010,
                    eax: khz,
                    ebx: 1_000_000,
                    ..Default::default()
                })
                .map_err(|e| format!("CPUID table full: {e:?}"))?;
        }
        notes.push(format!("KVMKVMKVM leaves up to 0x40000010 (TSC {khz} kHz)"));
    } else {
        notes.push(
            "KVMKVMKVM leaves up to 0x40000001 (no TSC kHz: guest calibrates against the PIT)"
                .into(),
        );
    }
    Ok((cpuid, notes))
}

fn set_kvm_signature(e: &mut kvm_cpuid_entry2, max: u32) {
    let sig = b"KVMKVMKVM\0\0\0";
    e.eax = max;
    e.ebx = u32::from_le_bytes(sig[0..4].try_into().unwrap());
    e.ecx = u32::from_le_bytes(sig[4..8].try_into().unwrap());
    e.edx = u32::from_le_bytes(sig[8..12].try_into().unwrap());
}

// ---------------------------------------------------------------------------------------
// Boot structures.

/// `struct hvm_start_info` (PVH), version 1.
fn start_info_bytes(memmap_entries: u32) -> [u8; 56] {
    let mut b = [0u8; 56];
    b[0..4].copy_from_slice(&HVM_START_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&1u32.to_le_bytes()); // version
                                                  // flags, nr_modules, modlist_paddr: 0
    b[24..32].copy_from_slice(&CMDLINE_ADDR.to_le_bytes());
    // rsdp_paddr: 0
    b[40..48].copy_from_slice(&MEMMAP_ADDR.to_le_bytes());
    b[48..52].copy_from_slice(&memmap_entries.to_le_bytes());
    b
}

/// The PVH memory map: [0, 0x9fc00) and [1 MiB, mem_end), both RAM.
pub fn memmap(mem_bytes: u64) -> Vec<(u64, u64, u32)> {
    vec![
        (0, LOW_RAM_END, E820_RAM),
        (HIGH_RAM_START, mem_bytes - HIGH_RAM_START, E820_RAM),
    ]
}

/// Tell the guest the TSC frequency KVM uses (the plan's `tsc_khz`), unless the plan
/// already names one: CPUID may not carry it (kvm_pvm shows the guest the outer CPUID),
/// and without it the guest spends ~50 ms calibrating against the PIT.
fn cmdline_with_tsc_khz(cmdline: &str, tsc_khz: Option<u32>) -> String {
    use kmbench_protocol::{GuestPlan, CMDLINE_PLAN_KEY};
    let (Some(khz), Some(json)) = (tsc_khz, cmdline.strip_prefix(CMDLINE_PLAN_KEY)) else {
        return cmdline.to_string();
    };
    match serde_json::from_str::<GuestPlan>(json) {
        Ok(mut plan) => {
            plan.tsc_khz.get_or_insert(khz as u64);
            format!(
                "{CMDLINE_PLAN_KEY}{}",
                serde_json::to_string(&plan).expect("plans serialise")
            )
        }
        Err(_) => cmdline.to_string(),
    }
}

fn write_boot_structures(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    cmdline: &str,
) -> std::result::Result<(), String> {
    let err = |what: &str, e: vm_memory::GuestMemoryError| format!("writing {what}: {e}");
    // GDT: null, 64-bit code (0x08), data (0x10); accessed bits preset.
    let gdt: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(|e| err("GDT", e))?;
    }
    // Identity map of the low 4 GiB: PML4[0] → PDPT[0..4] → 4 PDs of 2 MiB leaves.
    mem.write_obj(PDPT_ADDR | 0x3, GuestAddress(PML4_ADDR))
        .map_err(|e| err("PML4", e))?;
    let mut pd = vec![0u8; 4 * 4096];
    for i in 0..4u64 {
        mem.write_obj((PD_ADDR + i * 4096) | 0x3, GuestAddress(PDPT_ADDR + 8 * i))
            .map_err(|e| err("PDPT", e))?;
    }
    for j in 0..2048u64 {
        let entry = (j << 21) | 0x83; // present | writable | PS
        pd[j as usize * 8..j as usize * 8 + 8].copy_from_slice(&entry.to_le_bytes());
    }
    mem.write_slice(&pd, GuestAddress(PD_ADDR))
        .map_err(|e| err("page directories", e))?;
    // Memory map.
    let map = memmap(mem_bytes);
    let mut mm = Vec::with_capacity(map.len() * 24);
    for (addr, size, kind) in &map {
        mm.extend_from_slice(&addr.to_le_bytes());
        mm.extend_from_slice(&size.to_le_bytes());
        mm.extend_from_slice(&kind.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
    }
    mem.write_slice(&mm, GuestAddress(MEMMAP_ADDR))
        .map_err(|e| err("memory map", e))?;
    // Command line, NUL-terminated.
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.write_slice(&c, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| err("command line", e))?;
    mem.write_slice(
        &start_info_bytes(map.len() as u32),
        GuestAddress(START_INFO_ADDR),
    )
    .map_err(|e| err("start info", e))?;
    Ok(())
}

fn setup_vcpu_regs(vcpu: &VcpuFd, entry: u64) -> std::result::Result<(), String> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x08,
        type_: 0xb, // execute/read, accessed
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment {
        selector: 0x10,
        type_: 0x3, // read/write, accessed
        db: 1,
        l: 0,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = 3 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_WP | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let regs = kvm_regs {
        rip: entry,
        rdi: START_INFO_ADDR,
        rsp: BOOT_STACK,
        rbp: 0,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu)
        .map_err(|e| format!("KVM_SET_FPU: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The backend.

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
pub fn available() -> std::result::Result<(), String> {
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

struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    _mem: GuestMemoryMmap,
    _host: HostMem,
    has_pit: bool,
    /// COM1 THR and debugcon writes go through KVM's coalesced-PIO ring.
    coalesced: bool,
}

/// Create the VM, load the kernel, set up the vCPU. `Err` = a launch failure message.
fn create_vm(spec: &LaunchSpec, stats: &mut VmmStats) -> std::result::Result<Vm, String> {
    if spec.cmdline.len() > CMDLINE_MAX {
        return Err(format!(
            "kernel command line is {} bytes; the guest reads at most {CMDLINE_MAX}",
            spec.cmdline.len()
        ));
    }
    let Some(mem_bytes) = spec.memory_mib.checked_mul(1 << 20) else {
        return Err(format!(
            "{} MiB of guest memory overflows a byte count",
            spec.memory_mib
        ));
    };
    if mem_bytes < 8 << 20 {
        return Err(format!(
            "{} MiB of guest memory is too little",
            spec.memory_mib
        ));
    }
    let mut last = Instant::now();
    let mut phase = |stats: &mut VmmStats, name: &'static str| {
        let now = Instant::now();
        stats
            .setup_phases
            .push((name, (now - last).as_secs_f64() * 1e6));
        last = now;
    };
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    // Intel VMX wants a TSS area; AMD and kvm_pvm do not care (errors ignored).
    let _ = vm.set_tss_address(TSS_ADDR);
    phase(stats, "create_vm");
    // Memory before the irqchip/PIT: memslot changes after them wait for SRCU grace
    // periods (milliseconds).
    let host = map_guest_ram(mem_bytes as usize, spec.host_backing)?;
    stats.memory = format!("{} MiB, {}", spec.memory_mib, host.how);
    // SAFETY: `host` is a live private anonymous mapping of `host.len` bytes that outlives
    // the MmapRegion (both live in `Vm`, the region does not own it).
    let region = unsafe {
        MmapRegion::build_raw(
            host.addr,
            host.len,
            libc::PROT_READ | libc::PROT_WRITE,
            host.flags,
        )
    }
    .map_err(|e| format!("guest memory region: {e}"))?;
    let region = GuestRegionMmap::new(region, GuestAddress(0))
        .ok_or_else(|| "guest memory region overflows".to_string())?;
    let mem =
        GuestMemoryMmap::from_regions(vec![region]).map_err(|e| format!("guest memory: {e}"))?;
    // SAFETY: the userspace range is our mapping, alive as long as the VM (same struct).
    unsafe {
        vm.set_user_memory_region(kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: host.len as u64,
            userspace_addr: host.addr as u64,
        })
    }
    .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    phase(stats, "guest_memory");

    let irqchip = vm.create_irq_chip();
    let pit = if irqchip.is_ok() {
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
    } else {
        Err(kvm_ioctls::Error::new(libc::ENOENT))
    };
    phase(stats, "irqchip+pit");
    stats.irqchip = match (&irqchip, &pit) {
        (Ok(()), Ok(())) => "in-kernel irqchip + PIT".into(),
        (Ok(()), Err(e)) => format!("in-kernel irqchip, no PIT ({e})"),
        (Err(e), _) => format!("no irqchip ({e})"),
    };

    let mut file = std::fs::File::open(&spec.kernel)
        .map_err(|e| format!("opening {}: {e}", spec.kernel.display()))?;
    let loaded = Elf::load(&mem, None, &mut file, None)
        .map_err(|e| format!("loading ELF {}: {e}", spec.kernel.display()))?;
    if loaded.kernel_end > host.len as u64 {
        return Err(format!(
            "kernel image ends at {:#x}, beyond {} MiB of guest memory",
            loaded.kernel_end, spec.memory_mib
        ));
    }
    let entry = loaded.kernel_load.0;
    phase(stats, "load_elf");

    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let tsc_khz = vcpu.get_tsc_khz().ok().filter(|k| *k != 0);
    stats.tsc_khz = tsc_khz;
    write_boot_structures(
        &mem,
        host.len as u64,
        &cmdline_with_tsc_khz(&spec.cmdline, tsc_khz),
    )?;
    phase(stats, "boot_structures");
    let (cpuid, notes) = build_cpuid(&kvm, tsc_khz)?;
    stats.cpuid = notes;
    vcpu.set_cpuid2(&cpuid)
        .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
    setup_vcpu_regs(&vcpu, entry)?;
    phase(stats, "vcpu+cpuid+regs");
    // Log and record bytes need no answer: let KVM queue them in the coalesced ring
    // (one exit per full ring instead of one per byte of `rep outsb`).
    let mut vcpu = vcpu;
    let coalesced = std::env::var_os("KMBENCH_VMM_NO_COALESCE").is_none()
        && kvm.check_extension(kvm_ioctls::Cap::CoalescedPio)
        && vcpu.map_coalesced_mmio_ring().is_ok()
        && vm
            .register_coalesced_mmio(kvm_ioctls::IoEventAddress::Pio(ports::SERIAL_LOG as u64), 1)
            .is_ok()
        && vm
            .register_coalesced_mmio(kvm_ioctls::IoEventAddress::Pio(ports::RESULTS as u64), 1)
            .is_ok();
    stats.coalesced_pio = coalesced;
    phase(stats, "coalesced_pio");
    Ok(Vm {
        _kvm: kvm,
        _vm: vm,
        vcpu,
        _mem: mem,
        _host: host,
        has_pit: pit.is_ok(),
        coalesced,
    })
}

/// Watchdog: on timeout or interrupt, kick the vCPU thread until it reports done.
struct Watchdog {
    done: Arc<AtomicBool>,
    /// 0 running, 1 timeout, 2 interrupted.
    reason: Arc<AtomicU8>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(deadline: Instant, interrupt: &'static AtomicBool) -> Watchdog {
        install_kick_handler();
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let done = Arc::new(AtomicBool::new(false));
        let reason = Arc::new(AtomicU8::new(0));
        let handle = {
            let done = done.clone();
            let reason = reason.clone();
            thread::spawn(move || loop {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                if reason.load(Ordering::SeqCst) == 0 {
                    if interrupt.load(Ordering::SeqCst) {
                        reason.store(2, Ordering::SeqCst);
                    } else if Instant::now() >= deadline {
                        reason.store(1, Ordering::SeqCst);
                    }
                }
                if reason.load(Ordering::SeqCst) != 0 {
                    // SAFETY: `target` is alive: Watchdog::finish joins this thread
                    // before the vCPU thread leaves boot().
                    unsafe {
                        libc::pthread_kill(target, kick_signal());
                    }
                    thread::park_timeout(Duration::from_millis(1));
                } else {
                    let left = deadline.saturating_duration_since(Instant::now());
                    thread::park_timeout(left.min(Duration::from_millis(5)));
                }
            })
        };
        Watchdog {
            done,
            reason,
            handle: Some(handle),
        }
    }

    fn reason(&self) -> u8 {
        self.reason.load(Ordering::SeqCst)
    }

    fn finish(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish();
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else {
        map.insert(key.to_string(), 1);
    }
}

fn port_name(port: u16) -> &'static str {
    match port {
        p if (ports::SERIAL_LOG..ports::SERIAL_LOG + 8).contains(&p) => "serial",
        ports::RESULTS => "debugcon",
        p if (ports::EXIT..ports::EXIT + 4).contains(&p) => "exit",
        0x40..=0x43 | 0x61 => "pit",
        _ => "other",
    }
}

fn unexpected(message: impl Into<String>) -> BootEnd {
    BootEnd::Unexpected {
        code: None,
        signal: None,
        message: message.into(),
    }
}

/// One VM exit, copied out of `kvm_run`.
enum Exit {
    Continue,
    Counted(&'static str),
    Out(u16, Vec<u8>),
    End(&'static str, BootEnd),
}

/// The guest-visible devices (COM1, debugcon, debug-exit) and what they collected.
struct Devices {
    log: std::io::BufWriter<std::fs::File>,
    verbose: bool,
    results: RecordReader,
    serial_scratch: u8,
    stats: VmmStats,
    stderr: String,
    has_pit: bool,
    t0: Instant,
}

impl Devices {
    fn unhandled(&mut self, exit: &str, key: String, message: impl FnOnce() -> String) {
        bump(&mut self.stats.exits, exit);
        if !self.stats.unknown_ports.contains_key(&key) {
            self.stderr.push_str("kmbench-vmm: ");
            self.stderr.push_str(&message());
            self.stderr.push('\n');
        }
        bump(&mut self.stats.unknown_ports, &key);
    }

    fn emit_line(&mut self, line: Line, on_event: &mut dyn FnMut(Event)) {
        if matches!(line, Line::Record(_)) && self.stats.first_record_us.is_none() {
            self.stats.first_record_us = Some(self.t0.elapsed().as_secs_f64() * 1e6);
        }
        on_event(super::qemu::line_event(line));
    }

    /// Bytes the guest wrote to `port` (via an exit or the coalesced ring).
    /// `Some(end)` when the guest asked to stop.
    fn write_port(
        &mut self,
        port: u16,
        data: &[u8],
        on_event: &mut dyn FnMut(Event),
    ) -> Option<BootEnd> {
        match port {
            ports::SERIAL_LOG => {
                let _ = self.log.write_all(data);
                if self.verbose {
                    let _ = std::io::stderr().write_all(data);
                }
            }
            p if p > ports::SERIAL_LOG && p < ports::SERIAL_LOG + 8 => {
                if p == ports::SERIAL_LOG + 7 {
                    self.serial_scratch = *data.last().unwrap_or(&0);
                }
            }
            ports::RESULTS => {
                let mut results = std::mem::take(&mut self.results);
                results.push(data, &mut |l| self.emit_line(l, on_event));
                self.results = results;
            }
            ports::EXIT => {
                let mut v = [0u8; 4];
                let n = data.len().min(4);
                v[..n].copy_from_slice(&data[..n]);
                let code = u32::from_le_bytes(v);
                return Some(match GuestExit::from_code(code) {
                    Some(exit) => BootEnd::Exited {
                        exit,
                        raw: code as i32,
                    },
                    None => BootEnd::Unexpected {
                        code: Some(code as i32),
                        signal: None,
                        message: format!(
                            "guest wrote {code} to the exit port, which is not a guest exit code"
                        ),
                    },
                });
            }
            0x40..=0x43 | 0x61 if self.has_pit => {}
            p => {
                let len = data.len();
                let key = format!("out {p:#x}");
                if !self.stats.unknown_ports.contains_key(&key) {
                    self.stderr.push_str(&format!(
                        "kmbench-vmm: guest wrote to unhandled port {p:#x} ({len} bytes); ignored\n"
                    ));
                }
                bump(&mut self.stats.unknown_ports, &key);
            }
        }
        None
    }

    /// An OUT that exited to us.
    fn out(&mut self, port: u16, data: &[u8], on_event: &mut dyn FnMut(Event)) -> Option<BootEnd> {
        bump(&mut self.stats.exits, io_key(true, port));
        self.write_port(port, data, on_event)
    }

    /// An IN that exited to us: fill `data`.
    fn input(&mut self, port: u16, data: &mut [u8]) {
        bump(&mut self.stats.exits, io_key(false, port));
        let value = match port {
            p if p == ports::SERIAL_LOG + 5 => 0x60, // LSR: THR empty, idle
            p if p == ports::SERIAL_LOG + 7 => self.serial_scratch,
            p if (ports::SERIAL_LOG..ports::SERIAL_LOG + 8).contains(&p) => 0,
            ports::RESULTS => 0xe9, // Bochs debugcon readback
            p => {
                let key = format!("in {p:#x}");
                if !self.stats.unknown_ports.contains_key(&key) {
                    self.stderr.push_str(&format!(
                        "kmbench-vmm: guest read unhandled port {p:#x}; returning 0xff\n"
                    ));
                }
                bump(&mut self.stats.unknown_ports, &key);
                0xff
            }
        };
        data.fill(value);
    }

    /// Writes KVM appended to the coalesced-PIO ring instead of exiting.
    fn drain_ring(&mut self, vcpu: &mut VcpuFd, on_event: &mut dyn FnMut(Event)) {
        while let Ok(Some(e)) = vcpu.coalesced_mmio_read() {
            let len = (e.len as usize).min(e.data.len());
            let port = e.phys_addr as u16;
            bump(&mut self.stats.exits, "coalesced_pio");
            // Only the log and results ports are registered; neither ends the guest.
            let _ = self.write_port(port, &e.data[..len], on_event);
        }
    }
}

fn io_key(out: bool, port: u16) -> &'static str {
    match (out, port_name(port)) {
        (true, "serial") => "io_out_serial",
        (true, "debugcon") => "io_out_debugcon",
        (true, "exit") => "io_out_exit",
        (true, "pit") => "io_out_pit",
        (true, _) => "io_out_other",
        (false, "serial") => "io_in_serial",
        (false, "debugcon") => "io_in_debugcon",
        (false, "pit") => "io_in_pit",
        (false, _) => "io_in_other",
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
            "vcpus=1".into(),
            "devices=irqchip+pit(in-kernel),com1@0x3f8(log),debugcon@0xe9(records),debug-exit@0xf4"
                .into(),
            format!("cmdline={}", spec.cmdline),
        ]
    }

    fn boot(&mut self, spec: &LaunchSpec, on_event: &mut dyn FnMut(Event)) -> Result<BootReport> {
        let log_file = crate::safe_fs::create_fresh(&spec.log_path)
            .map_err(|e| HarnessError::io(format!("creating {}", spec.log_path.display()), e))?;
        let mut dev = Devices {
            log: std::io::BufWriter::new(log_file),
            verbose: spec.verbose,
            results: RecordReader::new(),
            serial_scratch: 0,
            stats: VmmStats::default(),
            stderr: String::new(),
            has_pit: false,
            t0: Instant::now(),
        };

        if spec.accel != AccelKind::Kvm {
            return Ok(BootReport {
                end: BootEnd::LaunchFailed {
                    message: "the embedded VMM runs on KVM only; use --backend qemu for TCG".into(),
                },
                stderr: dev.stderr,
            });
        }
        if spec.host_backing == HostBacking::Hugetlbfs {
            if let Err(message) = check_hugetlb_pool(spec.memory_mib) {
                return Ok(BootReport {
                    end: BootEnd::LaunchFailed {
                        message: format!("the embedded VMM cannot start the guest: {message}"),
                    },
                    stderr: dev.stderr,
                });
            }
        }

        on_event(Event::Launched);
        let t0 = Instant::now();
        dev.t0 = t0;
        let deadline = super::deadline_after(t0, spec.timeout);
        let mut vm = match create_vm(spec, &mut dev.stats) {
            Ok(vm) => vm,
            Err(message) => {
                let mut stats = dev.stats;
                stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
                stats.rss_peak_kib = peak_rss_kib();
                self.last = Some(stats);
                return Ok(BootReport {
                    end: BootEnd::LaunchFailed {
                        message: format!("the embedded VMM cannot start the guest: {message}"),
                    },
                    stderr: dev.stderr,
                });
            }
        };
        dev.has_pit = vm.has_pit;
        dev.stats.setup_us = t0.elapsed().as_secs_f64() * 1e6;

        let mut watchdog = Watchdog::start(deadline, spec.interrupt);
        let end = loop {
            match watchdog.reason() {
                1 => break BootEnd::Timeout,
                2 => break BootEnd::Interrupted,
                _ => {}
            }
            // Decode the exit into something owned, so the coalesced ring (which needs the
            // vCPU again) can be drained first: ring entries are older than this exit.
            let exit = match vm.vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => Exit::Out(port, data.to_vec()),
                Ok(VcpuExit::IoIn(port, data)) => {
                    dev.input(port, data);
                    Exit::Continue
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    dev.unhandled("mmio_read", format!("mmio read {addr:#x}"), || {
                        format!("guest read unbacked physical address {addr:#x}; returning 0xff")
                    });
                    data.fill(0xff);
                    Exit::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, _)) => {
                    dev.unhandled("mmio_write", format!("mmio write {addr:#x}"), || {
                        format!("guest wrote unbacked physical address {addr:#x}; ignored")
                    });
                    Exit::Continue
                }
                Ok(VcpuExit::Hlt) => Exit::End(
                    "hlt",
                    unexpected("guest halted (HLT) without writing the exit port"),
                ),
                Ok(VcpuExit::Shutdown) => {
                    Exit::End("shutdown", unexpected("guest triple fault / shutdown"))
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => Exit::End(
                    "fail_entry",
                    unexpected(format!(
                        "KVM entry failed (hardware reason {reason:#x}, cpu {cpu})"
                    )),
                ),
                Ok(VcpuExit::InternalError) => Exit::End("internal_error", BootEnd::Timeout),
                Ok(VcpuExit::Intr) => Exit::Counted("intr"),
                Ok(VcpuExit::SystemEvent(kind, _)) => Exit::End(
                    "system_event",
                    unexpected(format!("guest system event {kind} (reset/shutdown)")),
                ),
                Ok(other) => Exit::End(
                    "other",
                    unexpected(format!("unexpected VM exit: {other:?}")),
                ),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    Exit::Counted("signal")
                }
                Err(e) => Exit::End("error", unexpected(format!("KVM_RUN failed: {e}"))),
            };
            if vm.coalesced {
                dev.drain_ring(&mut vm.vcpu, on_event);
            }
            match exit {
                Exit::Continue => {}
                Exit::Counted(what) => bump(&mut dev.stats.exits, what),
                Exit::Out(port, data) => {
                    if let Some(end) = dev.out(port, &data, on_event) {
                        break end;
                    }
                }
                Exit::End("internal_error", _) => {
                    bump(&mut dev.stats.exits, "internal_error");
                    // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                    // active union member.
                    let sub = unsafe { vm.vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    break unexpected(format!("KVM internal error (suberror {sub})"));
                }
                Exit::End(what, end) => {
                    bump(&mut dev.stats.exits, what);
                    break end;
                }
            }
        };
        watchdog.finish();
        if vm.coalesced {
            dev.drain_ring(&mut vm.vcpu, on_event);
        }
        let mut stats = std::mem::take(&mut dev.stats);
        stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
        // A record line cut short by the exit still counts (QEMU's reader does the same).
        {
            let mut results = std::mem::take(&mut dev.results);
            dev.stats = stats;
            results.finish(&mut |l| dev.emit_line(l, on_event));
            stats = std::mem::take(&mut dev.stats);
        }
        let _ = dev.log.flush();
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

    fn extra(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        let Some(s) = &self.last else {
            return m;
        };
        m.insert("vmm_exits".into(), json!(s.exits));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_layout() {
        let b = start_info_bytes(2);
        assert_eq!(
            u32::from_le_bytes(b[0..4].try_into().unwrap()),
            HVM_START_MAGIC
        );
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            CMDLINE_ADDR
        );
        assert_eq!(
            u64::from_le_bytes(b[40..48].try_into().unwrap()),
            MEMMAP_ADDR
        );
        assert_eq!(u32::from_le_bytes(b[48..52].try_into().unwrap()), 2);
    }

    #[test]
    fn memory_map_has_low_and_high_ram() {
        let m = memmap(64 << 20);
        assert_eq!(m[0], (0, LOW_RAM_END, 1));
        assert_eq!(m[1], (HIGH_RAM_START, (64 << 20) - HIGH_RAM_START, 1));
    }

    #[test]
    fn layout_stays_below_low_ram_end() {
        const {
            assert!(CMDLINE_ADDR + (CMDLINE_MAX as u64) < PML4_ADDR);
            assert!(PD_ADDR + 4 * 4096 <= LOW_RAM_END);
            assert!(GDT_ADDR + 24 <= BOOT_STACK - 0x1000);
        }
    }
}

//! A vCPU and its boot state: 64-bit long mode at the kernel's ELF entry, as Firecracker
//! (`arch/x86_64/regs.rs`, `gdt.rs`, `msr.rs`) and uhyve set up theirs.
//!
//! | state | value | as |
//! |---|---|---|
//! | CS | selector 0x08, base 0, limit 4 GiB, type 0xb, S=1 P=1 DPL=0 L=1 D=0 G=1 | Firecracker `gdt_entry(0xa09b, 0, 0xfffff)` |
//! | DS ES FS GS SS | selector 0x10, type 0x3, S=1 P=1 D/B=1 L=0 G=1 | Firecracker `gdt_entry(0xc093, 0, 0xfffff)` |
//! | TR | selector 0x18, type 0xb (busy 64-bit TSS), S=0 P=1 G=1 | Firecracker `gdt_entry(0x808b, 0, 0xfffff)` |
//! | GDTR | 0x500, 4 entries | Firecracker `BOOT_GDT_OFFSET` |
//! | CR0 | PE ET WP PG | Firecracker PE PG (+ET, +WP: the kernel relies on WP) |
//! | CR3 | 0x9000 (PML4) | Firecracker `PML4_START` |
//! | CR4 | PAE | Firecracker, uhyve |
//! | EFER | LME LMA NXE | Firecracker LME LMA, uhyve (+NXE: the kernel's tables use NX) |
//! | RIP, RDI, RSP, RFLAGS | ELF entry, `hvm_start_info`, 0x5000, 0x2 | Linux 64-bit boot protocol uses RSI for boot params; PVH's %ebx moves to %rdi for a 64-bit entry |
//! | FPU | FCW 0x37f, MXCSR 0x1f80 | Firecracker `setup_fpu` |
//! | MSRs | SYSENTER_*, STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE = 0; MISC_ENABLE = fast strings; MTRRdefType = enabled, write-back | Firecracker `create_boot_msr_entries` |
//!
//! The IDT is empty (base 0, limit 0): the kernel installs its own before it can fault.
//!
//! [`Vcpu`] owns one vCPU fd; a VM holds a list of them, so running one thread per vCPU
//! means moving a [`Vcpu`] to each thread (the fd is `Send`) and giving each its own
//! CPUID table ([`super::cpuid::for_vcpu`] with its index). Only vCPU 0 gets the entry
//! registers ([`Vcpu::configure`]); application processors ([`Vcpu::configure_ap`]) start
//! in wait-for-SIPI as on hardware (see [`super::aps`]).
use kmbench_bootabi::gdt;
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, CpuId, Msrs};
use kvm_ioctls::{VcpuFd, VmFd};

use super::error::{Result, VmmError};
use super::layout::{BOOT_STACK, GDT_ADDR, PML4_ADDR, START_INFO_ADDR};

// Control-register and EFER bits.
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;

// MSR indices (Intel SDM vol. 4).
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_MISC_ENABLE.FAST_STRING.
pub const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRdefType: E (MTRRs enabled), default type 6 (write-back).
pub const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// The flat 64-bit code segment (GDT entry 1).
pub fn code_segment() -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: gdt::CODE64_SELECTOR,
        type_: 0xb, // execute/read, accessed
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    }
}

/// The flat data segment (GDT entry 2).
pub fn data_segment() -> kvm_segment {
    kvm_segment {
        selector: gdt::DATA_SELECTOR,
        type_: 0x3, // read/write, accessed
        db: 1,
        l: 0,
        ..code_segment()
    }
}

/// The placeholder TSS (GDT entry 3): VMX entry checks want a usable busy TSS in TR.
pub fn tss_segment() -> kvm_segment {
    kvm_segment {
        selector: gdt::TSS_SELECTOR,
        type_: 0xb, // busy 64-bit TSS
        s: 0,
        db: 0,
        l: 0,
        ..code_segment()
    }
}

/// `sregs` (as KVM_GET_SREGS returned them) set for the 64-bit entry.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let data = data_segment();
    sregs.cs = code_segment();
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss_segment();
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (gdt::ENTRIES * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_WP | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
    sregs
}

/// General registers at the entry point `entry`.
pub fn entry_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rdi: START_INFO_ADDR,
        rsp: BOOT_STACK,
        rbp: 0,
        rflags: 0x2, // bit 1 is reserved-set; IF off
        ..Default::default()
    }
}

/// x87/SSE state after FNINIT / at reset.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// The boot MSRs, (index, value).
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
}

/// One virtual CPU.
pub struct Vcpu {
    /// 0-based; also its APIC ID.
    pub index: u32,
    pub fd: VcpuFd,
}

impl Vcpu {
    pub fn create(vm: &VmFd, index: u32) -> Result<Vcpu> {
        let fd = vm
            .create_vcpu(index as u64)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        Ok(Vcpu { index, fd })
    }

    /// The TSC frequency KVM runs this vCPU at (kHz), when it says.
    pub fn tsc_khz(&self) -> Option<u32> {
        self.fd.get_tsc_khz().ok().filter(|k| *k != 0)
    }

    /// Give the vCPU its CPUID table, MSRs, and (the boot vCPU) the 64-bit entry state.
    /// Returns a note when KVM took fewer MSRs than offered (kvm_pvm may ignore some).
    pub fn configure(&self, cpuid: &CpuId, entry: u64) -> Result<Option<String>> {
        let note = self.configure_ap(cpuid)?;
        let sregs = self
            .fd
            .get_sregs()
            .map_err(VmmError::kvm("KVM_GET_SREGS"))?;
        self.fd
            .set_sregs(&long_mode_sregs(sregs))
            .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(&entry_regs(entry))
            .map_err(VmmError::kvm("KVM_SET_REGS"))?;
        self.fd
            .set_fpu(&boot_fpu())
            .map_err(VmmError::kvm("KVM_SET_FPU"))?;
        Ok(note)
    }

    /// An application processor: its CPUID table and the boot MSRs, no entry registers
    /// (it stays in wait-for-SIPI until the guest starts it, see `super::aps`).
    pub fn configure_ap(&self, cpuid: &CpuId) -> Result<Option<String>> {
        self.fd
            .set_cpuid2(cpuid)
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        let wanted = boot_msrs();
        let entries: Vec<kvm_msr_entry> = wanted
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| VmmError::GuestMemory {
            what: "MSR list",
            detail: format!("{} entries do not fit", entries.len()),
        })?;
        let set = self
            .fd
            .set_msrs(&msrs)
            .map_err(VmmError::kvm("KVM_SET_MSRS"))?;
        let note = (set < wanted.len()).then(|| {
            format!(
                "KVM_SET_MSRS took {set} of {} boot MSRs (stopped at {:#x})",
                wanted.len(),
                wanted[set].0
            )
        });
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode a GDT descriptor the way the CPU (and Firecracker's `kvm_segment_from_gdt`)
    /// does, to check the table and the segment registers agree.
    fn from_gdt(d: u64, selector: u16) -> kvm_segment {
        let limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
        let g = ((d >> 55) & 1) as u8;
        kvm_segment {
            base: ((d >> 16) & 0xff_ffff) | (((d >> 56) & 0xff) << 24),
            limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
            selector,
            type_: ((d >> 40) & 0xf) as u8,
            present: ((d >> 47) & 1) as u8,
            dpl: ((d >> 45) & 3) as u8,
            db: ((d >> 54) & 1) as u8,
            s: ((d >> 44) & 1) as u8,
            l: ((d >> 53) & 1) as u8,
            g,
            ..Default::default()
        }
    }

    #[test]
    fn segments_match_the_gdt_and_firecracker() {
        // Firecracker: gdt_entry(0xa09b, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff),
        // gdt_entry(0x808b, 0, 0xfffff) at selectors 0x08, 0x10, 0x18.
        assert_eq!(gdt::CODE64, 0x00af_9b00_0000_ffff);
        assert_eq!(gdt::DATA, 0x00cf_9300_0000_ffff);
        assert_eq!(gdt::TSS, 0x008f_8b00_0000_ffff);
        assert_eq!(from_gdt(gdt::CODE64, 0x08), code_segment());
        assert_eq!(from_gdt(gdt::DATA, 0x10), data_segment());
        assert_eq!(from_gdt(gdt::TSS, 0x18), tss_segment());
        let cs = code_segment();
        assert_eq!(
            (cs.l, cs.db, cs.dpl, cs.present),
            (1, 0, 0, 1),
            "64-bit ring-0 code"
        );
    }

    #[test]
    fn long_mode_control_registers() {
        let s = long_mode_sregs(kvm_sregs::default());
        assert_eq!(
            s.cr0 & (CR0_PE | CR0_PG),
            CR0_PE | CR0_PG,
            "protected mode + paging"
        );
        assert_eq!(s.cr0, 0x8001_0011);
        assert_eq!(
            s.cr4, CR4_PAE,
            "PAE, nothing the kernel does not enable itself"
        );
        assert_eq!(s.efer, EFER_LME | EFER_LMA | EFER_NXE);
        assert_eq!(s.efer, 0xd00);
        assert_eq!(s.cr3, 0x9000, "Firecracker's PML4_START");
        assert_eq!((s.gdt.base, s.gdt.limit), (0x500, 31));
        assert_eq!(
            (s.cs.selector, s.ss.selector, s.tr.selector),
            (0x08, 0x10, 0x18)
        );
        assert_eq!((s.idt.base, s.idt.limit), (0, 0));
    }

    #[test]
    fn entry_registers_and_fpu() {
        let r = entry_regs(0x10_1234);
        assert_eq!(r.rip, 0x10_1234);
        assert_eq!(r.rdi, START_INFO_ADDR, "%rdi = hvm_start_info");
        assert_eq!(r.rflags, 0x2, "interrupts off");
        assert_eq!(r.rsp, BOOT_STACK);
        let f = boot_fpu();
        assert_eq!((f.fcw, f.mxcsr), (0x37f, 0x1f80));
    }

    #[test]
    fn boot_msrs_like_firecracker() {
        let m: std::collections::BTreeMap<u32, u64> = boot_msrs().into_iter().collect();
        assert_eq!(m[&MSR_IA32_MISC_ENABLE], 1, "fast strings");
        assert_eq!(m[&MSR_MTRR_DEF_TYPE], 0x806, "MTRRs on, default write-back");
        for msr in [
            MSR_IA32_SYSENTER_CS,
            MSR_STAR,
            MSR_LSTAR,
            MSR_CSTAR,
            MSR_SYSCALL_MASK,
            MSR_KERNEL_GS_BASE,
        ] {
            assert_eq!(m[&msr], 0, "{msr:#x}");
        }
    }
}

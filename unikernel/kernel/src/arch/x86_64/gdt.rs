//! GDT, TSS and the TSS I/O permission bitmap.
//!
//! Selectors: 0x08 kernel code, 0x10 kernel data, 0x1b user data, 0x23 user code,
//! 0x28 TSS. User code is deliberately *not* 0x33: under kvm_pvm, CS reads 0x33 in ring 3
//! whatever the kernel loaded, which is how the guest recognises that hypervisor.
//! The TSS holds RSP0 (the stack exceptions from CPL3 land on), IST1 (double fault) and an
//! I/O bitmap opening only the kernel's own ports to CPL3 (IOPL is ignored under kvm_pvm).
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x1b;
pub const USER_CS: u16 = 0x23;

/// Ports CPL3 code may use: PIT (0x40-0x43), port 0x61, debugcon (0xe9),
/// isa-debug-exit (0xf4-0xf7), COM2 (0x2f8-0x2ff, serve-mode requests), COM1 (0x3f8-0x3ff).
const CPL3_PORTS: [(u16, u16); 6] = [
    (0x40, 0x43),
    (0x61, 0x61),
    (0xe9, 0xe9),
    (0xf4, 0xf7),
    (0x2f8, 0x2ff),
    (0x3f8, 0x3ff),
];

const fn build_iomap() -> [u8; 8193] {
    let mut map = [0xffu8; 8193];
    let mut i = 0;
    while i < CPL3_PORTS.len() {
        let (lo, hi) = CPL3_PORTS[i];
        let mut p = lo;
        while p <= hi {
            map[(p / 8) as usize] &= !(1 << (p % 8));
            p += 1;
        }
        i += 1;
    }
    map
}

#[repr(C, align(16))]
pub struct TssWithIoMap {
    pub tss: TaskStateSegment,
    pub iomap: [u8; 8193],
}

const fn initial_tss() -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    tss
}

/// Built at compile time (no ring-0 work at boot). Only ever written through raw
/// pointers (`init`, `set_kernel_stack`, `set_double_fault_stack`) on the boot CPU with
/// interrupts off; no `&mut` to it is formed.
static mut TSS: TssWithIoMap = TssWithIoMap {
    tss: initial_tss(),
    iomap: build_iomap(),
};
/// Written exactly once by `init` (through a raw pointer, before it is loaded), then only
/// read; no `&mut` to it is formed.
static mut GDT: GlobalDescriptorTable = GlobalDescriptorTable::empty();

/// IST1: the double-fault stack (so a kernel stack overflow can still be reported).
/// Only its address is taken; the CPU is its sole user.
static mut DOUBLE_FAULT_STACK: [u8; 16384] = [0; 16384];
/// RSP0 until `mm` installs a guarded kernel stack. Only its address is taken.
static mut EARLY_KERNEL_STACK: [u8; 32768] = [0; 32768];

pub fn init() {
    // Called once on the boot CPU before anything else uses the GDT/TSS, with interrupts
    // off. `tss_ref` is only used to put the TSS's address and limit into its descriptor
    // (the descriptor keeps no reference); later stores to the TSS go through raw
    // pointers, never through it. The GDT is written once, then only shared.
    // SAFETY: one-time init with nothing observing the half-built tables, so the raw-
    // pointer writes race with nothing; both tables stay in their statics, so the
    // pointers `lgdt`/`ltr` load stay valid.
    unsafe {
        let tss = core::ptr::addr_of_mut!(TSS);
        (*tss).tss.interrupt_stack_table[0] = VirtAddr::from_ptr(
            core::ptr::addr_of!(DOUBLE_FAULT_STACK)
                .cast::<u8>()
                .add(16384),
        );
        (*tss).tss.privilege_stack_table[0] = VirtAddr::from_ptr(
            core::ptr::addr_of!(EARLY_KERNEL_STACK)
                .cast::<u8>()
                .add(32768),
        );
        let tss_ref: &'static TssWithIoMap = &*core::ptr::addr_of!(TSS);
        let mut gdt = GlobalDescriptorTable::empty();
        let kcs = gdt.append(Descriptor::kernel_code_segment());
        let kds = gdt.append(Descriptor::kernel_data_segment());
        let uds = gdt.append(Descriptor::user_data_segment());
        let ucs = gdt.append(Descriptor::user_code_segment());
        let tss_sel = gdt.append(
            Descriptor::tss_segment_with_iomap(&tss_ref.tss, &tss_ref.iomap)
                .expect("TSS I/O map layout"),
        );
        debug_assert_eq!(
            (kcs.0, kds.0, uds.0 | 3, ucs.0 | 3, tss_sel.0),
            (KERNEL_CS, KERNEL_DS, USER_DS, USER_CS, 0x28)
        );
        core::ptr::addr_of_mut!(GDT).write(gdt);
        (*core::ptr::addr_of!(GDT)).load_unsafe();
        CS::set_reg(kcs);
        SS::set_reg(kds);
        DS::set_reg(kds);
        ES::set_reg(kds);
        load_tss(tss_sel);
    }
}

/// Point RSP0 (where CPL3→CPL0 transitions land) at a new kernel stack.
pub fn set_kernel_stack(top: u64) {
    // SAFETY: single CPU with interrupts off; RSP0 is only read by the CPU on the next
    // privilege change, which cannot happen during this store.
    unsafe { (*core::ptr::addr_of_mut!(TSS)).tss.privilege_stack_table[0] = VirtAddr::new(top) };
}

/// Point IST1 (double fault) at a new stack.
pub fn set_double_fault_stack(top: u64) {
    // SAFETY: as for `set_kernel_stack`.
    unsafe { (*core::ptr::addr_of_mut!(TSS)).tss.interrupt_stack_table[0] = VirtAddr::new(top) };
}

pub fn user_selectors() -> (SegmentSelector, SegmentSelector) {
    (
        SegmentSelector::new(4, PrivilegeLevel::Ring3),
        SegmentSelector::new(3, PrivilegeLevel::Ring3),
    )
}

/// [start, end) of the static stacks (for stack-overflow diagnosis).
pub fn static_stacks() -> [(u64, u64, &'static str); 2] {
    let df = core::ptr::addr_of!(DOUBLE_FAULT_STACK) as u64;
    let ks = core::ptr::addr_of!(EARLY_KERNEL_STACK) as u64;
    [
        (df, df + 16384, "double-fault IST"),
        (ks, ks + 32768, "early kernel stack"),
    ]
}

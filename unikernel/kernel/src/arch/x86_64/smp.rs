//! Application processors, instruction level: the real-mode trampoline an AP starts in
//! after INIT-SIPI-SIPI, the static AP stacks, each AP's own GDT and TSS, and which CPU
//! the caller is on.
//!
//! # Bring-up path of one AP
//! The boot CPU copies the trampoline to [`TRAMPOLINE_ADDR`] (below 1 MiB, page-aligned,
//! clear of every boot structure in `kmbench_bootabi::layout`), fills its parameter
//! slots (CR3 = the boot PML4, the AP's stack top and CPU number) and sends INIT, then
//! STARTUP with vector `TRAMPOLINE_ADDR >> 12`. The AP starts in real mode at
//! `CS:IP = 0x9000:0`, loads the trampoline's GDT, turns on PAE, EFER.LME|NXE and
//! CR0.PG|PE|WP in one go (real mode → long mode, as Linux's trampoline_64 does via a
//! 32-bit hop), far-jumps into 64-bit code and calls [`smp_ap_entry64`]'s Rust target
//! `ap_main(cpu)` on its stack. A VMM that starts APs in 64-bit mode itself may enter
//! at `smp_ap_entry64` with `%rdi` = CPU number and `%rsp` = [`ap_stack_top`].
//!
//! # Which CPU am I?
//! [`current_cpu`] looks at the stack pointer: each AP runs only on its own static stack
//! (and its own double-fault stack), everything else is the boot CPU. That needs no MSR,
//! no APIC access and no GS base, so it works at any CPL and in fault paths.
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kmbench_protocol::limits::MAX_CPUS;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// Where the trampoline runs: physical 0x90000 (STARTUP vector 0x90). Low RAM between the
/// boot ABI's plan area (ends 0x90000) and the EBDA (0x9fc00); `mm` never hands out the
/// first MiB.
pub const TRAMPOLINE_ADDR: u64 = 0x9_0000;
/// Bytes per AP stack (static, no guard page: APs run only the parking loop and the
/// fault paths).
pub const AP_STACK_BYTES: usize = 16 * 1024;
const AP_DF_STACK_BYTES: usize = 4096;

const _: () = assert!(
    TRAMPOLINE_ADDR
        >= kmbench_bootabi::layout::PLAN_ADDR + kmbench_bootabi::layout::PLAN_MAX as u64
);
const _: () = assert!(TRAMPOLINE_ADDR + 4096 <= kmbench_bootabi::layout::LOW_RAM_END);

global_asm!(
    r#"
    .section .rodata.smp_trampoline, "a"
    .p2align 12
    .global smp_trampoline_start
    .global smp_trampoline_end
    .global smp_tramp_cr3
    .global smp_tramp_stack
    .global smp_tramp_cpu
    .code16
smp_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (smp_tramp_gdtr - smp_trampoline_start)
    movl %cr4, %eax
    orl $0x20, %eax                       /* PAE */
    movl %eax, %cr4
    movl (smp_tramp_cr3 - smp_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx                /* EFER: LME | NXE */
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax                 /* PG | WP | PE */
    movl %eax, %cr0
    ljmpl $0x08, $(smp_tramp_long - smp_trampoline_start + 0x90000)

    .code64
smp_tramp_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq (smp_tramp_stack - smp_trampoline_start + 0x90000), %rsp
    movq (smp_tramp_cpu - smp_trampoline_start + 0x90000), %rdi
    movabsq $smp_ap_entry64, %rax
    jmp *%rax

    .p2align 3
smp_tramp_gdt:
    .quad 0
    .quad 0x00af9a000000ffff              /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff              /* 0x10: data */
smp_tramp_gdtr:
    .word 23
    .long smp_tramp_gdt - smp_trampoline_start + 0x90000
    .p2align 3
smp_tramp_cr3:
    .quad 0
smp_tramp_stack:
    .quad 0
smp_tramp_cpu:
    .quad 0
smp_trampoline_end:

    .text
    /* The benchmark IPI: count it, EOI the local APIC (xAPIC MMIO), return. */
    .global smp_ipi_stub
smp_ipi_stub:
    lock incq smp_ipi_acks(%rip)
    pushq %rax
    movabsq $0xfee000b0, %rax
    movl $0, (%rax)
    popq %rax
    iretq
    /* The TLB-flush IPI: save the caller-saved registers, call the Rust handler
       (crate::smp::shootdown), restore, return. 40-byte frame + 72 bytes of registers
       leave RSP 16-aligned before the call, as the ABI wants. */
    .global smp_flush_stub
smp_flush_stub:
    cld
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    call smp_flush_ipi
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq
    /* A spurious APIC interrupt: no EOI. */
    .global smp_spurious_stub
smp_spurious_stub:
    iretq

    .global smp_ap_entry64
smp_ap_entry64:
    cli
    cld
    xorl %ebp, %ebp
    andq $-16, %rsp
    call smp_ap_main
2:  hlt
    jmp 2b
"#,
    options(att_syntax)
);

/// IPIs taken by `smp_ipi_stub` (on any CPU).
#[no_mangle]
pub static smp_ipi_acks: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

extern "C" {
    fn smp_ipi_stub();
    fn smp_flush_stub();
    fn smp_spurious_stub();
    static smp_trampoline_start: u8;
    static smp_trampoline_end: u8;
    static smp_tramp_cr3: u8;
    static smp_tramp_stack: u8;
    static smp_tramp_cpu: u8;
}

/// A per-CPU slot only its own CPU writes (and the boot CPU before that CPU starts).
#[repr(C, align(16))]
struct PerCpuCell<T>(UnsafeCell<T>);
// SAFETY: slot `i` is written by the boot CPU before AP `i` is started and afterwards only
// by AP `i` itself (see each use); no two CPUs access one slot concurrently.
unsafe impl<T> Sync for PerCpuCell<T> {}

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

struct ApCpu {
    stack: Stack<AP_STACK_BYTES>,
    df_stack: Stack<AP_DF_STACK_BYTES>,
    tss: TaskStateSegment,
    gdt: GlobalDescriptorTable,
}

const AP_INIT: PerCpuCell<ApCpu> = PerCpuCell(UnsafeCell::new(ApCpu {
    stack: Stack([0; AP_STACK_BYTES]),
    df_stack: Stack([0; AP_DF_STACK_BYTES]),
    tss: TaskStateSegment::new(),
    gdt: GlobalDescriptorTable::empty(),
}));
/// Index `i` belongs to CPU `i + 1` (the boot CPU has its own tables in `gdt`).
static APS: [PerCpuCell<ApCpu>; MAX_CPUS - 1] = [AP_INIT; MAX_CPUS - 1];
/// Set once the boot CPU starts any AP: until then [`current_cpu`] is 0 without looking.
static SMP_ACTIVE: AtomicBool = AtomicBool::new(false);

fn ap_range(cpu: usize) -> (u64, u64) {
    let p = APS[cpu - 1].0.get() as u64;
    (p, p + core::mem::size_of::<ApCpu>() as u64)
}

/// Top of AP `cpu`'s stack (1 ≤ cpu < MAX_CPUS).
pub fn ap_stack_top(cpu: usize) -> u64 {
    let p = APS[cpu - 1].0.get();
    // SAFETY: only the address of the field is computed.
    unsafe { core::ptr::addr_of!((*p).stack) as u64 + AP_STACK_BYTES as u64 }
}

/// The [start, end) of every AP's stacks, named, for fault diagnosis.
pub fn ap_stack_ranges(cpus: usize) -> impl Iterator<Item = (usize, u64, u64)> {
    (1..cpus.min(MAX_CPUS)).map(|c| {
        let (s, e) = ap_range(c);
        (c, s, e)
    })
}

/// The CPU the caller runs on: 0 for the boot CPU, `n` on AP `n` (by stack pointer: its
/// static stacks, or its worker stack once it runs work).
#[inline]
pub fn current_cpu() -> usize {
    if !SMP_ACTIVE.load(Ordering::Relaxed) {
        return 0;
    }
    let rsp: u64;
    // SAFETY: reads the stack pointer only.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    let first = APS[0].0.get() as u64;
    let size = core::mem::size_of::<ApCpu>() as u64;
    if rsp >= first && rsp < first + size * (MAX_CPUS as u64 - 1) {
        return ((rsp - first) / size) as usize + 1;
    }
    let base = WORKER_BASE.load(Ordering::Relaxed);
    let slot = WORKER_SLOT.load(Ordering::Relaxed);
    if base != 0 && rsp >= base && rsp < base + slot * MAX_CPUS as u64 {
        ((rsp - base) / slot) as usize
    } else {
        0
    }
}

/// Whether any AP was started.
pub fn smp_active() -> bool {
    SMP_ACTIVE.load(Ordering::Relaxed)
}

/// Copy the trampoline to [`TRAMPOLINE_ADDR`] with CR3 = `cr3` and mark SMP active.
///
/// # Safety
/// The boot page tables must be live (identity map of low memory, writable), and nothing
/// else may use [`TRAMPOLINE_ADDR`]'s page.
pub unsafe fn install_trampoline(cr3: u64) {
    SMP_ACTIVE.store(true, Ordering::Relaxed);
    // SAFETY: linker symbols delimit the trampoline bytes in .rodata; the destination page
    // is identity-mapped low RAM reserved for it (caller contract).
    unsafe {
        let start = &smp_trampoline_start as *const u8;
        let len = &smp_trampoline_end as *const u8 as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE_ADDR as *mut u8, len);
        set_slot(&smp_tramp_cr3, cr3);
    }
}

/// Write one trampoline parameter (the copy at [`TRAMPOLINE_ADDR`]).
///
/// # Safety
/// `sym` is one of the trampoline's slot symbols and the trampoline has been installed.
unsafe fn set_slot(sym: &u8, value: u64) {
    // SAFETY: the slot lies inside the copied trampoline (caller contract); 8-aligned.
    unsafe {
        let off = sym as *const u8 as usize - &smp_trampoline_start as *const u8 as usize;
        core::ptr::write_volatile((TRAMPOLINE_ADDR as usize + off) as *mut u64, value);
    }
}

/// Point the trampoline at AP `cpu` (its number and stack) before its STARTUP IPI.
///
/// # Safety
/// The trampoline is installed and no AP is between STARTUP and reading its slots.
pub unsafe fn prepare_ap(cpu: usize) {
    // SAFETY: caller contract; the slots are the trampoline's.
    unsafe {
        set_slot(&smp_tramp_stack, ap_stack_top(cpu));
        set_slot(&smp_tramp_cpu, cpu as u64);
    }
}

/// On AP `cpu`, first thing: its own GDT (same selectors as the boot CPU's) and TSS
/// (IST1 = its double-fault stack), then the shared IDT.
///
/// # Safety
/// Called once, on AP `cpu` itself, at CPL0.
pub unsafe fn init_ap_tables(cpu: usize) {
    // SAFETY: slot `cpu` is only touched by this AP from now on (PerCpuCell contract); the
    // GDT/TSS live in a static, so the loaded pointers stay valid.
    unsafe {
        let ap = &mut *APS[cpu - 1].0.get();
        let df = core::ptr::addr_of!(ap.df_stack) as u64 + AP_DF_STACK_BYTES as u64;
        ap.tss.interrupt_stack_table[0] = VirtAddr::new(df);
        ap.tss.privilege_stack_table[0] = VirtAddr::new(ap_stack_top(cpu));
        let tss: &'static TaskStateSegment = &*core::ptr::addr_of!(ap.tss);
        let gdt = &mut ap.gdt;
        let kcs = gdt.append(Descriptor::kernel_code_segment());
        let kds = gdt.append(Descriptor::kernel_data_segment());
        gdt.append(Descriptor::user_data_segment());
        gdt.append(Descriptor::user_code_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        gdt.load_unsafe();
        CS::set_reg(kcs);
        SS::set_reg(kds);
        DS::set_reg(kds);
        ES::set_reg(kds);
        load_tss(tss_sel);
    }
    super::idt::load();
}

/// Addresses of the benchmark-IPI, TLB-flush-IPI and spurious-interrupt stubs, for the IDT.
pub fn interrupt_stubs() -> (u64, u64, u64) {
    (
        smp_ipi_stub as *const () as u64,
        smp_flush_stub as *const () as u64,
        smp_spurious_stub as *const () as u64,
    )
}

/// Wait for the next interrupt with interrupts on (`sti; hlt`), then turn them off again.
/// At CPL0 only.
pub fn wait_for_interrupt() {
    // SAFETY: the IDT has a handler for every vector this CPU can receive (`park`'s doc);
    // each returns here.
    unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
}

/// Invalidate one 4K (or the 2M) TLB entry covering `addr`. CPL0 only (the flush IPI).
#[inline(always)]
pub fn invlpg_cpl0(addr: u64) {
    // SAFETY: called at CPL0 (interrupt handler); INVLPG has no other precondition.
    unsafe { core::arch::asm!("invlpg [{0}]", in(reg) addr, options(nostack, preserves_flags)) };
}

/// Flush all non-global TLB entries by reloading CR3. CPL0 only (the flush IPI).
#[inline(always)]
pub fn flush_all_cpl0() {
    // SAFETY: at CPL0; reloading CR3 with its own value only flushes the TLB.
    unsafe {
        core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags))
    };
}

/// Worker stacks (`mm::stacks`): CPU `c` runs on `[base + c·slot, base + (c+1)·slot)`.
static WORKER_BASE: AtomicU64 = AtomicU64::new(0);
static WORKER_SLOT: AtomicU64 = AtomicU64::new(0);

/// Tell [`current_cpu`] where the worker stacks are (before any worker runs on one).
pub fn set_worker_stacks(base: u64, slot: u64) {
    WORKER_SLOT.store(slot, Ordering::Relaxed);
    WORKER_BASE.store(base, Ordering::Release);
}

/// IPIs counted by the benchmark handler so far.
pub fn ipi_acks() -> u64 {
    smp_ipi_acks.load(Ordering::Acquire)
}

/// Park this CPU for good. With `interrupts`, `sti; hlt`: the CPU wakes for IPIs (only
/// the benchmark vector and the spurious vector have handlers; the APs' LVT entries stay
/// masked, so nothing else arrives); else `cli; hlt` (INIT or NMI are the only ways out).
pub fn park(interrupts: bool) -> ! {
    loop {
        if interrupts {
            // SAFETY: the IDT has handlers for every vector this CPU can receive (above);
            // each returns to the loop.
            unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
        } else {
            // SAFETY: cli; hlt only stops this CPU until the next INIT/NMI/SMI.
            unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
        }
    }
}

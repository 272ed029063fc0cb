//! IDT, exception entry stubs and the CPL3→CPL0 gate.
//!
//! Stable Rust has no `extern "x86-interrupt"`, so entry stubs are assembly: each pushes
//! a dummy error code where the CPU pushes none, then its vector, saves the general
//! registers into a [`TrapFrame`] and calls [`exception_dispatch`]. Every exception is
//! fatal (reported, then the VM exits) except a fault at a registered *probe* instruction,
//! which resumes at the probe's fixup (Linux's exception-table idea) so self-tests can
//! check that guard pages really fault.
//!
//! The gate is vector 3 (`int3`, DPL 3): the only software interrupt that works from CPL3
//! under kvm_pvm. Its stub is a few instructions that switch on `rax` and `iretq` without
//! saving anything, because every ring-0 instruction is emulated (~1,500 cycles each)
//! under that hypervisor. Callers declare the clobbered registers (see `privileged`).
use core::arch::global_asm;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::{PrivilegeLevel, VirtAddr};

/// Gate operations (value in `rax`; arguments in `rdi`, `rsi`; result in `rax`).
pub mod gate_op {
    pub const NOP: u64 = 0;
    pub const INVLPG: u64 = 1;
    pub const INVLPG_BATCH: u64 = 2;
    pub const FLUSH_ALL: u64 = 3;
    pub const WRITE_CR3: u64 = 4;
    pub const READ_CR3: u64 = 5;
    pub const WRMSR: u64 = 6;
    pub const RDMSR: u64 = 7;
    pub const INVPCID: u64 = 8;
    pub const READ_CR4: u64 = 9;
    pub const WRITE_CR4: u64 = 10;
    /// Return to the caller with RFLAGS.IF set (an SMP boot CPU at CPL3 takes flush IPIs).
    pub const STI: u64 = 11;
}

global_asm!(
    r#"
    .macro EXC_NOERR n
    .global exc_stub_\n
exc_stub_\n:
    push 0
    push \n
    jmp exc_common
    .endm
    .macro EXC_ERR n
    .global exc_stub_\n
exc_stub_\n:
    push \n
    jmp exc_common
    .endm

    .text
    EXC_NOERR 0
    EXC_NOERR 1
    EXC_NOERR 2
    EXC_NOERR 3
    EXC_NOERR 4
    EXC_NOERR 5
    EXC_NOERR 6
    EXC_NOERR 7
    EXC_ERR 8
    EXC_NOERR 9
    EXC_ERR 10
    EXC_ERR 11
    EXC_ERR 12
    EXC_ERR 13
    EXC_ERR 14
    EXC_NOERR 15
    EXC_NOERR 16
    EXC_ERR 17
    EXC_NOERR 18
    EXC_NOERR 19
    EXC_NOERR 20
    EXC_ERR 21
    EXC_NOERR 22
    EXC_NOERR 23
    EXC_NOERR 24
    EXC_NOERR 25
    EXC_NOERR 26
    EXC_NOERR 27
    EXC_NOERR 28
    EXC_ERR 29
    EXC_ERR 30
    EXC_NOERR 31

exc_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    mov rbp, rsp
    and rsp, -16
    cld
    call exception_dispatch
    mov rsp, rbp
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

    .global gate_entry
gate_entry:
    test rax, rax
    jz 1f
    cmp rax, 1
    je 10f
    cmp rax, 2
    je 20f
    cmp rax, 3
    je 30f
    cmp rax, 4
    je 40f
    cmp rax, 5
    je 50f
    cmp rax, 6
    je 60f
    cmp rax, 7
    je 70f
    cmp rax, 8
    je 80f
    cmp rax, 9
    je 90f
    cmp rax, 10
    je 100f
    cmp rax, 11
    je 110f
    push 0
    push 3
    jmp exc_common
1:  iretq
10: invlpg [rdi]
    iretq
20: test rsi, rsi
    jz 1b
21: mov rdx, [rdi]
    invlpg [rdx]
    add rdi, 8
    dec rsi
    jnz 21b
    iretq
30: mov rax, cr3
    mov cr3, rax
    iretq
40: mov cr3, rdi
    iretq
50: mov rax, cr3
    iretq
60: mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    wrmsr
    iretq
70: mov ecx, edi
    rdmsr
    shl rdx, 32
    or rax, rdx
    iretq
80: invpcid rdi, xmmword ptr [rsi]
    iretq
90: mov rax, cr4
    iretq
100: mov cr4, rdi
    iretq
110: or qword ptr [rsp + 16], 0x200
    iretq

    /* Probe: read one byte at rdi; eax = byte, edx = 0, or edx = 1 if it faulted. */
    .global probe_read_byte
    .global probe_read_insn
    .global probe_read_fixup
probe_read_byte:
    xor edx, edx
probe_read_insn:
    movzx eax, byte ptr [rdi]
    ret
probe_read_fixup:
    mov edx, 1
    ret

    .section .rodata
    .p2align 3
    .global exc_stub_table
exc_stub_table:
    .quad exc_stub_0, exc_stub_1, exc_stub_2, exc_stub_3, exc_stub_4, exc_stub_5, exc_stub_6, exc_stub_7
    .quad exc_stub_8, exc_stub_9, exc_stub_10, exc_stub_11, exc_stub_12, exc_stub_13, exc_stub_14, exc_stub_15
    .quad exc_stub_16, exc_stub_17, exc_stub_18, exc_stub_19, exc_stub_20, exc_stub_21, exc_stub_22, exc_stub_23
    .quad exc_stub_24, exc_stub_25, exc_stub_26, exc_stub_27, exc_stub_28, exc_stub_29, exc_stub_30, exc_stub_31
    .text
"#
);

extern "C" {
    static exc_stub_table: [u64; 32];
    fn gate_entry();
    fn probe_read_insn();
    fn probe_read_fixup();
    fn probe_read_byte();
}

/// Registers as saved by `exc_common`, followed by the CPU's interrupt frame.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The IDT every CPU loads. Written exactly once, by [`init`] on the boot CPU through a
/// raw pointer before any CPU loads it or any AP starts; afterwards only shared
/// references are formed ([`init`], [`load`]), so no `&mut` to it ever exists.
static mut IDT: Option<InterruptDescriptorTable> = None;

pub fn init() {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: `exc_stub_table` is an immutable table emitted by the assembly above. The
    // stub addresses match each vector's frame layout (error code or not).
    unsafe {
        let stubs = &*core::ptr::addr_of!(exc_stub_table);
        let at = |v: usize| VirtAddr::new(stubs[v]);
        idt.divide_error.set_handler_addr(at(0));
        idt.debug.set_handler_addr(at(1));
        idt.non_maskable_interrupt.set_handler_addr(at(2));
        idt.breakpoint
            .set_handler_addr(VirtAddr::new(gate_entry as *const () as u64))
            .set_privilege_level(PrivilegeLevel::Ring3);
        idt.overflow.set_handler_addr(at(4));
        idt.bound_range_exceeded.set_handler_addr(at(5));
        idt.invalid_opcode.set_handler_addr(at(6));
        idt.device_not_available.set_handler_addr(at(7));
        idt.double_fault.set_handler_addr(at(8)).set_stack_index(0);
        idt.invalid_tss.set_handler_addr(at(10));
        idt.segment_not_present.set_handler_addr(at(11));
        idt.stack_segment_fault.set_handler_addr(at(12));
        idt.general_protection_fault.set_handler_addr(at(13));
        idt.page_fault.set_handler_addr(at(14));
        idt.x87_floating_point.set_handler_addr(at(16));
        idt.alignment_check.set_handler_addr(at(17));
        idt.machine_check.set_handler_addr(at(18));
        idt.simd_floating_point.set_handler_addr(at(19));
        idt.virtualization.set_handler_addr(at(20));
        idt.cp_protection_exception.set_handler_addr(at(21));
        idt.hv_injection_exception.set_handler_addr(at(28));
        idt.vmm_communication_exception.set_handler_addr(at(29));
        idt.security_exception.set_handler_addr(at(30));
        // APIC interrupts (SMP): the benchmark IPI and the spurious vector.
        let (ipi, flush, spurious) = super::smp::interrupt_stubs();
        idt[super::apic::IPI_VECTOR].set_handler_addr(VirtAddr::new(ipi));
        idt[super::apic::FLUSH_VECTOR].set_handler_addr(VirtAddr::new(flush));
        idt[super::apic::SPURIOUS_VECTOR].set_handler_addr(VirtAddr::new(spurious));
    }
    // SAFETY: runs once at boot on the boot CPU with interrupts off, before any CPU has
    // loaded the IDT or any AP starts, so this single write through a raw pointer races
    // with nothing and no reference to `IDT` is live. The table then stays in the static
    // unchanged for ever, so the pointer `lidt` loads stays valid.
    unsafe {
        core::ptr::addr_of_mut!(IDT).write(Some(idt));
        if let Some(idt) = (*core::ptr::addr_of!(IDT)).as_ref() {
            idt.load_unsafe();
        }
    }
}

/// Load the (already built) IDT on this CPU: application processors share the boot
/// CPU's table.
pub fn load() {
    // SAFETY: `init` built the IDT in a static before any AP starts; it is never changed
    // afterwards, so the loaded pointer stays valid.
    unsafe {
        if let Some(idt) = (*core::ptr::addr_of!(IDT)).as_ref() {
            idt.load_unsafe();
        }
    }
}

pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "NMI",
        3 => "breakpoint / bad gate op (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection fault (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating point (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating point (#XM)",
        20 => "virtualization (#VE)",
        21 => "control protection (#CP)",
        _ => "reserved exception",
    }
}

/// Read a byte, reporting a fault instead of dying: `Err(())` if the access faulted.
pub fn probe_read(addr: u64) -> Result<u8, ()> {
    let (val, faulted): (u64, u64);
    // SAFETY: probe_read_byte only reads `addr`; a fault there is caught by
    // `exception_dispatch`, which resumes at the fixup with edx = 1.
    unsafe {
        core::arch::asm!("call {f}", f = sym probe_read_byte, in("rdi") addr, out("rax") val, out("rdx") faulted,
            clobber_abi("C"));
    }
    if faulted != 0 {
        Err(())
    } else {
        Ok(val as u8)
    }
}

#[no_mangle]
extern "C" fn exception_dispatch(frame: &mut TrapFrame) {
    if frame.rip == probe_read_insn as *const () as u64 {
        frame.rip = probe_read_fixup as *const () as u64;
        return;
    }
    crate::exception::fatal_exception(frame);
}

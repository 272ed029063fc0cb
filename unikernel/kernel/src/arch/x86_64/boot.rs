//! PVH entry: 32-bit protected mode → long mode → `kmain`.
//!
//! QEMU's `-kernel` (and the embedded VMM) find the 32-bit entry through the Xen ELF note
//! type 18 (XEN_ELFNOTE_PHYS32_ENTRY) and enter with paging off and `%ebx` = physical
//! address of `hvm_start_info`. The boot page tables are *static data*: they identity-map
//! the low 4 GiB with 2 MiB pages and are computed by the assembler, so ring 0 (emulated
//! ~1000x slower under a software hypervisor) does no table-filling work at all.
//!
//! `kmb_start64` is a documented 64-bit entry (the ELF entry point) for VMMs that start
//! the vCPU in long mode themselves: `%rdi` = physical address of `hvm_start_info`, paging
//! on with the kernel image identity-mapped, interrupts off. It sets EFER.NXE and CR0.WP,
//! loads the kernel's own boot page tables and stack, then calls into Rust.
//!
//! The boot GDT's descriptors and selectors are the boot ABI's (`kmbench_bootabi::gdt`),
//! the same ones the embedded VMM enters `kmb_start64` with.

use core::arch::global_asm;

/// Page-table entry flags used by the boot tables: present | writable | user
/// (the run may execute at CPL3, see `usermode`), plus PS for the 2 MiB leaves.
pub const BOOT_TABLE_FLAGS: u64 = 0x7;

global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4            /* namesz: "Xen\0" */
    .long 8            /* descsz: a 64-bit address (QEMU reads 8 bytes for ELF64) */
    .long 18           /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32

    .section .data.boot_pt, "aw"
    .p2align 12
    .global boot_pml4
boot_pml4:
    .quad boot_pdpt + 0x7
    .fill 511, 8, 0
    .p2align 12
boot_pdpt:
    .quad boot_pd + 0x7
    .quad boot_pd + 0x1000 + 0x7
    .quad boot_pd + 0x2000 + 0x7
    .quad boot_pd + 0x3000 + 0x7
    .fill 508, 8, 0
    .p2align 12
boot_pd:
    .set i, 0
    .rept 2048
    .quad (i << 21) | 0x87
    .set i, i + 1
    .endr

    .p2align 3
boot_gdt:
    .quad 0
    .quad {code64}             /* 0x08: 64-bit code (boot ABI gdt::CODE64) */
    .quad {data}               /* 0x10: data (boot ABI gdt::DATA) */
boot_gdt_end:
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot_stack, "aw", @nobits
    .p2align 12
    .global boot_stack_bottom
boot_stack_bottom:
    .skip 65536
    .global boot_stack_top
boot_stack_top:

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi                 /* keep hvm_start_info */
    lgdt boot_gdtr
    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x900, %eax                /* LME | NXE */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0
    ljmp ${code_sel}, $pvh_long_mode

    .code64
pvh_long_mode:
    movw ${data_sel}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %esi, %edi                 /* zero-extends: upper halves are undefined */
    jmp kmb_start64

    .global kmb_start64
kmb_start64:
    cli
    cld
    movl $0xC0000080, %ecx          /* EFER.NXE: the kernel's tables use NX */
    rdmsr
    orl $0x800, %eax
    wrmsr
    movq %cr0, %rax
    orq $0x10000, %rax              /* CR0.WP: read-only pages bind ring 0 too */
    movq %rax, %cr0
    movq $boot_pml4, %rax
    movq %rax, %cr3
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    call kmain
2:  hlt
    jmp 2b
    .text
"#,
    code64 = const kmbench_bootabi::gdt::CODE64,
    data = const kmbench_bootabi::gdt::DATA,
    code_sel = const kmbench_bootabi::gdt::CODE64_SELECTOR,
    data_sel = const kmbench_bootabi::gdt::DATA_SELECTOR,
    options(att_syntax)
);

extern "C" {
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
    static boot_pml4: u8;
}

/// Physical (= virtual, identity) address of the boot PML4.
pub fn boot_pml4_addr() -> u64 {
    // SAFETY: only the address of the linker symbol is taken, never its contents.
    unsafe { &boot_pml4 as *const u8 as u64 }
}

/// The boot stack's [bottom, top) range.
pub fn boot_stack() -> (u64, u64) {
    // SAFETY: only addresses of linker symbols are taken.
    unsafe {
        (
            &boot_stack_bottom as *const u8 as u64,
            &boot_stack_top as *const u8 as u64,
        )
    }
}
